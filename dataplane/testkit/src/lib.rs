//! Test support shared by the integration tests of several crates (a dev-dependency only):
//! where the local protocol servers started by `./test.sh` answer, and names unique to a
//! test run. A test whose server does not answer fails, saying how to start it: it never
//! skips. Wire-level fakes (for faults no real server produces) read and answer the AWS JSON
//! protocol with [`read_request`] and [`write_aws_json`]; [`kinesis_fake`] is a whole fake
//! Kinesis stream built on them.
//!
//! Metrics: none.

pub mod kinesis_fake;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A local protocol server: the environment variable naming its URL, the URL used without
/// it, and the script that starts it.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    /// Environment variable with the URL.
    pub var: &'static str,
    /// URL when the variable is unset.
    pub default: &'static str,
    /// Script (from the repository root) that installs and starts the server.
    pub script: &'static str,
}

/// kinesis-local (kinesis-mock), the default Kinesis server of the tests.
pub const KINESIS_LOCAL: Server = Server {
    var: "KINESIS_LOCAL_ENDPOINT",
    default: "http://127.0.0.1:4568",
    script: ".ci/servers/kinesis-local.sh",
};

/// kinesalite: AWS's record and call limits, no `ChildShards`.
pub const KINESALITE: Server = Server {
    var: "KINESALITE_ENDPOINT",
    default: "http://127.0.0.1:4570",
    script: ".ci/servers/kinesalite.sh",
};

/// dynalite, a DynamoDB-compatible server.
pub const DYNALITE: Server = Server {
    var: "SWITCHYARD_DYNAMODB_ENDPOINT",
    default: "http://127.0.0.1:4571",
    script: ".ci/servers/dynalite.sh",
};

fn reachable(host_port: &str) -> bool {
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

impl Server {
    /// The server's URL; fails the test when nothing answers there.
    pub fn url(&self) -> String {
        let url = std::env::var(self.var).unwrap_or_else(|_| self.default.to_owned());
        let addr = url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        assert!(
            reachable(addr),
            "nothing answers at {url} ({}): start it with `{}` from the repository root \
             (./test.sh does)",
            self.var,
            self.script
        );
        url
    }
}

/// The Kafka bootstrap brokers (`KAFKA_BROKERS`, default tansu's `127.0.0.1:9092`); fails
/// the test when the first does not answer.
pub fn kafka_brokers() -> String {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let first = brokers.split(',').next().unwrap_or_default();
    assert!(
        reachable(first),
        "no Kafka broker at {brokers}: start tansu with `.ci/servers/tansu.sh` \
         (or point KAFKA_BROKERS at a broker)"
    );
    brokers
}

/// `{prefix}-{pid}-{nanos}`: a topic, stream or table name no other run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// One HTTP/1.1 request as a fake reads it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Header fields, names lower-cased.
    pub headers: HashMap<String, String>,
    /// The body (`Content-Length` framed).
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value, or `""`.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// Reads the next request of a keep-alive connection; `None` once the peer closed it (or
/// sent something that is not a `Content-Length` framed request).
pub fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { headers, body })
}

/// Answers `status` with an `application/x-amz-json-1.1` body; false once the peer is gone.
pub fn write_aws_json(w: &mut impl Write, status: u16, body: &str) -> bool {
    let out = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    w.write_all(out.as_bytes()).is_ok()
}
