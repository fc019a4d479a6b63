//! Test support shared by the integration tests of several crates (a dev-dependency only):
//! where the local protocol servers started by `./test.sh` answer, and names unique to a
//! test run. A test whose server does not answer fails, saying how to start it: it never
//! skips.
//!
//! Metrics: none.

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
