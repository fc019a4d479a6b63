#!/usr/bin/env bash
# Soak (issue 6): mixed statsd + HTTP load at half of the measured capacity for DURATION
# seconds while the Datadog vendor flaps (FLAP_PERIOD s healthy, FLAP_PERIOD s answering 503);
# samples switchyard's RSS and counters every SAMPLE_EVERY s into OUT/samples.csv, then lets
# the spool drain, checks the ledger and the error counters, stops switchyard with SIGTERM
# and prints a summary (also OUT/summary.md). Exit 1 if a check failed.
#
#   benches/soak.sh                         # full soak: release build, 600 s
#   DURATION=120 PROFILE=debug STATSD_RATE=50000 HTTP_RATE=5 benches/soak.sh   # quick trial
#
# Processes: switchyard (one shard) alone on CPU 0; on CPU 1 the flapping vendor (`loadgen
# vendor --kind datadog`, switched between healthy and 503 through its /control endpoint;
# it counts what it accepted), `loadgen statsd` and `loadgen http`. Loopback only; ports are
# picked free at start. Config: benches/soak/switchyard.toml.in.
#
# Load: half of the measured capacity of this very setup (the soak's config, the vendor
# healthy, `FLAP_PERIOD=100000 DURATION=60`): lossless at 1,100,000 tagged statsd lines/s plus
# 125 HTTP payloads/s of 1000 points (97% of CPU 0), kernel drops and a starved HTTP path at
# 1,300,000 + 148 (benches/RESULTS.md). Half: 550,000 lines/s and 62 payloads/s (override
# STATSD_RATE, HTTP_RATE).
#
# Environment: DURATION (600), PROFILE (release|debug), SKIP_BUILD (1: use built binaries),
# STATSD_RATE (550000), HTTP_RATE (62), HTTP_POINTS (1000), SERIES (10000), FLAP_PERIOD (30),
# SAMPLE_EVERY (10), SETTLE (300: seconds allowed for the spool to drain after the load),
# OUT (benches/soak/out/<time>), CARGO_TARGET_DIR (target).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-600}
PROFILE=${PROFILE:-release}
STATSD_RATE=${STATSD_RATE:-550000}
HTTP_RATE=${HTTP_RATE:-62}
HTTP_POINTS=${HTTP_POINTS:-1000}
SERIES=${SERIES:-10000}
FLAP_PERIOD=${FLAP_PERIOD:-30}
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
SETTLE=${SETTLE:-300}
OUT=${OUT:-$ROOT/benches/soak/out/$(date +%Y%m%d-%H%M%S)}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$PROFILE
MONITOR=(python3 "$ROOT/benches/soak/monitor.py")

log() { printf '%s soak: %s\n' "$(date +%T)" "$*" >&2; }

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building ($PROFILE)"
    if [[ $PROFILE == release ]]; then
        (cd "$ROOT" && cargo build --release -p switchyard -p loadgen)
    else
        (cd "$ROOT" && cargo build -p switchyard -p loadgen)
    fi
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log "output in $OUT"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
STATSD_PORT=$(free_port)
HTTP_PORT=$(free_port)
CONTROL_PORT=$(free_port)
CONTROL=http://127.0.0.1:$CONTROL_PORT

PIDS=()
cleanup() {
    touch "$OUT/stop"
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# The flapping vendor (fake Datadog intake counting what it receives).
taskset -c 1 "$BIN/loadgen" vendor --kind datadog --listen 127.0.0.1:0 \
    >"$OUT/vendor.out" 2>"$OUT/vendor.log" &
VENDOR_PID=$!
PIDS+=("$VENDOR_PID")
for _ in $(seq 100); do
    grep -q '^listening on ' "$OUT/vendor.out" 2>/dev/null && break
    sleep 0.1
done
VENDOR=http://$(sed -n 's/^listening on //p' "$OUT/vendor.out")
log "vendor at $VENDOR"
vendor_control() {
    curl -fsS -m 5 -H 'Content-Type: application/json' -d "$1" "$VENDOR/control" >/dev/null
}

sed -e "s#@STATE_DIR@#$OUT/state#" -e "s#@STATSD_PORT@#$STATSD_PORT#" \
    -e "s#@HTTP_PORT@#$HTTP_PORT#" -e "s#@CONTROL_PORT@#$CONTROL_PORT#" \
    -e "s#@VENDOR_URL@#$VENDOR#" "$ROOT/benches/soak/switchyard.toml.in" >"$OUT/switchyard.toml"
"$BIN/switchyard" validate --config "$OUT/switchyard.toml" >/dev/null

SOAK_DD_API_KEY=soak-key taskset -c 0 "$BIN/switchyard" run --config "$OUT/switchyard.toml" \
    >"$OUT/switchyard.log" 2>&1 &
SY_PID=$!
PIDS+=("$SY_PID")
for _ in $(seq 300); do
    curl -fs -m 1 "$CONTROL/healthz" >/dev/null 2>&1 && break
    kill -0 "$SY_PID" || { log "switchyard exited at start"; tail "$OUT/switchyard.log"; exit 1; }
    sleep 0.1
done
log "switchyard pid $SY_PID: statsd 127.0.0.1:$STATSD_PORT, http 127.0.0.1:$HTTP_PORT, control $CONTROL"

"${MONITOR[@]}" sample --dir "$OUT" --pid "$SY_PID" --control "$CONTROL" --vendor "$VENDOR" \
    --every "$SAMPLE_EVERY" 2>"$OUT/monitor.log" &
PIDS+=("$!")

# Flapping: healthy first, then 503 for every intake request, in turns, until the load ends.
flap() {
    local state=healthy
    while :; do
        if [[ $state == healthy ]]; then
            vendor_control '{"fail_count":0}'
        else
            vendor_control '{"fail_status":503,"fail_count":1000000000000}'
        fi
        echo "$(date +%s.%N) $state" >>"$OUT/flap.log"
        sleep "$FLAP_PERIOD"
        [[ $state == healthy ]] && state=down || state=healthy
    done
}
flap &
FLAP_PID=$!
PIDS+=("$FLAP_PID")

log "load for $DURATION s: $STATSD_RATE statsd lines/s + $HTTP_RATE HTTP payloads/s x $HTTP_POINTS points"
taskset -c 1 "$BIN/loadgen" statsd --target "127.0.0.1:$STATSD_PORT" --rate "$STATSD_RATE" \
    --duration "$DURATION" --series "$SERIES" --tags --no-progress \
    --summary-file "$OUT/statsd.json" >/dev/null 2>"$OUT/loadgen-statsd.log" &
LG_STATSD=$!
PIDS+=("$LG_STATSD")
taskset -c 1 "$BIN/loadgen" http --target "http://127.0.0.1:$HTTP_PORT" --rate "$HTTP_RATE" \
    --duration "$DURATION" --points-per-payload "$HTTP_POINTS" --series "$SERIES" \
    --encoding deflate --connections 8 --json --no-progress \
    --summary-file "$OUT/http.json" >/dev/null 2>"$OUT/loadgen-http.log" &
LG_HTTP=$!
PIDS+=("$LG_HTTP")
wait "$LG_STATSD" || log "loadgen statsd failed (see $OUT/loadgen-statsd.log)"
wait "$LG_HTTP" || log "loadgen http failed (see $OUT/loadgen-http.log)"

# Recovery: the vendor stays healthy; wait for the spool to drain and the sinks to settle.
kill "$FLAP_PID" 2>/dev/null || true
wait "$FLAP_PID" 2>/dev/null || true
vendor_control '{"fail_count":0}'
echo "$(date +%s.%N) drain" >>"$OUT/flap.log"
log "load done; vendor healthy; waiting up to $SETTLE s for the spool to drain"
settled=1
"${MONITOR[@]}" settle --control "$CONTROL" --timeout "$SETTLE" || settled=0
sleep "$SAMPLE_EVERY" # one more sample after the drain
curl -fsS -m 10 "$CONTROL/v1/stats" >"$OUT/stats.final.json"
curl -fsS -m 10 "$CONTROL/metrics" >"$OUT/metrics.final.txt"
curl -fsS -m 30 "$VENDOR/stats" >"$OUT/vendor.final.json"
touch "$OUT/stop"

log "SIGTERM to switchyard"
kill -TERM "$SY_PID"
rc=0
wait "$SY_PID" || rc=$?
kill "$VENDOR_PID" 2>/dev/null || true

cat >"$OUT/run.json" <<EOF
{"duration": $DURATION, "profile": "$PROFILE", "statsd_rate": $STATSD_RATE, "http_rate": $HTTP_RATE,
 "http_points": $HTTP_POINTS, "series": $SERIES, "flap_period": $FLAP_PERIOD,
 "settled": $settled, "exit_code": $rc, "host": "$(hostname)", "nproc": $(nproc),
 "loadavg_end": "$(cut -d' ' -f1-3 /proc/loadavg)", "commit": "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"}
EOF
status=0
"${MONITOR[@]}" summary --dir "$OUT" || status=1
[[ $settled == 1 ]] || { log "the spool did not drain within $SETTLE s"; status=1; }
exit "$status"
