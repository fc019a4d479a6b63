#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets.

statsd_datagram: seed-NNN is the `datagram` field of every line of the client captures (real
client libraries, see ../shared/reference/captures/README.md), in file order.
http_json: seed-<capture> is the (decompressed) JSON body of every `*.http` capture.
inflate: seed-<file> is every compressed request body captured (`*.raw-body.*`) and a few plain
bodies; built-* are streams made here with Python's zlib (bombs, multi-member, raw deflate).
gostatsd_raw: seed-<file> is every gostatsd forwarder body (`gostatsd/*.body.bin`, as sent) and
its protobuf (`gostatsd/*.pb`).
edge-* in each: hand-written edge cases.
Run from anywhere: `python3 dataplane/fuzz/make_corpus.py [CAPTURES_DIR]`.
"""

import gzip
import json
import pathlib
import sys
import zlib

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


def http_body(path):
    """The body of a `*.http` capture: everything after the first empty line."""
    raw = path.read_bytes()
    _, sep, body = raw.partition(b"\n\n")
    return body if sep else b""


def http_json_edge_cases():
    many_tags = json.dumps([f"k{i}:v{i}" for i in range(40)])
    return {
        "empty": b"",
        "empty-object": b"{}",
        "empty-series": b'{"series":[]}',
        "series-not-array": b'{"series":{}}',
        "top-level-array": b'[{"series":[]}]',
        "nulls": b'{"series":[{"metric":"m","points":[[null,null],[1,null],[null,1]],'
        b'"type":null,"interval":null,"host":null,"device":null,"tags":null}]}',
        "numbers": b'{"series":[{"metric":"m","points":[[1e400,1],[-0,-0.0],'
        b'[18446744073709551616,1e-400],[1.7e9,1.5e308],[-9223372036854775809,3]]}]}',
        "rates": b'{"series":[{"metric":"r","type":"rate","interval":0,"points":[[1,1]]},'
        b'{"metric":"r","type":"rate","interval":-10,"points":[[1,1]]},'
        b'{"metric":"r","type":"rate","interval":1e308,"points":[[1,1e308]]},'
        b'{"metric":"c","type":"count","points":[[3,1],[1,2],[2,3]]},'
        b'{"metric":"x","type":"distribution","points":[[1,1]]}]}',
        "escapes": '{"series":[{"metric":"a\\"b\\\\c\\u00e9\\ud83d\\ude00","points":[[1,1]],'
        '"tags":["k\\u0000:v","\\n:\\t","host:h\\"1","é:ü"],"host":"h\\/1","device":"d"}]}'.encode(),
        "lone-surrogate": b'{"series":[{"metric":"\\ud800","points":[[1,1]]}]}',
        "tags-odd": b'{"series":[{"metric":"m","points":[[1,1]],'
        b'"tags":["",":",":v","k:","k:v:w","host:h","device:d","k:1","k:2","bare"]}]}',
        "too-many-dims": f'{{"series":[{{"metric":"m","points":[[1,1]],"tags":{many_tags}}}]}}'.encode(),
        "long-metric": ('{"series":[{"metric":"%s","points":[[1,1]]}]}' % ("m" * 300)).encode(),
        "long-metric-multibyte": ('{"series":[{"metric":"%s","points":[[1,1]]}]}' % ("é" * 200)).encode(),
        "empty-metric": b'{"series":[{"metric":"","points":[[1,1]]}]}',
        "bad-point": b'{"series":[{"metric":"m","points":[[1,2,3]]}]}',
        "duplicate-keys": b'{"series":[{"metric":"a","metric":"b","points":[],"points":[[1,1]]}],"series":[]}',
        "deep": b"[" * 2000 + b"]" * 2000,
        "deep-in-series": b'{"series":[{"metric":"m","points":[[1,1]],"x":' + b"[" * 1000 + b"]" * 1000 + b"}]}",
        "invalid-utf8": b'{"series":[{"metric":"\xff\xfe","points":[[1,1]]}]}',
        "trailing": b'{"series":[]} {"series":[]}',
        "whitespace": b' \t\r\n{ "series" : [ ] } \n',
    }


def inflate_edge_cases():
    body = b'{"series":[{"metric":"m","points":[[1700000000,1.5]],"tags":["env:prod"]}]}' * 20
    gz = gzip.compress(body, mtime=0)
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw_deflate = raw.compress(body) + raw.flush()
    zeros = bytes(1 << 20)
    return {
        # libFuzzer does not read the seeds' Content-Encoding: every seed runs all encodings.
        "built-gzip": gz,
        "built-zlib": zlib.compress(body, 6),
        "built-raw-deflate": raw_deflate,
        "built-gzip-fname": gz[:3] + b"\x08" + gz[4:10] + b"x.json\x00" + gz[10:],
        "built-gzip-two-members": gz + gz,
        "built-gzip-bomb-1MiB": gzip.compress(zeros, 9, mtime=0),
        "built-zlib-bomb-1MiB": zlib.compress(zeros, 9),
        "built-gzip-wrong-isize": gz[:-4] + (0xFFFFFFFF).to_bytes(4, "little"),
        "built-gzip-truncated": gz[: len(gz) // 2],
        "built-zlib-bad-adler": zlib.compress(body)[:-1] + b"\x00",
        "edge-empty": b"",
        "edge-gzip-header-only": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
        "edge-zlib-header-only": b"\x78\x9c",
        "edge-zstd-magic-only": b"\x28\xb5\x2f\xfd",
        # Frame header: single segment unset, window descriptor 0xff (a 3.75 TiB window).
        "edge-zstd-huge-window": b"\x28\xb5\x2f\xfd\x00\xff\x01\x00\x00",
        # Frame header claiming a 2^63-byte content size.
        "edge-zstd-huge-content": b"\x28\xb5\x2f\xfd\xe0\x00\x00\x00\x00\x00\x00\x00\x80\x01\x00\x00",
        # A skippable frame (magic 0x184D2A50, 4-byte length) and nothing else.
        "edge-zstd-skippable": b"\x50\x2a\x4d\x18\x04\x00\x00\x00abcd",
    }


def write_all(out, named):
    out.mkdir(parents=True, exist_ok=True)
    for name, data in named.items():
        (out / name).write_bytes(data)


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

    http = sorted(captures.glob("*.http"))
    json_bodies = {
        f"seed-{p.stem}": http_body(p)
        for p in http
        if b"Content-Type: application/x-protobuf" not in p.read_bytes()
    }
    out = HERE / "corpus" / "http_json"
    write_all(out, json_bodies)
    write_all(out, {f"edge-{k}": v for k, v in http_json_edge_cases().items()})
    print(f"{len(json_bodies)} capture seeds and {len(http_json_edge_cases())} edge cases in {out}")

    raw = {f"seed-{p.name}": p.read_bytes() for p in sorted(captures.glob("*.raw-body.*"))}
    plain = {f"seed-{p.stem}.json": http_body(p) for p in http if "series" in p.stem and "v1" in p.stem}
    out = HERE / "corpus" / "inflate"
    write_all(out, raw)
    write_all(out, plain)
    write_all(out, inflate_edge_cases())
    print(f"{len(raw) + len(plain)} capture seeds and {len(inflate_edge_cases())} built/edge cases in {out}")

    gostatsd = captures / "gostatsd"
    # Each request body as sent (any Content-Encoding) and as protobuf; the target tries
    # every encoding on every seed.
    seeds = {f"seed-{p.name}": p.read_bytes() for p in sorted(gostatsd.glob("*.body.bin"))}
    seeds.update({f"seed-{p.name}": p.read_bytes() for p in sorted(gostatsd.glob("*.pb"))})
    out = HERE / "corpus" / "gostatsd_raw"
    write_all(out, seeds)
    print(f"{len(seeds)} capture seeds in {out}")


if __name__ == "__main__":
    main()
