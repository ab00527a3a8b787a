#!/usr/bin/env bash
# Runs every test: format, lints, unit tests, then the integration and end-to-end tests against a
# fresh local testbed (real kube-apiserver, controller-manager, scheduler, KWOK, Nacos servers).
# The testbed is always torn down, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds are cached outside the repository, as the testbed's are: a fresh clone compiles only this
# crate, not its dependencies again.
cache=${NACOS_RECONCILER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nacos-reconciler}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/cargo-target}

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "unit tests"
cargo test --lib --bins

step "build integration tests"
cargo test --tests --no-run

# tests/e2e_nacos_cluster.rs runs a Nacos member in a network namespace of its own (iproute2's
# `ip netns`, veth links; root, or CAP_NET_ADMIN).
if ! command -v ip >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
  else
    echo "ip is missing: install iproute2 (Debian: apt-get install iproute2)" >&2; exit 1
  fi
fi

step "static release binary, built as the Dockerfile builds it"
# The image is not built here (no container runtime); its build step is: musl target, musl-gcc for ring.
rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
if ! command -v musl-gcc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null
  else
    echo "musl-gcc is missing: install musl-tools (Debian: apt-get install musl-tools)" >&2; exit 1
  fi
fi
cargo build --release --locked --target x86_64-unknown-linux-musl
static_bin=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/nacos-reconciler
file "$static_bin"
file "$static_bin" | grep -Eq 'statically linked|static-pie linked' || { echo "$static_bin is not static" >&2; exit 1; }
# ldd of a static-pie binary answers "statically linked" (exit 0); a dynamic one lists libraries with "=>".
# (Printed from a variable: `tee /dev/stderr` would reopen a redirected log and truncate it.)
ldd_out=$(ldd "$static_bin" 2>&1 || true)
echo "$ldd_out"
echo "$ldd_out" | grep -Eq 'statically linked|not a dynamic executable' \
  || { echo "ldd: $static_bin is not static" >&2; exit 1; }
if echo "$ldd_out" | grep -q '=>'; then echo "ldd lists shared libraries of $static_bin" >&2; exit 1; fi
if readelf -d "$static_bin" | grep -q NEEDED; then echo "$static_bin needs shared libraries" >&2; exit 1; fi
"$static_bin" version

step "Dockerfile lint (tally: hadolint's rules, from PyPI tally-cli)"
lintenv=$cache/tally-cli-0.45.0
[ -x "$lintenv/bin/tally" ] || { python3 -m venv "$lintenv" && "$lintenv/bin/pip" install -q tally-cli==0.45.0; }
"$lintenv/bin/tally" lint --no-color --fail-level warning Dockerfile

# A testbed of its own, so a developer's running testbed (or demo) is neither reused nor stopped.
export TESTBED_STATE=${TESTBED_STATE:-/tmp/nacos-reconciler-testbed-tests-$$}
# Every test needs every server (the benchmarks may leave some out).
unset TESTBED_WITHOUT
trap 'tests/testbed.sh down >/dev/null 2>&1 || true' EXIT
step "tests/testbed.sh up"
envfile=$(mktemp)
tests/testbed.sh up >"$envfile"
# shellcheck disable=SC1090
source "$envfile"
rm -f "$envfile"

step "integration and end-to-end tests"
# Every binary runs even when one fails: a failure must not hide what else is broken.
cargo test --no-fail-fast --test '*'
