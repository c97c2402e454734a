#!/usr/bin/env bash
# The release image's base (gcr.io/distroless/cc-debian12) ships glibc 2.36. A binary linked on a
# newer system may ask for a newer symbol version (GLIBC_2.38, say) and then fails to start in
# the image with "version `GLIBC_2.38' not found", which the stand-in base of image.sh (made from
# this machine's own glibc) cannot show. So: the highest GLIBC_x.y the binary needs, read with
# binutils' objdump, must be at most the base's.
# Usage: tests/realworld/glibc_ceiling.sh path/to/agent-health-exporter [max, default 2.36]
set -euo pipefail
bin=${1:?usage: $0 path/to/agent-health-exporter [max glibc version]}
max=${2:-2.36}
command -v objdump >/dev/null || { echo "FAIL: objdump (Debian's binutils) is needed"; exit 1; }
symbols=$(objdump -T "$bin") || { echo "FAIL: objdump cannot read $bin"; exit 1; }
needed=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$symbols" | sed 's/GLIBC_//' | sort -uV | tail -n 1)
if [ -z "$needed" ]; then
  echo "ok: $bin needs no versioned glibc symbol"
  exit 0
fi
if [ "$(printf '%s\n%s\n' "$needed" "$max" | sort -V | tail -n 1)" != "$max" ]; then
  users=$(grep -F "GLIBC_$needed)" <<<"$symbols" | awk '{print $NF}' | sort -u | head -n 5 | tr '\n' ' ' || true)
  echo "FAIL: $bin needs glibc $needed (GLIBC_$needed: $users) but the image's base has $max:" \
    "it would not start there. Build the release binary on Debian 12 (bookworm) or older" \
    "(or in Dockerfile.source's build stage)."
  exit 1
fi
echo "ok: $bin needs glibc $needed at most, the base has $max"
