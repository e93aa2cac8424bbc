#!/usr/bin/env bash
# Runs schemathesis against a real `stowage server` on loopback: the server's own
# /v1/openapi.json is the contract, every operation in it gets generated requests (with the
# bootstrap admin token), and every answer must be no server error, a documented status and a
# body matching the documented schema. Stops the server by its PID, also on failure.
#
#   ops/lib/schemathesis.sh             the built target/debug/stowage (build the workspace first)
#   STOWAGE_SCHEMATHESIS_EXAMPLES=50    examples per operation (default 20: about 80 s)
#
# `./ops/test` runs it after the nextest suite. Needs the venv made by install.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$STOWAGE_ROOT"

binary="${CARGO_TARGET_DIR:-$STOWAGE_ROOT/target}/debug/stowage"
schemathesis="$STOWAGE_ROOT/ops/services/.venv/bin/schemathesis"
examples=${STOWAGE_SCHEMATHESIS_EXAMPLES:-20}
[ -x "$binary" ] || die "$binary is missing: run \`cargo build --workspace\` first"
[ -x "$schemathesis" ] || die "$schemathesis is missing: run \`./ops/test-services up\` (it installs it)"

work=$(mktemp -d "${TMPDIR:-/tmp}/stowage-schemathesis.XXXXXX")
server_pid=
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop_server EXIT

mkdir "$work/data"
STOWAGE_LOG=${STOWAGE_LOG:-warn} "$binary" server --listen 127.0.0.1:0 --data-dir "$work/data" \
  2>"$work/server.log" &
server_pid=$!

url=
for _ in $(seq 1 300); do
  url=$(sed -n 's/^stowage server listening on \(http:[^ ]*\)$/\1/p' "$work/server.log" | head -n1)
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; die "stowage server exited"; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/server.log" >&2; die "stowage server did not start within 30 s"; }
token=$(cat "$work/data/bootstrap-token")

# A credential and a local-folder location to find, change and delete: operations on `{id}` of
# theirs are given their ids (schemathesis.toml below), so they reach past the 404.
create() {
  curl -sS --fail-with-body -H "Authorization: Bearer $token" -H 'content-type: application/json' \
    -d "$2" "$url/v1/$1" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p'
}
mkdir "$work/location"
credential=$(create credentials '{"name": "schemathesis", "spec": {"type": "s3", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "not-a-real-secret"}}') \
  || die "cannot create the credential: $credential"
location=$(create locations "{\"name\": \"schemathesis\", \"spec\": {\"location\": {\"kind\": {\"type\": \"local\", \"root\": \"$work/location\"}, \"prefix\": \"st\"}, \"passphrase\": \"a passphrase for the contract test\"}}") \
  || die "cannot create the location: $location"
[ -n "$credential" ] && [ -n "$location" ] || die "the seeded entities have no ids"
cat >"$work/schemathesis.toml" <<TOML
[[operations]]
include-path-regex = "^/v1/credentials/"
parameters = { id = "$credential" }

[[operations]]
include-path-regex = "^/v1/locations/"
parameters = { id = "$location" }
TOML

say "schemathesis against $url/v1/openapi.json ($examples examples per operation)"
status=0
# Its own folder: schemathesis keeps a cache in the working directory.
cd "$work"
"$schemathesis" --config-file "$work/schemathesis.toml" run "$url/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$examples" \
  --seed 7 \
  --generation-database none \
  --workers 2 \
  --request-timeout 5 \
  --no-color || status=$?
if [ $status -ne 0 ]; then
  warn "the server's log (warnings and errors) follows"
  tail -n 50 "$work/server.log" >&2
fi
exit $status
