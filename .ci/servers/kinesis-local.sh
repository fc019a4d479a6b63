#!/usr/bin/env bash
# Installs (once, into .ci/cache/) and starts kinesis-local (etspaceman/kinesis-mock built for
# Node) on 127.0.0.1:4568 (http; 4567 https), in the background; waits until it answers.
# Usage: .ci/servers/kinesis-local.sh            -> prints the pid; log in .ci/cache/kinesis-local.log
# Tests read KINESIS_LOCAL_ENDPOINT (default http://127.0.0.1:4568).
set -euo pipefail
. "$(dirname "$0")/npm-lib.sh"
PORT=${KINESIS_LOCAL_PORT:-4568}
TLS_PORT=${KINESIS_LOCAL_TLS_PORT:-4567}
if answering "$PORT"; then echo "kinesis-local already answering on :$PORT"; exit 0; fi
KM=$(npm_install kinesis-local kinesis-local@0.6.2 main.js)
# Without KINESIS_MOCK_CERT_PATH it dies at start with `ENOENT server.json`.
KINESIS_MOCK_CERT_PATH=$KM/server.json KINESIS_MOCK_PLAIN_PORT=$PORT KINESIS_MOCK_TLS_PORT=$TLS_PORT \
CREATE_STREAM_DURATION=100ms DELETE_STREAM_DURATION=100ms SPLIT_SHARD_DURATION=100ms \
MERGE_SHARDS_DURATION=100ms LOG_LEVEL=WARN \
  nohup node "$KM/main.js" > "$ROOT/.ci/cache/kinesis-local.log" 2>&1 &
wait_answering kinesis-local "$PORT" $!
