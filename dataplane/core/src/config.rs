//! The configuration schema, its embedded default, and validation.
//!
//! Config structs are the operator reference: every field is documented here and in the
//! commented default (`config/default.toml`, printed by `switchyard print-config`). Loading
//! is pure: [`Config::from_toml`] parses and validates; every error names the key and the
//! line it is on. Addresses and sizes are resolved here so the running code has nothing left
//! to fail on.

mod locate;

use crate::aggregate::GaugeDialect;
use serde::Deserialize;
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Dataplane shards.
    #[serde(default)]
    pub shards: ShardsConfig,
    /// The statsd / DogStatsD ingest path.
    #[serde(default)]
    pub statsd: StatsdConfig,
    /// The control-plane listener.
    #[serde(default)]
    pub control: ControlConfig,
    /// Sinks by name.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Ordered routes.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// `[shards]`
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ListenEntry {
    /// `"udp://127.0.0.1:8125"`
    Address(String),
    /// `{ address = "...", gauge_dialect = "etsy" }`
    Table(ListenTable),
}

/// A listener table.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

/// `[control]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Control API address.
    pub listen: String,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
        }
    }
}

/// `[sinks.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Sink type.
    #[serde(rename = "type")]
    pub sink_type: SinkType,
    /// File path (`type = "file"` only; parent directories are created).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Output format.
    #[serde(default)]
    pub format: SinkFormat,
    /// Queue capacity in batches.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// Base URL of the ingest endpoint (`type = "signalfx"` only), such as
    /// `https://ingest.us0.signalfx.com`; `/v2/datapoint` is appended.
    #[serde(default)]
    pub url: Option<String>,
    /// Name of the environment variable holding the access token (`X-SF-Token`). Secrets
    /// never go in the config file.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Request body compression (`gzip` or `none`).
    #[serde(default)]
    pub compression: Compression,
    /// libdeflate level, 1 (fastest) to 12 (smallest).
    #[serde(default = "default_compression_level")]
    pub compression_level: u8,
    /// Per-request timeout.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most series per request.
    #[serde(default = "default_max_series_per_request")]
    pub max_series_per_request: usize,
    /// Datadog `rate` series as SignalFx `counter` (value x interval) or `gauge`.
    #[serde(default)]
    pub rate_as: crate::translate::RateAs,
}

fn default_queue_batches() -> usize {
    64
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

/// Request body compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip with libdeflate.
    #[default]
    Gzip,
    /// Uncompressed.
    None,
}

/// Settings of a SignalFx sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalfxSettings {
    /// Full datapoint URL (`.../v2/datapoint`).
    pub datapoint_url: String,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// Compression.
    pub compression: Compression,
    /// libdeflate level.
    pub compression_level: u8,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Most series per request.
    pub max_series_per_request: usize,
    /// Rate handling.
    pub rate_as: crate::translate::RateAs,
}

/// The sink types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    /// Appends to a file.
    File,
    /// Writes to standard output.
    Stdout,
    /// Counts and discards.
    Blackhole,
    /// SignalFx `/v2/datapoint` (translated per `formats.md` §5).
    Signalfx,
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
    /// SignalFx ingest.
    Signalfx(SignalfxSettings),
}

impl SinkConfig {
    /// The resolved kind (validated at load, so a file sink always has a path).
    pub fn kind(&self) -> SinkKind {
        match (self.sink_type, &self.path) {
            (SinkType::File, Some(p)) => SinkKind::File { path: p.clone() },
            (SinkType::File, None) => SinkKind::Blackhole,
            (SinkType::Stdout, _) => SinkKind::Stdout,
            (SinkType::Blackhole, _) => SinkKind::Blackhole,
            (SinkType::Signalfx, _) => SinkKind::Signalfx(SignalfxSettings {
                datapoint_url: format!(
                    "{}/v2/datapoint",
                    self.url.as_deref().unwrap_or("").trim_end_matches('/')
                ),
                token_env: self.token_env.clone(),
                compression: self.compression,
                compression_level: self.compression_level,
                request_timeout: self.request_timeout,
                max_series_per_request: self.max_series_per_request,
                rate_as: self.rate_as,
            }),
        }
    }
}

/// Output encodings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkFormat {
    /// NDJSON, one Datadog v1 series object per line.
    #[default]
    DatadogSeries,
}

/// `[[routes]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Route name.
    pub name: String,
    /// Sinks that receive the route's series.
    pub to: Vec<String>,
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
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: String, m: String| Err((k, m));
        if self.statsd.listen.is_empty() {
            return err(
                "statsd.listen".into(),
                "at least one listener is required".into(),
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
        if let Err(e) = self.control.listen.parse::<SocketAddr>() {
            return err(
                "control.listen".into(),
                format!("`{}` is not HOST:PORT ({e})", self.control.listen),
            );
        }
        for (name, s) in &self.sinks {
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
                (SinkType::Stdout | SinkType::Blackhole | SinkType::Signalfx, Some(_)) => {
                    return err(
                        format!("sinks.{name}.path"),
                        "only file sinks take a path".into(),
                    )
                }
                _ => {}
            }
        }
        for (name, s) in &self.sinks {
            match (s.sink_type, s.url.as_deref()) {
                (SinkType::Signalfx, None) => {
                    return err(format!("sinks.{name}"), "a signalfx sink needs `url`".into())
                }
                (SinkType::Signalfx, Some(u)) if u.starts_with("https://") => {
                    return err(
                        format!("sinks.{name}.url"),
                        "https is not supported yet (TLS arrives with the security work); use http:// to a local TLS proxy".into(),
                    )
                }
                (SinkType::Signalfx, Some(u)) if !u.starts_with("http://") || u.len() <= 7 => {
                    return err(format!("sinks.{name}.url"), format!("`{u}` is not an http:// URL"))
                }
                (SinkType::File | SinkType::Stdout | SinkType::Blackhole, Some(_)) => {
                    return err(format!("sinks.{name}.url"), "only signalfx sinks take a url".into())
                }
                _ => {}
            }
            if !(1..=12).contains(&s.compression_level) {
                return err(
                    format!("sinks.{name}.compression_level"),
                    "must be 1 to 12".into(),
                );
            }
            if s.max_series_per_request == 0 {
                return err(
                    format!("sinks.{name}.max_series_per_request"),
                    "must be greater than 0".into(),
                );
            }
        }
        if self.routes.is_empty() {
            return err(
                "routes".into(),
                "at least one [[routes]] entry is required".into(),
            );
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.to.is_empty() {
                return err(
                    format!("routes[{i}].to"),
                    format!("route `{}` sends nowhere", r.name),
                );
            }
            for (j, s) in r.to.iter().enumerate() {
                if !self.sinks.contains_key(s) {
                    let known: Vec<&str> = self.sinks.keys().map(String::as_str).collect();
                    return err(
                        format!("routes[{i}].to[{j}]"),
                        format!(
                            "unknown sink `{s}` (configured sinks: {})",
                            known.join(", ")
                        ),
                    );
                }
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

    /// The control listener address (validated at load).
    pub fn control_addr(&self) -> SocketAddr {
        self.control
            .listen
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8081)))
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
        assert_eq!(c.routed_sinks(), vec!["local"]);
        assert_eq!(
            c.listeners()[0].address,
            ListenAddress::Udp("127.0.0.1:8125".parse().unwrap())
        );
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
    fn per_listener_dialect() {
        let src = "[statsd]\ngauge_dialect = \"etsy\"\nlisten = [\"udp://127.0.0.1:1\", { address = \"unixgram:///tmp/x.sock\", gauge_dialect = \"dogstatsd\" }]\n[sinks.a]\ntype = \"stdout\"\n[[routes]]\nname = \"r\"\nto = [\"a\"]\n";
        let c = Config::from_toml(src).unwrap();
        let l = c.listeners();
        assert_eq!(l[0].gauge_dialect, GaugeDialect::Etsy);
        assert_eq!(l[1].gauge_dialect, GaugeDialect::Dogstatsd);
        assert_eq!(l[1].address, ListenAddress::Unixgram("/tmp/x.sock".into()));
    }
}
