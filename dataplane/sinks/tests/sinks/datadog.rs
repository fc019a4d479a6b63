//! The datadog sink: statsd batches as `/api/v1/series`, payloads passed through, keys,
//! compression, retries and rejections.

use super::server::{
    batch, config, payload, run, server, set_env, spawn, spawn_with_backoff, Reply, V1_CAPTURE,
};
use serde_json::json;
use std::time::Duration;
use switchyard_core::egress::Endpoint;
use switchyard_sinks::{DropReason, RequestOutcome, SinkStats};

fn sink(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[sinks.{name}]\ntype = \"datadog\"\nendpoint = \"{url}\"\nmax_in_flight = 1\n{extra}\n"
    )
}

#[test]
fn statsd_batches_become_v1_series_requests_split_by_max_series() {
    set_env("SY_T_DD_KEY1", "dd-key-0123");
    let srv = server().start();
    let cfg = config(
        &sink(
            "dd",
            &srv.url(),
            "api_key_env = \"SY_T_DD_KEY1\"\nmax_series_per_request = 2",
        ),
        &["dd"],
    );
    let st = run(spawn(&cfg), vec![(0, batch(3))]);
    let reqs = srv.drain();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.path, "/api/v1/series");
        assert_eq!(r.header("dd-api-key"), Some("dd-key-0123"));
        assert_eq!(
            r.header("content-encoding"),
            Some("deflate"),
            "the datadog default"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert_eq!(
        reqs[0].json(),
        json!({"series": [
            {"metric": "m0", "points": [[1_700_000_000u64, 0.0]], "type": "gauge", "interval": 10.0, "host": "h", "tags": ["k:v"]},
            {"metric": "m1", "points": [[1_700_000_000u64, 1.0]], "type": "gauge", "interval": 10.0, "host": "h", "tags": ["k:v"]}
        ]})
    );
    assert_eq!(reqs[1].json()["series"][0]["metric"], "m2");
    assert_eq!(reqs[1].json()["series"].as_array().unwrap().len(), 1);
    let s = &st[0];
    assert_eq!(SinkStats::get(&s.values_delivered), 3);
    assert_eq!(SinkStats::get(&s.batches), 1);
    assert_eq!(s.requests(RequestOutcome::Success), 2);
    assert_eq!(SinkStats::get(&s.latency.count), 2);
    let raw: usize = reqs.iter().map(|r| r.body.len()).sum();
    let wire: usize = reqs.iter().map(|r| r.wire.len()).sum();
    assert_eq!(SinkStats::get(&s.bytes_uncompressed), raw as u64);
    assert_eq!(SinkStats::get(&s.bytes), wire as u64);
}

#[test]
fn payloads_pass_through_to_their_path_with_the_client_key() {
    let srv = server().start();
    let cfg = config(&sink("dd", &srv.url(), "compression = \"gzip\""), &["dd"]);
    let v2 =
        r#"{"series":[{"metric":"a","type":3,"points":[{"timestamp":1700000000,"value":1.5}]}]}"#;
    let checks = r#"[{"check":"app.ok","host_name":"web-1","status":0,"tags":["env:prod"]}]"#;
    let st = run(
        spawn(&cfg),
        vec![
            (
                0,
                payload(Endpoint::SeriesV1, V1_CAPTURE, Some("client-key-1"), 1, 2),
            ),
            (
                0,
                payload(Endpoint::SeriesV2, v2, Some("client-key-2"), 1, 1),
            ),
            (
                0,
                payload(Endpoint::CheckRun, checks, Some("client-key-3"), 1, 1),
            ),
        ],
    );
    let reqs = srv.drain();
    let seen: Vec<(&str, Option<&str>, Option<&str>)> = reqs
        .iter()
        .map(|r| {
            (
                r.path.as_str(),
                r.header("dd-api-key"),
                r.header("content-encoding"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/api/v1/series", Some("client-key-1"), Some("gzip")),
            ("/api/v2/series", Some("client-key-2"), Some("gzip")),
            ("/api/v1/check_run", Some("client-key-3"), Some("gzip")),
        ]
    );
    // The same series, byte for byte once decompressed.
    assert_eq!(reqs[0].body, V1_CAPTURE.as_bytes());
    assert_eq!(reqs[1].body, v2.as_bytes());
    assert_eq!(reqs[2].body, checks.as_bytes());
    let s = &st[0];
    assert_eq!(SinkStats::get(&s.payloads), 3);
    assert_eq!(SinkStats::get(&s.values_received), 4);
    assert_eq!(SinkStats::get(&s.values_delivered), 4);
}

#[test]
fn the_configured_key_wins_over_the_client_key_and_none_compression_sends_plain() {
    set_env("SY_T_DD_KEY2", "configured-key");
    let srv = server().start();
    let cfg = config(
        &sink(
            "dd",
            &srv.url(),
            "api_key_env = \"SY_T_DD_KEY2\"\ncompression = \"none\"",
        ),
        &["dd"],
    );
    run(
        spawn(&cfg),
        vec![(
            0,
            payload(Endpoint::SeriesV1, V1_CAPTURE, Some("client"), 1, 2),
        )],
    );
    let r = srv.next();
    assert_eq!(r.header("dd-api-key"), Some("configured-key"));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.wire, V1_CAPTURE.as_bytes());
}

#[test]
fn data_without_any_key_is_dropped_as_no_api_key() {
    let srv = server().start();
    let cfg = config(&sink("dd", &srv.url(), ""), &["dd"]);
    let st = run(
        spawn(&cfg),
        vec![
            (0, batch(4)),
            (0, payload(Endpoint::SeriesV1, V1_CAPTURE, None, 1, 2)),
        ],
    );
    assert!(srv.drain().is_empty());
    assert_eq!(st[0].dropped(DropReason::NoApiKey), 6);
    assert_eq!(SinkStats::get(&st[0].values_delivered), 0);
}

#[test]
fn retry_after_on_503_is_honoured_then_delivered() {
    // The driver's own backoff is an hour: only the server's Retry-After (1 s) can bring the
    // second attempt within the test's 20 s wait.
    let srv = server()
        .then(Reply::status(503).header("Retry-After", "1"))
        .start();
    let cfg = config(&sink("dd", &srv.url(), ""), &["dd"]);
    let rt = spawn_with_backoff(&cfg, Duration::from_secs(3600));
    let st = run(
        rt,
        vec![(0, payload(Endpoint::SeriesV1, V1_CAPTURE, Some("k"), 1, 2))],
    );
    let reqs = srv.drain();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body, reqs[1].body);
    let s = &st[0];
    assert_eq!(SinkStats::get(&s.retries), 1);
    assert_eq!(s.requests(RequestOutcome::Retryable), 1);
    assert_eq!(s.requests(RequestOutcome::Success), 1);
    assert_eq!(SinkStats::get(&s.values_delivered), 2);
}

#[test]
fn a_400_is_not_retried_and_counted_as_rejected() {
    let srv = server()
        .default_reply(
            Reply::status(400).body(r#"{"errors":["Payload is not in the expected format"]}"#),
        )
        .start();
    let cfg = config(&sink("dd", &srv.url(), "max_retries = 5"), &["dd"]);
    let st = run(
        spawn(&cfg),
        vec![(0, payload(Endpoint::SeriesV1, V1_CAPTURE, Some("k"), 1, 2))],
    );
    assert_eq!(srv.drain().len(), 1, "no retry after a 400");
    let s = &st[0];
    assert_eq!(s.dropped(DropReason::Rejected), 2);
    assert_eq!(s.requests(RequestOutcome::Rejected), 1);
    assert_eq!(SinkStats::get(&s.retries), 0);
}

#[test]
fn persistent_5xx_exhausts_max_retries() {
    let srv = server().default_reply(Reply::status(500)).start();
    let cfg = config(&sink("dd", &srv.url(), "max_retries = 2"), &["dd"]);
    let st = run(
        spawn(&cfg),
        vec![(0, payload(Endpoint::SeriesV1, V1_CAPTURE, Some("k"), 1, 2))],
    );
    assert_eq!(srv.drain().len(), 3, "first attempt plus max_retries");
    assert_eq!(st[0].dropped(DropReason::RetriesExhausted), 2);
    assert_eq!(st[0].requests(RequestOutcome::Retryable), 3);
}

#[test]
fn shutdown_interrupts_a_long_retry_after_and_counts_the_data() {
    let srv = server()
        .default_reply(Reply::status(429).header("Retry-After", "3600"))
        .start();
    let cfg = config(&sink("dd", &srv.url(), ""), &["dd"]);
    let rt = spawn(&cfg);
    let stats = rt.handles()[0].stats.clone();
    rt.handles()[0]
        .tx
        .send(payload(Endpoint::SeriesV1, V1_CAPTURE, Some("k"), 1, 2))
        .unwrap();
    srv.next();
    // The worker now waits out Retry-After (capped at 60 s); shutdown must not.
    assert!(
        !rt.shutdown(Duration::from_millis(50)),
        "still retrying at the deadline"
    );
    assert_eq!(stats.dropped(DropReason::Shutdown), 2);
    assert_eq!(SinkStats::get(&stats.values_delivered), 0);
}

#[test]
fn client_bytes_in_the_sinks_encoding_are_forwarded_untouched() {
    use std::sync::Arc;
    use switchyard_core::egress::{ApiKey, BodyFormat, Egress, IntakePayload, StoredBody};
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(9).unwrap());
    let json = V1_CAPTURE.as_bytes();
    let mut gz = vec![0; c.gzip_compress_bound(json.len())];
    let n = c.gzip_compress(json, &mut gz).unwrap();
    gz.truncate(n);
    let mut zl = vec![0; c.zlib_compress_bound(json.len())];
    let n = c.zlib_compress(json, &mut zl).unwrap();
    zl.truncate(n);
    let stored = |format, bytes: &Vec<u8>| {
        let mut p = IntakePayload::json(
            Endpoint::SeriesV1,
            json.to_vec(),
            Some(ApiKey::new("k")),
            1,
            2,
        );
        p.wire_bytes = bytes.len() as u64;
        p.body = StoredBody {
            format,
            bytes: bytes.clone(),
        };
        Egress::Payload(Arc::new(p))
    };
    for (compression, same, other) in [
        ("gzip", (BodyFormat::Gzip, &gz), (BodyFormat::Zlib, &zl)),
        ("deflate", (BodyFormat::Zlib, &zl), (BodyFormat::Gzip, &gz)),
    ] {
        let srv = server().start();
        // Level 1, unlike the clients' level 9 above: a recompressed body would differ.
        let extra = format!("compression = \"{compression}\"\ncompression_level = 1");
        let cfg = config(&sink("dd", &srv.url(), &extra), &["dd"]);
        let st = run(
            spawn(&cfg),
            vec![(0, stored(same.0, same.1)), (0, stored(other.0, other.1))],
        );
        let reqs = srv.drain();
        assert_eq!(reqs.len(), 2, "{compression}");
        for r in &reqs {
            assert_eq!(r.header("content-encoding"), Some(compression));
            assert_eq!(r.body, json, "{compression}");
        }
        assert_eq!(
            &reqs[0].wire, same.1,
            "{compression}: forwarded as received"
        );
        assert_ne!(
            &reqs[1].wire, other.1,
            "{compression}: decoded and compressed again"
        );
        let s = &st[0];
        assert_eq!(SinkStats::get(&s.values_delivered), 4);
        assert_eq!(SinkStats::get(&s.bytes_uncompressed), 2 * json.len() as u64);
    }
}

#[test]
fn a_refused_pass_through_is_a_dead_letter_with_its_json_and_no_key() {
    use std::sync::Arc;
    use switchyard_core::egress::{ApiKey, BodyFormat, Egress, IntakePayload, StoredBody};
    set_env("SY_T_DD_DLQ", "dd-key-dead-5150");
    // The vendor quotes the key it refused.
    let srv = server()
        .default_reply(
            Reply::status(403).body(r#"{"errors":["API key dd-key-dead-5150 is invalid"]}"#),
        )
        .start();
    let state = tempfile::tempdir().unwrap();
    let toml = format!(
        "state_dir = \"{}\"\n{}",
        state.path().display(),
        sink(
            "dd",
            &srv.url(),
            "api_key_env = \"SY_T_DD_DLQ\"\ncompression = \"gzip\"\nmax_retries = 3"
        )
    );
    let cfg = config(&toml, &["dd"]);
    // The client's gzip bytes go out untouched; the dead letter holds the JSON they carry.
    let json = V1_CAPTURE.as_bytes();
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let mut gz = vec![0; c.gzip_compress_bound(json.len())];
    let n = c.gzip_compress(json, &mut gz).unwrap();
    gz.truncate(n);
    let mut p = IntakePayload::json(
        Endpoint::SeriesV1,
        json.to_vec(),
        Some(ApiKey::new("k")),
        1,
        2,
    );
    p.wire_bytes = gz.len() as u64;
    p.body = StoredBody {
        format: BodyFormat::Gzip,
        bytes: gz.clone(),
    };
    let st = run(spawn(&cfg), vec![(0, Egress::Payload(Arc::new(p)))]);
    assert_eq!(srv.drain().len(), 1, "a 403 is not retried");
    let s = &st[0];
    assert_eq!(s.dropped(DropReason::Rejected), 2);
    let store = s
        .deadletter
        .get()
        .expect("a datadog sink with state_dir keeps dead letters");
    assert_eq!(store.dir(), state.path().join("deadletter").join("dd"));
    let (entries, _) = store.read(10, usize::MAX).unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["status"], 403);
    assert_eq!(e["values"], 2);
    assert_eq!(e["request"], format!("POST {}/api/v1/series", srv.url()));
    assert_eq!(
        e["request_body"], V1_CAPTURE,
        "the JSON, decoded from the client's gzip"
    );
    assert_eq!(e["request_bytes"], json.len());
    let text = serde_json::to_string(e).unwrap();
    assert!(!text.contains("dd-key-dead-5150"), "{text}");
    assert!(
        e["response"]
            .as_str()
            .unwrap()
            .contains("API key <redacted> is invalid"),
        "{e:#}"
    );
    let c = store.counts();
    assert_eq!((c.written_entries, c.written_values), (1, 2));
}
