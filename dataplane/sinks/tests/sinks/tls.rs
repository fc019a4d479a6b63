//! HTTPS for real: a rustls server with a certificate from a CA generated here (rcgen). With
//! the CA in `ca_file` the datadog sink delivers; without it the handshake fails, and the data
//! is retried and then counted as `retries_exhausted`, not lost silently.

use super::server::{config, payload, run, server, spawn, Server, V1_CAPTURE};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use switchyard_core::egress::Endpoint;
use switchyard_sinks::{DropReason, RequestOutcome, SinkStats};

/// Starts a TLS server; returns it and the CA's PEM.
fn tls_server() -> (Server, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "switchyard test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf_params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    (server().tls(Arc::new(cfg)).start(), ca.pem())
}

fn https_sink(port: u16, extra: &str) -> String {
    format!(
        "[sinks.dd]\ntype = \"datadog\"\nendpoint = \"https://127.0.0.1:{port}\"\nmax_in_flight = 1\n{extra}\n"
    )
}

#[test]
fn https_with_the_private_ca_in_ca_file_delivers() {
    let (srv, ca_pem) = tls_server();
    let ca = std::env::temp_dir().join(format!("sy-sinks-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, ca_pem).unwrap();
    let cfg = config(
        &https_sink(srv.port, &format!("ca_file = \"{}\"", ca.display())),
        &["dd"],
    );
    let st = run(
        spawn(&cfg),
        vec![(
            0,
            payload(Endpoint::SeriesV1, V1_CAPTURE, Some("tls-key"), 1, 2),
        )],
    );
    let _ = std::fs::remove_file(&ca);
    let reqs = srv.drain();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/api/v1/series");
    assert_eq!(reqs[0].header("dd-api-key"), Some("tls-key"));
    assert_eq!(reqs[0].body, V1_CAPTURE.as_bytes());
    assert_eq!(SinkStats::get(&st[0].values_delivered), 2);
    assert_eq!(st[0].requests(RequestOutcome::Success), 1);
}

#[test]
fn https_without_the_ca_fails_the_handshake_and_counts_the_data() {
    let (srv, _) = tls_server();
    let cfg = config(&https_sink(srv.port, "max_retries = 1"), &["dd"]);
    let st = run(
        spawn(&cfg),
        vec![(0, payload(Endpoint::SeriesV1, V1_CAPTURE, Some("k"), 1, 2))],
    );
    assert!(
        srv.drain().is_empty(),
        "no request may pass an untrusted handshake"
    );
    let s = &st[0];
    assert_eq!(
        s.requests(RequestOutcome::Error),
        2,
        "first attempt and one retry"
    );
    assert_eq!(s.dropped(DropReason::RetriesExhausted), 2);
    assert_eq!(SinkStats::get(&s.values_delivered), 0);
}

#[test]
fn a_ca_file_without_certificates_stops_the_sink_from_starting() {
    let bad = std::env::temp_dir().join(format!("sy-sinks-badca-{}.pem", std::process::id()));
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let cfg = config(
        &https_sink(1, &format!("ca_file = \"{}\"", bad.display())),
        &["dd"],
    );
    let err = switchyard_sinks::spawn_sinks(&cfg).unwrap_err();
    let _ = std::fs::remove_file(&bad);
    assert_eq!(err.0, "dd");
    assert!(err.1.to_string().contains("no CERTIFICATE"), "{}", err.1);
}
