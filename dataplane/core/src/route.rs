//! Routing: which sinks receive a series, which series are dropped, sampled, renamed or
//! retagged, decided by an ordered table of rules.
//!
//! - [`RouteTable`] / [`RouteConfig`]: the schema, one shape for the config file's
//!   `[[routes]]` and the control API's JSON.
//! - [`compile`] / [`validate_table`] / [`validate_json`]: validation naming the rule and
//!   field at fault (`routes[2] ("trial").match.name_regex: invalid regex ...`), and
//!   compilation into an immutable [`CompiledRoutes`], shared by every shard as a snapshot.
//! - [`CompiledRoutes::decide_with`]: the [`Decision`] for one series (sinks as a [`SinkSet`]
//!   bitmask, matched rules, drop and sample outcome), meant to be cached per series by the
//!   caller; [`CompiledRoutes::rewrite`] applies its rename and tag rules into reused
//!   buffers.
//! - [`Router`]: one shard's decision cache over a table snapshot, the split of a flushed
//!   statsd batch by destination, and the per-route and per-sink routing counts.
//! - [`RoutesCell`]: the live table the control plane swaps and the shards pick up.
//!
//! Semantics: rules are evaluated in order against the series as it arrived; a series goes
//! to the union of the `to` sinks of every rule that applies; a rule's `sample` is a stable
//! fork by series hash salted with the rule's name (the same series is always in or always
//! out, and two 10% rules pick different series; a series keeps its place when the table
//! is replaced); a series outside the sample is treated as not matching that rule; `drop`
//! discards the series for every sink and stops; `final` stops after the rule applies.
//!
//! Pure code: no threads, no I/O, no metrics of its own (the shards count per route and
//! per sink from the decisions).

mod cell;
mod compile;
mod decide;
mod error;
mod rewrite;
mod router;
mod table;
mod trie;

pub use cell::RoutesCell;
pub use compile::{compile, CompiledRoutes};
pub use decide::{DecideScratch, Decision};
pub use error::RouteError;
pub use rewrite::Rewrite;
pub use router::{series_hash, RoutedBatch, Router, CACHE_CAPACITY, MAX_DECISIONS};
pub use table::{MatchConfig, RenameConfig, RouteConfig, RouteTable};

/// Most sinks a table can address ([`SinkSet`] is a 64-bit mask).
pub const MAX_SINKS: usize = 64;

/// Which intake a series came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// The statsd / DogStatsD listeners.
    Statsd,
    /// The Datadog-compatible HTTP intake.
    Http,
}

/// Where a series came in: the kind, and the listener's name (its address as written in
/// the config; see [`MatchConfig::input`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input<'a> {
    /// The intake.
    pub kind: InputKind,
    /// The listener's name.
    pub listener: &'a str,
}

/// A set of sinks: bit `i` is sink `i` of [`CompiledRoutes::sinks`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SinkSet(pub u64);

impl SinkSet {
    /// No sink.
    pub const EMPTY: SinkSet = SinkSet(0);

    /// Whether sink `i` is in the set.
    pub const fn contains(self, i: usize) -> bool {
        i < MAX_SINKS && self.0 & (1 << i) != 0
    }

    /// Adds sink `i` (ignored past [`MAX_SINKS`], which validation rules out).
    pub fn insert(&mut self, i: usize) {
        if i < MAX_SINKS {
            self.0 |= 1 << i;
        }
    }

    /// Sinks in either set.
    pub const fn union(self, o: SinkSet) -> SinkSet {
        SinkSet(self.0 | o.0)
    }

    /// Sinks in `self` and not in `o`.
    pub const fn minus(self, o: SinkSet) -> SinkSet {
        SinkSet(self.0 & !o.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of sinks in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Sink indices in increasing order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }
}

/// Validates and compiles a table for the control API (`POST /v1/routes/validate`,
/// `PUT /v1/routes`): the same checks as the config file's `[[routes]]`. `sinks` is the
/// ordered list of configured sink names, `listeners` the names `match.input` may use
/// besides `statsd` and `http` (see [`crate::config::Config::route_listeners`]).
///
/// # Errors
/// See [`compile`].
pub fn validate_table<S: AsRef<str>, L: AsRef<str>>(
    table: &RouteTable,
    sinks: &[S],
    listeners: &[L],
) -> Result<CompiledRoutes, RouteError> {
    compile(table, sinks, listeners)
}

/// Parses a JSON route table (`{"version": "7", "routes": [...]}`) and validates it as
/// [`validate_table`] does.
///
/// # Errors
/// A JSON error (with line and column, and the field serde names, as `routes` key), or the
/// first validation error.
pub fn validate_json<S: AsRef<str>, L: AsRef<str>>(
    json: &[u8],
    sinks: &[S],
    listeners: &[L],
) -> Result<CompiledRoutes, RouteError> {
    let table: RouteTable = serde_json::from_slice(json)
        .map_err(|e| RouteError::table("", format!("invalid route table JSON: {e}")))?;
    compile(&table, sinks, listeners)
}
