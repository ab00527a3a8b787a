# Sourced by bench/run.sh and bench/cases.sh: the release builds a benchmark runs, from the current
# directory. Each function prints the binary's path and fails when the build does.

# build_operator: the operator as the image ships it, static x86_64 musl (its memory is measured on
# musl's allocator, not glibc's).
build_operator() {
  rustup target list --installed | grep -qx x86_64-unknown-linux-musl ||
    rustup target add x86_64-unknown-linux-musl >&2 || return 1
  command -v musl-gcc >/dev/null || { echo "musl-gcc is missing: apt-get install musl-tools" >&2; return 1; }
  cargo build --release --locked --target x86_64-unknown-linux-musl --bin nacos-reconciler >&2 || return 1
  echo "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/nacos-reconciler"
}

# build_harness NAME: the harness of `[[bench]] name = NAME` in Cargo.toml.
build_harness() {
  local log
  log=$(mktemp)
  cargo build --release --locked --bench "$1" --message-format=json-render-diagnostics >"$log" || { rm -f "$log"; return 1; }
  python3 - "$log" "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[2] and m.get("executable"):
        print(m["executable"])
PY
  rm -f "$log"
}
