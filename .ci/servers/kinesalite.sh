#!/usr/bin/env bash
# Installs (once, into .ci/cache/) and starts kinesalite on 127.0.0.1:4570 in the background;
# waits until it answers. Usage: .ci/servers/kinesalite.sh -> prints the pid; log in
# .ci/cache/kinesalite.log. Tests read KINESALITE_ENDPOINT (default http://127.0.0.1:4570).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=$ROOT/.ci/cache/node-kinesalite
PORT=${KINESALITE_PORT:-4570}
if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
  echo "kinesalite already answering on :$PORT"; exit 0
fi
if [ ! -f "$CACHE/node_modules/kinesalite/cli.js" ]; then
  mkdir -p "$CACHE"
  ( cd "$CACHE" && { [ -f package.json ] || npm init -y >/dev/null; } && \
    npm install --no-audit --no-fund kinesalite@3.3.3 >/dev/null )
fi
nohup node "$CACHE/node_modules/kinesalite/cli.js" --host 127.0.0.1 --port "$PORT" \
  --createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0 > "$ROOT/.ci/cache/kinesalite.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do
  if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then echo "$PID"; exit 0; fi
  kill -0 "$PID" 2>/dev/null || { cat "$ROOT/.ci/cache/kinesalite.log" >&2; exit 1; }
  sleep 0.1
done
echo "kinesalite did not answer on :$PORT within 30 s" >&2; exit 1
