//! In-memory lease store: one map behind a mutex, shared by clones.
//!
//! For tests and simulations (many coordinators in one process over one store), and for a
//! single-process run that needs no persistence. The map operations here are also what the
//! file store applies to its decoded file under `flock`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::LeaseError;
use crate::lease::{Lease, Mutation};
use crate::store::LeaseStore;

/// Leases keyed by lease key.
pub(crate) type Table = BTreeMap<String, Lease>;

/// Inserts `lease` unless its key exists.
pub(crate) fn table_create(table: &mut Table, lease: &Lease) -> bool {
    if table.contains_key(&lease.key) {
        return false;
    }
    table.insert(lease.key.clone(), lease.clone());
    true
}

/// Compare-and-set `mutation` on one lease of `table`.
pub(crate) fn table_update(
    table: &mut Table,
    key: &str,
    worker: &str,
    expected: u64,
    mutation: &Mutation,
) -> Result<Lease, LeaseError> {
    let Some(current) = table.get_mut(key) else {
        return Err(LeaseError::NotFound {
            key: key.to_owned(),
        });
    };
    let next = mutation.apply(current, worker, expected)?;
    *current = next.clone();
    Ok(next)
}

/// Compare-and-set delete.
pub(crate) fn table_delete(table: &mut Table, key: &str, expected: u64) -> Result<(), LeaseError> {
    match table.get(key) {
        None => Err(LeaseError::NotFound {
            key: key.to_owned(),
        }),
        Some(l) if l.counter != expected => Err(LeaseError::Conflict {
            key: key.to_owned(),
        }),
        Some(_) => {
            table.remove(key);
            Ok(())
        }
    }
}

/// An in-process lease store; clones share the same leases.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    table: Arc<Mutex<Table>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave a half-applied lease (each operation
        // replaces a whole record), so a poisoned map is still consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of every lease, without going through the async API (for tests and views).
    pub fn snapshot(&self) -> Vec<Lease> {
        self.lock().values().cloned().collect()
    }
}

impl LeaseStore for MemoryStore {
    async fn create_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        Ok(table_create(&mut self.lock(), lease))
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        Ok(self.snapshot())
    }

    async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        Ok(self.lock().get(key).cloned())
    }

    async fn update(
        &self,
        key: &str,
        worker: &str,
        expected: u64,
        mutation: Mutation,
    ) -> Result<Lease, LeaseError> {
        table_update(&mut self.lock(), key, worker, expected, &mutation)
    }

    async fn delete(&self, key: &str, expected: u64) -> Result<(), LeaseError> {
        table_delete(&mut self.lock(), key, expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::Checkpoint;

    #[tokio::test]
    async fn cas_semantics() {
        let s = MemoryStore::new();
        let lease = Lease::new("s0", Checkpoint::TrimHorizon);
        assert!(s.create_if_absent(&lease).await.unwrap());
        assert!(!s.create_if_absent(&lease).await.unwrap());
        let a = s.take("s0", "a", 0).await.unwrap();
        assert_eq!((a.counter, a.owner.as_deref()), (1, Some("a")));
        // b raced with the same counter and lost.
        assert!(matches!(
            s.take("s0", "b", 0).await,
            Err(LeaseError::Conflict { .. })
        ));
        let b = s.take("s0", "b", 1).await.unwrap();
        // a's renew and checkpoint are fenced out.
        assert!(matches!(
            s.renew("s0", "a", 1).await,
            Err(LeaseError::Lost { .. })
        ));
        assert!(matches!(
            s.checkpoint("s0", "a", 2, Checkpoint::seq(1, 0)).await,
            Err(LeaseError::Lost { .. })
        ));
        assert!(s.renew("s0", "b", b.counter).await.is_ok());
        assert!(matches!(
            s.delete("s0", 0).await,
            Err(LeaseError::Conflict { .. })
        ));
        s.delete("s0", 3).await.unwrap();
        assert!(s.get("s0").await.unwrap().is_none());
        assert!(matches!(
            s.renew("s0", "b", 3).await,
            Err(LeaseError::NotFound { .. })
        ));
    }
}
