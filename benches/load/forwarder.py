#!/usr/bin/env python3
"""Forwarder tier benchmark (issue 7): statsd lines/s one forwarder shard carries, and the
bytes it sends per line.

A forwarder (one shard, pinned to CPU 0, `[forwarder] interval = 1s`) takes tagged statsd
from `loadgen statsd` (CPU 1) and sends to an aggregator (one shard, CPU 1, flushing every
2 s to a file sink). Loss is decided end to end, as in benches/load/statsd.py: the sender's
counter total (`sent_counter_value_sum`) against the sum of the `.count` series the
aggregator flushed. Bytes per line: the forwarder sink's `switchyard_sink_bytes_total`
(request bodies as sent) over the lines sent. The aggregator's rate is the series it folded
in (`switchyard_aggregator_series_total{result="ok"}`) per second of load.

Usage: benches/load/forwarder.py [--rates 1e6,2e6] [--duration 10] [--reps 3] [--series 10000]
Only loopback traffic; every run is bounded by --duration.
"""
import argparse, json, os, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from statsd import cpu_seconds, flushed_counter_sum, free_port, metric  # noqa: E402  (the same helpers)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release/switchyard")
LOADGEN = os.path.join(TARGET, "release/loadgen")


def start(cpu, cfg, ctl):
    p = subprocess.Popen(["taskset", "-c", str(cpu), BIN, "run", "--config", cfg],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ctl}/healthz", timeout=1)
            return p
        except OSError:
            time.sleep(0.05)
    raise SystemExit("switchyard did not start")


def run_once(rate, duration, series):
    d = tempfile.mkdtemp(prefix="sy-fwd-bench-")
    out = os.path.join(d, "series.ndjson")
    a_udp, a_http, a_ctl = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    f_udp, f_ctl = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    with open(os.path.join(d, "agg.toml"), "w") as f:
        f.write(f"""[shards]\ncount = 1\ncpus = [1]\n[statsd]\nlisten = ["udp://127.0.0.1:{a_udp}"]
flush_interval = "2s"\nexpiry_interval = "0s"\nmax_series_per_shard = 4000000\n[http]\nlisten = "127.0.0.1:{a_http}"
[control]\nlisten = "127.0.0.1:{a_ctl}"\n[sinks.out]\ntype = "file"\npath = "{out}"\nqueue_batches = 1024
[[routes]]\nname = "all"\nto = ["out"]\n""")
    with open(os.path.join(d, "fwd.toml"), "w") as f:
        f.write(f"""[shards]\ncount = 1\ncpus = [0]\n[statsd]\nlisten = ["udp://127.0.0.1:{f_udp}"]
max_series_per_shard = 4000000\n[http]\nlisten = ""\n[control]\nlisten = "127.0.0.1:{f_ctl}"
[forwarder]\naggregators = ["http://127.0.0.1:{a_http}"]\ninterval = "1s"\n""")
    agg = start(1, os.path.join(d, "agg.toml"), a_ctl)
    fwd = start(0, os.path.join(d, "fwd.toml"), f_ctl)
    time.sleep(0.3)
    cpu0 = cpu_seconds(fwd.pid)
    args = ["taskset", "-c", "1", LOADGEN, "statsd", "--target", f"127.0.0.1:{f_udp}", "--rate", str(int(rate)),
            "--duration", str(duration), "--series", str(series), "--no-progress", "--seed", "1", "--tags"]
    summary = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    time.sleep(2.5)
    cpu1 = cpu_seconds(fwd.pid)
    drops = metric(f_ctl, "switchyard_statsd_kernel_drops_total")
    sent_bytes = metric(f_ctl, 'switchyard_sink_bytes_total{sink="forwarder"}')
    archive_bytes = metric(f_ctl, 'switchyard_sink_uncompressed_bytes_total{sink="forwarder"}')
    fwd.send_signal(signal.SIGTERM)
    fwd.wait(timeout=60)
    agg_series = metric(a_ctl, 'switchyard_aggregator_series_total{result="ok"}')
    agg.send_signal(signal.SIGTERM)
    agg.wait(timeout=60)
    processed = flushed_counter_sum(out)
    sent = summary["sent_counter_value_sum"]
    loss = 1.0 - processed / sent if sent else 0.0
    subprocess.run(["rm", "-rf", d])
    lines = summary["sent_lines"]
    return {
        "achieved_send_rate": lines / summary["seconds"], "loss": loss, "kernel_drops": drops,
        "processed_lines_per_s": lines * (1 - loss) / summary["seconds"],
        "cpu_us_per_line": (cpu1 - cpu0) * 1e6 / max(1, lines * (1 - loss)),
        "bytes_per_line": sent_bytes / max(1, lines),
        "archive_bytes_per_line": archive_bytes / max(1, lines),
        "aggregator_series_per_s": agg_series / summary["seconds"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="1e6,2e6,3e6")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--out")
    a = ap.parse_args()
    for rate in [float(r) for r in a.rates.split(",")]:
        runs = [run_once(rate, a.duration, a.series) for _ in range(a.reps)]
        keys = runs[0].keys()
        row = {"offered": rate, "series": a.series, "reps": a.reps,
               **{k: statistics.median(r[k] for r in runs) for k in keys},
               "loss_each": [round(r["loss"], 5) for r in runs]}
        print(json.dumps(row), flush=True)
        if a.out:
            with open(a.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
