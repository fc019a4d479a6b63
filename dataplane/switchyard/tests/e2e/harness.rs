//! Starting a real `switchyard`, reading its metrics and its NDJSON output.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Directory of the client scripts.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/clients")
}

/// The virtualenv's Python, with the real client libraries installed by ./test.sh.
pub fn python() -> PathBuf {
    let p = std::env::var_os("SWITCHYARD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "{} not found: run ./test.sh, which installs the Python clients",
        p.display()
    );
    p
}

/// Runs a client and asserts it succeeded.
pub fn run_client(program: &Path, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(clients_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {:?} failed: {}\n{}",
        program.display(),
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a Python client script from `clients/`.
pub fn run_python(script: &str, args: &[&str]) {
    let mut all = vec![script];
    all.extend_from_slice(args);
    run_client(&python(), &all);
}

/// Runs the hot-shots client (node_modules installed by ./test.sh).
pub fn run_node(script: &str, args: &[&str]) {
    assert!(
        clients_dir().join("node_modules/hot-shots").exists(),
        "hot-shots not installed: run ./test.sh, which runs npm ci in {}",
        clients_dir().display()
    );
    let mut all = vec![script];
    all.extend_from_slice(args);
    run_client(Path::new("node"), &all);
}

/// A free UDP port on loopback.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How to configure an instance.
#[derive(Debug, Clone)]
pub struct Options {
    /// Shard count.
    pub shards: usize,
    /// Extra `[statsd]` keys.
    pub statsd_extra: String,
    /// Extra listener entries (TOML values).
    pub extra_listen: Vec<String>,
    /// Extra `[sinks.NAME]` tables (TOML).
    pub extra_sinks: String,
    /// Sinks the route sends to.
    pub route_to: Vec<String>,
    /// Environment for the process.
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            shards: 1,
            statsd_extra: String::new(),
            extra_listen: Vec::new(),
            extra_sinks: String::new(),
            route_to: vec!["out".into()],
            env: Vec::new(),
        }
    }
}

/// A running switchyard.
pub struct Instance {
    child: Option<Child>,
    /// Scratch directory of this instance.
    pub dir: PathBuf,
    /// DogStatsD-dialect UDP port.
    pub statsd: u16,
    /// Etsy-dialect UDP port.
    pub etsy: u16,
    /// Control port.
    pub control: u16,
    /// NDJSON output file.
    pub out: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    /// Writes a config and starts the binary; returns once it logged that it is ready.
    pub fn start(opts: Options) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-e2e-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (statsd, etsy, control) = (free_udp_port(), free_udp_port(), free_tcp_port());
        let out = dir.join("out/series.ndjson");
        let mut listen = vec![
            format!("\"udp://127.0.0.1:{statsd}\""),
            format!("{{ address = \"udp://127.0.0.1:{etsy}\", gauge_dialect = \"etsy\" }}"),
        ];
        listen.extend(opts.extra_listen.iter().cloned());
        let config = format!(
            "[shards]\ncount = {}\n\n[statsd]\nlisten = [{}]\nflush_interval = \"1h\"\nexpiry_interval = \"0s\"\n{}\n\n\
             [control]\nlisten = \"127.0.0.1:{control}\"\n\n[sinks.out]\ntype = \"file\"\npath = \"{}\"\n\n\
             {}\n\n[[routes]]\nname = \"all\"\nto = [{}]\n",
            opts.shards,
            listen.join(", "),
            opts.statsd_extra,
            out.display(),
            opts.extra_sinks,
            opts.route_to.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
        );
        let cfg_path = dir.join("switchyard.toml");
        std::fs::write(&cfg_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env("RUST_LOG", "info")
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("switchyard ready") {
                    let _ = ready_tx.send(());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let inst = Instance {
            child: Some(child),
            dir,
            statsd,
            etsy,
            control,
            out,
            log,
        };
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!("switchyard did not become ready:\n{}", inst.log_text());
        }
        inst
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// GETs a control path and returns (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.control)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        #[allow(clippy::disallowed_methods)] // capped by `take`
        s.take(16 << 20).read_to_string(&mut resp).unwrap();
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// The value of one Prometheus series (exact name with labels), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                l.rsplit_once(' ')
                    .filter(|(k, _)| *k == series)
                    .and_then(|(_, v)| v.parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Waits (bounded, 60 s) until a metric reaches `at_least`; panics with the log otherwise.
    pub fn wait_metric(&self, series: &str, at_least: f64) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.metric(series);
            if v >= at_least {
                return;
            }
            if Instant::now() > until {
                panic!(
                    "{series} stayed at {v} (< {at_least}):\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM, waits for a clean exit, and returns every flushed series object.
    pub fn stop(mut self) -> Vec<Value> {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > until {
                let _ = child.kill();
                panic!(
                    "switchyard did not exit after SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            status.success(),
            "exit status {status}:\n{}",
            self.log_text()
        );
        read_series(&self.out)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Parses an NDJSON file (empty when absent).
pub fn read_series(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The one series object named `metric` with exactly `tags`; panics if there is not exactly one.
pub fn series<'a>(all: &'a [Value], metric: &str, tags: &[&str]) -> &'a Value {
    let found: Vec<&Value> = all
        .iter()
        .filter(|s| {
            s["metric"] == metric
                && s["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap())
                    .collect::<Vec<_>>()
                    == tags
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one `{metric}` {tags:?}, found {found:?}"
    );
    found[0]
}

/// The value of the one series named `metric` with `tags`.
pub fn value(all: &[Value], metric: &str, tags: &[&str]) -> f64 {
    series(all, metric, tags)["points"][0][1].as_f64().unwrap()
}

/// Asserts that no (metric, tags, host) appears twice: every series is emitted exactly once.
pub fn assert_exactly_once(all: &[Value]) {
    let mut seen = std::collections::HashSet::new();
    for s in all {
        let key = (
            s["metric"].to_string(),
            s["tags"].to_string(),
            s["host"].to_string(),
        );
        assert!(seen.insert(key.clone()), "series emitted twice: {key:?}");
    }
}

/// Sends raw datagrams to a UDP port.
pub fn send_raw(port: u16, datagrams: &[&[u8]]) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in datagrams {
        s.send_to(d, ("127.0.0.1", port)).unwrap();
    }
}

/// Approximate equality for derived values.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}
