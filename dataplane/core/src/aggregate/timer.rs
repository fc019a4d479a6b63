//! Timer statistics exactly as gostatsd computes them (`pkg/statsd/aggregator.go`):
//! lower, upper, mean, median, population standard deviation, sum, sum of squares, and per
//! configured percentile threshold `count_N`, `mean_N`, `sum_N`, `sum_squares_N` and
//! `upper_N` (or `lower_N` for a negative threshold), where the threshold keeps the
//! `round(|N|/100 * n)` lowest (highest for negative N) values.

/// gostatsd's `round`: half away from zero for the non-negative inputs it sees.
fn round(v: f64) -> f64 {
    (v + 0.5).floor()
}

/// Statistics over all values of one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TimerStats {
    /// Smallest value.
    pub lower: f64,
    /// Largest value.
    pub upper: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Sum.
    pub sum: f64,
    /// Sum of squares.
    pub sum_squares: f64,
}

/// Statistics of the values within one percentile threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThresholdStats {
    /// Number of values inside the threshold.
    pub count: f64,
    /// Their mean.
    pub mean: f64,
    /// Their sum.
    pub sum: f64,
    /// Their sum of squares.
    pub sum_squares: f64,
    /// The boundary value (`upper_N`, or `lower_N` for negative N).
    pub boundary: f64,
}

/// Sorts `values` in place and computes the interval statistics; `None` for no values.
pub fn stats(values: &mut [f64]) -> Option<TimerStats> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    let count = n as f64;
    let (mut sum, mut sum_squares) = (0.0, 0.0);
    for v in values.iter() {
        sum += v;
        sum_squares += v * v;
    }
    let mean = sum / count;
    let sum_of_diffs: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    let mid = n / 2;
    let median = if n % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    };
    Some(TimerStats {
        lower: values[0],
        upper: values[n - 1],
        mean,
        median,
        std: (sum_of_diffs / count).sqrt(),
        sum,
        sum_squares,
    })
}

/// Statistics within percentile threshold `pct` over `sorted` values (sorted ascending, as
/// left by [`stats`]). `None` when the threshold holds no value, as gostatsd skips it.
pub fn threshold(sorted: &[f64], pct: f64) -> Option<ThresholdStats> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    if n == 1 {
        let v = sorted[0];
        return Some(ThresholdStats {
            count: 1.0,
            mean: v,
            sum: v,
            sum_squares: v * v,
            boundary: v,
        });
    }
    let k = round(pct.abs() / 100.0 * n as f64) as usize;
    if k == 0 {
        return None;
    }
    let k = k.min(n);
    let part = if pct > 0.0 {
        &sorted[..k]
    } else {
        &sorted[n - k..]
    };
    let sum: f64 = part.iter().sum();
    let sum_squares: f64 = part.iter().map(|v| v * v).sum();
    let boundary = if pct > 0.0 {
        sorted[k - 1]
    } else {
        sorted[n - k]
    };
    Some(ThresholdStats {
        count: k as f64,
        mean: sum / k as f64,
        sum,
        sum_squares,
        boundary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_stats_match_gostatsd() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        let s = stats(&mut v).unwrap();
        assert_eq!(s.lower, 1.0);
        assert_eq!(s.upper, 5.0);
        assert_eq!(s.mean, 3.0);
        assert_eq!(s.median, 3.0);
        assert_eq!(s.sum, 15.0);
        assert_eq!(s.sum_squares, 55.0);
        assert!((s.std - 2.0f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn even_count_median_is_mean_of_middle_pair() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(stats(&mut v).unwrap().median, 2.5);
    }

    #[test]
    fn percentile_thresholds_match_gostatsd() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let t = threshold(&v, 90.0).unwrap();
        assert_eq!(t.count, 9.0);
        assert_eq!(t.boundary, 9.0);
        assert_eq!(t.sum, 45.0);
        assert_eq!(t.mean, 5.0);
        assert_eq!(t.sum_squares, 285.0);
        let t = threshold(&v, -20.0).unwrap();
        assert_eq!(t.count, 2.0);
        assert_eq!(t.boundary, 9.0);
        assert_eq!(t.sum, 19.0);
        // round(0.04 * 10) = 0: the threshold is skipped
        assert!(threshold(&v, 4.0).is_none());
    }

    #[test]
    fn single_value_fills_every_threshold() {
        let t = threshold(&[7.0], 50.0).unwrap();
        assert_eq!((t.count, t.boundary, t.sum), (1.0, 7.0, 7.0));
    }

    #[test]
    fn no_values_no_stats() {
        assert!(stats(&mut []).is_none());
    }
}
