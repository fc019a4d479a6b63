//! Real client libraries against the real binary, with exact flushed values.

use super::harness::{self, assert_exactly_once, close, value, Instance, Options};

#[test]
fn datadogpy_over_udp_aggregates_exactly_like_gostatsd() {
    let sy = Instance::start(Options::default());
    let port = sy.statsd.to_string();
    harness::run_python("datadogpy.py", &["udp", &port]);
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 132.0);
    sy.wait_metric("switchyard_statsd_events_total", 1.0);
    sy.wait_metric("switchyard_statsd_service_checks_total", 1.0);
    let all = sy.stop();
    assert_exactly_once(&all);

    let views = harness::series(&all, "page.views", &["env:prod", "route:home"]);
    assert_eq!(views["type"], "rate");
    assert_eq!(views["host"], "127.0.0.1");
    assert_eq!(views["interval"], 3600.0);
    assert!(close(
        views["points"][0][1].as_f64().unwrap(),
        15.0 / 3600.0
    ));
    assert_eq!(
        value(&all, "page.views.count", &["env:prod", "route:home"]),
        15.0
    );
    assert_eq!(value(&all, "jobs.active.count", &[]), -2.0);
    assert_eq!(value(&all, "queue.depth", &["service:checkout"]), 40.0);
    assert_eq!(value(&all, "users.uniques", &[]), 3.0);

    // Histogram: 100, 200, ... 1000.
    assert_eq!(value(&all, "request.size.count", &[]), 10.0);
    assert_eq!(value(&all, "request.size.lower", &[]), 100.0);
    assert_eq!(value(&all, "request.size.upper", &[]), 1000.0);
    assert_eq!(value(&all, "request.size.median", &[]), 550.0);
    assert_eq!(value(&all, "request.size.upper_90", &[]), 900.0);
    assert_eq!(value(&all, "request.size.count_90", &[]), 9.0);

    // Timer: 1 ..= 100.
    assert_eq!(value(&all, "db.query.count", &[]), 100.0);
    assert_eq!(value(&all, "db.query.mean", &[]), 50.5);
    assert_eq!(value(&all, "db.query.median", &[]), 50.5);
    assert_eq!(value(&all, "db.query.sum", &[]), 5050.0);
    assert_eq!(value(&all, "db.query.sum_squares", &[]), 338_350.0);
    assert!(close(value(&all, "db.query.std", &[]), 833.25f64.sqrt()));
    assert_eq!(value(&all, "db.query.upper_90", &[]), 90.0);
    assert_eq!(value(&all, "db.query.mean_90", &[]), 45.5);
    assert_eq!(value(&all, "db.query.sum_90", &[]), 4095.0);
    assert_eq!(
        harness::series(&all, "db.query.count_ps", &[])["type"],
        "rate"
    );

    // Distribution: aggregated as a timer, as gostatsd does.
    assert_eq!(value(&all, "payload.bytes.count", &[]), 4.0);
    assert_eq!(value(&all, "payload.bytes.median", &[]), 2.5);
}

#[test]
fn datadogpy_over_unix_datagram_socket() {
    let dir = std::env::temp_dir().join(format!("sy-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("dsd.sock");
    let sy = Instance::start(Options {
        extra_listen: vec![format!("\"unixgram://{}\"", sock.display())],
        ..Options::default()
    });
    harness::run_python("datadogpy.py", &["uds", sock.to_str().unwrap()]);
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 132.0);
    let all = sy.stop();
    assert_exactly_once(&all);
    let views = harness::series(&all, "page.views.count", &["env:prod", "route:home"]);
    assert_eq!(views["points"][0][1], 15.0);
    // No IP sender on a Unix socket: the host is omitted.
    assert!(views.get("host").is_none(), "{views}");
    assert_eq!(value(&all, "db.query.upper_90", &[]), 90.0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pystatsd_on_an_etsy_listener_applies_gauge_deltas() {
    let sy = Instance::start(Options::default());
    harness::run_python("pystatsd.py", &[&sy.etsy.to_string()]);
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 19.0);
    let all = sy.stop();
    assert_exactly_once(&all);
    assert_eq!(value(&all, "myapp.hits.count", &[]), 12.0);
    assert_eq!(value(&all, "myapp.slots.count", &[]), -1.0);
    assert_eq!(value(&all, "myapp.queue", &[]), 8.0);
    assert_eq!(value(&all, "myapp.render.count", &[]), 2.0);
    assert_eq!(value(&all, "myapp.render.upper", &[]), 320.0);
    assert_eq!(value(&all, "myapp.render.lower", &[]), 100.0);
    assert_eq!(value(&all, "myapp.users", &[]), 2.0);
    assert_eq!(value(&all, "myapp.piped.count", &[]), 5.0);
    assert_eq!(value(&all, "myapp.piped.t.count", &[]), 1.0);
    assert_eq!(
        harness::series(&all, "myapp.hits", &[])["host"],
        "127.0.0.1"
    );
}

#[test]
fn hot_shots_with_global_tags_and_buffering() {
    let sy = Instance::start(Options::default());
    harness::run_node("hotshots.js", &[&sy.statsd.to_string()]);
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 30.0);
    sy.wait_metric("switchyard_statsd_events_total", 1.0);
    sy.wait_metric("switchyard_statsd_service_checks_total", 1.0);
    let all = sy.stop();
    assert_exactly_once(&all);
    assert_eq!(
        value(&all, "hs.views.count", &["env:prod", "route:home"]),
        25.0
    );
    // DogStatsD dialect: gaugeDelta(-3) sends `-3|g`, which sets the gauge.
    assert_eq!(value(&all, "hs.depth", &["env:prod", "shard:1"]), -3.0);
    assert_eq!(value(&all, "hs.size.count", &["env:prod"]), 4.0);
    assert_eq!(value(&all, "hs.size.median", &["env:prod"]), 2.5);
    assert_eq!(value(&all, "hs.lat.count", &["env:prod"]), 1.0);
    assert_eq!(value(&all, "hs.users", &["env:prod"]), 2.0);
}
