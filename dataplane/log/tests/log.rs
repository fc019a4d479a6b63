//! Local log behaviour on a real disk: round trips, durability visibility, reopen, rolls,
//! retention, consumer offsets, torn tails, corruption, group commit, readers on another
//! executor.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use glommio::{LocalExecutorBuilder, Placement};
use proptest::prelude::*;
use std::cell::Cell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};
use switchyard_log::{Log, LogConfig, LogError, LogHandle, ReadBatch, ReadLimits};

/// Runs `f` on a fresh glommio executor with a small DMA memory pool (memlock is 8 MiB).
fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn payload(n: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| (n as usize).wrapping_mul(131).wrapping_add(i) as u8)
        .collect();
    if len >= 8 {
        v[..8].copy_from_slice(&n.to_le_bytes());
    }
    v
}

fn small_cfg() -> LogConfig {
    LogConfig {
        write_buffer_bytes: 16 << 10,
        read_chunk_bytes: 8 << 10,
        index_interval_bytes: 4 << 10,
        max_record_bytes: 1 << 20,
        retention_bytes: None,
        retention_age: None,
        ..LogConfig::default()
    }
}

async fn read_all(
    h: &LogHandle,
    from: u64,
    limits: ReadLimits,
) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
    let mut r = h.reader();
    let mut b = ReadBatch::new();
    let mut out = Vec::new();
    let mut at = from;
    loop {
        r.read(at, limits, &mut b).await?;
        if b.is_empty() {
            return Ok(out);
        }
        assert!(b.len() <= limits.max_records);
        for rec in b.iter() {
            out.push((rec.offset, rec.payload.to_vec()));
        }
        at = b.next_offset().unwrap();
    }
}

fn segments(dir: &Path) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let base = name.strip_suffix(".log")?.parse().ok()?;
            Some((base, e.metadata().unwrap().len()))
        })
        .collect();
    v.sort_unstable();
    v
}

fn last_segment(dir: &Path) -> PathBuf {
    let (base, _) = *segments(dir).last().unwrap();
    dir.join(format!("{base:020}.log"))
}

#[test]
fn round_trip_across_buffer_and_chunk_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(move || async move {
        let log = Log::open(&p, small_cfg()).await.unwrap();
        // Sizes around the 16 KiB write buffer, the 8 KiB read chunk and 4 KiB blocks.
        let sizes = [
            0usize, 1, 15, 4080, 4096, 8192, 20_000, 70_000, 3, 0, 16_384, 100,
        ];
        let mut expect = Vec::new();
        for (i, &len) in sizes.iter().cycle().take(60).enumerate() {
            let p = payload(i as u64, len);
            let off = log.append(&p).await.unwrap();
            assert_eq!(off, i as u64);
            expect.push((off, p));
        }
        assert_eq!(log.sync().await.unwrap(), 60);
        let h = log.handle();
        let got = read_all(
            &h,
            0,
            ReadLimits {
                max_records: 7,
                max_bytes: 50_000,
            },
        )
        .await
        .unwrap();
        assert_eq!(got, expect);
        // Seeks: every offset read alone, in a shuffled order.
        let mut r = h.reader();
        let mut b = ReadBatch::new();
        for off in [59u64, 0, 31, 30, 45, 2, 58, 17] {
            r.read(
                off,
                ReadLimits {
                    max_records: 1,
                    max_bytes: 1,
                },
                &mut b,
            )
            .await
            .unwrap();
            let recs: Vec<_> = b.iter().collect();
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0].offset, off);
            assert_eq!(recs[0].payload, &expect[off as usize].1[..]);
        }
        // The durable end reads as empty; beyond it is out of range.
        r.read(60, ReadLimits::default(), &mut b).await.unwrap();
        assert!(b.is_empty());
        assert!(matches!(
            r.read(61, ReadLimits::default(), &mut b).await,
            Err(LogError::OffsetOutOfRange {
                offset: 61,
                start: 0,
                end: 60
            })
        ));
        // Too large a record is refused and changes nothing.
        assert!(matches!(
            log.append(&vec![0u8; (1 << 20) + 1]).await,
            Err(LogError::RecordTooLarge { .. })
        ));
        assert_eq!(log.next_offset(), 60);
    });
}

#[test]
fn readers_see_only_durable_records() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(move || async move {
        let log = Log::open(&p, small_cfg()).await.unwrap();
        let h = log.handle();
        for i in 0..10 {
            log.append(&payload(i, 100)).await.unwrap();
        }
        assert_eq!(h.durable_offset(), 0);
        assert!(read_all(&h, 0, ReadLimits::default())
            .await
            .unwrap()
            .is_empty());
        assert_eq!(log.wait_durable(4).await.unwrap(), 10);
        for i in 10..15 {
            log.append(&payload(i, 100)).await.unwrap();
        }
        let got = read_all(&h, 0, ReadLimits::default()).await.unwrap();
        assert_eq!(got.len(), 10);
        assert!(matches!(
            log.wait_durable(15).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        log.sync().await.unwrap();
        assert_eq!(
            read_all(&h, 0, ReadLimits::default()).await.unwrap().len(),
            15
        );
    });
}

#[test]
fn reopen_continues_offsets_and_a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(move || async move {
        let log = Log::open(&p, small_cfg()).await.unwrap();
        assert!(matches!(
            Log::open(&p, small_cfg()).await,
            Err(LogError::Locked(_))
        ));
        for i in 0..25 {
            log.append(&payload(i, 3000)).await.unwrap();
        }
        log.close().await.unwrap();
        let size_after_close = std::fs::metadata(last_segment(&p)).unwrap().len();
        assert_eq!(size_after_close, 32 + 25 * (16 + 3000));

        let log = Log::open(&p, small_cfg()).await.unwrap();
        assert_eq!(log.next_offset(), 25);
        // Nothing was cut: the file is as close() left it.
        assert_eq!(
            std::fs::metadata(last_segment(&p)).unwrap().len(),
            size_after_close
        );
        for i in 25..40 {
            assert_eq!(log.append(&payload(i, 777)).await.unwrap(), i);
        }
        log.sync().await.unwrap();
        drop(log);
        let log = Log::open(&p, small_cfg()).await.unwrap();
        assert_eq!(log.next_offset(), 40);
        let got = read_all(&log.handle(), 0, ReadLimits::default())
            .await
            .unwrap();
        let want: Vec<_> = (0..40u64)
            .map(|i| (i, payload(i, if i < 25 { 3000 } else { 777 })))
            .collect();
        assert_eq!(got, want);
    });
}

#[test]
fn rolls_by_size_and_retention_by_size_keeps_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 64 << 10,
            ..small_cfg()
        };
        let log = Log::open(&p, cfg.clone()).await.unwrap();
        for i in 0..100 {
            log.append(&payload(i, 10_000)).await.unwrap();
        }
        log.sync().await.unwrap();
        let segs = segments(&p);
        // 6 records of 10016 bytes fit in 64 KiB after the header.
        assert_eq!(segs.len(), 17);
        for (i, (base, size)) in segs.iter().enumerate() {
            assert_eq!(*base, i as u64 * 6);
            if i + 1 < segs.len() {
                assert_eq!(
                    *size,
                    32 + 6 * 10_016,
                    "sealed segments end at their last frame"
                );
            }
        }
        let got = read_all(
            &log.handle(),
            0,
            ReadLimits {
                max_records: 13,
                max_bytes: 1 << 20,
            },
        )
        .await
        .unwrap();
        assert_eq!(got.len(), 100);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, (o, p))| *o == i as u64 && *p == payload(*o, 10_000)));
        log.close().await.unwrap();

        // Reopen with a 200 KiB size limit: the next roll deletes the oldest segments.
        let cfg = LogConfig {
            retention_bytes: Some(200 << 10),
            ..cfg
        };
        let log = Log::open(&p, cfg.clone()).await.unwrap();
        for i in 100..110 {
            log.append(&payload(i, 10_000)).await.unwrap();
        }
        log.sync().await.unwrap();
        let segs = segments(&p);
        let total: u64 = segs.iter().map(|s| s.1).sum();
        assert!(total <= 200 << 10, "total {total}");
        assert!(total + (64 << 10) > 200 << 10, "deleted too much: {total}");
        let start = log.start_offset();
        assert_eq!(start, segs[0].0);
        assert!(start > 0);
        let h = log.handle();
        match read_all(&h, 0, ReadLimits::default()).await {
            Err(LogError::OffsetOutOfRange {
                offset: 0,
                start: s,
                end: 110,
            }) => assert_eq!(s, start),
            other => panic!("{other:?}"),
        }
        let got = read_all(&h, start, ReadLimits::default()).await.unwrap();
        assert_eq!(got.len() as u64, 110 - start);

        // A limit smaller than one segment still keeps the active one.
        log.close().await.unwrap();
        let log = Log::open(
            &p,
            LogConfig {
                retention_bytes: Some(1),
                ..cfg
            },
        )
        .await
        .unwrap();
        for i in 110..120 {
            log.append(&payload(i, 10_000)).await.unwrap();
        }
        log.sync().await.unwrap();
        let segs = segments(&p);
        assert_eq!(segs.len(), 1);
        assert_eq!(log.start_offset(), segs[0].0);
        let got = read_all(&log.handle(), segs[0].0, ReadLimits::default())
            .await
            .unwrap();
        assert_eq!(got.last().unwrap().0, 119);
    });
}

#[test]
fn rolls_by_age_and_retention_by_age_with_an_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(move || async move {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let now = Rc::new(Cell::new(t0));
        let n2 = now.clone();
        let clock: switchyard_log::Clock = Rc::new(move || n2.get());
        let cfg = LogConfig {
            segment_age: Duration::from_secs(60),
            retention_age: Some(Duration::from_secs(300)),
            ..small_cfg()
        };
        let log = Log::open_with_clock(&p, cfg, clock).await.unwrap();
        // One segment per simulated minute.
        for minute in 0..10u64 {
            now.set(t0 + Duration::from_secs(minute * 61));
            for j in 0..3 {
                log.append(&payload(minute * 3 + j, 50)).await.unwrap();
            }
        }
        log.sync().await.unwrap();
        // Minute 9 is active; segments created at minutes m hold records no newer than
        // minute m+1's creation. At t = 9*61 s, those sealed more than 300 s ago go:
        // sealed_at = (m+1)*61 < 549 - 300 = 249  =>  m + 1 <= 4  =>  m <= 3.
        let bases: Vec<u64> = segments(&p).iter().map(|s| s.0).collect();
        assert_eq!(bases, vec![12, 15, 18, 21, 24, 27]);
        // Idle: maintain() rolls the old active segment and deletes by age; the segment
        // it just sealed holds records up to now, so it stays.
        now.set(t0 + Duration::from_secs(2000));
        log.maintain().await.unwrap();
        let bases: Vec<u64> = segments(&p).iter().map(|s| s.0).collect();
        assert_eq!(bases, vec![27, 30]);
        now.set(t0 + Duration::from_secs(2301));
        log.maintain().await.unwrap();
        let bases: Vec<u64> = segments(&p).iter().map(|s| s.0).collect();
        assert_eq!(bases, vec![30], "only the new empty active segment is left");
        assert_eq!(log.start_offset(), 30);
        assert_eq!(log.durable_offset(), 30);
        // maintain() on an empty active segment does not roll.
        now.set(t0 + Duration::from_secs(9000));
        log.maintain().await.unwrap();
        assert_eq!(segments(&p).len(), 1);
    });
}

#[test]
fn consumer_offsets_are_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(move || async move {
        let log = Log::open(&p, small_cfg()).await.unwrap();
        for i in 0..10 {
            log.append(&payload(i, 10)).await.unwrap();
        }
        let c = log.handle().consumers();
        assert_eq!(c.committed("worker-a").await.unwrap(), None);
        // Not durable yet: committing past the durable end is refused.
        assert!(matches!(
            c.commit("worker-a", 5).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        log.sync().await.unwrap();
        c.commit("worker-a", 5).await.unwrap();
        c.commit("worker-b", 10).await.unwrap();
        c.commit("worker-a", 7).await.unwrap();
        assert_eq!(c.committed("worker-a").await.unwrap(), Some(7));
        assert!(matches!(
            c.commit("../x", 1).await,
            Err(LogError::ConsumerName(_))
        ));
        log.close().await.unwrap();
        // A leftover temporary file from an interrupted commit is cleaned at open.
        std::fs::write(p.join("consumers/worker-a.offset.tmp-1-1"), b"junk").unwrap();
        let log = Log::open(&p, small_cfg()).await.unwrap();
        let c = log.handle().consumers();
        assert_eq!(c.committed("worker-a").await.unwrap(), Some(7));
        assert_eq!(c.committed("worker-b").await.unwrap(), Some(10));
        let names: Vec<String> = std::fs::read_dir(p.join("consumers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // A damaged file is an error, not a made-up offset.
        let f = p.join("consumers/worker-b.offset");
        let mut b = std::fs::read(&f).unwrap();
        b[14] ^= 1;
        std::fs::write(&f, b).unwrap();
        assert!(matches!(
            c.committed("worker-b").await,
            Err(LogError::Corrupt { .. })
        ));
    });
}

/// Writes 20 records, closes, damages the tail with `damage`, reopens and checks that
/// exactly `survivors` records remain, the file was cut to their end, and appends go on.
fn torn_tail_case(damage: impl FnOnce(&Path, u64) + Send + 'static, survivors: u64) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(move || async move {
        let log = Log::open(&p, small_cfg()).await.unwrap();
        for i in 0..20 {
            log.append(&payload(i, 1000)).await.unwrap();
        }
        log.close().await.unwrap();
        let seg = last_segment(&p);
        let clean = std::fs::metadata(&seg).unwrap().len();
        assert_eq!(clean, 32 + 20 * 1016);
        damage(&seg, clean);
        let log = Log::open(&p, small_cfg()).await.unwrap();
        assert_eq!(log.next_offset(), survivors);
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            32 + survivors * 1016
        );
        let got = read_all(&log.handle(), 0, ReadLimits::default())
            .await
            .unwrap();
        assert_eq!(got.len() as u64, survivors);
        assert!(got.iter().all(|(o, p)| *p == payload(*o, 1000)));
        // Appending goes on cleanly after the cut.
        for i in survivors..survivors + 5 {
            assert_eq!(log.append(&payload(i, 1000)).await.unwrap(), i);
        }
        log.sync().await.unwrap();
        drop(log);
        let log = Log::open(&p, small_cfg()).await.unwrap();
        let got = read_all(&log.handle(), 0, ReadLimits::default())
            .await
            .unwrap();
        let want: Vec<_> = (0..survivors + 5).map(|i| (i, payload(i, 1000))).collect();
        assert_eq!(got, want);
    });
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn torn_tail_garbage_is_cut() {
    torn_tail_case(|seg, _| append_bytes(seg, &[0xA5; 777]), 20);
}

#[test]
fn torn_tail_partial_header_is_cut() {
    // A frame header cut after 9 bytes.
    torn_tail_case(|seg, _| append_bytes(seg, &[1, 2, 3, 4, 5, 6, 7, 8, 9]), 20);
}

#[test]
fn torn_tail_partial_payload_is_cut() {
    // The last frame loses its last 100 bytes.
    torn_tail_case(
        |seg, clean| {
            let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
            f.set_len(clean - 100).unwrap();
        },
        19,
    );
}

#[test]
fn torn_tail_zeroed_preallocation_is_cut() {
    torn_tail_case(
        |seg, clean| {
            let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
            f.set_len(clean + (1 << 20)).unwrap();
        },
        20,
    );
}

#[test]
fn torn_tail_bad_crc_cuts_from_the_bad_record() {
    // One byte of record 17's payload flipped: 17, 18 and 19 go.
    torn_tail_case(
        |seg, _| {
            let mut b = std::fs::read(seg).unwrap();
            b[32 + 17 * 1016 + 16 + 500] ^= 0x10;
            std::fs::write(seg, b).unwrap();
        },
        17,
    );
}

#[test]
fn torn_tail_stale_frame_with_valid_crc_is_cut() {
    // A well-formed frame with the wrong offset (left over from an earlier write).
    torn_tail_case(
        |seg, _| {
            let p = payload(3, 1000);
            let mut f = switchyard_log::frame::encode_header(3, &p).to_vec();
            f.extend_from_slice(&p);
            append_bytes(seg, &f);
        },
        20,
    );
}

#[test]
fn torn_segment_header_of_a_new_last_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(move || async move {
        let log = Log::open(&p, small_cfg()).await.unwrap();
        for i in 0..5 {
            log.append(&payload(i, 100)).await.unwrap();
        }
        log.close().await.unwrap();
        // A crash while rolling: the next segment's file exists, its header torn.
        std::fs::write(p.join(format!("{:020}.log", 5)), [0x53, 0x59, 0x4c]).unwrap();
        let log = Log::open(&p, small_cfg()).await.unwrap();
        assert_eq!(log.next_offset(), 5);
        assert_eq!(segments(&p).len(), 1);
        assert_eq!(log.append(&payload(5, 100)).await.unwrap(), 5);
        log.sync().await.unwrap();
        assert_eq!(
            read_all(&log.handle(), 0, ReadLimits::default())
                .await
                .unwrap()
                .len(),
            6
        );
    });
}

#[test]
fn corruption_in_a_sealed_segment_is_an_error_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 16 << 10,
            ..small_cfg()
        };
        let log = Log::open(&p, cfg.clone()).await.unwrap();
        for i in 0..30 {
            log.append(&payload(i, 2000)).await.unwrap();
        }
        log.close().await.unwrap();
        let first = p.join(format!("{:020}.log", 0));
        let mut b = std::fs::read(&first).unwrap();
        // Record 3's payload.
        b[32 + 3 * 2016 + 16 + 10] ^= 0xFF;
        std::fs::write(&first, b).unwrap();
        let log = Log::open(&p, cfg).await.unwrap();
        assert_eq!(log.next_offset(), 30, "sealed segments are trusted at open");
        let h = log.handle();
        let mut r = h.reader();
        let mut batch = ReadBatch::new();
        r.read(
            0,
            ReadLimits {
                max_records: 3,
                max_bytes: 1 << 20,
            },
            &mut batch,
        )
        .await
        .unwrap();
        assert_eq!(batch.len(), 3);
        match r.read(3, ReadLimits::default(), &mut batch).await {
            Err(LogError::Corrupt { pos, .. }) => assert_eq!(pos, 32 + 3 * 2016),
            other => panic!("{other:?}"),
        }
        // Records in the next segment (8 per segment) still read.
        r.read(
            8,
            ReadLimits {
                max_records: 1,
                max_bytes: 1,
            },
            &mut batch,
        )
        .await
        .unwrap();
        assert_eq!(batch.iter().next().unwrap().payload, &payload(8, 2000)[..]);
    });
}

#[test]
fn group_commit_shares_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    run(move || async move {
        let log = Log::open(&p, small_cfg()).await.unwrap();
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    let off = log.append(&payload(i, 300)).await.unwrap();
                    let d = log.wait_durable(off).await.unwrap();
                    assert!(d > off);
                    off
                })
            })
            .collect();
        let mut offs = Vec::new();
        for t in tasks {
            offs.push(t.await);
        }
        offs.sort_unstable();
        assert_eq!(offs, (0..200).collect::<Vec<_>>());
        assert_eq!(log.durable_offset(), 200);
        assert!(log.syncs() < 20, "{} syncs for 200 waiters", log.syncs());
        assert!(log.syncs() >= 1);
    });
}

#[test]
fn a_reader_on_another_executor_follows_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel::<LogHandle>();
    let writer = std::thread::spawn(move || {
        run(move || async move {
            let log = Log::open(
                &p,
                LogConfig {
                    segment_bytes: 32 << 10,
                    ..small_cfg()
                },
            )
            .await
            .unwrap();
            tx.send(log.handle()).unwrap();
            for i in 0..500u64 {
                log.append(&payload(i, (i % 700) as usize)).await.unwrap();
                if i % 37 == 0 {
                    log.sync().await.unwrap();
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            }
            log.sync().await.unwrap();
            // Keep the log open until the reader is done.
            glommio::timer::sleep(Duration::from_millis(50)).await;
        })
    });
    let h = rx.recv().unwrap();
    let got = run(move || async move {
        let mut r = h.reader();
        let c = h.consumers();
        let mut b = ReadBatch::new();
        let mut at = c.committed("follower").await.unwrap().unwrap_or(0);
        let mut got = Vec::new();
        while at < 500 {
            r.read(
                at,
                ReadLimits {
                    max_records: 50,
                    max_bytes: 64 << 10,
                },
                &mut b,
            )
            .await
            .unwrap();
            if b.is_empty() {
                glommio::timer::sleep(Duration::from_millis(1)).await;
                continue;
            }
            for rec in b.iter() {
                assert_eq!(rec.offset, at);
                got.push(rec.payload.to_vec());
                at += 1;
            }
            c.commit("follower", at).await.unwrap();
        }
        assert_eq!(c.committed("follower").await.unwrap(), Some(500));
        got
    });
    writer.join().unwrap();
    assert_eq!(got.len(), 500);
    for (i, p) in got.iter().enumerate() {
        assert_eq!(*p, payload(i as u64, i % 700));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_records_round_trip_through_reopen(
        records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..9000), 1..40),
        sync_every in 1usize..10,
        max_records in 1usize..20,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().to_path_buf();
        let recs = records.clone();
        let got = run(move || async move {
            let cfg = LogConfig { segment_bytes: 24 << 10, ..small_cfg() };
            let log = Log::open(&p, cfg.clone()).await.unwrap();
            for (i, r) in recs.iter().enumerate() {
                log.append(r).await.unwrap();
                if i % sync_every == 0 {
                    log.sync().await.unwrap();
                }
            }
            log.sync().await.unwrap();
            drop(log);
            let log = Log::open(&p, cfg).await.unwrap();
            read_all(&log.handle(), 0, ReadLimits { max_records, max_bytes: 16 << 10 }).await.unwrap()
        });
        let want: Vec<_> = records.into_iter().enumerate().map(|(i, r)| (i as u64, r)).collect();
        prop_assert_eq!(got, want);
    }
}
