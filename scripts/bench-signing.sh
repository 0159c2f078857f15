#!/usr/bin/env bash
# Measures signing through the whole system: a coordinator and three modules as separate
# processes over mutual TLS on 127.0.0.1, a 2-of-3 ECDSA wallet, then `concord bench sign`:
#   warm  — a presignature is ready for each request (requests spaced so the pool refills),
#   cold  — interactive signing,
#   load  — two clients back to back for the whole duration (sustained throughput),
# and, in the same run, the bare threshold engine for comparison.
# The signer group uses the committed INSECURE test primes (fine for timing, never for keys).
#
# Usage: scripts/bench-signing.sh [SECONDS]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
install_build_deps
secs="${1:-60}"
say "building (release)"
cargo build --release --quiet -p concord
bin="$PWD/target/release/concord"
fixtures="$PWD/crates/tss/tests/fixtures"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc="127.0.0.1:$(port)"; http="127.0.0.1:$(port)"
export CONCORD_URL="http://$http" CONCORD_TOKEN_FILE="$work/c/admin.token" CONCORD_LOG=warn
key=$("$bin" coordinator init --dir "$work/c" --grpc-listen "$grpc" --http-listen "$http" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["identity"])')
"$bin" coordinator run --config "$work/c" 2>"$work/c.log" & pids+=($!)
for i in 1 2 3; do
  export "CONCORD_BENCH_PASS_M$i=bench passphrase $i"
  "$bin" module init --dir "$work/m$i" --id "m$i" --coordinator "$grpc" --coordinator-key "$key" \
    --passphrase-env "CONCORD_BENCH_PASS_M$i" --json >"$work/m$i.json" 2>/dev/null
done
until "$bin" modules list >/dev/null 2>&1; do sleep 0.2; done
for i in 1 2 3; do
  "$bin" modules enroll --info "$work/m$i.json" >/dev/null
  for j in 1 2 3; do
    [ "$i" = "$j" ] && continue
    peer=$(python3 -c "import json; print(json.load(open('$work/m$j.json'))['identity'])")
    "$bin" module pin --config "$work/m$i" --peer "$peer" >/dev/null
  done
  "$bin" module preload-primes --config "$work/m$i" --group bench --file "$fixtures/INSECURE-primes-$((i-1)).bin" >/dev/null
  "$bin" module run --config "$work/m$i" 2>"$work/m$i.log" & pids+=($!)
done
say "creating the signer group and a 2-of-3 ECDSA wallet"
"$bin" groups create --id bench --threshold 2 --members m1,m2,m3 --wait >/dev/null
wallet=$("$bin" wallets create --group bench --scheme ecdsa-secp256k1 --wait --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
say "letting the presignature pool fill"
sleep 12
say "warm: one client, requests 1.5 s apart so a presignature is ready ($secs s)"
"$bin" bench sign --wallet "$wallet" --duration "$secs" --pause-ms 1500
say "cold: interactive signing, one client ($secs s)"
"$bin" bench sign --wallet "$wallet" --duration "$secs" --mode interactive
say "load: two clients back to back ($secs s), and the bare engine in the same run"
"$bin" bench sign --wallet "$wallet" --duration "$secs" --concurrency 2 --raw-fixtures "$fixtures"
