//! The signalfx sink: statsd batches and intake payloads translated (`formats.md` §5), JSON
//! and protobuf bodies, `X-SF-Token`, chunking, unsupported payloads.

use super::server::{batch, config, payload, run, server, set_env, spawn, Reply, Req, V1_CAPTURE};
use prost::Message;
use serde_json::json;
use std::collections::BTreeMap;
use switchyard_core::egress::Endpoint;
use switchyard_sinks::sink::signalfx::proto::DataPointUploadMessage;
use switchyard_sinks::{DropReason, SinkStats};

fn sink(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[sinks.{name}]\ntype = \"signalfx\"\nendpoint = \"{url}\"\nmax_in_flight = 1\n{extra}\n"
    )
}

fn ok() -> Reply {
    Reply::status(200).body("\"OK\"")
}

/// A datapoint as compared across encodings: (type, metric, timestamp ms, value, dims).
type Point = (String, String, i64, f64, BTreeMap<String, String>);

fn json_points(reqs: &[Req]) -> Vec<Point> {
    let mut out = Vec::new();
    for r in reqs {
        let v = r.json();
        for ty in ["gauge", "counter"] {
            for d in v[ty].as_array().into_iter().flatten() {
                out.push((
                    ty.to_string(),
                    d["metric"].as_str().unwrap().to_string(),
                    d["timestamp"].as_i64().unwrap(),
                    d["value"].as_f64().unwrap(),
                    serde_json::from_value(d["dimensions"].clone()).unwrap(),
                ));
            }
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

fn proto_points(reqs: &[Req]) -> Vec<Point> {
    let mut out = Vec::new();
    for r in reqs {
        let m = DataPointUploadMessage::decode(&r.body[..]).unwrap();
        for d in m.datapoints {
            let ty = match d.metric_type.unwrap() {
                0 => "gauge",
                1 => "counter",
                t => panic!("unexpected metric type {t}"),
            };
            out.push((
                ty.to_string(),
                d.metric.unwrap(),
                d.timestamp.unwrap(),
                d.value.unwrap().double_value.unwrap(),
                d.dimensions
                    .into_iter()
                    .map(|x| (x.key.unwrap(), x.value.unwrap()))
                    .collect(),
            ));
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

fn dims(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn v1_payloads_are_translated_in_requests_of_max_series() {
    set_env("SY_T_SFX_TOKEN1", "sfx-token-1");
    let srv = server().default_reply(ok()).start();
    let cfg = config(
        &sink(
            "sfx",
            &srv.url(),
            "token_env = \"SY_T_SFX_TOKEN1\"\nmax_series_per_request = 1",
        ),
        &["sfx"],
    );
    let two = r#"{"series":[{"metric":"a.b","points":[[1700000000,1.5]],"type":"rate","interval":10,"host":"web-1","tags":["env:prod"]},
        {"metric":"q","points":[[1700000005.0004,null],[1700000001,7]],"tags":["canary"]}]}"#;
    let st = run(
        spawn(&cfg),
        vec![
            (
                0,
                payload(Endpoint::SeriesV1, V1_CAPTURE, Some("dd-client-key"), 1, 2),
            ),
            (0, payload(Endpoint::SeriesV1, two, None, 2, 3)),
        ],
    );
    let reqs = srv.drain();
    assert_eq!(reqs.len(), 3, "one series per request");
    for r in &reqs {
        assert_eq!(r.path, "/v2/datapoint");
        assert_eq!(r.header("x-sf-token"), Some("sfx-token-1"));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("dd-api-key"),
            None,
            "the Datadog key never goes to SignalFx"
        );
    }
    let capture_dims = dims(&[
        ("env", "prod"),
        ("host", "web-1"),
        ("role", "web"),
        ("unnamed_canary", "canary"),
    ]);
    assert_eq!(
        reqs[0].json(),
        json!({"counter": [
            {"metric": "app.requests", "value": 1, "timestamp": 1_700_000_000_000i64, "dimensions": capture_dims},
            {"metric": "app.requests", "value": 3, "timestamp": 1_700_000_010_000i64, "dimensions": capture_dims}
        ]})
    );
    assert_eq!(
        reqs[1].json(),
        json!({"counter": [{"metric": "a.b", "value": 15, "timestamp": 1_700_000_000_000i64,
            "dimensions": {"env": "prod", "host": "web-1"}}]})
    );
    assert_eq!(
        reqs[2].json(),
        json!({"gauge": [{"metric": "q", "value": 7, "timestamp": 1_700_000_001_000i64,
            "dimensions": {"unnamed_canary": "canary"}}]})
    );
    let s = &st[0];
    assert_eq!(SinkStats::get(&s.values_received), 5);
    assert_eq!(SinkStats::get(&s.values_delivered), 4);
    assert_eq!(s.dropped(DropReason::Translation), 1, "the null value");
}

#[test]
fn v2_series_and_check_runs_are_translated_other_endpoints_unsupported() {
    let srv = server().default_reply(ok()).start();
    let cfg = config(&sink("sfx", &srv.url(), "compression = \"none\""), &["sfx"]);
    let v2 = r#"{"series":[{"metric":"system.load.1","type":3,"points":[{"timestamp":1700000000,"value":0.7}],
        "resources":[{"name":"web-1","type":"host"}],"tags":["env:prod"]}]}"#;
    let checks = r#"[{"check":"app.ok","host_name":"web-1","status":2,"timestamp":1700000000,"tags":["env:prod"]}]"#;
    let dist = r#"{"series":[{"metric":"d","points":[[1700000000,[1,2,3]]]}]}"#;
    let event = r#"{"title":"t","text":"x"}"#;
    let st = run(
        spawn(&cfg),
        vec![
            (0, payload(Endpoint::SeriesV2, v2, Some("k"), 1, 1)),
            (0, payload(Endpoint::CheckRun, checks, Some("k"), 1, 1)),
            (
                0,
                payload(Endpoint::DistributionPoints, dist, Some("k"), 1, 3),
            ),
            (0, payload(Endpoint::Events, event, Some("k"), 1, 1)),
        ],
    );
    let reqs = srv.drain();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("content-encoding"), None);
    assert_eq!(
        json_points(&reqs),
        vec![
            (
                "gauge".into(),
                "app.ok".into(),
                1_700_000_000_000,
                2.0,
                dims(&[("env", "prod"), ("host", "web-1")])
            ),
            (
                "gauge".into(),
                "system.load.1".into(),
                1_700_000_000_000,
                0.7,
                dims(&[("env", "prod"), ("host", "web-1")])
            ),
        ]
    );
    let s = &st[0];
    assert_eq!(SinkStats::get(&s.values_delivered), 2);
    assert_eq!(s.dropped(DropReason::Unsupported), 4);
}

#[test]
fn protobuf_bodies_decode_to_the_same_points_as_json() {
    let js = server().default_reply(ok()).start();
    let pb = server().default_reply(ok()).start();
    let cfg = config(
        &format!(
            "{}{}",
            sink("js", &js.url(), "max_series_per_request = 2"),
            sink(
                "pb",
                &pb.url(),
                "max_series_per_request = 2\nencoding = \"protobuf\"\ncompression = \"deflate\""
            )
        ),
        &["js", "pb"],
    );
    let items = [
        batch(3),
        payload(Endpoint::SeriesV1, V1_CAPTURE, None, 1, 2),
    ];
    let mut sends = Vec::new();
    for it in &items {
        sends.push((0, it.clone()));
        sends.push((1, it.clone()));
    }
    let st = run(spawn(&cfg), sends);
    let (jr, pr) = (js.drain(), pb.drain());
    for r in &pr {
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("content-encoding"), Some("deflate"));
    }
    let want = json_points(&jr);
    assert_eq!(want.len(), 5);
    assert!(want.contains(&(
        "gauge".into(),
        "m2".into(),
        1_700_000_000_000,
        2.0,
        dims(&[("host", "h"), ("k", "v")])
    )));
    assert_eq!(proto_points(&pr), want);
    assert_eq!(pr.len(), 3, "2 + 1 batch series, then the payload");
    assert_eq!(SinkStats::get(&st[1].values_delivered), 5);
}

#[test]
fn statsd_batches_carry_the_token_and_gzip() {
    set_env("SY_T_SFX_TOKEN2", "tok-2");
    let srv = server().default_reply(ok()).start();
    let cfg = config(
        &sink("sfx", &srv.url(), "token_env = \"SY_T_SFX_TOKEN2\""),
        &["sfx"],
    );
    let st = run(spawn(&cfg), vec![(0, batch(2))]);
    let r = srv.next();
    assert_eq!(r.header("x-sf-token"), Some("tok-2"));
    assert_eq!(
        json_points(&[r]),
        vec![
            (
                "gauge".into(),
                "m0".into(),
                1_700_000_000_000,
                0.0,
                dims(&[("host", "h"), ("k", "v")])
            ),
            (
                "gauge".into(),
                "m1".into(),
                1_700_000_000_000,
                1.0,
                dims(&[("host", "h"), ("k", "v")])
            ),
        ]
    );
    assert_eq!(SinkStats::get(&st[0].values_delivered), 2);
}

#[test]
fn a_refused_protobuf_request_is_a_dead_letter_in_base64() {
    use base64::Engine as _;
    let srv = server()
        .default_reply(Reply::status(400).body("\"invalid datapoint\""))
        .start();
    let state = tempfile::tempdir().unwrap();
    let toml = format!(
        "state_dir = \"{}\"\n[sinks.sfx]\ntype = \"signalfx\"\nendpoint = \"{}\"\nmax_in_flight = 1\n\
         encoding = \"protobuf\"\ndeadletter_max_bytes = 65536\n",
        state.path().display(),
        srv.url()
    );
    let cfg = config(&toml, &["sfx"]);
    let st = run(spawn(&cfg), vec![(0, batch(3))]);
    let sent = srv.drain();
    assert_eq!(sent.len(), 1);
    let s = &st[0];
    assert_eq!(s.dropped(DropReason::Rejected), 3);
    let (entries, _) = s.deadletter.get().unwrap().read(10, usize::MAX).unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["status"], 400);
    assert_eq!(e["response"], "\"invalid datapoint\"");
    assert_eq!(e["content_type"], "application/x-protobuf");
    assert_eq!(e["values"], 3);
    let kept = base64::engine::general_purpose::STANDARD
        .decode(e["request_body_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        kept, sent[0].body,
        "the protobuf as sent, before compression"
    );
}
