#!/usr/bin/env bash
# Long, coverage-guided runs of the fuzz harnesses (crates/*/tests/fuzz.rs), on stable Rust.
#
# Usage:
#   scripts/fuzz.sh list                 the harnesses, one per line (crate harness)
#   scripts/fuzz.sh [HARNESS|all] [SECS]  run one harness, or each in turn, SECS seconds each
#                                         (default: all, 600 s)
#
# The harnesses are bolero targets. `cargo test`/`cargo nextest` runs them as ordinary tests
# with a bounded number of generated cases (and replays tests/__fuzz__/HARNESS/crashes);
# this script runs the same targets under bolero's libFuzzer engine, on stable Rust:
#   - the crate's `fuzz` test target is built with cargo-bolero's libFuzzer flags (`--cfg
#     fuzzing --cfg fuzzing_libfuzzer`, `-Cpasses=sancov-module` and the
#     `-Cllvm-args=-sanitizer-coverage-*` options, all stable) and no sanitizer
#     (AddressSanitizer needs nightly's -Zsanitizer; safe Rust needs it least), in the
#     workspace's `fuzz` profile (release with overflow checks and debug assertions), in
#     $CARGO_TARGET_DIR/fuzz (default target/fuzz), with one cargo job (CARGO_BUILD_JOBS);
#   - the test binary then runs the one harness with BOLERO_LIBFUZZER_ARGS, as
#     `cargo bolero test HARNESS -p CRATE --engine libfuzzer --sanitizer NONE -T SECSs` does.
# (cargo-bolero itself cannot build these: it builds every test target of the package, and
# the other test targets do not link libFuzzer, so their links fail on __sancov symbols.)
# The first build instruments every dependency and takes a long while; later runs reuse it.
#
# Per harness it prints the executions, executions per second and findings. A finding is an
# input libFuzzer saved under crates/CRATE/tests/__fuzz__/HARNESS/crashes (a panic, a failed
# property, a timeout or running out of memory); commit it once fixed, and every `cargo test`
# replays it. The corpus lives in $CARGO_TARGET_DIR/fuzz-corpus/HARNESS and grows run after
# run. The full libFuzzer output of each run is in $CARGO_TARGET_DIR/fuzz-logs/HARNESS.log.
# Exit status: 0 when no harness found anything, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

# Exactly cargo-bolero 0.13's libFuzzer flags (same flags, same build cache).
FUZZ_RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module --cfg fuzzing_libfuzzer -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
HARNESSES=(
  "concord-wire signing_payload"
  "concord-wire sealed_relay"
  "concord-wire signed_intent"
  "concord-wire signed_policy"
  "concord-wire approval_certificate"
  "concord-wire grpc_messages"
  "concord-wire finished_signature"
  "concord-tss protocol_envelope"
  "concord-exchange withdraw_request"
  "concord-exchange exchange_answers"
  "concord-exchange cdp_claims"
  "concord-chain utxo_spend"
)

which="${1:-all}"
secs="${2:-600}"

if [[ "$which" == list ]]; then
  printf '%s\n' "${HARNESSES[@]}"
  exit 0
fi
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "seconds must be a whole number: $secs" >&2; exit 2; }

selected=()
for h in "${HARNESSES[@]}"; do
  if [[ "$which" == all || "$which" == "${h#* }" ]]; then selected+=("$h"); fi
done
if [[ ${#selected[@]} -eq 0 ]]; then
  echo "unknown harness $which; known:" >&2
  printf '  %s\n' "${HARNESSES[@]#* }" >&2
  exit 2
fi

target="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
mkdir -p "$target/fuzz-logs"

found_any=0
summary=()
for h in "${selected[@]}"; do
  crate="${h% *}"
  name="${h#* }"
  dir="crates/${crate#concord-}"
  crashes="$dir/tests/__fuzz__/$name/crashes"
  corpus="$target/fuzz-corpus/$name"
  log="$target/fuzz-logs/$name.log"
  mkdir -p "$crashes" "$corpus"
  before=$(find "$crashes" -type f | wc -l)
  marker="$target/fuzz-logs/.$name.start"
  touch "$marker"
  echo "== $name ($crate), $secs s"
  start=$(date +%s)
  echo "   building $crate's fuzz target (instrumented)"
  exe=$(RUSTFLAGS="$FUZZ_RUSTFLAGS" BOLERO_FUZZER=libfuzzer cargo test -p "$crate" --test fuzz \
    --no-run --profile fuzz --target "$TRIPLE" --target-dir "$target/fuzz" \
    --message-format=json 2>"$log.build" |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
  if [[ -z "$exe" || ! -x "$exe" ]]; then
    echo "   the build failed; see $log.build" >&2
    tail -20 "$log.build" >&2
    summary+=("$(printf '%-22s %-18s build failed' "$name" "$crate")")
    found_any=1
    continue
  fi
  set +e
  BOLERO_TEST_NAME="$name" BOLERO_LIBTEST_HARNESS=1 \
    BOLERO_LIBFUZZER_ARGS="$corpus $crashes -artifact_prefix=$crashes/ -timeout=10 -max_total_time=$secs" \
    "$exe" "$name" --exact --nocapture --quiet --test-threads 1 >"$log" 2>&1
  rc=$?
  set -e
  elapsed=$(( $(date +%s) - start ))
  # libFuzzer's last status line: "#N DONE cov: .. exec/s: R .." (or the last "#N ..." line
  # when a finding stopped it), then "Done N runs in S second(s)".
  runs=$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 | awk '{print $2}')
  took=$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 | awk '{print $5}')
  if [[ -z "$runs" ]]; then
    runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    took=$elapsed
  fi
  runs=${runs:-0}
  took=${took:-$elapsed}
  rate=$(( runs / (took > 0 ? took : 1) ))
  after=$(find "$crashes" -type f | wc -l)
  findings=$(( after - before ))
  if [[ $rc -ne 0 && $findings -eq 0 ]]; then
    # The fuzzer stopped without saving an input: a build failure or an engine error.
    echo "   $name stopped (exit $rc) without a finding; see $log" >&2
    tail -20 "$log" >&2
    findings="error"
  fi
  if [[ "$findings" != 0 ]]; then found_any=1; fi
  line=$(printf '%-22s %-18s %6ss %12s execs %8s/s  findings: %s' \
    "$name" "$crate" "$took" "$runs" "$rate" "$findings")
  echo "$line"
  if [[ "$findings" != 0 && "$findings" != error ]]; then
    find "$crashes" -type f -newer "$marker" | head -5 | sed 's/^/   saved: /'
    grep -m1 -A12 -E 'panicked at|Test Failure' "$log" | sed 's/^/   /' || true
  fi
  summary+=("$line")
done

echo
echo "harness                crate               time        executions    rate   findings"
printf '%s\n' "${summary[@]}"
exit $found_any
