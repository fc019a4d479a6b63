//! `[forwarder]`: forwarder mode. Its presence makes the process a forwarder: the statsd
//! aggregates of every `interval` are consolidated (counters summed, gauges last, sets
//! unioned, timer values kept) and sent to the aggregators instead of through the routes,
//! by a sink the config adds for it ([`FORWARDER_SINK`], `type = "forward"`, with its own
//! queue, retries and ledger). HTTP intake payloads still follow the routes.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Name of the sink `[forwarder]` adds (reserved).
pub const FORWARDER_SINK: &str = "forwarder";

/// `[forwarder]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwarderConfig {
    /// Base URLs of the aggregators (`http://` or `https://`); the forward path
    /// (`/switchyard/v1/forward`) is appended. Each series goes to one of them, chosen by
    /// consistent hashing on the series, or to the next one while that one is down.
    pub aggregators: Vec<String>,
    /// How often the consolidated aggregates are sent.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Tags added to every series this forwarder sends (gostatsd adds host tags on the
    /// forwarder), such as `["region:eu-west-1", "az:eu-west-1a"]`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The name this forwarder reports in its batches; default: the host name.
    #[serde(default)]
    pub name: Option<String>,
    /// Consolidated batches queued while the aggregators are slow or down (one per
    /// `interval`: 600 at 1 s is 10 minutes); past it a batch is dropped, counted
    /// `queue_full`.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// Bytes of consolidated aggregates (keys, values) held at most while they wait; past
    /// it an interval is dropped, counted `queue_full` (one interval is always taken when
    /// nothing waits).
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: u64,
    /// Per-request timeout.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long an aggregator that failed is left out before it is tried again (its series
    /// go to the next aggregator meanwhile).
    #[serde(default = "default_down_for", with = "humantime_serde")]
    pub down_for: Duration,
    /// PEM file of extra CA certificates to trust for `https://` aggregators.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl Default for ForwarderConfig {
    /// No aggregator, every other setting at its default.
    fn default() -> Self {
        Self {
            aggregators: Vec::new(),
            interval: default_interval(),
            tags: Vec::new(),
            name: None,
            queue_batches: default_queue_batches(),
            queue_max_bytes: default_queue_max_bytes(),
            request_timeout: default_request_timeout(),
            down_for: default_down_for(),
            ca_file: None,
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_queue_batches() -> usize {
    600
}

fn default_queue_max_bytes() -> u64 {
    256 << 20
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_down_for() -> Duration {
    Duration::from_secs(10)
}

impl ForwarderConfig {
    /// Checks the settings; the key is relative to `forwarder` (empty or `.field`).
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.aggregators.is_empty() {
            return Err((
                ".aggregators".into(),
                "at least one aggregator URL is required".into(),
            ));
        }
        for (i, u) in self.aggregators.iter().enumerate() {
            let rest = u
                .strip_prefix("http://")
                .or_else(|| u.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err((
                    format!(".aggregators[{i}]"),
                    format!("`{u}` is not an http:// or https:// URL"),
                ));
            }
        }
        if self.aggregators.len() > 64 {
            return Err((".aggregators".into(), "at most 64 aggregators".into()));
        }
        if self.interval < Duration::from_millis(10) {
            return Err((".interval".into(), "must be at least 10ms".into()));
        }
        if self.queue_batches == 0 {
            return Err((".queue_batches".into(), "must be greater than 0".into()));
        }
        if self.queue_max_bytes == 0 {
            return Err((".queue_max_bytes".into(), "must be greater than 0".into()));
        }
        if let Some(t) = self.tags.iter().find(|t| t.is_empty() || t.contains(',')) {
            return Err((
                ".tags".into(),
                format!("`{t}` is not a tag (empty, or holds a comma)"),
            ));
        }
        Ok(())
    }

    /// The name reported in batches: `name`, else the host name, else `switchyard`.
    pub fn reported_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "switchyard".into())
    }
}
