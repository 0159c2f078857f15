# Shared by the scripts: installs what building Concord needs on a fresh Debian machine.

say() { printf '==> %s\n' "$*"; }

# Debian packages: m4 for GMP (built from source by cggmp21's big-integer library),
# protoc for the gRPC service definitions.
install_build_deps() {
  local missing=()
  command -v m4 >/dev/null 2>&1 || missing+=(m4)
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
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
