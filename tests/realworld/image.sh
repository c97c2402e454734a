#!/usr/bin/env bash
# Real-world check of the release image, no daemon: Debian's buildah builds the repository's
# Dockerfile (chroot isolation, vfs storage, all under the work directory) with the given
# prebuilt binary, on a stand-in of gcr.io/distroless/cc-debian12:nonroot made from this
# machine's Debian files (same paths, same uid 65532), since the base cannot be pulled here.
# Then: the image's config (user, entrypoint, command, port, labels, health check), umoci
# unpacks it, and the binary runs from the unpacked root as uid 65532, probes an agent, answers
# /metrics, and its `healthcheck` exits 0, then 1 once it is stopped.
# Needs root (chroot), buildah, umoci, binutils (objdump), python3, curl. Installs nothing.
# Usage: tests/realworld/image.sh path/to/agent-health-exporter (inside the repository)
set -euo pipefail
bin=${1:?usage: $0 path/to/agent-health-exporter}
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/realworld/workdir.sh
source "$root/tests/realworld/workdir.sh"

fail() { echo "FAIL: $*"; exit 1; }

binary=$(realpath --relative-to="$root" "$bin")
case "$binary" in
  ../*|/*) fail "$bin is outside the repository, the build context" ;;
esac

# buildah keeps everything under the work directory; unmounted and removed on exit before the
# directory goes (vfs leaves plain directories, so rm -rf is enough once nothing is mounted).
bh=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
mkdir -p "$work/tmp"
export TMPDIR="$work/tmp"
# buildah writes a blob-info cache under /var/lib/containers whatever --root says: removed
# again when this run is what made it.
made_system_dir=""
[ -e /var/lib/containers ] || made_system_dir=yes
buildah_cleanup() {
  "${bh[@]}" rm --all >/dev/null 2>&1 || true
  if [ -n "$made_system_dir" ]; then rm -rf /var/lib/containers; fi
  cleanup
}
trap buildah_cleanup EXIT

# The binary's own version and revision, which the labels must carry.
read -r version revision < <("$bin" --version |
  sed -E 's/.*version ([^ ]+) \(revision: ([^,]+),.*/\1 \2/')
[ -n "$version" ] && [ -n "$revision" ] || fail "cannot read the version of $bin"

# The stand-in base below carries this machine's glibc, so it cannot show a binary that needs
# a newer one than the real base's (2.36): checked here instead.
bash "$root/tests/realworld/glibc_ceiling.sh" "$bin" 2.36 || fail "glibc ceiling"

# --- the stand-in base: what distroless/cc-debian12:nonroot holds, from this machine --------
base=$("${bh[@]}" from scratch)
rootfs=$("${bh[@]}" mount "$base")
# glibc (loader included) and libgcc_s, at the paths the binary asks for.
libs=$(ldd "$bin" | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]*ld-linux/{print $1}')
libgcc=$(ldconfig -p | awk '/libgcc_s.so.1 .*x86-64|libgcc_s.so.1 \(libc6,x86-64\)/{print $NF; exit}')
libs=$(printf '%s\n' $libs $libgcc | sort -u)
for lib in $libs; do
  cp --parents -L "$lib" "$rootfs/"
done
cp --parents -L /etc/ssl/certs/ca-certificates.crt "$rootfs/"
cat > "$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat > "$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
echo 'hosts: files dns' > "$rootfs/etc/nsswitch.conf"
install -d -m 0700 -o 65532 -g 65532 "$rootfs/home/nonroot"
install -d -m 1777 "$rootfs/tmp"
"${bh[@]}" config --user 65532 --workingdir /home/nonroot \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$base"
"${bh[@]}" umount "$base" >/dev/null
"${bh[@]}" commit --quiet "$base" localhost/distroless-standin:nonroot >/dev/null
echo "ok: stand-in base from Debian files: $(echo $libs | wc -w) libraries, CA bundle, nonroot 65532"

# --- the image, from the repository's Dockerfile, as a release build makes it ---------------
source_url=$(git -C "$root" config --get remote.origin.url 2>/dev/null || echo "file://$root")
# Docker format: the OCI image config has no field for HEALTHCHECK and would drop it.
"${bh[@]}" bud --quiet --isolation chroot --format docker \
  --build-arg BASE=localhost/distroless-standin:nonroot \
  --build-arg BINARY="$binary" --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" --build-arg SOURCE="$source_url" \
  -f "$root/Dockerfile" -t localhost/agent-health-exporter:ci "$root" >/dev/null
echo "ok: buildah built Dockerfile with $binary"
"${bh[@]}" inspect --type image localhost/agent-health-exporter:ci > "$work/inspect.json"
"${bh[@]}" push --quiet localhost/agent-health-exporter:ci "oci:$work/layout:ci"
umoci unpack --image "$work/layout:ci" "$work/bundle" >/dev/null
echo "ok: pushed to an OCI layout and unpacked with umoci"

# --- the image's config, read from the OCI layout (what a runtime reads) -------------------
python3 - "$work/layout" "$work/inspect.json" "$version" "$revision" <<'EOF'
import json, pathlib, sys
layout, inspect, version, revision = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
blob = lambda d: json.loads((layout / "blobs" / d.replace(":", "/")).read_text())
manifest = blob(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])
config = blob(manifest["config"]["digest"])["config"]
problems = []
def expect(what, got, want):
    if got != want:
        problems.append(f"{what} is {got!r}, expected {want!r}")
expect("User", config.get("User"), "65532:65532")
expect("Entrypoint", config.get("Entrypoint"), ["/bin/agent-health-exporter"])
expect("Cmd", config.get("Cmd"), ["--config.file=/etc/agent-health-exporter/agent-health-exporter.yaml"])
expect("ExposedPorts", sorted(config.get("ExposedPorts") or {}), ["10056/tcp"])
labels = config.get("Labels") or {}
for key, want in [("title", "agent-health-exporter"), ("licenses", "Apache-2.0"),
                  ("version", version), ("revision", revision)]:
    expect(f"label org.opencontainers.image.{key}", labels.get(f"org.opencontainers.image.{key}"), want)
for key in ["description", "source"]:
    value = labels.get(f"org.opencontainers.image.{key}", "")
    if value in ("", "unknown"):
        problems.append(f"label org.opencontainers.image.{key} is {value!r}")
# The health check lives in the Docker form of the config (the OCI form has no such field).
docker = json.load(open(inspect))["Docker"]["config"]
expect("Healthcheck", (docker.get("Healthcheck") or {}).get("Test"),
       ["CMD", "/bin/agent-health-exporter", "healthcheck"])
if problems:
    sys.exit("FAIL: image config:\n  " + "\n  ".join(problems))
print("ok: image config: user 65532:65532, entrypoint, command, port 10056/tcp, OCI labels, health check")
EOF

# Dockerfile.source must end as Dockerfile does: same runtime lines after the binary's COPY.
marker='^# --- the same from here on'
diff <(sed -n "/$marker/,\$p" "$root/Dockerfile") <(sed -n "/$marker/,\$p" "$root/Dockerfile.source") \
  || fail "Dockerfile.source's runtime stage differs from Dockerfile's"
grep -q "$marker" "$root/Dockerfile" || fail "Dockerfile lost its marker line"
echo "ok: Dockerfile.source ends as Dockerfile does"

# --- run it from the unpacked root as uid 65532 --------------------------------------------
image_root="$work/bundle/rootfs"
in_image() { chroot --userspec=65532:65532 "$image_root" "$@"; }
in_image /bin/agent-health-exporter \
  --config.file=/etc/agent-health-exporter/agent-health-exporter.yaml --config.check >/dev/null \
  || fail "the image's own config (its CMD) does not check"
echo "ok: the config named by CMD checks inside the image"

# Below the kernel's ephemeral range, so that no other process takes them meanwhile.
read -r agent_port port < <(python3 "$root/tests/realworld/helpers.py" free-ports 2)
mkdir -p "$work/agent"
python3 -m http.server --bind 127.0.0.1 --directory "$work/agent" "$agent_port" \
  >/dev/null 2>&1 &
pids+=($!)
# The config goes where a mount would put it; the rest of the root is the image's.
cat > "$image_root/tmp/config.yaml" <<EOF
agents:
  - name: web
    type: http-server
    url: http://127.0.0.1:$agent_port/
    interval: 1s
    timeout: 500ms
EOF
# chroot itself, not the function, so that $! is the exporter's pid (chroot execs it).
chroot --userspec=65532:65532 "$image_root" /bin/agent-health-exporter \
  --config.file=/tmp/config.yaml --web.listen-address="127.0.0.1:$port" \
  > /dev/null 2> "$work/exporter.log" &
exporter=$!
pids+=("$exporter")

healthy=""
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/metrics" -o "$work/metrics.txt" 2>/dev/null &&
     grep -q '^agent_health_status{agent="web".*status="healthy"} 1' "$work/metrics.txt"; then
    healthy=yes; break
  fi
  sleep 0.1
done
[ -n "$healthy" ] || { cat "$work/exporter.log"; fail "the agent is not healthy in /metrics"; }
echo "ok: the exporter from the image probes the agent: healthy in /metrics"

# The process serving is the image's user, not root (chroot execs it: same pid).
uid=$(awk '/^Uid:/{print $2}' "/proc/$exporter/status")
[ "$uid" = 65532 ] || fail "the exporter runs as uid $uid, not 65532"
echo "ok: the exporter runs as uid 65532"

in_image /bin/agent-health-exporter healthcheck --web.listen-address="127.0.0.1:$port" \
  || fail "healthcheck exits $? against the running exporter"
echo "ok: healthcheck exits 0 while the exporter runs"

kill "$exporter"
wait "$exporter" 2>/dev/null || true
set +e
in_image /bin/agent-health-exporter healthcheck --web.listen-address="127.0.0.1:$port" 2> "$work/hc.err"
code=$?
set -e
[ "$code" = 1 ] || fail "healthcheck exits $code once the exporter is stopped, not 1"
echo "ok: healthcheck exits 1 once the exporter is stopped: $(cat "$work/hc.err")"
