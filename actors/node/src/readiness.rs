//! Readiness of a node: `/readyz` answers 200 only when metadata is loaded and every local replica
//! has recovered. The Metadata actor and the replicas report here; the gateway reads it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use daftka_protocol::GroupId;

#[derive(Default)]
struct Inner {
    /// Set once the metadata state machine has replayed its log.
    metadata_loaded: bool,
    /// Replicas this node should host whose Raft actor has not finished recovery yet.
    recovering: BTreeSet<GroupId>,
}

/// Shared readiness flags of one node. Cheap to clone.
#[derive(Clone, Default)]
pub struct Readiness {
    inner: Arc<Mutex<Inner>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A poisoned lock only means a panic elsewhere mid-update of plain flags: keep going.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
    pub fn set_metadata_loaded(&self, loaded: bool) {
        self.with(|i| i.metadata_loaded = loaded)
    }
    /// A replica this node hosts starts recovering.
    pub fn replica_recovering(&self, group: GroupId) {
        self.with(|i| i.recovering.insert(group));
    }
    /// A replica finished recovery, or was removed.
    pub fn replica_ready(&self, group: GroupId) {
        self.with(|i| i.recovering.remove(&group));
    }
    /// Whether the node is ready; otherwise why not.
    pub fn check(&self) -> Result<(), String> {
        self.with(|i| {
            if !i.metadata_loaded {
                Err("metadata is not loaded".to_string())
            } else if let Some(g) = i.recovering.iter().next() {
                Err(format!(
                    "{} local replica(s) still recovering, first {g}",
                    i.recovering.len()
                ))
            } else {
                Ok(())
            }
        })
    }
}
