#!/usr/bin/env python3
"""Whole-process HTTP proxy benchmark: loadgen http -> switchyard -> two vendors.

switchyard runs with one shard pinned to CPU 0 (its sink threads share CPU 0); `loadgen http`
and two `loadgen vendor` processes (datadog, signalfx) share CPU 1. For each offered rate the
run checks that every payload answered 202 reached the old vendor and that its points reached
the new one, and reports the accepted rate in MB/s of uncompressed JSON, with switchyard's CPU
time per MB. Medians over --reps runs.

Usage: benches/load/proxy.py [--rates 100,200] [--duration 5] [--reps 3] [--points 1000]
       [--encoding deflate] [--sink-compression deflate] [--out results.jsonl]
Only loopback traffic; every run is bounded by --duration.
"""
import argparse, json, os, socket, statistics, subprocess, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/release/switchyard")
LOADGEN = os.path.join(ROOT, "target/release/loadgen")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(url):
    return urllib.request.urlopen(url, timeout=10).read().decode()


def vendor(kind):
    p = subprocess.Popen(["taskset", "-c", "1", LOADGEN, "vendor", "--kind", kind,
                          "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    return p, "http://" + line.split("listening on ")[1]


def run_once(rate, duration, points, encoding, sink_compression, level):
    d = tempfile.mkdtemp(prefix="sy-http-bench-")
    http, ctl = free_port(), free_port()
    dd, dd_url = vendor("datadog")
    sfx, sfx_url = vendor("signalfx")
    cfg = os.path.join(d, "c.toml")
    with open(cfg, "w") as f:
        f.write(f"""[shards]\ncount = 1\ncpus = [0]\n[statsd]\nlisten = ["udp://127.0.0.1:{free_port()}"]
[http]\nlisten = "127.0.0.1:{http}"\n[control]\nlisten = "127.0.0.1:{ctl}"
[sinks.old]\ntype = "datadog"\nendpoint = "{dd_url}"\ncompression = "{sink_compression}"
compression_level = {level}\nqueue_batches = 256
[sinks.new]\ntype = "signalfx"\nendpoint = "{sfx_url}"\ncompression_level = {level}\nqueue_batches = 256
[[routes]]\nname = "dual"\nto = ["old", "new"]\n""")
    sy = subprocess.Popen(["taskset", "-c", "0", BIN, "run", "--config", cfg],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                get(f"http://127.0.0.1:{ctl}/healthz")
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.3)
        cpu0 = cpu_seconds(sy.pid)
        t0 = time.time()
        out = subprocess.run(["taskset", "-c", "1", LOADGEN, "http", "--target",
                              f"http://127.0.0.1:{http}", "--rate", str(rate), "--duration",
                              str(duration), "--points-per-payload", str(points), "--series",
                              "10000", "--encoding", encoding, "--connections", "8", "--json",
                              "--no-progress"], capture_output=True, text=True, check=True)
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        # Let the sinks deliver what they queued (bounded), then read both vendors.
        want = summary["points_accepted"]
        for _ in range(300):
            a = json.loads(get(dd_url + "/stats"))
            b = json.loads(get(sfx_url + "/stats"))
            if a["points"] >= want and b["points"] >= want:
                break
            time.sleep(0.1)
        wall = time.time() - t0
        cpu = cpu_seconds(sy.pid) - cpu0
        mb = summary["uncompressed_bytes"] * summary["payloads_accepted"] / max(summary["payloads_sent"], 1) / 1e6
        return {
            "rate": rate, "points_per_payload": points, "encoding": encoding,
            "sink_compression": sink_compression, "level": level,
            "sent": summary["payloads_sent"], "accepted": summary["payloads_accepted"],
            "by_status": summary["payloads_by_status"],
            "accepted_mb_per_s": mb / summary["seconds"],
            "old_vendor_points": a["points"], "new_vendor_points": b["points"],
            "points_accepted": want,
            "lossless": a["points"] == want and b["points"] == want,
            "cpu_s_per_mb": cpu / mb if mb else None,
            "latency_ms": summary["latency_ms"], "drain_wall_s": wall,
        }
    finally:
        sy.terminate()
        sy.wait(timeout=60)
        for p in (dd, sfx):
            p.terminate()
            p.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="50,100,200")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--encoding", default="deflate")
    ap.add_argument("--sink-compression", default="deflate")
    ap.add_argument("--level", type=int, default=6)
    ap.add_argument("--out")
    a = ap.parse_args()
    for rate in [int(float(r)) for r in a.rates.split(",")]:
        runs = [run_once(rate, a.duration, a.points, a.encoding, a.sink_compression, a.level)
                for _ in range(a.reps)]
        med = lambda k: statistics.median(r[k] for r in runs)
        row = {"rate": rate, "accepted_mb_per_s": med("accepted_mb_per_s"),
               "cpu_s_per_mb": med("cpu_s_per_mb"),
               "lossless_runs": sum(r["lossless"] for r in runs), "reps": len(runs),
               "accepted_fraction": med("accepted") / max(med("sent"), 1),
               "runs": runs}
        print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
        if a.out:
            with open(a.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
