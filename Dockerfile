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
# container's loopback only, which the HEALTHCHECK (`gateway probe`, run
# inside the container: the image has no curl) reaches; to publish it, say so, and to loopback on
# the host: `docker run -p 127.0.0.1:9464:9464 awp-gateway --listen
# 0.0.0.0:7700 --admin-listen 0.0.0.0:9464 --data-dir /var/lib/awp` (a
# reload is then taken only with server.admin_token_file's token, since the
# host's requests are not loopback to the container).
#
# The flags in CMD override a configuration's listen addresses and data
# directory; replace CMD (`docker run ... awp-gateway --config FILE`) to
# take them from the file. The HEALTHCHECK asks /healthz at the admin
# address of the configuration in GATEWAY_CONFIG, else 127.0.0.1:9464: give
# a configuration by GATEWAY_CONFIG (not --config) when its admin_listen
# is another, or set GATEWAY_ADMIN_LISTEN for both.

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
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/gateway", "probe", "--path", "/healthz"]
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["--listen", "0.0.0.0:7700", "--admin-listen", "127.0.0.1:9464", "--data-dir", "/var/lib/awp"]
