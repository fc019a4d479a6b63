//! [`SinkSlots`]: the live list of sinks the shards and the route tables address by index.
//!
//! Bit `i` of a route decision is slot `i`. Slots are append-only and keyed by sink name, so
//! an index means the same sink for the life of the process and the per-slot counters the
//! shards keep stay meaningful across reloads:
//! - a sink added by a reload gets a new slot at the end (at most
//!   [`MAX_SINKS`](switchyard_core::route::MAX_SINKS) names over the process's life);
//! - a sink whose config changed keeps its slot and its counters
//!   ([`SinkStats`](crate::SinkStats)); it gets a new queue and new workers, while the old
//!   workers drain the old queue and stop once the shards have dropped its sender;
//! - a removed sink keeps its slot with no handle: no table can route to it (its route name
//!   is empty), its counters stay readable, and the name gets the slot back if it returns.
//!
//! Writers (the sink runtime, serialised by the caller with route changes) publish a new
//! snapshot *before* storing the route table that uses it; shards reload the slots whenever
//! they pick up a new route table, so a table never addresses a slot a shard lacks.

use crate::driver::{SinkHandle, SinkProbe};
use std::sync::{Arc, Mutex};

/// One sink's place.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Sink name.
    pub name: String,
    /// The producer side; `None` once the sink was removed from the config.
    pub handle: Option<SinkHandle>,
    /// The read-only view (counters and queue of the current instance).
    pub probe: SinkProbe,
}

/// The slot list, shared by the sink runtime (writer), the shards and the control plane.
#[derive(Debug, Default)]
pub struct SinkSlots {
    current: Mutex<Arc<[Slot]>>,
}

impl SinkSlots {
    /// A list holding `slots`.
    pub fn new(slots: Vec<Slot>) -> Self {
        Self {
            current: Mutex::new(slots.into()),
        }
    }

    /// The current slots.
    pub fn snapshot(&self) -> Arc<[Slot]> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Publishes a new list.
    pub fn store(&self, slots: Vec<Slot>) {
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = slots.into();
    }

    /// The names route tables compile against, by slot: a removed sink's is empty, so no
    /// rule can name it.
    pub fn route_names(&self) -> Vec<String> {
        route_names(&self.snapshot())
    }

    /// The producer handles, by slot (`None` for a removed sink).
    pub fn handles(&self) -> Vec<Option<SinkHandle>> {
        self.snapshot().iter().map(|s| s.handle.clone()).collect()
    }

    /// The read-only views, by slot (removed sinks included: their counters stay in the
    /// ledger).
    pub fn probes(&self) -> Vec<SinkProbe> {
        self.snapshot().iter().map(|s| s.probe.clone()).collect()
    }
}

/// The route names of `slots` (see [`SinkSlots::route_names`]).
pub fn route_names(slots: &[Slot]) -> Vec<String> {
    slots
        .iter()
        .map(|s| {
            if s.handle.is_some() {
                s.name.clone()
            } else {
                String::new()
            }
        })
        .collect()
}

/// The route names `slots` will have once a config with sinks `names` is applied
/// ([`SinkRuntime::reconcile`](crate::SinkRuntime::reconcile)): existing slots keep their
/// place (emptied when their sink is gone), new names are appended in `names`' order.
pub fn route_names_after<S: AsRef<str>>(slots: &[Slot], names: &[S]) -> Vec<String> {
    let has = |n: &str| names.iter().any(|x| x.as_ref() == n);
    let mut out: Vec<String> = slots
        .iter()
        .map(|s| {
            if has(&s.name) {
                s.name.clone()
            } else {
                String::new()
            }
        })
        .collect();
    for n in names {
        if !slots.iter().any(|s| s.name == n.as_ref()) {
            out.push(n.as_ref().to_string());
        }
    }
    out
}
