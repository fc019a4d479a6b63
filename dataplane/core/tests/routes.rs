//! Route tables: each matcher and action, union / final / drop / sample semantics, rewrites,
//! every validation error (exact messages), TOML and JSON giving the same table, and the
//! sampling properties (stable per series, within 1% of the share over 100k series).

// Test support code outside #[test] functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use switchyard_core::config::Config;
use switchyard_core::route::{
    compile, validate_json, validate_table, CompiledRoutes, DecideScratch, Decision, Input,
    InputKind, Rewrite, RouteTable, SinkSet,
};

const SINKS: [&str; 3] = ["new", "old", "trial"];
const NEW: usize = 0;
const OLD: usize = 1;
const TRIAL: usize = 2;
const LISTENERS: [&str; 2] = ["udp://127.0.0.1:8125", "127.0.0.1:8080"];
const STATSD: Input<'static> = Input {
    kind: InputKind::Statsd,
    listener: "udp://127.0.0.1:8125",
};
const HTTP: Input<'static> = Input {
    kind: InputKind::Http,
    listener: "127.0.0.1:8080",
};

fn table(json: &str) -> RouteTable {
    serde_json::from_str(json).unwrap()
}

fn routes(json: &str) -> CompiledRoutes {
    validate_json(json.as_bytes(), &SINKS, &LISTENERS).unwrap()
}

fn error(json: &str) -> String {
    validate_json(json.as_bytes(), &SINKS, &LISTENERS)
        .unwrap_err()
        .to_string()
}

fn sinks(ix: &[usize]) -> SinkSet {
    let mut s = SinkSet::EMPTY;
    for &i in ix {
        s.insert(i);
    }
    s
}

/// Whether a one-rule table sending to `old` takes the series.
fn takes(rule: &str, input: Input<'_>, name: &str, tags: &[&str]) -> bool {
    let r = routes(&format!(r#"{{"routes":[{rule}]}}"#));
    let d = r.decide(input, name, tags, 1);
    d.sinks == sinks(&[OLD])
}

#[test]
fn input_matcher() {
    let rule = r#"{"name":"r","match":{"input":"statsd"},"to":["old"]}"#;
    assert!(takes(rule, STATSD, "a", &[]));
    assert!(!takes(rule, HTTP, "a", &[]));
    let rule = r#"{"name":"r","match":{"input":"http"},"to":["old"]}"#;
    assert!(takes(rule, HTTP, "a", &[]));
    assert!(!takes(rule, STATSD, "a", &[]));
    let rule = r#"{"name":"r","match":{"input":"udp://127.0.0.1:8125"},"to":["old"]}"#;
    assert!(takes(rule, STATSD, "a", &[]));
    let other = Input {
        kind: InputKind::Statsd,
        listener: "unixgram:///run/x.sock",
    };
    assert!(!takes(rule, other, "a", &[]));
}

#[test]
fn only_listeners_a_rule_names_get_a_scope_of_their_own() {
    let r = routes(
        r#"{"routes":[{"name":"r","match":{"input":"udp://127.0.0.1:8125"},"to":["old"]}]}"#,
    );
    assert_eq!(r.listener_scope(0), 1);
    assert_eq!(r.scope_listener(1), "udp://127.0.0.1:8125");
    assert_eq!(r.scope_listener(0), "");
    for i in 1..LISTENERS.len() + 2 {
        assert_eq!(r.listener_scope(i), 0, "listener {i}");
    }
    let r = routes(r#"{"routes":[{"name":"r","match":{"input":"statsd"},"to":["old"]}]}"#);
    assert_eq!(r.listener_scope(0), 0);
}

#[test]
fn name_matchers() {
    let exact = r#"{"name":"r","match":{"name":"api.req"},"to":["old"]}"#;
    assert!(takes(exact, STATSD, "api.req", &[]));
    assert!(!takes(exact, STATSD, "api.req2", &[]));
    assert!(!takes(exact, STATSD, "api.re", &[]));

    let prefix = r#"{"name":"r","match":{"name_prefix":"checkout."},"to":["old"]}"#;
    assert!(takes(prefix, STATSD, "checkout.latency", &[]));
    assert!(takes(prefix, STATSD, "checkout.", &[]));
    assert!(!takes(prefix, STATSD, "checkout", &[]));
    assert!(!takes(prefix, STATSD, "x.checkout.latency", &[]));

    let glob = r#"{"name":"r","match":{"name_glob":"debug.*.count"},"to":["old"]}"#;
    assert!(takes(glob, STATSD, "debug.a.count", &[]));
    assert!(takes(glob, STATSD, "debug.a.b.count", &[]));
    assert!(!takes(glob, STATSD, "debug.a.count_ps", &[]));
    assert!(!takes(glob, STATSD, "xdebug.a.count", &[]));
    let alt = r#"{"name":"r","match":{"name_glob":"{web,api}.req?"},"to":["old"]}"#;
    assert!(takes(alt, STATSD, "api.req1", &[]));
    assert!(!takes(alt, STATSD, "db.req1", &[]));

    let anchored = r#"{"name":"r","match":{"name_regex":"^api\\.(get|post)$"},"to":["old"]}"#;
    assert!(takes(anchored, STATSD, "api.get", &[]));
    assert!(!takes(anchored, STATSD, "api.get.count", &[]));
    let searched = r#"{"name":"r","match":{"name_regex":"err(or)?s?$"},"to":["old"]}"#;
    assert!(takes(searched, STATSD, "http.errors", &[]));
    assert!(!takes(searched, STATSD, "http.errors.rate", &[]));
}

#[test]
fn tag_matchers() {
    let eq = r#"{"name":"r","match":{"tags":{"env":"prod"}},"to":["old"]}"#;
    assert!(takes(eq, STATSD, "m", &["az:1", "env:prod"]));
    assert!(!takes(eq, STATSD, "m", &["env:dev"]));
    assert!(!takes(eq, STATSD, "m", &["env"]));
    assert!(!takes(eq, STATSD, "m", &["env:prod2"]));

    let any = r#"{"name":"r","match":{"tags":{"env":"*"}},"to":["old"]}"#;
    assert!(takes(any, STATSD, "m", &["env:dev"]));
    assert!(takes(any, STATSD, "m", &["env"]));
    assert!(!takes(any, STATSD, "m", &["environment:dev"]));

    let bare = r#"{"name":"r","match":{"tags":{"canary":""}},"to":["old"]}"#;
    assert!(takes(bare, STATSD, "m", &["canary"]));
    assert!(!takes(bare, STATSD, "m", &["canary:true"]));

    let re = r#"{"name":"r","match":{"tags_match":{"region":"^eu-"}},"to":["old"]}"#;
    assert!(takes(re, STATSD, "m", &["region:eu-west-1"]));
    assert!(!takes(re, STATSD, "m", &["region:us-east-1"]));
    assert!(!takes(re, STATSD, "m", &["zone:eu-west-1"]));

    let has = r#"{"name":"r","match":{"has_tags":["service","team"]},"to":["old"]}"#;
    assert!(takes(has, STATSD, "m", &["service:a", "team:b"]));
    assert!(!takes(has, STATSD, "m", &["service:a"]));
}

#[test]
fn every_condition_must_hold() {
    let rule = r#"{"name":"r","match":{"input":"http","name_prefix":"checkout.",
        "name_glob":"*.latency","tags":{"env":"prod"},"has_tags":["host"]},"to":["old"]}"#;
    let tags = ["env:prod", "host:a"];
    assert!(takes(rule, HTTP, "checkout.latency", &tags));
    assert!(!takes(rule, STATSD, "checkout.latency", &tags));
    assert!(!takes(rule, HTTP, "checkout.errors", &tags));
    assert!(!takes(rule, HTTP, "cart.latency", &tags));
    assert!(!takes(rule, HTTP, "checkout.latency", &["env:prod"]));
}

#[test]
fn a_series_goes_to_the_union_of_matching_routes() {
    let r = routes(
        r#"{"version":"3","routes":[
            {"name":"all-to-old","to":["old"]},
            {"name":"checkout-new","match":{"name_prefix":"checkout."},"to":["new","old"]},
            {"name":"prod-trial","match":{"tags":{"env":"prod"}},"to":["trial"]}]}"#,
    );
    assert_eq!(r.version(), "3");
    let d = r.decide(STATSD, "checkout.latency", &["env:prod"], 7);
    assert_eq!(d.sinks, sinks(&[NEW, OLD, TRIAL]));
    assert_eq!(d.matched.as_slice(), &[0, 1, 2]);
    let d = r.decide(STATSD, "cart.latency", &["env:prod"], 7);
    assert_eq!(d.sinks, sinks(&[OLD, TRIAL]));
    assert_eq!(d.matched.as_slice(), &[0, 2]);
    let d = r.decide(STATSD, "cart.latency", &[], 7);
    assert_eq!(d.sinks, sinks(&[OLD]));
    assert_eq!(d.sinks.iter().collect::<Vec<_>>(), vec![OLD]);
    assert_eq!(r.sinks()[OLD], "old");
    assert_eq!(r.rule_name(1), Some("checkout-new"));
}

#[test]
fn no_matching_route_sends_nowhere() {
    let r = routes(r#"{"routes":[{"name":"a","match":{"name":"x"},"to":["old"]}]}"#);
    assert_eq!(r.decide(STATSD, "y", &[], 1), Decision::default());
}

#[test]
fn final_stops_evaluation() {
    let r = routes(
        r#"{"routes":[
            {"name":"a","match":{"name_prefix":"a."},"to":["new"],"final":true},
            {"name":"b","to":["old"]}]}"#,
    );
    let d = r.decide(STATSD, "a.x", &[], 1);
    assert_eq!(d.sinks, sinks(&[NEW]));
    assert_eq!(d.matched.as_slice(), &[0]);
    let d = r.decide(STATSD, "b.x", &[], 1);
    assert_eq!(d.sinks, sinks(&[OLD]));
    assert_eq!(d.matched.as_slice(), &[1]);
}

#[test]
fn drop_discards_for_every_sink_and_stops() {
    let r = routes(
        r#"{"routes":[
            {"name":"all-to-old","to":["old"]},
            {"name":"no-debug","match":{"name_glob":"debug.*"},"drop":true,"final":true},
            {"name":"later","to":["new"]}]}"#,
    );
    let d = r.decide(STATSD, "debug.x", &[], 1);
    assert_eq!(d.sinks, SinkSet::EMPTY);
    assert_eq!(d.dropped_by, Some(1));
    assert_eq!(d.dropped_from, sinks(&[OLD]));
    assert_eq!(d.matched.as_slice(), &[0, 1]);
    let d = r.decide(STATSD, "app.x", &[], 1);
    assert_eq!(d.sinks, sinks(&[NEW, OLD]));
    assert_eq!(d.dropped_by, None);
}

/// Share of `n` series (hashes 0..n) the one-rule table puts in its sample.
fn share(r: &CompiledRoutes, n: u64) -> f64 {
    let mut s = DecideScratch::default();
    let taken = (0..n)
        .filter(|&h| !r.decide_with(&mut s, STATSD, "m", &[], h).sinks.is_empty())
        .count();
    taken as f64 / n as f64
}

#[test]
fn sampled_out_series_skip_the_rule_and_are_accounted() {
    let r = routes(
        r#"{"routes":[
            {"name":"all-to-old","to":["old"]},
            {"name":"trial","sample":0.5,"to":["trial","old"],"final":true},
            {"name":"rest","to":["new"]}]}"#,
    );
    let mut seen_in = false;
    let mut seen_out = false;
    for h in 0..64 {
        let d = r.decide(STATSD, "m", &[], h);
        if d.sinks.contains(TRIAL) {
            seen_in = true;
            // In the sample: `final` stops before `rest`.
            assert_eq!(d.sinks, sinks(&[OLD, TRIAL]));
            assert_eq!(d.sampled_out, SinkSet::EMPTY);
            assert_eq!(d.matched.as_slice(), &[0, 1]);
        } else {
            seen_out = true;
            // Out of it: the rule does not apply, `old` still comes from rule 0.
            assert_eq!(d.sinks, sinks(&[NEW, OLD]));
            assert_eq!(d.sampled_out, sinks(&[TRIAL]));
            assert_eq!(d.matched.as_slice(), &[0, 2]);
        }
    }
    assert!(seen_in && seen_out);
}

#[test]
fn sample_zero_and_one() {
    let r = routes(r#"{"routes":[{"name":"z","sample":0,"to":["old"]}]}"#);
    assert_eq!(share(&r, 1000), 0.0);
    let r = routes(r#"{"routes":[{"name":"o","sample":1.0,"to":["old"]}]}"#);
    assert_eq!(share(&r, 1000), 1.0);
}

#[test]
fn two_rules_with_the_same_share_pick_different_series() {
    let r = routes(
        r#"{"routes":[{"name":"a","sample":0.1,"to":["new"]},
                      {"name":"b","sample":0.1,"to":["trial"]}]}"#,
    );
    let n = 100_000u64;
    let mut s = DecideScratch::default();
    let both = (0..n)
        .filter(|&h| r.decide_with(&mut s, STATSD, "m", &[], h).sinks == sinks(&[NEW, TRIAL]))
        .count() as f64
        / n as f64;
    // Independent 10% samples overlap on about 1% of series, not 10%.
    assert!((0.005..0.015).contains(&both), "{both}");
}

#[test]
fn a_series_keeps_its_place_across_table_versions() {
    let v1 = routes(r#"{"version":"1","routes":[{"name":"t","sample":0.3,"to":["trial"]}]}"#);
    let v2 = routes(
        r#"{"version":"2","routes":[{"name":"x","match":{"name":"other"},"to":["old"]},
                                     {"name":"t","sample":0.3,"to":["trial"]}]}"#,
    );
    for h in 0..2000u64 {
        let h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        assert_eq!(
            v1.decide(STATSD, "m", &[], h).sinks,
            v2.decide(STATSD, "m", &[], h).sinks
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn sampling_is_stable_and_close_to_the_share(p in 0.0f64..=1.0, salt in "[a-z]{1,12}", seed in any::<u64>()) {
        let r = routes(&format!(r#"{{"routes":[{{"name":"{salt}","sample":{p},"to":["trial"]}}]}}"#));
        let n = 100_000u64;
        let mut s = DecideScratch::default();
        let mut taken = 0u64;
        for i in 0..n {
            let h = seed.wrapping_add(i);
            let a = r.decide_with(&mut s, STATSD, "m", &[], h);
            if i % 97 == 0 {
                // Same series, same answer, whatever else was decided in between.
                let b = r.decide(HTTP, "other.name", &["x:y"], h);
                prop_assert_eq!(&a, &b);
            }
            taken += u64::from(!a.sinks.is_empty());
        }
        let got = taken as f64 / n as f64;
        prop_assert!((got - p).abs() < 0.01, "share {} for sample {}", got, p);
    }
}

#[test]
fn rename_and_tag_rules_are_applied_in_order() {
    let r = routes(
        r#"{"routes":[
            {"name":"move","match":{"name_prefix":"old."},"to":["new"],
             "rename":{"prefix":"old.","to":"new."},
             "remove_tags":["secret"],"rename_tags":{"dc":"datacenter"},
             "add_tags":{"migrated":"yes","env":"prod"}},
            {"name":"canary","match":{"tags":{"canary":"*"}},"to":["trial"],
             "rename":{"prefix":"new.","to":"canary.new."},"add_tags":{"flag":""}},
            {"name":"plain","match":{"name":"x"},"to":["old"]}]}"#,
    );
    let tags = ["secret:s3", "dc:fra", "env:dev", "canary", "secret"];
    let d = r.decide(STATSD, "old.req", &tags, 1);
    assert!(d.rewrites);
    let mut out = Rewrite::default();
    assert!(r.rewrite(&d, "old.req", &tags, &mut out));
    assert_eq!(out.name(), "canary.new.req");
    assert_eq!(
        out.tags().collect::<Vec<_>>(),
        vec![
            "canary",
            "datacenter:fra",
            "env:prod",
            "flag",
            "migrated:yes"
        ]
    );
    // The buffers are reused: a second, smaller rewrite leaves nothing of the first.
    let d = r.decide(STATSD, "old.a", &["dc:x"], 1);
    assert!(r.rewrite(&d, "old.a", &["dc:x"], &mut out));
    assert_eq!(out.name(), "new.a");
    assert_eq!(
        out.tags().collect::<Vec<_>>(),
        vec!["datacenter:x", "env:prod", "migrated:yes"]
    );
    // Nothing to rewrite: `out` is left as it was.
    let d = r.decide(STATSD, "x", &["dc:x"], 1);
    assert!(!d.rewrites);
    assert!(!r.rewrite(&d, "x", &["dc:x"], &mut out));
    assert_eq!(out.name(), "new.a");
}

#[test]
fn rename_applies_only_when_the_prefix_is_there() {
    let r = routes(
        r#"{"routes":[{"name":"r","match":{"tags":{"env":"prod"}},"to":["new"],
            "rename":{"prefix":"a.","to":"b."}}]}"#,
    );
    let mut out = Rewrite::default();
    let d = r.decide(STATSD, "c.x", &["env:prod"], 1);
    assert!(r.rewrite(&d, "c.x", &["env:prod"], &mut out));
    assert_eq!(out.name(), "c.x");
    assert_eq!(out.tags().collect::<Vec<_>>(), vec!["env:prod"]);
}

#[test]
fn validation_names_the_rule_and_field() {
    let cases = [
        (
            r#"{"routes":[{"name":"a","to":["old"]},{"name":"trial","to":["nope"]}]}"#,
            "routes[1] (\"trial\").to[0]: unknown sink `nope` (configured sinks: new, old, trial)",
        ),
        (
            r#"{"routes":[{"name":"r","match":{"name_regex":"a(b"},"to":["old"]}]}"#,
            "routes[0] (\"r\").match.name_regex: invalid regex `a(b`: unclosed group",
        ),
        (
            r#"{"routes":[{"name":"r","match":{"tags_match":{"env":"[x"}},"to":["old"]}]}"#,
            "routes[0] (\"r\").match.tags_match.env: invalid regex `[x`: unclosed character class",
        ),
        (
            r#"{"routes":[{"name":"r","match":{"name_glob":"a.{b"},"to":["old"]}]}"#,
            "routes[0] (\"r\").match.name_glob: invalid glob `a.{b`: unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
        ),
        (
            r#"{"routes":[{"name":"r","sample":1.5,"to":["old"]}]}"#,
            "routes[0] (\"r\").sample: 1.5 is outside [0, 1]",
        ),
        (
            r#"{"routes":[{"name":"r","sample":-0.1,"to":["old"]}]}"#,
            "routes[0] (\"r\").sample: -0.1 is outside [0, 1]",
        ),
        (
            r#"{"routes":[{"name":"r","match":{"name":"x"}}]}"#,
            "routes[0] (\"r\").to: sends nowhere: list sinks in `to` or set `drop = true`",
        ),
        (
            r#"{"routes":[{"name":"r","drop":true,"to":["old"]}]}"#,
            "routes[0] (\"r\").to: a drop rule sends nowhere: remove `to` or `drop`",
        ),
        (
            r#"{"routes":[{"name":"r","drop":true,"sample":0.5}]}"#,
            "routes[0] (\"r\").sample: a drop rule takes no sample",
        ),
        (
            r#"{"routes":[{"name":"r","to":["old"]},{"name":"r","to":["new"]}]}"#,
            "routes[1] (\"r\").name: duplicate route name (also routes[0])",
        ),
        (
            r#"{"routes":[{"name":"","to":["old"]}]}"#,
            "routes[0] (\"\").name: must not be empty",
        ),
        (
            r#"{"routes":[{"name":"all","to":["old"],"final":true},{"name":"b","match":{"name":"x"},"to":["new"]}]}"#,
            "routes[1] (\"b\"): can never match: routes[0] (\"all\") before it matches every series and stops evaluation",
        ),
        (
            r#"{"routes":[{"name":"r","match":{"name":"b.x","name_prefix":"a."},"to":["old"]}]}"#,
            "routes[0] (\"r\").match.name: `b.x` does not start with match.name_prefix `a.`: the rule can never match",
        ),
        (
            r#"{"routes":[{"name":"r","match":{"name":"b.x","name_glob":"a.*"},"to":["old"]}]}"#,
            "routes[0] (\"r\").match.name: `b.x` does not match match.name_glob `a.*`: the rule can never match",
        ),
        (
            r#"{"routes":[{"name":"r","match":{"name":"b.x","name_regex":"^a"},"to":["old"]}]}"#,
            "routes[0] (\"r\").match.name: `b.x` does not match match.name_regex `^a`: the rule can never match",
        ),
        (
            r#"{"routes":[{"name":"r","match":{"tags":{"env":"dev"},"tags_match":{"env":"^prod$"}},"to":["old"]}]}"#,
            "routes[0] (\"r\").match.tags_match.env: match.tags.env = `dev` does not match `^prod$`: the rule can never match",
        ),
        (
            r#"{"routes":[{"name":"r","match":{"input":"udp://0.0.0.0:1"},"to":["old"]}]}"#,
            "routes[0] (\"r\").match.input: unknown input `udp://0.0.0.0:1` (expected one of: statsd, http, udp://127.0.0.1:8125, 127.0.0.1:8080)",
        ),
        (
            r#"{"routes":[{"name":"r","match":{"name_prefix":""},"to":["old"]}]}"#,
            "routes[0] (\"r\").match.name_prefix: must not be empty (omit it to match every name)",
        ),
        (
            r#"{"routes":[{"name":"r","to":["old"],"add_tags":{"a:b":"c"}}]}"#,
            "routes[0] (\"r\").add_tags.a:b: tag key `a:b` must not contain `:`",
        ),
    ];
    for (json, want) in cases {
        assert_eq!(error(json), want, "{json}");
    }
}

#[test]
fn validation_errors_of_the_whole_table() {
    let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    let t = table(r#"{"routes":[{"name":"r","to":["s0"]}]}"#);
    let e = validate_table(&t, &many, &LISTENERS).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sinks: 65 sinks configured; routes can address at most 64"
    );
    assert!(validate_table(&t, &many[..64], &LISTENERS).is_ok());

    let e = error(r#"{"routes":[{"name":"r","to":["old"],"colour":"red"}]}"#);
    assert!(
        e.starts_with("invalid route table JSON: unknown field `colour`"),
        "{e}"
    );
    let e = error(r#"{"routes":[{"name":"r","sample":"lots","to":["old"]}]}"#);
    assert!(
        e.starts_with("invalid route table JSON: invalid type"),
        "{e}"
    );
}

#[test]
fn the_error_key_locates_the_field_in_the_config_file() {
    let src = "[sinks.old]\ntype = \"blackhole\"\n\n[[routes]]\nname = \"all\"\nto = [\"old\"]\n\n[[routes]]\nname = \"bad\"\nto = [\"old\"]\nmatch = { name_prefix = \"a.\", name_regex = \"(\" }\n";
    let e = Config::from_toml(src).unwrap_err();
    assert_eq!(e.key, "routes[1].match.name_regex");
    assert_eq!(e.line, Some(11));
    assert_eq!(
        e.message,
        "route \"bad\": invalid regex `(`: unclosed group"
    );
    let src = "[sinks.old]\ntype = \"blackhole\"\n[[routes]]\nname = \"r\"\nto = [\"old\"]\nsample = 2.0\n";
    let e = Config::from_toml(src).unwrap_err();
    assert_eq!(e.key, "routes[0].sample");
    assert_eq!(e.line, Some(6));
}

const EXAMPLE_JSON: &str = r#"{"version": "7", "routes": [
  {"name": "all-to-old", "to": ["old"]},
  {"name": "trial", "match": {"name_prefix": "checkout.", "tags": {"env": "prod"}}, "sample": 0.1, "to": ["trial"]},
  {"name": "no-debug", "match": {"name_glob": "debug.*"}, "drop": true, "final": true}]}"#;

const EXAMPLE_TOML: &str = r#"
[sinks.old]
type = "blackhole"
[sinks.trial]
type = "blackhole"

[[routes]]
name = "all-to-old"
to = ["old"]

[[routes]]
name = "trial"
sample = 0.1
to = ["trial"]
[routes.match]
name_prefix = "checkout."
tags = { env = "prod" }

[[routes]]
name = "no-debug"
match = { name_glob = "debug.*" }
drop = true
final = true
"#;

#[test]
fn toml_and_json_give_the_same_table() {
    #[derive(serde::Deserialize)]
    struct Routes {
        routes: Vec<switchyard_core::route::RouteConfig>,
    }
    let from_toml: Routes = toml::from_str(EXAMPLE_TOML).unwrap();
    let json = table(EXAMPLE_JSON);
    assert_eq!(from_toml.routes, json.routes);
    // And the table serializes back to JSON that parses to itself (GET then PUT).
    let back: RouteTable = serde_json::from_str(&serde_json::to_string(&json).unwrap()).unwrap();
    assert_eq!(back, json);
    let sinks = ["old", "trial"];
    let r = compile(&json, &sinks, &[] as &[&str]).unwrap();
    assert_eq!(r.decide(STATSD, "debug.x", &[], 3).dropped_by, Some(2));
}

#[test]
fn the_config_file_takes_the_whole_rule_language() {
    // Matchers and actions are applied by the shards: the example loads, and its routes
    // compile against the routed sinks as the shards compile them.
    let cfg = Config::from_toml(EXAMPLE_TOML).unwrap();
    let r = compile(
        &cfg.route_table(),
        &cfg.routed_sinks(),
        &cfg.route_listeners(),
    )
    .unwrap();
    assert_eq!(r.decide(STATSD, "debug.x", &[], 3).dropped_by, Some(2));
    let plain = "[sinks.a]\ntype = \"blackhole\"\n[[routes]]\nname = \"r\"\nto = [\"a\"]\n";
    let file = Config::from_toml(plain).unwrap().route_table();
    assert!(file.version.starts_with("file-"), "{}", file.version);
    assert_eq!(
        file.version,
        Config::from_toml(plain).unwrap().route_table().version
    );
}

#[test]
fn name_and_to_only_routes_keep_working() {
    let src = "[sinks.a]\ntype = \"blackhole\"\n[sinks.b]\ntype = \"stdout\"\n[sinks.c]\ntype = \"blackhole\"\n[[routes]]\nname = \"one\"\nto = [\"b\", \"a\"]\n[[routes]]\nname = \"two\"\nto = [\"a\"]\n";
    let cfg = Config::from_toml(src).unwrap();
    assert_eq!(cfg.routed_sinks(), vec!["a", "b"]);
    let sinks: Vec<&str> = cfg.sinks.keys().map(String::as_str).collect();
    let r = compile(&cfg.route_table(), &sinks, &cfg.route_listeners()).unwrap();
    let d = r.decide(HTTP, "anything", &["x:y"], 5);
    assert_eq!(d.sinks, sinks_of(&r, &["a", "b"]));
    assert_eq!(d.matched.as_slice(), &[0, 1]);
    // The routes serialize back to just `name` and `to`.
    assert_eq!(
        serde_json::to_string(&cfg.routes[1]).unwrap(),
        r#"{"name":"two","to":["a"]}"#
    );
}

fn sinks_of(r: &CompiledRoutes, names: &[&str]) -> SinkSet {
    let mut s = SinkSet::EMPTY;
    for n in names {
        s.insert(r.sinks().iter().position(|x| x == n).unwrap());
    }
    s
}

#[test]
fn many_rules_decide_like_a_linear_scan() {
    // 3,000 rules of every kind: the indexed evaluation must agree with the obvious
    // definition (every rule in order).
    let mut rules = Vec::new();
    for i in 0..600 {
        rules.push(format!(
            r#"{{"name":"e{i}","match":{{"name":"svc{i}.req"}},"to":["old"]}}"#
        ));
        rules.push(format!(
            r#"{{"name":"p{i}","match":{{"name_prefix":"svc{i}."}},"to":["new"],"add_tags":{{"p":"{i}"}}}}"#
        ));
        rules.push(format!(
            r#"{{"name":"g{i}","match":{{"name_glob":"svc{i}.*.err"}},"to":["trial"]}}"#
        ));
        rules.push(format!(
            r#"{{"name":"x{i}","match":{{"name_regex":"^svc{i}\\.(a|b)$","tags":{{"env":"prod"}}}},"to":["old"],"final":true}}"#
        ));
        rules.push(format!(
            r#"{{"name":"t{i}","match":{{"tags":{{"team":"t{i}"}}}},"drop":true}}"#
        ));
    }
    let r = routes(&format!(r#"{{"routes":[{}]}}"#, rules.join(",")));
    let check = |name: &str, tags: &[&str], want: &[u32], dropped: bool| {
        let d = r.decide(STATSD, name, tags, 9);
        assert_eq!(d.matched.as_slice(), want, "{name} {tags:?}");
        assert_eq!(d.dropped_by.is_some(), dropped, "{name} {tags:?}");
    };
    check("svc7.req", &[], &[35, 36], false);
    check("svc7.x.err", &[], &[36, 37], false);
    check("svc7.a", &["env:prod"], &[36, 38], false);
    check("svc7.a", &["env:dev"], &[36], false);
    check("svc7.a", &["team:t9"], &[36, 49], true);
    check("svc70.a", &["team:t9", "env:prod"], &[49], true);
    check("other", &[], &[], false);
}

#[test]
fn prefixed_and_unprefixed_patterns_combine() {
    // `^api\.` is indexed under its literal prefix and run alone; `*.errors` and the
    // unanchored regex share the regex set.
    let r = routes(
        r#"{"routes":[
            {"name":"both","match":{"name_glob":"*.errors","name_regex":"^api\\."},"to":["new"]},
            {"name":"set","match":{"name_regex":"latency"},"to":["old"]},
            {"name":"own","match":{"name_glob":"api.*.latency"},"to":["trial"]}]}"#,
    );
    let d = |n: &str| r.decide(STATSD, n, &[], 1).matched.to_vec();
    assert_eq!(d("api.errors"), vec![0]);
    assert_eq!(d("api.v1.errors"), vec![0]);
    assert_eq!(d("web.errors"), Vec::<u32>::new());
    assert_eq!(d("api.v1.latency"), vec![1, 2]);
    assert_eq!(d("web.latency"), vec![1]);
    assert_eq!(d("api.latency.p99"), vec![1]);
}

#[test]
fn rules_sharing_a_tag_are_told_apart_by_their_other_tags() {
    let rules: Vec<String> = (0..50)
        .map(|i| {
            format!(
                r#"{{"name":"t{i}","match":{{"tags":{{"env":"prod","team":"t{i}"}},"has_tags":["host"]}},"to":["old"]}}"#
            )
        })
        .chain([r#"{"name":"env-only","match":{"tags":{"env":"prod"}},"to":["new"]}"#.to_string()])
        .collect();
    let r = routes(&format!(r#"{{"routes":[{}]}}"#, rules.join(",")));
    let d = |tags: &[&str]| r.decide(STATSD, "m", tags, 1).matched.to_vec();
    assert_eq!(d(&["env:prod", "host:a", "team:t7"]), vec![7, 50]);
    assert_eq!(d(&["env:dev", "host:a", "team:t7"]), Vec::<u32>::new());
    assert_eq!(d(&["env:prod", "team:t7"]), vec![50]);
    assert_eq!(d(&["host:a", "team:t7"]), Vec::<u32>::new());
}
