//! The statsd flush both Kinesis benches pack: `n` series over 50 services, 20 endpoints,
//! 200 hosts, 5 tags, mixed types (count, gauge, rate); `round` shifts timestamps and values.

use switchyard_core::model::{SeriesBatch, SeriesType};

pub fn flush(n: usize, round: usize) -> SeriesBatch {
    let mut b = SeriesBatch::new(1_700_000_000 + round as u64 * 10, 10.0);
    let kinds = [SeriesType::Count, SeriesType::Gauge, SeriesType::Rate];
    for i in 0..n {
        let svc = i % 50;
        let tags = [
            format!("service:svc-{svc}"),
            format!("endpoint:/api/v1/resource-{}", i % 20),
            "env:prod".to_string(),
            format!("region:eu-west-{}", i % 3),
            format!("instance:{i}"),
        ];
        let name = format!("svc{svc}.http.server.request.duration");
        let id = b.identity(
            &name,
            tags.iter().map(String::as_str),
            &format!("host-{:04}", i % 200),
        );
        b.push(id, "", kinds[i % 3], ((i + round * 7) % 977) as f64 * 1.25);
    }
    b
}
