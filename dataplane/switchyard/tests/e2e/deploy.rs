//! Deployment files: the systemd unit verifies, the example config validates, and the
//! install script lays the files out.

use super::harness::repo_root;
use std::process::Command;

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sy-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn example_config_validates() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["validate", "--config"])
        .arg(repo_root().join("systemd/switchyard.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_unit_verifies() {
    // systemd-analyze is part of Debian's systemd package; .ci/run installs it when missing.
    let dir = scratch("unit");
    let unit = std::fs::read_to_string(repo_root().join("systemd/switchyard.service")).unwrap();
    // Point the unit at the binary under test, which exists, instead of /usr/local/bin.
    let unit = unit.replace(
        "/usr/local/bin/switchyard",
        env!("CARGO_BIN_EXE_switchyard"),
    );
    let path = dir.join("switchyard.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("Unknown key") && !stderr.contains("Failed to parse"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn install_script_lays_out_files_under_a_root() {
    let root = scratch("root");
    let out = Command::new("bash")
        .arg(repo_root().join("systemd/install.sh"))
        .args(["--root"])
        .arg(&root)
        .args(["--binary", env!("CARGO_BIN_EXE_switchyard"), "--no-start"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "usr/local/bin/switchyard",
        "etc/systemd/system/switchyard.service",
        "etc/switchyard/switchyard.toml",
        "etc/default/switchyard",
        "etc/sysctl.d/60-switchyard.conf",
    ] {
        assert!(root.join(f).exists(), "{f} missing");
    }
    // The environment file holds the vendor keys: not world-readable.
    use std::os::unix::fs::PermissionsExt;
    for f in ["etc/default/switchyard", "etc/switchyard/switchyard.toml"] {
        let mode = std::fs::metadata(root.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o640, "{f}: {mode:o}");
    }
    let _ = std::fs::remove_dir_all(root);
}

/// The `Key=value` lines of the unit's `[Service]` section.
fn service_directives() -> Vec<(String, String)> {
    let unit = std::fs::read_to_string(repo_root().join("systemd/switchyard.service")).unwrap();
    unit.lines()
        .skip_while(|l| l.trim() != "[Service]")
        .take_while(|l| !l.trim().starts_with("[Install]"))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn systemd_unit_is_hardened() {
    let d = service_directives();
    let all = |k: &str| -> Vec<&str> {
        d.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |k: &str| -> String {
        let v = all(k);
        assert_eq!(v.len(), 1, "{k}: {v:?}");
        v[0].to_string()
    };
    assert_eq!(one("User"), "switchyard");
    assert_eq!(one("Group"), "switchyard");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    // Writable: the state directory only (RuntimeDirectory= is writable by construction).
    assert_eq!(one("StateDirectory"), "switchyard");
    assert_eq!(one("ReadWritePaths"), "/var/lib/switchyard");
    // No capabilities (a privileged port needs a drop-in, see systemd/README.md).
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert_eq!(one("AmbientCapabilities"), "");
    // The usual allow-list plus the io_uring calls glommio makes.
    let filter = all("SystemCallFilter").join(" ");
    for call in [
        "@system-service",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ] {
        assert!(
            filter.split_whitespace().any(|w| w == call),
            "SystemCallFilter lacks {call}: {filter}"
        );
    }
    assert_eq!(one("SystemCallArchitectures"), "native");
    // The config's state_dir is the unit's state directory.
    let cfg = std::fs::read_to_string(repo_root().join("systemd/switchyard.toml")).unwrap();
    assert!(
        cfg.lines()
            .any(|l| l.trim() == "state_dir = \"/var/lib/switchyard\""),
        "systemd/switchyard.toml: state_dir is not /var/lib/switchyard"
    );
}

/// Every system call named by `systemd-analyze syscall-filter GROUP`, groups expanded.
fn expand_filter(group: &str, out: &mut std::collections::BTreeSet<String>) {
    let o = Command::new("systemd-analyze")
        .args(["syscall-filter", group])
        .output()
        .expect("systemd-analyze");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for l in String::from_utf8_lossy(&o.stdout).lines().skip(1) {
        let name = l.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if name.starts_with('@') {
            expand_filter(name, out);
        } else {
            out.insert(name.to_string());
        }
    }
}

/// systemd-run cannot start a unit here (systemd is not PID 1 in this container, see
/// systemd/README.md), so the filter is checked the other way round: every system call the
/// real binary makes through start, UDP and HTTP ingest, a flush to a file sink and a clean
/// SIGTERM shutdown (traced with strace, threads included) is allowed by the unit's
/// `SystemCallFilter=` lines as this host's systemd expands them.
#[test]
fn every_system_call_the_binary_makes_is_allowed_by_the_unit_filter() {
    use super::harness::{free_tcp_port, free_udp_port, http_post, send_raw};
    use std::io::{BufRead, BufReader};
    let strace = Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "strace is required (Debian package strace)"
    );
    let mut allowed = std::collections::BTreeSet::new();
    for (k, v) in service_directives() {
        if k == "SystemCallFilter" {
            for w in v.split_whitespace() {
                if w.starts_with('@') {
                    expand_filter(w, &mut allowed);
                } else {
                    allowed.insert(w.to_string());
                }
            }
        }
    }
    let dir = scratch("seccomp");
    let (statsd, http, control) = (free_udp_port(), free_tcp_port(), free_tcp_port());
    let cfg = dir.join("switchyard.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{d}/state\"\n[shards]\ncount = 1\n[statsd]\nlisten = [\"udp://127.0.0.1:{statsd}\"]\n\
             flush_interval = \"200ms\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [control]\nlisten = \"127.0.0.1:{control}\"\n\
             [sinks.out]\ntype = \"file\"\npath = \"{d}/out.ndjson\"\n\
             [[routes]]\nname = \"all\"\nto = [\"out\"]\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let trace = dir.join("trace.txt");
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for l in lines.by_ref().map_while(Result::ok) {
        log.push_str(&l);
        log.push('\n');
        if l.contains("switchyard ready") {
            break;
        }
    }
    assert!(log.contains("switchyard ready"), "{log}");
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    send_raw(statsd, &[b"seccomp.count:1|c"]);
    let r = http_post(
        http,
        "/api/v1/series",
        &["Content-Type: application/json", "DD-API-KEY: k"],
        br#"{"series":[{"metric":"seccomp.http","points":[[1700000000,1]],"type":"gauge"}]}"#,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let out = dir.join("out.ndjson");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&out).is_ok_and(|t| t.contains("seccomp.count")) {
        assert!(std::time::Instant::now() < until, "nothing flushed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // strace's only child is switchyard: SIGTERM it for a clean shutdown.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: kill(2) on the switchyard process this test started (strace's child).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut made = std::collections::BTreeSet::new();
    for l in text.lines() {
        // "PID name(args) = ret", "PID <... name resumed>", "PID +++ exited" ...
        let rest = l.split_once(' ').map_or(l, |(_, r)| r).trim_start();
        let rest = rest.strip_prefix("<... ").unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].starts_with(['(', ' ']) && name != "exited" {
            made.insert(name);
        }
    }
    assert!(
        made.contains("io_uring_setup") && made.contains("io_uring_enter"),
        "the trace shows no io_uring: {made:?}"
    );
    // execve is strace starting the binary (before any filter would apply under systemd,
    // which installs it in the same exec: allowed by @system-service anyway).
    let denied: Vec<&String> = made.iter().filter(|c| !allowed.contains(*c)).collect();
    assert!(
        denied.is_empty(),
        "system calls outside the unit's SystemCallFilter: {denied:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
