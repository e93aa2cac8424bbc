# Shared helpers for the ops/ scripts. Sourced, not run.

STOWAGE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export STOWAGE_ROOT
# Where test services keep their data, logs, PIDs and the env file the tests read.
STOWAGE_TEST_STATE=${STOWAGE_TEST_STATE:-$STOWAGE_ROOT/target/test-services}
export STOWAGE_TEST_STATE

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[33mwarning: %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31merror: %s\033[0m\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (no sudo found)"; fi
}

# Makes cargo's bin folder reachable for tools installed with `cargo install`.
cargo_path() {
  local bin="${CARGO_HOME:-$HOME/.cargo}/bin"
  case ":$PATH:" in *":$bin:"*) ;; *) PATH="$bin:$PATH"; export PATH ;; esac
}
