//! `daftka consume TOPIC --group G`: consume as a member of a consumer group.
//!
//! The command joins the group (`--session-timeout`, `--assignor`), then loops: poll the member's
//! records (`GET /v1/groups/{g}/members/{m}/records`), write and flush them, commit the next offset
//! of every partition in the batch as the member (its id and the generation of the poll's answer).
//! The node keeps the member's read positions, starting at the group's committed offsets, and a
//! poll heartbeats and releases the partitions the member was asked to give back: since each batch
//! is committed before the next poll, the member never holds uncommitted work across a hand-over.
//!
//! - Without `--follow` the command stops once a poll returns nothing while the member is not
//!   rebalancing: its partitions are read up to their high watermarks. While it waits for its share
//!   of the partitions, polls wait on the node (up to [`REBALANCE_WAIT_MS_MAX`]) instead of
//!   spinning.
//! - With `--follow` every poll waits up to [`poll_wait`] (under a third of the session timeout)
//!   for records, so an idle member stays alive; retryable failures are retried after a pause.
//! - `--max-records N` asks no poll for more than what is left, and stops after the N-th record.
//! - While a batch is written (a slow reader of stdout), the member heartbeats every [`poll_wait`].
//!
//! Failures: a commit refused because the partition moved (`not_assigned`), the generation is gone
//! (`stale_generation`) or the group is already further (`offset_backwards`) is dropped: the new
//! owner reads those records again (at least once). `unknown_member` (the session expired) joins
//! again, from the group's commits. A poll whose outcome is unknown (a timeout, a connection lost
//! mid-request) may have moved the member's positions past records it never printed, so the member
//! leaves and joins again, from the commits, instead of carrying on.
//!
//! A join whose outcome is unknown is not retried (it could add a second member); with `--follow`
//! the next attempt joins anew, and a member that was created after all holds its share until its
//! session expires. After [`REJOINS_MAX`] joins in a row without progress the command fails with
//! `rejoin_failed`.
//!
//! The member leaves the group (`DELETE`) when the command ends: normally, on an error, and when
//! `stop` (Ctrl-C or SIGTERM in the binary) completes, so its partitions move at once instead of
//! after the session timeout. `stop` interrupts whatever the member waits on, except the commit of
//! a batch it printed; a batch interrupted while being written is not committed (the group reads it
//! again).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::args::ConsumeArgs;
use super::consume::write_record;
use super::ClientError;
use daftka_http::client::{self, Api, MemberAssignment, TopicPartitionOffset};
#[cfg(test)]
use daftka_http::json::FetchedRecordJson;
use daftka_http::json::GroupRecordJson;

/// Most records asked for in one poll.
const POLL_RECORDS_MAX: u64 = 500;
/// Longest wait of one poll on the node; shorter with a short session (see [`poll_wait`]).
const POLL_WAIT_MS_MAX: u64 = 5_000;
/// A poll's wait is at most the session timeout divided by this, so a member that waits in polls
/// is heard from well within its session even if one poll answers late.
const POLL_WAITS_PER_SESSION: u64 = 4;
/// Longest wait of a poll without `--follow`, while the member waits for the rest of its share: a
/// member that owns part of it waits on its own partitions' records, not on the hand-over, so
/// this bounds how late it notices the rest.
const REBALANCE_WAIT_MS_MAX: u64 = 250;
/// Shortest time between two polls that returned nothing, in case the node answers at once.
const POLL_INTERVAL_MS_MIN: u64 = 100;
/// Pause before trying again after a retryable failure in `--follow` mode.
const FOLLOW_ERROR_PAUSE_MS: u64 = 1_000;
/// Joins in a row without a successful commit or an empty poll before the command gives up.
const REJOINS_MAX: u32 = 5;

/// How long one poll waits on the node for records, and how often a member busy writing a batch
/// heartbeats: a quarter of the session timeout, at most [`POLL_WAIT_MS_MAX`], at least 1 ms.
pub fn poll_wait(session_timeout: Duration) -> Duration {
    let session_ms = u64::try_from(session_timeout.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis((session_ms / POLL_WAITS_PER_SESSION).clamp(1, POLL_WAIT_MS_MAX))
}

/// Consumes `args.topic` as a member of `group` until caught up (or forever with `--follow`),
/// `--max-records`, an error or `stop`; then leaves the group.
pub async fn run(
    api: &Api,
    args: &ConsumeArgs,
    group: &str,
    out: &mut (impl AsyncWrite + Unpin),
    stop: impl Future<Output = ()>,
) -> Result<(), ClientError> {
    if args.partition.is_some() {
        return Err(ClientError::Usage(
            "--partition cannot be used with --group: a member reads the partitions the group \
             assigns it"
                .into(),
        ));
    }
    let mut member = Member {
        api,
        args,
        group,
        topics: vec![args.topic.clone()],
        state: None,
        remaining: args.max_records,
        wait: poll_wait(args.session_timeout),
        idle: true,
        rejoins: 0,
    };
    let result = member.consume(out, std::pin::pin!(stop)).await;
    let left = member.leave().await;
    result.and(left)
}

/// What one step of the loop did.
enum Step {
    /// Nothing to commit: keep polling.
    Continue,
    /// Printed a batch whose next offsets are to be committed.
    Printed(Vec<TopicPartitionOffset>),
    /// Caught up (without `--follow`) or `--max-records` reached.
    Done,
}

/// One member of one group, and what the command still has to do.
struct Member<'a> {
    api: &'a Api,
    args: &'a ConsumeArgs,
    group: &'a str,
    /// What the member subscribes to: the consumed topic.
    topics: Vec<String>,
    /// The member's standing from the last answer; `None` when it must join (again) first.
    state: Option<MemberAssignment>,
    /// Records still to print under `--max-records`; `None` for no limit.
    remaining: Option<u64>,
    /// How long a waiting poll waits, and the heartbeat period while writing.
    wait: Duration,
    /// The last poll (or the join) returned nothing.
    idle: bool,
    /// Joins since the last successful commit or empty poll.
    rejoins: u32,
}

impl Member<'_> {
    /// The loop: steps until done or `stop`; with `--follow`, a retryable failure pauses and tries
    /// again. `stop` interrupts a join, a poll, a write or a pause, but not the commit of a batch
    /// already printed, so what was printed is not read again by the group.
    async fn consume(
        &mut self,
        out: &mut (impl AsyncWrite + Unpin),
        mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), ClientError> {
        loop {
            let step = tokio::select! {
                // Polled first, so a signal handler it installs is there before anything is printed.
                biased;
                () = &mut stop => return Ok(()),
                step = self.step(out) => step,
            };
            let result = match step {
                Ok(Step::Continue) => Ok(()),
                Ok(Step::Done) => return Ok(()),
                Ok(Step::Printed(offsets)) => self.commit(&offsets).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {}
                Err(e) if self.args.follow && e.retryable() => {
                    tracing::warn!(group = self.group, error = %e, "group consume failed; retrying");
                    let pause = tokio::time::sleep(Duration::from_millis(FOLLOW_ERROR_PAUSE_MS));
                    tokio::select! {
                        biased;
                        () = &mut stop => return Ok(()),
                        () = pause => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Joins if needed, polls once, and prints what the poll returned.
    async fn step(&mut self, out: &mut (impl AsyncWrite + Unpin)) -> Result<Step, ClientError> {
        if self.remaining == Some(0) {
            return Ok(Step::Done);
        }
        let state = match &self.state {
            Some(state) => state.clone(),
            None => self.join().await?,
        };
        let wait = self.wait_ms(&state);
        let started = Instant::now();
        let limit = self
            .remaining
            .map_or(POLL_RECORDS_MAX, |r| r.min(POLL_RECORDS_MAX));
        let polled = match self
            .api
            .poll_group(self.group, &state.member_id, limit, wait)
            .await
        {
            Ok(polled) => polled,
            Err(e) if is_code(&e, "unknown_member") => {
                self.expired(&e)?;
                return Ok(Step::Continue);
            }
            Err(e) if e.retryable() && !client::nothing_done(&e) => {
                // The node may have moved the positions past records this member never saw: start
                // again from the group's commits.
                tracing::warn!(group = self.group, error = %e, "poll outcome unknown; rejoining");
                if let Err(e) = self.api.leave_group(self.group, &state.member_id).await {
                    tracing::debug!(error = %e, "leaving before rejoining failed");
                }
                self.expired(&e)?;
                return Ok(Step::Continue);
            }
            Err(e) => return Err(e),
        };
        let mut records = polled.records;
        self.state = Some(polled.member);
        if let Some(remaining) = self.remaining {
            records.truncate(usize::try_from(remaining).unwrap_or(usize::MAX));
        }
        self.idle = records.is_empty();
        if records.is_empty() {
            self.rejoins = 0;
            let rebalancing = self.state.as_ref().is_some_and(|s| s.rebalancing);
            if !self.args.follow && !rebalancing {
                return Ok(Step::Done);
            }
            if wait > 0 {
                let min = Duration::from_millis(POLL_INTERVAL_MS_MIN);
                tokio::time::sleep(min.saturating_sub(started.elapsed())).await;
            }
            return Ok(Step::Continue);
        }
        let text = format_polled(&records, self.args.print_offsets)?;
        self.keep_alive(async {
            out.write_all(&text).await?;
            out.flush().await
        })
        .await?;
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.saturating_sub(records.len() as u64);
        }
        Ok(Step::Printed(next_offsets(&records)))
    }

    /// How long the next poll waits on the node: always with `--follow`; otherwise only while the
    /// member waits for its share of the partitions, so an idle poll does not spin.
    fn wait_ms(&self, state: &MemberAssignment) -> u64 {
        let wait = u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX);
        if self.args.follow {
            wait
        } else if self.idle && state.rebalancing {
            wait.min(REBALANCE_WAIT_MS_MAX)
        } else {
            0
        }
    }

    /// Joins the group as a new member.
    async fn join(&mut self) -> Result<MemberAssignment, ClientError> {
        let session_ms = u64::try_from(self.args.session_timeout.as_millis()).unwrap_or(u64::MAX);
        let state = self
            .api
            .join_group(
                self.group,
                &self.topics,
                Some(session_ms),
                self.args.assignor.as_deref(),
            )
            .await?;
        tracing::debug!(group = self.group, member = %state.member_id, generation = state.generation, "joined");
        self.idle = true;
        self.state = Some(state.clone());
        Ok(state)
    }

    /// Forgets the member so the next step joins again, unless that happened too often in a row.
    fn expired(&mut self, cause: &ClientError) -> Result<(), ClientError> {
        self.state = None;
        self.rejoins += 1;
        if self.rejoins > REJOINS_MAX {
            return Err(ClientError::Api {
                code: "rejoin_failed".into(),
                message: format!(
                    "the member of group {:?} was lost {} times in a row; last: {cause}",
                    self.group, self.rejoins
                ),
                retryable: false,
            });
        }
        Ok(())
    }

    /// Commits a printed batch's next offsets as the member. A commit the group fences off is
    /// dropped (the records go to the partition's new owner again); an expired member rejoins.
    async fn commit(&mut self, offsets: &[TopicPartitionOffset]) -> Result<(), ClientError> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let result = self
            .api
            .commit_as_member(self.group, &state.member_id, state.generation, offsets)
            .await;
        match result {
            Ok(()) => {
                self.rejoins = 0;
                Ok(())
            }
            Err(e) if is_code(&e, "unknown_member") => {
                tracing::warn!(group = self.group, error = %e, "member expired; rejoining");
                self.expired(&e)
            }
            Err(e)
                if ["not_assigned", "stale_generation", "offset_backwards"]
                    .iter()
                    .any(|code| is_code(&e, code)) =>
            {
                tracing::warn!(group = self.group, error = %e, "commit fenced off; dropped");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `work`, heartbeating every [`poll_wait`] alongside until it is done, so a member blocked
    /// on a slow stdout keeps its session (and its partitions). A failed heartbeat is left for the
    /// commit to find out about.
    async fn keep_alive<T>(&self, work: impl Future<Output = T>) -> T {
        let Some(member) = self.state.as_ref().map(|s| s.member_id.clone()) else {
            return work.await;
        };
        let mut work = std::pin::pin!(work);
        let heartbeats = async {
            let mut ticks = tokio::time::interval_at(Instant::now() + self.wait, self.wait);
            loop {
                ticks.tick().await;
                if let Err(e) = self.api.heartbeat(self.group, &member).await {
                    tracing::debug!(group = self.group, error = %e, "heartbeat failed");
                }
            }
        };
        tokio::select! {
            output = &mut work => output,
            // The heartbeats never end; if they did, the work would still finish.
            () = heartbeats => work.await,
        }
    }

    /// Leaves the group, if the command is still a member.
    async fn leave(&mut self) -> Result<(), ClientError> {
        match self.state.take() {
            Some(state) => self.api.leave_group(self.group, &state.member_id).await,
            None => Ok(()),
        }
    }
}

/// Whether `e` is the node's error `code`.
fn is_code(e: &ClientError, code: &str) -> bool {
    matches!(e, ClientError::Api { code: c, .. } if c == code)
}

/// The next offset to read of every partition in a batch: one past its last record.
pub fn next_offsets(records: &[GroupRecordJson]) -> Vec<TopicPartitionOffset> {
    let mut next: BTreeMap<(&str, u32), u64> = BTreeMap::new();
    for r in records {
        let n = next.entry((&r.topic, r.partition)).or_default();
        *n = (*n).max(r.record.offset + 1);
    }
    next.into_iter()
        .map(|((topic, partition), offset)| TopicPartitionOffset {
            topic: topic.to_owned(),
            partition,
            offset,
        })
        .collect()
}

/// The output of one polled batch, a line per record, in the format of `daftka consume`.
pub fn format_polled(
    records: &[GroupRecordJson],
    print_offsets: bool,
) -> Result<Vec<u8>, ClientError> {
    let mut text = Vec::new();
    for r in records {
        write_record(
            &mut text,
            r.partition,
            r.record.offset,
            r.record.key.as_deref(),
            &r.record.value,
            print_offsets,
        )?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientCommand, ClientOpts};
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    use daftka_http::mock::{MockNode, Reply, Request};
    use serde_json::{json, Value};
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    /// An answer the in-memory node gives instead of the normal one, in order of the routes hit.
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        /// The next commit is refused with this status and code (nothing is stored).
        Commit(u16, &'static str),
        /// The member expires just before the next commit, which answers `unknown_member`.
        ExpireOnCommit,
        /// The member expires just before the next poll, which answers `unknown_member`.
        ExpireOnPoll,
    }

    /// One topic `t` and one group `g` on an in-memory node: members with their read positions,
    /// the group's commits, and every member every partition (enough for one member at a time).
    #[derive(Default)]
    struct Group {
        partitions: Vec<Vec<String>>,
        commits: BTreeMap<u32, u64>,
        /// Live members and their positions (the next offset each reads).
        members: BTreeMap<String, BTreeMap<u32, u64>>,
        joins: u32,
        generation: u64,
        /// Records one poll returns at most, whatever it asks for.
        per_poll: Option<usize>,
        /// Polls answered with nothing and `rebalancing` (the share is still held by others).
        rebalancing_polls: u32,
        /// (poll count, partition, value): appended when that many polls were answered.
        appends: Vec<(u32, usize, String)>,
        polls: u32,
        faults: VecDeque<Fault>,
        left: Vec<String>,
        heartbeats: u32,
    }

    impl Group {
        fn with_values(partitions: &[&[&str]]) -> Arc<Mutex<Group>> {
            Arc::new(Mutex::new(Group {
                partitions: partitions
                    .iter()
                    .map(|p| p.iter().map(|v| v.to_string()).collect())
                    .collect(),
                ..Group::default()
            }))
        }

        /// The next scripted fault, if it is of the kind `matches` accepts.
        fn take_fault(&mut self, matches: impl Fn(&Fault) -> bool) -> Option<Fault> {
            if self.faults.front().is_some_and(matches) {
                self.faults.pop_front()
            } else {
                None
            }
        }

        /// The member JSON of join, heartbeat and poll answers.
        fn standing(&self, id: &str) -> Value {
            let rebalancing = self.rebalancing_polls > 0;
            let partitions: Vec<usize> = if rebalancing {
                Vec::new()
            } else {
                (0..self.partitions.len()).collect()
            };
            let committed: Vec<Value> = self
                .commits
                .iter()
                .map(|(p, o)| json!({"topic": "t", "partition": p, "offset": o}))
                .collect();
            json!({"member_id": id, "generation": self.generation,
                   "assignment": [{"topic": "t", "partitions": partitions}], "revoking": [],
                   "rebalancing": rebalancing, "committed": committed})
        }

        fn reply(&mut self, req: &Request) -> Reply {
            let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
            match (req.method.as_str(), segments.as_slice()) {
                ("POST", ["v1", "groups", "g", "members"]) => {
                    self.joins += 1;
                    self.generation += 1;
                    let id = format!("m{}", self.joins);
                    self.members.insert(id.clone(), BTreeMap::new());
                    Reply::json(201, self.standing(&id))
                }
                ("DELETE", ["v1", "groups", "g", "members", id]) => {
                    if self.members.remove(*id).is_none() {
                        return Reply::error(404, "unknown_member", "no such member");
                    }
                    self.left.push(id.to_string());
                    Reply::empty(204)
                }
                ("POST", ["v1", "groups", "g", "members", id, "heartbeat"]) => {
                    if !self.members.contains_key(*id) {
                        return Reply::error(404, "unknown_member", "no such member");
                    }
                    self.heartbeats += 1;
                    Reply::json(200, self.standing(id))
                }
                ("GET", ["v1", "groups", "g", "members", id, "records"]) => self.poll(req, id),
                ("POST", ["v1", "groups", "g", "offsets"]) => self.commit(&req.json()),
                _ => Reply::error(404, "not_found", &format!("no route {}", req.path)),
            }
        }

        fn poll(&mut self, req: &Request, id: &str) -> Reply {
            assert_eq!(req.param("encoding").as_deref(), Some("base64"));
            assert_eq!(req.param("offset"), None);
            if self
                .take_fault(|f| matches!(f, Fault::ExpireOnPoll))
                .is_some()
            {
                self.members.remove(id);
            }
            if !self.members.contains_key(id) {
                return Reply::error(404, "unknown_member", "no such member");
            }
            self.polls += 1;
            let polls = self.polls;
            for (_, p, value) in self.appends.iter().filter(|(at, _, _)| *at == polls) {
                self.partitions[*p].push(value.clone());
            }
            if self.rebalancing_polls > 0 {
                // Like the node, the answer is the standing before the poll's wait.
                let answer = merge(json!({"records": []}), self.standing(id));
                self.rebalancing_polls -= 1;
                return Reply::json(200, answer);
            }
            let max: usize = req
                .param("max_records")
                .and_then(|m| m.parse().ok())
                .expect("max_records");
            let max = self.per_poll.map_or(max, |cap| cap.min(max));
            let mut records = Vec::new();
            for (p, values) in self.partitions.iter().enumerate() {
                let p = p as u32;
                let start = self.members[id]
                    .get(&p)
                    .or_else(|| self.commits.get(&p))
                    .copied()
                    .unwrap_or(0);
                for offset in start..values.len() as u64 {
                    if records.len() >= max {
                        break;
                    }
                    records.push(json!({"topic": "t", "partition": p, "offset": offset,
                        "key": null, "value": BASE64.encode(&values[offset as usize]),
                        "headers": {}, "timestamp": 0}));
                    if let Some(positions) = self.members.get_mut(id) {
                        positions.insert(p, offset + 1);
                    }
                }
            }
            let answer = json!({ "records": records });
            Reply::json(200, merge(answer, self.standing(id)))
        }

        fn commit(&mut self, body: &Value) -> Reply {
            let id = body["member_id"].as_str().expect("a member's commit");
            let generation = body["generation"].as_u64().expect("a generation");
            assert!(generation >= 1 && generation <= self.generation, "{body}");
            if self
                .take_fault(|f| matches!(f, Fault::ExpireOnCommit))
                .is_some()
            {
                self.members.remove(id);
            }
            if !self.members.contains_key(id) {
                return Reply::error(404, "unknown_member", "no such member");
            }
            if let Some(Fault::Commit(status, code)) =
                self.take_fault(|f| matches!(f, Fault::Commit(..)))
            {
                return Reply::error(status, code, "fenced");
            }
            let offsets = body["offsets"].as_array().expect("offsets");
            for o in offsets {
                assert_eq!(o["topic"], "t");
                let p = o["partition"].as_u64().expect("partition") as u32;
                self.commits
                    .insert(p, o["offset"].as_u64().expect("offset"));
            }
            Reply::json(200, json!({"committed": offsets.len()}))
        }
    }

    /// `a` with the fields of `b` added.
    fn merge(mut a: Value, b: Value) -> Value {
        if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
            a.extend(b);
        }
        a
    }

    async fn serve(group: &Arc<Mutex<Group>>) -> MockNode {
        let group = group.clone();
        MockNode::start(move |req| group.lock().expect("lock").reply(req)).await
    }

    /// `daftka consume t --group g ARGS`, parsed.
    fn consume_args(args: &[&str]) -> ConsumeArgs {
        let with_group: Vec<&str> = ["--group", "g"].iter().chain(args).copied().collect();
        crate::client::consume::tests::consume_args(&with_group)
    }

    /// Runs `daftka consume t --group g ARGS` until it ends by itself.
    async fn consume(node: &MockNode, args: &[&str]) -> Result<String, ClientError> {
        let with_group: Vec<&str> = ["--group", "g"].iter().chain(args).copied().collect();
        crate::client::consume::tests::consume(node, &with_group).await
    }

    /// The requests to one kind of route: `members`, `records`, `offsets`, `heartbeat`.
    fn sent(node: &MockNode, method: &str, suffix: &str) -> Vec<Request> {
        node.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .collect()
    }

    #[test]
    fn poll_wait_is_a_quarter_of_the_session_within_bounds() {
        // Under a third of the session, so an idle member waiting in polls is heard from in time.
        assert_eq!(
            poll_wait(Duration::from_secs(10)),
            Duration::from_millis(2_500)
        );
        assert_eq!(poll_wait(Duration::from_secs(3600)), Duration::from_secs(5));
        assert_eq!(
            poll_wait(Duration::from_millis(2)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn next_offsets_are_one_past_each_partitions_last_record() {
        // A batch spanning partitions commits each partition's next offset.
        let record = |partition, offset| GroupRecordJson {
            topic: "t".into(),
            partition,
            record: FetchedRecordJson {
                offset,
                key: None,
                value: String::new(),
                headers: Default::default(),
                timestamp: None,
            },
        };
        let batch = [record(1, 4), record(0, 7), record(1, 5), record(0, 8)];
        let offset = |partition, offset| TopicPartitionOffset {
            topic: "t".into(),
            partition,
            offset,
        };
        assert_eq!(next_offsets(&batch), vec![offset(0, 9), offset(1, 6)]);
    }

    #[tokio::test]
    async fn member_starts_from_commits_commits_each_batch_and_leaves() {
        // A member reads from the group's committed offsets, commits the offset after the last
        // printed record of each partition as the member, and leaves when done.
        let group = Group::with_values(&[&["a0", "a1", "a2"], &["b0"]]);
        group.lock().expect("lock").commits.insert(0, 1);
        let node = serve(&group).await;
        assert_eq!(
            consume(&node, &["--max-records", "1", "--print-offsets"])
                .await
                .expect("consume"),
            "0\t1\t\ta1\n"
        );
        {
            let g = group.lock().expect("lock");
            assert_eq!(
                g.commits,
                BTreeMap::from([(0, 2)]),
                "the offset after the last printed record"
            );
            assert_eq!(g.left, vec!["m1"]);
            assert!(g.members.is_empty());
        }
        let joins = sent(&node, "POST", "/members");
        assert_eq!(
            joins[0].json(),
            json!({"topics": ["t"], "session_timeout_ms": 10000})
        );
        let polls = sent(&node, "GET", "/records");
        assert_eq!(
            polls.len(),
            1,
            "--max-records 1 stops after the first record"
        );
        assert_eq!(polls[0].param("max_records").as_deref(), Some("1"));
        assert_eq!(
            sent(&node, "POST", "/offsets")[0].json(),
            json!({"member_id": "m1", "generation": 1,
                   "offsets": [{"topic": "t", "partition": 0, "offset": 2}]})
        );

        assert_eq!(consume(&node, &[]).await.expect("consume"), "a2\nb0\n");
        assert_eq!(
            group.lock().expect("lock").commits,
            BTreeMap::from([(0, 3), (1, 1)])
        );
        assert_eq!(consume(&node, &[]).await.expect("consume"), "");
        let g = group.lock().expect("lock");
        assert_eq!(g.left, vec!["m1", "m2", "m3"]);
        assert!(sent(&node, "GET", "/records")
            .iter()
            .all(|r| r.param("max_wait_ms").as_deref() == Some("0")));
        assert_eq!(
            sent(&node, "POST", "/offsets").len(),
            2,
            "one commit per printed batch, none for an empty poll"
        );
    }

    #[tokio::test]
    async fn fenced_commits_are_dropped_and_an_expired_member_rejoins() {
        // A commit fenced off is dropped and the member carries on; a member that expired joins
        // again and rereads from the group's commits (at least once).
        let group = Group::with_values(&[&["a0", "a1"], &["b0"]]);
        {
            let mut g = group.lock().expect("lock");
            g.per_poll = Some(1);
            g.faults = VecDeque::from([
                Fault::Commit(409, "not_assigned"),
                Fault::Commit(409, "stale_generation"),
                Fault::ExpireOnCommit,
            ]);
        }
        let node = serve(&group).await;
        assert_eq!(
            consume(&node, &[]).await.expect("consume"),
            "a0\na1\nb0\na0\na1\nb0\n"
        );
        {
            let g = group.lock().expect("lock");
            assert_eq!(g.commits, BTreeMap::from([(0, 2), (1, 1)]));
            assert_eq!(g.joins, 2);
            assert_eq!(g.left, vec!["m2"], "the expired member is not left again");
        }

        // A member expired before its poll joins again and finds nothing new.
        group
            .lock()
            .expect("lock")
            .faults
            .push_back(Fault::ExpireOnPoll);
        assert_eq!(consume(&node, &[]).await.expect("consume"), "");
        let g = group.lock().expect("lock");
        assert_eq!(g.joins, 4);
        assert_eq!(g.left, vec!["m2", "m4"]);
    }

    #[tokio::test]
    async fn other_commit_failures_end_the_command_after_leaving() {
        // A commit failure that is not a fence is the command's error; the member still leaves.
        let group = Group::with_values(&[&["a0"]]);
        group
            .lock()
            .expect("lock")
            .faults
            .push_back(Fault::Commit(400, "invalid_request"));
        let node = serve(&group).await;
        let err = consume(&node, &[]).await.expect_err("commit fails");
        assert_eq!(err.to_string(), "invalid_request: fenced");
        assert_eq!(group.lock().expect("lock").left, vec!["m1"]);
    }

    #[tokio::test]
    async fn a_rebalancing_member_waits_in_polls_for_its_share() {
        // Without --follow, a member that has no partitions yet waits on the node instead of
        // stopping or spinning, then reads its share without waiting.
        let group = Group::with_values(&[&["a0"], &["b0"]]);
        group.lock().expect("lock").rebalancing_polls = 2;
        let node = serve(&group).await;
        assert_eq!(consume(&node, &[]).await.expect("consume"), "a0\nb0\n");
        let waits: Vec<String> = sent(&node, "GET", "/records")
            .iter()
            .map(|r| r.param("max_wait_ms").expect("max_wait_ms"))
            .collect();
        // The third poll still waits: the second answered the standing from before its wait.
        assert_eq!(waits, vec!["250", "250", "250", "0"]);
    }

    #[tokio::test]
    async fn follow_waits_in_polls_shorter_than_the_session() {
        // --follow long-polls with a quarter of the session timeout and runs until --max-records.
        let group = Group::with_values(&[&["a0"], &[]]);
        group
            .lock()
            .expect("lock")
            .appends
            .push((3, 1, "late".into()));
        let node = serve(&group).await;
        let out = consume(
            &node,
            &[
                "--follow",
                "--max-records",
                "2",
                "--session-timeout",
                "2s",
                "--print-offsets",
                "--assignor",
                "range",
            ],
        )
        .await
        .expect("consume");
        assert_eq!(out, "0\t0\t\ta0\n1\t0\t\tlate\n");
        let polls = sent(&node, "GET", "/records");
        assert!(polls
            .iter()
            .all(|r| r.param("max_wait_ms").as_deref() == Some("500")));
        assert_eq!(polls[0].param("max_records").as_deref(), Some("2"));
        assert_eq!(polls[1].param("max_records").as_deref(), Some("1"));
        assert_eq!(
            sent(&node, "POST", "/members")[0].json(),
            json!({"topics": ["t"], "session_timeout_ms": 2000, "assignor": "range"})
        );
        assert_eq!(group.lock().expect("lock").left, vec!["m1"]);
    }

    /// A stdout that keeps what is written to it, once `accept` lets a write through (else the
    /// write is pending; `accept` must arrange a wake-up).
    struct Gated<F> {
        accept: F,
        written: Vec<u8>,
    }

    impl<F: FnMut(&Context<'_>) -> bool + Unpin> AsyncWrite for Gated<F> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            if !(self.accept)(cx) {
                return Poll::Pending;
            }
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn stop_ends_a_following_member_after_committing_what_it_printed() {
        // The stop future (Ctrl-C in the binary) ends --follow cleanly: a batch printed when it
        // comes is still committed, then the member leaves.
        let group = Group::with_values(&[&["a0"]]);
        let node = serve(&group).await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // A stdout that completes the stop when it is written to.
        let mut stop = Some(tx);
        let mut out = Gated {
            accept: move |_: &Context<'_>| {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                true
            },
            written: Vec::new(),
        };
        crate::client::run_until(
            ClientOpts { url: node.url() },
            ClientCommand::Consume(consume_args(&["--follow"])),
            &b""[..],
            &mut out,
            async {
                let _ = rx.await;
            },
        )
        .await
        .expect("a stopped consume succeeds");
        assert_eq!(out.written, b"a0\n");
        let g = group.lock().expect("lock");
        assert_eq!(g.commits, BTreeMap::from([(0, 1)]));
        assert_eq!(g.left, vec!["m1"]);
        assert_eq!(g.polls, 1, "no poll after the stop");
    }

    #[tokio::test]
    async fn a_member_blocked_on_stdout_keeps_heartbeating() {
        // While a batch waits for a slow reader of stdout, the member heartbeats on its own; here
        // stdout only accepts the batch once a heartbeat has reached the node.
        let group = Group::with_values(&[&["a0"]]);
        let open = Arc::new(AtomicBool::new(false));
        let waker: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let node = {
            let (group, open, waker) = (group.clone(), open.clone(), waker.clone());
            MockNode::start(move |req| {
                let reply = group.lock().expect("lock").reply(req);
                if req.path.ends_with("/heartbeat") {
                    open.store(true, Ordering::SeqCst);
                    if let Some(w) = waker.lock().expect("lock").take() {
                        w.wake();
                    }
                }
                reply
            })
            .await
        };
        // A stdout that accepts nothing until a heartbeat has reached the node.
        let mut out = Gated {
            accept: move |cx: &Context<'_>| {
                if !open.load(Ordering::SeqCst) {
                    *waker.lock().expect("lock") = Some(cx.waker().clone());
                    // Checked again: the heartbeat may have opened it in between.
                    return open.load(Ordering::SeqCst);
                }
                true
            },
            written: Vec::new(),
        };
        let args = consume_args(&["--session-timeout", "40ms"]);
        run(
            &Api::new(&node.url()).expect("url"),
            &args,
            "g",
            &mut out,
            std::future::pending(),
        )
        .await
        .expect("consume");
        assert_eq!(out.written, b"a0\n");
        let g = group.lock().expect("lock");
        assert!(g.heartbeats >= 1);
        assert_eq!(g.commits, BTreeMap::from([(0, 1)]));
    }

    #[tokio::test]
    async fn partition_with_a_group_is_a_usage_error() {
        // Arguments built without clap's checks are refused before joining.
        let group = Group::with_values(&[&["a0"]]);
        let node = serve(&group).await;
        let mut args = consume_args(&[]);
        args.partition = Some(0);
        let err = run(
            &Api::new(&node.url()).expect("url"),
            &args,
            "g",
            &mut Vec::new(),
            std::future::pending(),
        )
        .await
        .expect_err("usage");
        assert_eq!(err.exit_code(), 2);
        assert!(node.requests().is_empty());
    }
}
