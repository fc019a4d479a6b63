//! criterion benches of routing: one `decide` (the per-series decision a shard caches) with
//! 1, 100 and 10,000 rules, applying a decision's rename and tag rules, and compiling a
//! table.
//!
//! The tables mix the rule kinds an operator writes: per 10 rules, 4 exact names, 2 name
//! prefixes, 2 globs, 1 regex and 1 tag rule (some sampled, some final), after one
//! catch-all route. The series are realistic names (`svc123.http.requests`) with four
//! tags, a third of them matching no rule beyond the catch-all. Run pinned to one CPU:
//! `taskset -c 1 cargo bench -p switchyard-benches --bench routes -- --warm-up-time 1 --measurement-time 3`.

// Bench code, not dataplane code: a fixture that does not hold its shape should stop the run
// loudly rather than bench something else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_main, BenchmarkId, Criterion, Throughput};
use std::collections::BTreeMap;
use switchyard_benches::mix;
use switchyard_core::route::{
    compile, CompiledRoutes, DecideScratch, Input, InputKind, MatchConfig, RenameConfig, Rewrite,
    RouteConfig, RouteTable,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SINKS: [&str; 3] = ["new", "old", "trial"];
const LISTENERS: [&str; 1] = ["udp://127.0.0.1:8125"];
const INPUT: Input<'static> = Input {
    kind: InputKind::Statsd,
    listener: "udp://127.0.0.1:8125",
};
/// Metric names per service (the exact rules pick from the first four).
const METRICS: [&str; 8] = [
    "http.requests",
    "http.latency",
    "db.query.time",
    "cache.hit",
    "get.latency",
    "api.errors",
    "queue.depth",
    "gc.pause",
];
/// Series decided per benchmark pass (a power of two).
const SERIES: usize = 4096;

fn rule(name: String, m: MatchConfig, to: &[&str]) -> RouteConfig {
    RouteConfig {
        name,
        matcher: m,
        to: to.iter().map(|s| s.to_string()).collect(),
        ..RouteConfig::default()
    }
}

/// A table of `n` rules: a catch-all, then the mix described in the module doc.
fn table(n: usize) -> RouteTable {
    let mut routes = vec![rule("all-to-old".into(), MatchConfig::default(), &["old"])];
    for i in 1..n {
        let s = i / 10;
        let mut m = MatchConfig::default();
        let mut r = match i % 10 {
            k @ 0..=3 => {
                m.name = Some(format!("svc{s}.{}", METRICS[k]));
                rule(format!("exact-{i}"), m, &["new"])
            }
            4 => {
                m.name_prefix = Some(format!("svc{s}.db."));
                rule(format!("prefix-{i}"), m, &["new", "old"])
            }
            5 => {
                m.name_prefix = Some(format!("team{s}."));
                let mut r = rule(format!("team-{i}"), m, &["trial"]);
                r.sample = Some(0.1);
                r
            }
            6 => {
                m.name_glob = Some(format!("svc{s}.*.errors"));
                rule(format!("glob-{i}"), m, &["trial"])
            }
            7 => {
                m.name_glob = Some(format!("svc{s}.cache.{{hit,miss}}"));
                rule(format!("cache-{i}"), m, &["new"])
            }
            8 => {
                m.name_regex = Some(format!(r"^svc{s}\.(get|post)\.latency$"));
                let mut r = rule(format!("regex-{i}"), m, &["new"]);
                r.is_final = true;
                r
            }
            _ => {
                m.tags = BTreeMap::from([
                    ("service".to_string(), format!("svc{s}")),
                    ("env".to_string(), "prod".to_string()),
                ]);
                let mut r = rule(format!("tags-{i}"), m, &["trial"]);
                r.sample = Some(0.25);
                r
            }
        };
        if i % 50 == 3 {
            r.add_tags = BTreeMap::from([("routed".to_string(), "yes".to_string())]);
        }
        routes.push(r);
    }
    RouteTable {
        version: format!("bench-{n}"),
        routes,
    }
}

/// One series: name, tags, hash.
type Series = (String, Vec<String>, u64);

/// `SERIES` series over the services of an `n`-rule table (and a third beyond them).
fn series(n: usize) -> Vec<Series> {
    let services = (n / 10).max(1) as u64;
    (0..SERIES as u64)
        .map(|i| {
            let r = mix(i);
            let s = r % (services + services / 2 + 1);
            let metric = METRICS[(r >> 20) as usize % METRICS.len()];
            let name = format!("svc{s}.{metric}");
            let tags = vec![
                format!("az:z{}", (r >> 30) % 3),
                "env:prod".to_string(),
                format!("host:web-{}", (r >> 34) % 64),
                format!("service:svc{s}"),
            ];
            (name, tags, mix(r))
        })
        .collect()
}

fn decide(c: &mut Criterion) {
    let mut g = c.benchmark_group("routes");
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 100, 10_000] {
        let r = compile(&table(n), &SINKS, &LISTENERS).unwrap();
        let fixtures = series(n);
        let tag_refs: Vec<Vec<&str>> = fixtures
            .iter()
            .map(|(_, t, _)| t.iter().map(String::as_str).collect())
            .collect();
        // The fixtures exercise the table: some series go beyond the catch-all.
        let mut scratch = DecideScratch::default();
        let beyond = fixtures
            .iter()
            .zip(&tag_refs)
            .filter(|((name, _, h), tags)| {
                r.decide_with(&mut scratch, INPUT, name, tags, *h)
                    .matched
                    .len()
                    > 1
            })
            .count();
        assert!(n == 1 || beyond > SERIES / 4, "{n} rules: {beyond}");
        let mut i = 0usize;
        g.bench_with_input(
            BenchmarkId::new("decide", n),
            &r,
            |b, r: &CompiledRoutes| {
                b.iter(|| {
                    let k = i & (SERIES - 1);
                    i = i.wrapping_add(1);
                    let (name, _, h) = &fixtures[k];
                    r.decide_with(&mut scratch, INPUT, black_box(name), &tag_refs[k], *h)
                })
            },
        );
    }

    // Applying a decision that renames and retags (what a shard does once per new series).
    let mut t = table(1);
    t.routes[0].rename = Some(RenameConfig {
        prefix: "svc1.".into(),
        to: "service1.".into(),
    });
    t.routes[0].add_tags = BTreeMap::from([("vendor".to_string(), "new".to_string())]);
    t.routes[0].rename_tags = BTreeMap::from([("az".to_string(), "zone".to_string())]);
    let r = compile(&t, &SINKS, &LISTENERS).unwrap();
    let tags = ["az:z1", "env:prod", "host:web-7", "service:svc1"];
    let d = r.decide(INPUT, "svc1.http.requests", &tags, 1);
    let mut out = Rewrite::default();
    assert!(r.rewrite(&d, "svc1.http.requests", &tags, &mut out));
    assert_eq!(out.name(), "service1.http.requests");
    g.bench_function("rewrite", |b| {
        b.iter(|| r.rewrite(&d, black_box("svc1.http.requests"), &tags, &mut out))
    });
    g.finish();

    let mut g = c.benchmark_group("routes_compile");
    g.sample_size(10);
    for n in [100usize, 10_000] {
        let t = table(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &t, |b, t| {
            b.iter(|| compile(t, &SINKS, &LISTENERS).unwrap())
        });
    }
    g.finish();
}

// In a private module: `criterion_group!` declares a `pub fn`, which would need a doc comment
// at the crate root.
mod group {
    use super::decide;
    criterion::criterion_group!(benches, decide);
}
criterion_main!(group::benches);
