//! Runs the real `loadgen statsd` binary against a UDP socket on loopback and checks that what
//! arrived matches the summary it printed: lines, datagrams and the counter sums a benchmark
//! compares with the dataplane's flushed `.count` values. No timing is asserted.

// Failing loudly is how a test reports; the helpers below are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// What the receiver saw.
#[derive(Debug, Default)]
struct Received {
    datagrams: u64,
    lines: u64,
    counter_lines: u64,
    counter_sum: u64,
    largest_datagram: usize,
}

/// A loopback UDP receiver with a large buffer, so nothing is dropped while the test thread
/// is descheduled.
fn receiver() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let size: libc::c_int = 32 << 20;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid socket fd and a pointer to a live c_int of the stated length.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            break;
        }
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    socket
}

/// Reads datagrams until `done` is set and the socket has been quiet for a read timeout,
/// checking that every line parses as `name:value|type[|#tags]`.
fn receive(socket: UdpSocket, done: Arc<AtomicBool>, tags: bool) -> Received {
    let mut got = Received::default();
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(_) if done.load(Ordering::SeqCst) => return got,
            Err(_) => continue,
        };
        got.datagrams += 1;
        got.largest_datagram = got.largest_datagram.max(n);
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        for line in text.split('\n') {
            got.lines += 1;
            let (name, rest) = line.split_once(':').unwrap();
            assert!(name.starts_with("lg.m"), "{line:?}");
            let mut fields = rest.split('|');
            let value = fields.next().unwrap();
            let kind = fields.next().unwrap();
            assert!(["c", "g", "ms", "s"].contains(&kind), "{line:?}");
            match fields.next() {
                Some(t) => assert!(tags && t.starts_with("#env:prod,svc:s"), "{line:?}"),
                None => assert!(!tags, "{line:?}"),
            }
            assert!(fields.next().is_none(), "{line:?}");
            if kind == "c" {
                got.counter_lines += 1;
                got.counter_sum += value.parse::<u64>().unwrap();
            }
        }
    }
}

/// Runs the binary with `extra` arguments against a fresh receiver; returns the parsed
/// summary, stdout, the summary file's contents and what arrived.
fn run(name: &str, extra: &[&str], tags: bool) -> (Value, String, String, Received) {
    let socket = receiver();
    let target = socket.local_addr().unwrap().to_string();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        thread::spawn(move || receive(socket, done, tags))
    };
    let summary_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("loadgen-{name}-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "statsd",
            "--target",
            &target,
            "--no-progress",
            "--summary-file",
        ])
        .arg(&summary_path)
        .args(extra)
        .output()
        .unwrap();
    done.store(true, Ordering::SeqCst);
    let received = reader.join().unwrap();
    assert!(
        output.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout:?}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    let file = std::fs::read_to_string(&summary_path).unwrap();
    std::fs::remove_file(&summary_path).unwrap();
    (summary, stdout, file, received)
}

fn field(summary: &Value, name: &str) -> u64 {
    summary[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {summary}"))
}

#[test]
fn received_lines_and_counters_match_the_summary() {
    let (summary, stdout, file, got) = run(
        "tags",
        &[
            "--rate",
            "20000",
            "--duration",
            "1",
            "--series",
            "1000",
            "--tags",
            "--seed",
            "5",
        ],
        true,
    );
    assert_eq!(file.trim_end(), stdout.trim_end());
    for key in [
        "sent_lines",
        "sent_datagrams",
        "seconds",
        "sent_counter_lines",
        "sent_counter_value_sum",
        "offered_rate",
        "achieved_rate",
        "send_retries",
    ] {
        assert!(summary.get(key).is_some(), "{key} missing from {summary}");
    }
    assert!(field(&summary, "sent_lines") > 0);
    assert!(field(&summary, "sent_lines") <= 20_000);
    assert_eq!(got.lines, field(&summary, "sent_lines"));
    assert_eq!(got.datagrams, field(&summary, "sent_datagrams"));
    assert_eq!(got.counter_lines, field(&summary, "sent_counter_lines"));
    assert_eq!(got.counter_sum, field(&summary, "sent_counter_value_sum"));
    assert!(got.counter_lines > 0);
    assert!(got.largest_datagram <= 1400);
}

#[test]
fn plain_lines_small_datagrams_and_a_type_subset() {
    let (summary, _, _, got) = run(
        "plain",
        &[
            "--rate",
            "5000",
            "--duration",
            "0.5",
            "--series",
            "10",
            "--types",
            "c,g",
            "--datagram-bytes",
            "200",
        ],
        false,
    );
    assert_eq!(got.lines, field(&summary, "sent_lines"));
    assert_eq!(got.datagrams, field(&summary, "sent_datagrams"));
    assert_eq!(got.counter_sum, field(&summary, "sent_counter_value_sum"));
    assert!(got.largest_datagram <= 200);
}

#[test]
fn invalid_arguments_fail_without_a_summary() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "statsd",
            "--target",
            "127.0.0.1:9",
            "--rate",
            "10",
            "--duration",
            "1",
            "--series",
            "1000",
            "--datagram-bytes",
            "8",
            "--no-progress",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--datagram-bytes"), "{stderr}");
}
