# Sourced by the bench scripts: installs from Debian what is missing, builds the binary that
# `cargo build --release` ships and the bench_target example (apart: an example pulls in the
# dev-dependencies' features), and raises the open-file limit (many probes in flight mean many
# sockets at once).
#   bench_prepare wrk=wrk python3=python3 /usr/bin/prometheus-blackbox-exporter=prometheus-blackbox-exporter
bench_prepare() {
  local need=() pair
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null || need+=("${pair#*=}")
  done
  if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  cargo build --release --locked --quiet
  cargo build --release --locked --quiet --example bench_target
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}
