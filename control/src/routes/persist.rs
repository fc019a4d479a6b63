//! Persisting accepted route tables: `<state_dir>/routes.json`, `{"version": "...",
//! "routes": [...], "file_version": "..."}`, replaced atomically (written to a temporary file
//! in the same directory, fsynced, renamed over the old one, then the directory fsynced), so
//! a crash leaves either the old table or the new one, never a torn file.
//!
//! `file_version` is the version of the config file's `[[routes]]` when the table was
//! accepted: at start the persisted table wins over the file's routes only while they are
//! still that version ([`initial`]), so editing the file's routes takes effect at the next
//! restart or SIGHUP.

use super::Validated;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// File name under the state directory.
pub const FILE: &str = "routes.json";

/// Largest persisted table read back.
const MAX_BYTES: u64 = 64 << 20;

/// Path of the persisted table.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// A table read back from the state directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Persisted {
    /// The table.
    pub table: Validated,
    /// The version of the file's routes when it was accepted (absent in older files).
    pub file_version: Option<String>,
}

/// Writes `table`, accepted while the file's routes were `file_version`, atomically
/// (creating `dir` if needed).
///
/// # Errors
/// Any I/O error; the previous file is then untouched.
pub fn store(dir: &Path, table: &Validated, file_version: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let doc = serde_json::json!({
        "version": table.version,
        "routes": table.routes,
        "file_version": file_version,
    });
    let tmp = dir.join(format!(".{FILE}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(doc.to_string().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    })();
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path(dir))) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Reads the persisted table, `None` when there is none.
///
/// # Errors
/// An I/O error, or `InvalidData` when the file is not a persisted table.
pub fn load(dir: &Path) -> std::io::Result<Option<Persisted>> {
    let f = match std::fs::File::open(path(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    #[allow(clippy::disallowed_methods)] // capped by `take`
    f.take(MAX_BYTES).read_to_end(&mut text)?;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(&format!("{FILE}: {e}")))?;
    match (v.get("version"), v.get("routes")) {
        (Some(serde_json::Value::String(version)), Some(routes @ serde_json::Value::Array(_))) => {
            Ok(Some(Persisted {
                table: Validated {
                    version: version.clone(),
                    routes: routes.clone(),
                },
                file_version: v
                    .get("file_version")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string),
            }))
        }
        _ => Err(bad(&format!(
            "{FILE}: expected {{\"version\": \"...\", \"routes\": [...]}}"
        ))),
    }
}

/// The table to start with: the persisted one when `dir` holds one accepted while the
/// file's routes were `file_version` (the file has not changed since), else `None` (the
/// file's routes win), with a line for the log saying which and why.
pub fn initial(dir: Option<&Path>, file_version: &str) -> (Option<Validated>, String) {
    let Some(dir) = dir else {
        return (None, "no state_dir: starting with the file's routes".into());
    };
    match load(dir) {
        Ok(None) => (None, "no persisted table: starting with the file's routes".into()),
        Ok(Some(p)) if p.file_version.as_deref() == Some(file_version) => {
            let why = format!(
                "starting with the persisted table {} (the file's routes are unchanged since it was accepted)",
                p.table.version
            );
            (Some(p.table), why)
        }
        Ok(Some(p)) => (
            None,
            format!(
                "the file's routes changed since the persisted table {} was accepted: starting with the file's ({file_version})",
                p.table.version
            ),
        ),
        Err(e) => (
            None,
            format!(
                "{}: {e}: starting with the file's routes",
                path(dir).display()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_replaces_atomically_and_load_reads_back() {
        let dir = std::env::temp_dir().join(format!("sy-ctl-persist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(load(&dir).unwrap(), None);
        let a = Validated {
            version: "a".into(),
            routes: serde_json::json!([{"name": "r", "to": ["s"]}]),
        };
        store(&dir, &a, "file-1").unwrap();
        assert_eq!(load(&dir).unwrap().unwrap().table, a);
        let b = Validated {
            version: "b".into(),
            routes: serde_json::json!([]),
        };
        store(&dir, &b, "file-1").unwrap();
        assert_eq!(
            load(&dir).unwrap(),
            Some(Persisted {
                table: b.clone(),
                file_version: Some("file-1".into())
            })
        );
        // The persisted table wins while the file's routes are unchanged.
        assert_eq!(initial(Some(&dir), "file-1").0, Some(b));
        assert_eq!(initial(Some(&dir), "file-2").0, None);
        assert_eq!(initial(None, "file-1").0, None);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from(FILE)],
            "no temp file left"
        );
        std::fs::write(path(&dir), "{\"routes\": 1}").unwrap();
        assert_eq!(
            load(&dir).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
