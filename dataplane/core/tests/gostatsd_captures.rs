//! gostatsd forwarder captures (`tests/fixtures/captures/gostatsd`, copies of
//! `shared/reference/captures/gostatsd`): every request decodes to exactly the message
//! `protoc --decode` recorded, and aggregates to the series the real gostatsd aggregator
//! sent to Datadog, and to what one server makes of the raw statsd lines (up to the
//! differences `docs/COMPATIBILITY.md` lists, pinned here).

// Test support code outside #[test] functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use switchyard_core::aggregate::{
    GaugeDialect, HostSource, IntervalAggregator, LineContext, OwnerStore,
};
use switchyard_core::intake::gostatsd::{
    feed, AlertType, EventPriority, EventV2, RawDecoder, RawEncoding, RawMessageV2,
};
use switchyard_core::model::SeriesBatch;
use switchyard_core::statsd::{lines, parse_message, Message};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/captures/gostatsd"
);
const SEED: u64 = 7;

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// One captured request: its path, `Content-Encoding` and body as sent.
struct Request {
    stem: String,
    path: String,
    encoding: Option<String>,
    body: Vec<u8>,
}

/// Every `<stem>.http` capture (sorted), or those whose stem is `scenario` or
/// `scenario-N`.
fn requests(scenario: Option<&str>) -> Vec<Request> {
    let mut stems: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".http").map(str::to_string)
        })
        .filter(|stem| {
            scenario.is_none_or(|s| {
                stem == s
                    || stem
                        .strip_prefix(s)
                        .and_then(|r| r.strip_prefix('-'))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
        })
        .collect();
    stems.sort();
    stems
        .into_iter()
        .map(|stem| {
            let head = String::from_utf8(read(&format!("{stem}.http"))).unwrap();
            let mut ls = head.lines();
            let path = ls.next().unwrap().split(' ').nth(1).unwrap().to_string();
            let encoding = ls.find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-encoding")
                    .then(|| v.trim().to_string())
            });
            let body = read(&format!("{stem}.body.bin"));
            Request {
                stem,
                path,
                encoding,
                body,
            }
        })
        .collect()
}

// --- protoc's text format, for the messages of this schema -----------------------------

struct Text(String, usize);

impl Text {
    fn open(&mut self, name: &str) {
        self.line(&format!("{name} {{"));
        self.1 += 1;
    }
    fn close(&mut self) {
        self.1 -= 1;
        self.line("}");
    }
    fn line(&mut self, s: &str) {
        let _ = writeln!(self.0, "{}{s}", "  ".repeat(self.1));
    }
    /// A string field, C-escaped as protoc prints it; proto3 leaves out empty strings
    /// (`always` for map keys, which protoc prints even when empty).
    fn str(&mut self, name: &str, v: &str, always: bool) {
        if v.is_empty() && !always {
            return;
        }
        let mut q = String::new();
        for b in v.bytes() {
            match b {
                b'"' => q.push_str("\\\""),
                b'\\' => q.push_str("\\\\"),
                b'\n' => q.push_str("\\n"),
                0x20..=0x7e => q.push(b as char),
                _ => {
                    let _ = write!(q, "\\{b:03o}");
                }
            }
        }
        self.line(&format!("{name}: \"{q}\""));
    }
    fn num(&mut self, name: &str, v: impl std::fmt::Display + PartialEq + Default) {
        if v != Default::default() {
            self.line(&format!("{name}: {v}"));
        }
    }
    fn strs(&mut self, name: &str, vs: &[String]) {
        for v in vs {
            self.str(name, v, true);
        }
    }
}

/// `map<string, XTagV2>` whose entries hold one `TagMap`, each value printed by `value`.
fn tag_maps<'m, V: 'm>(
    t: &mut Text,
    field: &str,
    map: impl Iterator<Item = (&'m String, &'m BTreeMap<String, V>)>,
    value: impl Fn(&mut Text, &V),
) {
    for (name, tag_map) in map {
        t.open(field);
        t.str("key", name, true);
        t.open("value");
        for (key, v) in tag_map {
            t.open("TagMap");
            t.str("key", key, true);
            t.open("value");
            value(t, v);
            t.close();
            t.close();
        }
        t.close();
        t.close();
    }
}

fn raw_text(m: &RawMessageV2) -> String {
    fn head(t: &mut Text, tags: &[String], host: &str) {
        t.strs("Tags", tags);
        t.str("Hostname", host, false);
    }
    let mut t = Text(String::new(), 0);
    let counters = m.counters.iter().map(|(k, v)| (k, &v.tag_map));
    tag_maps(&mut t, "Counters", counters, |t, v| {
        head(t, &v.tags, &v.hostname);
        t.num("Value", v.value);
    });
    let gauges = m.gauges.iter().map(|(k, v)| (k, &v.tag_map));
    tag_maps(&mut t, "Gauges", gauges, |t, v| {
        head(t, &v.tags, &v.hostname);
        t.num("Value", v.value);
    });
    let sets = m.sets.iter().map(|(k, v)| (k, &v.tag_map));
    tag_maps(&mut t, "Sets", sets, |t, v| {
        head(t, &v.tags, &v.hostname);
        t.strs("Values", &v.values);
    });
    let timers = m.timers.iter().map(|(k, v)| (k, &v.tag_map));
    tag_maps(&mut t, "Timers", timers, |t, v| {
        head(t, &v.tags, &v.hostname);
        t.num("SampleCount", v.sample_count);
        for x in &v.values {
            t.line(&format!("Values: {x}"));
        }
    });
    t.0
}

fn event_text(e: &EventV2) -> String {
    let mut t = Text(String::new(), 0);
    t.str("Title", &e.title, false);
    t.str("Text", &e.text, false);
    t.num("DateHappened", e.date_happened);
    t.str("Hostname", &e.hostname, false);
    t.str("AggregationKey", &e.aggregation_key, false);
    t.str("SourceTypeName", &e.source_type_name, false);
    t.strs("Tags", &e.tags);
    t.str("SourceIP", &e.source_ip, false);
    if e.priority != 0 {
        let p = EventPriority::try_from(e.priority).unwrap();
        t.line(&format!("Priority: {p:?}"));
    }
    if e.r#type != 0 {
        let a = AlertType::try_from(e.r#type).unwrap();
        t.line(&format!("Type: {a:?}"));
    }
    t.0
}

/// The recorded `protoc --decode` text without its `#` comment line.
fn recorded(stem: &str) -> String {
    String::from_utf8(read(&format!("{stem}.pb.txt")))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn every_capture_decodes_to_its_recorded_message() {
    let all = requests(None);
    assert_eq!(
        all.len(),
        13,
        "captures: {:?}",
        all.iter().map(|r| &r.stem).collect::<Vec<_>>()
    );
    let mut d = RawDecoder::default();
    let (mut raw, mut events) = (0, 0);
    for r in &all {
        // Undoing Content-Encoding gives exactly the recorded protobuf bytes.
        let enc = RawEncoding::from_header(r.encoding.as_deref()).unwrap();
        assert_eq!(
            d.plain(enc, &r.body).unwrap(),
            &read(&format!("{}.pb", r.stem))[..],
            "{}",
            r.stem
        );
        let text = match r.path.as_str() {
            "/v2/raw" => {
                raw += 1;
                raw_text(&d.decode_raw(r.encoding.as_deref(), &r.body).unwrap())
            }
            "/v2/event" => {
                events += 1;
                event_text(&d.decode_event(r.encoding.as_deref(), &r.body).unwrap())
            }
            other => panic!("{}: unexpected path {other}", r.stem),
        };
        assert_eq!(text, recorded(&r.stem), "{}", r.stem);
    }
    assert_eq!((raw, events), (11, 2));
}

#[test]
fn the_three_compressions_carry_the_same_message() {
    let mut d = RawDecoder::default();
    let mut seen = Vec::new();
    for (stem, enc) in [
        ("fwd_mixed_zlib", "deflate"),
        ("fwd_mixed_lz4", "lz4"),
        ("fwd_mixed_none", "identity"),
    ] {
        let r = requests(Some(stem)).pop().unwrap();
        assert_eq!(r.encoding.as_deref(), Some(enc));
        let mut m = d.decode_raw(r.encoding.as_deref(), &r.body).unwrap();
        // Set members come in Go map order.
        for s in m.sets.values_mut().flat_map(|t| t.tag_map.values_mut()) {
            s.values.sort();
        }
        seen.push(m);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    // Go map order: the bytes differ, the content does not.
    assert_ne!(read("fwd_mixed_zlib.pb"), read("fwd_mixed_lz4.pb"));
}

// --- aggregation ------------------------------------------------------------------------

/// `(name, tags joined by ',', host)` -> `(type, value)` of one flush.
type Flushed = BTreeMap<(String, String, String), (String, f64)>;

fn flush(aggs: Vec<IntervalAggregator>, interval: f64, percentiles: &[f64]) -> Flushed {
    let mut store = OwnerStore::new(percentiles, 0);
    for mut agg in aggs {
        for p in agg.drain_by_owner(1) {
            store.merge(p, 1);
        }
    }
    let mut batch = SeriesBatch::new(1_700_000_000, interval);
    store.flush(&mut batch, 1);
    let mut out = Flushed::new();
    for s in batch.iter() {
        let key = (
            s.name(),
            s.tags().collect::<Vec<_>>().join(","),
            s.host().to_string(),
        );
        let prev = out.insert(key, (s.kind().as_str().to_string(), s.value()));
        assert!(prev.is_none(), "series emitted twice");
    }
    out
}

/// Every `/v2/raw` request of `scenario`, decoded and fed to one aggregator.
fn from_captures(scenario: &str) -> IntervalAggregator {
    let mut d = RawDecoder::default();
    let mut agg = IntervalAggregator::new(SEED, 64, 10_000, 100_000);
    let reqs = requests(Some(scenario));
    assert!(!reqs.is_empty(), "{scenario}");
    for r in reqs {
        let msg = d.decode_raw(r.encoding.as_deref(), &r.body).unwrap();
        let out = feed(&msg, &mut agg, 1, 0);
        assert_eq!(out.rejected_total(), 0, "{}", r.stem);
        assert_eq!(out.ok, msg.series_count() as u64, "{}", r.stem);
    }
    agg
}

/// The scenario's statsd lines, as one standalone server receives them from 127.0.0.1.
fn from_lines(scenario: &str) -> IntervalAggregator {
    let mut agg = IntervalAggregator::new(SEED, 64, 10_000, 100_000);
    let input = read(&format!("{scenario}.input.txt"));
    let cx = LineContext {
        host: HostSource::Sender("127.0.0.1"),
        dialect: GaugeDialect::Dogstatsd,
        now_ns: 1,
        scope: 0,
    };
    for line in lines(&input) {
        match parse_message(line) {
            Ok(Message::Metric(m)) => agg.ingest(&m, cx).unwrap(),
            other => panic!("{scenario}: {other:?}"),
        }
    }
    agg
}

#[test]
fn mixed_capture_aggregates_as_the_real_gostatsd_aggregator_did() {
    // statsd -> real forwarder -> real aggregator -> Datadog (flush 2 s, percentiles 90 99).
    let dd: serde_json::Value =
        serde_json::from_slice(&read("e2e_fwd_to_agg.datadog.json")).unwrap();
    let mut want = Flushed::new();
    for s in dd["requests"][0]["body"]["series"].as_array().unwrap() {
        let tags: Vec<&str> = s["tags"]
            .as_array()
            .map(|a| a.iter().map(|t| t.as_str().unwrap()).collect())
            .unwrap_or_default();
        want.insert(
            (
                s["metric"].as_str().unwrap().to_string(),
                tags.join(","),
                s["host"].as_str().unwrap().to_string(),
            ),
            (
                s["type"].as_str().unwrap().to_string(),
                s["points"][0][1].as_f64().unwrap(),
            ),
        );
    }
    assert_eq!(want.len(), 23);
    for scenario in ["fwd_mixed_zlib", "fwd_mixed_lz4", "fwd_mixed_none"] {
        let got = flush(vec![from_captures(scenario)], 2.0, &[90.0, 99.0]);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{scenario}"
        );
        for (k, (kind, v)) in &want {
            let (gk, gv) = &got[k];
            assert_eq!(gk, kind, "{scenario} {k:?}");
            // Go prints the shortest decimal that reads back as the same f64.
            assert!(
                (gv - v).abs() <= 1e-12 * v.abs(),
                "{scenario} {k:?}: {gv} != {v}"
            );
        }
    }
}

#[test]
fn captures_aggregate_like_one_server_on_the_raw_lines() {
    // Where gostatsd's forwarder rounds differently from Switchyard's own aggregation
    // (docs/COMPATIBILITY.md): (scenario, series, via the forwarder, from the lines).
    let host = "127.0.0.1";
    let known: [(&str, &str, &str, f64, f64); 8] = [
        // Each sampled or fractional counter line truncated: 3@0.5 + 1@0.3 -> 6 + 3.
        (
            "fwd_counters",
            "f.c",
            "",
            9.0 / 10.0,
            (6.0 + 1.0 / 0.3) / 10.0,
        ),
        ("fwd_counters", "f.c.count", "", 9.0, 6.0 + 1.0 / 0.3),
        ("fwd_counters", "f.c3", "", 0.1, 0.19),
        ("fwd_counters", "f.c3.count", "", 1.0, 1.9),
        // A packed timer line counts once: 1 + 1 + 10 + 1, not ... + 2.
        ("fwd_timers", "f.t.count", "", 13.0, 14.0),
        ("fwd_timers", "f.t.count_ps", "", 1.3, 1.4),
        // 10, then 20:30@0.5: 1 + 2, not 1 + 2 + 2.
        ("fwd_mixed_zlib", "m.t.count", "", 3.0, 5.0),
        ("fwd_mixed_zlib", "m.t.count_ps", "", 0.3, 0.5),
    ];
    for scenario in [
        "fwd_counters",
        "fwd_gauges",
        "fwd_timers",
        "fwd_sets",
        "fwd_mixed_zlib",
        "fwd_dynamic_headers",
    ] {
        let fwd = flush(vec![from_captures(scenario)], 10.0, &[90.0]);
        let mut one = flush(vec![from_lines(scenario)], 10.0, &[90.0]);
        assert!(!fwd.is_empty(), "{scenario}");
        assert_eq!(
            fwd.keys().collect::<Vec<_>>(),
            one.keys().collect::<Vec<_>>(),
            "{scenario}"
        );
        for &(s, name, tags, via_fwd, via_lines) in known.iter().filter(|k| k.0 == scenario) {
            let k = (name.to_string(), tags.to_string(), host.to_string());
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
            assert!(
                close(fwd[&k].1, via_fwd),
                "{s} {name}: {} != {via_fwd}",
                fwd[&k].1
            );
            assert!(
                close(one[&k].1, via_lines),
                "{s} {name}: {} != {via_lines}",
                one[&k].1
            );
            one.insert(k.clone(), fwd[&k].clone());
        }
        assert_eq!(fwd, one, "{scenario}");
    }
}

#[test]
fn the_startup_message_is_empty_and_feeds_nothing() {
    let r = requests(Some("fwd_startup_nop")).pop().unwrap();
    assert_eq!(r.body.len(), 8);
    let msg = RawDecoder::default()
        .decode_raw(r.encoding.as_deref(), &r.body)
        .unwrap();
    assert_eq!(msg, RawMessageV2::default());
    let mut agg = IntervalAggregator::new(SEED, 64, 10, 10);
    assert_eq!(feed(&msg, &mut agg, 1, 0).ok, 0);
    assert_eq!(agg.series(), 0);
}

#[test]
fn dynamic_header_requests_keep_the_tenant_tag() {
    let got = flush(vec![from_captures("fwd_dynamic_headers")], 1.0, &[]);
    let counts: Vec<(&str, f64)> = got
        .iter()
        .filter(|(k, _)| k.0 == "d.c.count")
        .map(|(k, v)| (k.1.as_str(), v.1))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("", 1.0),
            ("env:prod,tenant:acme", 1.0),
            ("tenant:globex", 1.0)
        ]
    );
}

#[test]
fn encodings_are_accepted_or_refused_as_the_real_aggregator_answered() {
    // aggregator-responses.json: the real aggregator's status per request (bodies not kept).
    let cases: serde_json::Value =
        serde_json::from_slice(&read("aggregator-responses.json")).unwrap();
    let mut checked = 0;
    for c in cases.as_array().unwrap() {
        if c["method"] != "POST" || c["path"] != "/v2/raw" {
            continue;
        }
        let enc = c["request_headers"]["Content-Encoding"].as_str();
        let status = c["status"].as_u64().unwrap();
        match RawEncoding::from_header(enc) {
            Ok(_) => assert!(status == 202 || status == 400, "{c}"),
            Err(e) => {
                assert_eq!(u64::from(e.status()), status, "{c}");
                checked += 1;
            }
        }
        if status == 202 {
            assert!(RawEncoding::from_header(enc).is_ok(), "{c}");
        }
    }
    // gzip and br are the two encodings it refused.
    assert_eq!(checked, 2);
}
