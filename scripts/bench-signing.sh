#!/usr/bin/env bash
# Both threshold-ECDSA engines side by side, in one run on this machine (release build):
#
# 1. Through the whole system — a coordinator and three modules as separate processes over
#    mutual TLS on 127.0.0.1 — one 2-of-3 signer group per engine:
#      group setup  `groups create --wait` (cggmp21: aux info from the committed INSECURE
#                   test primes; generating real safe primes takes minutes more),
#      DKG          `wallets create --wait` for an ECDSA wallet,
#      warm         a presignature ready for each request (cggmp21 only; requests spaced so
#                   the pool refills),
#      cold         interactive signing, one client,
#      sustained    two clients back to back (signatures/s).
# 2. Deposits on a devnet per engine (`concord bench transfers`): request → transaction
#    accepted by anvil.
# 3. The bare engines in-process (`concord-tss`'s `engines` example) for 2-of-3, 3-of-5 and
#    5-of-9, so an operator can size a group.
# Then prints one table of everything.
#
# Usage: scripts/bench-signing.sh [SECONDS]   (default 30; per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
install_build_deps
install_node
secs="${1:-30}"
say "building (release)"
cargo build --release --quiet -p concord
cargo build --release --quiet -p concord-tss --example engines
bin="$PWD/target/release/concord"
fixtures="$PWD/crates/tss/tests/fixtures"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { python3 -c 'import time; print(int(time.time()*1000))'; }
grpc="127.0.0.1:$(port)"; http="127.0.0.1:$(port)"
export CONCORD_URL="https://$http" CONCORD_TOKEN_FILE="$work/c/admin.token" CONCORD_LOG=warn
init=$("$bin" coordinator init --dir "$work/c" --grpc-listen "$grpc" --http-listen "$http" --json)
key=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["identity"])' "$init")
# The CLI pins the API certificate `coordinator init` made.
CONCORD_API_PIN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["api_fingerprint"])' "$init")
export CONCORD_API_PIN
"$bin" coordinator run --config "$work/c" 2>"$work/c.log" & pids+=($!)
# The policy's admin and the trader who requests the signatures.
pub() { "$bin" keys show --key "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["public_key"])'; }
"$bin" keys new --out "$work/admin.key" >/dev/null
"$bin" keys new --out "$work/trader.key" >/dev/null
admin=$(pub "$work/admin.key"); trader=$(pub "$work/trader.key")
export CONCORD_KEY_FILE="$work/trader.key"
for i in 1 2 3; do
  export "CONCORD_BENCH_PASS_M$i=bench passphrase $i"
  "$bin" module init --dir "$work/m$i" --id "m$i" --coordinator "$grpc" --coordinator-key "$key" \
    --passphrase-env "CONCORD_BENCH_PASS_M$i" --admin "$admin" --admin-quorum 1 --json >"$work/m$i.json" 2>/dev/null
done
until "$bin" modules list >/dev/null 2>&1; do sleep 0.2; done
for i in 1 2 3; do
  "$bin" modules enroll --info "$work/m$i.json" >/dev/null
  for j in 1 2 3; do
    [ "$i" = "$j" ] && continue
    peer=$(python3 -c "import json; print(json.load(open('$work/m$j.json'))['identity'])")
    "$bin" module pin --config "$work/m$i" --peer "$peer" >/dev/null
  done
  "$bin" module preload-primes --config "$work/m$i" --group bench-cggmp21 --file "$fixtures/INSECURE-primes-$((i-1)).bin" >/dev/null
  "$bin" module run --config "$work/m$i" 2>"$work/m$i.log" & pids+=($!)
done
until [ "$("$bin" modules list --json | python3 -c 'import json,sys; print(sum(m["connected"] for m in json.load(sys.stdin)))')" = 3 ]; do sleep 0.2; done

wallets=()
for engine in dkls23 cggmp21; do
  g="bench-$engine"
  say "$engine: group setup and DKG"
  t0=$(now_ms)
  "$bin" groups create --id "$g" --threshold 2 --members m1,m2,m3 --engine "$engine" --wait >/dev/null
  t1=$(now_ms)
  wallet=$("$bin" wallets create --group "$g" --scheme ecdsa-secp256k1 --wait --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  t2=$(now_ms)
  echo "{\"group_setup_ms\": $((t1 - t0)), \"dkg_ms\": $((t2 - t1))}" >"$work/$engine-setup.json"
  # The policy names the trader and lets this wallet sign raw messages.
  wallets+=("$wallet")
  { printf 'admin_quorum = 1\n[[principals]]\nname = "admin"\nkey = "%s"\nroles = ["admin"]\n' "$admin"
    printf '[[principals]]\nname = "trader"\nkey = "%s"\nroles = ["trader"]\n' "$trader"
    for w in "${wallets[@]}"; do
      printf '[[wallets]]\nwallet = "%s"\nlabel = "%s"\n[wallets.purpose]\nkind = "trading"\nraw_messages = true\n' "$w" "w-${w:0:8}"
    done; } >"$work/policy.toml"
  hash=$("$bin" policy propose --file "$work/policy.toml" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
  "$bin" policy approve --key "$work/admin.key" "$hash" >/dev/null
  until "$bin" policy show "$hash" --json | python3 -c 'import json,sys; sys.exit(0 if all(m["policy_hash"] == sys.argv[1] for m in json.load(sys.stdin)["modules"]) else 1)' "$hash"; do sleep 0.2; done
  if [ "$engine" = cggmp21 ]; then
    say "$engine: letting the presignature pool fill, then warm signing ($secs s)"
    sleep 12
    "$bin" bench sign --wallet "$wallet" --duration "$secs" --pause-ms 1500 --json >"$work/$engine-warm.json"
  fi
  say "$engine: cold, interactive signing, one client ($secs s)"
  "$bin" bench sign --wallet "$wallet" --duration "$secs" --mode interactive --json >"$work/$engine-cold.json"
  say "$engine: sustained, two clients back to back ($secs s)"
  "$bin" bench sign --wallet "$wallet" --duration "$secs" --concurrency 2 --json >"$work/$engine-load.json"
done
cleanup_system() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
cleanup_system

for engine in dkls23 cggmp21; do
  say "$engine: deposits on a devnet (request → transaction accepted by anvil)"
  "$bin" bench transfers --dir "$work/devnet-$engine" --engine "$engine" --insecure-test-primes \
    --count 20 --interval 1 --json >"$work/$engine-transfers.json"
done

say "the bare engines, in-process (2-of-3, 3-of-5, 5-of-9; 10 s of signing each)"
./target/release/examples/engines --seconds 10 --json >"$work/engines.json"

python3 - "$work" <<'EOF'
import json, sys, os
w = sys.argv[1]
def load(name):
    p = os.path.join(w, name)
    return json.load(open(p)) if os.path.exists(p) else None
def row(report, kind):
    for r in (report or {}).get("rows", []):
        if r["kind"].startswith(kind):
            return r
    return {}
def ms(v):
    return "—" if v is None else (f"{v/1000:.2f} s" if v >= 1000 else f"{v:.1f} ms")
def rate(v):
    return "—" if v is None else f"{v:.1f}/s"
engines = ["dkls23", "cggmp21"]
setup = {e: load(f"{e}-setup.json") or {} for e in engines}
warm = {e: row(load(f"{e}-warm.json"), "warm") for e in engines}
cold = {e: row(load(f"{e}-cold.json"), "cold") for e in engines}
load_all = {e: row(load(f"{e}-load.json"), "all") for e in engines}
dep = {e: row(load(f"{e}-transfers.json"), "deposit: request → tx accepted") for e in engines}
bare = {(r["engine"], r["group"]): r for r in (load("engines.json") or {}).get("rows", [])}
print()
print("| 2-of-3, same run | DKLs23 | cggmp21 |")
print("|---|---|---|")
lines = [
    ("group setup, system (groups create --wait)", lambda e: ms(setup[e].get("group_setup_ms")) + ("" if e == "dkls23" else " (+ safe primes: minutes)")),
    ("DKG, system (wallets create --wait)", lambda e: ms(setup[e].get("dkg_ms"))),
    ("cold sign p50, system (1 client)", lambda e: ms(cold[e].get("p50_ms"))),
    ("warm sign p50, system (presignature ready)", lambda e: ms(warm[e].get("p50_ms")) if warm[e] else "— (no presignatures)"),
    ("sustained, system (2 clients)", lambda e: rate(load_all[e].get("per_second"))),
    ("deposit request → tx accepted p50 (anvil)", lambda e: ms(dep[e].get("p50_ms"))),
    ("DKG, bare engine", lambda e: ms(bare.get((e, "2-of-3"), {}).get("dkg_ms"))),
    ("cold sign p50, bare engine", lambda e: ms(bare.get((e, "2-of-3"), {}).get("cold_sign_ms"))),
    ("warm sign p50, bare engine (online step)", lambda e: ms(bare.get((e, "2-of-3"), {}).get("warm_sign_ms"))),
    ("sustained, bare engine (2 loops)", lambda e: rate(bare.get((e, "2-of-3"), {}).get("sustained_per_s"))),
]
for name, f in lines:
    print(f"| {name} | {f('dkls23')} | {f('cggmp21')} |")
print()
print("| bare engine | group | DKG | cold sign p50 | presignature p50 | warm sign p50 | sustained (2 loops) |")
print("|---|---|---|---|---|---|---|")
for (e, g), r in bare.items():
    if "dkg_ms" not in r:
        print(f"| {e} | {g} | {r.get('note', '')} | | | | |")
        continue
    print(f"| {e} | {g} | {ms(r['dkg_ms'])} | {ms(r['cold_sign_ms'])} | {ms(r.get('presign_ms'))} | {ms(r.get('warm_sign_ms'))} | {rate(r['sustained_per_s'])} |")
EOF
