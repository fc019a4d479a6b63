//! Kinesis stream workers end to end, against kinesis-local (kinesis-mock; start it with
//! `.ci/servers/kinesis-local.sh`, endpoint `KINESIS_LOCAL_ENDPOINT`, default
//! `http://127.0.0.1:4568`) and kinesalite (`.ci/servers/kinesalite.sh`,
//! `KINESALITE_ENDPOINT`, default `http://127.0.0.1:4570`), which sends no `ChildShards`.
//!
//! One switchyard process writes HTTP traffic into a Kinesis sink; worker-only processes
//! (same lease file under a shared `state_dir`) read the stream through leases and deliver
//! to a `loadgen vendor` that keeps every value it receives in order. Each series gets the
//! values 1, 2, 3... one per round, so the vendor's record shows order, gaps and duplicates.

use super::harness::{http_post, http_request, Instance, Options, Vendor};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_testkit::{Server, DYNALITE, KINESALITE, KINESIS_LOCAL};

const SERIES: usize = 16;
const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "dummy"),
    ("AWS_SECRET_ACCESS_KEY", "dummy"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

struct Kinesis {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_kinesis::Client,
    url: String,
    stream: String,
}

impl Kinesis {
    /// A new 2-shard stream on the server at `url`.
    fn new(url: &str, tag: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                    "dummy", "dummy", None, None, "test",
                ))
                .endpoint_url(url)
                .load()
                .await;
            aws_sdk_kinesis::Client::new(&conf)
        });
        let stream = format!("workers-{tag}-{}", std::process::id());
        let k = Kinesis {
            rt,
            client,
            url: url.to_owned(),
            stream,
        };
        k.rt.block_on(
            k.client
                .create_stream()
                .stream_name(&k.stream)
                .shard_count(2)
                .send(),
        )
        .unwrap();
        k.wait_active();
        k
    }

    fn wait_active(&self) {
        for _ in 0..400 {
            let d = self
                .rt
                .block_on(
                    self.client
                        .describe_stream_summary()
                        .stream_name(&self.stream)
                        .send(),
                )
                .unwrap();
            if d.stream_description_summary()
                .unwrap()
                .stream_status()
                .as_str()
                == "ACTIVE"
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("stream {} not active within 20 s", self.stream);
    }

    /// Open shards: (id, start, end) by start.
    fn open_shards(&self) -> Vec<(String, u128, u128)> {
        let out = self
            .rt
            .block_on(self.client.list_shards().stream_name(&self.stream).send())
            .unwrap();
        let mut v: Vec<(String, u128, u128)> = out
            .shards()
            .iter()
            .filter(|s| {
                s.sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_none()
            })
            .map(|s| {
                let r = s.hash_key_range().unwrap();
                (
                    s.shard_id().to_owned(),
                    r.starting_hash_key().parse().unwrap(),
                    r.ending_hash_key().parse().unwrap(),
                )
            })
            .collect();
        v.sort_by_key(|s| s.1);
        v
    }

    fn split(&self, shard: &str, at: u128) {
        self.rt
            .block_on(
                self.client
                    .split_shard()
                    .stream_name(&self.stream)
                    .shard_to_split(shard)
                    .new_starting_hash_key(at.to_string())
                    .send(),
            )
            .unwrap();
        self.wait_active();
    }

    fn merge(&self, a: &str, b: &str) {
        self.rt
            .block_on(
                self.client
                    .merge_shards()
                    .stream_name(&self.stream)
                    .shard_to_merge(a)
                    .adjacent_shard_to_merge(b)
                    .send(),
            )
            .unwrap();
        self.wait_active();
    }

    fn sink_toml(&self) -> String {
        format!(
            "[sinks.stream]\ntype = \"kinesis\"\nstream = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\n\n",
            self.stream, self.url
        )
    }
}

impl Drop for Kinesis {
    fn drop(&mut self) {
        // Frees the shards (the servers cap shards per account).
        let _ = self.rt.block_on(
            self.client
                .delete_stream()
                .stream_name(&self.stream)
                .enforce_consumer_deletion(true)
                .send(),
        );
    }
}

fn env() -> Vec<(String, String)> {
    AWS_ENV
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn producer(k: &Kinesis) -> Instance {
    Instance::start(Options {
        extra_sinks: k.sink_toml(),
        route_to: vec!["stream".into()],
        env: env(),
        ..Options::default()
    })
}

/// A workers-only process (no statsd listener, no HTTP intake) with worker id `id`, leases
/// in a file under `state` unless `extra` (more `[[workers]]` keys) says otherwise.
fn worker_with(k: &Kinesis, state: &Path, vendor: &Vendor, id: &str, extra: &str) -> Instance {
    Instance::start(Options {
        top_extra: format!("state_dir = \"{}\"\n", state.display()),
        extra_sinks: format!(
            "{}[sinks.dd]\ntype = \"datadog\"\nendpoint = \"{}\"\napi_key_env = \"SY_TEST_DD_KEY\"\nmax_retries = 0\n\n\
             [[workers]]\nfrom = \"stream\"\nto = [\"dd\"]\nworker_id = \"{id}\"\nfailover = \"3s\"\n\
             take_interval = \"1s\"\nmax_records = 50\n{extra}",
            k.sink_toml(),
            vendor.url()
        ),
        env: env()
            .into_iter()
            .chain([("SY_TEST_DD_KEY".to_owned(), "k".to_owned())])
            .collect(),
        no_listeners: true,
        ..Options::default()
    })
}

/// Posts round after round (series `kw.{i}` get the value `round`) until `stop`; returns
/// the number of rounds posted (all answered 202).
fn traffic(
    port: u16,
    stop: Arc<AtomicBool>,
    posted: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut round = 0;
        while !stop.load(Ordering::Relaxed) {
            round += 1;
            posted.store(round, Ordering::Relaxed);
            let series: Vec<String> = (0..SERIES)
                .map(|i| {
                    format!(
                        "{{\"metric\":\"kw.{i}\",\"points\":[[{},{round}]],\"type\":\"gauge\"}}",
                        1_700_000_000 + round
                    )
                })
                .collect();
            let body = format!("{{\"series\":[{}]}}", series.join(","));
            let r = http_post(
                port,
                "/api/v1/series",
                &["DD-API-KEY: client", "Content-Type: application/json"],
                body.as_bytes(),
            );
            assert_eq!(r.status, 202, "round {round}: {}", r.body);
            std::thread::sleep(Duration::from_millis(50));
        }
        round
    })
}

fn leases(i: &Instance) -> Vec<Value> {
    let (status, body) = i.get("/v1/leases");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["leases"].as_array().unwrap().clone()
}

fn open_leases_owned_by(l: &[Value], owner: &str) -> usize {
    l.iter()
        .filter(|l| l["checkpoint"]["at"] != "shard_end" && l["owner"] == owner)
        .count()
}

/// Waits (bounded) until `cond` holds, returning how long it took.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    t0.elapsed()
}

/// Every value 1..=rounds of every series arrived; returns the values per series.
fn wait_all_delivered(v: &Vendor, rounds: usize) -> Vec<Vec<u64>> {
    let mut got = Vec::new();
    wait_until(
        "every value of every series at the vendor",
        Duration::from_secs(90),
        || {
            let s = v.stats();
            got = (0..SERIES)
                .map(|i| {
                    s["metrics"][format!("kw.{i}")]["values"]
                        .as_array()
                        .map(|a| a.iter().map(|x| x.as_f64().unwrap() as u64).collect())
                        .unwrap_or_default()
                })
                .collect();
            got.iter()
                .all(|vals: &Vec<u64>| (1..=rounds as u64).all(|r| vals.contains(&r)))
        },
    );
    got
}

/// At least once, in order, no gaps: every value 1..=rounds is there, and each value first
/// arrives after its predecessor first arrived (redeliveries after a failover repeat older
/// values, which is allowed). Returns the number of duplicates.
fn assert_in_order_without_gaps(series: usize, vals: &[u64], rounds: usize) -> usize {
    let mut first = vec![usize::MAX; rounds + 1];
    for (pos, &v) in vals.iter().enumerate() {
        assert!(
            (1..=rounds as u64).contains(&v),
            "kw.{series}: unexpected value {v}"
        );
        if first[v as usize] == usize::MAX {
            first[v as usize] = pos;
        }
    }
    for r in 2..=rounds {
        assert!(
            first[r - 1] < first[r],
            "kw.{series}: value {r} arrived before {} (values: {vals:?})",
            r - 1
        );
    }
    vals.len() - rounds
}

/// The sum of a metric family over its label sets.
fn metric_sum(i: &Instance, family: &str) -> f64 {
    let (_, body) = i.get("/metrics");
    body.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn state_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "switchyard-e2e-leases-{}-{tag}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 2-shard stream, the producer writing into it, a vendor recording every value, a
/// shared `state_dir`, and (once [`Rig::post`] is called) rounds of traffic.
struct Rig {
    k: Kinesis,
    vendor: Vendor,
    state: PathBuf,
    prod: Instance,
    stop: Arc<AtomicBool>,
    posted: Arc<AtomicUsize>,
    posting: Option<std::thread::JoinHandle<usize>>,
}

impl Rig {
    /// A stream on `server`.
    fn start(server: Server, tag: &str) -> Self {
        let url = server.url();
        let k = Kinesis::new(&url, tag);
        let vendor = Vendor::start("datadog", &["--keep-values", "100000"]);
        let state = state_dir(tag);
        let prod = producer(&k);
        Rig {
            k,
            vendor,
            state,
            prod,
            stop: Arc::new(AtomicBool::new(false)),
            posted: Arc::new(AtomicUsize::new(0)),
            posting: None,
        }
    }

    fn kinesis_local(tag: &str) -> Self {
        Self::start(KINESIS_LOCAL, tag)
    }

    /// A worker-only process with worker id `id` and extra `[[workers]]` keys.
    fn worker(&self, id: &str, extra: &str) -> Instance {
        worker_with(&self.k, &self.state, &self.vendor, id, extra)
    }

    /// Starts the traffic.
    fn post(&mut self) {
        self.posting = Some(traffic(
            self.prod.http,
            self.stop.clone(),
            self.posted.clone(),
        ));
    }

    /// Splits the first open shard at its middle while the traffic flows; returns its id.
    fn split_first(&self) -> String {
        let shards = self.k.open_shards();
        assert_eq!(shards.len(), 2, "{shards:?}");
        let (first, start, end) = shards[0].clone();
        self.k.split(&first, start + (end - start) / 2 + 1);
        std::thread::sleep(Duration::from_secs(2));
        first
    }

    /// Stops the traffic and waits until every value arrived; returns the rounds posted
    /// and the values per series.
    fn finish(&mut self) -> (usize, Vec<Vec<u64>>) {
        self.stop.store(true, Ordering::Relaxed);
        let rounds = self.posting.take().map_or(0, |p| p.join().unwrap());
        (rounds, wait_all_delivered(&self.vendor, rounds))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Records put between a split completing and the producer noticing it (the `PutRecords`
/// answer names a child shard) land on the lower child, with series of the upper one. The
/// producer sends those series again to the upper child, ahead of their later values, and
/// the lower child's reader leaves them out (outside its lease's hash range), so the order
/// holds across the split and the merge.
#[test]
fn two_worker_processes_fail_over_and_follow_a_split_and_a_merge() {
    let mut rig = Rig::kinesis_local("failover");
    let b = rig.worker("wb", "");
    let ready = b.wait_log("switchyard ready");
    assert!(ready.contains("statsd=[]"), "a workers-only host: {ready}");
    rig.post();

    // wb takes both shards; wc joins and steals one (balance: ceil(2 / 2) = 1 each).
    wait_until("wb holds both shards", Duration::from_secs(30), || {
        open_leases_owned_by(&leases(&b), "wb") == 2
    });
    wait_until("points reach the vendor", Duration::from_secs(30), || {
        rig.vendor.stats()["points"].as_u64().unwrap_or(0) >= (SERIES * 5) as u64
    });
    let c = rig.worker("wc", "");
    wait_until("wc holds one shard", Duration::from_secs(30), || {
        open_leases_owned_by(&leases(&c), "wc") == 1
    });

    // kill -9 wb: wc takes its lease once it expires (failover 3 s, scans every 1 s).
    b.signal(libc::SIGKILL);
    let took = wait_until("wc takes wb's shard", Duration::from_secs(20), || {
        open_leases_owned_by(&leases(&c), "wc") == 2
    });
    eprintln!("wc held both shards {took:?} after wb was killed (failover 3 s)");

    // Split the first shard, then merge its upper child with the other shard, while the
    // traffic flows.
    let first = rig.split_first();
    let shards = rig.k.open_shards();
    assert_eq!(shards.len(), 3, "{shards:?}");
    rig.k.merge(&shards[1].0, &shards[2].0);
    std::thread::sleep(Duration::from_secs(2));
    let (rounds, got) = rig.finish();
    let mut dups = 0;
    for (i, vals) in got.iter().enumerate() {
        dups += assert_in_order_without_gaps(i, vals, rounds);
    }
    // Every point the producer sent again was also read where it first landed, and left
    // out there.
    let moved = metric_sum(&rig.prod, "switchyard_sink_stream_points_moved_total");
    let misplaced = metric_sum(&c, "switchyard_worker_misplaced_points_total");
    assert!(misplaced >= moved, "moved {moved}, left out {misplaced}");
    eprintln!(
        "{rounds} rounds x {SERIES} series delivered in order; {dups} duplicate points; \
         {moved} points sent again after the reshard, {misplaced} left out by the readers"
    );

    // The lineage in the lease table: the split and merged parents finished, the children
    // name them, and wc holds every open shard.
    let l = leases(&c);
    let finished: Vec<&str> = l
        .iter()
        .filter(|l| l["checkpoint"]["at"] == "shard_end")
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    assert_eq!(finished.len(), 3, "{l:#?}");
    assert!(finished.contains(&first.as_str()), "{l:#?}");
    let merged = l
        .iter()
        .find(|l| l["parents"].as_array().is_some_and(|p| p.len() == 2))
        .unwrap_or_else(|| panic!("no merge child: {l:#?}"));
    assert_eq!(merged["owner"], "wc", "{l:#?}");
    assert!(merged["last_renew_age_ms"].as_u64().is_some(), "{merged:#}");
    assert_eq!(open_leases_owned_by(&l, "wc"), 2, "{l:#?}");
    let _ = c.stop();
}

#[test]
fn a_worker_releases_a_lease_on_request_and_follows_a_split_without_child_shards() {
    // kinesalite answers the end of a closed shard without ChildShards: the reader finds the
    // children with ListShards.
    let mut rig = Rig::start(KINESALITE, "release");
    let w = rig.worker("wr", "");
    rig.post();
    wait_until("wr holds both shards", Duration::from_secs(30), || {
        open_leases_owned_by(&leases(&w), "wr") == 2
    });
    let key = leases(&w)[0]["key"].as_str().unwrap().to_owned();
    // Unknown lease: 404; a held one: released (200), then taken back after failover.
    let r = http_request(w.control, "POST", "/v1/leases/nope/release", &[], b"");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = http_request(
        w.control,
        "POST",
        &format!("/v1/leases/{key}/release"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let released: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(released["released"]["owner"], Value::Null, "{released:#}");
    let r = http_request(
        w.control,
        "POST",
        &format!("/v1/leases/{key}/release"),
        &[],
        b"",
    );
    assert_eq!(r.status, 409, "not held any more: {}", r.body);
    wait_until(
        "wr takes the released lease back",
        Duration::from_secs(30),
        || open_leases_owned_by(&leases(&w), "wr") == 2,
    );

    let first = rig.split_first();
    let (rounds, got) = rig.finish();
    for (i, vals) in got.iter().enumerate() {
        assert_in_order_without_gaps(i, vals, rounds);
    }
    let moved = metric_sum(&rig.prod, "switchyard_sink_stream_points_moved_total");
    let misplaced = metric_sum(&w, "switchyard_worker_misplaced_points_total");
    assert!(misplaced >= moved, "moved {moved}, left out {misplaced}");
    eprintln!("{moved} points sent again after the split, {misplaced} left out by the reader");
    let l = leases(&w);
    let children: Vec<&Value> = l
        .iter()
        .filter(|l| {
            l["parents"]
                .as_array()
                .is_some_and(|p| p == &[Value::from(first.clone())])
        })
        .collect();
    assert_eq!(children.len(), 2, "{l:#?}");
    let text = w.log_text();
    assert!(text.contains("lease released on request"), "{text}");
    let _ = w.stop();
}

#[test]
fn two_worker_processes_share_a_stream_through_a_dynamodb_lease_table() {
    let ddb = DYNALITE.url();
    let mut rig = Rig::kinesis_local("ddb");
    let table = format!("leases-{}", rig.k.stream);
    let extra = format!(
        "lease_store = \"dynamodb\"\nlease_table = \"{table}\"\nlease_endpoint = \"{ddb}\"\n"
    );
    let a = rig.worker("da", &extra);
    let b = rig.worker("db", &extra);
    rig.post();
    // Two workers, two shards: one lease each, seen the same way by both processes.
    wait_until(
        "each worker holds one shard",
        Duration::from_secs(40),
        || {
            let l = leases(&a);
            open_leases_owned_by(&l, "da") == 1 && open_leases_owned_by(&l, "db") == 1
        },
    );
    let lb = leases(&b);
    assert_eq!(lb.len(), 2, "{lb:#?}");
    assert!(lb.iter().all(|l| l["table"] == table.as_str()), "{lb:#?}");
    std::thread::sleep(Duration::from_secs(1));
    let (rounds, got) = rig.finish();
    for (i, vals) in got.iter().enumerate() {
        assert_in_order_without_gaps(i, vals, rounds);
    }
    // The checkpoints are in the table: both shards progressed.
    let l = leases(&b);
    assert!(l.iter().all(|l| l["checkpoint"]["at"] == "seq"), "{l:#?}");
    let _ = a.stop();
    let _ = b.stop();
}
