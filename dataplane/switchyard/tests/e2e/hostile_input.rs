//! Hostile and broken input against the real binary (issue 6): garbage, bombs and floods on
//! the statsd socket and the HTTP intake. Each case ends in a clear answer (status and JSON
//! error text) or a named counter in `/metrics`, and every test then shows that the process
//! still takes good traffic: a good line or payload reaches the file sink (or a vendor).

use super::harness::{
    self, gzip, http_post, http_raw, read_responses, value, Instance, Options, RawResponse, Vendor,
};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const KEY: &str = "DD-API-KEY: hostile-test-key";
const JSON: &str = "Content-Type: application/json";

fn line_error(reason: &str) -> String {
    format!("switchyard_statsd_lines_total{{result=\"error\",reason=\"{reason}\"}}")
}

fn http_error(reason: &str, status: u16) -> String {
    format!("switchyard_http_errors_total{{reason=\"{reason}\",status=\"{status}\"}}")
}

fn conn_error(reason: &str) -> String {
    format!("switchyard_http_connection_errors_total{{reason=\"{reason}\"}}")
}

fn series(name: &str, value: f64) -> String {
    format!(
        "{{\"series\":[{{\"metric\":\"{name}\",\"points\":[[1700000000,{value}]],\"type\":\"gauge\"}}]}}"
    )
}

/// Asserts a refusal: the status, and a JSON `{"errors":[...]}` body whose first message
/// contains `text`.
fn assert_refused(r: &RawResponse, status: u16, text: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    let msg = v["errors"][0].as_str().unwrap_or_default();
    assert!(msg.contains(text), "expected {text:?} in {}", r.body);
}

/// A good payload is still accepted (202) after whatever came before.
fn post_good(sy: &Instance, name: &str) {
    let r = http_post(
        sy.http,
        "/api/v1/series",
        &[KEY, JSON],
        series(name, 1.0).as_bytes(),
    );
    assert_eq!((r.status, r.body.as_str()), (202, "{\"status\":\"ok\"}"));
}

fn has_metric(all: &[Value], name: &str) -> bool {
    all.iter().any(|s| s["metric"] == name)
}

/// Reads what the server sends until it closes the connection (a reset counts as closed).
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server neither answered nor closed: {e}"),
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a failure replays.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[test]
fn hostile_statsd_datagrams_are_counted_by_reason_and_good_lines_still_flush() {
    let sy = Instance::start(Options {
        // Room for a 10k-tag line in one datagram; the oversized one is cut at 65000.
        statsd_extra: "max_datagram_bytes = 65000".into(),
        ..Options::default()
    });
    let tags: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
    let ten_k_tags = format!("tags:1|c|#{}", tags.join(","));
    assert!(ten_k_tags.len() < 65_000, "{}", ten_k_tags.len());
    // 65 507 bytes (the most UDP carries) of 6-byte lines: cut at 65 000, inside a line.
    let oversized = "o:1|c\n".repeat(10_918);
    assert_eq!(oversized.len(), 65_508);
    let oversized = &oversized.as_bytes()[..65_507];
    let colons = ":".repeat(30_000);
    let colon_values = format!("cv:{}|c", ":".repeat(30_000));
    let packed = format!("pk:{}1|ms", "1:".repeat(5_000));
    // Noise first, on its own: its lines fail for whatever reason each happens to hit.
    let noise_datagrams: Vec<Vec<u8>> = (0..20u64).map(|i| noise(i + 1, 1400)).collect();
    let refs: Vec<&[u8]> = noise_datagrams.iter().map(Vec::as_slice).collect();
    harness::send_raw(sy.statsd, &refs);
    sy.wait_metric("switchyard_statsd_datagrams_total", 20.0);
    let reasons = [
        "invalid_utf8",
        "empty_name",
        "missing_value",
        "missing_type",
        "unknown_type",
        "invalid_value",
        "non_finite_value",
        "invalid_sample_rate",
        "invalid_timestamp",
        "too_long",
        "too_many_tags",
    ];
    let errors =
        |sy: &Instance| -> Vec<f64> { reasons.iter().map(|r| sy.metric(&line_error(r))).collect() };
    let after_noise = errors(&sy);
    assert!(after_noise.iter().sum::<f64>() >= 20.0, "{after_noise:?}");
    assert_eq!(
        sy.metric("switchyard_statsd_lines_total{result=\"ok\"}"),
        0.0
    );
    let mut datagrams: Vec<Vec<u8>> = [
        &b"notype:1"[..],
        b"notype:1|",
        b"nan:NaN|g",
        b"inf:inf|c",
        b"ninf:-Infinity|ms",
        b"big:1e400|c",
        b"rate:1|c|@1e308",
        b"rate:1|c|@5",
        b"rate:1|c|@-1",
        b"rate:1|c|@1e-320",
        b"\xff\xfe:1|c",
        b"ok\xc3(:1|c",
        b"u:1|c|#tag:\xed\xa0\x80",
    ]
    .map(<[u8]>::to_vec)
    .to_vec();
    datagrams.push(ten_k_tags.into_bytes());
    datagrams.push(oversized.to_vec());
    datagrams.push(colons.into_bytes());
    datagrams.push(colon_values.into_bytes());
    datagrams.push(packed.into_bytes());
    datagrams.push(b"good.after:1|c\ngood.after:2|c".to_vec());
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    harness::send_raw(sy.statsd, &refs);
    sy.wait_metric(
        "switchyard_statsd_datagrams_total",
        20.0 + refs.len() as f64,
    );
    let now = errors(&sy);
    let delta = |reason: &str| {
        let i = reasons.iter().position(|r| *r == reason).unwrap();
        now[i] - after_noise[i]
    };
    for (reason, n) in [
        ("missing_type", 2.0),
        ("non_finite_value", 4.0),
        ("invalid_sample_rate", 4.0),
        ("invalid_utf8", 3.0),
        ("too_many_tags", 1.0),
        ("empty_name", 1.0),
        ("missing_value", 1.0),
        // The line the kernel cut in the oversized datagram.
        ("too_long", 1.0),
    ] {
        assert_eq!(delta(reason), n, "{reason}: {now:?} - {after_noise:?}");
    }
    assert_eq!(
        sy.metric("switchyard_statsd_truncated_datagrams_total"),
        1.0
    );
    let (status, body) = sy.get("/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let all = sy.stop();
    // Complete lines of the oversized datagram count: 65 000 / 6 = 10 833.
    assert_eq!(value(&all, "o.count", &[]), 10_833.0);
    assert_eq!(value(&all, "pk.count", &[]), 5_001.0);
    assert_eq!(value(&all, "good.after.count", &[]), 3.0);
    for name in [
        "notype", "nan", "inf", "ninf", "big", "rate", "tags", "u", "cv",
    ] {
        assert!(
            !all.iter().any(|s| s["metric"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{name}."))
                || s["metric"] == name),
            "{name} was accepted: {all:?}"
        );
    }
}

#[test]
fn hostile_cardinality_explosion_stops_at_the_shard_series_cap_and_is_counted() {
    let sy = Instance::start(Options {
        statsd_extra: "max_series_per_shard = 10".into(),
        ..Options::default()
    });
    // 10 series fill the cap; 990 more are refused, each counted.
    let lines: Vec<String> = (0..1000).map(|i| format!("card.{i}:1|c")).collect();
    for chunk in lines.chunks(100) {
        harness::send_raw(sy.statsd, &[chunk.join("\n").as_bytes()]);
    }
    sy.wait_metric(&line_error("series_limit"), 990.0);
    // A series already held keeps aggregating.
    harness::send_raw(sy.statsd, &[b"card.0:5|c"]);
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 11.0);
    assert_eq!(sy.metric(&line_error("series_limit")), 990.0);
    let all = sy.stop();
    let held: Vec<&str> = all
        .iter()
        .filter_map(|s| s["metric"].as_str())
        .filter(|m| m.starts_with("card.") && m.ends_with(".count"))
        .collect();
    assert_eq!(held.len(), 10, "{held:?}");
    assert_eq!(value(&all, "card.0.count", &[]), 6.0);
}

#[test]
fn hostile_slowloris_heads_and_bodies_are_cut_off_and_counted() {
    let sy = Instance::start(Options {
        http_extra: "read_timeout = \"1s\"".into(),
        ..Options::default()
    });
    let p = sy.http;
    // Head dribbled one header line at a time, forever: the connection is closed.
    let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
    s.write_all(b"POST /api/v1/series HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 1024];
    let head_answer = loop {
        assert!(Instant::now() < until, "a dribbled head was never cut off");
        if s.write_all(b"X-Slow: 1\r\n").is_err() {
            break Vec::new();
        }
        match s.read(&mut buf) {
            Ok(n) => break buf[..n].to_vec(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break Vec::new(),
        }
    };
    assert!(
        !head_answer.starts_with(b"HTTP/1.1 2"),
        "{:?}",
        String::from_utf8_lossy(&head_answer)
    );
    sy.wait_metric(&conn_error("header_timeout"), 1.0);
    // Body dribbled one byte at a time: 408 with a JSON error.
    let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
    write!(
        s,
        "POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nContent-Length: 100000\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while got.is_empty() {
        assert!(Instant::now() < until, "a dribbled body was never answered");
        let _ = s.write_all(b" ");
        match s.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("closed without an answer: {e}"),
        }
    }
    // The rest of the answer, up to the close.
    got.extend(read_until_closed(&mut s));
    let r = parse_one(&String::from_utf8_lossy(&got));
    assert_refused(&r, 408, "Request timeout");
    sy.wait_metric(&http_error("timeout", 408), 1.0);
    // An idle connection is closed too, and counted apart from the slow head.
    let mut idle = TcpStream::connect(("127.0.0.1", p)).unwrap();
    assert!(read_until_closed(&mut idle).is_empty());
    sy.wait_metric(&conn_error("idle"), 1.0);
    assert_eq!(sy.metric(&conn_error("header_timeout")), 1.0);
    post_good(&sy, "after.slowloris");
    assert_eq!(sy.metric("switchyard_http_inflight_bytes"), 0.0);
    let all = sy.stop();
    assert!(has_metric(&all, "after.slowloris"), "{all:?}");
}

/// Parses one raw response (head and whole body) from text.
fn parse_one(text: &str) -> RawResponse {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

#[test]
fn hostile_heads_oversized_malformed_or_random_are_answered_and_counted() {
    let sy = Instance::start(Options {
        http_extra: "max_header_bytes = 16384".into(),
        ..Options::default()
    });
    let p = sy.http;
    // A 20 KB head over a 16 KB cap: 431, and the connection is closed.
    let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
    let big = format!(
        "POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nX-Junk: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        "a".repeat(20_000)
    );
    let _ = s.write_all(big.as_bytes());
    let got = read_until_closed(&mut s);
    let r = parse_one(&String::from_utf8_lossy(&got));
    assert_refused(&r, 431, "request head larger than 16384 bytes");
    sy.wait_metric(&conn_error("header_too_large"), 1.0);
    // A malformed request line and random bytes: 400 and closed.
    for junk in [b"GARBAGE\r\n\r\n".to_vec(), noise(7, 2000)] {
        let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
        let _ = s.write_all(&junk);
        let got = read_until_closed(&mut s);
        let r = parse_one(&String::from_utf8_lossy(&got));
        assert_refused(&r, 400, "malformed HTTP/1.1 request");
    }
    sy.wait_metric(&conn_error("malformed"), 2.0);
    // Unknown paths and a wrong content type: JSON errors.
    for path in [
        "/",
        "/api/v3/series",
        "/api/v1/series/../../etc/passwd",
        "/metrics",
    ] {
        let r = http_post(p, path, &[KEY, JSON], b"{}");
        assert_refused(&r, 404, "Not Found");
    }
    for ct in [
        "Content-Type: text/plain",
        "Content-Type: application/x-protobuf",
        "Content-Type: multipart/form-data; boundary=x",
    ] {
        let r = http_post(
            p,
            "/api/v1/series",
            &[KEY, ct],
            series("ct", 1.0).as_bytes(),
        );
        assert_refused(&r, 415, "unsupported Content-Type");
    }
    sy.wait_metric(&http_error("not_found", 404), 4.0);
    sy.wait_metric(&http_error("unsupported_media_type", 415), 3.0);
    post_good(&sy, "after.heads");
    let all = sy.stop();
    assert!(has_metric(&all, "after.heads"), "{all:?}");
    assert!(!has_metric(&all, "ct"), "{all:?}");
}

fn libdeflate(kind: &str, data: &[u8]) -> Vec<u8> {
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let mut out = vec![0u8; c.zlib_compress_bound(data.len()) + 64];
    let n = match kind {
        "zlib" => c.zlib_compress(data, &mut out),
        _ => c.deflate_compress(data, &mut out),
    }
    .unwrap();
    out.truncate(n);
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

#[test]
fn hostile_decompression_bombs_get_413_and_truncated_streams_400_in_every_encoding() {
    let sy = Instance::start(Options {
        http_extra: "max_body_bytes = 1000000\nmax_decompressed_bytes = 1000000".into(),
        ..Options::default()
    });
    // 20 MB of spaces (valid JSON whitespace) in a few KB: each stops at the 1 MB cap.
    let plain = vec![b' '; 20 << 20];
    let bombs = [
        ("gzip", gzip(&plain)),
        ("deflate", libdeflate("zlib", &plain)),
        ("deflate", libdeflate("raw", &plain)),
        ("zstd", zstd(&plain)),
    ];
    for (encoding, bomb) in &bombs {
        assert!(bomb.len() < 100_000, "{encoding}: {}", bomb.len());
        let ce = format!("Content-Encoding: {encoding}");
        let r = http_post(sy.http, "/api/v1/series", &[KEY, JSON, &ce], bomb);
        assert_refused(&r, 413, "more than 1000000 bytes once decompressed");
    }
    sy.wait_metric(&http_error("too_large", 413), bombs.len() as f64);
    // The same good payload, truncated in each encoding.
    let good = series("never", 1.0).into_bytes();
    let truncated = [
        ("gzip", gzip(&good)),
        ("deflate", libdeflate("zlib", &good)),
        ("zstd", zstd(&good)),
    ];
    for (encoding, whole) in &truncated {
        let ce = format!("Content-Encoding: {encoding}");
        let cut = &whole[..whole.len() / 2];
        let r = http_post(sy.http, "/api/v1/series", &[KEY, JSON, &ce], cut);
        assert_refused(&r, 400, &format!("invalid {encoding} body"));
    }
    sy.wait_metric(&http_error("corrupt_body", 400), truncated.len() as f64);
    // Whole, each encoding is taken.
    for (i, (encoding, _)) in truncated.iter().enumerate() {
        let body = series(&format!("after.bomb.{i}"), 1.0).into_bytes();
        let body = match *encoding {
            "gzip" => gzip(&body),
            "deflate" => libdeflate("zlib", &body),
            _ => zstd(&body),
        };
        let ce = format!("Content-Encoding: {encoding}");
        let r = http_post(sy.http, "/api/v1/series", &[KEY, JSON, &ce], &body);
        assert_eq!(r.status, 202, "{encoding}: {}", r.body);
    }
    let all = sy.stop();
    for i in 0..truncated.len() {
        assert!(has_metric(&all, &format!("after.bomb.{i}")), "{all:?}");
    }
    assert!(!has_metric(&all, "never"), "{all:?}");
}

#[test]
fn hostile_json_nesting_bombs_and_out_of_range_numbers_get_400() {
    let sy = Instance::start(Options::default());
    let p = sy.http;
    const NESTED: &str = "JSON nested deeper than 64 levels";
    const NUMBER: &str = "InvalidNumber";
    let deep = |open: &str, n: usize| format!("{{\"series\":{}", open.repeat(n));
    let cases: Vec<(&str, String, &str)> = vec![
        ("/api/v1/series", deep("[", 1_000_000), NESTED),
        ("/api/v1/series", deep("{\"a\":", 100_000), NESTED),
        ("/api/v1/series", "[".repeat(2_000_000), NESTED),
        ("/api/v2/series", deep("[", 100_000), NESTED),
        ("/api/v1/check_run", "[".repeat(100_000), NESTED),
        ("/api/v1/events", "{\"a\":".repeat(100_000), NESTED),
        ("/api/v1/distribution_points", "[".repeat(100_000), NESTED),
        (
            "/api/v1/series",
            "{\"series\":[{\"metric\":\"oor\",\"points\":[[1700000000,1e400]]}]}".into(),
            NUMBER,
        ),
        (
            "/api/v1/series",
            "{\"series\":[{\"metric\":\"oor\",\"points\":[[1e400,1]]}]}".into(),
            NUMBER,
        ),
        (
            "/api/v1/series",
            "{\"series\":[{\"metric\":\"oor\",\"points\":[[1700000000,1]],\"interval\":1e400}]}"
                .into(),
            NUMBER,
        ),
        (
            "/api/v2/series",
            "{\"series\":[{\"metric\":\"oor\",\"type\":3,\"points\":[{\"timestamp\":18446744073709551616,\"value\":1}]}]}"
                .into(),
            NUMBER,
        ),
        (
            "/api/v2/series",
            "{\"series\":[{\"metric\":\"oor\",\"type\":3,\"points\":[{\"timestamp\":1700000000,\"value\":-1e999}]}]}"
                .into(),
            NUMBER,
        ),
        (
            "/api/v2/series",
            "{\"series\":[{\"metric\":\"oor\",\"type\":300,\"points\":[{\"timestamp\":1700000000,\"value\":1}]}]}"
                .into(),
            "series[0].type: expected 0 (unspecified)",
        ),
    ];
    let mut report = Vec::new();
    let mut failed = false;
    for (path, body, text) in &cases {
        let r = http_post(p, path, &[KEY, JSON], body.as_bytes());
        report.push(format!(
            "{path} {:.60} -> {} {}",
            body,
            r.status,
            r.body.chars().take(200).collect::<String>()
        ));
        failed |= r.status != 400 || !r.body.contains(text);
    }
    assert!(!failed, "{}", report.join("\n"));
    sy.wait_metric(&http_error("invalid_body", 400), cases.len() as f64);
    post_good(&sy, "after.json");
    let all = sy.stop();
    assert!(has_metric(&all, "after.json"), "{all:?}");
    assert!(!has_metric(&all, "oor"), "{all:?}");
}

#[test]
fn hostile_100k_series_payload_is_refused_plain_and_split_per_max_series_per_request_gzipped() {
    let sfx = Vendor::start("signalfx", &[]);
    let sy = Instance::start(Options {
        extra_sinks: format!(
            "[sinks.new]\ntype = \"signalfx\"\nendpoint = \"{}\"\ntoken_env = \"SY_TEST_SFX\"\nmax_series_per_request = 10000\n",
            sfx.url()
        ),
        route_to: vec!["out".into(), "new".into()],
        env: vec![("SY_TEST_SFX".into(), "sfx-hostile-token".into())],
        ..Options::default()
    });
    let n: u32 = 100_000;
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{\"metric\":\"wide\",\"points\":[[1700000000,1]],\"type\":\"gauge\",\"tags\":[\"i:{i}\"]}}"
            )
        })
        .collect();
    let body = format!("{{\"series\":[{}]}}", items.join(","));
    // Plain, it is over the 3.2 MB wire cap: 413 from Content-Length alone.
    assert!(body.len() > 3_200_000, "{}", body.len());
    // The client asks first (`Expect: 100-continue`) and never sends the body.
    let mut c = TcpStream::connect(("127.0.0.1", sy.http)).unwrap();
    write!(
        c,
        "POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let r = read_responses(&mut c, 1).remove(0);
    assert_refused(&r, 413, "more than 3200000 bytes on the wire");
    // Sent anyway, the body is refused as it comes: the answer still arrives.
    let mut c = TcpStream::connect(("127.0.0.1", sy.http)).unwrap();
    write!(
        c,
        "POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let _ = c.write_all(&body.as_bytes()[..1 << 20]);
    let r = read_responses(&mut c, 1).remove(0);
    assert_refused(&r, 413, "more than 3200000 bytes on the wire");
    // gzip'd, as clients send it: accepted whole.
    let r = http_post(
        sy.http,
        "/api/v1/series",
        &[KEY, JSON, "Content-Encoding: gzip"],
        &gzip(body.as_bytes()),
    );
    assert_eq!((r.status, r.body.as_str()), (202, "{\"status\":\"ok\"}"));
    sy.wait_metric(
        "switchyard_http_series_total{endpoint=\"series_v1\"}",
        f64::from(n),
    );
    // The SignalFx sink splits it into requests of at most 10 000 series.
    let until = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        let s = sfx.stats();
        if s["points"].as_u64() == Some(u64::from(n)) {
            break s;
        }
        assert!(Instant::now() < until, "not all delivered: {s:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        stats["accepted_requests"].as_u64().unwrap() >= 10,
        "{stats:#}"
    );
    let all = sy.stop();
    assert_eq!(
        all.iter().filter(|s| s["metric"] == "wide").count(),
        n as usize
    );
}

#[test]
fn hostile_connection_flood_beyond_the_shard_cap_is_refused_and_counted() {
    let sy = Instance::start(Options {
        http_extra: "max_connections = 4".into(),
        ..Options::default()
    });
    // 4 idle connections take the cap; a flood of 60 more is closed at once, each counted.
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", sy.http)).unwrap())
        .collect();
    sy.wait_metric("switchyard_http_connections_open", 4.0);
    let flood: Vec<std::thread::JoinHandle<Vec<u8>>> = (0..60)
        .map(|_| {
            let port = sy.http;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let _ = s.write_all(series("flood", 1.0).as_bytes());
                read_until_closed(&mut s)
            })
        })
        .collect();
    for t in flood {
        let got = t.join().unwrap();
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    }
    sy.wait_metric(
        "switchyard_http_connections_total{result=\"rejected\"}",
        60.0,
    );
    assert_eq!(sy.metric("switchyard_http_connections_open"), 4.0);
    drop(held);
    // Capacity comes back once the held connections close.
    let until = Instant::now() + Duration::from_secs(30);
    while sy.metric("switchyard_http_connections_open") > 0.0 {
        assert!(Instant::now() < until, "held connections never closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = series("after.flood", 1.0);
    let req = format!(
        "POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut pipelined = Vec::new();
    for _ in 0..3 {
        pipelined.extend_from_slice(req.as_bytes());
    }
    let rs = http_raw(sy.http, &pipelined, 3);
    assert!(rs.iter().all(|r| r.status == 202), "{rs:?}");
    let mut s = TcpStream::connect(("127.0.0.1", sy.http)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    assert_eq!(read_responses(&mut s, 1)[0].status, 202);
    let all = sy.stop();
    assert!(has_metric(&all, "after.flood"), "{all:?}");
    assert!(!has_metric(&all, "flood"), "{all:?}");
}
