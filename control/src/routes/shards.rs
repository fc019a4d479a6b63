//! [`ShardRoutes`]: the dataplane's route backend. A table is validated by the router's own
//! code against the sinks the shards have queues for (the sink slots' route names: every
//! configured sink), compiled, and stored in the [`RoutesCell`] every shard checks once per
//! flush, per HTTP payload and about once a second; `current` reports what each shard runs.
//!
//! [`ShardRoutes::reload`] applies a re-read config file (SIGHUP): its sinks (through
//! [`SinkRuntime::reconcile`]) and, when the file's routes changed, its routes; otherwise the
//! table in force (perhaps one a `PUT` installed) is kept and recompiled against the new
//! slots. [`startup_table`] picks the table a process starts with.

use super::memory::version_of;
use super::{persist, Current, RouteBackend, Validated};
use serde_json::Value;
use std::sync::Arc;
use switchyard_core::config::Config;
use switchyard_core::route::{
    self, CompiledRoutes, RouteConfig, RouteError, RouteTable, RoutesCell,
};
use switchyard_sinks::{slots, SinkChanges, SinkRuntime, SinkSlots};

/// Route tables swapped into the shards.
#[derive(Debug)]
pub struct ShardRoutes {
    slots: Arc<SinkSlots>,
    listeners: Vec<String>,
    cell: Arc<RoutesCell>,
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Sinks added, changed, removed.
    pub sinks: SinkChanges,
    /// The version of the table now in force.
    pub version: String,
    /// Whether the file's routes replaced the table in force.
    pub routes_from_file: bool,
}

/// The table a process running `cfg` starts with, compiled against `names` (the sink
/// slots' route names): the table persisted under `state_dir` while the file's routes are
/// unchanged since it was accepted, else the file's. A persisted table that no longer
/// compiles (a sink it names is gone) gives way to the file's, with a warning.
///
/// # Errors
/// The file's routes do not compile against `names`.
pub fn startup_table(cfg: &Config, names: &[String]) -> Result<CompiledRoutes, RouteError> {
    let file = cfg.route_table();
    let listeners = cfg.route_listeners();
    let (persisted, why) = persist::initial(cfg.state_dir.as_deref(), &file.version);
    if let Some(p) = persisted {
        let compiled = serde_json::from_value::<Vec<RouteConfig>>(p.routes)
            .map_err(|e| e.to_string())
            .and_then(|routes| {
                let t = RouteTable {
                    version: p.version.clone(),
                    routes,
                };
                route::compile(&t, names, &listeners).map_err(|e| e.to_string())
            });
        match compiled {
            Ok(c) => {
                tracing::info!("{why}");
                return Ok(c);
            }
            Err(e) => tracing::warn!(
                version = %p.version,
                error = %e,
                "the persisted route table no longer applies: starting with the file's routes"
            ),
        }
    } else {
        tracing::info!("{why}");
    }
    route::compile(&file, names, &listeners)
}

impl ShardRoutes {
    /// The backend over `cell`, whose tables address `slots` (the listeners a rule may name
    /// are `cfg`'s: they need a restart to change).
    pub fn new(cfg: &Config, cell: Arc<RoutesCell>, slots: Arc<SinkSlots>) -> Self {
        Self {
            slots,
            listeners: cfg
                .route_listeners()
                .into_iter()
                .map(str::to_string)
                .collect(),
            cell,
        }
    }

    /// Applies `cfg`'s sinks and, when its routes are not the file routes in force
    /// (`file_version`), its routes; otherwise recompiles the table in force against the new
    /// sink slots. Callers serialise this with `PUT`s.
    ///
    /// # Errors
    /// Why nothing changed: the new routes (or the table in force, with a sink it names
    /// removed) do not compile, or a sink cannot be built.
    pub fn reload(
        &self,
        cfg: &Config,
        sinks: &SinkRuntime,
        file_version: &str,
    ) -> Result<Reloaded, String> {
        let file = cfg.route_table();
        let routes_from_file = file.version != file_version;
        let table = if routes_from_file {
            file
        } else {
            self.cell.load().0.table().clone()
        };
        // Check against the slots the reconcile will produce before changing anything.
        let after = slots::route_names_after(&self.slots.snapshot(), &cfg.sink_names());
        route::compile(&table, &after, &self.listeners).map_err(|e| {
            if routes_from_file {
                format!("the file's routes: {e}")
            } else {
                format!(
                    "the route table in force ({}) with the file's sinks: {e}",
                    table.version
                )
            }
        })?;
        let changes = sinks
            .reconcile(cfg)
            .map_err(|(name, e)| format!("sink `{name}`: {e}"))?;
        // Stored even when the table is the same: the shards take the new slots with it.
        let compiled = route::compile(&table, &self.slots.route_names(), &self.listeners)
            .map_err(|e| format!("compiling against the new sinks: {e}"))?;
        self.cell.store(Arc::new(compiled));
        Ok(Reloaded {
            sinks: changes,
            version: table.version,
            routes_from_file,
        })
    }
}

impl RouteBackend for ShardRoutes {
    fn validate(&self, doc: &[u8]) -> Result<Validated, Vec<String>> {
        let compiled = route::validate_json(doc, &self.slots.route_names(), &self.listeners)
            .map_err(|e| vec![e.to_string()])?;
        let rules = &compiled.table().routes;
        let routes =
            serde_json::to_value(rules).map_err(|e| vec![format!("normalizing the table: {e}")])?;
        Ok(Validated {
            version: version_of(rules),
            routes,
        })
    }

    fn current(&self) -> Current {
        let (t, _) = self.cell.load();
        Current {
            version: t.version().to_string(),
            routes: serde_json::to_value(&t.table().routes).unwrap_or(Value::Array(Vec::new())),
            shards: self.cell.running(),
        }
    }

    fn install(&self, table: &Validated) -> Result<(), String> {
        let routes: Vec<RouteConfig> =
            serde_json::from_value(table.routes.clone()).map_err(|e| e.to_string())?;
        let t = RouteTable {
            version: table.version.clone(),
            routes,
        };
        let compiled = route::compile(&t, &self.slots.route_names(), &self.listeners)
            .map_err(|e| e.to_string())?;
        self.cell.store(Arc::new(compiled));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(sinks: &[&str], routes: &str) -> Config {
        let mut t = String::new();
        for s in sinks {
            t.push_str(&format!("[sinks.{s}]\ntype = \"blackhole\"\n"));
        }
        t.push_str(routes);
        Config::from_toml(&t).unwrap()
    }

    const TO_A: &str = "[[routes]]\nname = \"r\"\nto = [\"a\"]\n";

    fn start(c: &Config) -> (SinkRuntime, ShardRoutes, Arc<RoutesCell>) {
        let rt = switchyard_sinks::spawn_sinks(c).unwrap();
        let compiled = startup_table(c, &rt.slots().route_names()).unwrap();
        let cell = Arc::new(RoutesCell::new(Arc::new(compiled), 2));
        let b = ShardRoutes::new(c, cell.clone(), rt.slots());
        (rt, b, cell)
    }

    #[test]
    fn every_configured_sink_is_addressable_and_unknown_ones_are_refused() {
        let c = cfg(&["a", "b", "idle"], TO_A);
        let (rt, b, cell) = start(&c);
        assert!(b.current().version.starts_with("file-"));
        let e = b
            .validate(br#"{"routes":[{"name":"x","to":["nope"]}]}"#)
            .unwrap_err();
        assert!(e[0].contains("nope") && e[0].contains("idle"), "{e:?}");
        let v = b
            .validate(br#"{"routes":[{"name":"x","to":["idle"]}]}"#)
            .unwrap();
        let g = cell.generation();
        b.install(&v).unwrap();
        assert!(cell.generation() > g);
        let (t, _) = cell.load();
        assert_eq!(t.version(), v.version);
        assert_eq!(b.current().version, v.version);
        assert_eq!(t.sinks(), ["a", "b", "idle"]);
        rt.shutdown(std::time::Duration::from_secs(5));
    }

    #[test]
    fn reload_applies_sinks_keeps_a_put_table_and_takes_changed_file_routes() {
        let c = cfg(&["a", "b"], TO_A);
        let (rt, b, cell) = start(&c);
        let file_v = c.route_table().version;
        // A PUT table in force.
        let put = b
            .validate(br#"{"routes":[{"name":"x","to":["b"]}]}"#)
            .unwrap();
        b.install(&put).unwrap();

        // Sink `c` added, `b` kept, same file routes: the PUT table stays, with `c`
        // addressable from now on.
        let c2 = cfg(&["a", "b", "c"], TO_A);
        let r = b.reload(&c2, &rt, &file_v).unwrap();
        assert_eq!(r.sinks.added, ["c"]);
        assert!(r.sinks.changed.is_empty() && r.sinks.removed.is_empty());
        assert!(!r.routes_from_file);
        assert_eq!(cell.load().0.version(), put.version);
        assert_eq!(cell.load().0.sinks(), ["a", "b", "c"]);
        assert!(b
            .validate(br#"{"routes":[{"name":"x","to":["c"]}]}"#)
            .is_ok());

        // Removing `b`, which the table in force sends to, is refused: nothing changes.
        let c3 = cfg(&["a", "c"], TO_A);
        let e = b.reload(&c3, &rt, &file_v).unwrap_err();
        assert!(e.contains("`b`"), "{e}");
        assert_eq!(rt.slots().route_names(), ["a", "b", "c"]);
        assert_eq!(cell.load().0.version(), put.version);

        // Changed file routes win, and then `b` can go: its slot stays, unaddressable.
        let c4 = cfg(
            &["a", "c"],
            "[[routes]]\nname = \"r\"\nto = [\"a\", \"c\"]\n",
        );
        let r = b.reload(&c4, &rt, &file_v).unwrap();
        assert!(r.routes_from_file);
        assert_eq!(r.sinks.removed, ["b"]);
        assert_eq!(cell.load().0.version(), c4.route_table().version);
        assert_eq!(rt.slots().route_names(), ["a", "", "c"]);
        assert!(rt.slots().handles()[1].is_none());
        assert!(b
            .validate(br#"{"routes":[{"name":"x","to":["b"]}]}"#)
            .is_err());

        // `b` returns with another config: same slot, its counters kept.
        let stats_b = rt.slots().snapshot()[1].probe.stats.clone();
        let mut c5 = cfg(
            &["a", "b", "c"],
            "[[routes]]\nname = \"r\"\nto = [\"a\", \"c\"]\n",
        );
        if let Some(s) = c5.sinks.get_mut("b") {
            s.queue_batches = 7;
        }
        let r = b.reload(&c5, &rt, &c4.route_table().version).unwrap();
        assert_eq!(r.sinks.added, ["b"]);
        assert_eq!(rt.slots().route_names(), ["a", "b", "c"]);
        assert!(Arc::ptr_eq(&stats_b, &rt.slots().snapshot()[1].probe.stats));
        assert_eq!(rt.slots().snapshot()[1].probe.queue_capacity(), 7);

        // A changed sink: new queue, same slot.
        let mut c6 = c5.clone();
        if let Some(s) = c6.sinks.get_mut("a") {
            s.queue_batches = 9;
        }
        let r = b.reload(&c6, &rt, &c4.route_table().version).unwrap();
        assert_eq!(r.sinks.changed, ["a"]);
        assert_eq!(rt.slots().snapshot()[0].probe.queue_capacity(), 9);
        assert!(rt.shutdown(std::time::Duration::from_secs(5)));
    }

    #[test]
    fn a_persisted_table_wins_until_the_file_routes_change() {
        let dir = std::env::temp_dir().join(format!("sy-ctl-startup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = cfg(&["a", "b"], TO_A);
        c.state_dir = Some(dir.clone());
        let names = vec!["a".to_string(), "b".to_string()];
        let put = Validated {
            version: "put-1".into(),
            routes: serde_json::json!([{"name": "x", "to": ["b"]}]),
        };
        persist::store(&dir, &put, &c.route_table().version).unwrap();
        assert_eq!(startup_table(&c, &names).unwrap().version(), "put-1");
        // The file's routes changed: they win.
        let mut c2 = cfg(&["a", "b"], "[[routes]]\nname = \"r2\"\nto = [\"a\"]\n");
        c2.state_dir = Some(dir.clone());
        assert_eq!(
            startup_table(&c2, &names).unwrap().version(),
            c2.route_table().version
        );
        // A persisted table naming a sink that is gone gives way to the file's.
        let only_a = vec!["a".to_string(), String::new()];
        assert_eq!(
            startup_table(&c, &only_a).unwrap().version(),
            c.route_table().version
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
