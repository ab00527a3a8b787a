#!/usr/bin/env bash
# The scale benchmark: removal latency, sync cost and memory of nacos-reconciler at 1,000, 10,000
# and 30,000 pods, on rnacos 0.8.8 and on Alibaba Nacos 2.5.1, side by side with each server's own
# expiry. Not a test (it takes minutes per run and judges nothing by exit code): it prints Markdown
# tables and writes them into BENCHMARKS.md.
#
#   bench/run.sh                        # scales 1000, 10000, 30000; servers rnacos, nacos-2.5.1
#   bench/run.sh --pods 1000,10000 --servers nacos-2.5.1
#   bench/run.sh --pods 200 --deletions 50 --idle-seconds 20 --baseline-bound 60 --no-write
#   (any other flag goes to the harness, bench/scale/main.rs)
#
# The binaries are built from the commit checked out (HEAD, exported with `git archive`, so that
# uncommitted work in the tree cannot reach the figures), or from BENCH_SRC when set (a source tree
# for developing the harness). Each scale and server gets a fresh private testbed (TESTBED_STATE,
# default /tmp/nacos-reconciler-bench), torn down afterwards; the testbed's other Nacos servers are
# left out (TESTBED_WITHOUT), so they take no CPU from it. Afterwards bench/cases.sh, where present and
# executable, runs with --no-write passed through (--no-cases: not at all).
set -euo pipefail
# One compound command, read whole before it runs: editing this file during a run cannot change it.
{
cd "$(dirname "$0")/.."
repo=$PWD

command="bench/run.sh${*:+ $*}"
scales=(1000 10000 30000)
servers=(rnacos nacos-2.5.1)
write=1
cases=1
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --pods) IFS=, read -r -a scales <<<"$2"; shift 2 ;;
    --servers) IFS=, read -r -a servers <<<"$2"; shift 2 ;;
    --no-write) write=0; shift ;;
    --no-cases) cases=0; shift ;;
    *) pass+=("$1" "$2"); shift 2 ;;
  esac
done
for s in "${servers[@]}"; do
  case "$s" in rnacos | nacos-2.5.1) ;; *) echo "--servers: rnacos and/or nacos-2.5.1, not $s" >&2; exit 2 ;; esac
done

export TESTBED_STATE=${TESTBED_STATE:-/tmp/nacos-reconciler-bench}
# The harness binds its pods to nodes itself (no scheduler); the controller-manager (node lifecycle:
# marking a lost node's pods not Ready) gets a higher client rate limit than its default of 20/s.
export TESTBED_KCM_QPS=${TESTBED_KCM_QPS:-200}
export TESTBED_KCM_BURST=${TESTBED_KCM_BURST:-300}
# One target directory for the tree and its exported copies (they share every dependency).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/nacos-reconciler-bench.XXXXXX")
trap 'tests/testbed.sh down >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
if [ -n "${BENCH_SRC:-}" ]; then
  src=$BENCH_SRC
  built_from="$(git rev-parse --short HEAD) plus the tree in $BENCH_SRC (uncommitted)"
  # The target directory is shared with the archived copies, whose files are newer than an edit
  # made before the last archived build: cargo would take that build for this tree's.
  find "$src/src" "$src/bench" -name '*.rs' -exec touch {} +
else
  src=$scratch/src
  mkdir -p "$src"
  git archive HEAD | tar -x -C "$src"
  built_from=$(git rev-parse --short HEAD)
fi
cd "$src"

echo "==> cargo build --release (harness; the operator as shipped: static x86_64 musl)" >&2
# shellcheck source=bench/build.sh
source "$repo/bench/build.sh"
operator=$(build_operator)
harness=$(build_harness scale)
[ -x "$harness" ] && [ -x "$operator" ] || { echo "build gave no harness/operator binary" >&2; exit 1; }
cd "$repo"

# write_results: the machine and versions between the `generated` markers of BENCHMARKS.md, each
# finished run's tables between its own markers, the cost-growth tables between theirs; the text
# around them (analysis, targets) is kept. After every run, so a run cut short loses only itself.
write_results() {
  local gen=$scratch/generated.md
  {
    echo "Machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr); shared with other work (see each run's load average)."
    echo "Kubernetes $TESTBED_K8S_VERSION (etcd, kube-apiserver, kube-controller-manager; the pods need no scheduler), KWOK v$(sed -n 's/^KWOK_VERSION=//p' tests/testbed.sh), rnacos $(sed -n 's/^RNACOS_VERSION=//p' tests/testbed.sh), Alibaba Nacos 2.5.1 standalone with auth on ($(grep -o -- '-Xmx[0-9a-z]*' tests/testbed.sh | head -1) heap, $(java -version 2>&1 | head -1)); operator $("$operator" version 2>/dev/null || echo '?'), release build, static x86_64 musl (as in the image)."
  } >"$gen"
  python3 bench/merge.py BENCHMARKS.md "$gen" --costs "${costs[@]}" --command "$command" --commit "$built_from" -- "${results[@]}"
  echo "==> BENCHMARKS.md updated" >&2
}

results=()
costs=()
for n in "${scales[@]}"; do
  for server in "${servers[@]}"; do
    echo "==> $n pods on $server: fresh testbed in $TESTBED_STATE" >&2
    envfile=$(mktemp)
    # Only the server measured: the others would take CPU from the run (and a JVM that does not
    # start on a loaded machine would fail `up` for nothing).
    case "$server" in
      rnacos) export TESTBED_WITHOUT="rnacos-auth nacos-2.5.1 nacos-3.0.3" ;;
      nacos-2.5.1) export TESTBED_WITHOUT="rnacos rnacos-auth nacos-3.0.3" ;;
    esac
    for attempt in 1 2 3; do
      tests/testbed.sh down >/dev/null 2>&1 || true
      tests/testbed.sh up >"$envfile" && break
      [ "$attempt" = 3 ] && { echo "tests/testbed.sh up failed three times" >&2; exit 1; }
      echo "==> tests/testbed.sh up failed (attempt $attempt); again" >&2
    done
    # shellcheck disable=SC1090
    source "$envfile"
    rm -f "$envfile"
    out=$scratch/$n-$server.md
    cost=$scratch/$n-$server.json
    if ! "$harness" --pods "$n" --server "$server" --operator "$operator" --out "$out" --cost "$cost" ${pass[@]+"${pass[@]}"}; then
      # One run that fails (its reason is in the output above) does not cost the others.
      echo "==> $n pods on $server: the harness failed; nothing written for it" >&2
      cp "$TESTBED_STATE/logs/operator-bench.log" "${TMPDIR:-/tmp}/operator-bench-$n-$server.log" 2>/dev/null || true
      tests/testbed.sh down >/dev/null 2>&1 || true
      continue
    fi
    {
      echo "Command: \`$command\`; operator commit $built_from."
      echo
      cat "$out"
    } >"$out.full"
    mv "$out.full" "$out"
    echo "==> $n pods on $server: tables in $out" >&2
    results+=("$n pods on $server" "$out")
    costs+=("$cost")
    # The logs outlive the testbed (which `down` removes).
    cp "$TESTBED_STATE/logs/operator-bench.log" "${TMPDIR:-/tmp}/operator-bench-$n-$server.log" 2>/dev/null \
      && echo "==> operator log in ${TMPDIR:-/tmp}/operator-bench-$n-$server.log" >&2
    if [ "$server" = nacos-2.5.1 ]; then
      cp "$TESTBED_STATE/logs/nacos-2.5.1.log" "${TMPDIR:-/tmp}/nacos-bench-$n.log" 2>/dev/null || true
    fi
    tests/testbed.sh down >/dev/null 2>&1 || true
    [ "$write" = 0 ] || write_results
  done
done
# The harness printed each run's tables; the growth table across them:
[ "$write" = 1 ] || python3 bench/merge.py --print-costs --costs "${costs[@]}" --command "$command" --commit "$built_from"


# The case-by-case benchmark (bench/cases.sh, where present), after this one's testbed is down.
# Its own testbed state (its default), not this run's.
if [ "$cases" = 1 ] && [ -x bench/cases.sh ]; then
  echo "==> bench/cases.sh" >&2
  if [ "$write" = 1 ]; then env -u TESTBED_STATE bench/cases.sh; else env -u TESTBED_STATE bench/cases.sh --no-write; fi
fi
exit
}
