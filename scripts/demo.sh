#!/usr/bin/env bash
# The main demo: `concord devnet demo` on a fresh local devnet — anvil, the exchange
# simulator, the coordinator and three secure modules as separate processes over mutual TLS —
# a 2-of-3 wallet by DKG, funding, a deposit to the exchange, a withdrawal back signed by the
# sharded exchange key, and the forged-deposit-address attack; then native multisig on a
# Litecoin regtest node (litecoind) and a Safe: each module signing with its own key.
# Exits 0 only if all held.
#
#   ./scripts/demo.sh [--insecure-test-primes] [--json] [--down] [--dir DIR]
#
# Real safe primes by default (a few minutes on 2 cores, with progress);
# --insecure-test-primes uses the committed test primes (tests only).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
install_build_deps
install_node
install_litecoind
install_softhsm
say "building concord (release)"
cargo build --release -q -p concord
exec ./target/release/concord devnet demo "$@"
