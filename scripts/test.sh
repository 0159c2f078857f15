#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what the build needs (Debian packages),
# then checks formatting and lints, runs every test, and fuzzes a running coordinator's API
# against its OpenAPI document (scripts/schemathesis.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
install_build_deps
install_node
install_litecoind
install_softhsm
install_exchange_clients
start_postgres

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

say "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  cargo test --workspace --all-features --no-fail-fast
fi

say "schemathesis against a running coordinator (its OpenAPI document, every check)"
./scripts/schemathesis.sh
