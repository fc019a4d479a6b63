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
    /// A workers-only host: no statsd listener and no HTTP intake.
    pub no_listeners: bool,
    /// Extra listener entries (TOML values).
    pub extra_listen: Vec<String>,
    /// Extra `[sinks.NAME]` tables (TOML).
    pub extra_sinks: String,
    /// Sinks the route sends to.
    pub route_to: Vec<String>,
    /// Environment for the process.
    pub env: Vec<(String, String)>,
    /// Extra `[http]` keys.
    pub http_extra: String,
    /// Raw `[[routes]]` tables replacing the default route (`all`, to `route_to`).
    pub routes: Option<String>,
    /// Top-level keys (before any table), e.g. `state_dir = "..."`.
    pub top_extra: String,
    /// Extra `[control]` keys (e.g. `token_file`).
    pub control_extra: String,
    /// `[statsd] flush_interval` (`"1h"`: everything lands in the final flush).
    pub flush_interval: String,
    /// Read the process's stdout into the log too (else it goes to /dev/null).
    pub stdout_to_log: bool,
    /// The HTTP intake port (`None`: a free one), for a process that must come back on the
    /// same address.
    pub http_port: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            shards: 1,
            statsd_extra: String::new(),
            no_listeners: false,
            extra_listen: Vec::new(),
            extra_sinks: String::new(),
            route_to: vec!["out".into()],
            env: Vec::new(),
            http_extra: String::new(),
            routes: None,
            top_extra: String::new(),
            control_extra: String::new(),
            flush_interval: "1h".into(),
            stdout_to_log: false,
            http_port: None,
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
    /// HTTP intake port.
    pub http: u16,
    /// NDJSON output file.
    pub out: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    /// Writes a config and starts the binary; returns once it logged that it is ready. The
    /// ports are picked free and released before the binary binds them, so another process
    /// of a parallel test run may take one in between: then it starts again on new ports.
    pub fn start(opts: Options) -> Self {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(opts.clone()) {
                Ok(i) => return i,
                Err(log) if attempt < 4 && log.contains("Address already in use") => {
                    eprintln!("a port was taken before switchyard bound it; starting again");
                }
                Err(log) => panic!("switchyard did not become ready:\n{log}"),
            }
        }
    }

    /// One start: the instance once ready, else its log.
    fn try_start(opts: Options) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-e2e-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (statsd, etsy, control, http) = (
            free_udp_port(),
            free_udp_port(),
            free_tcp_port(),
            opts.http_port.unwrap_or_else(free_tcp_port),
        );
        let out = dir.join("out/series.ndjson");
        let mut listen = vec![
            format!("\"udp://127.0.0.1:{statsd}\""),
            format!("{{ address = \"udp://127.0.0.1:{etsy}\", gauge_dialect = \"etsy\" }}"),
        ];
        listen.extend(opts.extra_listen.iter().cloned());
        let http_listen = format!("127.0.0.1:{http}");
        let (listen, http_listen) = if opts.no_listeners {
            (Vec::new(), "")
        } else {
            (listen, http_listen.as_str())
        };
        let config = format!(
            "{}\n[shards]\ncount = {}\n\n[statsd]\nlisten = [{}]\nflush_interval = \"{}\"\nexpiry_interval = \"0s\"\n{}\n\n\
             [http]\nlisten = \"{http_listen}\"\n{}\n\n\
             [control]\nlisten = \"127.0.0.1:{control}\"\n{}\n\n[sinks.out]\ntype = \"file\"\npath = \"{}\"\n\n\
             {}\n\n{}",
            opts.top_extra,
            opts.shards,
            listen.join(", "),
            opts.flush_interval,
            opts.statsd_extra,
            opts.http_extra,
            opts.control_extra,
            out.display(),
            opts.extra_sinks,
            opts.routes.clone().unwrap_or_else(|| format!(
                "[[routes]]\nname = \"all\"\nto = [{}]\n",
                opts.route_to.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
            ))
        );
        let cfg_path = dir.join("switchyard.toml");
        std::fs::write(&cfg_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env("RUST_LOG", "info")
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(if opts.stdout_to_log {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            let log2 = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    log2.lock().unwrap().push(line);
                }
            });
        }
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
            http,
            out,
            log,
        };
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            return Err(inst.log_text());
        }
        Ok(inst)
    }

    /// The config file the process was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("switchyard.toml")
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, sig) };
    }

    /// Waits (bounded, 60 s) until the log has a line containing `text`, and returns it.
    pub fn wait_log(&self, text: &str) -> String {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(text)) {
                return l.clone();
            }
            if Instant::now() > until {
                panic!("no log line containing {text:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `PUT /v1/routes` with `If-Match: "<if_match>"` and a JSON table, without a token.
    pub fn put_routes(&self, if_match: &str, body: &str) -> RawResponse {
        let req = format!(
            "PUT /v1/routes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIf-Match: \"{if_match}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        http_raw(self.control, req.as_bytes(), 1).remove(0)
    }

    /// The live log (stays readable after [`Instance::stop`], which logs the shutdown).
    pub fn log_handle(&self) -> Arc<Mutex<Vec<String>>> {
        self.log.clone()
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

/// One HTTP response read off a raw connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Body (Content-Length framed).
    pub body: String,
}

impl RawResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `n` responses (Content-Length framed, as the intake always answers) from a stream.
pub fn read_responses(s: &mut TcpStream, n: usize) -> Vec<RawResponse> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    while out.len() < n {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let mut lines = head.split("\r\n");
            let status: u16 = lines
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|c| c.parse().ok())
                .unwrap();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            if status == 100 {
                buf.drain(..end + 4);
                continue;
            }
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                buf.drain(..end + 4 + len);
                out.push(RawResponse {
                    status,
                    headers,
                    body,
                });
                continue;
            }
        }
        let k = s.read(&mut chunk).unwrap();
        assert!(k > 0, "connection closed after {} responses", out.len());
        buf.extend_from_slice(&chunk[..k]);
    }
    out
}

/// Sends raw bytes on a new connection to the HTTP intake and reads `n` responses.
pub fn http_raw(port: u16, request: &[u8], n: usize) -> Vec<RawResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request).unwrap();
    read_responses(&mut s, n)
}

/// POSTs `body` to `path` on the intake with the given extra header lines.
/// Posts one Datadog v1 gauge point (`metric`, value `value`) to the intake with key `k`;
/// asserts it was accepted (202).
pub fn post_point(port: u16, metric: &str, value: u32) {
    let r = post_gauge(port, metric, value);
    assert_eq!(r.status, 202, "{}", r.body);
}

/// Posts one Datadog v1 gauge point (`metric`, value `value`) to the intake with key `k` and
/// returns the answer.
pub fn post_gauge(port: u16, metric: &str, value: u32) -> RawResponse {
    let body = format!(
        "{{\"series\":[{{\"metric\":\"{metric}\",\"points\":[[1700000000,{value}]],\"type\":\"gauge\"}}]}}"
    );
    http_post(
        port,
        "/api/v1/series",
        &["DD-API-KEY: k", "Content-Type: application/json"],
        body.as_bytes(),
    )
}

pub fn http_post(port: u16, path: &str, headers: &[&str], body: &[u8]) -> RawResponse {
    http_request(port, "POST", path, headers, body)
}

/// One request on its own connection (one response read) with the given extra header lines.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> RawResponse {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for h in headers {
        req.extend_from_slice(h.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    http_raw(port, &req, 1).remove(0)
}

/// gzip with libdeflate (as clients do).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let mut out = vec![0u8; c.gzip_compress_bound(data.len())];
    let n = c.gzip_compress(data, &mut out).unwrap();
    out.truncate(n);
    out
}

/// A `loadgen vendor` process: a real HTTP server standing in for Datadog or SignalFx that
/// decodes and counts what it receives.
pub struct Vendor {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl Vendor {
    /// Starts `loadgen vendor --kind KIND` with extra arguments on a free port.
    pub fn start(kind: &str, args: &[&str]) -> Self {
        let exe = Path::new(env!("CARGO_BIN_EXE_switchyard"))
            .parent()
            .unwrap()
            .join("loadgen");
        assert!(
            exe.exists(),
            "{} not built: the workspace test run builds it (cargo build -p loadgen)",
            exe.display()
        );
        let mut child = Command::new(exe)
            .args(["vendor", "--kind", kind, "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected vendor banner {line:?}"));
        Vendor { child, port }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET /stats` as JSON.
    pub fn stats(&self) -> Value {
        let r = http_raw(
            self.port,
            b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            1,
        )
        .remove(0);
        serde_json::from_str(&r.body).unwrap()
    }

    /// `POST /control` with a JSON body (fault injection at run time).
    pub fn control(&self, json: &str) {
        let r = http_post(
            self.port,
            "/control",
            &["Content-Type: application/json"],
            json.as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// One metric's entry in the stats (panics with the whole stats when absent).
    pub fn metric(&self, stats: &Value, name: &str) -> Value {
        let m = &stats["metrics"][name];
        assert!(!m.is_null(), "{name} not received: {stats:#}");
        m.clone()
    }
}

impl Drop for Vendor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
