//! The `kafka` sink (cargo feature `kafka`) against a real broker, tansu (start it with
//! `.ci/servers/tansu.sh`; `KAFKA_BROKERS` overrides `127.0.0.1:9092`), and against
//! rdkafka's `MockCluster` for fault injection. Records are read back with the
//! consumer-group consumer of `switchyard-kafka` and decoded with `switchyard-stream`.

#[cfg(feature = "kafka")]
mod with_feature {
    use super::super::server::{config, payload, run, spawn};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    use switchyard_core::egress::{Egress, Endpoint};
    use switchyard_core::model::{SeriesBatch, SeriesType};
    use switchyard_kafka::rdkafka::mocking::MockCluster;
    use switchyard_kafka::{admin, ConsumerConfig, GroupConsumer, Record};
    use switchyard_sinks::{DropReason, SinkStats};
    use switchyard_stream::{Decoded, StreamDecoder};
    use switchyard_testkit::{kafka_brokers, unique};

    fn kafka_sink(brokers: &str, topic: &str, extra: &str) -> String {
        format!(
            "[sinks.k]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n{extra}\n"
        )
    }

    /// `rounds` statsd flushes of `series` gauges `m<i>` (tag `k:<i mod 3>`, host `h`); round
    /// r carries the value r for every series, at timestamp 1_700_000_000 + 10 r.
    fn rounds(rounds: usize, series: usize) -> Vec<(usize, Egress)> {
        (0..rounds)
            .map(|r| {
                let mut b = SeriesBatch::new(1_700_000_000 + 10 * r as u64, 10.0);
                for i in 0..series {
                    let tag = format!("k:{}", i % 3);
                    let id = b.identity(&format!("m{i}"), [tag.as_str()], "h");
                    b.push(id, "", SeriesType::Gauge, r as f64);
                }
                (0, Egress::Series(Arc::new(b)))
            })
            .collect()
    }

    /// Values per series name, in record order, with the partitions they came from.
    #[derive(Default)]
    struct Seen {
        values: BTreeMap<String, Vec<f64>>,
        partitions: BTreeMap<String, BTreeSet<i32>>,
        points: usize,
    }

    impl Seen {
        fn add(&mut self, r: &Record, dec: &mut StreamDecoder) {
            let Decoded::Rkyv(batch) = dec.decode(&r.payload).unwrap() else {
                panic!("rkyv records expected");
            };
            assert_eq!(
                r.key.as_deref(),
                Some(format!("p{}", r.partition).as_bytes())
            );
            for s in batch.series() {
                let name = s.name().to_owned();
                for (_, v) in s.points() {
                    self.values.entry(name.clone()).or_default().push(v);
                    self.points += 1;
                }
                self.partitions.entry(name).or_default().insert(r.partition);
            }
        }
    }

    fn consumer(brokers: &str, group: &str, topic: &str) -> GroupConsumer {
        let mut cfg = ConsumerConfig::new(brokers, group);
        cfg.session_timeout = Duration::from_secs(6);
        GroupConsumer::new(&cfg, &[topic]).unwrap()
    }

    /// Reads records until `want` points were seen (bounded: a broken pipeline fails).
    fn read_points(c: &GroupConsumer, want: usize) -> Seen {
        let mut seen = Seen::default();
        let mut dec = StreamDecoder::default();
        let mut offsets = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while seen.points < want {
            assert!(
                Instant::now() < deadline,
                "only {} of {want} points arrived",
                seen.points
            );
            if let Some(r) = c.poll(Duration::from_millis(200)).unwrap() {
                if offsets.insert((r.partition, r.offset)) {
                    seen.add(&r, &mut dec);
                }
                c.confirm(&r).unwrap();
            }
        }
        c.commit().unwrap();
        seen
    }

    fn dropped_total(s: &SinkStats) -> u64 {
        DropReason::ALL.iter().map(|r| s.dropped(*r)).sum()
    }

    #[test]
    fn tansu_two_group_members_read_every_point_in_order_per_series() {
        let brokers = kafka_brokers();
        let topic = unique("sy-kafka");
        admin::create_topic(&brokers, &topic, 3, Duration::from_secs(10)).unwrap();
        let group = unique("sy-group");

        // Two members of one group, each in its own thread, polling all along; production
        // starts once both hold partitions.
        const ROUNDS: usize = 5;
        const SERIES: usize = 40;
        let want = ROUNDS * SERIES + 2;
        let total = Arc::new(AtomicUsize::new(0));
        let ready: Arc<[AtomicBool; 2]> =
            Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let results = Arc::new(Mutex::new(Vec::new()));
        let members: Vec<_> = (0..2)
            .map(|i| {
                let (brokers, topic, group) = (brokers.clone(), topic.clone(), group.clone());
                let (total, ready, results) = (total.clone(), ready.clone(), results.clone());
                std::thread::spawn(move || {
                    let c = consumer(&brokers, &group, &topic);
                    let mut seen = Seen::default();
                    let mut dec = StreamDecoder::default();
                    let deadline = Instant::now() + Duration::from_secs(120);
                    while total.load(Ordering::SeqCst) < want {
                        assert!(Instant::now() < deadline, "points missing");
                        ready[i].store(!c.assignment().unwrap().is_empty(), Ordering::SeqCst);
                        if let Some(r) = c.poll(Duration::from_millis(100)).unwrap() {
                            let before = seen.points;
                            seen.add(&r, &mut dec);
                            total.fetch_add(seen.points - before, Ordering::SeqCst);
                            c.confirm(&r).unwrap();
                        }
                    }
                    c.commit().unwrap();
                    let assigned: BTreeSet<i32> = c
                        .assignment()
                        .unwrap()
                        .into_iter()
                        .map(|(_, p)| p)
                        .collect();
                    results.lock().unwrap().push((assigned, seen));
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.iter().all(|r| r.load(Ordering::SeqCst)) {
            assert!(
                Instant::now() < deadline,
                "the two members did not both get partitions"
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        let cfg = config(&kafka_sink(&brokers, &topic, ""), &["k"]);
        let mut items = rounds(ROUNDS, SERIES);
        // A Datadog payload: one series, one null point (not carried).
        let body = r#"{"series":[{"metric":"p.x","points":[[1700000000,1],[1700000010,null],[1700000020,3]],"tags":["a:b"]}]}"#;
        items.push((0, payload(Endpoint::SeriesV1, body, None, 1, 3)));
        let st = run(spawn(&cfg), items);
        let s = &st[0];
        assert_eq!(SinkStats::get(&s.values_received), want as u64 + 1);
        assert_eq!(SinkStats::get(&s.values_delivered), want as u64);
        assert_eq!(s.dropped(DropReason::Translation), 1, "the null point");
        assert_eq!(dropped_total(s), 1);

        for m in members {
            m.join().unwrap();
        }
        let results = results.lock().unwrap();
        let mut all = Seen::default();
        let mut partitions_read = BTreeSet::new();
        for (assigned, seen) in results.iter() {
            assert!(seen.points > 0, "both members read records");
            for (name, parts) in &seen.partitions {
                assert!(
                    parts.is_subset(assigned),
                    "{name} read from a partition not assigned"
                );
                partitions_read.extend(parts.iter().copied());
            }
            for (name, v) in &seen.values {
                assert!(
                    all.values.insert(name.clone(), v.clone()).is_none(),
                    "series {name} was read by both members"
                );
            }
            for (name, p) in &seen.partitions {
                all.partitions.insert(name.clone(), p.clone());
            }
        }
        assert_eq!(partitions_read.len(), 3, "every partition carried series");
        assert_eq!(all.values.len(), SERIES + 1);
        for i in 0..SERIES {
            let name = format!("m{i}");
            let expect: Vec<f64> = (0..ROUNDS).map(|r| r as f64).collect();
            assert_eq!(all.values[&name], expect, "{name}: every point, in order");
            assert_eq!(
                all.partitions[&name].len(),
                1,
                "{name} stays on one partition"
            );
        }
        assert_eq!(all.values["p.x"], [1.0, 3.0]);
    }

    #[test]
    fn mock_cluster_broker_down_then_up_loses_nothing() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 2, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        cluster.broker_down(1).unwrap();

        const ROUNDS: usize = 4;
        const SERIES: usize = 30;
        let cfg = config(
            &kafka_sink(
                &brokers,
                "t",
                "request_timeout = \"1s\"\nmax_retries = 1000\ncompression = \"gzip\"",
            ),
            &["k"],
        );
        let rt = spawn(&cfg);
        let stats = rt.handles()[0].stats.clone();
        for (i, item) in rounds(ROUNDS, SERIES) {
            rt.handles()[i].tx.send(item).unwrap();
        }
        // Failed attempts while the broker is down (librdkafka times the records out after
        // request_timeout; the driver resends them).
        let deadline = Instant::now() + Duration::from_secs(60);
        while SinkStats::get(&stats.retries) < 2 {
            assert!(
                Instant::now() < deadline,
                "no failed attempt while the broker was down"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(SinkStats::get(&stats.values_delivered), 0);
        cluster.broker_up(1).unwrap();
        assert!(rt.shutdown(Duration::from_secs(60)), "drained in time");

        let want = (ROUNDS * SERIES) as u64;
        assert_eq!(SinkStats::get(&stats.values_received), want);
        assert_eq!(
            SinkStats::get(&stats.values_delivered),
            want,
            "production resumed"
        );
        assert_eq!(dropped_total(&stats), 0, "nothing dropped");

        let c = consumer(&brokers, "g", "t");
        let seen = read_points(&c, want as usize);
        for i in 0..SERIES {
            let name = format!("m{i}");
            let v = &seen.values[&name];
            let mut distinct = v.clone();
            distinct.dedup();
            let expect: Vec<f64> = (0..ROUNDS).map(|r| r as f64).collect();
            assert_eq!(distinct, expect, "{name}: every point, in order");
        }
    }

    #[test]
    fn mock_cluster_a_record_the_broker_refuses_for_good_is_dropped_as_fatal() {
        use switchyard_kafka::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 1, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        // The first produce request is refused as too large: never retried.
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
        );
        let cfg = config(&kafka_sink(&brokers, "t", "max_retries = 3"), &["k"]);
        let rt = spawn(&cfg);
        let stats = rt.handles()[0].stats.clone();
        let mut items = rounds(2, 10).into_iter();
        let (i, first) = items.next().unwrap();
        rt.handles()[i].tx.send(first).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while stats.dropped(DropReason::Fatal) == 0 {
            assert!(
                Instant::now() < deadline,
                "the refused record was not accounted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for (i, item) in items {
            rt.handles()[i].tx.send(item).unwrap();
        }
        assert!(rt.shutdown(Duration::from_secs(30)), "drained in time");
        assert_eq!(SinkStats::get(&stats.values_received), 20);
        assert_eq!(stats.dropped(DropReason::Fatal), 10, "the refused round");
        assert_eq!(
            SinkStats::get(&stats.values_delivered),
            10,
            "the next round"
        );
        assert_eq!(dropped_total(&stats), 10);

        let c = consumer(&brokers, "g", "t");
        let seen = read_points(&c, 10);
        assert!(
            seen.values.values().all(|v| v == &[1.0]),
            "only round 1 is on the topic"
        );
    }
}

#[cfg(not(feature = "kafka"))]
#[test]
fn kafka_sink_without_the_feature_is_a_clear_error() {
    let cfg = super::server::config(
        "[sinks.k]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopic = \"t\"\n",
        &["k"],
    );
    let Err((name, e)) = switchyard_sinks::spawn_sinks(&cfg) else {
        panic!("a kafka sink cannot be built without the feature");
    };
    assert_eq!(name, "k");
    assert!(
        e.to_string()
            .contains("built without the kafka feature: rebuild with --features kafka"),
        "{e}"
    );
}
