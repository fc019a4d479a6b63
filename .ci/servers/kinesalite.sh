#!/usr/bin/env bash
# Installs (once, into .ci/cache/) and starts kinesalite on 127.0.0.1:4570 in the background;
# waits until it answers. Usage: .ci/servers/kinesalite.sh -> prints the pid; log in
# .ci/cache/kinesalite.log. Tests read KINESALITE_ENDPOINT (default http://127.0.0.1:4570).
set -euo pipefail
. "$(dirname "$0")/npm-lib.sh"
PORT=${KINESALITE_PORT:-4570}
if answering "$PORT"; then echo "kinesalite already answering on :$PORT"; exit 0; fi
DIR=$(npm_install kinesalite kinesalite@3.3.3 cli.js)
# --shardLimit: the default (10 shards per account) is soon used up by the tests' streams.
nohup node "$DIR/cli.js" --host 127.0.0.1 --port "$PORT" \
  --createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0 --shardLimit 100000 > "$ROOT/.ci/cache/kinesalite.log" 2>&1 &
wait_answering kinesalite "$PORT" $!
