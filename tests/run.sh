#!/usr/bin/env bash
# Runs every test: format, lints, unit tests, then the integration and end-to-end tests against a
# fresh local testbed (real kube-apiserver, controller-manager, scheduler, KWOK, Nacos servers).
# The testbed is always torn down, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "unit tests"
cargo test --lib --bins

step "build integration tests"
cargo test --tests --no-run

# A testbed of its own, so a developer's running testbed (or demo) is neither reused nor stopped.
export TESTBED_STATE=${TESTBED_STATE:-/tmp/nacos-reconciler-testbed-tests-$$}
trap 'tests/testbed.sh down >/dev/null 2>&1 || true' EXIT
step "tests/testbed.sh up"
envfile=$(mktemp)
tests/testbed.sh up >"$envfile"
# shellcheck disable=SC1090
source "$envfile"
rm -f "$envfile"

step "integration and end-to-end tests"
cargo test --test '*'
