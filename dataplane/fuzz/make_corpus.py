#!/usr/bin/env python3
"""Writes the seed corpus of the statsd_datagram fuzz target.

seed-NNN: the `datagram` field of every line of the client captures (real client libraries, see
../shared/reference/captures/README.md), in file order. edge-*: hand-written edge cases.
Run from anywhere: `python3 dataplane/fuzz/make_corpus.py [CAPTURES_DIR]`.
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
CAPTURES = ["dogstatsd_datadogpy.jsonl", "dogstatsd_npm.jsonl", "statsd_pystatsd.jsonl"]


def edge_cases():
    alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
    two = [a + b for a in alnum for b in alnum]  # 1296 distinct two-char tags
    tags = ",".join(two[i % len(two)] for i in range(10_000))
    return {
        "empty": b"",
        "newlines-only": b"\n\r\n\n",
        "empty-value-gauge": b"g:|g",
        "zero-rate": b"x:1|c|@0",
        "nan-rate": b"x:1|c|@NaN",
        "tiny-rate-huge-value": b"x:1e308|c|@0.0000001\nx:1e308|ms|@0.0000001\nx:-1e308|ms",
        "non-finite": b"x:nan|g\nx:inf|ms\nx:-infinity|c\nx:1e400|g",
        "10k-tags": f"x:1|c|#{tags}".encode(),
        "10k-tags-host": f"x:1|g|#host:web-1,{tags},host:web-2".encode(),
        "invalid-utf8-tags": b"x:1|c|#env:\xff\xfe",
        "invalid-utf8-name": b"\xc3(:1|c\nok:1|c",
        "invalid-utf8-event": b"_e{2,1}:\xc3\xa9|x\n_e{1,1}:\xc3\xa9|x",
        "colons-only": b":" * 4096 + b"|c",
        "colons-packed-empty": b"t" + b":" * 4096 + b"1|ms",
        "packed-many": b"t:" + b":".join(b"%d" % i for i in range(2000)) + b"|ms",
        "etsy-deltas": b"g:5|g\ng:+3|g\ng:-1|g\ng:+1:-2:+3|g",
        "event-length-overflow": b"_e{99999999999999999999,1}:a|b\n_e{,}:|\n_e{1,1}:a|b|d:x",
        "service-check-edge": b"_sc|x|3|m:a|b|c\n_sc||0\n_sc|x|4\n_sc|x|0|d:99999999999999999999",
        "timestamp-overflow": b"t:1|ms|T99999999999999999999\nt:1|ms|T-1\nt:1|ms|T",
        "all-fields": b"m:1|c|@0.5|#a,b:c|c:cid|T1700000000|e:x|card:high|\n"
        b"m:1|d|#host:h1,host:h2,env:prod\r\nm:u1|s|#,,,",
        "crlf-mix": b"a:1|c\r\nb:2|g\r\r\n\rc:3|ms\n",
        "same-series-all-types": b"s:1|c\ns:1|g\ns:1|ms\ns:1|h\ns:1|d\ns:1|s",
    }


def main():
    captures = (
        pathlib.Path(sys.argv[1])
        if len(sys.argv) > 1
        else HERE.parents[2] / "shared" / "reference" / "captures"
    )
    out = HERE / "corpus" / "statsd_datagram"
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for name in CAPTURES:
        with open(captures / name, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    (out / f"seed-{n:03}").write_bytes(json.loads(line)["datagram"].encode("utf-8"))
                    n += 1
    for name, data in edge_cases().items():
        (out / f"edge-{name}").write_bytes(data)
    print(f"{n} capture seeds and {len(edge_cases())} edge cases in {out}")


if __name__ == "__main__":
    main()
