//! Batched UDP sending with `sendmmsg(2)` on a connected socket.
//!
//! A [`Sender`] owns one buffer of `batch` datagram slots. [`Sender::fill`] packs lines from the
//! [`Generator`] into the slots; [`Sender::flush`] hands the whole batch to the kernel with as
//! few `sendmmsg` calls as it takes. Only datagrams the kernel accepted are counted: a transient
//! refusal (`EAGAIN`/`EWOULDBLOCK` after the write timeout, `ENOBUFS`, or `ECONNREFUSED` reported
//! for an earlier datagram to a closed port, which the kernel clears as it reports it) is
//! retried and counted in [`Sender::retries`]. Only when the give-up instant has passed is the
//! rest of a batch dropped, and then it is not counted as sent.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::generate::{DatagramStats, Generator};

/// How long one blocking send may wait for socket buffer space before it counts as a retry.
const WRITE_TIMEOUT: Duration = Duration::from_millis(50);
/// Consecutive refusals answered by yielding the CPU before backing off with a sleep.
const SPIN_RETRIES: u32 = 16;
/// Sleep between retries once spinning did not help.
const BACKOFF: Duration = Duration::from_micros(100);

/// Sums over accepted datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Datagrams the kernel accepted.
    pub datagrams: u64,
    /// Lines in those datagrams.
    pub lines: u64,
    /// Counter lines in those datagrams.
    pub counter_lines: u64,
    /// Sum of the counter values in those datagrams.
    pub counter_sum: u64,
}

impl Totals {
    /// Adds one accepted datagram.
    fn add(&mut self, datagram: &DatagramStats) {
        self.datagrams += 1;
        self.lines += datagram.lines;
        self.counter_lines += datagram.counter_lines;
        self.counter_sum += datagram.counter_sum;
    }

    /// Adds another set of totals.
    pub fn merge(&mut self, other: &Totals) {
        self.datagrams += other.datagrams;
        self.lines += other.lines;
        self.counter_lines += other.counter_lines;
        self.counter_sum += other.counter_sum;
    }
}

/// A connected UDP socket plus one batch of packed datagrams.
pub struct Sender {
    socket: UdpSocket,
    datagram_bytes: usize,
    buf: Vec<u8>,
    filled: Vec<DatagramStats>,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    retries: u64,
}

impl Sender {
    /// Binds an ephemeral socket of `target`'s address family, connects it to `target` and
    /// allocates room for `batch` datagrams of up to `datagram_bytes` each.
    pub fn connect(target: SocketAddr, datagram_bytes: usize, batch: usize) -> io::Result<Self> {
        let local: SocketAddr = if target.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(target)?;
        socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let batch = batch.max(1);
        let iov = vec![
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            batch
        ];
        // SAFETY: `mmsghdr` is a plain C struct of integers and raw pointers, for which all-zero
        // bytes is a valid value (null pointers, zero lengths, zero flags).
        let blank: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Ok(Self {
            socket,
            datagram_bytes,
            buf: vec![0; datagram_bytes * batch],
            filled: Vec::with_capacity(batch),
            iov,
            msgs: vec![blank; batch],
            retries: 0,
        })
    }

    /// Number of datagram slots in a batch.
    pub fn batch(&self) -> usize {
        self.msgs.len()
    }

    /// Sends retried because the kernel refused them transiently.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// Number of datagrams packed and waiting for [`Sender::flush`].
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.filled.len()
    }

    /// Packs up to `max_lines` lines from `generator` into the free slots of the batch.
    /// Returns the number of lines packed.
    pub fn fill(&mut self, generator: &mut Generator, max_lines: u64) -> u64 {
        let mut budget = max_lines;
        while budget > 0 && self.filled.len() < self.msgs.len() {
            let start = self.filled.len() * self.datagram_bytes;
            let slot = &mut self.buf[start..start + self.datagram_bytes];
            let stats = generator.fill(slot, budget);
            if stats.lines == 0 {
                break;
            }
            budget -= stats.lines;
            self.filled.push(stats);
        }
        max_lines - budget
    }

    /// The payloads of the packed, unsent datagrams.
    #[cfg(test)]
    pub fn packed(&self) -> impl Iterator<Item = &[u8]> {
        self.filled.iter().enumerate().map(|(i, stats)| {
            let start = i * self.datagram_bytes;
            &self.buf[start..start + stats.bytes]
        })
    }

    /// Sends every packed datagram, retrying transient refusals until `give_up_at`. Returns the
    /// totals of the datagrams the kernel accepted; the batch is empty afterwards either way.
    pub fn flush(&mut self, give_up_at: Instant) -> io::Result<Totals> {
        let count = self.filled.len();
        let mut totals = Totals::default();
        if count == 0 {
            return Ok(totals);
        }
        let base = self.buf.as_mut_ptr();
        for (i, stats) in self.filled.iter().enumerate() {
            self.iov[i] = libc::iovec {
                // SAFETY: slot `i` starts at `i * datagram_bytes`, inside `buf`, which holds
                // `batch * datagram_bytes` bytes, and `i < batch`.
                iov_base: unsafe { base.add(i * self.datagram_bytes) }.cast(),
                iov_len: stats.bytes,
            };
        }
        let iov = self.iov.as_mut_ptr();
        for (i, msg) in self.msgs.iter_mut().take(count).enumerate() {
            // Connected socket: no destination address; one buffer per datagram.
            msg.msg_hdr.msg_name = std::ptr::null_mut();
            msg.msg_hdr.msg_namelen = 0;
            // SAFETY: `i < count <= batch == iov.len()`.
            msg.msg_hdr.msg_iov = unsafe { iov.add(i) };
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_len = 0;
        }

        let fd = self.socket.as_raw_fd();
        let mut done = 0usize;
        let mut refusals = 0u32;
        let result = loop {
            if done == count {
                break Ok(());
            }
            // SAFETY: `msgs[done..count]` are initialised headers whose iovecs point into
            // `buf`, which is neither moved nor freed during the call; the length passed is
            // exactly the number of headers from `done` on.
            let sent = unsafe {
                libc::sendmmsg(
                    fd,
                    self.msgs.as_mut_ptr().add(done),
                    (count - done) as libc::c_uint,
                    0,
                )
            };
            if sent > 0 {
                let sent = sent as usize;
                for stats in &self.filled[done..done + sent] {
                    totals.add(stats);
                }
                done += sent;
                refusals = 0;
                continue;
            }
            if sent == 0 {
                // `sendmmsg` never returns 0 for a non-empty vector; do not spin on it.
                break Err(io::Error::other("sendmmsg accepted no datagram"));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN | libc::ENOBUFS | libc::ECONNREFUSED) => {
                    self.retries += 1;
                    if Instant::now() >= give_up_at {
                        break Ok(());
                    }
                    refusals += 1;
                    if refusals <= SPIN_RETRIES {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(BACKOFF);
                    }
                }
                _ => break Err(err),
            }
        };
        self.filled.clear();
        result.map(|()| totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statsd::generate::Spec;
    use crate::statsd::MetricType;

    #[test]
    fn flush_delivers_exactly_the_packed_datagrams() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let target = receiver.local_addr().unwrap();
        let spec = Spec {
            series: 100,
            types: vec![
                MetricType::Counter,
                MetricType::Gauge,
                MetricType::Timer,
                MetricType::Set,
            ],
            tags: true,
            seed: 3,
        };
        let mut generator = Generator::new(&spec).unwrap();
        let mut sender = Sender::connect(target, 512, 8).unwrap();
        assert_eq!(sender.batch(), 8);
        // A budget smaller than the batch capacity is respected exactly.
        assert_eq!(sender.fill(&mut generator, 30), 30);
        assert!(sender.pending() >= 3);
        let expected: Vec<Vec<u8>> = sender.packed().map(<[u8]>::to_vec).collect();
        let totals = sender
            .flush(Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(sender.pending(), 0);
        assert_eq!(totals.datagrams, expected.len() as u64);
        assert_eq!(totals.lines, 30);

        let mut buf = [0u8; 2048];
        let mut lines = 0;
        for want in &expected {
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want.as_slice());
            lines += buf[..n].split(|&b| b == b'\n').count();
        }
        assert_eq!(lines, 30);
        let counters = expected
            .iter()
            .flat_map(|d| d.split(|&b| b == b'\n'))
            .filter(|line| line.split(|&b| b == b'|').nth(1) == Some(b"c"))
            .count() as u64;
        assert_eq!(totals.counter_lines, counters);
        assert_eq!(totals.counter_sum, counters);
    }

    #[test]
    fn empty_flush_sends_nothing() {
        let mut sender = Sender::connect("127.0.0.1:9".parse().unwrap(), 1400, 4).unwrap();
        assert_eq!(sender.flush(Instant::now()).unwrap(), Totals::default());
    }
}
