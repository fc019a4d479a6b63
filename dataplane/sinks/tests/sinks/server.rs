//! A wire-level HTTP/1.1 server for the tests (plain or TLS): it reads each request (head
//! and `Content-Length` body, keep-alive), decodes the body per its `Content-Encoding`,
//! records it, and answers from a script (then a default status).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::config::Config;
use switchyard_core::egress::{ApiKey, Egress, Endpoint, IntakePayload};
use switchyard_core::model::{SeriesBatch, SeriesType};
use switchyard_sinks::{spawn_sinks_with, RetryPolicy, SinkRuntime};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Req {
    pub path: String,
    pub headers: HashMap<String, String>,
    /// The body on the wire.
    pub wire: Vec<u8>,
    /// The body after undoing `Content-Encoding`.
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A scripted reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: &str) -> Self {
        self.body = b.into();
        self
    }
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    default: Reply,
    /// When set, each request waits for one message before it is answered.
    gate: Option<Mutex<Receiver<()>>>,
    tx: Mutex<Sender<Req>>,
}

pub struct Server {
    pub port: u16,
    pub rx: Receiver<Req>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next request, or a failure after 20 s.
    pub fn next(&self) -> Req {
        self.rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a request within 20 s")
    }

    /// Every request received so far (after the sinks are shut down: all of them).
    pub fn drain(&self) -> Vec<Req> {
        self.rx.try_iter().collect()
    }
}

pub struct Builder {
    script: Vec<Reply>,
    default: Reply,
    gate: Option<Receiver<()>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

pub fn server() -> Builder {
    Builder {
        script: Vec::new(),
        default: Reply::status(202).body("{\"status\":\"ok\"}"),
        gate: None,
        tls: None,
    }
}

impl Builder {
    pub fn then(mut self, r: Reply) -> Self {
        self.script.push(r);
        self
    }
    pub fn default_reply(mut self, r: Reply) -> Self {
        self.default = r;
        self
    }
    pub fn gate(mut self, g: Receiver<()>) -> Self {
        self.gate = Some(g);
        self
    }
    pub fn tls(mut self, cfg: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(cfg);
        self
    }
    pub fn start(self) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = channel();
        let shared = Arc::new(Shared {
            script: Mutex::new(self.script.into()),
            default: self.default,
            gate: self.gate.map(Mutex::new),
            tx: Mutex::new(tx),
        });
        let tls = self.tls;
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(tcp) = conn else { return };
                let shared = shared.clone();
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve(tcp, &shared),
                    Some(cfg) => {
                        let Ok(c) = rustls::ServerConnection::new(cfg) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(c, tcp), &shared)
                    }
                });
            }
        });
        Server { port, rx }
    }
}

fn decode(encoding: Option<&str>, wire: &[u8]) -> Vec<u8> {
    let mut d = libdeflater::Decompressor::new();
    let mut out = vec![0u8; 64 << 20];
    let n = match encoding {
        None | Some("identity") => return wire.to_vec(),
        Some("gzip") => d.gzip_decompress(wire, &mut out).unwrap(),
        Some("deflate") => d.zlib_decompress(wire, &mut out).unwrap(),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    };
    out.truncate(n);
    out
}

fn serve<S: Read + Write>(stream: S, shared: &Shared) {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers
            .get("content-length")
            .expect("a Content-Length")
            .parse()
            .unwrap();
        let mut wire = vec![0u8; len];
        if r.read_exact(&mut wire).is_err() {
            return;
        }
        let body = decode(headers.get("content-encoding").map(String::as_str), &wire);
        let _ = shared.tx.lock().unwrap().send(Req {
            path,
            headers,
            wire,
            body,
        });
        if let Some(g) = &shared.gate {
            let _ = g.lock().unwrap().recv();
        }
        let reply = shared
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| shared.default.clone());
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&reply.body);
        let s = r.get_mut();
        if s.write_all(out.as_bytes()).is_err() || s.flush().is_err() {
            return;
        }
    }
}

/// A config with the given sinks (TOML) all routed.
pub fn config(sinks: &str, names: &[&str]) -> Config {
    let to: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let src = format!(
        "{sinks}\n[[routes]]\nname = \"r\"\nto = [{}]\n",
        to.join(", ")
    );
    Config::from_toml(&src).unwrap()
}

/// Starts the sinks with quick backoffs (retry counts from the config).
pub fn spawn(cfg: &Config) -> SinkRuntime {
    spawn_with_backoff(cfg, Duration::from_millis(1))
}

/// Starts the sinks with a fixed backoff ceiling.
pub fn spawn_with_backoff(cfg: &Config, backoff: Duration) -> SinkRuntime {
    spawn_sinks_with(cfg, move |sc| RetryPolicy {
        base: backoff,
        cap: backoff,
        ..RetryPolicy::for_sink(sc)
    })
    .unwrap()
}

/// A batch of `n` gauges `m0..` with value i, tag `k:v`, host `h`.
pub fn batch(n: usize) -> Egress {
    let mut b = SeriesBatch::new(1_700_000_000, 10.0);
    for i in 0..n {
        let id = b.identity(&format!("m{i}"), ["k:v"], "h");
        b.push(id, "", SeriesType::Gauge, i as f64);
    }
    Egress::Series(Arc::new(b))
}

/// An intake payload as the intake hands it over.
pub fn payload(
    endpoint: Endpoint,
    body: &str,
    key: Option<&str>,
    series: u64,
    points: u64,
) -> Egress {
    Egress::Payload(Arc::new(IntakePayload::json(
        endpoint,
        body.as_bytes().to_vec(),
        key.map(ApiKey::new),
        series,
        points,
    )))
}

/// Sets an environment variable for this test process (nextest runs each test in its own
/// process, so no other thread reads the environment meanwhile).
pub fn set_env(k: &str, v: &str) {
    std::env::set_var(k, v);
}

/// The v1 capture from datadogpy (`formats.md` §5.2 example): 1 series, 2 points.
pub const V1_CAPTURE: &str =
    include_str!("../../../core/tests/fixtures/captures/ddpy-api_v1-series_plain.json");

/// Sends `items` (sink index, item) through `rt`, shuts it down (draining) and returns each
/// sink's counters.
pub fn run(rt: SinkRuntime, items: Vec<(usize, Egress)>) -> Vec<Arc<switchyard_sinks::SinkStats>> {
    let stats: Vec<_> = rt.handles().iter().map(|h| h.stats.clone()).collect();
    for (i, item) in items {
        rt.handles()[i].tx.send(item).unwrap();
    }
    assert!(rt.shutdown(Duration::from_secs(30)), "drained in time");
    stats
}
