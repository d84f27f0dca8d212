//! The node's one clock for its partition replicas' Raft actors.
//!
//! Every replica's Raft actor registers here when it starts. Each `raft.tick` the ticker sends
//! [`RaftMsg::Tick`] to the replicas that need Raft's clock, which is every replica but a quiet
//! one: the leader of a group whose only member it is has no follower to heartbeat and nobody to
//! hold an election against, so its clock has nothing to drive. An idle single-replica group
//! then costs nothing between ticks, which is what lets one node hold thousands of them.
//! Every replica, quiet or not, gets [`RaftMsg::Housekeeping`] (retention) once per
//! `topics.retention_check_interval`, spread over the interval by group id so they do not all
//! run in the same tick.
//!
//! The Raft actor decides whether it is quiet (after each Ready round, when role and
//! configuration can change) and says so through its [`Registration`]; the ticker only reads it.
//!
//! Not an actor: a task of the node, started by `control_plane` beside the other side tasks. The
//! registry lives in the `NodeContext`, so a restarted Raft actor registers again (replacing its
//! dead incarnation) and a killed one that never unregistered is dropped the first time a send to
//! it fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daftka_protocol::GroupId;
use ractor::{ActorId, ActorRef};

use super::raft::RaftMsg;
use crate::metrics::Metrics;

struct Entry {
    actor: ActorRef<RaftMsg>,
    quiet: Arc<AtomicBool>,
}

/// The replicas the node's ticker drives, by group.
#[derive(Default)]
pub struct Ticker {
    replicas: Mutex<HashMap<GroupId, Entry>>,
}

/// A Raft actor's place in the [`Ticker`]: it says whether the replica is quiet.
pub struct Registration {
    quiet: Arc<AtomicBool>,
}

impl Registration {
    /// Quiet replicas get no `Tick` (only `Housekeeping`).
    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, Ordering::Relaxed);
    }
}

/// What one tick sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub ticked: usize,
    pub quiet: usize,
    pub housekeeping: usize,
    /// Registrations dropped because their actor was gone.
    pub dropped: usize,
}

impl Ticker {
    /// Registers `actor` as the Raft actor of `group`, replacing an earlier incarnation. It starts
    /// ticking (not quiet).
    pub fn register(&self, group: GroupId, actor: ActorRef<RaftMsg>) -> Registration {
        let quiet = Arc::new(AtomicBool::new(false));
        let entry = Entry {
            actor,
            quiet: quiet.clone(),
        };
        self.lock().insert(group, entry);
        Registration { quiet }
    }

    /// Removes `group`'s registration if it is still `actor`'s (a newer incarnation's stays).
    pub fn unregister(&self, group: GroupId, actor: ActorId) {
        let mut replicas = self.lock();
        if replicas
            .get(&group)
            .is_some_and(|e| e.actor.get_id() == actor)
        {
            replicas.remove(&group);
        }
    }

    /// Replicas registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupId, Entry>> {
        // The map is only inserted into and removed from: a panic elsewhere cannot leave it torn.
        self.replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tick number `n`: `Tick` to every replica that is not quiet, `Housekeeping` to those whose
    /// turn it is among `housekeeping_every` ticks.
    pub fn tick(&self, n: u64, housekeeping_every: u64) -> TickReport {
        let every = housekeeping_every.max(1);
        let mut report = TickReport::default();
        let mut dead = Vec::new();
        let mut replicas = self.lock();
        for (group, e) in replicas.iter() {
            let mut alive = true;
            if e.quiet.load(Ordering::Relaxed) {
                report.quiet += 1;
            } else {
                report.ticked += 1;
                alive &= e.actor.cast(RaftMsg::Tick).is_ok();
            }
            if alive && group.0 % every == n % every {
                report.housekeeping += 1;
                alive &= e.actor.cast(RaftMsg::Housekeeping).is_ok();
            }
            if !alive {
                dead.push(*group);
            }
        }
        report.dropped = dead.len();
        for group in dead {
            replicas.remove(&group);
        }
        report
    }

    /// Ticks every `tick` forever (a node side task), publishing how many replicas tick and how
    /// many are quiet.
    pub async fn run(&self, tick: Duration, housekeeping: Duration, metrics: Arc<Metrics>) {
        let every = ticks_per(housekeeping, tick);
        let mut interval = tokio::time::interval(tick);
        // After a stall, tick on from now rather than in a burst.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0u64.. {
            interval.tick().await;
            let report = self.tick(n, every);
            metrics
                .raft_replicas
                .with_label_values(&["ticking"])
                .set(report.ticked as i64);
            metrics
                .raft_replicas
                .with_label_values(&["quiet"])
                .set(report.quiet as i64);
        }
    }
}

/// How many ticks of `tick` make `interval` (at least one).
pub fn ticks_per(interval: Duration, tick: Duration) -> u64 {
    (interval.as_millis() / tick.as_millis().max(1)).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::{Actor, ActorProcessingErr};
    use tokio::sync::mpsc;

    /// Forwards what it receives: `true` for a Tick, `false` for Housekeeping.
    struct Probe;

    impl Actor for Probe {
        type Msg = RaftMsg;
        type State = mpsc::UnboundedSender<bool>;
        type Arguments = mpsc::UnboundedSender<bool>;

        async fn pre_start(
            &self,
            _: ActorRef<RaftMsg>,
            tx: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(tx)
        }

        async fn handle(
            &self,
            _: ActorRef<RaftMsg>,
            msg: RaftMsg,
            tx: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                RaftMsg::Tick => tx.send(true)?,
                RaftMsg::Housekeeping => tx.send(false)?,
                _ => {}
            }
            Ok(())
        }
    }

    async fn probe() -> (ActorRef<RaftMsg>, mpsc::UnboundedReceiver<bool>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (actor, _) = Actor::spawn(None, Probe, tx).await.expect("spawn");
        (actor, rx)
    }

    async fn received(rx: &mut mpsc::UnboundedReceiver<bool>, n: usize) -> Vec<bool> {
        let mut got = Vec::new();
        for _ in 0..n {
            got.push(rx.recv().await.expect("a message"));
        }
        got
    }

    #[tokio::test]
    async fn quiet_replicas_get_housekeeping_only_and_in_their_turn() {
        let ticker = Ticker::default();
        let (a, mut rx_a) = probe().await;
        let (b, mut rx_b) = probe().await;
        let _ra = ticker.register(GroupId(10), a.clone());
        let rb = ticker.register(GroupId(11), b.clone());
        rb.set_quiet(true);

        // Tick 0 of every 4: group 10 ticks, group 11 is quiet and not in its turn.
        let r = ticker.tick(0, 4);
        assert_eq!((r.ticked, r.quiet, r.housekeeping), (1, 1, 0));
        // Tick 3: 11 % 4 == 3, so group 11 gets its housekeeping, but still no Tick.
        let r = ticker.tick(3, 4);
        assert_eq!((r.ticked, r.quiet, r.housekeeping), (1, 1, 1));
        // Tick 2: 10 % 4 == 2, group 10 gets both.
        let r = ticker.tick(2, 4);
        assert_eq!((r.ticked, r.quiet, r.housekeeping), (1, 1, 1));
        assert_eq!(received(&mut rx_a, 4).await, [true, true, true, false]);
        assert_eq!(received(&mut rx_b, 1).await, [false]);

        // Waking up: ticks again.
        rb.set_quiet(false);
        assert_eq!(ticker.tick(4, 4).ticked, 2);
        assert_eq!(received(&mut rx_b, 1).await, [true]);
        assert!(rx_b.try_recv().is_err(), "nothing else was sent to b");
        a.stop(None);
        b.stop(None);
    }

    #[tokio::test]
    async fn a_new_incarnation_replaces_the_old_and_dead_actors_are_dropped() {
        let ticker = Ticker::default();
        let (old, _rx_old) = probe().await;
        let (new, mut rx_new) = probe().await;
        let _r1 = ticker.register(GroupId(1), old.clone());
        let _r2 = ticker.register(GroupId(1), new.clone());
        // The old incarnation stopping late must not remove the new one.
        ticker.unregister(GroupId(1), old.get_id());
        assert_eq!(ticker.len(), 1);
        ticker.tick(0, 1000);
        assert_eq!(received(&mut rx_new, 1).await, [true]);

        // Killed without unregistering: the next tick that fails to reach it drops it.
        new.kill_and_wait(None).await.expect("kill");
        let r = ticker.tick(1, 1000);
        assert_eq!(r.dropped, 1);
        assert!(ticker.is_empty());
        ticker.unregister(GroupId(1), new.get_id());
        assert!(ticker.is_empty());
        old.stop(None);
    }
}
