//! The SignalFx sink: statsd aggregates translated per `formats.md` §5 and POSTed gzip'd with
//! `X-SF-Token`, retried on 503. No SignalFx server runs locally, so a wire-level stand-in
//! (`clients/sfx_capture.py`) records the requests.

use super::harness::{self, close, Instance, Options};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Capture {
    child: Child,
    port: u16,
    out: std::path::PathBuf,
}

impl Capture {
    fn start(fail_first: u32) -> Self {
        let out =
            std::env::temp_dir().join(format!("sy-sfx-{}-{fail_first}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&out);
        let mut child = Command::new(harness::python())
            .arg(harness::clients_dir().join("sfx_capture.py"))
            .arg(&out)
            .arg(fail_first.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Capture {
            child,
            port: line.trim().parse().unwrap(),
            out,
        }
    }

    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

fn datapoint<'a>(reqs: &'a [Value], ty: &str, metric: &str) -> &'a Value {
    let found: Vec<&Value> = reqs
        .iter()
        .filter_map(|r| r["body"][ty].as_array())
        .flatten()
        .filter(|d| d["metric"] == metric)
        .collect();
    assert_eq!(found.len(), 1, "one {ty} `{metric}` expected: {found:?}");
    found[0]
}

#[test]
fn statsd_aggregates_reach_signalfx_translated_and_retried() {
    let sfx = Capture::start(1);
    let token = "sfx-secret-token-7f3a";
    let sy = Instance::start(Options {
        extra_sinks: format!(
            "[sinks.sfx]\ntype = \"signalfx\"\nurl = \"http://127.0.0.1:{}\"\ntoken_env = \"SY_TEST_SFX_TOKEN\"\n",
            sfx.port
        ),
        route_to: vec!["out".into(), "sfx".into()],
        env: vec![("SY_TEST_SFX_TOKEN".into(), token.into())],
        ..Options::default()
    });
    harness::send_raw(
        sy.statsd,
        &[
            b"page.views:1|c|#env:prod,canary\npage.views:4|c|#canary,env:prod",
            b"queue.depth:42|g|#Team:Payments_EU",
            b"lat:10|ms\nlat:30|ms",
        ],
    );
    sy.wait_metric("switchyard_statsd_lines_total{result=\"ok\"}", 5.0);
    let log = sy.log_text();
    let all = sy.stop();
    assert!(!all.is_empty());
    let reqs = sfx.requests();
    assert!(!reqs.is_empty(), "no request reached the capture server");
    for r in &reqs {
        assert_eq!(r["path"], "/v2/datapoint");
        assert_eq!(r["headers"]["x-sf-token"], token);
        assert_eq!(r["headers"]["content-encoding"], "gzip");
    }
    // Datadog `rate` (sum / interval) becomes a SignalFx counter of value x interval.
    let views = datapoint(&reqs, "counter", "page.views");
    assert!(close(views["value"].as_f64().unwrap(), 5.0), "{views}");
    assert_eq!(
        views["dimensions"],
        serde_json::json!({"env": "prod", "unnamed_canary": "canary", "host": "127.0.0.1"})
    );
    assert_eq!(datapoint(&reqs, "gauge", "page.views.count")["value"], 5.0);
    let depth = datapoint(&reqs, "gauge", "queue.depth");
    assert_eq!(depth["value"], 42.0);
    assert_eq!(depth["dimensions"]["Team"], "Payments_EU");
    assert_eq!(datapoint(&reqs, "gauge", "lat.upper")["value"], 30.0);
    assert_eq!(datapoint(&reqs, "counter", "lat.count_ps")["value"], 2.0);
    let ts = views["timestamp"].as_i64().unwrap();
    assert!(ts > 1_700_000_000_000, "milliseconds expected: {ts}");
    // The token never appears in the logs.
    assert!(!log.contains(token));
}
