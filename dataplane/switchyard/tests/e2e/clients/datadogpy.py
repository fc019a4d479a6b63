"""Drives Switchyard with the real PyPI `datadog` DogStatsD client.

Usage: datadogpy.py udp PORT | datadogpy.py uds SOCKET_PATH
Sends a fixed workload whose aggregated result the Rust test asserts exactly.
"""
import sys

from datadog.dogstatsd import DogStatsd


def client(kind, where):
    common = dict(disable_telemetry=True, disable_buffering=False, disable_aggregation=True)
    if kind == "udp":
        return DogStatsd(host="127.0.0.1", port=int(where), **common)
    return DogStatsd(socket_path=where, **common)


def main():
    c = client(sys.argv[1], sys.argv[2])
    tags = ["env:prod", "route:home"]
    for _ in range(10):
        c.increment("page.views", tags=tags)
    # Same series, tags in another order and duplicated: must not split the series.
    c.increment("page.views", 5, tags=["route:home", "env:prod", "env:prod"])
    c.decrement("jobs.active", 2)
    c.gauge("queue.depth", 42, tags=["service:checkout"])
    c.gauge("queue.depth", 40, tags=["service:checkout"])
    for v in range(1, 11):
        c.histogram("request.size", v * 100)
    for v in range(1, 101):
        c.timing("db.query", v)
    for v in (1, 2, 3, 4):
        c.distribution("payload.bytes", v)
    for u in ("u1", "u2", "u1", "u3"):
        c.set("users.uniques", u)
    c.event("Deploy", "v1.2.3 done", alert_type="success", tags=["env:prod"])
    c.service_check("app.ok", 0, tags=["env:prod"], message="fine")
    c.flush()
    c.close_socket()


if __name__ == "__main__":
    main()
