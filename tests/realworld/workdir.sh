# Sourced by the real-world scripts: a work directory `$work`, and the processes whose pids
# the script adds to `pids`; on exit, whatever the path, those are killed and the directory
# removed.
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
