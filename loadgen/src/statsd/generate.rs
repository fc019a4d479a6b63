//! Deterministic statsd line generation and datagram packing.
//!
//! Line `j` of a run is a pure function of the seed, the series count, the type list and the tag
//! flag: a counter-based SplitMix64 stream picks the series and the value, so two runs with the
//! same arguments offer exactly the same sequence of lines (only where datagram boundaries fall
//! can depend on pacing, since a paced batch may close a datagram early).
//!
//! Series `i` is named `lg.m{i}` and has type `types[i % types.len()]`. Counters always carry
//! `1`, gauges and timers a pseudo-random decimal, sets a member `u{k}`. With tags every line
//! ends in `|#env:prod,svc:s{i % 50},az:z{i % 3}`.
//!
//! For speed everything constant about a series (`name:` and `|type|#tags`) is formatted once
//! into an arena; emitting a line is then three small copies and no allocation.

use super::MetricType;

/// SplitMix64 increment (the golden ratio).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// Salt that decorrelates a line's value from its series pick.
const VALUE_SALT: u64 = 0xA076_1D64_78BD_642F;
/// Longest formatted value (`9999.99`, `999.999`, `u999`, `1`), with room to spare.
const VALUE_CAP: usize = 24;

/// SplitMix64 finaliser: a bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What to generate: everything that determines the line sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Number of distinct series (at least 1).
    pub series: u32,
    /// Metric types, assigned to series round-robin (at least one).
    pub types: Vec<MetricType>,
    /// Whether lines carry DogStatsD tags.
    pub tags: bool,
    /// Seed of the pseudo-random stream.
    pub seed: u64,
}

/// Why a generator could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// `series` was zero.
    #[error("--series must be at least 1")]
    NoSeries,
    /// The type list was empty.
    #[error("--types must name at least one metric type")]
    NoTypes,
    /// A single line would not fit in one datagram.
    #[error(
        "--datagram-bytes {datagram_bytes} is smaller than the longest line ({longest_line} bytes)"
    )]
    DatagramTooSmall {
        /// The requested datagram size.
        datagram_bytes: usize,
        /// The longest line this spec can produce.
        longest_line: usize,
    },
}

/// What one packed datagram holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatagramStats {
    /// Payload size in bytes.
    pub bytes: usize,
    /// Number of lines.
    pub lines: u64,
    /// Number of counter lines among them.
    pub counter_lines: u64,
    /// Sum of the counter values among them.
    pub counter_sum: u64,
}

/// The constant parts of one series' lines, as ranges of the arena.
#[derive(Debug, Clone, Copy)]
struct Slot {
    head_start: u32,
    head_len: u32,
    tail_start: u32,
    tail_len: u32,
    kind: MetricType,
}

/// Produces the line sequence of a [`Spec`] and packs it into datagrams.
///
/// The generator always holds the next line, ready formatted; [`Generator::fill`] copies whole
/// lines into a datagram until the next one would not fit, so no line is ever split or lost.
#[derive(Debug, Clone)]
pub struct Generator {
    arena: Vec<u8>,
    slots: Vec<Slot>,
    state: u64,
    taken: u64,
    // The pending (next) line: its series and formatted value.
    slot: Slot,
    value: [u8; VALUE_CAP],
    value_len: usize,
    counter_value: u64,
    longest_line: usize,
    mean_line: f64,
}

impl Generator {
    /// Builds the per-series arena and formats the first line.
    pub fn new(spec: &Spec) -> Result<Self, SpecError> {
        if spec.series == 0 {
            return Err(SpecError::NoSeries);
        }
        if spec.types.is_empty() {
            return Err(SpecError::NoTypes);
        }
        let mut arena = Vec::new();
        let mut slots = Vec::with_capacity(spec.series as usize);
        let mut longest_line = 0usize;
        let mut total_len = 0f64;
        let mut number = itoa::Buffer::new();
        for i in 0..spec.series {
            let kind = spec.types[i as usize % spec.types.len()];
            let head_start = arena.len();
            arena.extend_from_slice(b"lg.m");
            arena.extend_from_slice(number.format(i).as_bytes());
            arena.push(b':');
            let tail_start = arena.len();
            arena.push(b'|');
            arena.extend_from_slice(kind.code().as_bytes());
            if spec.tags {
                arena.extend_from_slice(b"|#env:prod,svc:s");
                arena.extend_from_slice(number.format(i % 50).as_bytes());
                arena.extend_from_slice(b",az:z");
                arena.extend_from_slice(number.format(i % 3).as_bytes());
            }
            let slot = Slot {
                head_start: head_start as u32,
                head_len: (tail_start - head_start) as u32,
                tail_start: tail_start as u32,
                tail_len: (arena.len() - tail_start) as u32,
                kind,
            };
            let fixed = (slot.head_len + slot.tail_len) as usize;
            longest_line = longest_line.max(fixed + max_value_len(kind));
            total_len += (fixed + max_value_len(kind)) as f64;
            slots.push(slot);
        }
        let first = slots[0];
        let mut generator = Self {
            arena,
            slots,
            state: spec.seed,
            taken: 0,
            slot: first,
            value: [0; VALUE_CAP],
            value_len: 0,
            counter_value: 0,
            longest_line,
            mean_line: total_len / f64::from(spec.series),
        };
        generator.prepare();
        Ok(generator)
    }

    /// Fails unless every line fits in a datagram of `datagram_bytes`.
    pub fn check_datagram_bytes(&self, datagram_bytes: usize) -> Result<(), SpecError> {
        if datagram_bytes < self.longest_line {
            return Err(SpecError::DatagramTooSmall {
                datagram_bytes,
                longest_line: self.longest_line,
            });
        }
        Ok(())
    }

    /// Rough number of lines a full datagram of `datagram_bytes` holds (at least 1).
    pub fn lines_per_datagram(&self, datagram_bytes: usize) -> u64 {
        // Values are usually a little shorter than the maximum; round the estimate down.
        ((datagram_bytes as f64 / (self.mean_line + 1.0)) as u64).max(1)
    }

    /// Number of lines taken out of the generator so far.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Packs whole lines, newline-separated, into `buf` until the next line would not fit or
    /// `max_lines` lines were written. Returns what was written; its `bytes` is the payload
    /// length. Writes nothing if `buf` is shorter than the next line.
    pub fn fill(&mut self, buf: &mut [u8], max_lines: u64) -> DatagramStats {
        let mut stats = DatagramStats::default();
        let mut pos = 0usize;
        while stats.lines < max_lines {
            let head = self.slot.head_len as usize;
            let tail = self.slot.tail_len as usize;
            let sep = usize::from(pos > 0);
            let end = pos + sep + head + self.value_len + tail;
            if end > buf.len() {
                break;
            }
            if sep == 1 {
                buf[pos] = b'\n';
                pos += 1;
            }
            let h = self.slot.head_start as usize;
            buf[pos..pos + head].copy_from_slice(&self.arena[h..h + head]);
            pos += head;
            buf[pos..pos + self.value_len].copy_from_slice(&self.value[..self.value_len]);
            pos += self.value_len;
            let t = self.slot.tail_start as usize;
            buf[pos..end].copy_from_slice(&self.arena[t..t + tail]);
            pos = end;
            stats.lines += 1;
            if self.slot.kind == MetricType::Counter {
                stats.counter_lines += 1;
                stats.counter_sum += self.counter_value;
            }
            self.prepare();
        }
        stats.bytes = pos;
        self.taken += stats.lines;
        stats
    }

    /// Advances the stream and formats the next pending line.
    fn prepare(&mut self) {
        self.state = self.state.wrapping_add(GOLDEN);
        let pick = mix(self.state);
        // Multiply-shift range reduction: uniform enough and division-free.
        let index = ((u128::from(pick) * self.slots.len() as u128) >> 64) as usize;
        self.slot = self.slots[index];
        let v = mix(pick ^ VALUE_SALT);
        match self.slot.kind {
            MetricType::Counter => {
                self.value[0] = b'1';
                self.value_len = 1;
                self.counter_value = 1;
            }
            MetricType::Gauge => self.set_decimal(v % 10_000, (v >> 32) % 100, 2),
            MetricType::Timer => self.set_decimal(v % 1_000, (v >> 32) % 1_000, 3),
            MetricType::Set => {
                self.value[0] = b'u';
                let mut number = itoa::Buffer::new();
                let digits = number.format(v % 1_000).as_bytes();
                self.value[1..1 + digits.len()].copy_from_slice(digits);
                self.value_len = 1 + digits.len();
            }
        }
    }

    /// Formats `int.frac` with exactly `places` zero-padded decimals.
    fn set_decimal(&mut self, int: u64, frac: u64, places: u32) {
        let mut number = itoa::Buffer::new();
        let digits = number.format(int).as_bytes();
        self.value[..digits.len()].copy_from_slice(digits);
        let mut pos = digits.len();
        self.value[pos] = b'.';
        pos += 1;
        let mut div = 10u64.pow(places.saturating_sub(1));
        while div > 0 {
            self.value[pos] = b'0' + ((frac / div) % 10) as u8;
            pos += 1;
            div /= 10;
        }
        self.value_len = pos;
    }
}

/// Longest value a series of this type can carry.
fn max_value_len(kind: MetricType) -> usize {
    match kind {
        MetricType::Counter => 1,
        MetricType::Gauge => "9999.99".len(),
        MetricType::Timer => "999.999".len(),
        MetricType::Set => "u999".len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [MetricType; 4] = [
        MetricType::Counter,
        MetricType::Gauge,
        MetricType::Timer,
        MetricType::Set,
    ];

    fn spec(series: u32, tags: bool, seed: u64) -> Spec {
        Spec {
            series,
            types: ALL.to_vec(),
            tags,
            seed,
        }
    }

    /// Packs `count` full datagrams of `cap` bytes and returns their payloads and stats.
    fn datagrams(spec: &Spec, cap: usize, count: usize) -> Vec<(Vec<u8>, DatagramStats)> {
        let mut generator = Generator::new(spec).unwrap();
        generator.check_datagram_bytes(cap).unwrap();
        let mut buf = vec![0u8; cap];
        (0..count)
            .map(|_| {
                let stats = generator.fill(&mut buf, u64::MAX);
                assert!(stats.lines > 0);
                (buf[..stats.bytes].to_vec(), stats)
            })
            .collect()
    }

    /// A parsed line: series index, value, type, tags.
    #[derive(Debug)]
    struct Line<'a> {
        series: u32,
        value: &'a str,
        kind: &'a str,
        tags: Option<&'a str>,
    }

    /// Parses `lg.m{i}:value|type[|#tags]`, failing the test on anything else.
    fn parse(line: &str) -> Line<'_> {
        let (name, rest) = line.split_once(':').unwrap();
        let series = name.strip_prefix("lg.m").unwrap().parse().unwrap();
        let mut fields = rest.split('|');
        let value = fields.next().unwrap();
        let kind = fields.next().unwrap();
        let tags = fields.next().map(|t| t.strip_prefix('#').unwrap());
        assert!(fields.next().is_none(), "extra field in {line:?}");
        assert!(!value.is_empty());
        Line {
            series,
            value,
            kind,
            tags,
        }
    }

    #[test]
    fn same_seed_same_lines_other_seed_other_lines() {
        let a = datagrams(&spec(1000, true, 7), 1400, 50);
        let b = datagrams(&spec(1000, true, 7), 1400, 50);
        let c = datagrams(&spec(1000, true, 8), 1400, 50);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn line_sequence_does_not_depend_on_packing() {
        let lines = |cap: usize| {
            datagrams(&spec(500, false, 1), cap, 1000)
                .into_iter()
                .flat_map(|(d, _)| {
                    String::from_utf8(d)
                        .unwrap()
                        .split('\n')
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .take(1000)
                .collect::<Vec<_>>()
        };
        assert_eq!(lines(64), lines(1400));
        assert_eq!(lines(9000), lines(1400));
    }

    #[test]
    fn datagrams_fit_and_hold_whole_valid_lines() {
        for tags in [false, true] {
            for cap in [48, 100, 512, 1400, 8192] {
                let spec = spec(10_000, tags, 99);
                for (payload, stats) in datagrams(&spec, cap, 300) {
                    assert!(payload.len() <= cap, "{} > {cap}", payload.len());
                    assert_eq!(payload.len(), stats.bytes);
                    assert_ne!(payload.last(), Some(&b'\n'));
                    let text = std::str::from_utf8(&payload).unwrap();
                    let mut counters = 0;
                    let mut lines = 0;
                    for line in text.split('\n') {
                        let line = parse(line);
                        lines += 1;
                        assert!(line.series < 10_000);
                        let kind = ALL[line.series as usize % 4];
                        assert_eq!(line.kind, kind.code(), "types interleave by series");
                        match kind {
                            MetricType::Counter => {
                                assert_eq!(line.value, "1");
                                counters += 1;
                            }
                            MetricType::Gauge | MetricType::Timer => {
                                let (int, frac) = line.value.split_once('.').unwrap();
                                int.parse::<u64>().unwrap();
                                let places = if kind == MetricType::Gauge { 2 } else { 3 };
                                assert_eq!(frac.len(), places);
                                line.value.parse::<f64>().unwrap();
                            }
                            MetricType::Set => {
                                line.value
                                    .strip_prefix('u')
                                    .unwrap()
                                    .parse::<u64>()
                                    .unwrap();
                            }
                        }
                        if tags {
                            let i = line.series;
                            let want = format!("env:prod,svc:s{},az:z{}", i % 50, i % 3);
                            assert_eq!(line.tags, Some(want.as_str()));
                        } else {
                            assert_eq!(line.tags, None);
                        }
                    }
                    assert_eq!(stats.lines, lines);
                    assert_eq!(stats.counter_lines, counters);
                    assert_eq!(stats.counter_sum, counters);
                }
            }
        }
    }

    #[test]
    fn datagrams_are_packed_full() {
        // A full datagram has no room left for the line that follows it.
        let spec = spec(100, true, 5);
        let mut generator = Generator::new(&spec).unwrap();
        let mut buf = vec![0u8; 1400];
        let mut spare = vec![0u8; 1400];
        for _ in 0..100 {
            let stats = generator.fill(&mut buf, u64::MAX);
            let mut peek = generator.clone();
            let next = peek.fill(&mut spare, 1);
            assert!(stats.bytes + 1 + next.bytes > 1400);
        }
        // Typical sizes: a few dozen lines per datagram.
        let plain = datagrams(&super::tests::spec(10_000, false, 1), 1400, 1)[0]
            .1
            .lines;
        let tagged = datagrams(&super::tests::spec(10_000, true, 1), 1400, 1)[0]
            .1
            .lines;
        assert!((50..100).contains(&plain), "plain {plain}");
        assert!((25..50).contains(&tagged), "tagged {tagged}");
    }

    #[test]
    fn line_budget_is_respected_and_counted() {
        let mut generator = Generator::new(&spec(10, false, 1)).unwrap();
        let mut buf = vec![0u8; 1400];
        assert_eq!(generator.fill(&mut buf, 3).lines, 3);
        assert_eq!(generator.fill(&mut buf, 0), DatagramStats::default());
        assert_eq!(generator.taken(), 3);
        // A buffer too short for the next line takes nothing.
        assert_eq!(generator.fill(&mut buf[..2], 10).lines, 0);
        assert_eq!(generator.taken(), 3);
    }

    #[test]
    fn counters_sum_to_counter_lines() {
        let spec = Spec {
            series: 7,
            types: vec![MetricType::Counter, MetricType::Gauge],
            tags: false,
            seed: 11,
        };
        let all = datagrams(&spec, 1400, 500);
        let lines: u64 = all.iter().map(|(_, s)| s.lines).sum();
        let counters: u64 = all.iter().map(|(_, s)| s.counter_lines).sum();
        let sum: u64 = all.iter().map(|(_, s)| s.counter_sum).sum();
        assert_eq!(counters, sum);
        // Series are picked uniformly: counters are about 4 of every 7 lines.
        let share = counters as f64 / lines as f64;
        assert!((share - 4.0 / 7.0).abs() < 0.02, "share {share}");
    }

    #[test]
    fn every_series_is_used() {
        let all = datagrams(&spec(300, false, 2), 1400, 200);
        let mut seen = vec![false; 300];
        for (payload, _) in &all {
            for line in std::str::from_utf8(payload).unwrap().split('\n') {
                seen[parse(line).series as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn invalid_specs_are_rejected() {
        assert_eq!(
            Generator::new(&spec(0, false, 1)).unwrap_err(),
            SpecError::NoSeries
        );
        let no_types = Spec {
            types: Vec::new(),
            ..spec(1, false, 1)
        };
        assert_eq!(Generator::new(&no_types).unwrap_err(), SpecError::NoTypes);
        let generator = Generator::new(&spec(1000, true, 1)).unwrap();
        // Longest line: `lg.m999:999.999|ms|#env:prod,svc:s49,az:z2` or similar.
        let err = generator.check_datagram_bytes(20).unwrap_err();
        let SpecError::DatagramTooSmall { longest_line, .. } = err else {
            panic!("{err:?}");
        };
        assert!(generator.check_datagram_bytes(longest_line).is_ok());
        assert!(generator.check_datagram_bytes(longest_line - 1).is_err());
    }
}
