#!/usr/bin/env bash
# Every test, on both architectures: host (x86-64) first, then aarch64 under
# qemu-user.  Stops at the first failure.
#   ci/test.sh            everything
#   ci/test.sh host       host only
#   ci/test.sh aarch64    aarch64 only
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
ci/setup.sh

QEMU="qemu-aarch64 -L /usr/aarch64-linux-gnu"

host() {
    echo "==== host ($(uname -m)): cargo test"
    cargo test --all-features
    echo "==== host: benches and examples build"
    cargo build --release --benches --examples
    echo "==== host: demo"
    cargo run --release --quiet --example demo >/dev/null
    bash ci/c.sh host
}

aarch64() {
    echo "==== aarch64 (qemu): cargo test"
    GSTACK_TEST_RUNNER="$QEMU" cargo test --all-features --target aarch64-unknown-linux-gnu
    echo "==== aarch64 (qemu): demo"
    cargo run --release --quiet --target aarch64-unknown-linux-gnu --example demo >/dev/null
    bash ci/c.sh aarch64
}

case "$what" in
    all) host; aarch64 ;;
    host) host ;;
    aarch64) aarch64 ;;
    *) echo "usage: ci/test.sh [all|host|aarch64]" >&2; exit 2 ;;
esac
echo "==== all tests passed ($what)"
