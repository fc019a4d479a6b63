//! Raw datagrams: sampling, packing, dialects, host handling, and bad input that must be
//! counted by reason without stopping the process.

use super::harness::{self, assert_exactly_once, close, value, Instance, Options};

fn err(reason: &str) -> String {
    format!("switchyard_statsd_lines_total{{result=\"error\",reason=\"{reason}\"}}")
}

#[test]
fn sampled_and_packed_lines_are_counted_exactly() {
    let sy = Instance::start(Options::default());
    harness::send_raw(
        sy.statsd,
        &[
            b"s.c:1|c|@0.3\ns.c:1|c|@0.3\r\ns.c:1|c|@0.3\n",
            b"p.t:1:2:3|ms",
            b"p.t:4|ms|@0.5",
        ],
    );
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 5.0);
    let all = sy.stop();
    // gostatsd truncates each sampled line to an integer and gets 9: we keep 10.
    assert!(close(value(&all, "s.c.count", &[]), 10.0));
    // gostatsd counts a packed line once: every value counts.
    assert_eq!(value(&all, "p.t.count", &[]), 5.0);
    assert_eq!(value(&all, "p.t.sum", &[]), 10.0);
}

#[test]
fn gauge_dialect_is_per_listener() {
    let sy = Instance::start(Options::default());
    harness::send_raw(sy.statsd, &[b"dg:5|g", b"dg:+3|g"]);
    harness::send_raw(sy.etsy, &[b"eg:5|g", b"eg:+3|g", b"eg:-1|g"]);
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 5.0);
    let all = sy.stop();
    assert_eq!(value(&all, "dg", &[]), 3.0);
    assert_eq!(value(&all, "eg", &[]), 7.0);
}

#[test]
fn bad_input_is_counted_by_reason_and_never_stops_the_process() {
    let sy = Instance::start(Options::default());
    let tags = |n: usize| {
        (0..n)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    // 300 tags fit in a datagram but exceed max_tags_per_line (256); 10k do not fit at all.
    let many_tags = format!("m:1|c|#{}", tags(300));
    let huge = format!("m:1|c|#{}", tags(10_000));
    let garbage: Vec<u8> = (0..1400u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let datagrams: Vec<&[u8]> = vec![
        b"g:|g",
        b"x:NaN|g",
        b"x:inf|c",
        b"x:1|q",
        b"novalue",
        b"x:1",
        b"\xff\xfe:1|c",
        b"x:1|c|@5",
        b"x:1|c|Tsoon",
        b":1|c",
        b"_e{9,1}:a|b",
        b"_sc|x|9",
        many_tags.as_bytes(),
        huge.as_bytes(),
        &garbage,
        b"ok.after.garbage:1|c",
    ];
    harness::send_raw(sy.statsd, &datagrams);
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 1.0);
    sy.wait_metric("switchyard_statsd_datagrams_total", datagrams.len() as f64);
    for (reason, n) in [
        ("missing_value", 2.0),
        ("non_finite_value", 2.0),
        ("unknown_type", 1.0),
        ("missing_type", 1.0),
        ("invalid_utf8", 1.0),
        ("invalid_sample_rate", 1.0),
        ("invalid_timestamp", 1.0),
        ("empty_name", 1.0),
        ("invalid_event", 1.0),
        ("invalid_service_check", 1.0),
        ("too_many_tags", 1.0),
        ("too_long", 1.0),
    ] {
        assert!(
            sy.metric(&err(reason)) >= n,
            "{reason}: {}",
            sy.metric(&err(reason))
        );
    }
    let (status, body) = sy.get("/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let all = sy.stop();
    assert_eq!(value(&all, "ok.after.garbage.count", &[]), 1.0);
}

#[test]
fn truncated_datagrams_keep_complete_lines_and_count_the_cut_one() {
    let sy = Instance::start(Options {
        statsd_extra: "max_datagram_bytes = 64".into(),
        ..Options::default()
    });
    // 16 lines of 6 bytes + 4 bytes: the kernel cuts at 64, inside the 11th line.
    let d = format!("{}a:1|", "a:1|c\n".repeat(16));
    harness::send_raw(sy.statsd, &[d.as_bytes()]);
    sy.wait_metric("switchyard_statsd_truncated_datagrams_total", 1.0);
    assert_eq!(
        sy.metric("switchyard_statsd_lines_total{result=\"ok\"}"),
        10.0
    );
    assert_eq!(sy.metric(&err("too_long")), 1.0);
    let all = sy.stop();
    assert_eq!(value(&all, "a.count", &[]), 10.0);
}

#[test]
fn ignore_host_takes_the_host_from_a_tag() {
    let sy = Instance::start(Options {
        statsd_extra: "ignore_host = true".into(),
        ..Options::default()
    });
    harness::send_raw(
        sy.statsd,
        &[
            b"ih:1|c|#host:web-7,env:a",
            b"ih:2|c|#env:a,host:web-7",
            b"nh:1|c|#env:a",
        ],
    );
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 3.0);
    let all = sy.stop();
    assert_exactly_once(&all);
    let s = harness::series(&all, "ih.count", &["env:a"]);
    assert_eq!(s["host"], "web-7");
    assert_eq!(s["points"][0][1], 3.0);
    assert!(harness::series(&all, "nh.count", &["env:a"])
        .get("host")
        .is_none());
}
