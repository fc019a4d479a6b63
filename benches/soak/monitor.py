#!/usr/bin/env python3
"""Sampler, drain check and summary of the soak run (benches/soak.sh); stdlib only.

  monitor.py sample --dir OUT --pid PID --control URL --vendor URL [--every 10]
      Every --every seconds, one CSV row (OUT/samples.csv): switchyard's RSS (VmRSS) and CPU
      time, its counters (GET /v1/stats), the vendor's counts (GET /stats) and the vendor's
      phase (last line of OUT/flap.log). Runs until the process exits or OUT/stop exists.
  monitor.py settle --control URL [--timeout 180]
      Waits until the `dd` spool is replayed (lag 0) and no sink holds anything in a queue or
      in flight; exit 1 if the timeout passes first.
  monitor.py summary --dir OUT
      Reads what the run left in OUT and prints the summary (also OUT/summary.md); exit 1
      when a check failed (unbalanced ledger, an unexpected drop or error, a non-zero exit).
"""
import argparse, csv, json, os, re, statistics, sys, time, urllib.request

FIELDS = [
    "t", "phase", "rss_kb", "cpu_s",
    "statsd_lines_ok", "statsd_line_errors", "statsd_kernel_drops",
    "http_payloads", "http_points", "http_503", "http_429", "http_other_errors",
    "dd_received", "dd_delivered", "dd_spilled", "dd_dropped_other", "dd_in_flight",
    "dd_queued", "dd_queue_bytes", "dd_circuit_open", "dd_circuit_opens", "dd_spool_bytes",
    "dd_retries", "replay_lag_records", "replay_records_read",
    "steady_received", "steady_delivered", "steady_dropped",
    "series_active", "vendor_requests", "vendor_failed", "vendor_points",
]


def get_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def metric(stats, name, **labels):
    """Sum of a /v1/stats metric over the entries whose labels include `labels`."""
    return sum(e["value"] for e in stats["metrics"].get(name, [])
               if all(e["labels"].get(k) == v for k, v in labels.items()))


def ledger(stats, sink):
    return next(l for l in stats["ledger"] if l["sink"] == sink)


def worker(stats, name):
    return next((w for w in stats.get("workers", []) if w["worker"] == name), {})


def proc(pid):
    """(VmRSS kB, utime + stime seconds) of a live process."""
    with open(f"/proc/{pid}/status") as f:
        rss = int(next(l for l in f if l.startswith("VmRSS:")).split()[1])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(out):
    try:
        with open(os.path.join(out, "flap.log")) as f:
            lines = f.read().split()
        return lines[-1] if lines else ""
    except OSError:
        return ""


def row(t, ph, pid, s, v):
    rss, cpu = proc(pid)
    dd, st = ledger(s, "dd"), ledger(s, "steady")
    http_err = lambda status: metric(s, "switchyard_http_errors_total", status=status)
    all_http_err = metric(s, "switchyard_http_errors_total")
    dd_drops = dd["values"]["dropped"]
    rep = worker(s, "dd.spool.replay")
    return {
        "t": round(t, 1), "phase": ph, "rss_kb": rss, "cpu_s": round(cpu, 2),
        "statsd_lines_ok": metric(s, "switchyard_statsd_lines_total", result="ok"),
        "statsd_line_errors": metric(s, "switchyard_statsd_lines_total", result="error"),
        "statsd_kernel_drops": metric(s, "switchyard_statsd_kernel_drops_total"),
        "http_payloads": metric(s, "switchyard_http_payloads_total"),
        "http_points": metric(s, "switchyard_http_points_total"),
        "http_503": http_err("503"), "http_429": http_err("429"),
        "http_other_errors": all_http_err - http_err("503") - http_err("429"),
        "dd_received": dd["values"]["received"], "dd_delivered": dd["values"]["delivered"],
        "dd_spilled": dd_drops["spilled"],
        "dd_dropped_other": sum(n for r, n in dd_drops.items() if r != "spilled"),
        "dd_in_flight": dd["values"]["in_flight"], "dd_queued": dd["values"]["queued"],
        "dd_queue_bytes": metric(s, "switchyard_sink_queue_bytes", sink="dd"),
        "dd_circuit_open": metric(s, "switchyard_sink_circuit_open", sink="dd"),
        "dd_circuit_opens": metric(s, "switchyard_sink_circuit_opens_total", sink="dd"),
        "dd_spool_bytes": metric(s, "switchyard_sink_spool_bytes", sink="dd"),
        "dd_retries": metric(s, "switchyard_sink_retries_total", sink="dd"),
        "replay_lag_records": rep.get("lag_records", ""),
        "replay_records_read": rep.get("records_read", ""),
        "steady_received": st["values"]["received"],
        "steady_delivered": st["values"]["delivered"],
        "steady_dropped": sum(st["values"]["dropped"].values()),
        "series_active": metric(s, "switchyard_series_active"),
        "vendor_requests": v.get("requests", ""), "vendor_failed": v.get("failed_requests", ""),
        "vendor_points": v.get("points", ""),
    }


def sample(a):
    path = os.path.join(a.dir, "samples.csv")
    t0 = time.monotonic()
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        f.flush()
        n = 0
        while not os.path.exists(os.path.join(a.dir, "stop")):
            try:
                s = get_json(a.control + "/v1/stats")
                try:
                    v = get_json(a.vendor + "/stats")
                except OSError:
                    v = {}
                w.writerow(row(time.monotonic() - t0, phase(a.dir), a.pid, s, v))
                f.flush()
            except FileNotFoundError:
                break  # the process is gone
            except OSError as e:
                print(f"monitor: sample failed: {e}", file=sys.stderr)
            n += 1
            # Keep the grid: sample n+1 is due at t0 + (n+1) * every.
            while time.monotonic() < t0 + n * a.every:
                if os.path.exists(os.path.join(a.dir, "stop")):
                    return
                time.sleep(0.2)


SHARD_SIDE = ("queue_full", "route_dropped", "sampled_out")  # outside `received`


def in_flight(l):
    """`received - delivered - dropped`: what the sink still holds (the ledger's identity)."""
    v = l["values"]
    return v["received"] - v["delivered"] - sum(
        n for r, n in v["dropped"].items() if r not in SHARD_SIDE)


def settle(a):
    until = time.monotonic() + a.timeout
    calm, lag, busy = 0, None, None
    while time.monotonic() < until:
        s = get_json(a.control + "/v1/stats")
        lag = worker(s, "dd.spool.replay").get("lag_records", 0)
        busy = sum(in_flight(l) for l in s["ledger"]) + metric(
            s, "switchyard_sink_queue_depth_batches")
        calm = calm + 1 if lag == 0 and busy == 0 else 0
        if calm >= 3:  # three readings in a row, a second apart
            return 0
        time.sleep(1)
    print(f"monitor: not settled after {a.timeout} s (replay lag {lag}, "
          f"in flight + queued batches {busy})", file=sys.stderr)
    return 1


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def summary(a):
    d = a.dir
    rows = list(csv.DictReader(open(os.path.join(d, "samples.csv"))))
    run = load(os.path.join(d, "run.json"), {})
    duration = float(run.get("duration", 0))
    stats = load(os.path.join(d, "stats.final.json"), {})
    vendor = load(os.path.join(d, "vendor.final.json"), {})
    sd = load(os.path.join(d, "statsd.json"), {})
    ht = load(os.path.join(d, "http.json"), {})
    lines, fails = [], []
    say = lines.append

    load_rows = [r for r in rows if float(r["t"]) <= duration + 1]
    rss = [int(r["rss_kb"]) / 1024 for r in load_rows]
    first = [int(r["rss_kb"]) / 1024 for r in load_rows if float(r["t"]) < 60]
    last = [int(r["rss_kb"]) / 1024 for r in load_rows if float(r["t"]) >= duration - 60]
    say(f"## Soak summary ({d})\n")
    say(f"Load: {run.get('statsd_rate')} statsd lines/s (tagged, {run.get('series')} series) + "
        f"{run.get('http_rate')} HTTP payloads/s x {run.get('http_points')} points for "
        f"{duration:.0f} s; vendor flapping {run.get('flap_period')} s healthy / "
        f"{run.get('flap_period')} s 503; profile {run.get('profile')}.\n")
    if rss:
        slope = (statistics.mean(last) - statistics.mean(first)) if first and last else 0.0
        say(f"RSS during load (MiB): min {min(rss):.1f}, median {statistics.median(rss):.1f}, "
            f"max {max(rss):.1f}; first minute mean {statistics.mean(first):.1f} -> last minute "
            f"mean {statistics.mean(last):.1f} ({slope:+.1f} MiB, "
            f"{slope / max(statistics.mean(first), 1e-9) * 100:+.1f}%)")
        # Least-squares slope after the first minute (the warm-up: pools, queues and the
        # series table filling), in MiB per minute.
        tail = [(float(r["t"]), int(r["rss_kb"]) / 1024) for r in load_rows if float(r["t"]) >= 60]
        if len(tail) >= 3:
            mt = statistics.mean(t for t, _ in tail)
            mr = statistics.mean(m for _, m in tail)
            k = sum((t - mt) * (m - mr) for t, m in tail) / sum((t - mt) ** 2 for t, _ in tail)
            say(f"RSS trend after the first minute (least squares over {len(tail)} samples): "
                f"{k * 60:+.2f} MiB/min")
        drain = [int(r["rss_kb"]) / 1024 for r in rows if float(r["t"]) > duration + 1]
        if drain:
            say(f"RSS after the load, while the spool drained: {drain[-1]:.1f} MiB")
    cpu = [float(r["cpu_s"]) for r in load_rows]
    if len(cpu) > 1:
        say(f"switchyard CPU during load: {(cpu[-1] - cpu[0]) / max(float(load_rows[-1]['t']) - float(load_rows[0]['t']), 1e-9) * 100:.0f}% of one core")

    say("\n| t (s) | vendor | RSS (MiB) | statsd lines ok | HTTP payloads | dd spilled | dd spool (MB) | circuit opens | replay lag |")
    say("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        say(f"| {float(r['t']):.0f} | {r['phase']} | {int(r['rss_kb']) / 1024:.1f} | {float(r['statsd_lines_ok']):,.0f} | "
            f"{float(r['http_payloads']):,.0f} | {float(r['dd_spilled']):,.0f} | {float(r['dd_spool_bytes']) / 1e6:.1f} | "
            f"{float(r['dd_circuit_opens']):.0f} | {r['replay_lag_records']} |")

    # Points sent vs accepted vs delivered.
    say("\n### Points")
    if sd:
        ok = metric(stats, "switchyard_statsd_lines_total", result="ok") if stats else None
        counters = sum(m["value_sum"] for name, m in vendor.get("metrics", {}).items()
                       if (mm := re.fullmatch(r"lg\.m(\d+)\.count", name)) and int(mm.group(1)) % 4 == 0)
        say(f"- statsd: sent {sd['sent_lines']:,} lines ({sd['achieved_rate']:,.0f}/s); switchyard "
            f"counted {ok:,.0f} ok; counter increments sent {sd['sent_counter_value_sum']:,}, "
            f"delivered to the vendor (sum of the `.count` series) {counters:,.0f} "
            f"({counters / max(sd['sent_counter_value_sum'], 1) * 100:.2f}%)")
    if ht:
        http_pts = sum(m["points"] for name, m in vendor.get("metrics", {}).items()
                       if not name.startswith("lg."))
        say(f"- HTTP: sent {ht['payloads_sent']:,} payloads, accepted {ht['payloads_accepted']:,} "
            f"(by status {ht.get('payloads_by_status')}); points accepted {ht['points_accepted']:,}, "
            f"delivered to the vendor {http_pts:,} "
            f"({http_pts / max(ht['points_accepted'], 1) * 100:.2f}%: above 100% = duplicates, at-least-once)")
        if http_pts < ht["points_accepted"]:
            fails.append(f"vendor received {http_pts} HTTP points < {ht['points_accepted']} accepted")
        if ht["payloads_accepted"] < ht["payloads_sent"]:
            fails.append(f"{ht['payloads_sent'] - ht['payloads_accepted']} HTTP payloads not accepted")
    if vendor:
        say(f"- vendor: {vendor['requests']:,} requests, {vendor['failed_requests']:,} answered 503 "
            f"(injected), {vendor.get('rejected_requests', 0):,} rejected")

    say("\n### Ledger at the end (after the drain, before SIGTERM)")
    # The identities of control/src/ledger.rs, at rest: received = delivered + dropped (in
    # flight 0) and enqueued = received (queue empty). A spilled value is counted `received`
    # again when the replay hands it back; and a spill counts only the values the vendor did
    # not take while it spools the whole item (dataplane/sinks/src/spool.rs `spill`), so the
    # replay re-sends, and counts received and delivered again, the part already delivered.
    # Hence for `dd`, once the spool is replayed: received = enqueued + spilled + re-sent,
    # re-sent >= 0 (the duplicates of at-least-once). (`balanced` in /v1/stats checks
    # enqueued = received + queued without the replay: false for a sink that replayed.)
    lag = worker(stats, "dd.spool.replay").get("lag_records") if stats else None
    for l in stats.get("ledger", []):
        v = l["values"]
        drops = {r: n for r, n in v["dropped"].items() if n}
        spilled = v["dropped"]["spilled"] if l["sink"] == "dd" else 0
        resent = v["received"] - v["enqueued"] - spilled
        ok = in_flight(l) == 0 and resent >= 0 and (resent == 0 or spilled > 0)
        say(f"- {l['sink']}: enqueued {v['enqueued']:,}, received {v['received']:,}, "
            f"delivered {v['delivered']:,}, dropped {drops or 'none'}; "
            f"in flight (received - delivered - dropped) {in_flight(l):,}; "
            f"re-sent by the replay (received - enqueued - spilled) {resent:,} -> "
            f"{'balances' if ok else 'DOES NOT BALANCE'} "
            f"(/v1/stats `balanced`: {l['balanced']}, clamped {l['clamped']})")
        if not ok:
            fails.append(f"{l['sink']}: ledger does not balance")
        for r in drops:
            if not (l["sink"] == "dd" and r == "spilled"):
                fails.append(f"{l['sink']}: dropped {drops[r]} values, reason {r}")
    if lag:
        fails.append(f"the spool still holds {lag} records")
    if stats:
        errs = {f"statsd {e['labels'].get('reason')}": e["value"]
                for e in stats["metrics"].get("switchyard_statsd_lines_total", [])
                if e["labels"].get("result") == "error" and e["value"]}
        errs.update({f"http {e['labels']['status']} {e['labels']['reason']}": e["value"]
                     for e in stats["metrics"].get("switchyard_http_errors_total", []) if e["value"]})
        errs.update({f"http connection {e['labels']['reason']}": e["value"]
                     for e in stats["metrics"].get("switchyard_http_connection_errors_total", [])
                     if e["value"]})
        kd = metric(stats, "switchyard_statsd_kernel_drops_total")
        if kd:
            errs["statsd kernel drops"] = kd
        say(f"- errors counted by switchyard: {errs or 'none'}")
        fails += [f"error counter {k} = {n}" for k, n in errs.items()]

    if run.get("settled") == 0:
        fails.append("the sinks did not settle (spool replayed, nothing in flight) within SETTLE")
    rc = run.get("exit_code")
    say(f"\nswitchyard exit code after SIGTERM: {rc}")
    if str(rc) != "0":
        fails.append(f"exit code {rc}")
    logs = {}
    try:
        for line in open(os.path.join(d, "switchyard.log"), errors="replace"):
            m = re.match(r"\S+\s+(WARN|ERROR)\s+(\S+?):? (.*)", line)
            if m:
                key = f"{m.group(1)} {m.group(2)}: {re.sub(r'[0-9]+', 'N', m.group(3))[:140]}"
                logs[key] = logs.get(key, 0) + 1
    except OSError:
        pass
    say("WARN/ERROR log lines (digits folded to N): " + ("none" if not logs else ""))
    for k, n in sorted(logs.items(), key=lambda kv: -kv[1]):
        say(f"- {n} x {k}")
    say("\nChecks: " + ("all passed" if not fails else "FAILED:\n- " + "\n- ".join(fails)))
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(text + "\n")
    return 1 if fails else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sample")
    p.add_argument("--dir", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--vendor", required=True)
    p.add_argument("--every", type=float, default=10)
    p = sub.add_parser("settle")
    p.add_argument("--control", required=True)
    p.add_argument("--timeout", type=float, default=180)
    p = sub.add_parser("summary")
    p.add_argument("--dir", required=True)
    a = ap.parse_args()
    sys.exit({"sample": sample, "settle": settle, "summary": summary}[a.cmd](a) or 0)


if __name__ == "__main__":
    main()
