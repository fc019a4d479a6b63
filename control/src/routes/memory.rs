//! [`MemoryRoutes`]: a route table validated by the router's own code
//! ([`switchyard_core::route::validate_json`], the checks `switchyard validate` runs on
//! `[[routes]]`) and held in memory.
//!
//! It stands in for the shards' backend ([`super::ShardRoutes`]) where there are no
//! shards (tests): a table is compiled to validate it, then only its JSON is kept, and every shard is reported as
//! running the table in force. The version of an accepted table is the XXH3-64 of its
//! normalized rules (as the router serialises them), in hex: the same rules always get the
//! same version, across restarts too. The config file's table keeps its own version
//! (`file-<hash>`, [`Config::route_table`]).

use super::{Current, RouteBackend, Validated};
use serde_json::Value;
use std::sync::Mutex;
use switchyard_core::config::Config;
use switchyard_core::route::{self, RouteConfig};

/// An in-memory route table.
#[derive(Debug)]
pub struct MemoryRoutes {
    sinks: Vec<String>,
    listeners: Vec<String>,
    shards: usize,
    table: Mutex<Validated>,
}

/// The version of a table's normalized rules.
pub fn version_of(routes: &[RouteConfig]) -> String {
    let canonical = serde_json::to_vec(routes).unwrap_or_default();
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&canonical))
}

impl MemoryRoutes {
    /// The config's `[[routes]]`, validated against its sinks and listeners.
    pub fn from_config(cfg: &Config, shards: usize) -> Self {
        let table = cfg.route_table();
        Self {
            sinks: cfg.sinks.keys().cloned().collect(),
            listeners: cfg
                .route_listeners()
                .into_iter()
                .map(str::to_string)
                .collect(),
            shards,
            table: Mutex::new(Validated {
                routes: serde_json::to_value(&table.routes).unwrap_or(Value::Array(Vec::new())),
                version: table.version,
            }),
        }
    }
}

impl RouteBackend for MemoryRoutes {
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
        let t = self
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Current {
            version: t.version.clone(),
            routes: t.routes.clone(),
            shards: vec![t.version.clone(); self.shards],
        }
    }

    fn install(&self, table: &Validated) -> Result<(), String> {
        let mut t = self
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *t = table.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> MemoryRoutes {
        let cfg = Config::from_toml(
            "[sinks.old]\ntype = \"blackhole\"\n[sinks.trial]\ntype = \"blackhole\"\n\
             [[routes]]\nname = \"all\"\nto = [\"old\"]\n",
        )
        .unwrap();
        MemoryRoutes::from_config(&cfg, 2)
    }

    #[test]
    fn starts_with_the_config_table_on_every_shard() {
        let c = mem().current();
        assert!(c.version.starts_with("file-"), "{}", c.version);
        assert_eq!(
            c.routes,
            serde_json::json!([{"name": "all", "to": ["old"]}])
        );
        assert_eq!(c.shards, vec![c.version.clone(), c.version]);
    }

    #[test]
    fn the_issue_example_validates_and_versions_by_content() {
        let m = mem();
        let doc = br#"{"version": "7", "routes": [
            {"name": "all-to-old", "to": ["old"]},
            {"name": "trial", "match": {"name_prefix": "checkout.", "tags": {"env": "prod"}}, "sample": 0.1, "to": ["trial"]},
            {"name": "no-debug", "match": {"name_glob": "debug.*"}, "drop": true, "final": true}]}"#;
        let t = m.validate(doc).unwrap();
        assert_eq!(t.routes.as_array().unwrap().len(), 3);
        assert_eq!(t.routes[1]["sample"], 0.1);
        // Member order, whitespace and the body's own version do not change the version.
        let again = br#"{"routes":[{"to":["old"],"name":"all-to-old"},
            {"sample":0.1,"name":"trial","to":["trial"],"match":{"tags":{"env":"prod"},"name_prefix":"checkout."}},
            {"final":true,"drop":true,"match":{"name_glob":"debug.*"},"name":"no-debug"}]}"#;
        assert_eq!(m.validate(again).unwrap().version, t.version);
        assert_ne!(t.version, m.current().version);
        m.install(&t).unwrap();
        let c = m.current();
        assert_eq!(c.version, t.version);
        assert_eq!(c.shards, vec![t.version.clone(), t.version]);
    }

    #[test]
    fn errors_name_the_rule_and_field() {
        let m = mem();
        let e = m
            .validate(br#"{"routes": [{"name": "a", "to": ["nope"]}]}"#)
            .unwrap_err();
        assert!(e[0].contains("routes[0] (\"a\").to[0]"), "{e:?}");
        assert!(e[0].contains("nope"), "{e:?}");
        let e = m
            .validate(br#"{"routes": [{"name": "a", "to": ["old"], "sample": 1.5}]}"#)
            .unwrap_err();
        assert!(e[0].contains("sample"), "{e:?}");
        let e = m.validate(b"{\"routes\": [").unwrap_err();
        assert!(e[0].contains("line 1"), "{e:?}");
    }
}
