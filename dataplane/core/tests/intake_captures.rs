//! The intake parsers on bodies captured from real clients (`tests/fixtures/captures`, copies
//! of `shared/reference/captures`), with exact expectations, and the nesting guard on every
//! entry point.

// Test support code outside #[test] functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use switchyard_core::intake::check_run::{self, CheckStatus};
use switchyard_core::intake::decompress::{BodyDecoder, Encoding};
use switchyard_core::intake::{distribution_points, events, series_v1, series_v2, BodyError};
use switchyard_core::translate::{TranslateConfig, Translator};

const CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/captures");

/// A `.http` capture: `(headers, body)`, the body being everything after the first blank line.
fn http(name: &str) -> (String, Vec<u8>) {
    let raw = std::fs::read(format!("{CAPTURES}/{name}")).unwrap();
    let at = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or_else(|| panic!("{name}: no blank line"));
    (
        String::from_utf8(raw[..at].to_vec()).unwrap(),
        raw[at + 2..].to_vec(),
    )
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// An owned copy of what a parser handed out, to compare.
use switchyard_core::translate::OwnedDdSeries as Series;

fn v2(body: &mut [u8]) -> Vec<Series> {
    let mut out = Vec::new();
    let n = series_v2::for_each_series(body, &mut simd_json::Buffers::default(), |s| {
        out.push(Series::from(s))
    })
    .unwrap();
    assert_eq!(n, out.len());
    out
}

fn v2_capture_expected() -> Vec<Series> {
    let s = |metric: &str, kind: &str, interval, host: Option<&str>, tags: &[&str], v| Series {
        metric: metric.into(),
        kind: Some(kind.into()),
        interval,
        host: host.map(Into::into),
        device: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        points: vec![[Some(1_700_000_000.0), Some(v)]],
    };
    vec![
        s(
            "system.load.1",
            "gauge",
            None,
            Some("web-1"),
            &["env:prod"],
            0.7,
        ),
        s(
            "checkout.orders",
            "count",
            Some(10.0),
            None,
            &["env:prod"],
            12.0,
        ),
        s("net.bytes_rcvd", "rate", Some(10.0), None, &[], 123.4),
    ]
}

#[test]
fn v2_series_plain_capture() {
    let (headers, mut body) = http("apiclient_v2-series_plain.http");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(v2(&mut body), v2_capture_expected());
}

#[test]
fn v2_series_zstd1_capture_decompresses_to_the_same_series() {
    let (headers, plain) = http("apiclient_v2-series_zstd1.http");
    let enc = Encoding::from_header(header(&headers, "content-encoding").unwrap()).unwrap();
    assert_eq!(enc, Encoding::Zstd);
    let mut raw =
        std::fs::read(format!("{CAPTURES}/apiclient_v2-series_zstd1.raw-body.zst")).unwrap();
    assert_eq!(
        raw.len().to_string(),
        header(&headers, "content-length").unwrap()
    );
    let mut decoder = BodyDecoder::new(5_242_880); // the v2 decompressed limit
    let body = decoder.decode(enc, &mut raw).unwrap();
    assert_eq!(&body[..], &plain[..]);
    assert_eq!(v2(body), v2_capture_expected());
}

fn translate(push: impl FnOnce(&mut Translator)) -> Value {
    let mut t = Translator::new(TranslateConfig::default());
    push(&mut t);
    let mut out = Vec::new();
    t.finish(&mut out);
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn v2_translates_like_the_equivalent_v1_payload() {
    let (_, mut body) = http("apiclient_v2-series_plain.http");
    let from_v2 = translate(|t| {
        series_v2::for_each_series(&mut body, &mut simd_json::Buffers::default(), |s| t.push(s))
            .unwrap();
    });
    let mut v1 = br#"{"series":[
        {"metric":"system.load.1","type":"gauge","points":[[1700000000,0.7]],"host":"web-1","tags":["env:prod"]},
        {"metric":"checkout.orders","type":"count","interval":10,"points":[[1700000000,12.0]],"tags":["env:prod"]},
        {"metric":"net.bytes_rcvd","type":"rate","interval":10,"points":[[1700000000,123.4]]}]}"#
        .to_vec();
    let from_v1 = translate(|t| {
        series_v1::for_each_series(&mut v1, &mut simd_json::Buffers::default(), |s| t.push(s))
            .unwrap();
    });
    assert_eq!(from_v2, from_v1);
    assert_eq!(
        from_v2,
        json!({
            "gauge": [{"metric":"system.load.1","value":0.7,"timestamp":1_700_000_000_000_i64,
                       "dimensions":{"env":"prod","host":"web-1"}}],
            "counter": [
                {"metric":"checkout.orders","value":12,"timestamp":1_700_000_000_000_i64,
                 "dimensions":{"env":"prod"}},
                {"metric":"net.bytes_rcvd","value":1234,"timestamp":1_700_000_000_000_i64,
                 "dimensions":{}}
            ]
        })
    );
}

#[derive(Debug, PartialEq)]
struct Check {
    check: String,
    host_name: Option<String>,
    status: CheckStatus,
    tags: Vec<String>,
    timestamp: Option<f64>,
    message: Option<String>,
}

fn checks(name: &str) -> Vec<Check> {
    let (_, mut body) = http(name);
    let mut out = Vec::new();
    check_run::for_each_check(&mut body, &mut simd_json::Buffers::default(), |c| {
        out.push(Check {
            check: c.check.into(),
            host_name: c.host_name.map(Into::into),
            status: c.status,
            tags: c.tags.iter().map(|t| t.to_string()).collect(),
            timestamp: c.timestamp,
            message: c.message.map(Into::into),
        })
    })
    .unwrap();
    out
}

#[test]
fn check_run_captures_array_and_single_object() {
    assert_eq!(
        checks("apiclient_v1-check_run.http"),
        [Check {
            check: "app.ok".into(),
            host_name: Some("web-1".into()),
            status: CheckStatus::Ok,
            tags: vec!["env:prod".into()],
            timestamp: None,
            message: Some("app is running".into()),
        }]
    );
    assert_eq!(
        checks("ddpy-api_v1-check_run.http"),
        [Check {
            check: "app.ok".into(),
            host_name: Some("web-1".into()),
            status: CheckStatus::Warning,
            tags: vec!["env:prod".into()],
            timestamp: Some(1_700_000_000.0),
            message: Some("latency high".into()),
        }]
    );
}

#[test]
fn check_run_capture_translates_to_a_status_gauge() {
    let (_, mut body) = http("ddpy-api_v1-check_run.http");
    let got = translate(|t| {
        check_run::for_each_check(&mut body, &mut simd_json::Buffers::default(), |c| {
            let mut point = [[None; 2]];
            t.push(&c.as_gauge(1_800_000_000.0, &mut point));
        })
        .unwrap();
    });
    assert_eq!(
        got,
        json!({"gauge":[{"metric":"app.ok","value":1,"timestamp":1_700_000_000_000_i64,
                         "dimensions":{"env":"prod","host":"web-1"}}]})
    );
}

#[test]
fn distribution_points_capture() {
    let (_, mut body) = http("ddpy-api_v1-distribution_points.http");
    let mut seen = Vec::new();
    let counts =
        distribution_points::for_each_series(&mut body, &mut simd_json::Buffers::default(), |s| {
            let points: Vec<(f64, Vec<f64>)> =
                s.points.iter().map(|(t, v)| (t, v.to_vec())).collect();
            seen.push((
                s.metric.to_string(),
                s.host.map(str::to_string),
                s.tags.join(","),
                points,
            ));
        })
        .unwrap();
    assert_eq!(
        seen,
        [(
            "request.latency".to_string(),
            Some("capture-host".to_string()),
            "env:prod".to_string(),
            vec![(1_700_000_000.0, vec![0.1, 0.2, 0.35])]
        )]
    );
    assert_eq!(
        counts,
        distribution_points::DistributionCounts {
            series: 1,
            points: 1,
            values: 3
        }
    );
}

#[test]
fn events_capture() {
    let (_, mut body) = http("ddpy-api_v1-events.http");
    let got = events::with_event(&mut body, &mut simd_json::Buffers::default(), |e| {
        assert_eq!(
            *e,
            events::Event {
                title: "Disk full",
                text: "%%% \n/var is at 99% \n %%%",
                date_happened: Some(1_700_000_000.0),
                host: Some("web-1"),
                device_name: None,
                priority: Some("normal"),
                alert_type: Some("error"),
                aggregation_key: Some("disk-web-1"),
                source_type_name: Some("my_apps"),
                related_event_id: None,
                tags: &["env:prod"],
            }
        );
        e.title.len()
    });
    assert_eq!(got, Ok(9));
}

/// `[[[[...]]]]` one million levels deep: 2 MB, well under the v1 size limit. Without the
/// guard simd-json's DOM (series_v1) overflows the stack and aborts the test process.
fn bomb() -> Vec<u8> {
    let mut b = vec![b'['; 1_000_000];
    b.extend(std::iter::repeat_n(b']', 1_000_000));
    b
}

#[test]
fn every_entry_point_rejects_a_nesting_bomb() {
    let want = Err(BodyError::Invalid(
        "JSON nested deeper than 64 levels".into(),
    ));
    let mut buffers = simd_json::Buffers::default();
    let mut b = bomb();
    assert_eq!(
        series_v1::for_each_series(&mut b, &mut buffers, |_| {}),
        want
    );
    let mut b = bomb();
    assert_eq!(
        series_v2::for_each_series(&mut b, &mut buffers, |_| {}),
        want
    );
    let mut b = bomb();
    assert_eq!(
        check_run::for_each_check(&mut b, &mut buffers, |_| {}),
        want
    );
    let mut b = bomb();
    assert_eq!(
        distribution_points::for_each_series(&mut b, &mut buffers, |_| {}).map(|c| c.series),
        want
    );
    let mut b = bomb();
    assert_eq!(events::with_event(&mut b, &mut buffers, |_| 0usize), want);
    // Inside a string the brackets are just text.
    let mut ok = format!(
        r#"{{"series":[{{"metric":"{}","points":[]}}]}}"#,
        "[".repeat(10_000)
    )
    .into_bytes();
    assert_eq!(
        series_v1::for_each_series(&mut ok, &mut buffers, |_| {}),
        Ok(1)
    );
}
