# The demo fleet (examples/demo_fleet.rs) as an image, for deploy/compose.yaml.
# Build context: the repository root.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --example demo_fleet \
    && cp target/release/examples/demo_fleet /demo_fleet

FROM debian:bookworm-slim
COPY --from=build /demo_fleet /usr/local/bin/demo_fleet
USER nobody
# 18080: control API; 18081..18087: the agents of deploy/demo-fleet.yaml.
EXPOSE 18080-18087
ENTRYPOINT ["/usr/local/bin/demo_fleet"]
CMD ["--host", "0.0.0.0", "--base-port", "18081", "--control-port", "18080"]
