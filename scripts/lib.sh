# Shared by the scripts: installs what building Concord needs on a fresh Debian machine.

say() { printf '==> %s\n' "$*"; }

# Debian packages: m4 for GMP (built from source by cggmp21's big-integer library),
# protoc for the gRPC service definitions, g++ for Bitcoin Core's script interpreter (the
# bitcoinconsensus crate, the tests' verifier of Bitcoin spends).
install_build_deps() {
  local missing=()
  command -v m4 >/dev/null 2>&1 || missing+=(m4)
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Node.js with npm: the local chain is the real anvil, installed from its npm package
# (@foundry-rs/anvil-linux-amd64) into the cache on first use.
install_node() {
  command -v npm >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "installing nodejs and npm"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
}

# Litecoin Core (Debian's litecoind, 0.21): the UTXO chain's real node, run in -regtest by
# the tests (the adapter's spends are accepted or refused by its consensus rules).
install_litecoind() {
  [ -x /usr/lib/litecoin/litecoind ] && return 0
  [ -n "${LITECOIND_BIN:-}" ] && [ -x "$LITECOIND_BIN" ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "installing litecoind"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq litecoind >/dev/null
}

# SoftHSM 2 (Debian's softhsm2): the PKCS#11 token the HSM-backed vault and module keys are
# tested on, and the devnet's HSM module uses. Its library is libsofthsm2.so.
install_softhsm() {
  command -v softhsm2-util >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "installing softhsm2"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq softhsm2 >/dev/null
}

# Python's venv module (Debian's python3-venv; a Python built from source has it): the API
# fuzzer (schemathesis) is installed with pip into a venv of its own.
install_python_venv() {
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "installing python3-venv"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
}

# The exchanges' own or widely used client libraries the simulator is tested with, pinned,
# in a venv of their own ($CARGO_TARGET_DIR or target, /exchange-clients-venv). Exports
# CONCORD_TEST_EXCHANGE_PYTHON, the venv's python (the simulator's client tests need it and
# fail, never skip, without it).
EXCHANGE_CLIENTS="krakenex==2.2.2 coinbase-advanced-py==1.8.4"
install_exchange_clients() {
  local venv="${CARGO_TARGET_DIR:-$PWD/target}/exchange-clients-venv"
  if [ ! -f "$venv/.installed" ] || [ "$(cat "$venv/.installed")" != "$EXCHANGE_CLIENTS" ]; then
    install_python_venv
    say "installing the exchange client libraries ($EXCHANGE_CLIENTS) into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check $EXCHANGE_CLIENTS
    echo "$EXCHANGE_CLIENTS" >"$venv/.installed"
  fi
  export CONCORD_TEST_EXCHANGE_PYTHON="$venv/bin/python"
}

# A PostgreSQL cluster of the test run's own: a fresh data directory, a free port on
# 127.0.0.1, trust authentication for the local user `concord`, stopped when the script
# exits. Exports CONCORD_TEST_PG_URL (the coordinator's PostgreSQL tests and the two-
# coordinator failover test use it). PostgreSQL 15 is on the machine image; installed if not.
start_postgres() {
  local bin=/usr/lib/postgresql/15/bin
  if [ ! -x "$bin/initdb" ]; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    say "installing postgresql"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  fi
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  PG_DIR=$(mktemp -d /tmp/concord-pg.XXXXXX)
  # PostgreSQL refuses to run as root: as root, run it as the postgres system user.
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$PG_DIR"
    as=(runuser -u postgres --)
  fi
  say "starting PostgreSQL on 127.0.0.1:$port"
  "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U concord --auth=trust >/dev/null
  "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
  PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate stop)
  trap 'stop_postgres' EXIT
  export CONCORD_TEST_PG_URL="postgres://concord@127.0.0.1:$port/postgres"
}

stop_postgres() {
  if [ -n "${PG_DIR:-}" ]; then
    "${PG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
