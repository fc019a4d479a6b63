//! [`RoutesCell`]: where the control plane installs a new compiled table and every shard
//! picks it up, as an immutable snapshot, with no pause in ingestion.
//!
//! The control plane stores the new `Arc<CompiledRoutes>` and bumps a generation counter;
//! each shard loads the generation (one relaxed atomic load) once per flush, per HTTP
//! payload and about once a second, and only when it changed takes the lock to clone the
//! `Arc`. Each shard reports the version it runs, for `GET /v1/routes`.

use super::compile::CompiledRoutes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The current table, shared by the control plane (writer) and the shards (readers).
#[derive(Debug)]
pub struct RoutesCell {
    current: Mutex<Arc<CompiledRoutes>>,
    generation: AtomicU64,
    running: Vec<Mutex<String>>,
}

impl RoutesCell {
    /// A cell holding `routes`, for `shards` shards (each reported as running it).
    pub fn new(routes: Arc<CompiledRoutes>, shards: usize) -> Self {
        let v = routes.version().to_string();
        Self {
            current: Mutex::new(routes),
            generation: AtomicU64::new(1),
            running: (0..shards).map(|_| Mutex::new(v.clone())).collect(),
        }
    }

    /// The generation of the current table (bumped by every [`Self::store`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current table and its generation.
    pub fn load(&self) -> (Arc<CompiledRoutes>, u64) {
        let g = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (g.clone(), self.generation.load(Ordering::Acquire))
    }

    /// Installs a new table; shards pick it up at their next check.
    pub fn store(&self, routes: Arc<CompiledRoutes>) {
        let mut g = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *g = routes;
        // Bumped under the lock: a shard that sees the new generation loads this table.
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Records that shard `shard` now runs `version`.
    pub fn report(&self, shard: usize, version: &str) {
        if let Some(m) = self.running.get(shard) {
            let mut s = m.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if *s != version {
                s.clear();
                s.push_str(version);
            }
        }
    }

    /// The version each shard runs, by shard index.
    pub fn running(&self) -> Vec<String> {
        self.running
            .iter()
            .map(|m| {
                m.lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{compile, RouteConfig, RouteTable};

    fn table(version: &str, to: &str) -> Arc<CompiledRoutes> {
        let t = RouteTable {
            version: version.into(),
            routes: vec![RouteConfig {
                name: "r".into(),
                to: vec![to.into()],
                ..RouteConfig::default()
            }],
        };
        Arc::new(compile(&t, &["a", "b"], &[] as &[&str]).unwrap())
    }

    #[test]
    fn a_store_bumps_the_generation_and_shards_report_what_they_run() {
        let cell = RoutesCell::new(table("1", "a"), 2);
        let g1 = cell.generation();
        assert_eq!(cell.running(), vec!["1", "1"]);
        cell.store(table("2", "b"));
        assert!(cell.generation() > g1);
        let (t, g) = cell.load();
        assert_eq!((t.version(), g), ("2", cell.generation()));
        cell.report(1, "2");
        assert_eq!(cell.running(), vec!["1", "2"]);
    }
}
