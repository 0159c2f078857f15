#!/usr/bin/env bash
# Regenerates ConcordTestToken.bin (creation bytecode, hex) and ConcordTestToken.abi.json
# from ConcordTestToken.sol with solc-js from npm. Run it after editing the contract; the
# outputs are committed so the Rust build needs no Solidity compiler.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
SOLC_VERSION="${SOLC_VERSION:-0.8.26}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/ConcordTestToken.sol" "$work/"
cd "$work"
# solcjs names its outputs after the source path and the contract.
npx --yes "solc@${SOLC_VERSION}" --optimize --optimize-runs 200 --bin --abi \
    --output-dir out ConcordTestToken.sol
bin="$(ls out/*ConcordTestToken.bin)"
abi="$(ls out/*ConcordTestToken.abi)"
tr -d '\n' < "$bin" > "$here/ConcordTestToken.bin"
cp "$abi" "$here/ConcordTestToken.abi.json"
echo "wrote $here/ConcordTestToken.bin ($(wc -c < "$here/ConcordTestToken.bin") hex chars) with solc ${SOLC_VERSION}"
