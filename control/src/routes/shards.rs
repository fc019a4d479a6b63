//! [`ShardRoutes`]: the dataplane's route backend. A table is validated by the router's own
//! code against the sinks the shards have queues for (the config's routed sinks, in their
//! order), compiled, and stored in the [`RoutesCell`] every shard checks once per flush,
//! per HTTP payload and about once a second; `current` reports what each shard runs.

use super::memory::version_of;
use super::{Current, RouteBackend, Validated};
use serde_json::Value;
use std::sync::Arc;
use switchyard_core::config::Config;
use switchyard_core::route::{self, RouteConfig, RouteTable, RoutesCell};

/// Route tables swapped into the shards.
#[derive(Debug)]
pub struct ShardRoutes {
    sinks: Vec<String>,
    listeners: Vec<String>,
    cell: Arc<RoutesCell>,
}

impl ShardRoutes {
    /// The backend over `cell`, whose tables address `cfg`'s routed sinks.
    pub fn new(cfg: &Config, cell: Arc<RoutesCell>) -> Self {
        Self {
            sinks: cfg.routed_sinks().into_iter().map(str::to_string).collect(),
            listeners: cfg
                .route_listeners()
                .into_iter()
                .map(str::to_string)
                .collect(),
            cell,
        }
    }
}

impl RouteBackend for ShardRoutes {
    fn validate(&self, doc: &[u8]) -> Result<Validated, Vec<String>> {
        let compiled = route::validate_json(doc, &self.sinks, &self.listeners)
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
        let compiled =
            route::compile(&t, &self.sinks, &self.listeners).map_err(|e| e.to_string())?;
        self.cell.store(Arc::new(compiled));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installed_table_reaches_the_cell_and_unrouted_sinks_are_refused() {
        let cfg = Config::from_toml(
            "[sinks.a]\ntype = \"blackhole\"\n[sinks.b]\ntype = \"blackhole\"\n[sinks.idle]\ntype = \"blackhole\"\n[[routes]]\nname = \"r\"\nto = [\"a\", \"b\"]\n",
        )
        .unwrap();
        let compiled = route::compile(
            &cfg.route_table(),
            &cfg.routed_sinks(),
            &cfg.route_listeners(),
        )
        .unwrap();
        let cell = Arc::new(RoutesCell::new(Arc::new(compiled), 2));
        let b = ShardRoutes::new(&cfg, cell.clone());
        assert!(b.current().version.starts_with("file-"));
        // `idle` has no queue in the dataplane: a table sending to it is refused.
        let e = b
            .validate(br#"{"routes":[{"name":"x","to":["idle"]}]}"#)
            .unwrap_err();
        assert!(e[0].contains("idle"), "{e:?}");
        let v = b
            .validate(br#"{"routes":[{"name":"x","to":["b"]}]}"#)
            .unwrap();
        let g = cell.generation();
        b.install(&v).unwrap();
        assert!(cell.generation() > g);
        let (t, _) = cell.load();
        assert_eq!(t.version(), v.version);
        assert_eq!(b.current().version, v.version);
        assert_eq!(t.sinks(), ["a", "b"]);
    }
}
