"""Statsd traffic for the forwarder tests, sent with the real `datadog` client (DogStatsd).

Usage: forwarded.py PORT PART PHASE

PART 0 and PART 1 go to two different forwarders; together they make, per PHASE (a tag):
- fw.hits: 60 increments from part 0, 40 from part 1 (100), tags in either order;
- fw.latency (timer): 1..50 from part 0, 51..100 from part 1, so the percentiles need both;
- fw.users (set): u0..u29 from part 0, u20..u49 from part 1 (50 distinct);
- fw.queue (gauge, part 0 only): 5, then 7.
"""
import sys

from datadog.dogstatsd import DogStatsd


def main():
    port, part, phase = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    c = DogStatsd(
        host="127.0.0.1",
        port=port,
        disable_telemetry=True,
        disable_buffering=False,
        disable_aggregation=True,
    )
    tags = [f"phase:{phase}", "env:test"]
    for i in range(60 if part == 0 else 40):
        c.increment("fw.hits", tags=tags if i % 2 else list(reversed(tags)))
    for v in range(1, 51) if part == 0 else range(51, 101):
        c.timing("fw.latency", v, tags=tags)
    for u in range(0, 30) if part == 0 else range(20, 50):
        c.set("fw.users", f"u{u}", tags=tags)
    if part == 0:
        c.gauge("fw.queue", 5, tags=tags)
        c.gauge("fw.queue", 7, tags=tags)
    c.flush()
    c.close_socket()


if __name__ == "__main__":
    main()
