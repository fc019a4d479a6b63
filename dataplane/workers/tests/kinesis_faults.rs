//! The Kinesis worker against a wire-level fake of the Kinesis JSON protocol, for the faults
//! no local server produces: `GetRecords` throttled (`ProvisionedThroughputExceededException`),
//! failing (HTTP 500) and an expired iterator. The reader backs off, fetches a new iterator
//! at its last checkpoint, skips the user records it already delivered (inside a KPL
//! aggregate too) and delivers every series exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use serde_json::{json, Value};
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::config::Config;
use switchyard_core::model::{SeriesBatch, SeriesType};
use switchyard_stream::kpl::Aggregator;
use switchyard_stream::{Compression, Encoding, StreamBatch, StreamEncoder};
use switchyard_testkit::kinesis_fake::describe_stream_summary;
use switchyard_testkit::{read_request, write_aws_json};
use switchyard_workers::spawn_workers;

/// One envelope with series `m{first}..m{first + n}`.
fn envelope(first: usize, n: usize) -> Vec<u8> {
    let mut b = SeriesBatch::new(1_700_000_000, 10.0);
    for i in first..first + n {
        let id = b.identity(&format!("m{i}"), ["a:b"], "h");
        b.push(id, "", SeriesType::Gauge, i as f64);
    }
    let mut sb = StreamBatch::new();
    sb.extend_from_series_batch(&b);
    let mut out = Vec::new();
    StreamEncoder::default()
        .encode(&sb, Encoding::Rkyv, Compression::Deflate, &mut out)
        .unwrap();
    out
}

/// The shard's records: (sequence number, data). Record 1 is a KPL aggregate of two
/// envelopes.
fn records() -> Vec<(String, Vec<u8>)> {
    let mut agg = Aggregator::new(1 << 20);
    assert!(agg.add("k", Some("0"), &envelope(10, 5)).unwrap().is_none());
    assert!(agg.add("k", Some("0"), &envelope(15, 5)).unwrap().is_none());
    let aggregate = agg.finish().unwrap().data;
    vec![
        (
            "49000000000000000000000000000000000000000000000000000001".into(),
            envelope(0, 10),
        ),
        (
            "49000000000000000000000000000000000000000000000000000002".into(),
            aggregate,
        ),
        (
            "49000000000000000000000000000000000000000000000000000003".into(),
            envelope(20, 10),
        ),
    ]
}

/// GetRecords calls: the first is throttled, the second fails with HTTP 500, the fourth
/// finds its iterator expired; the others return one record each.
fn script(call: usize) -> Option<(u16, &'static str)> {
    match call {
        0 => Some((400, "ProvisionedThroughputExceededException")),
        1 => Some((500, "InternalFailure")),
        3 => Some((400, "ExpiredIteratorException")),
        _ => None,
    }
}

/// Every GetShardIterator request as (type, starting sequence number).
type IteratorRequests = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Fake {
    url: String,
    iterators: IteratorRequests,
}

fn fake() -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let iterators: IteratorRequests = Arc::default();
    let calls = Arc::new(Mutex::new(0usize));
    let its = iterators.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(tcp) = conn else { return };
            let (its, calls) = (its.clone(), calls.clone());
            std::thread::spawn(move || serve(tcp, &its, &calls));
        }
    });
    Fake { url, iterators }
}

fn serve(tcp: TcpStream, iterators: &Mutex<Vec<(String, Option<String>)>>, calls: &Mutex<usize>) {
    let recs = records();
    let mut r = BufReader::new(tcp);
    while let Some(request) = read_request(&mut r) {
        let (headers, body) = (&request.headers, &request.body);
        let req: Value = serde_json::from_slice(body).unwrap();
        let target = headers["x-amz-target"].trim_start_matches("Kinesis_20131202.");
        let error =
            |status: u16, kind: &str| (status, json!({"__type": kind, "message": "scripted"}));
        let (status, reply) = match target {
            "DescribeStreamSummary" => (200, describe_stream_summary(1, None)),
            "ListShards" => (
                200,
                json!({"Shards": [{"ShardId": "shardId-000000000000",
                    "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": u128::MAX.to_string()},
                    "SequenceNumberRange": {"StartingSequenceNumber": "1"}}]}),
            ),
            "GetShardIterator" => {
                let kind = req["ShardIteratorType"].as_str().unwrap().to_string();
                let seq = req["StartingSequenceNumber"].as_str().map(str::to_string);
                let pos = match (kind.as_str(), &seq) {
                    ("TRIM_HORIZON", _) => 0,
                    ("AT_SEQUENCE_NUMBER", Some(s)) => {
                        recs.iter().position(|(q, _)| q == s).unwrap()
                    }
                    other => panic!("unexpected iterator request {other:?}"),
                };
                iterators.lock().unwrap().push((kind, seq));
                (200, json!({"ShardIterator": format!("pos:{pos}")}))
            }
            "GetRecords" => {
                let call = {
                    let mut c = calls.lock().unwrap();
                    *c += 1;
                    *c - 1
                };
                match script(call) {
                    Some((status, kind)) => error(status, kind),
                    None => {
                        let pos: usize = req["ShardIterator"]
                            .as_str()
                            .unwrap()
                            .trim_start_matches("pos:")
                            .parse()
                            .unwrap();
                        let out: Vec<Value> = recs
                            .get(pos)
                            .map(|(seq, data)| {
                                json!({"SequenceNumber": seq, "PartitionKey": "k",
                                    "ApproximateArrivalTimestamp": 1.7e9,
                                    "Data": base64::engine::general_purpose::STANDARD.encode(data)})
                            })
                            .into_iter()
                            .collect();
                        let next = (pos + out.len()).min(recs.len());
                        (
                            200,
                            json!({"Records": out, "NextShardIterator": format!("pos:{next}"),
                                "MillisBehindLatest": 0}),
                        )
                    }
                }
            }
            other => error(400, &format!("Unexpected{other}")),
        };
        let body = reply.to_string();
        if !write_aws_json(r.get_mut(), status, &body) {
            return;
        }
    }
}

#[test]
fn throttled_failed_and_expired_reads_deliver_every_series_exactly_once() {
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "dummy"),
        ("AWS_SECRET_ACCESS_KEY", "dummy"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        // SAFETY: set before any thread of this test binary reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let f = fake();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.ndjson");
    let cfg = Config::from_toml(&format!(
        r#"
state_dir = "{}"
[sinks.stream]
type = "kinesis"
stream = "fake"
region = "us-east-1"
endpoint = "{}"
[sinks.local]
type = "file"
path = "{}"
[[routes]]
name = "all"
to = ["stream"]
[[workers]]
from = "stream"
to = ["local"]
worker_id = "w1"
failover = "3s"
take_interval = "500ms"
"#,
        tmp.path().join("state").display(),
        f.url,
        out.display()
    ))
    .unwrap();
    let workers = spawn_workers(&cfg, |_| None).unwrap();
    let probe = workers.probes().remove(0);
    let until = Instant::now() + Duration::from_secs(30);
    let names = || -> Vec<String> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["metric"].as_str().unwrap().to_string()
            })
            .collect()
    };
    while names().len() < 30 {
        assert!(Instant::now() < until, "delivered: {:?}", names());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing more comes (the expired iterator resumed at the checkpoint, without repeats).
    std::thread::sleep(Duration::from_millis(800));
    let mut got = names();
    got.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(got, want, "every series exactly once");
    let [read, delivered, _, decode_errors, _, _, read_errors, leases, _] = probe.snapshot();
    assert_eq!(
        read_errors, 3,
        "throttled, failed and expired reads are counted"
    );
    assert_eq!(decode_errors, 0);
    assert_eq!(leases, 1);
    assert!(read >= 3, "records read: {read}");
    assert_eq!(delivered, 4, "four envelopes (one aggregate holds two)");
    let its = f.iterators.lock().unwrap().clone();
    assert_eq!(its[0].0, "TRIM_HORIZON", "{its:?}");
    assert!(
        its.iter().any(|(k, s)| k == "AT_SEQUENCE_NUMBER"
            && s.as_deref() == Some("49000000000000000000000000000000000000000000000000000001")),
        "the expired iterator is fetched again at the checkpointed record: {its:?}"
    );
    assert!(workers.shutdown(Duration::from_secs(10)));
    // The lease file holds the last checkpoint: the last record, sub-sequence 0.
    let leases: Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("state/switchyard-leases.json")).unwrap(),
    )
    .unwrap();
    let cp = &leases["leases"][0]["checkpoint"];
    assert_eq!(cp["at"], "seq", "{leases:#}");
    assert_eq!(
        cp["seq"], "49000000000000000000000000000000000000000000000000000003",
        "{leases:#}"
    );
}
