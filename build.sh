#!/usr/bin/env bash
# Builds the filter to dist/, or runs one of the project's jobs.
#
#   ./build.sh          build dist/sliding_window_rate_limit.wasm and its .meta.json
#   ./build.sh demo     build everything, then run the model server and the local
#                       gateway with kong/kong.yml and send traffic through it
#   ./build.sh test     build what the tests need, then run every check CI runs:
#                       formatting, clippy for wasm32 and the host, the Rust
#                       tests, the Pulumi program's tests and the compose file
#   ./build.sh bench    build in release mode and run the benchmarks (see
#                       BENCHMARKS.md); extra arguments go to bench-runner
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

# Installs a Debian package when its command is missing.
ensure_command() {
    local command=$1 package=$2
    command -v "$command" >/dev/null 2>&1 && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: $command not found and apt-get is unavailable; install $package" >&2
        return 1
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing $package (for $command)"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$package" >/dev/null
}

step() {
    echo
    echo "== $*"
}

run_checks() {
    build_filter

    step "cargo fmt --check"
    cargo fmt --all -- --check

    step "clippy for wasm32-wasip1"
    cargo clippy --release --target wasm32-wasip1 -p sliding-window-rate-limit \
        -p bench-fixture-noop -p bench-fixture-floor -- -D warnings

    step "clippy for the host"
    cargo clippy --workspace --all-targets -- -D warnings

    step "Rust tests"
    # The end-to-end tests start these two binaries.
    cargo build -p local-gateway -p model-server
    cargo test --workspace

    step "Pulumi program tests"
    examples/pulumi/run-tests.sh

    step "docker-compose config"
    ensure_command docker-compose docker-compose
    docker-compose -f examples/docker-compose.yml config -q
    echo "examples/docker-compose.yml is valid"
}

case "${1:-build}" in
build)
    build_filter
    ;;
demo)
    build_filter
    # The dev profile shares its build with the tests; dependencies are
    # optimized there (see Cargo.toml).
    cargo build -p model-server -p local-gateway -p demo
    target/debug/demo
    ;;
test)
    run_checks
    ;;
bench)
    # Builds the filter, the fixture modules and the runner in release mode,
    # then runs the benchmark; extra arguments go to bench-runner (sections,
    # --quick). The report also goes to target/bench/latest.txt.
    build_filter
    cargo build --release --target wasm32-wasip1 -p bench-fixture-noop -p bench-fixture-floor
    cargo build --release -p bench-runner -p local-gateway -p model-server
    ensure_command wrk wrk || echo "wrk is unavailable; bench-runner uses its own load generator"
    mkdir -p target/bench
    target/release/bench-runner "${@:2}" | tee target/bench/latest.txt
    ;;
*)
    echo "usage: $0 [build|demo|test|bench]" >&2
    exit 2
    ;;
esac
