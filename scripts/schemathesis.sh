#!/usr/bin/env bash
# Schemathesis against a real coordinator: the coordinator runs as its own process (a fresh
# SQLite database, a free port on 127.0.0.1), and schemathesis reads its OpenAPI document
# from `GET /v1/openapi.json` and calls every operation with an admin token: every check,
# every phase (examples, coverage, fuzzing and the stateful phase, which chains operations
# through the links it infers). Any finding fails the script. Its configuration and hooks
# (what it must know that the document cannot say) are in scripts/schemathesis/.
#
#   ./scripts/schemathesis.sh
#
# Environment: CONCORD_BIN (the `concord` binary; default target/debug/concord, built if
# missing), ST_MAX_EXAMPLES (test cases per operation and phase, default 150: about a minute
# and a half on 2 cores), ST_SEED (the run's seed, to replay one; default, a fresh one,
# printed). The run's reports (JUnit, NDJSON) are written to $target/schemathesis-report.
# schemathesis itself is installed with pip into its own venv, $target/schemathesis-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Pinned: a new schemathesis brings new checks and generators; take them in on purpose.
SCHEMATHESIS_VERSION=4.32.5

target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
target=$(cd "$target" && pwd)
concord=${CONCORD_BIN:-$target/debug/concord}
venv=$target/schemathesis-venv
report=$target/schemathesis-report

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install_schemathesis() {
  if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" = "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    return 0
  fi
  say "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  rm -rf "$venv"
  install_python_venv
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

# Starts a coordinator in a fresh directory under $work and waits until it serves. Sets:
#   API_BASE    the API's base URL
#   API_VERIFY  how a client verifies the API's TLS certificate: "" (plain HTTP), the file
#               of the certificate to trust (the coordinator's pinned self-signed one), or
#               "false" (TLS, unverified); schemathesis takes it as --tls-verify, curl as
#               --cacert or -k (api_tls below)
#   API_TOKEN   the admin API token `coordinator init` made
#   COORDINATOR_PID
# This is the one place that knows how the API is served: plain HTTP on loopback, which the
# coordinator serves only when asked (`init --insecure-http`; it serves HTTPS by default).
# For HTTPS, drop the flag and set API_VERIFY= to "$dir/api.crt" (the self-signed
# certificate `init` writes) or "false" (the scheme follows it).
start_coordinator() {
  local dir=$work/coordinator http grpc
  local plain_http=(--insecure-http)
  API_VERIFY=""
  http=127.0.0.1:$(free_port)
  grpc=127.0.0.1:$(free_port)
  "$concord" coordinator init --dir "$dir" --http-listen "$http" --grpc-listen "$grpc" \
    "${plain_http[@]}" --json >"$work/init.json"
  API_BASE=$([ -n "$API_VERIFY" ] && echo https || echo http)://$http
  API_TOKEN=$(cat "$dir/admin.token")
  say "starting the coordinator on $API_BASE (log: $work/coordinator.log)"
  RUST_LOG=${RUST_LOG:-warn} "$concord" coordinator run --config "$dir" >"$work/coordinator.log" 2>&1 &
  COORDINATOR_PID=$!
  local tries=0
  until curl -fsS $(api_tls curl) -o /dev/null "$API_BASE/v1/health" 2>/dev/null; do
    if ! kill -0 "$COORDINATOR_PID" 2>/dev/null; then
      cat "$work/coordinator.log" >&2
      echo "the coordinator exited before serving" >&2
      return 1
    fi
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ]; then
      cat "$work/coordinator.log" >&2
      echo "the coordinator did not serve $API_BASE/v1/health within 30 s" >&2
      return 1
    fi
    sleep 0.1
  done
}

# API_VERIFY as `curl` or `schemathesis` options (none for plain HTTP). Word-split by the
# caller: the work directory's path has no spaces.
api_tls() {
  case "$1:$API_VERIFY" in
    *:) ;;
    curl:false) echo -k ;;
    curl:*) echo --cacert "$API_VERIFY" ;;
    schemathesis:*) echo --tls-verify "$API_VERIFY" ;;
  esac
}

stop_coordinator() {
  if [ -n "${COORDINATOR_PID:-}" ]; then
    kill "$COORDINATOR_PID" 2>/dev/null || true
    wait "$COORDINATOR_PID" 2>/dev/null || true
    COORDINATOR_PID=""
  fi
}

cleanup() {
  stop_coordinator
  rm -rf "$work"
}

if [ ! -x "$concord" ]; then
  say "building concord"
  cargo build --workspace --all-features --bin concord
fi
install_schemathesis

work=$(mktemp -d /tmp/concord-schemathesis.XXXXXX)
trap cleanup EXIT
start_coordinator

seed=${ST_SEED:-$(python3 -c 'import random; print(random.randrange(2**32))')}
args=(
  run "$API_BASE/v1/openapi.json"
  --header "Authorization: Bearer $API_TOKEN"
  $(api_tls schemathesis)
  --phases examples,coverage,fuzzing,stateful
  --max-examples "${ST_MAX_EXAMPLES:-150}"
  --seed "$seed"
  --workers 2
  --request-timeout 30
  --generation-database none
  --no-color
  --report junit,ndjson
  --report-dir "$report"
)
say "schemathesis ${args[*]/$API_TOKEN/<admin token>}"
start=$(date +%s)
status=0
SCHEMATHESIS_HOOKS=$PWD/scripts/schemathesis/hooks.py SCHEMATHESIS_CACHE_DIR=$target/schemathesis-cache \
  "$venv/bin/schemathesis" --config-file scripts/schemathesis/schemathesis.toml "${args[@]}" || status=$?
say "schemathesis took $(($(date +%s) - start)) s (seed $seed), exit $status"
if [ "$status" -ne 0 ]; then
  echo "--- coordinator log (last 50 lines) ---" >&2
  tail -n 50 "$work/coordinator.log" >&2 || true
fi
exit "$status"
