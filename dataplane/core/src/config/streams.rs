//! Stream sinks (`type = "kinesis" | "kafka" | "local_log"`) and the stream workers that read
//! them back (`[[workers]]`): their resolved settings and validation.
//!
//! A stream sink writes every batch it is given, in the versioned envelope of
//! `docs/STREAM_FORMAT.md` (rkyv by default, or SignalFx datapoints JSON for third-party
//! consumers; compressed with libdeflate), to a durable stream. A worker holds leases on the
//! stream's shards (Kinesis), a consumer group's partitions (Kafka) or the log's consumer
//! offset (local log), decodes the batches and delivers them to the sinks named in its `to`,
//! checkpointing only what those sinks acknowledged.

use super::{Compression, Config, SfxEncoding, SinkConfig, SinkFormat, SinkType};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Encoding of the batches a stream sink writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchEncoding {
    /// An rkyv archive, read by workers in place without parsing.
    #[default]
    Rkyv,
    /// SignalFx datapoints JSON, for third-party consumers.
    Json,
}

/// What every stream sink shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// Batch encoding.
    pub encoding: BatchEncoding,
    /// Envelope compression (libdeflate).
    pub compression: Compression,
    /// libdeflate level.
    pub compression_level: u8,
    /// Retries of a failed write before its data is dropped (`retries_exhausted`).
    pub max_retries: u32,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

/// Settings of a Kinesis sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisSettings {
    /// Stream name.
    pub stream: String,
    /// Region; `None`: the standard AWS chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override (tests, VPC endpoints); `None`: the region's endpoint.
    pub endpoint: Option<String>,
    /// Shared stream settings.
    pub stream_settings: StreamSettings,
    /// Bytes per second offered to one shard at most (data plus partition key).
    pub shard_bytes_per_sec: u64,
    /// Records per second offered to one shard at most.
    pub shard_records_per_sec: u64,
    /// How long the sink waits for more queue items to share records and calls.
    pub linger: Duration,
}

/// A Kinesis shard's write limit in bytes per second (1 MiB/s).
pub const KINESIS_SHARD_BYTES_PER_SEC: u64 = 1 << 20;
/// A Kinesis shard's write limit in records per second.
pub const KINESIS_SHARD_RECORDS_PER_SEC: u64 = 1000;
/// Longest `linger` accepted.
pub const MAX_LINGER: Duration = Duration::from_secs(5);

/// Settings of a Kafka sink (cargo feature `kafka`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic.
    pub topic: String,
    /// Shared stream settings.
    pub stream_settings: StreamSettings,
}

/// Settings of the local log (the embedded default stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLogSettings {
    /// Directory of the segment files (created if missing).
    pub dir: PathBuf,
    /// A segment is rolled past this size.
    pub segment_bytes: u64,
    /// ... or this age.
    pub segment_age: Duration,
    /// Oldest segments are deleted past this total size.
    pub retention_bytes: u64,
    /// ... or this age.
    pub retention_age: Duration,
    /// Shared stream settings.
    pub stream_settings: StreamSettings,
}

/// Where a worker's leases live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseStoreKind {
    /// A file under `state_dir` shared by the workers of one host.
    #[default]
    Local,
    /// A DynamoDB table with KCL's layout, for a fleet (cargo feature `dynamodb`).
    Dynamodb,
}

/// `[[workers]]`: a stream worker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// The stream sink this worker reads (`type = "kinesis" | "kafka" | "local_log"`).
    pub from: String,
    /// Sinks it delivers to (not stream sinks).
    pub to: Vec<String>,
    /// This worker's identity in the lease table; default `<hostname>-<pid>`.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// Lease store (Kinesis): `local` (a file under `state_dir`) or `dynamodb`.
    #[serde(default)]
    pub lease_store: LeaseStoreKind,
    /// Lease table (DynamoDB) or file name (local).
    #[serde(default = "default_lease_table")]
    pub lease_table: String,
    /// DynamoDB endpoint override (tests).
    #[serde(default)]
    pub lease_endpoint: Option<String>,
    /// A lease not renewed for this long is taken by another worker (KCL's
    /// `failoverTimeMillis`); renewals every `failover / 3`.
    #[serde(default = "default_failover", with = "humantime_serde")]
    pub failover: Duration,
    /// How often held leases are renewed; default KCL's `failover / 3 - 25ms`.
    #[serde(default, with = "humantime_serde")]
    pub renew_interval: Option<Duration>,
    /// How often the lease table is scanned to take expired leases and balance; default
    /// KCL's `2 × (failover + 25ms)`. A scan is also made when an observed lease would
    /// expire before the next round.
    #[serde(default, with = "humantime_serde")]
    pub take_interval: Option<Duration>,
    /// Kafka consumer group; default `switchyard-<from>`.
    #[serde(default)]
    pub group: Option<String>,
    /// Records read per poll at most.
    #[serde(default = "default_batch_records")]
    pub max_records: usize,
    /// Share of its time the worker spends delivering (0 < share <= 1): after each record it
    /// pauses in proportion, leaving the rest of the `to` sinks' capacity to live traffic.
    /// The replay of a sink's spool runs with the sink's `replay_share`.
    #[serde(default = "default_share")]
    pub share: f64,
}

fn default_share() -> f64 {
    1.0
}

/// Name of the hidden `local_log` sink holding sink `sink`'s spool (`spill = true`).
pub fn spool_sink_name(sink: &str) -> String {
    format!("{sink}.spool")
}

impl Config {
    /// The config the stream workers run with: this one, plus for every sink with
    /// `spill = true` a hidden `local_log` sink over its spool,
    /// `<state_dir>/spool/<sink>` (kept until replayed: no retention), and a worker that
    /// replays it into the sink with the sink's `replay_share`. Without `state_dir` (which
    /// validation requires for a spill) it is this config unchanged.
    pub fn with_spool_replays(&self) -> Config {
        let mut cfg = self.clone();
        let Some(state) = &self.state_dir else {
            return cfg;
        };
        for (name, sc) in &self.sinks {
            if !sc.spill {
                continue;
            }
            let spool = spool_sink_name(name);
            let mut log = SinkConfig::spool();
            log.dir = Some(state.join("spool").join(name));
            cfg.sinks.insert(spool.clone(), log);
            cfg.workers.push(WorkerConfig {
                from: spool,
                to: vec![name.clone()],
                worker_id: Some("replay".into()),
                lease_store: LeaseStoreKind::Local,
                lease_table: default_lease_table(),
                lease_endpoint: None,
                failover: default_failover(),
                renew_interval: None,
                take_interval: None,
                group: None,
                max_records: 16,
                share: sc.replay_share,
            });
        }
        cfg
    }
}

fn default_lease_table() -> String {
    "switchyard-leases".into()
}

fn default_failover() -> Duration {
    Duration::from_secs(10)
}

fn default_batch_records() -> usize {
    1000
}

pub(super) fn default_shard_bytes_per_sec() -> u64 {
    KINESIS_SHARD_BYTES_PER_SEC
}

pub(super) fn default_shard_records_per_sec() -> u64 {
    KINESIS_SHARD_RECORDS_PER_SEC
}

pub(super) fn default_linger() -> Duration {
    Duration::from_millis(200)
}

pub(super) fn default_segment_bytes() -> u64 {
    128 << 20
}

pub(super) fn default_segment_age() -> Duration {
    Duration::from_secs(3600)
}

pub(super) fn default_retention_bytes() -> u64 {
    4 << 30
}

pub(super) fn default_retention_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl SinkType {
    /// Whether the sink writes to a stream.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            SinkType::Kinesis | SinkType::Kafka | SinkType::LocalLog
        )
    }
}

impl SinkConfig {
    /// A `local_log` sink for a spool (its `dir` still to set): rkyv, deflate, and no
    /// retention (the spool's size is capped by the spilling sink's `spill_max_bytes`).
    pub fn spool() -> SinkConfig {
        SinkConfig {
            sink_type: SinkType::LocalLog,
            path: None,
            format: SinkFormat::default(),
            queue_batches: super::default_queue_batches(),
            queue_max_bytes: super::default_queue_max_bytes(),
            endpoint: None,
            token_env: None,
            api_key_env: None,
            compression: None,
            compression_level: super::default_compression_level(),
            request_timeout: super::default_request_timeout(),
            max_series_per_request: super::default_max_series_per_request(),
            max_in_flight: super::default_max_in_flight(),
            max_retries: super::default_max_retries(),
            ca_file: None,
            encoding: SfxEncoding::default(),
            rate_as: crate::translate::RateAs::default(),
            stream: None,
            region: None,
            brokers: None,
            topic: None,
            dir: None,
            batch_encoding: BatchEncoding::Rkyv,
            segment_bytes: 64 << 20,
            segment_age: Duration::from_secs(3600),
            retention_bytes: u64::MAX,
            retention_age: Duration::from_secs(100 * 365 * 24 * 3600),
            shard_bytes_per_sec: default_shard_bytes_per_sec(),
            shard_records_per_sec: default_shard_records_per_sec(),
            linger: default_linger(),
            spill: false,
            spill_max_bytes: 0,
            replay_share: 1.0,
            deadletter_max_bytes: 0,
            forward: None,
        }
    }

    pub(super) fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            encoding: self.batch_encoding,
            compression: self.compression.unwrap_or(Compression::Deflate),
            compression_level: self.compression_level,
            max_retries: self.max_retries,
            request_timeout: self.request_timeout,
        }
    }
}

/// Checks a stream sink's own keys (the caller prefixes the key with `sinks.NAME`).
pub(super) fn validate_stream_sink(s: &SinkConfig) -> Result<(), (String, String)> {
    let need = |k: &str, v: bool, example: &str| {
        if v {
            Ok(())
        } else {
            Err((
                format!(".{k}"),
                format!(
                    "a {} sink needs `{k}` (such as {example})",
                    type_name(s.sink_type)
                ),
            ))
        }
    };
    match s.sink_type {
        SinkType::Kinesis => {
            need(
                "stream",
                s.stream.as_deref().is_some_and(|v| !v.is_empty()),
                "\"metrics\"",
            )?;
            if let Some(u) = s.endpoint.as_deref() {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err((
                        ".endpoint".into(),
                        format!("`{u}` is not an http:// or https:// URL"),
                    ));
                }
            }
            if !(1024..=KINESIS_SHARD_BYTES_PER_SEC).contains(&s.shard_bytes_per_sec) {
                return Err((
                    ".shard_bytes_per_sec".into(),
                    format!(
                        "must be 1024 to {KINESIS_SHARD_BYTES_PER_SEC} (a shard's write limit)"
                    ),
                ));
            }
            if !(1..=KINESIS_SHARD_RECORDS_PER_SEC).contains(&s.shard_records_per_sec) {
                return Err((
                    ".shard_records_per_sec".into(),
                    format!("must be 1 to {KINESIS_SHARD_RECORDS_PER_SEC} (a shard's write limit)"),
                ));
            }
            if s.linger > MAX_LINGER {
                return Err((
                    ".linger".into(),
                    format!("must be at most {}s", MAX_LINGER.as_secs()),
                ));
            }
        }
        SinkType::Kafka => {
            need(
                "brokers",
                s.brokers.as_deref().is_some_and(|v| !v.is_empty()),
                "\"127.0.0.1:9092\"",
            )?;
            need(
                "topic",
                s.topic.as_deref().is_some_and(|v| !v.is_empty()),
                "\"metrics\"",
            )?;
        }
        SinkType::LocalLog => {
            need("dir", s.dir.is_some(), "\"/var/lib/switchyard/log\"")?;
            if s.segment_bytes < 4096 {
                return Err((".segment_bytes".into(), "must be at least 4096".into()));
            }
        }
        _ => {}
    }
    let only = [
        ("stream", s.stream.is_some(), SinkType::Kinesis),
        ("region", s.region.is_some(), SinkType::Kinesis),
        ("brokers", s.brokers.is_some(), SinkType::Kafka),
        ("topic", s.topic.is_some(), SinkType::Kafka),
        ("dir", s.dir.is_some(), SinkType::LocalLog),
    ];
    for (k, set, ty) in only {
        if set && s.sink_type != ty {
            return Err((
                format!(".{k}"),
                format!("only {} sinks take this setting", type_name(ty)),
            ));
        }
    }
    Ok(())
}

fn type_name(t: SinkType) -> &'static str {
    match t {
        SinkType::Kinesis => "kinesis",
        SinkType::Kafka => "kafka",
        SinkType::LocalLog => "local_log",
        SinkType::File => "file",
        SinkType::Stdout => "stdout",
        SinkType::Blackhole => "blackhole",
        SinkType::Datadog => "datadog",
        SinkType::Signalfx => "signalfx",
        SinkType::Forward => "forward",
    }
}

/// Checks `[[workers]]` against the sinks (the caller prefixes `workers[i]`).
pub(super) fn validate_worker(
    w: &WorkerConfig,
    sinks: &std::collections::BTreeMap<String, SinkConfig>,
    has_state_dir: bool,
) -> Result<(), (String, String)> {
    match sinks.get(&w.from) {
        None => {
            return Err((
                ".from".into(),
                format!(
                    "unknown sink `{}` (a worker reads a kinesis, kafka or local_log sink)",
                    w.from
                ),
            ))
        }
        Some(s)
            if s.sink_type == SinkType::Kinesis
                && w.lease_store == LeaseStoreKind::Local
                && !has_state_dir =>
        {
            return Err((
                ".lease_store".into(),
                format!(
                    "lease_store = \"local\" keeps the leases of `{}` in a file under state_dir: \
                     set the top-level state_dir (or use lease_store = \"dynamodb\")",
                    w.from
                ),
            ))
        }
        Some(s) if !s.sink_type.is_stream() => {
            return Err((
                ".from".into(),
                format!(
                    "sink `{}` is a {} sink, not a stream (kinesis, kafka or local_log)",
                    w.from,
                    type_name(s.sink_type)
                ),
            ))
        }
        Some(_) => {}
    }
    if !(w.share > 0.0 && w.share <= 1.0) {
        return Err((".share".into(), format!("{} is not in (0, 1]", w.share)));
    }
    if w.to.is_empty() {
        return Err((
            ".to".into(),
            "a worker delivers to at least one sink".into(),
        ));
    }
    for (j, t) in w.to.iter().enumerate() {
        match sinks.get(t) {
            None => return Err((format!(".to[{j}]"), format!("unknown sink `{t}`"))),
            Some(s) if s.sink_type.is_stream() => {
                return Err((
                    format!(".to[{j}]"),
                    format!(
                    "`{t}` is a stream sink: a worker delivers to vendor, file or blackhole sinks"
                ),
                ))
            }
            Some(_) => {}
        }
    }
    if w.failover < Duration::from_millis(300) {
        return Err((".failover".into(), "must be at least 300ms".into()));
    }
    if let Some(r) = w.renew_interval {
        if r.is_zero() || r >= w.failover {
            return Err((
                ".renew_interval".into(),
                "must be greater than 0 and shorter than failover".into(),
            ));
        }
    }
    if w.take_interval.is_some_and(|t| t.is_zero()) {
        return Err((".take_interval".into(), "must be greater than 0".into()));
    }
    if w.max_records == 0 {
        return Err((".max_records".into(), "must be greater than 0".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, SinkKind};
    use std::time::Duration;

    fn kinesis(extra: &str) -> Result<Config, String> {
        Config::from_toml(&format!(
            "[sinks.k]\ntype = \"kinesis\"\nstream = \"m\"\n{extra}\n[[routes]]\nname = \"r\"\nto = [\"k\"]\n"
        ))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn kinesis_pacing_defaults_to_the_shard_limits_and_is_validated() {
        let c = kinesis("").unwrap();
        let SinkKind::Kinesis(k) = c.sinks["k"].kind() else {
            panic!("kinesis")
        };
        assert_eq!(k.shard_bytes_per_sec, 1 << 20);
        assert_eq!(k.shard_records_per_sec, 1000);
        assert_eq!(k.linger, Duration::from_millis(200));
        let c = kinesis("shard_bytes_per_sec = 65536\nshard_records_per_sec = 50\nlinger = \"0s\"")
            .unwrap();
        let SinkKind::Kinesis(k) = c.sinks["k"].kind() else {
            panic!("kinesis")
        };
        assert_eq!(
            (k.shard_bytes_per_sec, k.shard_records_per_sec),
            (65536, 50)
        );
        assert!(k.linger.is_zero());
        for (bad, key) in [
            ("shard_bytes_per_sec = 2000000", "shard_bytes_per_sec"),
            ("shard_bytes_per_sec = 10", "shard_bytes_per_sec"),
            ("shard_records_per_sec = 0", "shard_records_per_sec"),
            ("shard_records_per_sec = 1001", "shard_records_per_sec"),
            ("linger = \"10s\"", "linger"),
        ] {
            let e = kinesis(bad).unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }
}
