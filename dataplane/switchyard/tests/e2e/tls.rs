//! TLS on the HTTP intake and the control API: curl, verifying against the test's own CA,
//! posts a payload over HTTPS and reads `/v1/stats`; after the certificate files are
//! replaced by ones from another CA and SIGHUP, new handshakes present the new certificate.

use super::harness::{Instance, Options};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and a `localhost` server certificate it signed, written as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path, name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("switchyard test CA {name}"),
    );
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("switchyard {name}"));
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let out = Pki {
        ca: dir.join(format!("ca-{name}.pem")),
        cert: dir.join(format!("cert-{name}.pem")),
        key: dir.join(format!("key-{name}.pem")),
    };
    std::fs::write(&out.ca, ca.pem()).unwrap();
    std::fs::write(&out.cert, cert.pem()).unwrap();
    std::fs::write(&out.key, key.serialize_pem()).unwrap();
    out
}

/// curl against `https://localhost:PORT/PATH` (resolved to 127.0.0.1), trusting only `ca`:
/// `Ok((status, body))`, or `Err(curl's stderr)` when the connection or verification failed.
fn curl(
    ca: &Path,
    port: u16,
    path: &str,
    post: Option<(&str, &[&str])>,
) -> Result<(u16, String), String> {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "30", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["--write-out", "\n%{http_code}"]);
    if let Some((body, headers)) = post {
        cmd.args(["--data-binary", body]);
        for h in headers {
            cmd.args(["-H", h]);
        }
    }
    let out = cmd
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("curl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    Ok((code.trim().parse().unwrap(), body.to_string()))
}

#[test]
fn tls_on_intake_and_control_with_certificate_reload_on_sighup() {
    let dir = std::env::temp_dir().join(format!("sy-tls-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let first = pki(&dir, "first");
    let second = pki(&dir, "second");
    // The files the config names; the first pair is in them at start.
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let tls = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        cert.display(),
        key.display()
    );
    let sy = Instance::start(Options {
        http_extra: tls.clone(),
        control_extra: tls,
        ..Options::default()
    });

    let series = r#"{"series":[{"metric":"tls.intake","points":[[1700000000,7]],"type":"gauge"}]}"#;
    let post = |ca: &Path, metric: &str| {
        let body = series.replace("tls.intake", metric);
        curl(
            ca,
            sy.http,
            "/api/v1/series",
            Some((&body, &["Content-Type: application/json", "DD-API-KEY: k"])),
        )
    };
    let (status, body) = post(&first.ca, "tls.first").unwrap();
    assert_eq!(status, 202, "{body}");
    let (status, stats) = curl(&first.ca, sy.control, "/v1/stats", None).unwrap();
    assert_eq!(status, 200, "{stats}");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(stats.is_object(), "{stats}");
    // A client that trusts another CA refuses the certificate.
    let e = curl(&second.ca, sy.control, "/healthz", None).unwrap_err();
    assert!(e.contains("certificate"), "{e}");

    // Swap the files, SIGHUP: new handshakes present the second certificate.
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    sy.signal(libc::SIGHUP);
    sy.wait_log("SIGHUP: configuration reloaded");
    assert!(
        sy.log_text()
            .matches("SIGHUP: TLS certificate reloaded")
            .count()
            >= 2,
        "{}",
        sy.log_text()
    );
    for port in [sy.http, sy.control] {
        let e = curl(&first.ca, port, "/healthz", None).unwrap_err();
        assert!(e.contains("certificate"), "port {port}: {e}");
    }
    let (status, body) = post(&second.ca, "tls.second").unwrap();
    assert_eq!(status, 202, "{body}");
    let (status, _) = curl(&second.ca, sy.control, "/v1/stats", None).unwrap();
    assert_eq!(status, 200);

    // A key that does not match the certificate: the reload is refused, the second pair
    // stays in force.
    std::fs::copy(&first.key, &key).unwrap();
    sy.signal(libc::SIGHUP);
    sy.wait_log("TLS certificate not reloaded");
    let (status, _) = curl(&second.ca, sy.control, "/healthz", None).unwrap();
    assert_eq!(status, 200);

    let all = sy.stop();
    for metric in ["tls.first", "tls.second"] {
        assert!(
            all.iter().any(|s| s["metric"] == metric),
            "{metric} missing: {all:?}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
