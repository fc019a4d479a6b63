"""Drives Switchyard with the real PyPI `statsd` (Etsy dialect) client.

Usage: pystatsd.py PORT   (the listener is configured with gauge_dialect = "etsy")
"""
import sys

import statsd


def main():
    c = statsd.StatsClient("127.0.0.1", int(sys.argv[1]), prefix="myapp")
    for _ in range(7):
        c.incr("hits")
    c.incr("hits", 5)
    c.decr("slots")
    c.gauge("queue", 10)
    c.gauge("queue", -3, delta=True)
    c.gauge("queue", 1, delta=True)
    c.timing("render", 320)
    c.timing("render", 100)
    c.set("users", "alice")
    c.set("users", "bob")
    # A pipeline packs several lines in one datagram.
    with c.pipeline() as p:
        p.incr("piped", 2)
        p.incr("piped", 3)
        p.timing("piped.t", 7)


if __name__ == "__main__":
    main()
