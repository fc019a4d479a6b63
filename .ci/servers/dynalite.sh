#!/usr/bin/env bash
# Installs (once, into .ci/cache/) and starts dynalite on 127.0.0.1:4571 in the background;
# waits until it answers. Usage: .ci/servers/dynalite.sh -> prints the pid; log in
# .ci/cache/dynalite.log. Tests read SWITCHYARD_DYNAMODB_ENDPOINT (default http://127.0.0.1:4571).
set -euo pipefail
. "$(dirname "$0")/npm-lib.sh"
PORT=${DYNALITE_PORT:-4571}
if answering "$PORT"; then echo "dynalite already answering on :$PORT"; exit 0; fi
DIR=$(npm_install dynalite dynalite@3.2.2 cli.js)
nohup node "$DIR/cli.js" --host 127.0.0.1 --port "$PORT" \
  --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 > "$ROOT/.ci/cache/dynalite.log" 2>&1 &
wait_answering dynalite "$PORT" $!
