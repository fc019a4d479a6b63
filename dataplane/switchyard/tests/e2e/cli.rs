//! The command line: print-config, validate, and clear errors.

use std::process::Command;

fn switchyard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn printed_default_config_validates() {
    let out = switchyard(&["print-config"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[statsd]") && text.contains("# "),
        "commented config expected"
    );
    let path = std::env::temp_dir().join(format!("sy-default-{}.toml", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let v = switchyard(&["validate", "--config", path.to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let _ = std::fs::remove_file(path);
}

#[test]
fn validate_names_the_key_and_line() {
    let path = std::env::temp_dir().join(format!("sy-bad-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[sinks.a]\ntype = \"blackhole\"\n\n[[routes]]\nname = \"r\"\nto = [\"nope\"]\n",
    )
    .unwrap();
    let v = switchyard(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1));
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(
        err.contains("line 6")
            && err.contains("routes[0].to[0]")
            && err.contains("unknown sink `nope`"),
        "{err}"
    );
    std::fs::write(&path, "[statsd]\nflush_interval = 10\n").unwrap();
    let v = switchyard(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stderr).contains("line 2"));
    let _ = std::fs::remove_file(path);
}

#[test]
fn run_fails_clearly_when_the_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let path = std::env::temp_dir().join(format!("sy-taken-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!("[statsd]\nlisten = [\"udp://127.0.0.1:0\"]\n[control]\nlisten = \"127.0.0.1:{port}\"\n[sinks.b]\ntype = \"blackhole\"\n[[routes]]\nname = \"r\"\nto = [\"b\"]\n"),
    )
    .unwrap();
    let out = switchyard(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("binding control listener"));
    let _ = std::fs::remove_file(path);
}
