#!/usr/bin/env bash
# The case-by-case benchmark (issue 18, part 1): for each case, how long consumers keep getting an
# instance whose pod is gone (or whose client lost its network), with Nacos alone and with
# nacos-reconciler, on Alibaba Nacos 2.5.1 and rnacos 0.8.8. Not a test (it takes about 20 minutes
# and judges nothing by exit code): it prints Markdown tables and writes them into BENCHMARKS.md,
# between the `cases:begin` / `cases:end` markers.
#
#   bench/cases.sh                                 # 5 repetitions, Nacos alone bounded at 600 s
#   bench/cases.sh --reps 2 --bound 60 --no-write  # a short trial; other flags go to the harness:
#   bench/cases.sh --servers nacos --cases a,e --stagger-ms 2300 --parallel 2
#   bench/cases.sh --cases b,e --max-removals 100% --node-unreachable-seconds 0   # policy other than the default
#
# Needs root (case e runs clients in network namespaces of its own). Starts a private testbed
# (TESTBED_STATE, default /tmp/nacos-reconciler-bench-cases) and tears it down afterwards, with
# every process, namespace and link the harness made, also when it fails or is interrupted.
# bench/run.sh calls this after its scale runs. The harness is bench/cases/main.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

command="bench/cases.sh${*:+ $*}"
write=1
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-write) write=0; shift ;;
    --*) [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }; pass+=("$1" "$2"); shift 2 ;;
    *) echo "unexpected argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/cases.sh needs root (network namespaces)" >&2; exit 1; }
command -v ip >/dev/null || { echo "iproute2's ip is missing: apt-get install iproute2" >&2; exit 1; }

export TESTBED_STATE=${TESTBED_STATE:-/tmp/nacos-reconciler-bench-cases}
# The cases run Alibaba Nacos 2.5.1 from the testbed and an rnacos of their own (CASES_RNACOS).
export TESTBED_WITHOUT="rnacos rnacos-auth nacos-3.0.3"
cache=${NACOS_RECONCILER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nacos-reconciler}
export CASES_RNACOS=$cache/rnacos-$(sed -n 's/^RNACOS_VERSION=//p' tests/testbed.sh)/bin/rnacos

echo "==> cargo build --release (harness; the operator as shipped: static x86_64 musl)" >&2
# shellcheck source=bench/build.sh
source bench/build.sh
# CASES_OPERATOR=<binary>: that operator instead of one built from the working tree (e.g. one built
# from a clean commit while src/ has uncommitted changes); the report names it.
operator=${CASES_OPERATOR:-$(build_operator)}
harness=$(build_harness cases)
[ -x "$harness" ] && [ -x "$operator" ] || { echo "build gave no harness/operator binary" >&2; exit 1; }
built_from="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src bench/cases Cargo.toml || echo ' (with uncommitted changes)')"
if [ -n "${CASES_OPERATOR:-}" ]; then
  built_from="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- bench/cases Cargo.toml || echo ' (with uncommitted changes)'), operator binary CASES_OPERATOR=$CASES_OPERATOR"
fi
[ -x "$CASES_RNACOS" ] || tests/testbed.sh build >/dev/null

harness_pid=
cleanup() {
  [ -n "$harness_pid" ] && kill -9 "$harness_pid" 2>/dev/null || true
  tests/testbed.sh down >/dev/null 2>&1 || true
  # What the harness made in the network (named after its pid), if it could not remove it itself.
  if [ -n "$harness_pid" ]; then
    for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^nrcb-$harness_pid-" || true); do
      ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$n" 2>/dev/null || true
    done
    for l in $(ip -o link 2>/dev/null | awk '{print $2}' | cut -d@ -f1 | grep "^nb${harness_pid}h" || true); do
      ip link del "$l" 2>/dev/null || true
    done
    ip -o -4 addr show dev lo 2>/dev/null | awk -v l="lo:nrcb$harness_pid" '$NF == l {print $4}' |
      while read -r a; do ip addr del "$a" dev lo 2>/dev/null || true; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> fresh testbed in $TESTBED_STATE" >&2
tests/testbed.sh down >/dev/null 2>&1 || true
envfile=$(mktemp)
tests/testbed.sh up >"$envfile"
# shellcheck disable=SC1090
source "$envfile"
rm -f "$envfile"
out=$(mktemp --suffix=.md)
"$harness" --operator "$operator" --out "$out" ${pass[@]+"${pass[@]}"} &
harness_pid=$!
wait "$harness_pid"
{
  echo "Command: \`$command\`; operator and harness commit $built_from; $(nproc) cores, shared with other work."
  echo
  cat "$out"
} >"$out.full"
mv "$out.full" "$out"
cp -r "$TESTBED_STATE/logs" "${TMPDIR:-/tmp}/bench-cases-logs" 2>/dev/null &&
  echo "==> logs (operators, Java clients) in ${TMPDIR:-/tmp}/bench-cases-logs" >&2

if [ "$write" = 1 ]; then
  # Only the generated part between the markers changes; the text around it is kept.
  python3 - BENCHMARKS.md "$out" <<'PY'
import sys
path, gen = sys.argv[1], open(sys.argv[2]).read().strip()
text = open(path).read()
begin, end = "<!-- cases:generated:begin -->", "<!-- cases:generated:end -->"
if begin not in text or end not in text:
    sys.exit(f"{path} has no {begin} ... {end}")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + begin + "\n" + gen + "\n" + end + tail)
PY
  echo "==> BENCHMARKS.md updated" >&2
fi
cat "$out"
rm -f "$out"
