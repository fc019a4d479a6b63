//! Deterministic statsd line generation and datagram packing.
//!
//! Line `j` of a run is a pure function of the seed, the series count, the type list and the tag
//! flag: a counter-based SplitMix64 stream picks the series and the value, so two runs with the
//! same arguments offer exactly the same sequence of lines (only where datagram boundaries fall
//! can depend on pacing, since a paced batch may close a datagram early).
//!
//! Series `i` is named `lg.m{i}` and has type `types[i % types.len()]`. Counters always carry
//! `1`; gauges (`int.ff`) and timers (`int.fff`) a pseudo-random decimal drawn from a fixed pool
//! of 1024 per type; sets a member `u{k}`, `k < 1000`. With tags every line ends in
//! `|#env:prod,svc:s{i % 50},az:z{i % 3}`.
//!
//! Built for ten million lines a second and more on one core, whatever the series count:
//! nothing is stored per series. A line's tail (`|type|#tags`) depends only on `i % period` and
//! comes from a small table, values come from small preformatted pools, and the name is
//! assembled in a register from a table of 4-digit groups. With room to spare in the datagram a
//! line is written with a few fixed-size stores: no allocation, no `memcpy` call, no division
//! and no store-to-load forwarding stall (parts are never stored byte by byte and then reloaded
//! as a word).

use super::MetricType;

/// SplitMix64 increment (the golden ratio).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// Room for a series number: `4294967295` is 10 digits.
const NAME_CAP: usize = 16;
/// Room for a line's tail: `|ms|#env:prod,svc:s49,az:z2` is 27 bytes.
const TAIL_CAP: usize = 32;
/// Room for a value: `9999.99`, `999.999`, `u999` and `1` are at most 7 bytes.
const VALUE_CAP: usize = 8;
/// Free space from which a line is written with whole fixed-size stores: separator, `lg.m`,
/// the series number, `:`, the value and the tail, each at full width.
const FAST_PATH_ROOM: usize = 1 + 4 + NAME_CAP + 1 + VALUE_CAP + TAIL_CAP;
/// Series `i` gets tags `svc:s{i % SVC_COUNT}` and `az:z{i % AZ_COUNT}`.
const SVC_COUNT: u32 = 50;
/// See [`SVC_COUNT`].
const AZ_COUNT: u32 = 3;
/// Longest `--types` list: keeps the tail table (one entry per class) small.
const MAX_TYPES: usize = 64;
/// Preformatted gauge and timer values per type.
const VALUE_POOL: u64 = 1024;
/// Distinct set members per set series.
const SET_MEMBERS: u64 = 1000;

/// SplitMix64 finaliser: a bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Number of decimal digits of `n`.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Multiply-shift range reduction: maps a uniform 32-bit `x` to `0..n` without dividing.
fn reduce(x: u32, n: u32) -> u32 {
    ((u64::from(x) * u64::from(n)) >> 32) as u32
}

/// Short ASCII text packed little-endian into an integer (first byte lowest), with its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed {
    bytes: u64,
    len: usize,
}

impl Packed {
    /// Packs `text` (at most 8 bytes).
    fn new(text: &[u8]) -> Self {
        let mut bytes = [0u8; 8];
        bytes[..text.len()].copy_from_slice(text);
        Self {
            bytes: u64::from_le_bytes(bytes),
            len: text.len(),
        }
    }
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
    /// The type list was so long that the per-class tail table would be large.
    #[error("--types may list at most {max} entries")]
    TooManyTypes {
        /// The longest accepted list.
        max: usize,
    },
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

/// The tail (`|type` plus tags) shared by every series `i` with the same `i % period`.
#[derive(Debug, Clone, Copy)]
struct Tail {
    bytes: [u8; TAIL_CAP],
    len: usize,
    kind: MetricType,
}

/// Produces the line sequence of a [`Spec`] and packs it into datagrams.
///
/// The generator always holds the next line, ready to write; [`Generator::fill`] copies whole
/// lines into a datagram until the next one would not fit, so no line is ever split or lost.
#[derive(Debug, Clone)]
pub struct Generator {
    /// One tail per class `i % tails.len()`.
    tails: Vec<Tail>,
    /// `u64::MAX / tails.len() + 1`, for remainders by multiplication (Lemire's fastmod).
    class_magic: u64,
    /// Preformatted values, indexed by [`kind_index`].
    pools: [Vec<Packed>; 4],
    /// `n` as ASCII without leading zeros, for `n < 10_000`.
    groups: Vec<Packed>,
    /// `n` as exactly four ASCII digits, for `n < 10_000`.
    groups_padded: Vec<u32>,
    series: u32,
    state: u64,
    taken: u64,
    // The pending (next) line: series number, value and tail class.
    name: u128,
    name_len: usize,
    value: Packed,
    tail: usize,
    longest_line: usize,
    mean_line: f64,
}

/// Position of a type's pool in [`Generator::pools`].
fn kind_index(kind: MetricType) -> usize {
    match kind {
        MetricType::Counter => 0,
        MetricType::Gauge => 1,
        MetricType::Timer => 2,
        MetricType::Set => 3,
    }
}

impl Generator {
    /// Builds the tables and prepares the first line.
    pub fn new(spec: &Spec) -> Result<Self, SpecError> {
        if spec.series == 0 {
            return Err(SpecError::NoSeries);
        }
        if spec.types.is_empty() {
            return Err(SpecError::NoTypes);
        }
        if spec.types.len() > MAX_TYPES {
            return Err(SpecError::TooManyTypes { max: MAX_TYPES });
        }
        // Tails repeat with the least common multiple of the type and tag cycles.
        let types = spec.types.len() as u32;
        let period = if spec.tags {
            lcm(lcm(types, SVC_COUNT), AZ_COUNT)
        } else {
            types
        };
        let mut number = itoa::Buffer::new();
        let mut text = Vec::with_capacity(TAIL_CAP);
        let tails: Vec<Tail> = (0..period)
            .map(|class| {
                let kind = spec.types[(class % types) as usize];
                text.clear();
                text.push(b'|');
                text.extend_from_slice(kind.code().as_bytes());
                if spec.tags {
                    text.extend_from_slice(b"|#env:prod,svc:s");
                    text.extend_from_slice(number.format(class % SVC_COUNT).as_bytes());
                    text.extend_from_slice(b",az:z");
                    text.extend_from_slice(number.format(class % AZ_COUNT).as_bytes());
                }
                let mut bytes = [0u8; TAIL_CAP];
                bytes[..text.len()].copy_from_slice(&text);
                Tail {
                    bytes,
                    len: text.len(),
                    kind,
                }
            })
            .collect();

        let pools = [
            vec![Packed::new(b"1")],
            (0..VALUE_POOL)
                .map(|k| {
                    let v = mix(k ^ 0x6761_7567_6500_0000);
                    Packed::new(format!("{}.{:02}", v % 10_000, (v >> 32) % 100).as_bytes())
                })
                .collect(),
            (0..VALUE_POOL)
                .map(|k| {
                    let v = mix(k ^ 0x7469_6d65_7200_0000);
                    Packed::new(format!("{}.{:03}", v % 1_000, (v >> 32) % 1_000).as_bytes())
                })
                .collect(),
            (0..SET_MEMBERS)
                .map(|k| Packed::new(format!("u{k}").as_bytes()))
                .collect(),
        ];
        let groups = (0..10_000u32)
            .map(|n| Packed::new(number.format(n).as_bytes()))
            .collect();
        let groups_padded = (0..10_000u32)
            .map(|n| {
                let digit = |place: u32| b'0' + (n / place % 10) as u8;
                u32::from_le_bytes([digit(1000), digit(100), digit(10), digit(1)])
            })
            .collect();

        // Longest line: in each class the last series has the longest name.
        let series = u64::from(spec.series);
        let head_len = |i: u64| "lg.m:".len() + digits(i);
        let value_len = |kind: MetricType| {
            pools[kind_index(kind)]
                .iter()
                .map(|p| p.len)
                .max()
                .unwrap_or(0)
        };
        let class_len = |tail: &Tail| tail.len + value_len(tail.kind);
        let longest_line = tails
            .iter()
            .zip(0u64..)
            .filter(|&(_, class)| class < series)
            .map(|(tail, class)| {
                let last = class + (series - 1 - class) / u64::from(period) * u64::from(period);
                head_len(last) + class_len(tail)
            })
            .max()
            .unwrap_or(0);
        // Mean line: mean name length over all series plus the mean class (an estimate).
        let mut name_total = 0u64;
        let mut low = 0u64;
        while low < series {
            let high = (low.max(1) * 10).min(series);
            name_total += (high - low) * head_len(low) as u64;
            low = high;
        }
        let class_mean = tails.iter().map(|t| class_len(t) as f64).sum::<f64>() / f64::from(period);
        let mut generator = Self {
            tails,
            // Wraps to 0 for a period of 1, which then correctly yields class 0.
            class_magic: (u64::MAX / u64::from(period)).wrapping_add(1),
            pools,
            groups,
            groups_padded,
            series: spec.series,
            state: spec.seed,
            taken: 0,
            name: 0,
            name_len: 0,
            value: Packed { bytes: 0, len: 0 },
            tail: 0,
            longest_line,
            mean_line: name_total as f64 / series as f64 + class_mean,
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
            let tail = &self.tails[self.tail];
            let sep = usize::from(pos > 0);
            let name_end = pos + sep + 4 + self.name_len;
            let end = name_end + 1 + self.value.len + tail.len;
            if end > buf.len() {
                break;
            }
            let name = self.name.to_le_bytes();
            let value = self.value.bytes.to_le_bytes();
            if pos + FAST_PATH_ROOM <= buf.len() {
                // Whole fixed-size stores, each overwriting the padding of the one before; the
                // padding of the last lies past `end`, where the next line or nothing goes.
                buf[pos] = b'\n';
                pos += sep;
                buf[pos..pos + 4].copy_from_slice(b"lg.m");
                buf[pos + 4..pos + 4 + NAME_CAP].copy_from_slice(&name);
                buf[name_end] = b':';
                pos = name_end + 1;
                buf[pos..pos + VALUE_CAP].copy_from_slice(&value);
                pos += self.value.len;
                buf[pos..pos + TAIL_CAP].copy_from_slice(&tail.bytes);
            } else {
                if sep == 1 {
                    buf[pos] = b'\n';
                    pos += 1;
                }
                buf[pos..pos + 4].copy_from_slice(b"lg.m");
                buf[pos + 4..name_end].copy_from_slice(&name[..self.name_len]);
                buf[name_end] = b':';
                pos = name_end + 1;
                buf[pos..pos + self.value.len].copy_from_slice(&value[..self.value.len]);
                pos += self.value.len;
                buf[pos..end].copy_from_slice(&tail.bytes[..tail.len]);
            }
            pos = end;
            stats.lines += 1;
            if tail.kind == MetricType::Counter {
                stats.counter_lines += 1;
                stats.counter_sum += 1;
            }
            self.prepare();
        }
        stats.bytes = pos;
        self.taken += stats.lines;
        stats
    }

    /// Advances the stream and prepares the next pending line.
    fn prepare(&mut self) {
        self.state = self.state.wrapping_add(GOLDEN);
        let pick = mix(self.state);
        // High half picks the series, low half the value.
        let series = reduce((pick >> 32) as u32, self.series);
        // series % tails.len(), by multiplication.
        let lowbits = self.class_magic.wrapping_mul(u64::from(series));
        self.tail = ((u128::from(lowbits) * self.tails.len() as u128) >> 64) as usize;
        (self.name, self.name_len) = self.decimal(series);
        let pool = &self.pools[kind_index(self.tails[self.tail].kind)];
        self.value = pool[reduce(pick as u32, pool.len() as u32) as usize];
    }

    /// `n` as ASCII digits packed little-endian, from the 4-digit group tables.
    fn decimal(&self, n: u32) -> (u128, usize) {
        if n < 10_000 {
            let group = self.groups[n as usize];
            return (u128::from(group.bytes), group.len);
        }
        let low = u128::from(self.groups_padded[(n % 10_000) as usize]);
        let high = n / 10_000;
        if high < 10_000 {
            let group = self.groups[high as usize];
            return (
                u128::from(group.bytes) | low << (8 * group.len),
                group.len + 4,
            );
        }
        let middle = u128::from(self.groups_padded[(high % 10_000) as usize]);
        let top = self.groups[(high / 10_000) as usize];
        let word = u128::from(top.bytes) | middle << (8 * top.len) | low << (8 * (top.len + 4));
        (word, top.len + 8)
    }
}

/// Least common multiple.
fn lcm(a: u32, b: u32) -> u32 {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
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
    fn classes_follow_series_for_any_type_count() {
        for (types, tags) in [
            (vec![MetricType::Timer], false),
            (vec![MetricType::Set], true),
            (
                vec![MetricType::Gauge, MetricType::Counter, MetricType::Set],
                true,
            ),
            (vec![MetricType::Counter; 7], true),
        ] {
            let spec = Spec {
                series: 123_457,
                types: types.clone(),
                tags,
                seed: 4,
            };
            for (payload, _) in datagrams(&spec, 1400, 100) {
                for line in std::str::from_utf8(&payload).unwrap().split('\n') {
                    let line = parse(line);
                    let i = line.series;
                    assert_eq!(line.kind, types[i as usize % types.len()].code());
                    let want = format!("env:prod,svc:s{},az:z{}", i % 50, i % 3);
                    assert_eq!(line.tags, tags.then_some(want.as_str()));
                }
            }
        }
    }

    #[test]
    fn names_cover_the_whole_u32_range() {
        let spec = Spec {
            series: u32::MAX,
            types: ALL.to_vec(),
            tags: true,
            seed: 12,
        };
        let mut longest = 0;
        for (payload, _) in datagrams(&spec, 512, 2000) {
            for line in std::str::from_utf8(&payload).unwrap().split('\n') {
                let name = line.split(':').next().unwrap();
                let number = &name[4..];
                assert!(!number.starts_with('0'), "{line}");
                assert_eq!(number.parse::<u32>().unwrap().to_string(), number);
                longest = longest.max(number.len());
            }
        }
        assert_eq!(longest, 10);
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
