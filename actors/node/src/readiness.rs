//! Readiness of a node: `/readyz` answers 200 only when metadata is loaded, every local replica
//! has recovered, and the node is not cut off from the majority of the cluster. The Metadata
//! actor, the replicas and the Cluster actor report here; the gateway reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use daftka_protocol::GroupId;

#[derive(Default)]
struct Inner {
    /// Set once the metadata state machine has replayed its log.
    metadata_loaded: bool,
    /// Set once the Placement has started every replica placed here (after metadata loaded), so
    /// `recovering` lists all of them: without it, a restarted node would look ready in the moment
    /// between loading metadata and starting its replicas.
    replicas_placed: bool,
    /// Replicas this node should host whose Raft actor has not finished recovery yet.
    recovering: BTreeSet<GroupId>,
    /// Registered names of the Raft actors of every replica placed here: a replica whose actor is
    /// not registered (killed, not yet restarted) makes the node not ready, even in the moment
    /// before anybody noticed.
    expected_rafts: BTreeMap<GroupId, String>,
    /// Why the node is degraded: it reaches no majority of the cluster.
    cut_off: Option<String>,
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
    /// The Placement has started every replica placed on this node.
    pub fn set_replicas_placed(&self) {
        self.with(|i| i.replicas_placed = true)
    }
    /// The replicas placed on this node, by the registered name of their Raft actor.
    pub fn set_expected_replicas(&self, rafts: BTreeMap<GroupId, String>) {
        self.with(|i| i.expected_rafts = rafts)
    }
    /// The node reaches no majority of the cluster (`Some(why)`), or does again (`None`).
    pub fn set_cut_off(&self, why: Option<String>) {
        self.with(|i| i.cut_off = why)
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
            } else if let Some(why) = &i.cut_off {
                Err(format!("degraded: {why}"))
            } else if !i.replicas_placed {
                Err("local replicas are not started yet".to_string())
            } else if let Some(g) = i
                .expected_rafts
                .iter()
                .find(|(_, name)| ractor::registry::where_is(name).is_none())
                .map(|(g, _)| *g)
            {
                Err(format!("local replica {g} is not running"))
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
        r.set_cut_off(Some("reaches 1 of 3 nodes".into()));
        assert_eq!(r.check(), Err("degraded: reaches 1 of 3 nodes".to_string()));
        r.set_cut_off(None);
        assert_eq!(r.check(), Ok(()));
        r.set_metadata_loaded(false);
        assert!(r.check().is_err());
    }

    /// A placed replica whose Raft actor is not registered makes the node not ready.
    #[test]
    fn a_missing_raft_actor_is_not_ready() {
        let r = Readiness::new();
        r.set_metadata_loaded(true);
        r.set_replicas_placed();
        assert_eq!(r.check(), Ok(()));
        r.set_expected_replicas(BTreeMap::from([(
            GroupId(7),
            "daftka.readiness-test.replica.7.raft".to_string(),
        )]));
        assert_eq!(
            r.check(),
            Err("local replica g7 is not running".to_string())
        );
        r.set_expected_replicas(BTreeMap::new());
        assert_eq!(r.check(), Ok(()));
    }
}
