#!/usr/bin/env python3
"""Whole-process statsd benchmark (the protocol of shared/BENCHMARKS.md).

switchyard runs with one shard pinned to CPU 0, loadgen on CPU 1. For each offered rate the
sender's counter total (`sent_counter_value_sum`) is compared with the sum of the flushed
`.count` values of the counter series that reached the file sink: that, not Switchyard's own
counters, decides loss. CPU time comes from /proc/PID/stat.

Usage: benches/load/statsd.py [--rates 1e6,2e6] [--duration 5] [--reps 3] [--series 10000]
       [--tags] [--out results.jsonl]
Only loopback traffic; every run is bounded by --duration.
"""
import argparse, json, os, signal, socket, statistics, subprocess, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/release/switchyard")
LOADGEN = os.path.join(ROOT, "target/release/loadgen")


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(port, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def flushed_counter_sum(path):
    """Sum of the flushed `.count` values of the counter series in an NDJSON sink file."""
    rates, counts = set(), {}
    with open(path) as f:
        for line in f:
            s = json.loads(line)
            key = (s["metric"], tuple(s.get("tags", [])), s.get("host", ""))
            if s["type"] == "rate" and not s["metric"].endswith(".count_ps"):
                rates.add((s["metric"] + ".count",) + key[1:])
            elif s["metric"].endswith(".count"):
                counts[key] = counts.get(key, 0.0) + s["points"][0][1]
    return sum(v for k, v in counts.items() if k in rates)


def run_once(rate, duration, series, tags):
    d = tempfile.mkdtemp(prefix="sy-bench-")
    udp, ctl = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    out = os.path.join(d, "series.ndjson")
    cfg = os.path.join(d, "c.toml")
    with open(cfg, "w") as f:
        f.write(f"""[shards]\ncount = 1\ncpus = [0]\n[statsd]\nlisten = ["udp://127.0.0.1:{udp}"]
flush_interval = "2s"\nexpiry_interval = "0s"\nmax_series_per_shard = 4000000\n
[control]\nlisten = "127.0.0.1:{ctl}"\n[sinks.out]\ntype = "file"\npath = "{out}"\nqueue_batches = 1024
[[routes]]\nname = "all"\nto = ["out"]\n""")
    sy = subprocess.Popen(["taskset", "-c", "0", BIN, "run", "--config", cfg],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ctl}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    time.sleep(0.3)
    cpu0 = cpu_seconds(sy.pid)
    args = ["taskset", "-c", "1", LOADGEN, "statsd", "--target", f"127.0.0.1:{udp}", "--rate", str(int(rate)),
            "--duration", str(duration), "--series", str(series), "--no-progress", "--seed", "1"]
    if tags:
        args.append("--tags")
    summary = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    time.sleep(2.5)
    cpu1 = cpu_seconds(sy.pid)
    drops = metric(ctl, "switchyard_statsd_kernel_drops_total")
    sy.send_signal(signal.SIGTERM)
    sy.wait(timeout=60)
    processed = flushed_counter_sum(out)
    sent = summary["sent_counter_value_sum"]
    loss = 1.0 - processed / sent if sent else 0.0
    subprocess.run(["rm", "-rf", d])
    return {
        "offered": rate, "tags": tags, "series": series, "sent_lines": summary["sent_lines"],
        "seconds": summary["seconds"], "achieved_send_rate": summary["sent_lines"] / summary["seconds"],
        "loss": loss, "kernel_drops": drops,
        "processed_lines_per_s": summary["sent_lines"] * (1 - loss) / summary["seconds"],
        "cpu_us_per_line": (cpu1 - cpu0) * 1e6 / max(1, summary["sent_lines"] * (1 - loss)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="1e6,2e6,3e6,5e6,8e6")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--tags", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    for rate in [float(r) for r in a.rates.split(",")]:
        runs = [run_once(rate, a.duration, a.series, a.tags) for _ in range(a.reps)]
        med = {k: statistics.median(r[k] for r in runs) for k in
               ("achieved_send_rate", "loss", "kernel_drops", "processed_lines_per_s", "cpu_us_per_line")}
        row = {"offered": rate, "tags": a.tags, "series": a.series, "reps": a.reps, **med,
               "loss_each": [round(r["loss"], 5) for r in runs]}
        print(json.dumps(row), flush=True)
        if a.out:
            with open(a.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
