# Multi-stage build: compile with the Rust toolchain, ship only the binary on a slim Debian.
# CI runs the same `cargo build --release --locked` and checks the example config with the
# binary it builds (see .ci/run), since no container engine runs there.

# The same toolchain version as `rust-version` in Cargo.toml (.ci/run checks the lock needs no newer).
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
# The revision is passed in because .git is not part of the build context.
ARG REVISION=unknown
ENV AGENT_HEALTH_EXPORTER_REVISION=${REVISION}
RUN cargo build --release --locked \
 && ./target/release/agent-health-exporter --config.file=config.example.yaml --config.check

FROM debian:bookworm-slim
RUN useradd --system --uid 10056 --no-create-home --shell /usr/sbin/nologin exporter
COPY --from=build /src/target/release/agent-health-exporter /usr/local/bin/agent-health-exporter
COPY config.example.yaml /etc/agent-health-exporter/agent-health-exporter.yaml
USER 10056:10056
EXPOSE 10056
ENTRYPOINT ["/usr/local/bin/agent-health-exporter"]
CMD ["--config.file=/etc/agent-health-exporter/agent-health-exporter.yaml"]
