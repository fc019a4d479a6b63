#!/usr/bin/env python3
"""Whole-process Kinesis sink benchmark: loadgen -> switchyard -> kinesis-local (2 shards).

switchyard runs with one shard pinned to CPU 0 and a single route to a `type = "kinesis"`
sink (its sink thread shares CPU 0); loadgen and kinesis-local share CPU 1. Each run creates
a fresh 2-shard stream, drives statsd (`--mode statsd`: many series per flush) or Datadog
HTTP (`--mode http`: one queue item per accepted payload) traffic, stops switchyard with
SIGTERM (final flush included), then:

- reads the sink's counters from the control API's /metrics (PutRecords calls, aggregated
  records put/throttled/failed, user records, record bytes, values delivered/dropped);
- reads the stream back (GetRecords on every shard from TRIM_HORIZON), independently of the
  sink's own counters: records and bytes (data + partition key, what the shard limits count)
  per shard, and per shard and arrival second, from ApproximateArrivalTimestamp;
- samples the sink thread's CPU (`/proc/PID/task/TID/stat` of `sink-kin-0`) before and after.

Shard limits compared against: 1 MiB/s and 1,000 records/s of writes per shard.
kinesis-local does not throttle, so what it shows is what the sink offers a shard.

Usage: benches/load/kinesis.py [--mode statsd|http] [--reps 3] [--duration 20]
       [--rate N] [--series N] [--flush 10s] [--points N] [--out results.jsonl]
Binaries from $CARGO_TARGET_DIR/release (default ./target/release), or --bin-dir.
kinesis-local is started with .ci/servers/kinesis-local.sh unless it already answers on
:4568. Only loopback traffic; every run is bounded by --duration plus a bounded drain.
"""
import argparse, base64, collections, json, os, signal, socket, statistics, subprocess
import tempfile, time, urllib.error, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENDPOINT = "http://127.0.0.1:4568"
MIB = 1 << 20
SHARD_BYTES_S = MIB
SHARD_RECORDS_S = 1000
KPL_MAGIC = b"\xf3\x89\x9a\xc2"


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def kinesis(op, body):
    """One Kinesis JSON-protocol call (kinesis-local accepts any SigV4-shaped header)."""
    req = urllib.request.Request(
        ENDPOINT + "/", data=json.dumps(body).encode(), method="POST",
        headers={"X-Amz-Target": f"Kinesis_20131202.{op}",
                 "Content-Type": "application/x-amz-json-1.1",
                 "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                 "Authorization": "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/"
                                  "kinesis/aws4_request, SignedHeaders=host;x-amz-date, "
                                  "Signature=0"})
    try:
        raw = urllib.request.urlopen(req, timeout=60).read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{op}: {e.code} {e.read().decode()[:300]}") from None
    return json.loads(raw) if raw else {}


def ensure_kinesis_local():
    try:
        kinesis("ListStreams", {})
        return
    except OSError:
        pass
    out = subprocess.run([os.path.join(ROOT, ".ci/servers/kinesis-local.sh")], check=True,
                         capture_output=True, text=True).stdout.strip()
    # Pin the server (node and its threads) to the load generator's core.
    if out.isdigit():
        subprocess.run(["taskset", "-a", "-p", "-c", "1", out], check=False,
                       stdout=subprocess.DEVNULL)


def create_stream(name, shards):
    kinesis("CreateStream", {"StreamName": name, "ShardCount": shards})
    for _ in range(200):
        d = kinesis("DescribeStreamSummary", {"StreamName": name})
        if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)
    raise RuntimeError(f"stream {name} not ACTIVE")


def read_stream(name):
    """Every record of every shard: (shard id, arrival epoch s, bytes, is KPL aggregate)."""
    shards = kinesis("ListShards", {"StreamName": name})["Shards"]
    out = []
    for sh in shards:
        it = kinesis("GetShardIterator", {"StreamName": name, "ShardId": sh["ShardId"],
                                          "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
        while it:
            r = kinesis("GetRecords", {"ShardIterator": it, "Limit": 1000})
            for rec in r["Records"]:
                data = base64.b64decode(rec["Data"])
                out.append((sh["ShardId"], float(rec["ApproximateArrivalTimestamp"]),
                            len(data) + len(rec["PartitionKey"].encode()),
                            data.startswith(KPL_MAGIC)))
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")
    return [s["ShardId"] for s in shards], out


def metrics(port):
    """Prometheus text -> {name{labels}: value} for the sink's series."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = {}
    for line in body.splitlines():
        if line.startswith("switchyard_sink_") or line.startswith("switchyard_flush_"):
            k, v = line.rsplit(" ", 1)
            m[k] = float(v)
    return m


def pick(m, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    tot = 0.0
    for k, v in m.items():
        if k == name or k.startswith(name + "{"):
            if all(f'{a}="{b}"' in k for a, b in labels.items()):
                tot += v
    return tot


def sink_dropped(m):
    """Values the sink itself dropped (not those the shards could not enqueue)."""
    queue = sum(pick(m, "switchyard_sink_dropped_values_total", sink="kin", reason=r)
                for r in ("queue_full", "route_dropped", "sampled_out"))
    return pick(m, "switchyard_sink_dropped_values_total", sink="kin") - queue


def thread_cpu(pid, prefix):
    """utime+stime (s) of the threads of `pid` whose name starts with `prefix`."""
    tck = os.sysconf("SC_CLK_TCK")
    tot = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if not f.read().startswith(prefix):
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tot += (int(fields[11]) + int(fields[12])) / tck
        except OSError:
            continue
    return tot


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(a, bindir, rep):
    d = tempfile.mkdtemp(prefix="sy-kin-bench-")
    stream = f"bench-{os.getpid()}-{rep}-{int(time.time())}"
    create_stream(stream, a.shards)
    udp, http, ctl = free_port(socket.SOCK_DGRAM), free_port(), free_port()
    cfg = os.path.join(d, "c.toml")
    with open(cfg, "w") as f:
        f.write(f"""[shards]\ncount = 1\ncpus = [0]
[statsd]\nlisten = ["udp://127.0.0.1:{udp}"]\nflush_interval = "{a.flush}"
expiry_interval = "0s"\nmax_series_per_shard = 4000000
[http]\nlisten = "127.0.0.1:{http}"\n[control]\nlisten = "127.0.0.1:{ctl}"
[sinks.kin]\ntype = "kinesis"\nstream = "{stream}"\nregion = "us-east-1"
endpoint = "{ENDPOINT}"\nbatch_encoding = "{a.encoding}"\ncompression = "{a.compression}"
compression_level = {a.level}\nqueue_batches = {a.queue}
[[routes]]\nname = "all"\nto = ["kin"]\n""")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_EC2_METADATA_DISABLED="true")
    log = open(os.path.join(d, "switchyard.log"), "w")
    sy = subprocess.Popen(["taskset", "-c", "0", os.path.join(bindir, "switchyard"), "run",
                           "--config", cfg], stdout=log, stderr=log, env=env)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{ctl}/healthz", timeout=1)
                break
            except OSError:
                if sy.poll() is not None:
                    raise RuntimeError(f"switchyard exited; log in {d}/switchyard.log")
                time.sleep(0.05)
        time.sleep(0.3)
        m0 = metrics(ctl)
        sink0, proc0 = thread_cpu(sy.pid, "sink-kin"), proc_cpu(sy.pid)
        t0 = time.time()
        lg = os.path.join(bindir, "loadgen")
        if a.mode == "statsd":
            args = ["taskset", "-c", "1", lg, "statsd", "--target", f"127.0.0.1:{udp}",
                    "--rate", str(a.rate), "--duration", str(a.duration), "--series",
                    str(a.series), "--no-progress", "--seed", str(rep + 1)]
            if a.tags:
                args.append("--tags")
        else:
            args = ["taskset", "-c", "1", lg, "http", "--target", f"http://127.0.0.1:{http}",
                    "--rate", str(a.rate), "--duration", str(a.duration),
                    "--points-per-payload", str(a.points), "--series", str(a.series),
                    "--encoding", "deflate", "--connections", "8", "--json", "--no-progress",
                    "--seed", str(rep + 1)]
        summary = json.loads(subprocess.run(args, check=True, capture_output=True,
                                            text=True).stdout.strip().splitlines()[-1])
        t_load = time.time() - t0
        # Wait (bounded) for a flush after the load ended and for the sink to account every
        # value it received; then read the counters and stop switchyard.
        f_end = metrics(ctl).get("switchyard_flush_total", 0)
        m1 = metrics(ctl)
        for _ in range(1200):
            m1 = metrics(ctl)
            done = (pick(m1, "switchyard_sink_delivered_values_total", sink="kin")
                    + sink_dropped(m1)
                    >= pick(m1, "switchyard_sink_received_values_total", sink="kin"))
            flushed = a.mode == "http" or m1.get("switchyard_flush_total", 0) > f_end
            if done and flushed and pick(m1, "switchyard_sink_queue_depth_batches", sink="kin") == 0:
                break
            time.sleep(0.1)
        sink1, proc1 = thread_cpu(sy.pid, "sink-kin"), proc_cpu(sy.pid)
        sy.send_signal(signal.SIGTERM)
        sy.wait(timeout=60)
    finally:
        if sy.poll() is None:
            sy.kill()
            sy.wait()
        log.close()
    shard_ids, recs = read_stream(stream)
    kinesis("DeleteStream", {"StreamName": stream})

    def delta(name, **labels):
        return pick(m1, name, sink="kin", **labels) - pick(m0, name, sink="kin", **labels)

    calls = delta("switchyard_sink_stream_calls_total")
    put = delta("switchyard_sink_stream_records_total", outcome="put")
    users = delta("switchyard_sink_stream_user_records_total")
    rbytes = delta("switchyard_sink_stream_bytes_total")
    items = delta("switchyard_sink_received_total")
    lat_n = delta("switchyard_sink_request_duration_seconds_count")
    lat_s = delta("switchyard_sink_request_duration_seconds_sum")
    # Per shard and per arrival second (from the stream, not the sink's counters).
    first = min(r[1] for r in recs) if recs else t0
    last = max(r[1] for r in recs) if recs else t0
    span = max(last, t0 + t_load) - t0  # the load window, or longer if delivery ran on
    per_shard = {}
    for sid in shard_ids:
        mine = [r for r in recs if r[0] == sid]
        secs = collections.defaultdict(lambda: [0, 0])
        for _, ts, size, _agg in mine:
            b = secs[int(ts)]
            b[0] += 1
            b[1] += size
        per_shard[sid] = {
            "records": len(mine), "bytes": sum(r[2] for r in mine),
            "records_per_s": len(mine) / span, "bytes_per_s": sum(r[2] for r in mine) / span,
            "peak_second_records": max((v[0] for v in secs.values()), default=0),
            "peak_second_bytes": max((v[1] for v in secs.values()), default=0),
            # Mean over the arrival seconds in which the shard received anything.
            "busy_seconds": len(secs),
            "busy_second_bytes": sum(v[1] for v in secs.values()) / max(len(secs), 1),
            "busy_second_records": sum(v[0] for v in secs.values()) / max(len(secs), 1),
            "seconds_over_byte_limit": sum(1 for v in secs.values() if v[1] > SHARD_BYTES_S),
            "max_record_bytes": max((r[2] for r in mine), default=0),
        }
    sink_cpu, all_cpu = sink1 - sink0, proc1 - proc0
    row = {
        "mode": a.mode, "rate": a.rate, "series": a.series, "flush": a.flush,
        "points": a.points if a.mode == "http" else None,
        "load_s": t_load, "span_s": span, "first_put_s": first - t0, "last_put_s": last - t0,
        "sent": summary.get("sent_lines", summary.get("payloads_sent")),
        "accepted": summary.get("payloads_accepted"),
        "accepted_fraction": (summary["payloads_accepted"] / max(summary["payloads_sent"], 1)
                              if a.mode == "http" else None),
        "items": items,
        "values_received": delta("switchyard_sink_received_values_total"),
        "values_delivered": delta("switchyard_sink_delivered_values_total"),
        "values_dropped": delta("switchyard_sink_dropped_values_total"),
        "values_dropped_by_sink": sink_dropped(m1) - sink_dropped(m0),
        "calls": calls, "records_put": put,
        "records_throttled": delta("switchyard_sink_stream_records_total", outcome="throttled"),
        "records_failed": delta("switchyard_sink_stream_records_total", outcome="failed"),
        "user_records": users, "record_bytes": rbytes,
        "call_ms_mean": lat_s * 1e3 / lat_n if lat_n else None,
        "records_per_call": put / calls if calls else 0,
        "bytes_per_call": rbytes / calls if calls else 0,
        "bytes_per_record": rbytes / put if put else 0,
        "user_records_per_record": users / put if put else 0,
        "stream_records": len(recs), "stream_bytes": sum(r[2] for r in recs),
        "stream_kpl_records": sum(r[3] for r in recs),
        "per_shard": per_shard,
        "shard_records_per_s_mean": statistics.mean(s["records_per_s"] for s in per_shard.values()),
        "shard_bytes_per_s_mean": statistics.mean(s["bytes_per_s"] for s in per_shard.values()),
        "shard_peak_records_per_s": max(s["peak_second_records"] for s in per_shard.values()),
        "shard_peak_bytes_per_s": max(s["peak_second_bytes"] for s in per_shard.values()),
        "shard_busy_second_bytes": statistics.mean(s["busy_second_bytes"] for s in per_shard.values()),
        "shard_busy_second_records": statistics.mean(s["busy_second_records"] for s in per_shard.values()),
        "shard_seconds_over_byte_limit": sum(s["seconds_over_byte_limit"] for s in per_shard.values()),
        "sink_cpu_s": sink_cpu, "process_cpu_s": all_cpu,
        "sink_cpu_ms_per_item": sink_cpu * 1e3 / items if items else None,
        "sink_cpu_s_per_mib": sink_cpu / (rbytes / MIB) if rbytes else None,
    }
    subprocess.run(["rm", "-rf", d])
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["statsd", "http"], default="statsd")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--rate", type=int, default=400000,
                    help="statsd lines/s or HTTP payloads/s")
    ap.add_argument("--series", type=int, default=100000)
    ap.add_argument("--tags", action="store_true")
    ap.add_argument("--points", type=int, default=1000, help="points per HTTP payload")
    ap.add_argument("--flush", default="10s")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--encoding", default="rkyv")
    ap.add_argument("--compression", default="deflate")
    ap.add_argument("--level", type=int, default=6)
    ap.add_argument("--queue", type=int, default=64)
    ap.add_argument("--bin-dir", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release"))
    ap.add_argument("--out")
    a = ap.parse_args()
    ensure_kinesis_local()
    runs = [run_once(a, a.bin_dir, rep) for rep in range(a.reps)]
    keys = ("call_ms_mean", "records_per_call", "bytes_per_call", "bytes_per_record", "user_records_per_record",
            "shard_records_per_s_mean", "shard_bytes_per_s_mean", "shard_peak_records_per_s",
            "shard_peak_bytes_per_s", "shard_busy_second_bytes", "shard_busy_second_records",
            "shard_seconds_over_byte_limit", "sink_cpu_ms_per_item", "sink_cpu_s_per_mib")
    med = {k: statistics.median([r[k] for r in runs if r[k] is not None] or [0]) for k in keys}
    row = {"mode": a.mode, "rate": a.rate, "series": a.series, "flush": a.flush,
           "reps": a.reps, "median": med,
           "each": {k: [round(r[k], 3) if r[k] is not None else None for r in runs]
                    for k in keys + ("accepted_fraction", "values_delivered", "values_dropped", "records_throttled",
                                     "items", "calls", "records_put")}}
    print(json.dumps(row), flush=True)
    if a.out:
        with open(a.out, "a") as f:
            for r in runs:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
