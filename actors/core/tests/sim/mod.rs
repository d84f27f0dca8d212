//! A seeded, deterministic simulator of one Raft group driven by the pure driver
//! ([`daftka_core::consensus::Driver`]): 3 or 5 replicas over a simulated network (drop,
//! duplicate, reorder, delay, partition, heal) and simulated disks (a crash keeps what was made
//! durable and, like a real journal, some prefix of what was written after; a write cut by the
//! crash is lost whole), with crashes and restarts, client proposals, leader transfers and
//! membership changes. Every choice comes from one seeded RNG, so a seed replays exactly.
//!
//! After every step it checks: at most one leader per term; a node's durable commit index never
//! goes back; a committed entry never changes and stays on a quorum's durable logs (or their
//! durable snapshots); log matching (every few steps); every acknowledged proposal's offsets hold
//! its values on every replica that applied that far. At the end the network heals, every node
//! restarts, and all replicas must converge on the same log and state, holding every
//! acknowledged value at its acknowledged offset.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Instant;

use daftka_core::config::RaftConfig;
use daftka_core::consensus::{
    snapshot_for_peer, Driver, Effect, GroupConfig, LogBatch, LogStore, StateMachine,
};
use daftka_core::reconfig::Step;
use daftka_types::{Error, ErrorCode, GroupId};
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, HardState, Message, Snapshot};
use raft::{GetEntriesContext, RaftState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const GROUP: GroupId = GroupId(1);

// ---------------------------------------------------------------------------------------------
// Disk

/// One write to a node's durable state.
#[derive(Debug, Clone)]
pub enum Op {
    Append {
        entries: Vec<Entry>,
        last_before: u64,
    },
    HardState(HardState),
    ConfState(ConfState),
    Snapshot {
        snapshot: Snapshot,
        first: u64,
        last: u64,
        replace: bool,
    },
    /// The machine's values from `base` on are replaced by `values`.
    MachineAppend {
        base: u64,
        values: Vec<u64>,
    },
    MachineApplied(u64),
    MachineReplace {
        applied: u64,
        values: Vec<u64>,
    },
}

/// One atomic write.
#[derive(Debug, Clone, Default)]
pub struct SimBatch(pub Vec<Op>);

impl LogBatch for SimBatch {
    fn append_entries(&mut self, _: GroupId, entries: &[Entry], last_index_before: u64) {
        self.0.push(Op::Append {
            entries: entries.to_vec(),
            last_before: last_index_before,
        });
    }
    fn set_hard_state(&mut self, _: GroupId, hs: &HardState) {
        self.0.push(Op::HardState(hs.clone()));
    }
    fn set_conf_state(&mut self, _: GroupId, cs: &ConfState) {
        self.0.push(Op::ConfState(cs.clone()));
    }
    fn set_snapshot(&mut self, _: GroupId, s: &Snapshot, first: u64, last: u64, replace: bool) {
        self.0.push(Op::Snapshot {
            snapshot: s.clone(),
            first,
            last,
            replace,
        });
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a disk holds.
#[derive(Debug, Clone, Default)]
pub struct Image {
    pub entries: BTreeMap<u64, Entry>,
    pub hs: HardState,
    pub cs: ConfState,
    pub snapshot: Option<Snapshot>,
    pub applied: u64,
    pub values: Vec<u64>,
}

impl Image {
    fn apply(&mut self, batch: &SimBatch) {
        for op in &batch.0 {
            match op {
                Op::Append {
                    entries,
                    last_before,
                } => {
                    if let Some(first) = entries.first() {
                        let stale: Vec<u64> = self
                            .entries
                            .range(first.index..=(*last_before).max(first.index))
                            .map(|(i, _)| *i)
                            .collect();
                        for i in stale {
                            self.entries.remove(&i);
                        }
                    }
                    for e in entries {
                        self.entries.insert(e.index, e.clone());
                    }
                }
                Op::HardState(hs) => self.hs = hs.clone(),
                Op::ConfState(cs) => self.cs = cs.clone(),
                Op::Snapshot {
                    snapshot,
                    first,
                    last,
                    replace,
                } => {
                    let index = snapshot.get_metadata().index;
                    let to = if *replace { index.max(*last) } else { index };
                    let gone: Vec<u64> = self
                        .entries
                        .range(*first..=to.max(*first))
                        .map(|(i, _)| *i)
                        .collect();
                    for i in gone {
                        self.entries.remove(&i);
                    }
                    if *replace {
                        self.cs = snapshot.get_metadata().get_conf_state().clone();
                    }
                    self.snapshot = Some(snapshot.clone());
                }
                Op::MachineAppend { base, values } => {
                    self.values.truncate(*base as usize);
                    self.values.extend_from_slice(values);
                }
                Op::MachineApplied(i) => self.applied = self.applied.max(*i),
                Op::MachineReplace { applied, values } => {
                    self.applied = *applied;
                    self.values.clone_from(values);
                }
            }
        }
    }

    /// The snapshot's (index, term), or zeros.
    fn compaction_point(&self) -> (u64, u64) {
        self.snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.get_metadata().index, s.get_metadata().term))
    }

    /// The term of the entry at `index`, from the log or the snapshot.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        match self.entries.get(&index) {
            Some(e) => Some(e.term),
            None => {
                let (i, t) = self.compaction_point();
                (i == index && i > 0).then_some(t)
            }
        }
    }
}

/// A disk: what is durable, and what was written since the last fsync.
#[derive(Debug, Default)]
pub struct Disk {
    pub durable: Image,
    /// Written but not yet made durable, oldest first.
    cache: Vec<SimBatch>,
    /// What reads see: `durable` plus `cache`.
    pub view: Image,
}

impl Disk {
    pub fn write(&mut self, batch: SimBatch, durable: bool) {
        self.view.apply(&batch);
        self.cache.push(batch);
        if durable {
            for b in self.cache.drain(..) {
                self.durable.apply(&b);
            }
        }
    }

    /// Power loss: a prefix of the writes since the last fsync reached the disk anyway (a
    /// journal is written in order); the rest are gone.
    pub fn crash(&mut self, rng: &mut StdRng) {
        let keep = rng.gen_range(0..=self.cache.len());
        for b in self.cache.drain(..).take(keep) {
            self.durable.apply(&b);
        }
        self.view = self.durable.clone();
    }
}

// ---------------------------------------------------------------------------------------------
// Log store: raft-rs's view of a disk, with the metadata cached as the real one caches it.

pub struct SimLog {
    disk: Rc<RefCell<Disk>>,
    hs: HardState,
    cs: ConfState,
    snap: (u64, u64),
    last: (u64, u64),
    snapshot_wanted: Cell<bool>,
}

impl SimLog {
    fn load(disk: Rc<RefCell<Disk>>) -> SimLog {
        let (hs, cs, snap, last) = {
            let d = disk.borrow();
            let v = &d.view;
            let snap = v.compaction_point();
            let last = v
                .entries
                .last_key_value()
                .filter(|(i, _)| **i > snap.0)
                .map_or(snap, |(i, e)| (*i, e.term));
            (v.hs.clone(), v.cs.clone(), snap, last)
        };
        SimLog {
            disk,
            hs,
            cs,
            snap,
            last,
            snapshot_wanted: Cell::new(false),
        }
    }

    fn missing(index: u64) -> raft::Error {
        raft::Error::Store(raft::StorageError::Other(
            format!("entry {index} is missing").into(),
        ))
    }
}

impl raft::Storage for SimLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hs.clone(), self.cs.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snap.0 {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last.0 + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let d = self.disk.borrow();
        let mut out = Vec::new();
        for i in low..high {
            out.push(
                d.view
                    .entries
                    .get(&i)
                    .cloned()
                    .ok_or_else(|| Self::missing(i))?,
            );
        }
        raft::util::limit_size(&mut out, max_size.into().filter(|m| *m != raft::NO_LIMIT));
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snap.0 {
            return Ok(self.snap.1);
        }
        if idx < self.snap.0 {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if idx > self.last.0 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if idx == self.last.0 {
            return Ok(self.last.1);
        }
        let d = self.disk.borrow();
        d.view
            .entries
            .get(&idx)
            .map(|e| e.term)
            .ok_or_else(|| Self::missing(idx))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last.0)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let d = self.disk.borrow();
        if let Some(s) = snapshot_for_peer(d.view.snapshot.as_ref(), request_index, to) {
            return Ok(s);
        }
        self.snapshot_wanted.set(true);
        Err(raft::Error::Store(
            raft::StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

impl LogStore for SimLog {
    fn written_hard_state(&self) -> HardState {
        self.hs.clone()
    }
    fn written_conf_state(&self) -> ConfState {
        self.cs.clone()
    }
    fn first(&self) -> u64 {
        self.snap.0 + 1
    }
    fn last(&self) -> u64 {
        self.last.0
    }
    fn compaction_point(&self) -> (u64, u64) {
        self.snap
    }
    fn stored_snapshot(&self) -> raft::Result<Option<Snapshot>> {
        Ok(self.disk.borrow().view.snapshot.clone())
    }
    fn take_snapshot_request(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }
    fn on_entries_written(&mut self, entries: &[Entry]) {
        if let Some(last) = entries.last() {
            self.last = (last.index, last.term);
        }
    }
    fn on_hard_state_written(&mut self, hs: &HardState) {
        self.hs = hs.clone();
    }
    fn on_snapshot_written(&mut self, s: &Snapshot, replace: bool) {
        let m = s.get_metadata();
        self.snap = (m.index, m.term);
        if replace || self.last.0 < m.index {
            self.last = (m.index, m.term);
        }
        if replace {
            self.cs = m.get_conf_state().clone();
        }
    }
    fn trim_tail(&mut self, _: u64) {}
}

// ---------------------------------------------------------------------------------------------
// State machine: a log of values; each proposal appends some and learns the first one's offset.

pub struct SimMachine {
    applied: u64,
    values: Vec<u64>,
}

impl StateMachine for SimMachine {
    type Batch = SimBatch;
    type Output = u64;
    type View = u64;

    fn apply_entry(&mut self, index: u64, data: &[u8], batch: &mut SimBatch) -> Result<u64, Error> {
        if index <= self.applied {
            return Err(Error::internal(format!("entry {index} applied twice")));
        }
        let values: Vec<u64> = postcard::from_bytes(data)
            .map_err(|e| Error::internal(format!("bad entry {index}: {e}")))?;
        let base = self.values.len() as u64;
        self.values.extend_from_slice(&values);
        batch.0.push(Op::MachineAppend { base, values });
        Ok(base)
    }

    fn finish_round(&mut self, applied_index: u64, batch: &mut SimBatch) {
        self.applied = self.applied.max(applied_index);
        batch.0.push(Op::MachineApplied(self.applied));
    }

    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn snapshot(&self) -> Result<Vec<u8>, Error> {
        postcard::to_allocvec(&(self.applied, &self.values))
            .map_err(|e| Error::internal(e.to_string()))
    }

    fn restore(&mut self, index: u64, data: &[u8], batch: &mut SimBatch) -> Result<(), Error> {
        let (_, values): (u64, Vec<u64>) =
            postcard::from_bytes(data).map_err(|e| Error::internal(e.to_string()))?;
        self.applied = index;
        self.values = values;
        batch.0.push(Op::MachineReplace {
            applied: index,
            values: self.values.clone(),
        });
        Ok(())
    }

    fn view(&self) -> u64 {
        self.values.len() as u64
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster

/// A proposal's client token.
type Token = u64;
type SimDriver = Driver<SimMachine, SimLog, Token>;

/// A fault plan: how often each event happens, per step.
#[derive(Debug, Clone)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub crash: f64,
    /// Per effect carried out: a crash in the middle of a round.
    pub crash_mid_round: f64,
    pub restart: f64,
    pub partition: f64,
    pub heal: f64,
    pub transfer: f64,
    pub membership: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            drop: 0.05,
            duplicate: 0.03,
            crash: 0.01,
            crash_mid_round: 0.002,
            restart: 0.05,
            partition: 0.01,
            heal: 0.02,
            transfer: 0.01,
            membership: 0.004,
        }
    }
}

pub struct Node {
    pub id: u64,
    pub disk: Rc<RefCell<Disk>>,
    pub driver: Option<SimDriver>,
    election_ticks: usize,
    /// The highest durable commit index seen (it must never go back).
    durable_commit: u64,
}

struct InFlight {
    from: u64,
    msg: Message,
}

/// What went wrong, and when.
#[derive(Debug)]
pub struct Violation(pub String);

pub struct Sim {
    pub seed: u64,
    rng: StdRng,
    pub faults: Faults,
    pub nodes: Vec<Node>,
    net: Vec<InFlight>,
    /// Links that deliver nothing, as (from, to).
    blocked: BTreeSet<(u64, u64)>,
    raft: RaftConfig,
    step: u64,
    next_value: u64,
    next_token: Token,
    /// Proposals in flight: token -> (node index, values).
    proposed: BTreeMap<Token, (usize, Vec<u64>)>,
    /// Acknowledged values -> their offset.
    pub acked: BTreeMap<u64, u64>,
    /// The value at each offset, as the first replica to apply it said.
    offsets: Vec<u64>,
    /// The leader of each term seen.
    leaders: BTreeMap<u64, u64>,
    /// Every committed entry: index -> (term, data).
    committed: BTreeMap<u64, (u64, Vec<u8>)>,
    /// The voters of the configuration each committed entry was first seen committed under.
    committed_voters: BTreeMap<u64, Vec<u64>>,
    /// The fewest voters any replica's configuration has had.
    min_voters: usize,
    /// Committed indices checked to be on a quorum's durable logs.
    durable_checked: u64,
    /// The voters a replica move in flight goes to ([`daftka_core::reconfig`]).
    target: Option<Vec<u64>>,
    pub stats: Stats,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub steps: u64,
    pub delivered: u64,
    pub proposals: u64,
    pub acked: u64,
    pub crashes: u64,
    pub elections: u64,
    pub conf_changes: u64,
    pub snapshots: u64,
    /// Replica moves started, and finished (learners, joint configuration, leader handed over,
    /// left).
    pub moves_started: u64,
    pub moves: u64,
}

impl Sim {
    /// A group of `n` replicas, all voters, from `seed`.
    pub fn new(seed: u64, n: u64, faults: Faults) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let raft = RaftConfig {
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_inflight_msgs: 8,
            max_size_per_msg: 4096,
            // Small enough that some snapshots happen.
            snapshot_entries: 40,
            ..RaftConfig::default()
        };
        let nodes = (1..=n)
            .map(|id| Node {
                id,
                disk: Rc::new(RefCell::new(Disk::default())),
                driver: None,
                election_ticks: rng.gen_range(10..20),
                durable_commit: 0,
            })
            .collect();
        let mut sim = Sim {
            seed,
            rng,
            faults,
            nodes,
            net: Vec::new(),
            blocked: BTreeSet::new(),
            raft,
            step: 0,
            next_value: 1,
            next_token: 1,
            proposed: BTreeMap::new(),
            acked: BTreeMap::new(),
            offsets: Vec::new(),
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            committed_voters: BTreeMap::new(),
            min_voters: n as usize,
            durable_checked: 0,
            target: None,
            stats: Stats::default(),
        };
        for i in 0..sim.nodes.len() {
            sim.open(i).expect("open a fresh replica");
        }
        sim
    }

    fn voters(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Opens node `i` from its disk (a fresh node bootstraps with every node as a voter).
    fn open(&mut self, i: usize) -> Result<(), Violation> {
        let voters = self.voters();
        let node = &mut self.nodes[i];
        let log = SimLog::load(node.disk.clone());
        let (applied, values) = {
            let d = node.disk.borrow();
            (d.view.applied, d.view.values.clone())
        };
        let machine = SimMachine { applied, values };
        let cfg = GroupConfig {
            group: GROUP,
            raft_id: node.id,
            voters: &voters,
            raft: &self.raft,
            snapshot_every: Some(self.raft.snapshot_entries),
            election_ticks_exact: Some(node.election_ticks),
        };
        let (driver, effects) = Driver::open(log, cfg, machine)
            .map_err(|e| Violation(format!("node {} does not open: {e}", node.id)))?;
        node.driver = Some(driver);
        self.carry_out(i, effects, false);
        Ok(())
    }

    /// Carries `effects` out for node `i`; may crash it midway when `may_crash`. False if it
    /// crashed.
    fn carry_out(
        &mut self,
        i: usize,
        effects: Vec<Effect<SimMachine, Token>>,
        may_crash: bool,
    ) -> bool {
        for effect in effects {
            if may_crash && self.rng.gen_bool(self.faults.crash_mid_round) {
                self.crash(i);
                return false;
            }
            match effect {
                Effect::Send(msgs) => {
                    for msg in msgs {
                        self.net.push(InFlight {
                            from: self.nodes[i].id,
                            msg,
                        });
                    }
                }
                Effect::Write { batch, durable } => {
                    let snapshot = batch.0.iter().any(|op| matches!(op, Op::Snapshot { .. }));
                    if snapshot {
                        self.stats.snapshots += 1;
                    }
                    self.nodes[i].disk.borrow_mut().write(batch, durable)
                }
                Effect::Applied { .. } => {}
                Effect::Answer { reply, result, .. } => {
                    let (_, values) = self.proposed.remove(&reply).unwrap_or_default();
                    if let Ok(base) = result {
                        self.stats.acked += 1;
                        for (k, v) in values.into_iter().enumerate() {
                            self.acked.insert(v, base + k as u64);
                        }
                    }
                }
            }
        }
        true
    }

    fn crash(&mut self, i: usize) {
        self.stats.crashes += 1;
        // Its waiting proposers never learn their outcome.
        self.nodes[i].driver = None;
        self.proposed.retain(|_, (at, _)| *at != i);
        self.nodes[i].disk.borrow_mut().crash(&mut self.rng);
        // The new durable state may be behind what was checked: check it all again.
        self.durable_checked = 0;
    }

    /// Runs node `i`'s rounds until it has nothing to do.
    fn settle(&mut self, i: usize) -> Result<(), Violation> {
        for _ in 0..100 {
            let Some(driver) = self.nodes[i].driver.as_mut() else {
                return Ok(());
            };
            // The harness runs a round as soon as there is work (an actor would queue one).
            if !driver.raw.has_ready() {
                return Ok(());
            }
            let round = driver
                .on_ready()
                .map_err(|e| Violation(format!("node {}: round failed: {e}", i + 1)))?;
            if round.outcome.leader_changed.is_some_and(|(_, leads)| leads) {
                self.stats.elections += 1;
            }
            if !self.carry_out(i, round.effects, true) {
                return Ok(());
            }
            if round.awaits_write {
                let Some(driver) = self.nodes[i].driver.as_mut() else {
                    return Ok(());
                };
                let rest = driver
                    .on_written()
                    .map_err(|e| Violation(format!("node {}: round failed: {e}", i + 1)))?;
                if !self.carry_out(i, rest.effects, true) {
                    return Ok(());
                }
            }
        }
        Err(Violation(format!("node {} never settles", i + 1)))
    }

    fn settle_all(&mut self) -> Result<(), Violation> {
        for i in 0..self.nodes.len() {
            self.settle(i)?;
        }
        Ok(())
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].driver.is_some())
            .collect()
    }

    fn leader(&self) -> Option<usize> {
        self.live().into_iter().find(|i| {
            self.nodes[*i]
                .driver
                .as_ref()
                .is_some_and(|d| d.is_leader())
        })
    }

    /// Delivers one message from the network (any of them: reordering), maybe dropping or
    /// duplicating it.
    fn deliver(&mut self) -> Result<(), Violation> {
        if self.net.is_empty() {
            return Ok(());
        }
        let k = self.rng.gen_range(0..self.net.len());
        let m = if self.rng.gen_bool(self.faults.duplicate) {
            InFlight {
                from: self.net[k].from,
                msg: self.net[k].msg.clone(),
            }
        } else {
            self.net.swap_remove(k)
        };
        if self.rng.gen_bool(self.faults.drop) || self.blocked.contains(&(m.from, m.msg.to)) {
            return Ok(());
        }
        let Some(i) = self.nodes.iter().position(|n| n.id == m.msg.to) else {
            return Ok(());
        };
        if let Some(d) = self.nodes[i].driver.as_mut() {
            self.stats.delivered += 1;
            // raft-rs refuses some messages (e.g. from a removed peer): that is its business.
            let _ = d.step(m.msg);
            self.settle(i)?;
        }
        Ok(())
    }

    fn tick_all(&mut self) -> Result<(), Violation> {
        for i in self.live() {
            if let Some(d) = self.nodes[i].driver.as_mut() {
                d.tick();
            }
            self.settle(i)?;
        }
        Ok(())
    }

    fn propose(&mut self) -> Result<(), Violation> {
        let live = self.live();
        if live.is_empty() {
            return Ok(());
        }
        // Clients mostly find the leader, sometimes not.
        let i = match self.leader() {
            Some(l) if self.rng.gen_bool(0.8) => l,
            _ => live[self.rng.gen_range(0..live.len())],
        };
        let n = self.rng.gen_range(1..=3);
        let values: Vec<u64> = (0..n).map(|k| self.next_value + k).collect();
        self.next_value += n;
        let token = self.next_token;
        self.next_token += 1;
        let data = postcard::to_allocvec(&values).expect("encode values");
        let d = self.nodes[i].driver.as_mut().expect("live");
        self.stats.proposals += 1;
        if d.propose(data, token, Instant::now()).is_ok() {
            self.proposed.insert(token, (i, values));
        }
        self.settle(i)
    }

    fn transfer(&mut self) -> Result<(), Violation> {
        let Some(l) = self.leader() else {
            return Ok(());
        };
        let voters = self.nodes[l]
            .driver
            .as_ref()
            .expect("live")
            .conf_state()
            .voters;
        let to = voters[self.rng.gen_range(0..voters.len())];
        self.nodes[l].driver.as_mut().expect("live").transfer_to(to);
        self.settle(l)
    }

    /// The leader's next step of the move in flight, if any: the same planner the node's Raft
    /// actor runs, carried out by the driver.
    fn drive_move(&mut self) -> Result<(), Violation> {
        let Some(target) = self.target.clone() else {
            return Ok(());
        };
        let Some(l) = self.leader() else {
            return Ok(());
        };
        let d = self.nodes[l].driver.as_mut().expect("live");
        match d.move_step(&target, 8) {
            Step::Wait => Ok(()),
            Step::Done => {
                self.target = None;
                self.stats.moves += 1;
                Ok(())
            }
            step => {
                if d.take_step(&step).is_ok() {
                    self.stats.conf_changes += 1;
                }
                self.settle(l)
            }
        }
    }

    /// Half the time starts a move to three random replicas; else removes a voter (keeping at
    /// least three) or adds a removed node back as a voter. Nothing while a move is in flight.
    fn change_membership(&mut self) -> Result<(), Violation> {
        if self.target.is_some() {
            return Ok(());
        }
        let Some(l) = self.leader() else {
            return Ok(());
        };
        if self.nodes.len() > 3 && self.rng.gen_bool(0.5) {
            let mut ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
            while ids.len() > 3 {
                ids.remove(self.rng.gen_range(0..ids.len()));
            }
            let voters = self.nodes[l]
                .driver
                .as_ref()
                .expect("live")
                .conf_state()
                .voters;
            let mut now = voters.clone();
            now.sort_unstable();
            if now != ids {
                self.target = Some(ids);
                self.stats.moves_started += 1;
            }
            return Ok(());
        }
        let all: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        let d = self.nodes[l].driver.as_mut().expect("live");
        if d.conf_change_pending() {
            return Ok(());
        }
        let cs = d.conf_state();
        let outside: Vec<u64> = all
            .iter()
            .copied()
            .filter(|id| !cs.voters.contains(id))
            .collect();
        let mut cc = ConfChange::default();
        if !outside.is_empty() && (cs.voters.len() <= 3 || self.rng.gen_bool(0.5)) {
            cc.set_change_type(ConfChangeType::AddNode);
            cc.node_id = outside[self.rng.gen_range(0..outside.len())];
        } else if cs.voters.len() > 3 {
            cc.set_change_type(ConfChangeType::RemoveNode);
            let me = d.id();
            let others: Vec<u64> = cs.voters.iter().copied().filter(|v| *v != me).collect();
            cc.node_id = others[self.rng.gen_range(0..others.len())];
        } else {
            return Ok(());
        }
        if d.propose_conf_change(cc).is_ok() {
            self.stats.conf_changes += 1;
        }
        self.settle(l)
    }

    fn partition(&mut self) {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        let cut = ids[self.rng.gen_range(0..ids.len())];
        let one_way = self.rng.gen_bool(0.3);
        for other in ids.iter().copied().filter(|o| *o != cut) {
            self.blocked.insert((other, cut));
            if !one_way {
                self.blocked.insert((cut, other));
            }
        }
    }

    /// One random step, then the checks.
    pub fn step(&mut self) -> Result<(), Violation> {
        self.step += 1;
        self.stats.steps += 1;
        self.drive_move()?;
        let f = self.faults.clone();
        let roll: f64 = self.rng.gen();
        if roll < 0.45 {
            self.deliver()?;
        } else if roll < 0.65 {
            self.tick_all()?;
        } else if roll < 0.85 {
            self.propose()?;
        } else {
            let live = self.live();
            let dead: Vec<usize> = (0..self.nodes.len())
                .filter(|i| !live.contains(i))
                .collect();
            if !live.is_empty() && self.rng.gen_bool(f.crash * 7.0) {
                let i = live[self.rng.gen_range(0..live.len())];
                self.crash(i);
            } else if !dead.is_empty() && self.rng.gen_bool((f.restart * 7.0).min(1.0)) {
                let i = dead[self.rng.gen_range(0..dead.len())];
                self.open(i)?;
                self.settle(i)?;
            } else if self.rng.gen_bool(f.partition * 7.0) {
                self.partition();
            } else if self.rng.gen_bool(f.heal * 7.0) {
                self.blocked.clear();
            } else if self.rng.gen_bool(f.transfer * 7.0) {
                self.transfer()?;
            } else if self.rng.gen_bool(f.membership * 7.0) {
                self.change_membership()?;
            }
        }
        self.check(self.step.is_multiple_of(50))
    }

    /// Heals everything, restarts every node and runs without faults until every replica has
    /// applied the same log; then the final checks.
    pub fn converge(&mut self) -> Result<(), Violation> {
        self.blocked.clear();
        for i in 0..self.nodes.len() {
            if self.nodes[i].driver.is_none() {
                self.open(i)?;
            }
        }
        self.faults = Faults {
            drop: 0.0,
            duplicate: 0.0,
            crash: 0.0,
            crash_mid_round: 0.0,
            restart: 0.0,
            partition: 0.0,
            heal: 0.0,
            transfer: 0.0,
            membership: 0.0,
        };
        // A final proposal through the leader makes every replica learn the last commit index.
        let mut proposed_final = false;
        for round in 0..20_000 {
            self.settle_all()?;
            while !self.net.is_empty() {
                self.deliver()?;
            }
            self.tick_all()?;
            if !proposed_final && self.leader().is_some() && round > 50 {
                self.propose()?;
                proposed_final = true;
            }
            if proposed_final && self.converged() {
                return self.check(true).and_then(|()| self.final_check());
            }
        }
        Err(Violation(
            "the replicas never converged after healing".into(),
        ))
    }

    /// Every replica in the configuration has applied up to the same commit index, and every
    /// proposal in flight was answered.
    fn converged(&self) -> bool {
        let Some(l) = self.leader() else { return false };
        let leader = self.nodes[l].driver.as_ref().expect("live");
        let commit = leader.commit_index();
        let cs = leader.conf_state();
        self.proposed.is_empty()
            && cs.voters.iter().chain(&cs.learners).all(|id| {
                self.nodes
                    .iter()
                    .find(|n| n.id == *id)
                    .and_then(|n| n.driver.as_ref())
                    .is_some_and(|d| d.commit_index() == commit && d.applied_index() == commit)
            })
    }

    fn check(&mut self, full: bool) -> Result<(), Violation> {
        let step = self.step;
        let fail = |what: String| Err(Violation(format!("step {step}: {what}")));
        // At most one leader per term.
        for n in &self.nodes {
            if let Some(d) = &n.driver {
                if d.is_leader() {
                    match self.leaders.insert(d.term(), n.id) {
                        Some(other) if other != n.id => {
                            return fail(format!(
                                "two leaders in term {}: {other} and {}",
                                d.term(),
                                n.id
                            ))
                        }
                        _ => {}
                    }
                }
            }
        }
        // The durable commit index never goes back.
        for n in &mut self.nodes {
            let durable = n.disk.borrow().durable.hs.commit;
            if durable < n.durable_commit {
                return fail(format!(
                    "node {}: durable commit went back from {} to {durable}",
                    n.id, n.durable_commit
                ));
            }
            n.durable_commit = durable;
        }
        // The smallest configuration any replica has applied (entries may have been committed
        // under it).
        for n in &self.nodes {
            if let Some(d) = &n.driver {
                self.min_voters = self.min_voters.min(d.conf_state().voters.len());
            }
        }
        // Committed entries never change; newly committed ones are recorded.
        for n in &self.nodes {
            let Some(d) = &n.driver else { continue };
            let disk = n.disk.borrow();
            let view = &disk.view;
            // The newly committed entries, and a window below them checked again.
            let from = self
                .committed
                .last_key_value()
                .map_or(0, |(i, _)| *i)
                .min(d.commit_index())
                .saturating_sub(20);
            let (point, _) = view.compaction_point();
            for i in from.max(point + 1)..=d.commit_index() {
                let Some(e) = view.entries.get(&i) else {
                    return fail(format!(
                        "node {}: committed entry {i} is not in its log",
                        n.id
                    ));
                };
                let here = (e.term, e.data.to_vec());
                match self.committed.get(&i) {
                    Some(seen) if *seen != here => {
                        return fail(format!(
                            "node {}: committed entry {i} changed (term {} -> {})",
                            n.id, seen.0, here.0
                        ))
                    }
                    Some(_) => {}
                    None => {
                        self.committed.insert(i, here);
                        self.committed_voters.insert(i, d.conf_state().voters);
                    }
                }
            }
        }
        // Every committed entry is on a quorum's durable logs (or under their durable snapshot),
        // a quorum of the voters it was committed under (a configuration changes one voter at a
        // time, so any two consecutive ones share a majority).
        let start = self.durable_checked + 1;
        let upto = self.committed.last_key_value().map_or(0, |(i, _)| *i);
        for i in start..=upto {
            let Some((term, _)) = self.committed.get(&i) else {
                continue;
            };
            // A replica's applied configuration may lag or lead the one the entry was committed
            // under: count the quorum of the smallest configuration the group has had.
            let quorum = self.min_voters / 2 + 1;
            let voters = self.committed_voters.get(&i).cloned().unwrap_or_default();
            let holders = self
                .nodes
                .iter()
                .filter(|n| {
                    let d = n.disk.borrow();
                    let img = &d.durable;
                    img.term_at(i) == Some(*term) || img.compaction_point().0 >= i
                })
                .count();
            if holders < quorum {
                return fail(format!(
                    "committed entry {i} (term {term}, seen under voters {voters:?}) is durable on {holders} nodes, fewer than a quorum of the smallest configuration ({quorum})"
                ));
            }
        }
        self.durable_checked = upto;
        // Every replica's values agree offset by offset; acknowledged values sit at their offsets.
        for n in &self.nodes {
            let Some(d) = &n.driver else { continue };
            let values = &d.machine.values_for_check();
            for (o, v) in values.iter().enumerate() {
                match self.offsets.get(o) {
                    Some(seen) if seen != v => {
                        return fail(format!(
                            "node {}: offset {o} holds {v}, another replica had {seen}",
                            n.id
                        ))
                    }
                    Some(_) => {}
                    None => self.offsets.push(*v),
                }
            }
        }
        for (v, o) in &self.acked {
            if let Some(seen) = self.offsets.get(*o as usize) {
                if seen != v {
                    return fail(format!(
                        "acknowledged value {v} at offset {o} reads back as {seen}"
                    ));
                }
            }
        }
        if full {
            self.check_log_matching()?;
        }
        Ok(())
    }

    /// Two logs with an entry of the same index and term agree on every entry up to it.
    fn check_log_matching(&self) -> Result<(), Violation> {
        let step = self.step;
        let images: Vec<(u64, std::cell::Ref<'_, Disk>)> =
            self.nodes.iter().map(|n| (n.id, n.disk.borrow())).collect();
        for (a, da) in &images {
            for (b, db) in &images {
                if a >= b {
                    continue;
                }
                let (la, lb) = (&da.view, &db.view);
                let mut agreed = 0;
                for (i, ea) in la.entries.iter().rev() {
                    if lb.entries.get(i).is_some_and(|eb| eb.term == ea.term) {
                        agreed = *i;
                        break;
                    }
                }
                let floor = la.compaction_point().0.max(lb.compaction_point().0);
                for i in (floor + 1)..=agreed {
                    let (Some(x), Some(y)) = (la.entries.get(&i), lb.entries.get(&i)) else {
                        return Err(Violation(format!(
                            "step {step}: nodes {a} and {b} agree at {agreed} but one lacks entry {i}"
                        )));
                    };
                    if x.term != y.term || x.data != y.data {
                        return Err(Violation(format!(
                            "step {step}: log matching broken: nodes {a} and {b} agree at {agreed} but differ at {i}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// After convergence: every replica holds the same values, and every acknowledged value is
    /// at its acknowledged offset on every one of them.
    fn final_check(&self) -> Result<(), Violation> {
        let l = self
            .leader()
            .ok_or_else(|| Violation("no leader at the end".into()))?;
        let cs = self.nodes[l].driver.as_ref().expect("live").conf_state();
        let members: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| cs.voters.contains(&n.id) || cs.learners.contains(&n.id))
            .collect();
        let reference = members[0]
            .driver
            .as_ref()
            .expect("live")
            .machine
            .values_for_check();
        for n in &members {
            let values = n.driver.as_ref().expect("live").machine.values_for_check();
            if values != reference {
                return Err(Violation(format!(
                    "node {} ends with {} values, node {} with {}",
                    n.id,
                    values.len(),
                    members[0].id,
                    reference.len()
                )));
            }
        }
        for (v, o) in &self.acked {
            if reference.get(*o as usize) != Some(v) {
                return Err(Violation(format!(
                    "acknowledged value {v} is not at its offset {o} at the end"
                )));
            }
        }
        Ok(())
    }
}

impl SimMachine {
    fn values_for_check(&self) -> Vec<u64> {
        self.values.clone()
    }
}

/// Runs `steps` steps of seed `seed` on `n` replicas, then converges; the stats, or the first
/// violation. A panic inside raft-rs counts as a violation too.
pub fn run(seed: u64, n: u64, steps: u64, faults: Faults) -> Result<Stats, Violation> {
    let outcome = std::panic::catch_unwind(|| {
        let mut sim = Sim::new(seed, n, faults);
        let mut go = || {
            for _ in 0..steps {
                sim.step()?;
            }
            sim.converge()
        };
        match go() {
            Ok(()) => Ok(sim.stats.clone()),
            Err(v) => Err(Violation(format!("{}\n{}", v.0, sim.describe()))),
        }
    });
    match outcome {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(Violation(format!("panicked: {what}")))
        }
    }
}

/// The error code of a failed proposal, for tests.
pub fn code(e: &Error) -> ErrorCode {
    e.code
}

impl Sim {
    /// One line per node, for debugging a seed.
    pub fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|n| match &n.driver {
                Some(d) => format!(
                    "node {}: term {} leader {} role {:?} commit {} applied {} last {} voters {:?}",
                    n.id,
                    d.term(),
                    d.leader_id(),
                    d.raw.raft.state,
                    d.commit_index(),
                    d.applied_index(),
                    d.raw.raft.raft_log.last_index(),
                    d.conf_state().voters
                ),
                None => format!("node {}: down", n.id),
            } + &{
                let d = n.disk.borrow();
                format!(
                    "\n   durable: commit {} cs {:?} snapshot {:?} last {:?}; view last {:?}",
                    d.durable.hs.commit,
                    d.durable.cs.voters,
                    d.durable.compaction_point(),
                    d.durable.entries.last_key_value().map(|(i, e)| (*i, e.term)),
                    d.view.entries.last_key_value().map(|(i, e)| (*i, e.term)),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
