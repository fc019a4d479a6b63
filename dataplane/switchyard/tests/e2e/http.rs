//! The HTTP intake's protocol and error paths, on raw sockets: every answer the vendor
//! would give, keep-alive, pipelining, chunked bodies with `Expect: 100-continue`, the
//! API key rules, the body caps (a decompression bomb gets 413), push-back (429 and 408),
//! each counted in `/metrics`.

use super::harness::{self, gzip, http_post, http_raw, read_responses, Instance, Options};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const KEY: &str = "DD-API-KEY: test-key-1";
const JSON: &str = "Content-Type: application/json";

fn series(name: &str, value: f64) -> String {
    format!(
        "{{\"series\":[{{\"metric\":\"{name}\",\"points\":[[1700000000,{value}]],\"type\":\"gauge\",\"tags\":[\"env:test\"]}}]}}"
    )
}

#[test]
fn intake_answers_like_the_vendor_on_every_error_path() {
    let sy = Instance::start(Options {
        http_extra: "max_body_bytes = 100000\nmax_decompressed_bytes = 200000".into(),
        ..Options::default()
    });
    let p = sy.http;
    let ok = http_post(
        p,
        "/api/v1/series",
        &[KEY, JSON],
        series("a.b", 1.0).as_bytes(),
    );
    assert_eq!((ok.status, ok.body.as_str()), (202, "{\"status\":\"ok\"}"));
    // The key from the query string, as gostatsd sends it.
    let v2 = b"{\"series\":[{\"metric\":\"v2.m\",\"type\":3,\"points\":[{\"timestamp\":1700000000,\"value\":2.5}],\"resources\":[{\"type\":\"host\",\"name\":\"web-9\"}],\"tags\":[\"env:test\"]}]}";
    let r = http_post(p, "/api/v2/series", &[KEY, JSON], v2);
    assert_eq!((r.status, r.body.as_str()), (202, "{\"errors\":[]}"));
    let q = http_post(
        p,
        "/api/v1/series?api_key=k2",
        &[JSON],
        series("a.c", 2.0).as_bytes(),
    );
    assert_eq!(q.status, 202, "{}", q.body);
    // No key: 403.
    let r = http_post(p, "/api/v1/series", &[JSON], series("a.b", 1.0).as_bytes());
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, "{\"errors\":[\"Forbidden\"]}")
    );
    // Unknown path, wrong method.
    let r = http_post(p, "/api/v1/nope", &[KEY, JSON], b"{}");
    assert_eq!(r.status, 404);
    let r = http_raw(p, b"GET /api/v1/series HTTP/1.1\r\nHost: x\r\n\r\n", 1).remove(0);
    assert_eq!(r.status, 405);
    // Not JSON, unknown encoding.
    let r = http_post(
        p,
        "/api/v1/series",
        &[KEY, "Content-Type: text/plain"],
        b"{}",
    );
    assert_eq!(r.status, 415);
    assert!(r.body.contains("text/plain"), "{}", r.body);
    let r = http_post(
        p,
        "/api/v1/series",
        &[KEY, JSON, "Content-Encoding: br"],
        b"{}",
    );
    assert_eq!(r.status, 415);
    assert!(r.body.contains("`br`"), "{}", r.body);
    // Invalid JSON and a wrong shape name the field.
    let r = http_post(
        p,
        "/api/v1/series",
        &[KEY, JSON],
        b"{\"series\":[{\"metric\":\"m\",\"points\":[[1]]}]}",
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("series[0].points[0]"), "{}", r.body);
    let r = http_post(p, "/api/v1/series", &[KEY, JSON], b"{\"series\":");
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("{\"errors\":[\""), "{}", r.body);
    // Truncated gzip.
    let gz = gzip(series("a.b", 1.0).as_bytes());
    let r = http_post(
        p,
        "/api/v1/series",
        &[KEY, JSON, "Content-Encoding: gzip"],
        &gz[..gz.len() / 2],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // Over the wire cap: refused from Content-Length alone.
    let big = vec![b' '; 100_001];
    let r = http_post(p, "/api/v1/series", &[KEY, JSON], &big);
    assert_eq!(r.status, 413);
    // A decompression bomb: ~90 KB of gzip that inflates to 90 MB stops at the 200 KB cap.
    let bomb = gzip(&vec![b' '; 90 << 20]);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let r = http_post(
        p,
        "/api/v1/series",
        &[KEY, JSON, "Content-Encoding: gzip"],
        &bomb,
    );
    assert_eq!(r.status, 413, "{}", r.body);
    // A malformed chunk is a body that could not be read: never taken for an empty body.
    // hyper fails the connection, so the 400 may not reach the client; it is counted.
    let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
    c.write_all(
        format!("POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").as_bytes(),
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    #[allow(clippy::disallowed_methods)] // capped by `take`
    let _ = (&mut c).take(1 << 16).read_to_end(&mut got);
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // An empty body is the Agent's keep-alive: 202, nothing forwarded.
    let r = http_post(p, "/api/v2/series", &[KEY, JSON], b"");
    assert_eq!((r.status, r.body.as_str()), (202, "{\"errors\":[]}"));
    // Validate.
    let r = http_raw(
        p,
        b"GET /api/v1/validate HTTP/1.1\r\nHost: x\r\nDD-API-KEY: abc\r\n\r\n",
        1,
    )
    .remove(0);
    assert_eq!((r.status, r.body.as_str()), (200, "{\"valid\":true}"));
    let r = http_raw(p, b"GET /api/v1/validate HTTP/1.1\r\nHost: x\r\n\r\n", 1).remove(0);
    assert_eq!(r.status, 403);

    let m = |reason: &str, status: u16| {
        sy.metric(&format!(
            "switchyard_http_errors_total{{reason=\"{reason}\",status=\"{status}\"}}"
        ))
    };
    sy.wait_metric(
        "switchyard_http_payloads_total{endpoint=\"series_v1\"}",
        2.0,
    );
    sy.wait_metric("switchyard_http_validate_total", 2.0);
    assert_eq!(m("forbidden", 403), 2.0);
    assert_eq!(m("not_found", 404), 1.0);
    assert_eq!(m("method_not_allowed", 405), 1.0);
    assert_eq!(m("unsupported_media_type", 415), 1.0);
    assert_eq!(m("unsupported_encoding", 415), 1.0);
    assert_eq!(m("invalid_body", 400), 2.0);
    assert_eq!(m("corrupt_body", 400), 1.0);
    assert_eq!(m("too_large", 413), 2.0);
    assert_eq!(m("body_read", 400), 1.0);
    assert_eq!(sy.metric("switchyard_http_empty_bodies_total"), 1.0);
    assert_eq!(
        sy.metric("switchyard_http_points_total{endpoint=\"series_v1\"}"),
        2.0
    );
    let all = sy.stop();
    let names: Vec<&str> = all.iter().filter_map(|s| s["metric"].as_str()).collect();
    assert!(
        names.contains(&"a.b") && names.contains(&"a.c"),
        "{names:?}"
    );
    // The v2 payload is written as a v1 series object, host from its resources.
    let v2 = harness::series(&all, "v2.m", &["env:test"]);
    assert_eq!(
        (v2["host"].as_str(), v2["type"].as_str()),
        (Some("web-9"), Some("gauge"))
    );
    assert_eq!(v2["points"][0][1], 2.5);
}

#[test]
fn keep_alive_pipelining_and_chunked_bodies_with_100_continue() {
    let sy = Instance::start(Options::default());
    let p = sy.http;
    // Three pipelined requests in one write, on one connection.
    let mut req = Vec::new();
    for i in 0..3 {
        let body = series(&format!("pipe.{i}"), f64::from(i));
        req.extend_from_slice(
            format!(
                "POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    let rs = http_raw(p, &req, 3);
    assert!(rs.iter().all(|r| r.status == 202), "{rs:?}");
    // Chunked, gzip, Expect: 100-continue: the body is sent only after the 100.
    let gz = gzip(series("chunked.gz", 7.0).as_bytes());
    let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
    write!(
        s,
        "POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 25];
    std::io::Read::read_exact(&mut s, &mut first).unwrap();
    assert!(
        first.starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    let (a, b) = gz.split_at(gz.len() / 2);
    for part in [a, b] {
        write!(s, "{:x}\r\n", part.len()).unwrap();
        s.write_all(part).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let r = read_responses(&mut s, 1).remove(0);
    assert_eq!(r.status, 202, "{}", r.body);
    // Still the same connection (keep-alive).
    let body = series("same.conn", 1.0);
    write!(
        s,
        "POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    assert_eq!(read_responses(&mut s, 1)[0].status, 202);
    sy.wait_metric(
        "switchyard_http_payloads_total{endpoint=\"series_v1\"}",
        5.0,
    );
    assert_eq!(
        sy.metric("switchyard_http_connections_total{result=\"accepted\"}"),
        2.0
    );
    let all = sy.stop();
    for name in ["pipe.0", "pipe.1", "pipe.2", "chunked.gz", "same.conn"] {
        assert!(
            all.iter().any(|s| s["metric"] == name),
            "{name} missing: {all:?}"
        );
    }
}

#[test]
fn api_key_allow_list_from_the_environment() {
    let sy = Instance::start(Options {
        http_extra: "api_keys_env = \"SY_TEST_ACCEPT\"".into(),
        env: vec![("SY_TEST_ACCEPT".into(), "good-1, good-2".into())],
        ..Options::default()
    });
    let body = series("k.v", 1.0);
    let r = http_post(
        sy.http,
        "/api/v1/series",
        &["DD-API-KEY: good-2", JSON],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202);
    let r = http_post(
        sy.http,
        "/api/v1/series",
        &["DD-API-KEY: bad-key-value", JSON],
        body.as_bytes(),
    );
    assert_eq!(r.status, 403);
    let r = http_post(
        sy.http,
        "/api/v1/series?api_key=good-1",
        &[JSON],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202);
    let log = sy.log_text();
    for secret in ["good-1", "good-2", "bad-key-value"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    sy.stop();
}

#[test]
fn push_back_when_bodies_fill_memory_and_slow_bodies_time_out() {
    let sy = Instance::start(Options {
        http_extra: "max_body_bytes = 10000\nmax_inflight_bytes = 15000\nread_timeout = \"1s\"\nretry_after_secs = 7".into(),
        ..Options::default()
    });
    let p = sy.http;
    // A slow client holds a 10 000-byte reservation by sending only part of its body...
    let mut slow = TcpStream::connect(("127.0.0.1", p)).unwrap();
    write!(
        slow,
        "POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nContent-Length: 10000\r\n\r\n{{\"series\":["
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // ...so a second 10 000-byte body does not fit: 429 with Retry-After.
    let body = format!("{:<10000}", series("x", 1.0));
    let r = http_post(p, "/api/v1/series", &[KEY, JSON], body.as_bytes());
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("7"));
    // The slow body never completes: 408 after read_timeout, and the memory is released.
    let r = read_responses(&mut slow, 1).remove(0);
    assert_eq!(r.status, 408, "{}", r.body);
    let r = http_post(p, "/api/v1/series", &[KEY, JSON], body.as_bytes());
    assert_eq!(r.status, 202, "{}", r.body);
    sy.wait_metric(
        "switchyard_http_errors_total{reason=\"timeout\",status=\"408\"}",
        1.0,
    );
    sy.wait_metric(
        "switchyard_http_payloads_total{endpoint=\"series_v1\"}",
        1.0,
    );
    assert_eq!(
        sy.metric("switchyard_http_errors_total{reason=\"overloaded\",status=\"429\"}"),
        1.0
    );
    sy.stop();
}

#[test]
fn top_names_by_points_and_by_series_merge_over_shards() {
    let sy = Instance::start(Options {
        shards: 2,
        ..Options::default()
    });
    // heavy.points: 1 series x 50 points per payload; wide.series: 20 series x 1 point.
    let heavy: Vec<String> = (0..50)
        .map(|i| format!("[{},{i}]", 1_700_000_000 + i))
        .collect();
    let heavy = format!(
        "{{\"series\":[{{\"metric\":\"heavy.points\",\"points\":[{}]}}]}}",
        heavy.join(",")
    );
    let wide: Vec<String> = (0..20)
        .map(|i| {
            format!(
                "{{\"metric\":\"wide.series\",\"points\":[[1700000000,1]],\"tags\":[\"i:{i}\"]}}"
            )
        })
        .collect();
    let wide = format!("{{\"series\":[{}]}}", wide.join(","));
    // Separate connections, so both shards take some.
    for _ in 0..4 {
        for body in [&heavy, &wide] {
            let r = http_post(sy.http, "/api/v1/series", &[KEY, JSON], body.as_bytes());
            assert_eq!(r.status, 202);
        }
    }
    sy.wait_metric(
        "switchyard_http_payloads_total{endpoint=\"series_v1\"}",
        8.0,
    );
    std::thread::sleep(Duration::from_millis(1500)); // the next publish
    let top = |by: &str| -> serde_json::Value {
        let (status, body) = sy.get(&format!("/v1/stats/top?by={by}&limit=5"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let p = top("points");
    assert_eq!(p["top"][0]["name"], "heavy.points", "{p}");
    assert_eq!(p["top"][0]["count"], 200, "{p}");
    assert_eq!(p["top"][1]["name"], "wide.series", "{p}");
    assert_eq!(p["top"][1]["count"], 80, "{p}");
    assert_eq!(p["total"], 280, "{p}");
    let s = top("series");
    assert_eq!(s["top"][0]["name"], "wide.series", "{s}");
    assert_eq!(s["top"][0]["count"], 80, "{s}");
    assert_eq!(s["top"][1]["count"], 4, "{s}");
    let (status, body) = sy.get("/v1/stats/top?by=bytes");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bytes"), "{body}");
    sy.stop();
}

#[test]
fn a_full_destination_queue_answers_503_and_nothing_is_enqueued_anywhere() {
    // The old vendor takes 2 s per request; its sink has one worker and a one-item queue.
    let slow = super::harness::Vendor::start("datadog", &["--delay-ms", "2000"]);
    let sy = Instance::start(Options {
        extra_sinks: format!(
            "[sinks.old]\ntype = \"datadog\"\nendpoint = \"{}\"\nmax_in_flight = 1\nqueue_batches = 1\n",
            slow.url()
        ),
        route_to: vec!["out".into(), "old".into()],
        http_extra: "retry_after_secs = 3".into(),
        ..Options::default()
    });
    let post = |i: u32| {
        http_post(
            sy.http,
            "/api/v1/series",
            &[KEY, JSON],
            series(&format!("q.{i}"), 1.0).as_bytes(),
        )
    };
    let mut statuses = vec![post(0).status];
    // Once the worker has taken the first payload (in flight for 2 s), one more fits.
    sy.wait_metric(
        "switchyard_sink_received_total{sink=\"old\",kind=\"payload\"}",
        1.0,
    );
    for i in 1..6 {
        let r = post(i);
        if r.status == 503 {
            assert_eq!(r.header("retry-after"), Some("3"));
        }
        statuses.push(r.status);
    }
    // One in flight, one queued, then 503 for the rest.
    assert_eq!(statuses, vec![202, 202, 503, 503, 503, 503], "{statuses:?}");
    sy.wait_metric(
        "switchyard_http_errors_total{reason=\"queue_full\",status=\"503\"}",
        4.0,
    );
    let all = sy.stop();
    // The file sink got exactly the accepted payloads: a refused one went nowhere.
    let names: Vec<&str> = all.iter().filter_map(|s| s["metric"].as_str()).collect();
    assert_eq!(names, vec!["q.0", "q.1"], "{all:?}");
    let s = slow.stats();
    assert_eq!(s["points"], 2, "{s:#}");
}

#[test]
fn oversized_heads_and_connection_floods_are_bounded() {
    let sy = Instance::start(Options {
        http_extra: "max_connections = 2\nmax_header_bytes = 16384".into(),
        ..Options::default()
    });
    // A 40 KB head is not read past the cap: hyper closes the connection without
    // processing the request (the 202 of the next step shows the process keeps serving).
    let big = format!("X-Junk: {}", "a".repeat(40_000));
    let mut s = TcpStream::connect(("127.0.0.1", sy.http)).unwrap();
    let req = format!("POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\n{big}\r\nContent-Length: 2\r\n\r\n{{}}");
    let _ = s.write_all(req.as_bytes());
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    #[allow(clippy::disallowed_methods)] // capped by `take`
    let _ = (&mut s).take(1 << 16).read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/1.1 2"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    drop(s);
    // Two idle connections fill the shard's cap; a third is closed at once.
    let a = TcpStream::connect(("127.0.0.1", sy.http)).unwrap();
    let b = TcpStream::connect(("127.0.0.1", sy.http)).unwrap();
    sy.wait_metric("switchyard_http_connections_open", 2.0);
    let mut c = TcpStream::connect(("127.0.0.1", sy.http)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut c, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the connection over the cap must be closed");
    sy.wait_metric(
        "switchyard_http_connections_total{result=\"rejected\"}",
        1.0,
    );
    drop((a, b));
    // Capacity comes back.
    let body = series("after.flood", 1.0);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", sy.http)).unwrap();
        let req = format!(
            "POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut first = [0u8; 12];
        if std::io::Read::read_exact(&mut s, &mut first).is_ok() {
            assert_eq!(&first, b"HTTP/1.1 202");
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "capacity never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sy.stop();
}

#[test]
fn queued_payload_bytes_are_bounded_per_sink() {
    // One worker on a vendor that takes 2 s per request, and room for ~one payload.
    let slow = super::harness::Vendor::start("datadog", &["--delay-ms", "2000"]);
    let sy = Instance::start(Options {
        extra_sinks: format!(
            "[sinks.old]\ntype = \"datadog\"\nendpoint = \"{}\"\nmax_in_flight = 1\nqueue_max_bytes = 150\n",
            slow.url()
        ),
        route_to: vec!["old".into()],
        ..Options::default()
    });
    let post = |i: u32| {
        http_post(
            sy.http,
            "/api/v1/series",
            &[KEY, JSON],
            series(&format!("b.{i}"), 1.0).as_bytes(),
        )
        .status
    };
    let first = series("b.0", 1.0).len() as f64;
    assert!(first > 75.0 && first < 150.0, "{first}");
    assert_eq!(post(0), 202);
    // The first payload is held (queued or in flight) until the vendor answers.
    sy.wait_metric("switchyard_sink_queue_bytes{sink=\"old\"}", first);
    assert_eq!((post(1), post(2)), (503, 503));
    // Once it is delivered the room comes back.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while sy.metric("switchyard_sink_delivered_values_total{sink=\"old\"}") < 1.0
        || sy.metric("switchyard_sink_queue_bytes{sink=\"old\"}") > 0.0
    {
        assert!(std::time::Instant::now() < until, "never delivered");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(post(3), 202);
    sy.stop();
    let s = slow.stats();
    assert_eq!(s["points"], 2, "{s:#}");
}

#[test]
fn a_client_stalled_mid_body_does_not_hold_up_shutdown() {
    let sy = Instance::start(Options::default());
    let body = series("before.stop", 1.0);
    assert_eq!(
        http_post(sy.http, "/api/v1/series", &[KEY, JSON], body.as_bytes()).status,
        202
    );
    // Announces 1000 bytes, sends 11, then waits forever.
    let mut stalled = TcpStream::connect(("127.0.0.1", sy.http)).unwrap();
    write!(
        stalled,
        "POST /api/v1/series HTTP/1.1\r\nHost: x\r\n{KEY}\r\n{JSON}\r\nContent-Length: 1000\r\n\r\n{{\"series\":["
    )
    .unwrap();
    sy.wait_metric("switchyard_http_inflight_bytes", 1000.0);
    // SIGTERM: the shard waits a bounded time for the connection, then the sinks drain and
    // the process exits 0 with what was accepted delivered (stop() fails otherwise).
    let all = sy.stop();
    assert!(all.iter().any(|s| s["metric"] == "before.stop"), "{all:?}");
    drop(stalled);
}
