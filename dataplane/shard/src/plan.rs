//! Start-up planning: shard count, CPU placement and io_uring memory, resolved before any
//! executor starts so that a misfit fails loudly instead of degrading silently.
//!
//! glommio registers each executor's `io_memory` buffer with all three of its io_uring rings,
//! and every registration pins the pages against `RLIMIT_MEMLOCK`. So `shards x 3 x io_memory`
//! must fit in the limit (glommio itself only logs a warning and falls back when it does not).

use switchyard_core::config::ShardsConfig;

/// glommio's smallest buffer area.
pub const MIN_IO_MEMORY: usize = 64 * 1024;
/// glommio's default buffer area, used when the limit allows it.
pub const DEFAULT_IO_MEMORY: usize = 10 << 20;
/// glommio refuses to start below this memlock limit.
pub const GLOMMIO_MIN_MEMLOCK: u64 = 512 * 1024;
/// Rings per executor that register the buffer.
pub const RINGS_PER_EXECUTOR: usize = 3;

/// What each shard runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// CPU of each shard.
    pub cpus: Vec<usize>,
    /// io_memory per shard.
    pub io_memory: usize,
}

impl Plan {
    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.cpus.len()
    }
}

/// Why the dataplane cannot start as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A configured CPU is not available to this process.
    #[error("shards.cpus: CPU {0} is not available to this process (allowed: {1:?})")]
    CpuUnavailable(usize, Vec<usize>),
    /// No CPU is available.
    #[error("no CPU is available to this process")]
    NoCpu,
    /// The locked-memory limit is too small for the rings.
    #[error(
        "RLIMIT_MEMLOCK is {limit} bytes, but {shards} shard(s) x {RINGS_PER_EXECUTOR} io_uring rings x \
         {per_shard} bytes of io_memory need {need} bytes: raise the limit (systemd: LimitMEMLOCK=infinity; \
         shell: ulimit -l {need_kib}) or lower shards.count / shards.io_memory"
    )]
    MemlockTooSmall {
        /// Current limit.
        limit: u64,
        /// Shards planned.
        shards: usize,
        /// io_memory per shard.
        per_shard: usize,
        /// Bytes needed.
        need: u64,
        /// The same in KiB, for `ulimit -l`.
        need_kib: u64,
    },
}

/// Resolves the plan from config, the CPUs this process may use, and `RLIMIT_MEMLOCK`
/// (`None` = unlimited).
///
/// # Errors
/// A [`PlanError`] naming what to change.
pub fn plan(
    cfg: &ShardsConfig,
    allowed_cpus: &[usize],
    memlock: Option<u64>,
) -> Result<Plan, PlanError> {
    if allowed_cpus.is_empty() {
        return Err(PlanError::NoCpu);
    }
    let pool: Vec<usize> = if cfg.cpus.is_empty() {
        allowed_cpus.to_vec()
    } else {
        for c in &cfg.cpus {
            if !allowed_cpus.contains(c) {
                return Err(PlanError::CpuUnavailable(*c, allowed_cpus.to_vec()));
            }
        }
        cfg.cpus.clone()
    };
    let shards = if cfg.count == 0 {
        pool.len()
    } else {
        cfg.count
    };
    let cpus: Vec<usize> = (0..shards)
        .filter_map(|i| pool.get(i % pool.len()).copied())
        .collect();
    let per_ring_set = (shards * RINGS_PER_EXECUTOR) as u64;
    let too_small = |per_shard: usize| {
        let need = per_ring_set * per_shard as u64;
        let need = need.max(GLOMMIO_MIN_MEMLOCK);
        PlanError::MemlockTooSmall {
            limit: memlock.unwrap_or(0),
            shards,
            per_shard,
            need,
            need_kib: need.div_ceil(1024),
        }
    };
    let io_memory = match (cfg.io_memory, memlock) {
        (0, None) => DEFAULT_IO_MEMORY,
        (n, None) => n.max(MIN_IO_MEMORY),
        (n, Some(limit)) => {
            if limit < GLOMMIO_MIN_MEMLOCK {
                return Err(too_small(n.max(MIN_IO_MEMORY)));
            }
            // Keep a tenth of the limit for anything else that locks memory.
            let budget = limit / 10 * 9;
            if n == 0 {
                let fit = (budget / per_ring_set) as usize / 4096 * 4096;
                if fit < MIN_IO_MEMORY {
                    return Err(too_small(MIN_IO_MEMORY));
                }
                fit.min(DEFAULT_IO_MEMORY)
            } else {
                let n = n.max(MIN_IO_MEMORY).div_ceil(4096) * 4096;
                if per_ring_set * n as u64 > budget {
                    return Err(too_small(n));
                }
                n
            }
        }
    };
    Ok(Plan { cpus, io_memory })
}

/// The CPUs this process may run on (its affinity mask).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| libc::CPU_ISSET(*c, &set))
            .collect()
    }
}

/// The soft `RLIMIT_MEMLOCK` (`None` when unlimited).
pub fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    if rc != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        None
    } else {
        Some(r.rlim_cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(count: usize, cpus: Vec<usize>, io: usize) -> ShardsConfig {
        ShardsConfig {
            count,
            cpus,
            io_memory: io,
        }
    }

    #[test]
    fn defaults_to_one_shard_per_allowed_cpu() {
        let p = plan(&cfg(0, vec![], 0), &[0, 1], None).unwrap();
        assert_eq!(p.cpus, vec![0, 1]);
        assert_eq!(p.io_memory, DEFAULT_IO_MEMORY);
    }

    #[test]
    fn sizes_io_memory_to_fit_eight_mib() {
        let p = plan(&cfg(0, vec![], 0), &[0, 1], Some(8 << 20)).unwrap();
        assert!(p.io_memory >= MIN_IO_MEMORY);
        assert!((2 * 3 * p.io_memory) as u64 <= 8 << 20);
        assert_eq!(p.io_memory % 4096, 0);
    }

    #[test]
    fn fails_naming_the_limit_when_rings_cannot_fit() {
        let e = plan(&cfg(64, vec![], 0), &[0, 1], Some(8 << 20)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("RLIMIT_MEMLOCK"), "{msg}");
        assert!(msg.contains("LimitMEMLOCK"), "{msg}");
        let e = plan(&cfg(2, vec![], 4 << 20), &[0, 1], Some(8 << 20)).unwrap_err();
        assert!(matches!(e, PlanError::MemlockTooSmall { per_shard, .. } if per_shard == 4 << 20));
    }

    #[test]
    fn rejects_unavailable_cpus() {
        assert_eq!(
            plan(&cfg(0, vec![7], 0), &[0, 1], None).unwrap_err(),
            PlanError::CpuUnavailable(7, vec![0, 1])
        );
        let p = plan(&cfg(3, vec![1], 0), &[0, 1], None).unwrap();
        assert_eq!(p.cpus, vec![1, 1, 1]);
    }
}
