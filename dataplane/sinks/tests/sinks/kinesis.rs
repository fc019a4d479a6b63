//! The kinesis sink against real local servers (kinesis-local = kinesis-mock, and kinesalite
//! for its limit checks: 500 records per call, 1 MiB per record) and, for throttling and
//! partial failures that neither server produces, the wire-level fake of
//! `switchyard_testkit::kinesis_fake` (awsJson1.1 `DescribeStreamSummary` / `ListShards` /
//! `PutRecords`).
//!
//! Start the servers with `.ci/servers/kinesis-local.sh` and `.ci/servers/kinesalite.sh`;
//! endpoints from `KINESIS_LOCAL_ENDPOINT` (default `http://127.0.0.1:4568`) and
//! `KINESALITE_ENDPOINT` (default `http://127.0.0.1:4570`).

use super::server::{config, payload, run, set_env, spawn};
use aws_sdk_kinesis::types::ShardIteratorType;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::egress::{Egress, Endpoint};
use switchyard_core::model::{SeriesBatch, SeriesType};
use switchyard_sinks::{DropReason, SinkStats};
use switchyard_stream::kpl::deaggregate;
use switchyard_stream::{Decoded, StreamDecoder};
use switchyard_testkit::kinesis_fake::{kinesis_fake, Arrival, FakeKinesis, Outcome};
use switchyard_testkit::{KINESALITE, KINESIS_LOCAL};

fn aws_env() {
    set_env("AWS_ACCESS_KEY_ID", "dummy");
    set_env("AWS_SECRET_ACCESS_KEY", "dummy");
    set_env("AWS_EC2_METADATA_DISABLED", "true");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn client(url: &str) -> aws_sdk_kinesis::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .load()
        .await;
    aws_sdk_kinesis::Client::new(&conf)
}

/// Creates a 2-shard stream and waits until it is active.
async fn create_stream(c: &aws_sdk_kinesis::Client, name: &str) {
    c.create_stream()
        .stream_name(name)
        .shard_count(2)
        .send()
        .await
        .unwrap();
    for _ in 0..200 {
        let d = c
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap();
        let s = d.stream_description_summary().unwrap();
        if s.stream_status().as_str() == "ACTIVE" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {name} not active within 10 s");
}

/// A statsd flush: series `s{i}` (host h, tag `idx:i`) with value `round * 1e6 + i`.
fn flush(round: usize, n: usize) -> Egress {
    let mut b = SeriesBatch::new(1_700_000_000 + round as u64 * 10, 10.0);
    for i in 0..n {
        let tag = format!("idx:{i}");
        let id = b.identity(&format!("app.metric.s{i}"), [tag.as_str()], "h");
        b.push(id, "", SeriesType::Gauge, (round * 1_000_000 + i) as f64);
    }
    Egress::Series(Arc::new(b))
}

/// Reads every record of every shard, de-aggregates and decodes them: series name ->
/// [(shard, value)] in shard order. Also returns the number of Kinesis records.
async fn read_back(
    c: &aws_sdk_kinesis::Client,
    stream: &str,
) -> (HashMap<String, Vec<(String, f64)>>, usize) {
    let mut out: HashMap<String, Vec<(String, f64)>> = HashMap::new();
    let mut records = 0;
    let mut dec = StreamDecoder::default();
    let shards = c.list_shards().stream_name(stream).send().await.unwrap();
    for sh in shards.shards() {
        let range = sh.hash_key_range().unwrap();
        let (lo, hi): (u128, u128) = (
            range.starting_hash_key().parse().unwrap(),
            range.ending_hash_key().parse().unwrap(),
        );
        let mut it = c
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(sh.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        loop {
            let r = c.get_records().shard_iterator(&it).send().await.unwrap();
            for rec in r.records() {
                records += 1;
                let agg = deaggregate(rec.data().as_ref());
                assert!(agg.is_aggregated(), "records are KPL aggregates");
                for u in agg {
                    let hk = u.hash_key().unwrap();
                    assert!(
                        lo <= hk && hk <= hi,
                        "inner hash key inside the shard's range (KCL)"
                    );
                    let Decoded::Rkyv(b) = dec.decode(&u.data).unwrap() else {
                        panic!("rkyv expected")
                    };
                    for s in b.series() {
                        for (_, v) in s.points() {
                            out.entry(s.name().to_string())
                                .or_default()
                                .push((sh.shard_id().to_string(), v));
                        }
                    }
                }
            }
            match r.next_shard_iterator() {
                Some(n) if !r.records().is_empty() => it = n.to_string(),
                _ => break,
            }
        }
    }
    (out, records)
}

/// Writes `rounds` flushes of `n` series through the sink into a fresh 2-shard stream,
/// reads everything back and checks exactly-once, one shard per series, and order. Returns
/// the Kinesis records read back and the sink's counters.
fn roundtrip(
    url: &str,
    stream: &str,
    rounds: usize,
    n: usize,
    compression: &str,
) -> (usize, Arc<SinkStats>) {
    aws_env();
    let rt = rt();
    let c = rt.block_on(client(url));
    rt.block_on(create_stream(&c, stream));
    let cfg = config(
        &format!(
            "[sinks.k]\ntype = \"kinesis\"\nstream = \"{stream}\"\nregion = \"us-east-1\"\nendpoint = \"{url}\"\ncompression = \"{compression}\"\nqueue_batches = 64\n"
        ),
        &["k"],
    );
    let sinks = spawn(&cfg);
    let items = (0..rounds).map(|r| (0, flush(r, n))).collect();
    let stats = run(sinks, items).remove(0);
    let total = (rounds * n) as u64;
    assert_eq!(
        SinkStats::get(&stats.values_delivered),
        total,
        "ledger: all delivered"
    );
    for r in DropReason::ALL {
        assert_eq!(stats.dropped(r), 0, "dropped {}", r.as_str());
    }
    let (seen, records) = rt.block_on(read_back(&c, stream));
    // kinesalite caps an account at 10 shards: leave none behind.
    let _ = rt.block_on(c.delete_stream().stream_name(stream).send());
    assert_eq!(seen.len(), n, "every series arrived");
    let mut shards = std::collections::HashSet::new();
    for i in 0..n {
        let pts = &seen[&format!("app.metric.s{i}")];
        let want: Vec<f64> = (0..rounds).map(|r| (r * 1_000_000 + i) as f64).collect();
        let got: Vec<f64> = pts.iter().map(|p| p.1).collect();
        assert_eq!(got, want, "series s{i}: every point once, in order");
        assert!(
            pts.iter().all(|p| p.0 == pts[0].0),
            "series s{i} stays on one shard"
        );
        shards.insert(pts[0].0.clone());
    }
    assert_eq!(shards.len(), 2, "series spread over both shards");
    (records, stats)
}

#[test]
fn kinesis_local_receives_every_point_once_per_series_in_order() {
    let url = KINESIS_LOCAL.url();
    let stream = format!("sy-kl-{}", std::process::id());
    roundtrip(&url, &stream, 3, 3_000, "deflate");
}

#[test]
fn kinesalite_accepts_calls_and_records_within_its_limits() {
    let url = KINESALITE.url();
    let stream = format!("sy-kn-{}", std::process::id());
    // Uncompressed: ~4 MB per flush, so records fill up to the 1 MiB limit kinesalite
    // validates (a record or call over the limits is a ValidationException: dropped).
    let (records, _) = roundtrip(&url, &stream, 2, 60_000, "none");
    assert!(
        records >= 6,
        "several full records per flush, got {records}"
    );
}

#[test]
fn small_items_share_records_and_calls() {
    let url = KINESIS_LOCAL.url();
    let stream = format!("sy-kagg-{}", std::process::id());
    // 200 queue items of 10 series each: two envelopes per item (one per shard).
    let (records, stats) = roundtrip(&url, &stream, 200, 10, "deflate");
    let put = SinkStats::get(&stats.stream.records_put);
    let users = SinkStats::get(&stats.stream.user_records_put);
    let calls = SinkStats::get(&stats.stream.calls);
    assert_eq!(put as usize, records, "counters match the read-back");
    assert_eq!(users, 400, "one envelope per item and shard");
    assert!(
        users >= 4 * put,
        "envelopes of several items share a record: {users} envelopes in {put} records"
    );
    assert!(
        put >= 2 * calls,
        "a call carries both shards' records: {put} records in {calls} calls"
    );
}

#[test]
fn intake_payloads_aggregated_together_keep_the_byte_ledger() {
    aws_env();
    let url = KINESIS_LOCAL.url();
    let stream = format!("sy-kpay-{}", std::process::id());
    let rt = rt();
    let c = rt.block_on(client(&url));
    rt.block_on(create_stream(&c, &stream));
    let cfg = config(
        &format!(
            "[sinks.k]\ntype = \"kinesis\"\nstream = \"{stream}\"\nregion = \"us-east-1\"\nendpoint = \"{url}\"\nlinger = \"500ms\"\n"
        ),
        &["k"],
    );
    let items: Vec<(usize, Egress)> = (0..50)
        .map(|i| {
            let body = format!(
                r#"{{"series":[{{"metric":"app.pay.m{i}","points":[[1700000000,{i}],[1700000010,{i}]],"type":"gauge","host":"h","tags":["p:{i}"]}}]}}"#
            );
            (0, payload(Endpoint::SeriesV1, &body, None, 1, 2))
        })
        .collect();
    let received: u64 = items
        .iter()
        .map(|(_, e)| match e {
            Egress::Payload(p) => p.body.bytes.len() as u64,
            Egress::Series(_) | Egress::Forward(_) => 0,
        })
        .sum();
    let stats = run(spawn(&cfg), items).remove(0);
    assert_eq!(SinkStats::get(&stats.values_received), 100);
    assert_eq!(SinkStats::get(&stats.values_delivered), 100);
    for r in DropReason::ALL {
        assert_eq!(stats.dropped(r), 0, "dropped {}", r.as_str());
    }
    assert_eq!(SinkStats::get(&stats.payload_bytes_received), received);
    assert_eq!(
        SinkStats::get(&stats.payload_bytes_delivered),
        received,
        "every payload byte settled as delivered"
    );
    let put = SinkStats::get(&stats.stream.records_put);
    assert!(put < 50, "50 payloads share records: {put} records");
    let (seen, records) = rt.block_on(read_back(&c, &stream));
    let _ = rt.block_on(c.delete_stream().stream_name(&stream).send());
    assert_eq!(records as u64, put);
    assert_eq!(seen.len(), 50, "every series arrived");
    assert!(seen.values().all(|p| p.len() == 2), "both points, once");
}

// ---------------------------------------------------------------------------------------
// Wire-level fake Kinesis.

const HALF: u128 = u128::MAX / 2;

/// A fake stream with 2 open shards and a closed parent, 1 KiB records; `decide(call,
/// entry)` scripts each PutRecords entry; `fail_first_calls` whole calls answer HTTP 500.
fn fake(
    decide: impl Fn(usize, usize) -> Outcome + Send + Sync + 'static,
    fail_first_calls: usize,
) -> FakeKinesis {
    fake_with(decide, fail_first_calls, 0)
}

/// [`fake`], whose parent shard 0 (the whole hash range) stays open, and takes every
/// record, until `split_at` PutRecords calls were answered; then it is split.
fn fake_with(
    decide: impl Fn(usize, usize) -> Outcome + Send + Sync + 'static,
    fail_first_calls: usize,
    split_at: usize,
) -> FakeKinesis {
    kinesis_fake()
        .max_record_kib(1)
        .decide(decide)
        .fail_first_calls(fail_first_calls)
        .split_at(split_at)
        .start()
        .unwrap()
}

fn fake_sink(url: &str, max_retries: u32) -> switchyard_core::config::Config {
    config(
        &format!(
            "[sinks.k]\ntype = \"kinesis\"\nstream = \"fake\"\nregion = \"us-east-1\"\nendpoint = \"{url}\"\ncompression = \"none\"\nmax_retries = {max_retries}\n"
        ),
        &["k"],
    )
}

#[test]
fn only_failed_entries_are_resent_in_shard_order_and_the_ledger_balances() {
    aws_env();
    // Call 0: entry 0 throttled, entry 1 an internal failure; call 3: entry 0 throttled;
    // every other entry succeeds.
    let failures = [(0, 0), (0, 1), (3, 0)];
    let f = fake(
        move |call, i| match (call, i) {
            (0, 0) | (3, 0) => Outcome::Throttle,
            (0, 1) => Outcome::Internal,
            _ => Outcome::Ok,
        },
        0,
    );
    let stats = &run(spawn(&fake_sink(&f.url, 3)), vec![(0, flush(0, 4000))])[0];
    assert_eq!(SinkStats::get(&stats.values_delivered), 4000);
    for r in DropReason::ALL {
        assert_eq!(stats.dropped(r), 0, "dropped {}", r.as_str());
    }
    let calls = f.calls.lock().unwrap().clone();
    assert!(
        calls.len() > 4,
        "several records per shard: {} calls",
        calls.len()
    );
    // One record per shard per call, so a shard's order survives partial failures: per
    // shard, a failed send is followed at once by the same record again.
    let mut per_shard: HashMap<String, Vec<(String, bool)>> = HashMap::new();
    for (c, call) in calls.iter().enumerate() {
        let mut keys: Vec<&String> = call.iter().map(|(_, k)| k).collect();
        keys.dedup();
        assert_eq!(keys.len(), call.len(), "call {c}: one record per shard");
        for (i, (data, ehk)) in call.iter().enumerate() {
            let failed = failures.contains(&(c, i));
            per_shard
                .entry(ehk.clone())
                .or_default()
                .push((data.clone(), failed));
        }
    }
    let mut resent = 0;
    for sends in per_shard.values() {
        for w in sends.windows(2) {
            if w[0].1 {
                assert_eq!(
                    w[1].0, w[0].0,
                    "a failed record is sent again before the next"
                );
                resent += 1;
            }
        }
    }
    let happened = failures
        .iter()
        .filter(|&&(c, i)| calls.get(c).is_some_and(|call| call.len() > i))
        .count();
    assert!(
        happened >= 2,
        "the injected failures hit entries: {happened}"
    );
    assert_eq!(resent, happened);
    // Only open shards (children), never the closed parent's whole range.
    for (_, ehk) in calls.iter().flatten() {
        let k: u128 = ehk.parse().unwrap();
        assert!(
            k == 0 || k == HALF + 1,
            "explicit hash key = a child's starting key"
        );
    }
}

#[test]
fn records_a_split_moved_are_planned_again_so_every_series_keeps_its_order() {
    use base64::Engine;
    aws_env();
    // Shard 0 (the whole range) takes the first 2 calls, then splits into 1 (low half) and
    // 2 (high half): what the sink still plans for shard 0 lands on shard 1.
    let split_at = 2;
    let f = fake_with(|_, _| Outcome::Ok, 0, split_at);
    let (rounds, n) = (4, 1000);
    let items = (0..rounds).map(|r| (0, flush(r, n))).collect();
    let stats = run(spawn(&fake_sink(&f.url, 3)), items).remove(0);
    assert_eq!(SinkStats::get(&stats.values_delivered), (rounds * n) as u64);
    for r in DropReason::ALL {
        assert_eq!(stats.dropped(r), 0, "dropped {}", r.as_str());
    }
    let moved = SinkStats::get(&stats.stream.points_moved);
    assert!(
        moved > 0,
        "a record landed on the low child with high-half series"
    );
    // What KCL-style workers deliver: shard 0's worker everything, in order; once it ends,
    // each child's worker the series of its own hash range (a worker drops the others as
    // misplaced). Per series: shard 0's points, then its child's.
    let calls = f.calls.lock().unwrap().clone();
    let mut dec = StreamDecoder::default();
    let mut key = String::new();
    let mut per_shard: [HashMap<String, Vec<f64>>; 3] = Default::default();
    let mut misplaced = 0u64;
    for (c, call) in calls.iter().enumerate() {
        for (data, ehk) in call {
            let shard = match ehk.parse::<u128>().unwrap() {
                _ if c < split_at => 0,
                k if k <= HALF => 1,
                _ => 2,
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap();
            for u in deaggregate(&bytes) {
                let Decoded::Rkyv(b) = dec.decode(&u.data).unwrap() else {
                    panic!("rkyv expected")
                };
                for s in b.series() {
                    let h = s.partition_hash(&mut key);
                    if (shard == 1 && h > HALF) || (shard == 2 && h <= HALF) {
                        misplaced += s.points().len() as u64;
                        continue;
                    }
                    per_shard[shard]
                        .entry(s.name().to_string())
                        .or_default()
                        .extend(s.points().map(|p| p.1));
                }
            }
        }
    }
    assert_eq!(
        misplaced, moved,
        "what was sent again is what the workers drop"
    );
    for i in 0..n {
        let name = format!("app.metric.s{i}");
        let got: Vec<f64> = per_shard
            .iter()
            .flat_map(|m| m.get(&name).cloned().unwrap_or_default())
            .collect();
        let want: Vec<f64> = (0..rounds).map(|r| (r * 1_000_000 + i) as f64).collect();
        assert_eq!(
            got, want,
            "{name}: every point once, in order, across the split"
        );
    }
    assert!(
        per_shard.iter().all(|m| !m.is_empty()),
        "the parent and both children carried series"
    );
}

#[test]
fn throttled_entries_exhaust_their_retries_and_are_counted() {
    aws_env();
    // Every entry of the first call is throttled; later calls would succeed.
    let f = fake(
        |call, _| {
            if call == 0 {
                Outcome::Throttle
            } else {
                Outcome::Ok
            }
        },
        0,
    );
    // max_retries = 0: a throttled entry is dropped after its first failure; the shards'
    // later records still go.
    let stats = &run(spawn(&fake_sink(&f.url, 0)), vec![(0, flush(0, 300))])[0];
    let delivered = SinkStats::get(&stats.values_delivered);
    let dropped = stats.dropped(DropReason::RetriesExhausted);
    assert!(dropped > 0, "the first call's records are dropped");
    assert_eq!(delivered + dropped, 300, "every value accounted");
    let calls = f.calls.lock().unwrap().clone();
    for e in &calls[0] {
        assert!(
            !calls[1..].iter().flatten().any(|x| x == e),
            "nothing resent past max_retries"
        );
    }
}

#[test]
fn whole_call_errors_are_retried_by_the_driver() {
    aws_env();
    let f = fake(|_, _| Outcome::Ok, 2);
    let stats = &run(
        spawn(&fake_sink(&f.url, 3)),
        vec![(0, flush(0, 50)), (0, flush(1, 50))],
    )[0];
    assert_eq!(SinkStats::get(&stats.values_delivered), 100);
    assert!(SinkStats::get(&stats.retries) >= 2);
    let calls = f.calls.lock().unwrap();
    let entries: usize = calls.iter().map(Vec::len).sum();
    assert!(entries >= 2);
}

#[test]
fn each_shard_is_offered_no_more_than_its_configured_rates() {
    aws_env();
    let f = fake(|_, _| Outcome::Ok, 0);
    // 8 KiB/s and 20 records/s per shard, 1 s burst: ~36 KB per shard takes ~3 s.
    let (rate_b, rate_r) = (8192usize, 20usize);
    let cfg = config(
        &format!(
            "[sinks.k]\ntype = \"kinesis\"\nstream = \"fake\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\ncompression = \"none\"\nshard_bytes_per_sec = {rate_b}\nshard_records_per_sec = {rate_r}\n",
            f.url
        ),
        &["k"],
    );
    let items = (0..6).map(|r| (0, flush(r, 100))).collect();
    let stats = run(spawn(&cfg), items).remove(0);
    assert_eq!(SinkStats::get(&stats.values_delivered), 600);
    let arrivals = f.arrivals();
    // Every 1 s window starting at an arrival, per shard: at most one second of each rate
    // plus the burst (one second), with 0.25 s of slack for how calls' arrival times drift
    // from the moments the sink took their tokens (request latency varies).
    let window = Duration::from_secs(1);
    let slack = 1.25;
    for shard in 0..2 {
        let mine: Vec<&Arrival> = arrivals.iter().filter(|a| a.shard == shard).collect();
        let total: usize = mine.iter().map(|a| a.bytes).sum();
        assert!(
            total > 3 * rate_b,
            "shard {shard}: enough data to need pacing ({total} B)"
        );
        for (i, a) in mine.iter().enumerate() {
            let inside = mine[i..].iter().take_while(|b| b.at < a.at + window);
            let (mut bytes, mut recs) = (0usize, 0usize);
            for b in inside {
                bytes += b.bytes;
                recs += 1;
            }
            assert!(
                bytes as f64 <= rate_b as f64 * (1.0 + slack),
                "shard {shard}: {bytes} B within 1 s of arrival {i}, limit {rate_b} B/s + burst"
            );
            assert!(
                recs as f64 <= rate_r as f64 * (1.0 + slack),
                "shard {shard}: {recs} records within 1 s of arrival {i}"
            );
        }
    }
}
