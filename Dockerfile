# The release image, the way Prometheus' own exporters build theirs: a binary built beforehand
# (`cargo build --release --locked`) copied into a minimal base that runs as a non-root user and
# has CA certificates and glibc, nothing else (no shell, no curl: `healthcheck` below stands in).
#
#   cargo build --release --locked
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse --short HEAD) \
#     --build-arg SOURCE=<repository URL> -t agent-health-exporter:0.1.0 .
#
# No binary at hand? Dockerfile.source builds one from source, then ends as this file does.
# CI builds this file with buildah against a stand-in base of the same layout
# (tests/realworld/image.sh), since the base cannot be pulled there.

ARG BASE=gcr.io/distroless/cc-debian12:nonroot
FROM ${BASE}

# A path inside the build context (.dockerignore lets this one through from target/).
ARG BINARY=target/release/agent-health-exporter
ARG VERSION=unknown
ARG REVISION=unknown
ARG SOURCE=unknown

COPY ${BINARY} /bin/agent-health-exporter
# --- the same from here on in Dockerfile and Dockerfile.source (tests/realworld/image.sh checks) ---
COPY config.example.yaml /etc/agent-health-exporter/agent-health-exporter.yaml
LABEL org.opencontainers.image.title="agent-health-exporter" \
      org.opencontainers.image.description="Prometheus exporter that probes a fleet of agents on its own schedule and exposes their health" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# Numeric, so that no base (BASE is a build argument) can turn it into root; 65532 is the
# base's `nonroot`.
USER 65532:65532
EXPOSE 10056
# Dials the default listen address on loopback; with other flags, give a health command of
# your own with the same --web.listen-address and --web.config.file.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/bin/agent-health-exporter", "healthcheck"]
ENTRYPOINT ["/bin/agent-health-exporter"]
CMD ["--config.file=/etc/agent-health-exporter/agent-health-exporter.yaml"]
