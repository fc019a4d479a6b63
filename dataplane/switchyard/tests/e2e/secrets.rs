//! Secrets never leak: a full run at debug level with a control token, vendor credentials
//! and an intake allow-list, through every path that reports an error (wrong tokens, wrong
//! keys, a vendor that refuses the data and quotes the credential back), a reload and a
//! shutdown; then neither the process's output nor any response body holds a secret.

use super::harness::{http_request, send_raw, Instance, Options};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

/// A vendor that refuses everything with 403 and, as some do, quotes the request's headers
/// (so the credential) back in its error body.
fn echoing_vendor() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(line.trim_end());
                    head.push(' ');
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                let reply = serde_json::json!({
                    "errors": [format!("Forbidden: invalid credentials in request: {head}")]
                })
                .to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            });
        }
    });
    port
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos:x}", std::process::id())
}

#[test]
fn secrets_never_appear_in_logs_config_or_error_bodies() {
    let token = unique("ctl-token");
    let wrong_token = unique("wrong-token");
    let dd_key = unique("dd-key");
    let sfx_token = unique("sfx-token");
    let intake_key = unique("intake-key");
    let wrong_intake_key = unique("wrong-intake-key");
    let vendor = echoing_vendor();

    let dir = std::env::temp_dir().join(unique("sy-secrets"));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("control.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let sy = Instance::start(Options {
        control_extra: format!("token_file = \"{}\"", token_file.display()),
        http_extra: "api_keys_env = \"SY_TEST_INTAKE_KEYS\"".into(),
        extra_sinks: format!(
            "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"http://127.0.0.1:{vendor}\"\n\
             api_key_env = \"SY_TEST_DD_KEY\"\nmax_retries = 0\n\n\
             [sinks.sfx]\ntype = \"signalfx\"\nendpoint = \"http://127.0.0.1:{vendor}\"\n\
             token_env = \"SY_TEST_SFX_TOKEN\"\nmax_retries = 0\n"
        ),
        route_to: vec!["out".into(), "dd".into(), "sfx".into()],
        flush_interval: "1s".into(),
        env: vec![
            ("RUST_LOG".into(), "debug".into()),
            ("SY_TEST_DD_KEY".into(), dd_key.clone()),
            ("SY_TEST_SFX_TOKEN".into(), sfx_token.clone()),
            ("SY_TEST_INTAKE_KEYS".into(), intake_key.clone()),
        ],
        stdout_to_log: true,
        ..Options::default()
    });
    let log = sy.log_handle();
    let mut bodies: Vec<(String, String)> = Vec::new();

    // The config names where the secrets live, never what they are.
    let (status, config) = sy.get("/v1/config");
    assert_eq!(status, 200, "{config}");
    assert!(
        config.contains("SY_TEST_DD_KEY") && config.contains("control.token"),
        "{config}"
    );
    bodies.push(("/v1/config".into(), config));

    // The control API: no token, a wrong one, then the right one.
    let (_, routes) = sy.get("/v1/routes");
    let version = serde_json::from_str::<serde_json::Value>(&routes).unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let table = br#"{"routes": [{"name": "all", "to": ["out", "dd", "sfx"]}]}"#;
    let if_match = format!("If-Match: \"{version}\"");
    let ct = "Content-Type: application/json";
    let put = |auth: Option<&str>| {
        let mut h = vec![ct, if_match.as_str()];
        let bearer;
        if let Some(t) = auth {
            bearer = format!("Authorization: Bearer {t}");
            h.push(&bearer);
        }
        http_request(sy.control, "PUT", "/v1/routes", &h, table)
    };
    let r = put(None);
    assert_eq!(r.status, 401, "{}", r.body);
    bodies.push(("PUT without token".into(), r.body));
    let r = put(Some(&wrong_token));
    assert_eq!(r.status, 401, "{}", r.body);
    bodies.push(("PUT with a wrong token".into(), r.body));
    let r = put(Some(&token));
    assert_eq!(r.status, 200, "{}", r.body);
    bodies.push(("PUT with the token".into(), r.body));

    // The intake: a key off the allow-list, then an accepted one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let series = format!(
        r#"{{"series":[{{"metric":"secrets.http","points":[[{now},1]],"type":"gauge"}}]}}"#
    );
    for (key, want) in [(&wrong_intake_key, 403), (&intake_key, 202)] {
        let h = format!("DD-API-KEY: {key}");
        let r = http_request(
            sy.http,
            "POST",
            "/api/v1/series",
            &[ct, &h],
            series.as_bytes(),
        );
        assert_eq!(r.status, want, "{}", r.body);
        bodies.push((format!("intake with key status {want}"), r.body));
    }

    // Flushed statsd data reaches both vendor sinks, which the vendor refuses, quoting the
    // credential: the sinks log the refusal with the vendor's response.
    send_raw(sy.statsd, &[b"secrets.count:1|c"]);
    for sink in ["dd", "sfx"] {
        sy.wait_metric(
            &format!("switchyard_sink_dropped_values_total{{sink=\"{sink}\",reason=\"rejected\"}}"),
            1.0,
        );
    }
    let refusal = sy.wait_log("vendor rejected the data");
    assert!(
        refusal.contains("Forbidden: invalid credentials"),
        "the vendor's response is not quoted: {refusal}"
    );

    // A reload re-reads everything, and the shutdown flushes and drains.
    sy.signal(libc::SIGHUP);
    sy.wait_log("SIGHUP: configuration reloaded");
    sy.stop();

    let text = log.lock().unwrap().join("\n");
    assert!(
        text.contains("DEBUG"),
        "not at debug level:\n{}",
        &text[..text.len().min(2000)]
    );
    for (name, secret) in [
        ("control token", &token),
        ("wrong control token", &wrong_token),
        ("datadog API key", &dd_key),
        ("signalfx token", &sfx_token),
        ("intake API key", &intake_key),
        ("rejected intake API key", &wrong_intake_key),
    ] {
        if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
            panic!("the {name} is in the process's output: {line}");
        }
        for (what, body) in &bodies {
            assert!(
                !body.contains(secret.as_str()),
                "the {name} is in the body of {what}: {body}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
