#!/usr/bin/env bash
# The main demo: installs what the build needs, then runs the threshold-signing demo
# (2-of-3 wallets of every scheme, signed and independently verified). Pass
# --insecure-test-primes to skip safe-prime generation (test material, never production).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
install_build_deps
say "building (release; the first build takes a few minutes)"
cargo build --release --quiet -p concord-tss --example demo
exec ./target/release/examples/demo "$@"
