//! Each sink has its own queue and workers: a vendor that does not answer never delays
//! another sink, and an HTTP sink keeps `max_in_flight` requests going at once.

use super::server::{config, payload, server, spawn, V1_CAPTURE};
use std::sync::mpsc::channel;
use std::time::Duration;
use switchyard_core::egress::Endpoint;
use switchyard_sinks::SinkStats;

fn dd(name: &str, url: &str, in_flight: usize) -> String {
    format!(
        "[sinks.{name}]\ntype = \"datadog\"\nendpoint = \"{url}\"\nmax_in_flight = {in_flight}\n"
    )
}

#[test]
fn a_stalled_vendor_does_not_delay_another_sink() {
    let (release, gate) = channel();
    let slow = server().gate(gate).start();
    let fast = server().start();
    let cfg = config(
        &format!(
            "{}{}",
            dd("slow", &slow.url(), 1),
            dd("fast", &fast.url(), 1)
        ),
        &["slow", "fast"],
    );
    let rt = spawn(&cfg);
    let item = payload(Endpoint::SeriesV1, V1_CAPTURE, Some("k"), 1, 2);
    for h in rt.handles() {
        h.tx.send(item.clone()).unwrap();
        h.tx.send(item.clone()).unwrap();
    }
    // The slow vendor holds its first request unanswered until the fast sink delivered both.
    slow.next();
    fast.next();
    fast.next();
    let stats = |name: &str| {
        rt.handles()
            .iter()
            .find(|h| h.name == name)
            .unwrap()
            .stats
            .clone()
    };
    let fast_stats = stats("fast");
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while SinkStats::get(&fast_stats.values_delivered) < 4 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(SinkStats::get(&fast_stats.values_delivered), 4);
    let slow_stats = stats("slow");
    assert_eq!(SinkStats::get(&slow_stats.values_delivered), 0);
    release.send(()).unwrap();
    release.send(()).unwrap();
    assert!(rt.shutdown(Duration::from_secs(20)));
    assert_eq!(SinkStats::get(&slow_stats.values_delivered), 4);
}

#[test]
fn an_http_sink_keeps_max_in_flight_requests_going() {
    let (release, gate) = channel();
    let srv = server().gate(gate).start();
    let cfg = config(&dd("dd", &srv.url(), 3), &["dd"]);
    let rt = spawn(&cfg);
    let item = payload(Endpoint::SeriesV1, V1_CAPTURE, Some("k"), 1, 2);
    for _ in 0..3 {
        rt.handles()[0].tx.send(item.clone()).unwrap();
    }
    // Three requests arrive while none has been answered: three workers are in flight.
    for _ in 0..3 {
        srv.next();
    }
    for _ in 0..3 {
        release.send(()).unwrap();
    }
    let stats = rt.handles()[0].stats.clone();
    assert!(rt.shutdown(Duration::from_secs(20)));
    assert_eq!(SinkStats::get(&stats.values_delivered), 6);
}
