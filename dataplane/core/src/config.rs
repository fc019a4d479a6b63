//! The configuration schema, its embedded default, and validation.
//!
//! Config structs are the operator reference: every field is documented here and in the
//! commented default (`config/default.toml`, printed by `switchyard print-config`). Loading
//! is pure: [`Config::from_toml`] parses and validates; every error names the key and the
//! line it is on. Addresses and sizes are resolved here so the running code has nothing left
//! to fail on.

mod forwarder;
mod locate;
mod streams;

pub use forwarder::{ForwarderConfig, FORWARDER_SINK};

pub use streams::{
    BatchEncoding, KafkaSettings, KinesisSettings, LeaseStoreKind, LocalLogSettings,
    StreamSettings, WorkerConfig, KINESIS_SHARD_BYTES_PER_SEC, KINESIS_SHARD_RECORDS_PER_SEC,
    MAX_LINGER,
};

use crate::aggregate::GaugeDialect;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The embedded default configuration, with comments.
pub const DEFAULT_TOML: &str = include_str!("config/default.toml");

/// A configuration error: what is wrong, at which key, on which line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// Dotted key path, such as `routes[0].to[1]` (empty for a syntax error).
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn render(&self) -> String {
        match (self.line, self.key.is_empty()) {
            (Some(l), false) => format!("line {l}, key `{}`: {}", self.key, self.message),
            (Some(l), true) => format!("line {l}: {}", self.message),
            (None, false) => format!("key `{}`: {}", self.key, self.message),
            (None, true) => self.message.clone(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where state that must survive a restart lives (the persisted route table); `None`:
    /// nothing is persisted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Dataplane shards.
    #[serde(default)]
    pub shards: ShardsConfig,
    /// The statsd / DogStatsD ingest path.
    #[serde(default)]
    pub statsd: StatsdConfig,
    /// The Datadog-compatible HTTP intake.
    #[serde(default)]
    pub http: HttpConfig,
    /// The control-plane listener.
    #[serde(default)]
    pub control: ControlConfig,
    /// Sinks by name.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Ordered routes.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Stream workers (`[[workers]]`).
    #[serde(default)]
    pub workers: Vec<WorkerConfig>,
    /// Forwarder mode (`[forwarder]`): statsd aggregates go to aggregators, not routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarder: Option<ForwarderConfig>,
}

/// `[shards]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardsConfig {
    /// Number of shards; 0 = one per CPU in `cpus`.
    pub count: usize,
    /// CPUs to pin to; empty = every CPU the process may use.
    pub cpus: Vec<usize>,
    /// io_uring buffer memory per shard in bytes; 0 = sized to fit RLIMIT_MEMLOCK.
    pub io_memory: usize,
}

/// A listener entry: a bare address or a table with per-listener settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ListenEntry {
    /// `"udp://127.0.0.1:8125"`
    Address(String),
    /// `{ address = "...", gauge_dialect = "etsy" }`
    Table(ListenTable),
}

/// A listener table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenTable {
    /// `udp://HOST:PORT` or `unixgram:///path`.
    pub address: String,
    /// Gauge dialect for this listener (defaults to `[statsd] gauge_dialect`).
    pub gauge_dialect: Option<GaugeDialect>,
}

/// A resolved statsd listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Where to bind.
    pub address: ListenAddress,
    /// Gauge dialect.
    pub gauge_dialect: GaugeDialect,
}

/// A resolved listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// UDP, one `SO_REUSEPORT` socket per shard.
    Udp(SocketAddr),
    /// A Unix datagram socket path.
    Unixgram(PathBuf),
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::Udp(a) => write!(f, "udp://{a}"),
            ListenAddress::Unixgram(p) => write!(f, "unixgram://{}", p.display()),
        }
    }
}

/// `[statsd]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsdConfig {
    /// Listeners.
    pub listen: Vec<ListenEntry>,
    /// Flush interval.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Align flushes to wall-clock multiples of the interval.
    pub flush_align: bool,
    /// Timer percentile thresholds.
    pub percentiles: Vec<f64>,
    /// Default gauge dialect.
    pub gauge_dialect: GaugeDialect,
    /// Take the host from a `host:` tag instead of the sender's address.
    pub ignore_host: bool,
    /// Idle time after which a series stops being reported.
    #[serde(with = "humantime_serde")]
    pub expiry_interval: Duration,
    /// SO_RCVBUF per socket.
    pub receive_buffer_bytes: usize,
    /// Largest datagram accepted.
    pub max_datagram_bytes: usize,
    /// Datagrams per recvmmsg.
    pub recv_batch: usize,
    /// Distinct series per shard per interval.
    pub max_series_per_shard: usize,
    /// Buffered timer values per shard per interval.
    pub max_timer_values_per_shard: usize,
    /// Tags per line.
    pub max_tags_per_line: usize,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        Self {
            listen: vec![ListenEntry::Address("udp://127.0.0.1:8125".into())],
            flush_interval: Duration::from_secs(10),
            flush_align: false,
            percentiles: vec![90.0],
            gauge_dialect: GaugeDialect::Dogstatsd,
            ignore_host: false,
            expiry_interval: Duration::from_secs(300),
            receive_buffer_bytes: 32 << 20,
            max_datagram_bytes: 8192,
            recv_batch: 64,
            max_series_per_shard: 1_000_000,
            max_timer_values_per_shard: 16 << 20,
            max_tags_per_line: 256,
        }
    }
}

/// `[http]`: the Datadog-compatible HTTP intake, served by every shard.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `HOST:PORT` to listen on (one `SO_REUSEPORT` socket per shard); empty disables the
    /// HTTP intake.
    pub listen: String,
    /// Name of an environment variable holding the accepted API keys, separated by commas
    /// or whitespace. Unset: any key is accepted (a key is still required, as the vendor
    /// requires one) and forwarded.
    pub api_keys_env: Option<String>,
    /// Largest request body on the wire (compressed), in bytes; larger gets 413. Each
    /// endpoint's own vendor limit applies below this (v2 series: 512000).
    pub max_body_bytes: usize,
    /// Largest body once decompressed, in bytes (v2 series: 5242880 below this).
    pub max_decompressed_bytes: usize,
    /// Request bodies held in memory at once per shard (compressed plus decompressed);
    /// requests beyond it are answered 429 with `Retry-After`.
    pub max_inflight_bytes: usize,
    /// Open connections per shard; more are closed at once and counted.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes; a larger head is not
    /// read: it is answered 431 and the connection is closed.
    pub max_header_bytes: usize,
    /// Slowloris guard for the head and the body alike: a request head must be complete
    /// within this of the connection waiting for it (else the connection is closed), and
    /// its body must arrive within this (else 408). Also bounds how long an idle keep-alive
    /// connection stays open when shorter than `idle_timeout`.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The `Retry-After` value (seconds) sent with 429 and 503.
    pub retry_after_secs: u32,
    /// How long a payload of a `durable = true` route may wait to be durable at every sink
    /// it is queued for before it is answered 503 (it may still arrive: the client's retry
    /// can duplicate it).
    #[serde(with = "humantime_serde")]
    pub durable_timeout: Duration,
    /// Serve HTTPS instead of plain HTTP (see [`TlsFiles`]). Unset: plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// `tls = { cert = "PATH", key = "PATH" }` in `[http]` or `[control]`: serve TLS (1.2 and
/// 1.3, rustls) with this certificate. Both files are read at start, and again on SIGHUP:
/// new handshakes then use the new pair, and a pair that fails to load keeps the old one
/// (logged). Changing the paths themselves needs a restart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1). Keep it readable by
    /// the service user only; the path is shown by `GET /v1/config`, the key never is.
    pub key: PathBuf,
}

/// Checks a `tls` table; the key is relative to the section (`tls.cert`, `tls.key`).
fn validate_tls(t: &TlsFiles) -> Result<(), (String, String)> {
    for (k, p) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
        if p.as_os_str().is_empty() {
            return Err((k.into(), "must not be empty".into()));
        }
    }
    Ok(())
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            api_keys_env: None,
            max_body_bytes: 3_200_000,
            max_decompressed_bytes: 62_914_560,
            max_inflight_bytes: 256 << 20,
            max_connections: 1024,
            max_header_bytes: 64 << 10,
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            retry_after_secs: 1,
            durable_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// `[control]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Control API address.
    pub listen: String,
    /// File holding the bearer token that mutating endpoints (`PUT /v1/routes`, `POST
    /// /v1/routes/validate`) require; read once at start (surrounding whitespace trimmed),
    /// and start-up fails when it is missing or empty. At most one of `token_file` and
    /// `token_env`. Without either, mutating endpoints answer only on a loopback `listen`
    /// (403 otherwise).
    pub token_file: Option<PathBuf>,
    /// Name of the environment variable holding the bearer token (start-up fails when it is
    /// unset or empty). Secrets never go in the config file.
    pub token_env: Option<String>,
    /// A sink counts as unhealthy for `GET /readyz` after this many failed request attempts
    /// in a row (no response, or a non-2xx status); its next successful request makes it
    /// healthy again.
    pub unhealthy_after_failures: u64,
    /// Serve the control API over TLS (see [`TlsFiles`]). Unset: plain HTTP.
    pub tls: Option<TlsFiles>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            token_file: None,
            token_env: None,
            unhealthy_after_failures: 5,
            tls: None,
        }
    }
}

/// `[sinks.NAME]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Sink type.
    #[serde(rename = "type")]
    pub sink_type: SinkType,
    /// File path (`type = "file"` only; parent directories are created).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Output format (`file` and `stdout` sinks).
    #[serde(default)]
    pub format: SinkFormat,
    /// Queue capacity in batches.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// Bytes of HTTP payload bodies (as stored: compressed when they arrived compressed)
    /// queued for this sink at most, counting the ones being delivered; past it the intake
    /// answers 503 with `Retry-After`. A single larger payload is taken when nothing is
    /// queued, so it can never be refused forever.
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: u64,
    /// Base URL of the vendor (`datadog` and `signalfx` sinks), such as
    /// `https://api.datadoghq.com` or `https://ingest.us1.signalfx.com`. The API path
    /// (`/api/v1/series`, `/v2/datapoint`, ...) is appended.
    #[serde(default, alias = "url")]
    pub endpoint: Option<String>,
    /// Name of the environment variable holding the SignalFx access token (`X-SF-Token`).
    /// Secrets never go in the config file.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Name of the environment variable holding the Datadog API key (`DD-API-KEY`). Unset:
    /// each HTTP payload is forwarded with the key its client sent, and statsd aggregates
    /// (which carry no key) are dropped, counted as `reason="no_api_key"` with an error log.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Request body compression: `gzip`, `deflate` (zlib) or `none`. Default: `deflate`
    /// for `datadog` (accepted on every Datadog endpoint), `gzip` for `signalfx`.
    #[serde(default)]
    pub compression: Option<Compression>,
    /// libdeflate level, 1 (fastest) to 12 (smallest).
    #[serde(default = "default_compression_level")]
    pub compression_level: u8,
    /// Per-request timeout.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most series per request.
    #[serde(default = "default_max_series_per_request")]
    pub max_series_per_request: usize,
    /// Requests in flight at once (one delivery worker each).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Retries after the first attempt before a request's data is dropped
    /// (`reason="retries_exhausted"`).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// PEM file of extra CA certificates to trust for `https://` endpoints (for a private
    /// CA); the public web roots are always trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SignalFx body encoding: `json` or `protobuf`.
    #[serde(default)]
    pub encoding: SfxEncoding,
    /// Datadog `rate` series as SignalFx `counter` (value x interval) or `gauge`.
    #[serde(default)]
    pub rate_as: crate::translate::RateAs,
    /// Kinesis stream name (`type = "kinesis"`).
    #[serde(default)]
    pub stream: Option<String>,
    /// AWS region (`kinesis`); unset: the standard AWS chain.
    #[serde(default)]
    pub region: Option<String>,
    /// Kafka bootstrap brokers (`kafka`).
    #[serde(default)]
    pub brokers: Option<String>,
    /// Kafka topic (`kafka`).
    #[serde(default)]
    pub topic: Option<String>,
    /// Local log directory (`local_log`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Stream sinks: batch encoding, `rkyv` or `json` (SignalFx datapoints).
    #[serde(default)]
    pub batch_encoding: BatchEncoding,
    /// Local log: segment size before rolling.
    #[serde(default = "streams::default_segment_bytes")]
    pub segment_bytes: u64,
    /// Local log: segment age before rolling.
    #[serde(default = "streams::default_segment_age", with = "humantime_serde")]
    pub segment_age: Duration,
    /// Local log: total size kept.
    #[serde(default = "streams::default_retention_bytes")]
    pub retention_bytes: u64,
    /// Local log: age kept.
    #[serde(default = "streams::default_retention_age", with = "humantime_serde")]
    pub retention_age: Duration,
    /// Kinesis: bytes per second offered to one shard at most (its write limit, 1 MiB/s).
    #[serde(default = "streams::default_shard_bytes_per_sec")]
    pub shard_bytes_per_sec: u64,
    /// Kinesis: records per second offered to one shard at most (its write limit, 1000/s).
    #[serde(default = "streams::default_shard_records_per_sec")]
    pub shard_records_per_sec: u64,
    /// Kinesis: how long the sink waits for more queue items to aggregate into the same
    /// records before it puts them (`0s`: one item at a time).
    #[serde(default = "streams::default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// HTTP vendor sinks: what the vendor could not take (retries exhausted, circuit open,
    /// shutdown deadline) goes to a spool, a local log under `<state_dir>/spool/<sink>`,
    /// and is replayed in order once the vendor takes data again (needs `state_dir`).
    #[serde(default)]
    pub spill: bool,
    /// Bytes the spool may hold; past it, values that cannot be delivered are dropped
    /// (`reason="spool_full"`).
    #[serde(default = "default_spill_max_bytes")]
    pub spill_max_bytes: u64,
    /// Share of the replay's time spent sending (0 < share <= 1): after each replayed
    /// record the replay pauses so that live traffic keeps the rest of the vendor's capacity.
    #[serde(default = "default_replay_share")]
    pub replay_share: f64,
    /// HTTP vendor sinks: bytes the dead letters may hold (`<state_dir>/deadletter/<sink>`:
    /// requests the vendor refused with a 4xx that cannot succeed, with its answer). Past it
    /// the oldest segment is removed (counted). `0` keeps no dead letters; without
    /// `state_dir` none are kept either.
    #[serde(default = "default_deadletter_max_bytes")]
    pub deadletter_max_bytes: u64,
    /// The settings of the sink `[forwarder]` adds (`type = "forward"`, never written in a
    /// config file).
    #[serde(skip)]
    pub forward: Option<ForwarderConfig>,
}

fn default_spill_max_bytes() -> u64 {
    1 << 30
}

/// Smallest non-zero `deadletter_max_bytes`.
pub const MIN_DEADLETTER_MAX_BYTES: u64 = 64 << 10;

fn default_deadletter_max_bytes() -> u64 {
    64 << 20
}

fn default_replay_share() -> f64 {
    0.5
}

fn default_queue_batches() -> usize {
    64
}

fn default_queue_max_bytes() -> u64 {
    256 << 20
}

fn default_compression_level() -> u8 {
    6
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_series_per_request() -> usize {
    5000
}

fn default_max_in_flight() -> usize {
    4
}

fn default_max_retries() -> u32 {
    5
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip with libdeflate.
    Gzip,
    /// A zlib stream with libdeflate (Datadog's `deflate`).
    Deflate,
    /// Uncompressed.
    None,
}

/// SignalFx request body encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SfxEncoding {
    /// `application/json`, `{"gauge":[...],"counter":[...]}`.
    #[default]
    Json,
    /// `application/x-protobuf`, `DataPointUploadMessage`.
    Protobuf,
}

/// What every HTTP vendor sink shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSinkSettings {
    /// Base URL without a trailing slash.
    pub endpoint: String,
    /// Compression.
    pub compression: Compression,
    /// libdeflate level.
    pub compression_level: u8,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Most series per request.
    pub max_series_per_request: usize,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Extra CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
}

/// Settings of a SignalFx sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalfxSettings {
    /// Shared HTTP settings; `/v2/datapoint` is appended to the endpoint.
    pub http: HttpSinkSettings,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// Body encoding.
    pub encoding: SfxEncoding,
    /// Rate handling.
    pub rate_as: crate::translate::RateAs,
}

/// Settings of a Datadog sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatadogSettings {
    /// Shared HTTP settings; the intake path is appended to the endpoint.
    pub http: HttpSinkSettings,
    /// Environment variable holding the API key (`None`: forward the client's key).
    pub api_key_env: Option<String>,
}

/// The sink types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    /// Appends to a file.
    File,
    /// Writes to standard output.
    Stdout,
    /// Counts and discards.
    Blackhole,
    /// Datadog intake (`/api/v1/series` and passthrough of every intake endpoint).
    Datadog,
    /// SignalFx `/v2/datapoint` (translated per `formats.md` §5).
    Signalfx,
    /// Amazon Kinesis Data Streams (KPL-aggregated records).
    Kinesis,
    /// Kafka (cargo feature `kafka`).
    Kafka,
    /// The local segment log (the embedded default stream).
    #[serde(rename = "local_log")]
    LocalLog,
    /// Consolidated statsd aggregates to aggregators (added by `[forwarder]`, not
    /// declared in `[sinks]`).
    Forward,
}

impl SinkType {
    fn is_http(self) -> bool {
        matches!(self, SinkType::Datadog | SinkType::Signalfx)
    }
}

/// A validated sink kind with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// Appends to a file (created with its parent directories).
    File {
        /// File path.
        path: PathBuf,
    },
    /// Writes to standard output.
    Stdout,
    /// Counts and discards.
    Blackhole,
    /// Datadog intake.
    Datadog(DatadogSettings),
    /// SignalFx ingest.
    Signalfx(SignalfxSettings),
    /// Kinesis.
    Kinesis(KinesisSettings),
    /// Kafka.
    Kafka(KafkaSettings),
    /// Local log.
    LocalLog(LocalLogSettings),
    /// Aggregators (forwarder mode).
    Forward(Box<ForwarderConfig>),
}

impl SinkConfig {
    fn http_settings(&self, default_compression: Compression) -> HttpSinkSettings {
        HttpSinkSettings {
            endpoint: self
                .endpoint
                .as_deref()
                .unwrap_or("")
                .trim_end_matches('/')
                .to_string(),
            compression: self.compression.unwrap_or(default_compression),
            compression_level: self.compression_level,
            request_timeout: self.request_timeout,
            max_series_per_request: self.max_series_per_request,
            max_in_flight: self.max_in_flight,
            max_retries: self.max_retries,
            ca_file: self.ca_file.clone(),
        }
    }

    /// The resolved kind (validated at load, so a file sink always has a path).
    pub fn kind(&self) -> SinkKind {
        match (self.sink_type, &self.path) {
            (SinkType::File, Some(p)) => SinkKind::File { path: p.clone() },
            (SinkType::File, None) => SinkKind::Blackhole,
            (SinkType::Stdout, _) => SinkKind::Stdout,
            (SinkType::Blackhole, _) => SinkKind::Blackhole,
            (SinkType::Datadog, _) => SinkKind::Datadog(DatadogSettings {
                http: self.http_settings(Compression::Deflate),
                api_key_env: self.api_key_env.clone(),
            }),
            (SinkType::Signalfx, _) => SinkKind::Signalfx(SignalfxSettings {
                http: self.http_settings(Compression::Gzip),
                token_env: self.token_env.clone(),
                encoding: self.encoding,
                rate_as: self.rate_as,
            }),
            (SinkType::Kinesis, _) => SinkKind::Kinesis(KinesisSettings {
                stream: self.stream.clone().unwrap_or_default(),
                region: self.region.clone(),
                endpoint: self.endpoint.clone(),
                stream_settings: self.stream_settings(),
                shard_bytes_per_sec: self.shard_bytes_per_sec,
                shard_records_per_sec: self.shard_records_per_sec,
                linger: self.linger,
            }),
            (SinkType::Kafka, _) => SinkKind::Kafka(KafkaSettings {
                brokers: self.brokers.clone().unwrap_or_default(),
                topic: self.topic.clone().unwrap_or_default(),
                stream_settings: self.stream_settings(),
            }),
            (SinkType::LocalLog, _) => SinkKind::LocalLog(LocalLogSettings {
                dir: self.dir.clone().unwrap_or_default(),
                segment_bytes: self.segment_bytes,
                segment_age: self.segment_age,
                retention_bytes: self.retention_bytes,
                retention_age: self.retention_age,
                stream_settings: self.stream_settings(),
            }),
            (SinkType::Forward, _) => {
                SinkKind::Forward(Box::new(self.forward.clone().unwrap_or_default()))
            }
        }
    }
}

/// Output encodings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkFormat {
    /// NDJSON, one Datadog v1 series object per line.
    #[default]
    DatadogSeries,
}

/// `[[routes]]`: the schema lives with the router (`crate::route`), shared with the control
/// API's JSON.
pub use crate::route::{MatchConfig, RenameConfig, RouteConfig};

/// Checks `[control]` (pure: the token itself is read at start); the key is relative to
/// `control.`.
fn validate_control(c: &ControlConfig) -> Result<(), (String, String)> {
    match (&c.token_file, &c.token_env) {
        (Some(_), Some(_)) => {
            return Err((
                "token_env".into(),
                "set either `token_file` or `token_env`, not both".into(),
            ))
        }
        (Some(p), None) if p.as_os_str().is_empty() => {
            return Err(("token_file".into(), "must not be empty".into()))
        }
        (None, Some(v)) if v.is_empty() => {
            return Err((
                "token_env".into(),
                "must name an environment variable".into(),
            ))
        }
        _ => {}
    }
    if c.unhealthy_after_failures == 0 {
        return Err((
            "unhealthy_after_failures".into(),
            "must be greater than 0".into(),
        ));
    }
    if let Some(t) = &c.tls {
        validate_tls(t)?;
    }
    Ok(())
}

/// Checks one sink's settings; the key is relative to `sinks.NAME` (empty or `.field`).
fn validate_sink(s: &SinkConfig) -> Result<(), (String, String)> {
    let ty = s.sink_type;
    if ty.is_http() {
        match s.endpoint.as_deref() {
            None => {
                return Err((
                    String::new(),
                    "an http sink needs `endpoint` (such as \"https://api.datadoghq.com\")".into(),
                ))
            }
            Some(u) => {
                let rest = u
                    .strip_prefix("http://")
                    .or_else(|| u.strip_prefix("https://"));
                if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                    return Err((
                        ".endpoint".into(),
                        format!("`{u}` is not an http:// or https:// URL"),
                    ));
                }
            }
        }
    } else if ty.is_stream() {
        streams::validate_stream_sink(s)?;
        let http_only = [
            ("token_env", s.token_env.is_some()),
            ("api_key_env", s.api_key_env.is_some()),
            ("ca_file", s.ca_file.is_some()),
        ];
        for (k, set) in http_only {
            if set {
                return Err((
                    format!(".{k}"),
                    "only datadog and signalfx sinks take this setting".into(),
                ));
            }
        }
    } else {
        streams::validate_stream_sink(s)?;
        let http_only = [
            ("endpoint", s.endpoint.is_some()),
            ("token_env", s.token_env.is_some()),
            ("api_key_env", s.api_key_env.is_some()),
            ("ca_file", s.ca_file.is_some()),
            ("compression", s.compression.is_some()),
        ];
        for (k, set) in http_only {
            if set {
                return Err((
                    format!(".{k}"),
                    "only datadog and signalfx sinks take this setting".into(),
                ));
            }
        }
    }
    if s.spill && !ty.is_http() {
        return Err((
            ".spill".into(),
            "only datadog and signalfx sinks spill (stream sinks are the durable path)".into(),
        ));
    }
    if s.spill && ty == SinkType::Datadog && s.api_key_env.is_none() {
        return Err((
            ".spill".into(),
            "a spilling datadog sink needs `api_key_env`: the spool does not keep each client's \
             API key, so replayed data is sent with the sink's own"
                .into(),
        ));
    }
    if s.deadletter_max_bytes != 0 && s.deadletter_max_bytes < MIN_DEADLETTER_MAX_BYTES {
        return Err((
            ".deadletter_max_bytes".into(),
            format!(
                "{} is below {MIN_DEADLETTER_MAX_BYTES} (0 keeps no dead letters)",
                s.deadletter_max_bytes
            ),
        ));
    }
    if !(s.replay_share > 0.0 && s.replay_share <= 1.0) {
        return Err((
            ".replay_share".into(),
            format!("{} is not in (0, 1]", s.replay_share),
        ));
    }
    if ty == SinkType::Datadog && s.token_env.is_some() {
        return Err((
            ".token_env".into(),
            "datadog sinks take `api_key_env`; `token_env` is for signalfx".into(),
        ));
    }
    if ty == SinkType::Signalfx && s.api_key_env.is_some() {
        return Err((
            ".api_key_env".into(),
            "signalfx sinks take `token_env`; `api_key_env` is for datadog".into(),
        ));
    }
    if !(1..=12).contains(&s.compression_level) {
        return Err((".compression_level".into(), "must be 1 to 12".into()));
    }
    if s.max_series_per_request == 0 {
        return Err((
            ".max_series_per_request".into(),
            "must be greater than 0".into(),
        ));
    }
    if !(1..=64).contains(&s.max_in_flight) {
        return Err((".max_in_flight".into(), "must be 1 to 64".into()));
    }
    Ok(())
}

impl Config {
    /// The embedded default configuration.
    ///
    /// # Errors
    /// Never in a released build: a test parses the default.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::from_toml(DEFAULT_TOML)
    }

    /// Parses and validates a TOML document.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key and line of the first problem.
    pub fn from_toml(src: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| locate::line_of(src, s.start));
            ConfigError {
                key: String::new(),
                line,
                message: e.message().trim().to_string(),
            }
        })?;
        cfg.validate().map_err(|(key, message)| ConfigError {
            line: locate::line_of_key(src, &key),
            key,
            message,
        })?;
        let mut cfg = cfg;
        if let Some(f) = &cfg.forwarder {
            let mut sink = SinkConfig::spool();
            sink.sink_type = SinkType::Forward;
            sink.queue_batches = f.queue_batches;
            sink.queue_max_bytes = f.queue_max_bytes;
            sink.request_timeout = f.request_timeout;
            // One request at a time, in order: a batch held back by a retry must not be
            // overtaken by a later one (gauges would go back in time at the aggregator).
            sink.max_in_flight = 1;
            sink.forward = Some(f.clone());
            cfg.sinks.insert(FORWARDER_SINK.into(), sink);
        }
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: String, m: String| Err((k, m));
        // A host that runs stream workers only needs no listener.
        if self.statsd.listen.is_empty() && self.workers.is_empty() {
            return err(
                "statsd.listen".into(),
                "at least one listener is required (or [[workers]] on a workers-only host)".into(),
            );
        }
        for (i, _) in self.statsd.listen.iter().enumerate() {
            if let Err(m) = self.listener(i) {
                return err(format!("statsd.listen[{i}]"), m);
            }
        }
        if self.statsd.flush_interval < Duration::from_millis(10) {
            return err(
                "statsd.flush_interval".into(),
                "must be at least 10ms".into(),
            );
        }
        for (i, p) in self.statsd.percentiles.iter().enumerate() {
            if !(p.is_finite() && *p != 0.0 && p.abs() <= 100.0) {
                return err(
                    format!("statsd.percentiles[{i}]"),
                    format!("{p} is not a percentile: use a number in [-100, 0) or (0, 100]"),
                );
            }
        }
        let positive = [
            ("statsd.max_datagram_bytes", self.statsd.max_datagram_bytes),
            ("statsd.recv_batch", self.statsd.recv_batch),
            (
                "statsd.max_series_per_shard",
                self.statsd.max_series_per_shard,
            ),
            (
                "statsd.max_timer_values_per_shard",
                self.statsd.max_timer_values_per_shard,
            ),
            ("statsd.max_tags_per_line", self.statsd.max_tags_per_line),
        ];
        for (k, v) in positive {
            if v == 0 {
                return err(k.into(), "must be greater than 0".into());
            }
        }
        if self.statsd.max_datagram_bytes > 65_535 {
            return err(
                "statsd.max_datagram_bytes".into(),
                "must be at most 65535".into(),
            );
        }
        if self.statsd.recv_batch > 1024 {
            return err("statsd.recv_batch".into(), "must be at most 1024".into());
        }
        if !self.http.listen.is_empty() {
            if let Err(e) = self.http.listen.parse::<SocketAddr>() {
                return err(
                    "http.listen".into(),
                    format!("`{}` is not HOST:PORT ({e})", self.http.listen),
                );
            }
        }
        let http_positive = [
            ("http.max_body_bytes", self.http.max_body_bytes),
            (
                "http.max_decompressed_bytes",
                self.http.max_decompressed_bytes,
            ),
            ("http.max_inflight_bytes", self.http.max_inflight_bytes),
            ("http.max_connections", self.http.max_connections),
            ("http.max_header_bytes", self.http.max_header_bytes),
        ];
        for (k, v) in http_positive {
            if v == 0 {
                return err(k.into(), "must be greater than 0".into());
            }
        }
        if self.http.max_inflight_bytes < self.http.max_body_bytes {
            return err(
                "http.max_inflight_bytes".into(),
                "must be at least http.max_body_bytes".into(),
            );
        }
        if let Err(e) = self.control.listen.parse::<SocketAddr>() {
            return err(
                "control.listen".into(),
                format!("`{}` is not HOST:PORT ({e})", self.control.listen),
            );
        }
        if let Err((k, m)) = validate_control(&self.control) {
            return err(format!("control.{k}"), m);
        }
        if let Some(Err((k, m))) = self.http.tls.as_ref().map(validate_tls) {
            return err(format!("http.{k}"), m);
        }
        for (name, s) in &self.sinks {
            if s.queue_max_bytes == 0 {
                return err(
                    format!("sinks.{name}.queue_max_bytes"),
                    "must be greater than 0".into(),
                );
            }
            if s.queue_batches == 0 {
                return err(
                    format!("sinks.{name}.queue_batches"),
                    "must be greater than 0".into(),
                );
            }
            match (s.sink_type, &s.path) {
                (SinkType::File, None) => {
                    return err(format!("sinks.{name}"), "a file sink needs `path`".into())
                }
                (SinkType::File, Some(p)) if p.as_os_str().is_empty() => {
                    return err(format!("sinks.{name}.path"), "must not be empty".into())
                }
                (
                    SinkType::Stdout | SinkType::Blackhole | SinkType::Datadog | SinkType::Signalfx,
                    Some(_),
                ) => {
                    return err(
                        format!("sinks.{name}.path"),
                        "only file sinks take a path".into(),
                    )
                }
                _ => {}
            }
        }
        if let Some(f) = &self.forwarder {
            if let Err((k, m)) = f.validate() {
                return err(format!("forwarder{k}"), m);
            }
            if self.sinks.contains_key(FORWARDER_SINK) {
                return err(
                    format!("sinks.{FORWARDER_SINK}"),
                    format!("`{FORWARDER_SINK}` is the name of the sink [forwarder] adds: rename this one"),
                );
            }
        }
        for (name, s) in &self.sinks {
            if name.is_empty() {
                return err("sinks".into(), "a sink name must not be empty".into());
            }
            if s.sink_type == SinkType::Forward {
                return err(
                    format!("sinks.{name}.type"),
                    "`forward` sinks are not declared: a [forwarder] section adds one".into(),
                );
            }
            if let Err((k, m)) = validate_sink(s) {
                return err(format!("sinks.{name}{k}"), m);
            }
        }
        // A host that only runs stream workers, or a forwarder, needs no routes.
        if self.routes.is_empty() && self.workers.is_empty() && self.forwarder.is_none() {
            return err(
                "routes".into(),
                "at least one [[routes]] entry is required (or a [[workers]] entry)".into(),
            );
        }
        let sinks: Vec<&str> = self.sinks.keys().map(String::as_str).collect();
        if let Err(e) = crate::route::compile(&self.route_table(), &sinks, &self.route_listeners())
        {
            let message = match &e.route {
                Some((_, name)) => format!("route {name:?}: {}", e.message),
                None => e.message.clone(),
            };
            return err(e.key(), message);
        }
        if self.state_dir.is_none() {
            if let Some((name, _)) = self.sinks.iter().find(|(_, s)| s.spill) {
                return err(
                    format!("sinks.{name}.spill"),
                    "a spill needs `state_dir` (the spool lives in <state_dir>/spool/<sink>)"
                        .into(),
                );
            }
        }
        for (i, w) in self.workers.iter().enumerate() {
            if let Err((k, m)) = streams::validate_worker(w, &self.sinks, self.state_dir.is_some())
            {
                return err(format!("workers[{i}]{k}"), m);
            }
        }
        Ok(())
    }

    /// Resolves listener `i`.
    ///
    /// # Errors
    /// A message saying what is wrong with the address.
    pub fn listener(&self, i: usize) -> Result<Listener, String> {
        let (address, dialect) = match self.statsd.listen.get(i) {
            Some(ListenEntry::Address(a)) => (a.as_str(), None),
            Some(ListenEntry::Table(t)) => (t.address.as_str(), t.gauge_dialect),
            None => return Err("no such listener".into()),
        };
        let address = if let Some(rest) = address.strip_prefix("udp://") {
            ListenAddress::Udp(
                rest.parse()
                    .map_err(|e| format!("`{address}`: expected udp://HOST:PORT ({e})"))?,
            )
        } else if let Some(rest) = address.strip_prefix("unixgram://") {
            if !rest.starts_with('/') {
                return Err(format!(
                    "`{address}`: expected an absolute path, unixgram:///path"
                ));
            }
            ListenAddress::Unixgram(PathBuf::from(rest))
        } else {
            return Err(format!(
                "`{address}`: expected udp://HOST:PORT or unixgram:///path"
            ));
        };
        Ok(Listener {
            address,
            gauge_dialect: dialect.unwrap_or(self.statsd.gauge_dialect),
        })
    }

    /// All resolved listeners (validated at load, so none fails here).
    pub fn listeners(&self) -> Vec<Listener> {
        (0..self.statsd.listen.len())
            .filter_map(|i| self.listener(i).ok())
            .collect()
    }

    /// The HTTP intake address, if enabled (validated at load).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.listen.parse().ok()
    }

    /// The control listener address (validated at load).
    pub fn control_addr(&self) -> SocketAddr {
        self.control
            .listen
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8081)))
    }

    /// The file's `[[routes]]` as a route table. Its version is `file-` and a hash of the
    /// routes, so it changes exactly when the file's routes do.
    pub fn route_table(&self) -> crate::route::RouteTable {
        let canonical = serde_json::to_vec(&self.routes).unwrap_or_default();
        crate::route::RouteTable {
            version: format!("file-{:016x}", xxhash_rust::xxh3::xxh3_64(&canonical)),
            routes: self.routes.clone(),
        }
    }

    /// The listener names a route's `match.input` may use besides `statsd` and `http`: each
    /// `[statsd] listen` address and the `[http] listen` address, as written.
    pub fn route_listeners(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .statsd
            .listen
            .iter()
            .map(|l| match l {
                ListenEntry::Address(a) => a.as_str(),
                ListenEntry::Table(t) => t.address.as_str(),
            })
            .collect();
        if !self.http.listen.is_empty() {
            v.push(&self.http.listen);
        }
        v
    }

    /// Names of every configured sink, sorted: the order of the sink slots at start.
    pub fn sink_names(&self) -> Vec<&str> {
        self.sinks.keys().map(String::as_str).collect()
    }

    /// Names of the sinks the routes send to, in a stable order, without duplicates.
    pub fn routed_sinks(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .routes
            .iter()
            .flat_map(|r| r.to.iter().map(String::as_str))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_and_validates() {
        let c = Config::embedded_default().unwrap();
        assert_eq!(c.statsd.flush_interval, Duration::from_secs(10));
        // The whole pipeline on one machine: everything into the local log, a worker from
        // there to the NDJSON file.
        assert_eq!(c.routed_sinks(), vec!["stream"]);
        assert!(matches!(c.sinks["stream"].kind(), SinkKind::LocalLog(_)));
        assert_eq!(c.workers.len(), 1);
        assert_eq!(c.workers[0].from, "stream");
        assert_eq!(c.workers[0].to, ["local"]);
        assert_eq!(
            c.listeners()[0].address,
            ListenAddress::Udp("127.0.0.1:8125".parse().unwrap())
        );
    }

    #[test]
    fn a_forwarder_section_adds_its_sink_and_needs_no_routes() {
        let c = Config::from_toml(
            "[forwarder]\naggregators = [\"http://a:8080/\", \"https://b\"]\ninterval = \"250ms\"\ntags = [\"region:x\"]\n",
        )
        .unwrap();
        let f = c.forwarder.clone().unwrap();
        assert_eq!(f.interval, Duration::from_millis(250));
        assert_eq!(f.queue_batches, 600);
        let SinkKind::Forward(s) = c.sinks[FORWARDER_SINK].kind() else {
            panic!("{:?}", c.sinks[FORWARDER_SINK].kind());
        };
        assert_eq!(s.aggregators, f.aggregators);
        assert_eq!(c.sinks[FORWARDER_SINK].max_in_flight, 1);
        assert!(c.routes.is_empty());
        for (src, key, msg) in [
            ("[forwarder]\naggregators = []\n", "forwarder.aggregators", "at least one"),
            (
                "[forwarder]\naggregators = [\"agg:8080\"]\n",
                "forwarder.aggregators[0]",
                "not an http",
            ),
            (
                "[forwarder]\naggregators = [\"http://a\"]\ninterval = \"1ms\"\n",
                "forwarder.interval",
                "at least 10ms",
            ),
            (
                "[forwarder]\naggregators = [\"http://a\"]\ntags = [\"a,b\"]\n",
                "forwarder.tags",
                "not a tag",
            ),
            (
                "[forwarder]\naggregators = [\"http://a\"]\n[sinks.forwarder]\ntype = \"blackhole\"\n",
                "sinks.forwarder",
                "rename",
            ),
            (
                "[sinks.x]\ntype = \"forward\"\n[[routes]]\nname = \"r\"\nto = [\"x\"]\n",
                "sinks.x.type",
                "[forwarder]",
            ),
        ] {
            let e = Config::from_toml(src).unwrap_err();
            assert_eq!(e.key, key, "{src}: {e}");
            assert!(e.message.contains(msg), "{src}: {e}");
        }
    }

    #[test]
    fn a_workers_only_host_needs_no_routes() {
        let base = "[sinks.stream]\ntype = \"local_log\"\ndir = \"/tmp/l\"\n[sinks.f]\ntype = \"file\"\npath = \"/tmp/f\"\n";
        let e = Config::from_toml(base).unwrap_err();
        assert!(e.to_string().contains("[[routes]]"), "{e}");
        let c = Config::from_toml(&format!(
            "{base}[[workers]]\nfrom = \"stream\"\nto = [\"f\"]\n"
        ))
        .unwrap();
        assert!(c.routes.is_empty());
        assert!(c.routed_sinks().is_empty());
        // ... and no listener either.
        let quiet = "[statsd]\nlisten = []\n[http]\nlisten = \"\"\n";
        let c = Config::from_toml(&format!(
            "{quiet}{base}[[workers]]\nfrom = \"stream\"\nto = [\"f\"]\n"
        ))
        .unwrap();
        assert!(c.listeners().is_empty());
        assert_eq!(c.http_addr(), None);
        let e = Config::from_toml(&format!(
            "{quiet}{base}[[routes]]\nname = \"r\"\nto = [\"f\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "statsd.listen", "{e}");
    }

    #[test]
    fn deadletter_max_bytes_defaults_to_64_mib_and_is_0_or_at_least_the_minimum() {
        let sink = |extra: &str| {
            format!(
                "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"http://127.0.0.1:1\"\n{extra}\n\
                 [[routes]]\nname = \"r\"\nto = [\"dd\"]\n"
            )
        };
        let c = Config::from_toml(&sink("")).unwrap();
        assert_eq!(c.sinks["dd"].deadletter_max_bytes, 64 << 20);
        let c = Config::from_toml(&sink("deadletter_max_bytes = 0")).unwrap();
        assert_eq!(c.sinks["dd"].deadletter_max_bytes, 0);
        let e = Config::from_toml(&sink("deadletter_max_bytes = 1000")).unwrap_err();
        assert_eq!(e.key, "sinks.dd.deadletter_max_bytes", "{e}");
        let c = Config::from_toml(&sink(&format!(
            "deadletter_max_bytes = {MIN_DEADLETTER_MAX_BYTES}"
        )))
        .unwrap();
        assert_eq!(c.sinks["dd"].deadletter_max_bytes, MIN_DEADLETTER_MAX_BYTES);
    }

    #[test]
    fn spill_needs_state_dir_a_vendor_sink_and_a_key_and_adds_a_replay_worker() {
        let sink = |extra: &str| {
            format!(
                "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"http://127.0.0.1:1\"\n{extra}\n\
                 [[routes]]\nname = \"r\"\nto = [\"dd\"]\n"
            )
        };
        let e = Config::from_toml(&sink("api_key_env = \"K\"\nspill = true")).unwrap_err();
        assert_eq!(e.key, "sinks.dd.spill", "{e}");
        assert!(e.message.contains("state_dir"), "{e}");
        let e = Config::from_toml(&format!("state_dir = \"/tmp/s\"\n{}", sink("spill = true")))
            .unwrap_err();
        assert!(e.message.contains("api_key_env"), "{e}");
        let e = Config::from_toml(&format!(
            "state_dir = \"/tmp/s\"\n{}",
            sink("api_key_env = \"K\"\nspill = true\nreplay_share = 0")
        ))
        .unwrap_err();
        assert!(e.key.ends_with(".replay_share"), "{e}");
        let e = Config::from_toml(
            "state_dir = \"/tmp/s\"\n[sinks.f]\ntype = \"file\"\npath = \"/tmp/f\"\nspill = true\n\
             [[routes]]\nname = \"r\"\nto = [\"f\"]\n",
        )
        .unwrap_err();
        assert!(e.key.ends_with(".spill"), "{e}");
        let cfg = Config::from_toml(&format!(
            "state_dir = \"/tmp/s\"\n{}",
            sink("api_key_env = \"K\"\nspill = true\nreplay_share = 0.25")
        ))
        .unwrap();
        let with = cfg.with_spool_replays();
        let spool = &with.sinks["dd.spool"];
        assert_eq!(spool.sink_type, SinkType::LocalLog);
        assert_eq!(
            spool.dir.as_deref(),
            Some(std::path::Path::new("/tmp/s/spool/dd"))
        );
        let w = with.workers.last().unwrap();
        assert_eq!(
            (w.from.as_str(), w.to.as_slice()),
            ("dd.spool", &["dd".to_string()][..])
        );
        assert_eq!(w.share, 0.25);
        assert!(cfg.workers.is_empty() && !cfg.sinks.contains_key("dd.spool"));
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let src = "[statsd]\nflush_interval = \"1s\"\nflush_intervall = \"2s\"\n";
        let e = Config::from_toml(src).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("flush_intervall"), "{e}");
    }

    #[test]
    fn unknown_sink_in_route_names_the_key_and_line() {
        let src =
            "[sinks.a]\ntype = \"blackhole\"\n\n[[routes]]\nname = \"r\"\nto = [\"a\", \"b\"]\n";
        let e = Config::from_toml(src).unwrap_err();
        assert_eq!(e.key, "routes[0].to[1]");
        assert_eq!(e.line, Some(6));
        assert!(e.message.contains("unknown sink `b`"), "{e}");
    }

    #[test]
    fn bad_listener_and_percentile_are_rejected() {
        let base = "[sinks.a]\ntype = \"blackhole\"\n[[routes]]\nname = \"r\"\nto = [\"a\"]\n";
        let e =
            Config::from_toml(&format!("{base}[statsd]\nlisten = [\"tcp://x\"]\n")).unwrap_err();
        assert_eq!(e.key, "statsd.listen[0]");
        assert_eq!(e.line, Some(7));
        let e = Config::from_toml(&format!("{base}[statsd]\npercentiles = [90.0, 150.0]\n"))
            .unwrap_err();
        assert_eq!(e.key, "statsd.percentiles[1]");
        let e =
            Config::from_toml(&format!("{base}[statsd]\nflush_interval = \"soon\"\n")).unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn tls_tables_parse_and_empty_paths_are_named() {
        let base = "[sinks.a]\ntype = \"blackhole\"\n[[routes]]\nname = \"r\"\nto = [\"a\"]\n";
        let c = Config::from_toml(&format!(
            "{base}[http]\ntls = {{ cert = \"/c.pem\", key = \"/k.pem\" }}\n\
             [control]\ntls = {{ cert = \"/c2.pem\", key = \"/k2.pem\" }}\n"
        ))
        .unwrap();
        let t = c.http.tls.unwrap();
        assert_eq!(
            (t.cert.to_str(), t.key.to_str()),
            (Some("/c.pem"), Some("/k.pem"))
        );
        assert_eq!(c.control.tls.unwrap().key.to_str(), Some("/k2.pem"));
        let e = Config::from_toml(&format!(
            "{base}[http]\ntls = {{ cert = \"\", key = \"/k\" }}\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "http.tls.cert");
        let e = Config::from_toml(&format!(
            "{base}[control]\ntls = {{ cert = \"/c\", key = \"\" }}\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "control.tls.key");
        let e =
            Config::from_toml(&format!("{base}[http]\ntls = {{ cert = \"/c\" }}\n")).unwrap_err();
        assert!(e.message.contains("key"), "{e}");
    }

    #[test]
    fn control_token_sources_are_exclusive_and_named() {
        let base = "[sinks.a]\ntype = \"blackhole\"\n[[routes]]\nname = \"r\"\nto = [\"a\"]\n";
        let both = format!("{base}[control]\ntoken_file = \"/t\"\ntoken_env = \"T\"\n");
        let e = Config::from_toml(&both).unwrap_err();
        assert_eq!(e.key, "control.token_env");
        assert!(e.message.contains("not both"), "{e}");
        let e = Config::from_toml(&format!("{base}[control]\ntoken_env = \"\"\n")).unwrap_err();
        assert_eq!(e.key, "control.token_env");
        let e = Config::from_toml(&format!("{base}[control]\ntoken_file = \"\"\n")).unwrap_err();
        assert_eq!(e.key, "control.token_file");
        let e = Config::from_toml(&format!("{base}[control]\nunhealthy_after_failures = 0\n"))
            .unwrap_err();
        assert_eq!(e.key, "control.unhealthy_after_failures");
        let c = Config::from_toml(&format!("{base}[control]\ntoken_env = \"SY_TOKEN\"\n")).unwrap();
        assert_eq!(c.control.token_env.as_deref(), Some("SY_TOKEN"));
        assert_eq!(c.control.unhealthy_after_failures, 5);
    }

    #[test]
    fn per_listener_dialect() {
        let src = "[statsd]\ngauge_dialect = \"etsy\"\nlisten = [\"udp://127.0.0.1:1\", { address = \"unixgram:///tmp/x.sock\", gauge_dialect = \"dogstatsd\" }]\n[sinks.a]\ntype = \"stdout\"\n[[routes]]\nname = \"r\"\nto = [\"a\"]\n";
        let c = Config::from_toml(src).unwrap();
        let l = c.listeners();
        assert_eq!(l[0].gauge_dialect, GaugeDialect::Etsy);
        assert_eq!(l[1].gauge_dialect, GaugeDialect::Dogstatsd);
        assert_eq!(l[1].address, ListenAddress::Unixgram("/tmp/x.sock".into()));
    }
}
