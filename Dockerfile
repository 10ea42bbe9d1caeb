# The gateway in a small image, run as a non-root user.
#
#   docker build -t awp-gateway .
#   docker run -p 7700:7700 -p 9464:9464 awp-gateway          # development default
#   docker run -p 7700:7700 -v $PWD/gateway.toml:/etc/awp/gateway.toml:ro \
#       -e GATEWAY_CONFIG=/etc/awp/gateway.toml awp-gateway    # a configuration
#
# The default command listens on every interface (the container's), keeps
# its SQLite files and development secret in /var/lib/awp (mount a volume
# to keep them), and prints the development tenant's secret. The flags in
# CMD override a configuration's listen addresses and data directory;
# replace CMD (`docker run ... awp-gateway --config FILE`) to take them from
# the file.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p awp-gateway \
    && cp target/release/gateway /gateway

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/awp --create-home awp
COPY --from=build /gateway /usr/local/bin/gateway
USER awp
WORKDIR /var/lib/awp
EXPOSE 7700 7701 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["--listen", "0.0.0.0:7700", "--admin-listen", "0.0.0.0:9464", "--data-dir", "/var/lib/awp"]
