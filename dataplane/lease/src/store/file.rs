//! Local file lease store: one JSON file shared by the worker processes of one host.
//!
//! Each operation takes an exclusive `flock` on a sibling lock file (`<file>.lock`; the data
//! file itself is replaced by rename, so it cannot carry the lock), reads and decodes the
//! whole file, applies the compare-and-set, and if anything changed writes a temporary file,
//! `fsync`s it, renames it over the data file and `fsync`s the directory. A crash at any
//! point leaves either the old or the new file, never a torn one. Reads take a shared lock.
//! The blocking work runs on tokio's blocking pool.
//!
//! File layout: `{"version": 1, "leases": [<Lease as JSON>, ...]}` (see docs/LEASES.md).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::LeaseError;
use crate::lease::{Lease, Mutation};
use crate::store::memory::{table_create, table_delete, table_update, Table};
use crate::store::LeaseStore;

/// Largest lease file read (a lease is a few hundred bytes; this is ~100k leases).
const MAX_FILE_BYTES: u64 = 64 << 20;
/// Current file format version.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    leases: Vec<Lease>,
}

#[derive(Debug)]
struct Paths {
    data: PathBuf,
    lock: PathBuf,
    tmp: PathBuf,
}

/// A lease store in one local JSON file, safe across processes of one host.
#[derive(Clone, Debug)]
pub struct FileStore {
    paths: Arc<Paths>,
}

impl FileStore {
    /// A store at `path` (created on the first write; its directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let data = path.into();
        let with_suffix = |suffix: &str| {
            let mut name = data.file_name().unwrap_or_default().to_os_string();
            name.push(suffix);
            data.with_file_name(name)
        };
        FileStore {
            paths: Arc::new(Paths {
                lock: with_suffix(".lock"),
                tmp: with_suffix(".tmp"),
                data,
            }),
        }
    }

    /// The data file's path.
    pub fn path(&self) -> &Path {
        &self.paths.data
    }

    /// Runs `f` on the decoded table under the lock, on the blocking pool; `f` returns its
    /// result and whether the table must be written back.
    async fn with_table<R, F>(
        &self,
        op: &'static str,
        exclusive: bool,
        f: F,
    ) -> Result<R, LeaseError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Table) -> Result<(R, bool), LeaseError> + Send + 'static,
    {
        let paths = Arc::clone(&self.paths);
        tokio::task::spawn_blocking(move || locked(&paths, op, exclusive, f))
            .await
            .map_err(|e| LeaseError::store(op, e))?
    }
}

fn locked<R>(
    paths: &Paths,
    op: &'static str,
    exclusive: bool,
    f: impl FnOnce(&mut Table) -> Result<(R, bool), LeaseError>,
) -> Result<R, LeaseError> {
    let io = |e: std::io::Error| LeaseError::store(op, e);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&paths.lock)
        .map_err(io)?;
    if exclusive {
        lock.lock().map_err(io)?;
    } else {
        lock.lock_shared().map_err(io)?;
    }
    let mut table = read_table(&paths.data).map_err(|e| match e {
        ReadError::Io(e) => io(e),
        ReadError::Corrupt(msg) => LeaseError::Corrupt(format!("{}: {msg}", paths.data.display())),
    })?;
    let (result, dirty) = f(&mut table)?;
    if dirty {
        write_table(paths, &table).map_err(io)?;
    }
    // Dropping `lock` closes the descriptor and releases the flock.
    drop(lock);
    Ok(result)
}

enum ReadError {
    Io(std::io::Error),
    Corrupt(String),
}

fn read_table(path: &Path) -> Result<Table, ReadError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Table::new()),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let mut bytes = Vec::new();
    #[allow(clippy::disallowed_methods)] // capped by `take`
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::Corrupt(format!(
            "larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    if bytes.is_empty() {
        return Ok(Table::new());
    }
    let parsed: FileFormat =
        serde_json::from_slice(&bytes).map_err(|e| ReadError::Corrupt(e.to_string()))?;
    if parsed.version != VERSION {
        return Err(ReadError::Corrupt(format!(
            "unknown version {}",
            parsed.version
        )));
    }
    Ok(parsed
        .leases
        .into_iter()
        .map(|l| (l.key.clone(), l))
        .collect())
}

fn write_table(paths: &Paths, table: &Table) -> std::io::Result<()> {
    let body = FileFormat {
        version: VERSION,
        leases: table.values().cloned().collect(),
    };
    let bytes = serde_json::to_vec_pretty(&body)?;
    let mut tmp = File::create(&paths.tmp)?;
    tmp.write_all(&bytes)?;
    tmp.write_all(b"\n")?;
    tmp.sync_all()?;
    drop(tmp);
    std::fs::rename(&paths.tmp, &paths.data)?;
    // Make the rename itself durable.
    let dir = match paths.data.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

impl LeaseStore for FileStore {
    async fn create_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let lease = lease.clone();
        self.with_table("create", true, move |t| {
            let created = table_create(t, &lease);
            Ok((created, created))
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        self.with_table("list", false, |t| {
            Ok((t.values().cloned().collect(), false))
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        let key = key.to_owned();
        self.with_table("get", false, move |t| Ok((t.get(&key).cloned(), false)))
            .await
    }

    async fn update(
        &self,
        key: &str,
        worker: &str,
        expected: u64,
        mutation: Mutation,
    ) -> Result<Lease, LeaseError> {
        let (key, worker) = (key.to_owned(), worker.to_owned());
        self.with_table(mutation.name(), true, move |t| {
            table_update(t, &key, &worker, expected, &mutation).map(|l| (l, true))
        })
        .await
    }

    async fn delete(&self, key: &str, expected: u64) -> Result<(), LeaseError> {
        let key = key.to_owned();
        self.with_table("delete", true, move |t| {
            table_delete(t, &key, expected).map(|()| ((), true))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::Checkpoint;

    #[tokio::test]
    async fn persists_across_instances_and_fences() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.json");
        let a = FileStore::new(&path);
        assert!(a.list().await.unwrap().is_empty(), "missing file = empty");
        let lease = Lease::new("shardId-000000000001", Checkpoint::TrimHorizon)
            .with_parents(["shardId-000000000000"])
            .with_hash_range(0, u128::MAX);
        assert!(a.create_if_absent(&lease).await.unwrap());
        a.take(&lease.key, "w1", 0).await.unwrap();
        let seq = crate::lease::SequenceNumber::parse(
            "49590338271490256608559692538361571095921575989136588898",
        )
        .unwrap();
        let big = Checkpoint::seq(seq, 3);
        a.checkpoint(&lease.key, "w1", 1, big.clone())
            .await
            .unwrap();

        // A second handle (as another process would) sees the same lease.
        let b = FileStore::new(&path);
        let seen = b.get(&lease.key).await.unwrap().unwrap();
        assert_eq!(seen.counter, 2);
        assert_eq!(seen.checkpoint, big);
        assert_eq!(seen.parents, vec!["shardId-000000000000".to_owned()]);
        assert_eq!(seen.hash_range.unwrap().end, u128::MAX);
        assert!(matches!(
            b.renew(&lease.key, "w1", 1).await,
            Err(LeaseError::Lost { .. })
        ));
        assert!(!dir.path().join("leases.json.tmp").exists());
    }

    #[tokio::test]
    async fn corrupt_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.json");
        std::fs::write(&path, b"{not json").unwrap();
        let s = FileStore::new(&path);
        assert!(matches!(s.list().await, Err(LeaseError::Corrupt(_))));
        let lease = Lease::new("k", Checkpoint::Latest);
        assert!(matches!(
            s.create_if_absent(&lease).await,
            Err(LeaseError::Corrupt(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
    }
}
