//! Test helper for the crash tests: appends numbered records to a local log and prints
//! each durable offset after a sync, until killed.
//!
//! Usage: `switchyard-log-crash-writer DIR SEED [SEGMENT_BYTES]`. Record `n`'s payload is
//! `n` (8 bytes, little-endian) followed by `n % 2000` bytes derived from `n`, so a
//! reader can check it is intact. Batches of 1 to 64 records are appended, then synced;
//! after each sync the line `durable <offset>` is printed (offset = one past the last
//! durable record) and stdout flushed.

use std::io::Write as _;
use std::time::Duration;
use switchyard_log::{Log, LogConfig};

/// The payload of record `n`.
fn payload(n: u64) -> Vec<u8> {
    let mut v = n.to_le_bytes().to_vec();
    let extra = (n % 2000) as usize;
    v.extend((0..extra).map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8));
    v
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(seed)) = (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok()))
    else {
        let _ = writeln!(
            std::io::stderr(),
            "usage: crash_writer DIR SEED [SEGMENT_BYTES]"
        );
        return std::process::ExitCode::from(2);
    };
    let segment_bytes = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256 << 10);
    let dir = dir.clone();
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .make();
    let Ok(ex) = ex else {
        return std::process::ExitCode::from(3);
    };
    let r = ex.run(async move {
        let cfg = LogConfig {
            segment_bytes,
            retention_bytes: None,
            retention_age: None,
            write_buffer_bytes: 64 << 10,
            ..LogConfig::default()
        };
        let log = Log::open(&dir, cfg).await?;
        let mut rng = seed | 1;
        let mut out = std::io::stdout().lock();
        loop {
            // xorshift: batch sizes vary without a dependency.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let batch = 1 + rng % 64;
            for _ in 0..batch {
                let n = log.next_offset();
                log.append(&payload(n)).await?;
            }
            let d = log.sync().await?;
            let _ = writeln!(out, "durable {d}");
            let _ = out.flush();
            if rng % 8 == 0 {
                glommio::timer::sleep(Duration::from_micros(rng % 500)).await;
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), switchyard_log::LogError>(())
    });
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "crash_writer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
