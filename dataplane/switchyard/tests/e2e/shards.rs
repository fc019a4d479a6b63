//! Two shards: the kernel spreads senders across the shards' `SO_REUSEPORT` sockets, and the
//! flush exchange makes one owner emit each series exactly once with every shard's data.

use super::harness::{assert_exactly_once, value, Instance, Options};
use std::net::UdpSocket;

#[test]
fn two_shards_emit_each_series_exactly_once_with_all_data() {
    let sy = Instance::start(Options {
        shards: 2,
        ..Options::default()
    });
    let senders: Vec<UdpSocket> = (0..32)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut sent = 0;
    for round in 0..100 {
        for (i, s) in senders.iter().enumerate() {
            let d = format!(
                "sh.c:1|c|#k:v\nsh.t:{}|ms\nsh.s:u{}|s\nsh.g:{round}|g",
                round + 1,
                (i * 100 + round) % 500
            );
            s.send_to(d.as_bytes(), ("127.0.0.1", sy.statsd)).unwrap();
            sent += 1;
        }
    }
    sy.wait_metric("switchyard_statsd_datagrams_total", sent as f64);
    // Both shards received traffic, so the exchange path was exercised.
    assert!(sy.metric("switchyard_shard_datagrams_total{shard=\"0\"}") > 0.0);
    assert!(sy.metric("switchyard_shard_datagrams_total{shard=\"1\"}") > 0.0);
    let all = sy.stop();
    assert_exactly_once(&all);
    assert_eq!(value(&all, "sh.c.count", &["k:v"]), 3200.0);
    assert_eq!(value(&all, "sh.t.count", &[]), 3200.0);
    assert_eq!(value(&all, "sh.t.upper", &[]), 100.0);
    assert_eq!(value(&all, "sh.t.lower", &[]), 1.0);
    assert_eq!(value(&all, "sh.t.median", &[]), 50.5);
    assert_eq!(value(&all, "sh.s", &[]), 500.0);
}
