//! [`Consumer`]: a consumer-group member, over any [`GroupTransport`]: the native [`Client`]
//! here, the HTTP API's client in `daftka-http` (which `daftka consume --group` uses). The member's
//! logic (positions, acknowledgements, rebalances, rejoining) is written once, here.
//!
//! It joins a group, heartbeats in a background task, reads its assigned partitions with fetches
//! (positions are kept here, starting at the group's committed offsets), and hands the records out
//! one by one ([`Consumer::next_record`], or as an async `Stream` with [`Consumer::stream`]) or in
//! batches ([`Consumer::poll`]).
//! The application acknowledges what it has processed with [`Consumer::ack`]; [`Consumer::commit`]
//! commits the acknowledged offsets of the partitions it owns, fenced by the member's generation.
//!
//! # Rebalances
//! When a heartbeat reports partitions to give up, the consumer stops delivering them at once
//! (buffered records of them are dropped), commits what was acknowledged on them, and only then
//! tells the group it released them; their next owner starts from that commit. Records delivered
//! but not acknowledged before a rebalance, a crash or a missed session are delivered again to
//! the next owner: delivery is at least once. A member the group dropped (its session expired)
//! joins again by itself with a new member id; after [`ConsumerConfig::rejoins_max`] such rejoins
//! without a heartbeat answered in between, the consumer fails with `unknown_member` (its session
//! is too short for its network).
//!
//! A fetch whose answer is lost moves nothing: positions are kept here and only move with an
//! answer, so any read may be retried or dropped (a `poll` future may be cancelled).
//!
//! # Example
//! ```no_run
//! # async fn demo(client: daftka_protocol::Client) -> Result<(), daftka_protocol::Error> {
//! use daftka_protocol::{Consumer, ConsumerConfig};
//! use futures::StreamExt;
//! let consumer = Consumer::join(client, ConsumerConfig::new("billing", ["orders"])).await?;
//! let mut records = Box::pin(consumer.stream());
//! while let Some(record) = records.next().await {
//!     let record = record?;
//!     // ... process it ...
//!     consumer.ack(&record);
//!     consumer.commit().await?;
//! }
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::stream::{FuturesUnordered, Stream, StreamExt};
use tokio::sync::Notify;

use crate::client::Client;
use crate::error::{Error, ErrorCode};
use crate::ids::{Offset, PartitionId};
use crate::messages::*;
use crate::record::Record;

/// How often a member heartbeats while it waits for partitions or must release some.
pub const REBALANCE_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// The calls a [`Consumer`] makes, over some transport. Answers and errors are the protocol's:
/// a transport maps its own failures onto the codes (`timeout` when the outcome is unknown,
/// `unavailable` when the request certainly had no effect).
pub trait GroupTransport: Send + Sync + 'static {
    /// Joins as a new member. Must not be retried after a lost answer (it could add a member).
    fn join_group(
        &self,
        request: JoinGroup,
    ) -> impl Future<Output = Result<MemberAssignment, Error>> + Send;
    /// Keeps the member alive; `owned` releases the revoking partitions it leaves out.
    fn heartbeat(
        &self,
        request: Heartbeat,
    ) -> impl Future<Output = Result<MemberAssignment, Error>> + Send;
    /// Reads one partition.
    fn fetch(
        &self,
        request: FetchRequest,
    ) -> impl Future<Output = Result<FetchResponse, Error>> + Send;
    /// Commits offsets as the member.
    fn commit_group(&self, request: GroupCommit) -> impl Future<Output = Result<(), Error>> + Send;
    /// Leaves the group; a member the group no longer knows is gone as asked.
    fn leave_group(
        &self,
        group: &str,
        member_id: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

impl GroupTransport for Client {
    fn join_group(
        &self,
        request: JoinGroup,
    ) -> impl Future<Output = Result<MemberAssignment, Error>> + Send {
        Client::join_group(self, request)
    }
    fn heartbeat(
        &self,
        request: Heartbeat,
    ) -> impl Future<Output = Result<MemberAssignment, Error>> + Send {
        Client::heartbeat(self, request)
    }
    fn fetch(
        &self,
        request: FetchRequest,
    ) -> impl Future<Output = Result<FetchResponse, Error>> + Send {
        Client::fetch(self, request)
    }
    fn commit_group(&self, request: GroupCommit) -> impl Future<Output = Result<(), Error>> + Send {
        Client::commit_group(self, request)
    }
    async fn leave_group(&self, group: &str, member_id: &str) -> Result<(), Error> {
        match Client::leave_group(self, group, member_id).await {
            Err(e) if e.code == ErrorCode::UnknownMember => Ok(()),
            other => other,
        }
    }
}

/// Default of [`ConsumerConfig::rejoins_max`].
pub const REJOINS_MAX_DEFAULT: u32 = 5;

/// How a [`Consumer`] joins and reads.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub group: String,
    pub topics: Vec<String>,
    /// `None`: the node's `groups.session_timeout_default`.
    pub session_timeout: Option<Duration>,
    /// `range`, `round_robin` or `sticky`; `None`: the group's default (sticky).
    pub assignor: Option<String>,
    /// Most records one fetch of one partition returns.
    pub fetch_records_max: u32,
    /// About the most bytes one fetch of one partition returns.
    pub fetch_bytes_max: u32,
    /// How long a fetch waits for new records when every partition is caught up (in
    /// [`Consumer::next_record`]; [`Consumer::poll`] is given its wait).
    pub fetch_wait: Duration,
    /// Rejoins after the group dropped the member, with no heartbeat answered in between, before
    /// the consumer fails with `unknown_member`.
    pub rejoins_max: u32,
}

impl ConsumerConfig {
    /// A member of `group` reading `topics`, with the defaults.
    pub fn new<T: Into<String>>(group: &str, topics: impl IntoIterator<Item = T>) -> Self {
        ConsumerConfig {
            group: group.to_string(),
            topics: topics.into_iter().map(Into::into).collect(),
            session_timeout: None,
            assignor: None,
            fetch_records_max: 500,
            fetch_bytes_max: 1 << 20,
            fetch_wait: Duration::from_millis(500),
            rejoins_max: REJOINS_MAX_DEFAULT,
        }
    }
}

/// One record as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: PartitionId,
    pub offset: Offset,
    pub record: Record,
}

type TopicPartition = (String, PartitionId);

/// What the consumer knows of one partition it owns.
#[derive(Debug, Clone, Default)]
struct Owned {
    /// The next offset to fetch; `None`: the group's commit, else the log start.
    fetch_at: Option<Offset>,
    /// The next offset to deliver.
    position: Option<Offset>,
    /// The next offset to commit (one past the last acknowledged record).
    acked: Option<Offset>,
    /// What the group has committed.
    committed: Option<Offset>,
}

#[derive(Debug, Default)]
struct State {
    member_id: String,
    generation: u64,
    owned: BTreeMap<TopicPartition, Owned>,
    buffer: VecDeque<ConsumerRecord>,
    /// The group is still rebalancing this member (waiting for partitions, or for releases).
    rebalancing: bool,
    /// Set when the consumer was closed or its heartbeat task met an error it cannot get past.
    failed: Option<Error>,
    /// Rejoins since the last answered heartbeat.
    rejoins: u32,
}

struct Shared<T> {
    transport: T,
    config: ConsumerConfig,
    state: Mutex<State>,
    /// Woken when the assignment changes.
    changed: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (no invariant spans two fields
        // that a panic could split): carry on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A member of a consumer group. Dropping it stops its heartbeats (the group removes it after
/// its session timeout); [`Consumer::close`] commits and leaves at once.
pub struct Consumer<T: GroupTransport = Client> {
    shared: Arc<Shared<T>>,
    heartbeats: tokio::task::JoinHandle<()>,
}

impl<T: GroupTransport> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

impl<T: GroupTransport> Consumer<T> {
    /// Joins `config.group` through `transport` (a [`Client`], or another transport) and starts
    /// heartbeating.
    pub async fn join(transport: T, config: ConsumerConfig) -> Result<Consumer<T>, Error> {
        let shared = Arc::new(Shared {
            transport,
            config,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        let joined = join(&shared).await?;
        apply(&shared, joined).await;
        let heartbeats = tokio::spawn(heartbeat_loop(shared.clone()));
        Ok(Consumer { shared, heartbeats })
    }

    /// This member's id in the group.
    pub fn member_id(&self) -> String {
        self.shared.lock().member_id.clone()
    }

    /// The member's generation (sent with its commits).
    pub fn generation(&self) -> u64 {
        self.shared.lock().generation
    }

    /// The partitions this member reads now.
    pub fn assignment(&self) -> Vec<(String, PartitionId)> {
        self.shared.lock().owned.keys().cloned().collect()
    }

    /// Whether the group is still rebalancing this member: it waits for partitions other members
    /// are giving up, or has partitions to give up itself.
    pub fn rebalancing(&self) -> bool {
        self.shared.lock().rebalancing
    }

    /// The records as an async stream; it ends only with the consumer (errors are items).
    pub fn stream(&self) -> impl Stream<Item = Result<ConsumerRecord, Error>> + '_ {
        // `next_record` retries what may be retried: an error ends the stream after it.
        futures::stream::unfold((self, false), |(c, ended)| async move {
            if ended {
                return None;
            }
            let next = c.next_record().await;
            let ended = next.is_err();
            Some((next, (c, ended)))
        })
    }

    /// The next record of the member's partitions, waiting for one as long as it takes.
    /// Retryable errors (a leader election) are retried here; others are returned.
    pub async fn next_record(&self) -> Result<ConsumerRecord, Error> {
        loop {
            match self.poll(1, self.shared.config.fetch_wait).await {
                Ok(mut batch) => {
                    if let Some(record) = batch.pop() {
                        return Ok(record);
                    }
                }
                Err(e) => {
                    // A deleted topic leaves the assignment at the next heartbeat: not an end.
                    let passing = matches!(
                        e.code,
                        ErrorCode::UnknownTopic | ErrorCode::UnknownPartition
                    );
                    let failed = self.shared.lock().failed.is_some();
                    if failed || (!e.retryable() && !passing) {
                        return Err(e);
                    }
                    pause_after_error(self.shared.config.fetch_wait).await;
                }
            }
        }
    }

    /// Up to `max` records of the member's partitions, in each partition's order: the buffered
    /// ones at once; else the owned partitions are fetched, waiting up to `wait` for a first
    /// record when all are caught up (a member that owns nothing waits up to `wait` for an
    /// assignment). Empty when nothing came: with a zero `wait`, every owned partition was read
    /// up to its high watermark. Errors are returned as they come (a caller retries what
    /// [`Error::retryable`] allows); cancelling the future loses nothing.
    pub async fn poll(&self, max: usize, wait: Duration) -> Result<Vec<ConsumerRecord>, Error> {
        let idle = {
            let mut s = self.shared.lock();
            if let Some(e) = &s.failed {
                return Err(e.clone());
            }
            let batch = take_buffered(&mut s, max);
            if !batch.is_empty() {
                return Ok(batch);
            }
            s.owned.is_empty()
        };
        if idle {
            // Nothing assigned yet: wait for the heartbeats to bring partitions, then look at
            // them without waiting.
            let changed = self.shared.changed.notified();
            let _ = tokio::time::timeout(wait, changed).await;
            if !self.shared.lock().owned.is_empty() {
                self.fill(Duration::ZERO).await?;
            }
        } else {
            self.fill(wait).await?;
        }
        let mut s = self.shared.lock();
        Ok(take_buffered(&mut s, max))
    }

    /// Fetches the owned partitions into the buffer: all at once without waiting, then, if all
    /// were caught up and `wait` is not zero, a long poll that ends with the first partition that
    /// has records, or after `wait`.
    async fn fill(&self, wait: Duration) -> Result<(), Error> {
        let plan: Vec<(TopicPartition, FetchOffset)> = {
            let s = self.shared.lock();
            s.owned
                .iter()
                .map(|(tp, o)| {
                    let at = o
                        .fetch_at
                        .or(o.committed)
                        .map_or(FetchOffset::Earliest, FetchOffset::At);
                    (tp.clone(), at)
                })
                .collect()
        };
        let mut got = 0;
        let now = plan.iter().map(|(tp, at)| self.fetch(tp.clone(), *at, 0));
        for (tp, at, r) in futures::future::join_all(now).await {
            got += self.store(tp, at, r?);
        }
        if got > 0 || wait.is_zero() {
            return Ok(());
        }
        let wait = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        let mut polls: FuturesUnordered<_> = plan
            .iter()
            .map(|(tp, at)| self.fetch(tp.clone(), *at, wait))
            .collect();
        let changed = self.shared.changed.notified();
        tokio::pin!(changed);
        loop {
            tokio::select! {
                next = polls.next() => match next {
                    Some((tp, at, r)) => {
                        if self.store(tp, at, r?) > 0 {
                            return Ok(());
                        }
                    }
                    None => return Ok(()),
                },
                // The assignment changed: fetch the new one.
                _ = &mut changed => return Ok(()),
            }
        }
    }

    async fn fetch(
        &self,
        (topic, partition): TopicPartition,
        at: FetchOffset,
        wait_ms: u32,
    ) -> (TopicPartition, FetchOffset, Result<FetchResponse, Error>) {
        let cfg = &self.shared.config;
        let request = |offset| FetchRequest {
            topic: topic.clone(),
            partition,
            offset,
            max_records: cfg.fetch_records_max,
            max_bytes: cfg.fetch_bytes_max,
            max_wait_ms: wait_ms,
        };
        let transport = &self.shared.transport;
        let r = match transport.fetch(request(at)).await {
            // Retention removed the position's records: go on from the oldest there is.
            Err(e) if e.code == ErrorCode::OffsetOutOfRange => {
                let start = e.log_start_offset.unwrap_or(0);
                let moved = match at {
                    FetchOffset::At(o) if o < start => FetchOffset::Earliest,
                    _ => FetchOffset::Latest,
                };
                transport.fetch(request(moved)).await
            }
            other => other,
        };
        ((topic, partition), at, r)
    }

    /// Buffers a fetch's records if the partition is still owned and was not moved meanwhile.
    fn store(&self, tp: TopicPartition, at: FetchOffset, r: FetchResponse) -> usize {
        let mut s = self.shared.lock();
        let Some(o) = s.owned.get_mut(&tp) else {
            return 0;
        };
        let expected = o
            .fetch_at
            .or(o.committed)
            .map_or(FetchOffset::Earliest, FetchOffset::At);
        if expected != at {
            return 0;
        }
        o.fetch_at = Some(r.next_offset);
        if o.position.is_none() {
            o.position = r.records.first().map(|x| x.offset).or(Some(r.next_offset));
        }
        let n = r.records.len();
        s.buffer
            .extend(r.records.into_iter().map(|x| ConsumerRecord {
                topic: tp.0.clone(),
                partition: tp.1,
                offset: x.offset,
                record: x.record,
            }));
        n
    }

    /// Marks `record` as processed: the next commit moves its partition past it.
    pub fn ack(&self, record: &ConsumerRecord) {
        let mut s = self.shared.lock();
        if let Some(o) = s.owned.get_mut(&(record.topic.clone(), record.partition)) {
            let next = record.offset + 1;
            o.acked = Some(o.acked.map_or(next, |a| a.max(next)));
        }
    }

    /// Commits the acknowledged offsets of the owned partitions (durable and replicated when it
    /// returns). Refused (`not_assigned`, `stale_generation`) for partitions the group moved away.
    pub async fn commit(&self) -> Result<(), Error> {
        commit_acked(&self.shared).await
    }

    /// The next offset this member delivers from `partition` of `topic`, if it owns it and knows.
    pub fn position(&self, topic: &str, partition: PartitionId) -> Option<Offset> {
        let s = self.shared.lock();
        let o = s.owned.get(&(topic.to_string(), partition))?;
        o.position.or(o.fetch_at).or(o.committed)
    }

    /// Moves the member's read position in an owned partition; buffered records of it are
    /// dropped. A commit still never moves the group's offset backwards.
    pub fn seek(&self, topic: &str, partition: PartitionId, offset: Offset) -> Result<(), Error> {
        let mut s = self.shared.lock();
        let tp = (topic.to_string(), partition);
        let o = s.owned.get_mut(&tp).ok_or_else(|| {
            Error::new(
                ErrorCode::NotAssigned,
                format!("{topic}/{partition} is not assigned to this member"),
            )
        })?;
        o.fetch_at = Some(offset);
        o.position = Some(offset);
        s.buffer
            .retain(|r| (r.topic.as_str(), r.partition) != (topic, partition));
        Ok(())
    }

    /// Commits the acknowledged offsets and leaves the group, so its partitions move at once. A
    /// commit the group fences off ([`is_fenced`]) is not an error here: those records go to the
    /// partitions' next owners, as they would after any rebalance.
    pub async fn close(self) -> Result<(), Error> {
        self.heartbeats.abort();
        let committed = match commit_acked(&self.shared).await {
            Err(e) if is_fenced(&e) => Ok(()),
            other => other,
        };
        let member = self.shared.lock().member_id.clone();
        let left = self
            .shared
            .transport
            .leave_group(&self.shared.config.group, &member)
            .await;
        committed.and(left)
    }
}

/// Whether a commit was refused because what it names is no longer this member's to commit: the
/// partition moved (`not_assigned`), the generation is gone (`stale_generation`), the group is
/// already further (`offset_backwards`) or the member expired (`unknown_member`). The records go
/// to the partition's next owner again (at least once); retrying the commit cannot help.
pub fn is_fenced(e: &Error) -> bool {
    matches!(
        e.code,
        ErrorCode::NotAssigned
            | ErrorCode::StaleGeneration
            | ErrorCode::OffsetBackwards
            | ErrorCode::UnknownMember
    )
}

/// Takes up to `max` buffered records, skipping those of partitions no longer owned and those
/// before a partition's position (a seek may have moved it), and moves the positions past them.
fn take_buffered(s: &mut State, max: usize) -> Vec<ConsumerRecord> {
    let mut batch = Vec::new();
    while batch.len() < max {
        let Some(r) = s.buffer.pop_front() else {
            break;
        };
        let tp = (r.topic.clone(), r.partition);
        if let Some(o) = s.owned.get_mut(&tp) {
            if o.position.is_none_or(|p| p == r.offset) {
                o.position = Some(r.offset + 1);
                batch.push(r);
            }
        }
    }
    batch
}

/// Waits up to `d` after a retryable error, before trying again.
async fn pause_after_error(d: Duration) {
    tokio::time::sleep(d.min(Duration::from_millis(200))).await;
}

async fn join<T: GroupTransport>(shared: &Shared<T>) -> Result<MemberAssignment, Error> {
    let cfg = &shared.config;
    shared
        .transport
        .join_group(JoinGroup {
            group: cfg.group.clone(),
            topics: cfg.topics.clone(),
            session_timeout_ms: cfg
                .session_timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            assignor: cfg.assignor.clone(),
        })
        .await
}

/// The acknowledged offsets of `owned` that moved past the group's commit.
fn acked<'a>(
    owned: impl Iterator<Item = (&'a TopicPartition, &'a Owned)>,
) -> Vec<TopicPartitionOffset> {
    owned
        .filter_map(|((topic, partition), o)| {
            let acked = o.acked?;
            (o.committed < Some(acked)).then(|| TopicPartitionOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: acked,
            })
        })
        .collect()
}

/// Commits the acknowledged offsets of every owned partition.
async fn commit_acked<T: GroupTransport>(shared: &Shared<T>) -> Result<(), Error> {
    let (member, offsets) = {
        let s = shared.lock();
        ((s.member_id.clone(), s.generation), acked(s.owned.iter()))
    };
    commit_as(shared, member, offsets.clone()).await?;
    let mut s = shared.lock();
    for o in offsets {
        if let Some(p) = s.owned.get_mut(&(o.topic, o.partition)) {
            p.committed = p.committed.max(Some(o.offset));
        }
    }
    Ok(())
}

async fn commit_as<T: GroupTransport>(
    shared: &Shared<T>,
    member: (String, u64),
    offsets: Vec<TopicPartitionOffset>,
) -> Result<(), Error> {
    if offsets.is_empty() {
        return Ok(());
    }
    shared
        .transport
        .commit_group(GroupCommit {
            group: shared.config.group.clone(),
            member: Some(member),
            offsets,
        })
        .await
}

/// Takes up the group's answer: stops delivering revoked partitions, commits what was
/// acknowledged on them, then releases them; adds new partitions at the group's commits.
/// Answers whether partitions were released (the group must hear of it).
async fn apply<T: GroupTransport>(shared: &Shared<T>, view: MemberAssignment) -> bool {
    let assigned: BTreeSet<TopicPartition> = TopicPartitions::pairs(&view.assignment).collect();
    let committed: BTreeMap<TopicPartition, Offset> = view
        .committed
        .iter()
        .map(|c| ((c.topic.clone(), c.partition), c.offset))
        .collect();
    let (member, revoked) = {
        let mut s = shared.lock();
        s.member_id = view.member_id.clone();
        s.rebalancing = view.rebalancing;
        let gone: Vec<TopicPartition> = s
            .owned
            .keys()
            .filter(|tp| !assigned.contains(*tp))
            .cloned()
            .collect();
        // Stop delivering and fetching them now.
        let revoked: BTreeMap<TopicPartition, Owned> = gone
            .into_iter()
            .filter_map(|tp| s.owned.remove_entry(&tp))
            .collect();
        s.buffer
            .retain(|r| !revoked.contains_key(&(r.topic.clone(), r.partition)));
        ((s.member_id.clone(), s.generation), revoked)
    };
    if !revoked.is_empty() {
        // With the generation they were owned at; a refusal means they already moved on.
        let _ = commit_as(shared, member, acked(revoked.iter())).await;
    }
    let mut s = shared.lock();
    for tp in &assigned {
        let c = committed.get(tp).copied();
        s.owned.entry(tp.clone()).or_insert_with(|| Owned {
            committed: c,
            ..Owned::default()
        });
    }
    s.generation = view.generation;
    drop(s);
    shared.changed.notify_waiters();
    !revoked.is_empty()
}

/// Heartbeats every third of the session timeout (faster while rebalancing), releasing what the
/// member gave up, and joins again if the group dropped the member.
async fn heartbeat_loop<T: GroupTransport>(shared: Arc<Shared<T>>) {
    let session = shared
        .config
        .session_timeout
        .unwrap_or(Duration::from_secs(10));
    let interval = (session / 3).max(Duration::from_millis(10));
    loop {
        let (member_id, owned, rebalancing) = {
            let s = shared.lock();
            let owned: Vec<TopicPartition> = s.owned.keys().cloned().collect();
            (s.member_id.clone(), owned, s.rebalancing)
        };
        let pause = if rebalancing {
            interval.min(REBALANCE_HEARTBEAT_INTERVAL)
        } else {
            interval
        };
        tokio::time::sleep(pause).await;
        let owned = TopicPartitions::group(&owned);
        let beat = shared
            .transport
            .heartbeat(Heartbeat {
                group: shared.config.group.clone(),
                member_id,
                owned: Some(owned),
            })
            .await;
        match beat {
            Ok(view) => {
                shared.lock().rejoins = 0;
                if apply(&shared, view).await {
                    // Tell the group at once that the revoked partitions are free.
                    shared.lock().rebalancing = true;
                }
            }
            Err(e) if e.code == ErrorCode::UnknownMember => {
                // The session expired: everything owned is gone; join again.
                let rejoins = {
                    let mut s = shared.lock();
                    s.owned.clear();
                    s.buffer.clear();
                    s.rejoins += 1;
                    s.rejoins
                };
                if rejoins > shared.config.rejoins_max {
                    let message = format!(
                        "the member of group {:?} was dropped {rejoins} times in a row without a \
                         heartbeat answered in between: is the session timeout too short?",
                        shared.config.group
                    );
                    shared.lock().failed = Some(Error::new(ErrorCode::UnknownMember, message));
                    shared.changed.notify_waiters();
                    return;
                }
                match join(&shared).await {
                    Ok(view) => {
                        apply(&shared, view).await;
                    }
                    Err(e) if e.retryable() => {}
                    Err(e) => {
                        shared.lock().failed = Some(e);
                        shared.changed.notify_waiters();
                        return;
                    }
                }
            }
            // Retried at the next beat; a member that stays cut off past its session is dropped
            // by the group and joins again above.
            Err(_) => {}
        }
    }
}
