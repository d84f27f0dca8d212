//! Readiness of a node: `/readyz` answers 200 only when metadata is loaded and every local replica
//! has recovered. The Metadata actor and the replicas report here; the gateway reads it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use daftka_protocol::GroupId;

#[derive(Default)]
struct Inner {
    /// Set once the metadata state machine has replayed its log.
    metadata_loaded: bool,
    /// Set once the Rebalancer has started every replica placed here (after metadata loaded), so
    /// `recovering` lists all of them: without it, a restarted node would look ready in the moment
    /// between loading metadata and starting its replicas.
    replicas_placed: bool,
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
    /// The Rebalancer has started every replica placed on this node.
    pub fn set_replicas_placed(&self) {
        self.with(|i| i.replicas_placed = true)
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
            } else if !i.replicas_placed {
                Err("local replicas are not started yet".to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Ready needs metadata loaded, replicas placed, and no replica still recovering.
    #[test]
    fn readiness_needs_all_three() {
        let r = Readiness::new();
        assert!(r.check().is_err());
        r.set_metadata_loaded(true);
        assert!(r.check().is_err(), "replicas not placed yet");
        r.replica_recovering(GroupId(1));
        r.set_replicas_placed();
        assert!(r.check().is_err(), "replica 1 still recovering");
        r.replica_ready(GroupId(1));
        assert_eq!(r.check(), Ok(()));
        r.set_metadata_loaded(false);
        assert!(r.check().is_err());
    }
}
