//! Allocation counts on the intake parsers and the top-k sketch: a request costs a fixed
//! number of allocations however many series it holds, and observing a tracked key costs
//! none. A counting global allocator, so this is its own test binary with a single test (no
//! other thread allocates while it counts).

// Test support code outside #[test] functions: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use switchyard_core::intake::{check_run, distribution_points, series_v2};
use switchyard_core::topk::TopK;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::Relaxed);
    f();
    ALLOCS.load(Ordering::Relaxed) - before
}

fn repeat(item: &str, n: usize, open: &str, close: &str) -> Vec<u8> {
    let items = vec![item; n].join(",");
    format!("{open}{items}{close}").into_bytes()
}

/// Allocations to parse `one` and `many` (the same item once and 200 times), each measured
/// on its second parse so the reused `Buffers` have grown to it. (simd-json sizes the tape
/// from the previous request's structural count, so a request right after a smaller one
/// costs one more allocation: still per request, not per series.)
fn per_request(
    parse: &dyn Fn(&mut [u8], &mut simd_json::Buffers) -> usize,
    item: &str,
    open: &str,
    close: &str,
) -> (usize, usize) {
    let mut buffers = simd_json::Buffers::default();
    let mut measure = |body: &[u8], n: usize| {
        assert_eq!(parse(&mut body.to_vec(), &mut buffers), n);
        let mut b = body.to_vec();
        allocations(|| assert_eq!(parse(&mut b, &mut buffers), n))
    };
    let small = measure(&repeat(item, 1, open, close), 1);
    let large = measure(&repeat(item, 200, open, close), 200);
    (small, large)
}

#[test]
fn allocations_do_not_grow_with_the_number_of_series() {
    let series_v2 = per_request(
        &|b, buf| series_v2::for_each_series(b, buf, |s| assert!(!s.points.is_empty())).unwrap(),
        r#"{"metric":"m","type":3,"points":[{"timestamp":1700000000,"value":1.5},{"timestamp":1700000010,"value":2}],
            "resources":[{"type":"host","name":"web-1"}],"tags":["env:prod","canary"],"interval":10}"#,
        r#"{"series":["#,
        "]}",
    );
    let checks = per_request(
        &|b, buf| check_run::for_each_check(b, buf, |c| assert!(!c.tags.is_empty())).unwrap(),
        r#"{"check":"app.ok","host_name":"web-1","status":1,"tags":["env:prod"],"timestamp":1700000000}"#,
        "[",
        "]",
    );
    let distributions = per_request(
        &|b, buf| {
            distribution_points::for_each_series(b, buf, |s| assert_eq!(s.points.len(), 2))
                .unwrap()
                .series
        },
        r#"{"metric":"m","points":[[1700000000,[0.1,0.2,0.35]],[1700000010,[1,2,3,4]]],"host":"h","tags":["a:b"]}"#,
        r#"{"series":["#,
        "]}",
    );
    for (name, (small, large)) in [
        ("series_v2", series_v2),
        ("check_run", checks),
        ("distribution_points", distributions),
    ] {
        assert_eq!(
            small, large,
            "{name}: {small} allocations for 1 item, {large} for 200"
        );
        assert!(small <= 8, "{name}: {small} allocations per request");
    }

    // Top-k: observing tracked keys allocates nothing.
    let mut t = TopK::new(64, Duration::from_secs(60));
    let keys: Vec<String> = (0..64).map(|i| format!("metric.{i}")).collect();
    for k in &keys {
        t.observe(Duration::from_secs(1), k, 1);
    }
    let n = allocations(|| {
        for round in 0..10 {
            for k in &keys {
                t.observe(Duration::from_secs(2), k, round);
            }
        }
    });
    assert_eq!(n, 0);
    assert_eq!(t.top(1)[0].count, 1 + 45);
}
