//! Even pacing of an offered rate over a fixed duration.
//!
//! The schedule is a pure function of elapsed time: unit `k` (0-based) becomes due at
//! `k / rate` seconds, and the run offers `round(rate * duration)` units in total. The caller
//! asks [`Pacer::step`] once per batch with the elapsed time and how many units it has taken so
//! far; the answer is either "send up to this many now", "sleep this long" or "finished".
//!
//! Sending is chunked like a real statsd client: the pacer waits until a full datagram's worth
//! of units (`chunk`) is due, but never longer than one `tick` after the previous send, so low
//! rates still go out smoothly while high rates fill their datagrams. A caller that falls
//! behind simply gets everything that is due at once (and sends it in batches). The run is
//! bounded in time: once `duration` has elapsed the pacer allows at most one final flush of a
//! backlog no bigger than one batch (so a run that kept up is not cut short by sleep jitter on
//! its last few units) and then finishes, even if the rate was never reached.

use std::time::Duration;

/// Shortest wait handed out, so a caller can never spin on a zero-length sleep.
const MIN_WAIT: Duration = Duration::from_micros(1);

/// What the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send at most this many units now (always at least one).
    Send(u64),
    /// Nothing worth sending yet: sleep this long, then ask again.
    Wait(Duration),
    /// The run is over: the duration has elapsed.
    Finished,
}

/// How the caller groups units when sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Units worth one send (about one full datagram); at least 1.
    pub chunk: u64,
    /// Units one send can carry at most (a batch of datagrams); at least `chunk`.
    pub batch: u64,
    /// Longest pause between two sends while anything is due.
    pub tick: Duration,
}

/// Schedules `rate` units per second, evenly, for `duration`.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    total: u64,
    duration: Duration,
    chunk: u64,
    batch: u64,
    tick: Duration,
    last_send: Duration,
    tail_flushed: bool,
}

impl Pacer {
    /// A pacer offering `rate` units per second for `duration`, grouped as `batching` says.
    /// `rate` must be positive and finite (checked by the caller).
    pub fn new(rate: f64, duration: Duration, batching: Batching) -> Self {
        // `as` saturates, so absurd rates stay bounded instead of wrapping.
        let total = (rate * duration.as_secs_f64()).round() as u64;
        let chunk = batching.chunk.max(1);
        Self {
            rate,
            total,
            duration,
            chunk,
            batch: batching.batch.max(chunk),
            tick: batching.tick,
            last_send: Duration::ZERO,
            tail_flushed: false,
        }
    }

    /// Total number of units the run offers.
    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of units due once `elapsed` has passed (never more than the run's total).
    pub fn due(&self, elapsed: Duration) -> u64 {
        let passed = (elapsed.as_secs_f64() * self.rate).floor();
        if passed >= self.total as f64 {
            self.total
        } else {
            (passed as u64).saturating_add(1).min(self.total)
        }
    }

    /// Elapsed time at which the first `units` units are all due.
    pub fn time_of(&self, units: u64) -> Duration {
        let secs = units.saturating_sub(1) as f64 / self.rate;
        // One nanosecond late rather than early, so `due(time_of(k)) >= k` despite rounding.
        Duration::try_from_secs_f64(secs)
            .map_or(Duration::MAX, |t| t.saturating_add(Duration::from_nanos(1)))
    }

    /// Decides the next step, given the elapsed time and the units taken so far.
    pub fn step(&mut self, elapsed: Duration, sent: u64) -> Step {
        if sent >= self.total {
            // Everything was offered: the run still lasts its full duration, so that its
            // achieved rate is measured over the same window as the offered one.
            return match self.duration.checked_sub(elapsed) {
                Some(left) if !left.is_zero() => Step::Wait(left),
                _ => Step::Finished,
            };
        }
        let backlog = self.due(elapsed).saturating_sub(sent);
        if elapsed >= self.duration {
            if !self.tail_flushed && backlog > 0 && backlog <= self.batch {
                self.tail_flushed = true;
                self.last_send = elapsed;
                return Step::Send(backlog);
            }
            return Step::Finished;
        }
        // The last chunk of the run may be short.
        let chunk = self.chunk.min(self.total - sent);
        if backlog >= chunk || (backlog > 0 && elapsed >= self.last_send.saturating_add(self.tick))
        {
            self.last_send = elapsed;
            return Step::Send(backlog);
        }
        let chunk_due = self.time_of(sent.saturating_add(chunk));
        let mut wake = chunk_due.min(self.last_send.saturating_add(self.tick));
        if backlog == 0 {
            wake = wake.max(self.time_of(sent.saturating_add(1)));
        }
        Step::Wait(
            wake.min(self.duration)
                .saturating_sub(elapsed)
                .max(MIN_WAIT),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batching(chunk: u64) -> Batching {
        Batching {
            chunk,
            batch: chunk * 64,
            tick: Duration::from_millis(5),
        }
    }

    /// Drives a pacer on a simulated clock where every send is instant and sleeps are exact
    /// plus `jitter`. Returns (units sent, number of sends, max units in one send).
    fn simulate(rate: f64, secs: f64, chunk: u64, jitter: Duration) -> (u64, u64, u64) {
        let mut pacer = Pacer::new(rate, Duration::from_secs_f64(secs), batching(chunk));
        let mut now = Duration::ZERO;
        let (mut sent, mut sends, mut biggest) = (0u64, 0u64, 0u64);
        for _ in 0..10_000_000 {
            match pacer.step(now, sent) {
                Step::Send(n) => {
                    assert!(n > 0);
                    assert!(sent + n <= pacer.due(now), "never ahead of schedule");
                    sent += n;
                    sends += 1;
                    biggest = biggest.max(n);
                }
                Step::Wait(d) => {
                    assert!(d >= MIN_WAIT);
                    now += d + jitter;
                }
                Step::Finished => return (sent, sends, biggest),
            }
        }
        panic!("pacer never finished");
    }

    #[test]
    fn total_is_rate_times_duration() {
        let b = batching(10);
        assert_eq!(
            Pacer::new(20_000.0, Duration::from_secs(1), b).total(),
            20_000
        );
        assert_eq!(Pacer::new(1.5, Duration::from_secs(3), b).total(), 5);
        assert_eq!(
            Pacer::new(1e30, Duration::from_secs(3), b).total(),
            u64::MAX
        );
    }

    #[test]
    fn due_is_monotonic_and_bounded() {
        let pacer = Pacer::new(1000.0, Duration::from_secs(2), batching(10));
        assert_eq!(pacer.due(Duration::ZERO), 1);
        let mut last = 0;
        for ms in 0..3000 {
            let due = pacer.due(Duration::from_millis(ms));
            assert!(due >= last);
            assert!(due <= 2000);
            last = due;
        }
        assert_eq!(last, 2000);
        // The last unit is due strictly before the end of the run.
        assert!(pacer.time_of(pacer.total()) < Duration::from_secs(2));
        for k in [1, 2, 3, 999, 1000, 1500, 2000] {
            assert_eq!(pacer.due(pacer.time_of(k)), k);
        }
    }

    #[test]
    fn exact_clock_sends_full_chunks_evenly() {
        let (sent, sends, biggest) = simulate(20_000.0, 1.0, 30, Duration::ZERO);
        assert_eq!(sent, 20_000);
        assert_eq!(biggest, 30);
        assert_eq!(sends, 667);
    }

    #[test]
    fn sleep_jitter_does_not_lose_the_tail() {
        let (sent, sends, biggest) = simulate(20_000.0, 1.0, 30, Duration::from_micros(300));
        assert_eq!(sent, 20_000);
        // Late wake-ups send what is due, a little more than a chunk.
        assert!(biggest <= 30 + 7, "biggest {biggest}");
        assert!(sends >= 500, "sends {sends}");
    }

    #[test]
    fn low_rates_send_on_the_tick() {
        // A chunk would take 3 s to fill; the tick sends every unit as it falls due.
        let (sent, sends, biggest) = simulate(10.0, 2.0, 30, Duration::from_micros(50));
        assert_eq!((sent, sends, biggest), (20, 20, 1));
        // 1000/s with 5 ms ticks: about 5 units per send.
        let (sent, sends, biggest) = simulate(1000.0, 1.0, 30, Duration::from_micros(50));
        assert_eq!(sent, 1000);
        assert!((190..=210).contains(&sends), "sends {sends}");
        assert!(biggest <= 6, "biggest {biggest}");
    }

    #[test]
    fn unreachable_rate_stops_at_the_deadline() {
        let mut pacer = Pacer::new(1e9, Duration::from_secs(1), batching(1000));
        assert!(matches!(
            pacer.step(Duration::ZERO, 0),
            Step::Wait(d) if d <= MIN_WAIT
        ));
        assert!(matches!(pacer.step(Duration::from_millis(500), 0), Step::Send(n) if n > 1000));
        // Far behind at the deadline: no tail flush, just stop.
        assert_eq!(pacer.step(Duration::from_secs(1), 10), Step::Finished);
    }

    #[test]
    fn a_run_lasts_its_duration() {
        let mut pacer = Pacer::new(3.0, Duration::from_secs(2), batching(10));
        assert_eq!(
            pacer.step(Duration::from_millis(1700), 6),
            Step::Wait(Duration::from_millis(300))
        );
        assert_eq!(pacer.step(Duration::from_secs(2), 6), Step::Finished);
    }

    #[test]
    fn tail_flush_happens_once() {
        let mut pacer = Pacer::new(100.0, Duration::from_secs(1), batching(10));
        assert_eq!(pacer.step(Duration::from_millis(1001), 95), Step::Send(5));
        assert_eq!(pacer.step(Duration::from_millis(1002), 97), Step::Finished);
    }
}
