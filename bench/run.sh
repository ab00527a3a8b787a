#!/usr/bin/env bash
# The scale benchmark: removal latency, sync cost and memory of nacos-reconciler at 1,000 and 10,000
# pods, side by side with rnacos's own expiry. Not a test (it takes minutes per scale and judges
# nothing by exit code): it prints Markdown tables and writes them into BENCHMARKS.md.
#
#   bench/run.sh                        # scales 1000 and 10000
#   bench/run.sh --pods 1000            # one scale; any other flag goes to the harness:
#   bench/run.sh --pods 200 --deletions 50 --idle-seconds 20 --baseline-bound 60 --no-write
#
# Each scale gets a fresh private testbed (TESTBED_STATE, default /tmp/nacos-reconciler-bench),
# torn down afterwards. The harness is bench/scale/main.rs (a `[[bench]]`, harness = false).
set -euo pipefail
cd "$(dirname "$0")/.."

command="bench/run.sh${*:+ $*}"
scales=(1000 10000)
write=1
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --pods) IFS=, read -r -a scales <<<"$2"; shift 2 ;;
    --no-write) write=0; shift ;;
    *) pass+=("$1" "$2"); shift 2 ;;
  esac
done

export TESTBED_STATE=${TESTBED_STATE:-/tmp/nacos-reconciler-bench}
# The harness binds its pods to nodes itself (no scheduler); the controller-manager (node lifecycle:
# marking a lost node's pods not Ready) gets a higher client rate limit than its default of 20/s.
export TESTBED_KCM_QPS=${TESTBED_KCM_QPS:-200}
export TESTBED_KCM_BURST=${TESTBED_KCM_BURST:-300}

echo "==> cargo build --release (harness; the operator as shipped: static x86_64 musl)" >&2
# The operator's memory is measured on the binary the image ships (musl's allocator, not glibc's).
rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
command -v musl-gcc >/dev/null || { echo "musl-gcc is missing: apt-get install musl-tools" >&2; exit 1; }
cargo build --release --locked --target x86_64-unknown-linux-musl --bin nacos-reconciler
operator=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/nacos-reconciler
cargo build --release --locked --bench scale --message-format=json-render-diagnostics >"${TMPDIR:-/tmp}/bench-build.$$.json"
harness=$(python3 - "${TMPDIR:-/tmp}/bench-build.$$.json" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "scale" and m.get("executable"):
        print(m["executable"])
PY
)
rm -f "${TMPDIR:-/tmp}/bench-build.$$.json"
[ -x "$harness" ] && [ -x "$operator" ] || { echo "build gave no harness/operator binary" >&2; exit 1; }
# What the binaries were built from (the tree may change while the benchmark runs).
built_from="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo ' (with uncommitted changes)')"

trap 'tests/testbed.sh down >/dev/null 2>&1 || true' EXIT
results=()
for n in "${scales[@]}"; do
  echo "==> $n pods: fresh testbed in $TESTBED_STATE" >&2
  tests/testbed.sh down >/dev/null 2>&1 || true
  envfile=$(mktemp)
  tests/testbed.sh up >"$envfile"
  # shellcheck disable=SC1090
  source "$envfile"
  rm -f "$envfile"
  out=$(mktemp --suffix=.md)
  "$harness" --pods "$n" --operator "$operator" --out "$out" ${pass[@]+"${pass[@]}"}
  {
    echo "Command: \`$command\`; operator commit $built_from."
    echo
    cat "$out"
  } >"$out.full"
  mv "$out.full" "$out"
  echo "==> $n pods: tables in $out" >&2
  results+=("$n" "$out")
  # The operator's log outlives the testbed (which `down` removes).
  cp "$TESTBED_STATE/logs/operator-bench.log" "${TMPDIR:-/tmp}/operator-bench-$n.log" 2>/dev/null \
    && echo "==> $n pods: operator log in ${TMPDIR:-/tmp}/operator-bench-$n.log" >&2
  tests/testbed.sh down >/dev/null 2>&1 || true
done

[ "$write" = 1 ] || exit 0
# The machine and versions between the `generated` markers of BENCHMARKS.md, each scale's tables
# between its own markers; the text around them (analysis, targets) is kept.
gen=$(mktemp)
{
  echo "Machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr); shared with other work (see each run's load average)."
  echo "Kubernetes $TESTBED_K8S_VERSION (etcd, kube-apiserver, kube-controller-manager; the pods need no scheduler), KWOK v$(sed -n 's/^KWOK_VERSION=//p' tests/testbed.sh), rnacos $(sed -n 's/^RNACOS_VERSION=//p' tests/testbed.sh); operator $("$operator" version 2>/dev/null || echo '?'), release build, static x86_64 musl (as in the image)."
} >"$gen"
python3 bench/merge.py BENCHMARKS.md "$gen" "${results[@]}"
rm -f "$gen"
for ((i = 1; i < ${#results[@]}; i += 2)); do rm -f "${results[$i]}"; done
echo "==> BENCHMARKS.md updated" >&2
