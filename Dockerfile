# The gateway in a small image, run as a non-root user.
#
#   docker build -t awp-gateway .
#   docker run -p 127.0.0.1:7700:7700 awp-gateway             # development default
#   docker run -p 7700:7700 -v $PWD/gateway.toml:/etc/awp/gateway.toml:ro \
#       -e GATEWAY_CONFIG=/etc/awp/gateway.toml awp-gateway    # a configuration
#
# The default command takes agents on every interface of the container, and
# keeps its SQLite files and development secret in /var/lib/awp (mount a
# volume to keep them). The development secret is not printed to the log
# (`docker logs` keeps what it is given): read it with
#   docker exec CONTAINER cat /var/lib/awp/dev-tenant.secret
# The admin endpoint (/metrics, /readyz, POST /reload) listens on the
# container's loopback only, where the HEALTHCHECK (`gateway probe`, run
# inside the container: the image has no curl) asks /healthz. Its address
# is GATEWAY_ADMIN_LISTEN, set below, for the gateway and the HEALTHCHECK
# alike; it overrides a configuration's admin_listen, so to move or
# publish the admin endpoint set it, and both follow:
#   docker run -p 127.0.0.1:9464:9464 -e GATEWAY_ADMIN_LISTEN=0.0.0.0:9464 awp-gateway
# (a reload is then taken only with server.admin_token_file's token, since
# the host's requests are not loopback to the container).
#
# The flags in CMD override a configuration's listen addresses and data
# directory; replace CMD (`docker run ... awp-gateway --config FILE`) to
# take them from the file.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p awp-gateway \
    && cp target/release/gateway /gateway

FROM debian:12.8-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/awp --create-home awp
COPY --from=build /gateway /usr/local/bin/gateway
USER awp
WORKDIR /var/lib/awp
EXPOSE 7700 7701 9464
STOPSIGNAL SIGTERM
ENV GATEWAY_ADMIN_LISTEN=127.0.0.1:9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/gateway", "probe", "--path", "/healthz"]
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["--listen", "0.0.0.0:7700", "--data-dir", "/var/lib/awp"]
