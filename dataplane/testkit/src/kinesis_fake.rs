//! A wire-level fake Kinesis speaking the awsJson1.1 `DescribeStreamSummary` / `ListShards`
//! / `PutRecords` protocol, for what no local server does: scripted throttling and partial
//! failures, a split at a chosen call, and answering at once (kinesis-local takes over a
//! second per megabyte, so only a fake shows what a sink itself sustains).
//!
//! The stream: a parent shard `shardId-000000000000` over the whole hash range and `n`
//! children (`shardId-000000000001`..) splitting it in equal ranges. Until `split_at`
//! `PutRecords` calls were answered the parent is open and takes every record; from then on
//! it is closed and every entry goes to the child whose range holds its `ExplicitHashKey`
//! (`split_at = 0`, the default: the children from the start). Each entry is answered by
//! `decide(call, entry)` and recorded as it arrived ([`Arrival`]). Whole calls can fail
//! before any entry is looked at: the first `fail_first_calls` with HTTP 500, then each
//! request `decide_call` scripts ([`CallOutcome`]: 500 `InternalFailure` or 400
//! `ProvisionedThroughputExceededException`).
//!
//! Metrics: none.

use crate::{read_request, write_aws_json};
use serde_json::{json, Value};
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The `DescribeStreamSummary` answer of an active stream named `fake` with `open_shards`
/// open shards and, when given, `MaxRecordSizeInKiB` (shared by the wire fakes).
pub fn describe_stream_summary(
    open_shards: impl Into<Value>,
    max_record_kib: Option<u64>,
) -> Value {
    let mut v = json!({"StreamDescriptionSummary": {
        "StreamName": "fake", "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/fake",
        "StreamStatus": "ACTIVE", "RetentionPeriodHours": 24,
        "StreamCreationTimestamp": 1.7e9, "EnhancedMonitoring": [],
        "OpenShardCount": open_shards.into()}});
    if let Some(k) = max_record_kib {
        v["StreamDescriptionSummary"]["MaxRecordSizeInKiB"] = k.into();
    }
    v
}

/// What the fake answers to one `PutRecords` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Put (a sequence number and the shard id).
    Ok,
    /// `ProvisionedThroughputExceededException`.
    Throttle,
    /// `InternalFailure`.
    Internal,
}

/// What the fake answers to a whole `PutRecords` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// Answered entry by entry ([`Decide`]).
    Answer,
    /// HTTP 500 `InternalFailure`.
    Internal,
    /// HTTP 400 `ProvisionedThroughputExceededException` (the whole call throttled).
    Throttle,
}

/// Scripts whole requests: `request -> outcome`, requests counting from 0 over every
/// `PutRecords` received after the `fail_first_calls` ones (failed ones included).
pub type DecideCall = dyn Fn(usize) -> CallOutcome + Send + Sync;

/// Scripts each entry: `(call, entry index) -> outcome`; calls count from 0 over the
/// answered (not whole-call failed) `PutRecords`.
pub type Decide = dyn Fn(usize, usize) -> Outcome + Send + Sync;

/// Computes a number stored with each arrival from the entry's base64 `Data` (for example
/// the user records of a KPL aggregate).
pub type Annotate = dyn Fn(&str) -> u64 + Send + Sync;

/// One `PutRecords` entry as it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// When its call was read.
    pub at: Instant,
    /// Index of its call among the answered ones.
    pub call: usize,
    /// Child index (0-based: `shardId-000000000001` is 0) its `ExplicitHashKey` falls in;
    /// before the split, the index it will have after.
    pub shard: usize,
    /// Data bytes (decoded) plus partition key bytes, as the shard limits count them.
    pub bytes: usize,
    /// What [`Builder::annotate`] computed (0 without one).
    pub note: u64,
}

/// Per answered `PutRecords` call: the entries' `(Data, ExplicitHashKey)`.
pub type Calls = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A running fake (its threads live as long as the process).
#[derive(Debug, Clone)]
pub struct FakeKinesis {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Per answered call, its entries (empty when [`Builder::keep_data`] is off).
    pub calls: Calls,
    /// Every entry of every answered call, in arrival order.
    pub arrivals: Arc<Mutex<Vec<Arrival>>>,
}

impl FakeKinesis {
    /// A copy of the arrivals so far.
    pub fn arrivals(&self) -> Vec<Arrival> {
        lock(&self.arrivals).clone()
    }

    /// A copy of the calls so far.
    pub fn calls(&self) -> Vec<Vec<(String, String)>> {
        lock(&self.calls).clone()
    }
}

/// Options of a fake; [`Builder::start`] binds it.
pub struct Builder {
    shards: usize,
    max_record_kib: u64,
    fail_first_calls: usize,
    split_at: usize,
    keep_data: bool,
    decide: Arc<Decide>,
    decide_call: Option<Arc<DecideCall>>,
    annotate: Option<Arc<Annotate>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("shards", &self.shards)
            .field("max_record_kib", &self.max_record_kib)
            .field("fail_first_calls", &self.fail_first_calls)
            .field("split_at", &self.split_at)
            .field("keep_data", &self.keep_data)
            .finish_non_exhaustive()
    }
}

/// A fake with 2 children open from the start, 1 MiB records, every entry put, data kept.
pub fn kinesis_fake() -> Builder {
    Builder {
        shards: 2,
        max_record_kib: 1024,
        fail_first_calls: 0,
        split_at: 0,
        keep_data: true,
        decide: Arc::new(|_, _| Outcome::Ok),
        decide_call: None,
        annotate: None,
    }
}

impl Builder {
    /// Children of the parent shard (at least 1).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n.max(1);
        self
    }
    /// `MaxRecordSizeInKiB` reported by `DescribeStreamSummary`.
    pub fn max_record_kib(mut self, kib: u64) -> Self {
        self.max_record_kib = kib;
        self
    }
    /// The first `n` `PutRecords` calls answer HTTP 500 as a whole.
    pub fn fail_first_calls(mut self, n: usize) -> Self {
        self.fail_first_calls = n;
        self
    }
    /// The parent stays open, taking every record, until `calls` calls were answered.
    pub fn split_at(mut self, calls: usize) -> Self {
        self.split_at = calls;
        self
    }
    /// Whether [`FakeKinesis::calls`] keeps every entry's data (a benchmark turns it off).
    pub fn keep_data(mut self, keep: bool) -> Self {
        self.keep_data = keep;
        self
    }
    /// Scripts each entry's outcome.
    pub fn decide(mut self, d: impl Fn(usize, usize) -> Outcome + Send + Sync + 'static) -> Self {
        self.decide = Arc::new(d);
        self
    }
    /// Scripts whole requests (after the `fail_first_calls` ones).
    pub fn decide_call(mut self, d: impl Fn(usize) -> CallOutcome + Send + Sync + 'static) -> Self {
        self.decide_call = Some(Arc::new(d));
        self
    }
    /// Computes [`Arrival::note`] from each entry's base64 data.
    pub fn annotate(mut self, a: impl Fn(&str) -> u64 + Send + Sync + 'static) -> Self {
        self.annotate = Some(Arc::new(a));
        self
    }

    /// Binds `127.0.0.1:0` and serves each connection on its own thread.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub fn start(self) -> std::io::Result<FakeKinesis> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let fake = FakeKinesis {
            url,
            calls: Arc::default(),
            arrivals: Arc::default(),
        };
        let state = Arc::new(State {
            opts: self,
            calls: fake.calls.clone(),
            arrivals: fake.arrivals.clone(),
            counters: Mutex::new(Counters::default()),
        });
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(tcp) = conn else { return };
                let state = state.clone();
                std::thread::spawn(move || serve(tcp, &state));
            }
        });
        Ok(fake)
    }
}

#[derive(Debug, Default)]
struct Counters {
    failed: usize,
    requests: usize,
    answered: usize,
}

struct State {
    opts: Builder,
    calls: Calls,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    counters: Mutex<Counters>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starting hash key of child `i` of `n`.
fn child_start(i: usize, n: usize) -> u128 {
    if i == 0 {
        0
    } else {
        (u128::MAX / n as u128) * i as u128 + 1
    }
}

fn child_end(i: usize, n: usize) -> u128 {
    if i + 1 >= n {
        u128::MAX
    } else {
        child_start(i + 1, n) - 1
    }
}

/// Bytes of a base64 string once decoded.
fn b64_len(s: &str) -> usize {
    (s.len() / 4 * 3).saturating_sub(s.bytes().rev().take_while(|&b| b == b'=').count())
}

fn shard_json(id: usize, start: u128, end: u128, parent: bool, closed: bool) -> Value {
    let mut seq = json!({"StartingSequenceNumber": (id * 10).to_string()});
    if closed {
        seq["EndingSequenceNumber"] = json!("9");
    }
    let mut s = json!({
        "ShardId": format!("shardId-{id:012}"),
        "HashKeyRange": {"StartingHashKey": start.to_string(), "EndingHashKey": end.to_string()},
        "SequenceNumberRange": seq,
    });
    if parent {
        s["ParentShardId"] = json!("shardId-000000000000");
    }
    s
}

fn serve(tcp: TcpStream, st: &State) {
    let mut r = BufReader::new(tcp);
    while let Some(request) = read_request(&mut r) {
        let (status, reply) = answer(&request, st);
        if !write_aws_json(r.get_mut(), status, &reply.to_string()) {
            return;
        }
    }
}

fn bad(msg: &str) -> (u16, Value) {
    (
        400,
        json!({"__type": "SerializationException", "message": msg}),
    )
}

fn answer(request: &crate::Request, st: &State) -> (u16, Value) {
    let Ok(req) = serde_json::from_slice::<Value>(&request.body) else {
        return bad("body is not JSON");
    };
    if request.header("content-type") != "application/x-amz-json-1.1" {
        return bad("content-type is not application/x-amz-json-1.1");
    }
    let n = st.opts.shards;
    let target = request
        .header("x-amz-target")
        .trim_start_matches("Kinesis_20131202.");
    let split = lock(&st.counters).answered >= st.opts.split_at;
    match target {
        "DescribeStreamSummary" => (
            200,
            describe_stream_summary(if split { n } else { 1 }, Some(st.opts.max_record_kib)),
        ),
        "ListShards" => {
            let mut shards = vec![shard_json(0, 0, u128::MAX, false, split)];
            if split {
                shards.extend(
                    (0..n).map(|i| {
                        shard_json(i + 1, child_start(i, n), child_end(i, n), true, false)
                    }),
                );
            }
            (200, json!({ "Shards": shards }))
        }
        "PutRecords" => put_records(&req, st, split),
        other => (
            400,
            json!({"__type": "UnknownOperationException", "message": other}),
        ),
    }
}

fn put_records(req: &Value, st: &State, split: bool) -> (u16, Value) {
    let now = Instant::now();
    let n = st.opts.shards;
    let Some(records) = req["Records"].as_array() else {
        return bad("no Records");
    };
    let mut parsed = Vec::with_capacity(records.len());
    for e in records {
        let (Some(data), Some(pk), Some(ehk)) = (
            e["Data"].as_str(),
            e["PartitionKey"].as_str(),
            e["ExplicitHashKey"].as_str(),
        ) else {
            return bad("an entry without Data, PartitionKey or ExplicitHashKey");
        };
        let Ok(key) = ehk.parse::<u128>() else {
            return bad("ExplicitHashKey is not a number");
        };
        let shard = (0..n)
            .rev()
            .find(|&i| child_start(i, n) <= key)
            .unwrap_or(0);
        parsed.push((data, ehk, shard, b64_len(data) + pk.len()));
    }
    let mut counters = lock(&st.counters);
    if counters.failed < st.opts.fail_first_calls {
        counters.failed += 1;
        return (
            500,
            json!({"__type": "InternalFailure", "message": "scripted"}),
        );
    }
    let request = counters.requests;
    counters.requests += 1;
    match st.opts.decide_call.as_ref().map(|d| d(request)) {
        None | Some(CallOutcome::Answer) => {}
        Some(CallOutcome::Internal) => {
            return (
                500,
                json!({"__type": "InternalFailure", "message": "scripted"}),
            )
        }
        Some(CallOutcome::Throttle) => {
            return (
                400,
                json!({"__type": "ProvisionedThroughputExceededException",
                    "message": "Rate exceeded for stream fake (scripted)"}),
            )
        }
    }
    let call = counters.answered;
    counters.answered += 1;
    drop(counters);
    let mut failed = 0;
    let mut arrivals = Vec::with_capacity(parsed.len());
    let results: Vec<Value> = parsed
        .iter()
        .enumerate()
        .map(|(i, &(data, _, shard, bytes))| {
            let note = st.opts.annotate.as_ref().map_or(0, |a| a(data));
            arrivals.push(Arrival {
                at: now,
                call,
                shard,
                bytes,
                note,
            });
            let id = if split { shard + 1 } else { 0 };
            match (st.opts.decide)(call, i) {
                Outcome::Ok => json!({"SequenceNumber": format!("{call}-{i}"),
                    "ShardId": format!("shardId-{id:012}")}),
                Outcome::Throttle => {
                    failed += 1;
                    json!({"ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": "Rate exceeded for shard"})
                }
                Outcome::Internal => {
                    failed += 1;
                    json!({"ErrorCode": "InternalFailure", "ErrorMessage": "scripted"})
                }
            }
        })
        .collect();
    lock(&st.arrivals).extend(arrivals);
    if st.opts.keep_data {
        lock(&st.calls).push(
            parsed
                .iter()
                .map(|&(d, k, _, _)| (d.to_owned(), k.to_owned()))
                .collect(),
        );
    }
    (
        200,
        json!({"FailedRecordCount": failed, "Records": results}),
    )
}
