#!/usr/bin/env bash
# Installs (once, into .ci/cache/) and starts dynalite on 127.0.0.1:4571 in the background;
# waits until it answers. Usage: .ci/servers/dynalite.sh -> prints the pid; log in
# .ci/cache/dynalite.log. Tests read SWITCHYARD_DYNAMODB_ENDPOINT (default http://127.0.0.1:4571).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=$ROOT/.ci/cache/node-dynalite
PORT=${DYNALITE_PORT:-4571}
if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
  echo "dynalite already answering on :$PORT"; exit 0
fi
if [ ! -f "$CACHE/node_modules/dynalite/cli.js" ]; then
  mkdir -p "$CACHE"
  ( cd "$CACHE" && { [ -f package.json ] || npm init -y >/dev/null; } && \
    npm install --no-audit --no-fund dynalite@3.2.2 >/dev/null )
fi
nohup node "$CACHE/node_modules/dynalite/cli.js" --host 127.0.0.1 --port "$PORT" \
  --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 > "$ROOT/.ci/cache/dynalite.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do
  if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then echo "$PID"; exit 0; fi
  kill -0 "$PID" 2>/dev/null || { cat "$ROOT/.ci/cache/dynalite.log" >&2; exit 1; }
  sleep 0.1
done
echo "dynalite did not answer on :$PORT within 30 s" >&2; exit 1
