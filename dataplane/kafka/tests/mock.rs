//! The producer and the group consumer against rdkafka's in-process `MockCluster`
//! (librdkafka's mock brokers): delivery reports carry partition and offset, the consumer
//! commits only confirmed records, and a second member of the group resumes after them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rdkafka::mocking::MockCluster;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use switchyard_kafka::{ConsumerConfig, GroupConsumer, Producer, ProducerConfig, Record};

fn consumer(brokers: &str, group: &str, topic: &str) -> GroupConsumer {
    let mut cfg = ConsumerConfig::new(brokers, group);
    cfg.session_timeout = Duration::from_secs(6);
    GroupConsumer::new(&cfg, &[topic]).unwrap()
}

/// Polls until `n` records arrived (bounded, so a broken consumer fails instead of hanging).
fn read(c: &GroupConsumer, n: usize) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records arrived",
            out.len()
        );
        if let Some(r) = c.poll(Duration::from_millis(200)).unwrap() {
            out.push(r);
        }
    }
    out
}

#[test]
fn delivery_reports_then_group_commits_only_confirmed_records() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer = Producer::new(ProducerConfig::new(&brokers)).unwrap();
    assert_eq!(
        producer
            .partition_count("t", Duration::from_secs(5))
            .unwrap(),
        2
    );

    let pending: Vec<_> = (0..10)
        .map(|i| {
            let payload = format!("v{i}");
            producer
                .send("t", Some(i % 2), b"k", payload.as_bytes())
                .unwrap()
        })
        .collect();
    let mut next = BTreeMap::new();
    for (i, p) in pending.into_iter().enumerate() {
        let d = p.wait().unwrap();
        assert_eq!(d.partition, (i % 2) as i32);
        let expected = next.entry(d.partition).or_insert(0i64);
        assert_eq!(d.offset, *expected, "offsets grow by one per partition");
        *expected += 1;
    }

    let c = consumer(&brokers, "g", "t");
    let got = read(&c, 10);
    let mut by_part: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for r in &got {
        by_part
            .entry(r.partition)
            .or_default()
            .push(String::from_utf8(r.payload.clone()).unwrap());
    }
    assert_eq!(by_part[&0], ["v0", "v2", "v4", "v6", "v8"]);
    assert_eq!(by_part[&1], ["v1", "v3", "v5", "v7", "v9"]);
    // Confirm only the first two records of each partition.
    for r in got.iter().filter(|r| r.offset < 2) {
        c.confirm(r).unwrap();
    }
    c.commit().unwrap();
    let mut committed = c.committed(Duration::from_secs(5)).unwrap();
    committed.sort();
    assert_eq!(committed, [(0, Some(2)), (1, Some(2))]);
    drop(c);

    // The next member of the group resumes after the confirmed records.
    let c2 = consumer(&brokers, "g", "t");
    let again = read(&c2, 6);
    let mut offsets: Vec<_> = again.iter().map(|r| (r.partition, r.offset)).collect();
    offsets.sort();
    assert_eq!(
        offsets,
        [(0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4)],
        "unconfirmed records are read again, confirmed ones are not"
    );
    assert!(c2.poll(Duration::from_millis(500)).unwrap().is_none());
}
