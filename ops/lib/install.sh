# Installs what the tests need when it is missing; a second run installs nothing. Sourced.
# Requires common.sh.

# Debian packages: clang and libclang for RocksDB's bindgen, curl for readiness probes.
APT_PACKAGES=(clang libclang-dev curl python3-venv)
S3S_FS_VERSION=0.14.1
# The HTTP load generator of ops/bench/api (fixed-rate, latency percentiles, JSON report).
OHA_VERSION=1.16.0

install_apt() {
  local missing=()
  for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# A stamp file holds the hash of the lock file the tree was installed from.
stamp_matches() { [ -f "$2" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$(cat "$2")" ]; }
write_stamp() { sha256sum "$1" | cut -d' ' -f1 >"$2"; }

install_python() {
  local dir="$STOWAGE_ROOT/ops/services" venv="$STOWAGE_ROOT/ops/services/.venv"
  stamp_matches "$dir/requirements.txt" "$venv/.stowage-stamp" && return 0
  say "installing Python test services (moto, fake-gcs-server, azure-storage-blob) and schemathesis into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$dir/requirements.txt"
  write_stamp "$dir/requirements.txt" "$venv/.stowage-stamp"
}

install_node() {
  local dir="$STOWAGE_ROOT/ops/services"
  stamp_matches "$dir/package-lock.json" "$dir/node_modules/.stowage-stamp" && return 0
  command -v npm >/dev/null 2>&1 || die "npm is missing: install Node.js 20 or later"
  say "installing Node.js test services (Azurite, oidc-provider) into $dir/node_modules"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  write_stamp "$dir/package-lock.json" "$dir/node_modules/.stowage-stamp"
}

install_cargo_tools() {
  cargo_path
  if ! command -v cargo-nextest >/dev/null 2>&1; then
    say "installing cargo-nextest"
    cargo install --locked cargo-nextest
  fi
  if ! s3s-fs --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
    say "installing s3s-fs $S3S_FS_VERSION (S3 server that checks signatures)"
    cargo install --locked s3s-fs --version "$S3S_FS_VERSION" --features binary
  fi
}

# Only ops/bench/api needs it; the test suite does not.
install_oha() {
  cargo_path
  if ! oha --version 2>/dev/null | grep -q "$OHA_VERSION"; then
    say "installing oha $OHA_VERSION (HTTP load generator)"
    cargo install --locked oha --version "$OHA_VERSION"
  fi
}

install_test_dependencies() {
  install_apt
  install_python
  install_node
  install_cargo_tools
}
