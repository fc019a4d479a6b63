//! Persisting accepted route tables: `<state_dir>/routes.json`, `{"version": "...",
//! "routes": [...]}`, replaced atomically (written to a temporary file in the same directory,
//! fsynced, renamed over the old one, then the directory fsynced), so a crash leaves either
//! the old table or the new one, never a torn file.
//!
//! [`load`] reads it back at start. Deciding whether it wins over the config file's routes
//! (it should until the file's routes change) is the caller's.

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

/// Writes `table` atomically (creating `dir` if needed).
///
/// # Errors
/// Any I/O error; the previous file is then untouched.
pub fn store(dir: &Path, table: &Validated) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let doc = serde_json::json!({"version": table.version, "routes": table.routes});
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
pub fn load(dir: &Path) -> std::io::Result<Option<Validated>> {
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
            Ok(Some(Validated {
                version: version.clone(),
                routes: routes.clone(),
            }))
        }
        _ => Err(bad(&format!(
            "{FILE}: expected {{\"version\": \"...\", \"routes\": [...]}}"
        ))),
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
        store(&dir, &a).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(a));
        let b = Validated {
            version: "b".into(),
            routes: serde_json::json!([]),
        };
        store(&dir, &b).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(b));
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
