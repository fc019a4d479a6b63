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
