//! `daftka consume TOPIC --group G`: consume as a member of a consumer group.
//!
//! The member is [`daftka_protocol::Consumer`], the same one a native client uses, over the HTTP
//! API (`daftka_http`'s [`GroupTransport`](daftka_protocol::consumer::GroupTransport) for
//! [`Api`]): it joins the group (`--session-timeout`, `--assignor`), heartbeats in the
//! background, keeps its read positions starting at the group's committed offsets, fetches its
//! partitions, and on a rebalance commits what it acknowledged of the partitions it gives up
//! before releasing them. This command loops: take a batch of the member's records, write and
//! flush it, acknowledge it, commit as the member (its id and generation).
//!
//! - Without `--follow` the command stops once a batch comes back empty while the member is not
//!   rebalancing: its partitions are read up to their high watermarks. While it waits for its share
//!   of the partitions, batches wait up to [`REBALANCE_WAIT_MS_MAX`] instead of spinning.
//! - With `--follow` every batch waits up to [`poll_wait`] (a quarter of the session timeout) for
//!   records; retryable failures are retried after a pause.
//! - `--max-records N` asks no batch for more than what is left, and stops after the N-th record.
//! - The heartbeats go on while a batch is written (a slow reader of stdout keeps its partitions).
//!
//! Failures: a commit refused because the partition moved (`not_assigned`), the generation is gone
//! (`stale_generation`), the group is already further (`offset_backwards`) or the member expired
//! (`unknown_member`) is dropped: the partition's next owner reads those records again (at least
//! once). An expired member joins again by itself, from the group's commits; after
//! [`daftka_protocol::consumer::REJOINS_MAX_DEFAULT`] rejoins in a row without a heartbeat
//! answered, the command fails with `unknown_member`. A fetch whose answer is lost moves nothing
//! (the positions are the member's), so reads are simply retried.
//!
//! The member leaves the group when the command ends (normally, on an error, and when `stop`
//! (Ctrl-C or SIGTERM in the binary) completes), after committing what it printed, so its
//! partitions move at once instead of after the session timeout. `stop` interrupts whatever the
//! member waits on, except the commit of a batch it printed; a batch interrupted while being
//! written is not committed (the group reads it again).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use daftka_protocol::consumer::is_fenced;
use daftka_protocol::{Consumer, ConsumerConfig, ConsumerRecord};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::args::ConsumeArgs;
use super::consume::write_record;
use super::ClientError;
use daftka_http::client::Api;

/// Most records in one batch.
const POLL_RECORDS_MAX: u64 = 500;
/// Longest wait of one batch; shorter with a short session (see [`poll_wait`]).
const POLL_WAIT_MS_MAX: u64 = 5_000;
/// A batch's wait is at most the session timeout divided by this.
const POLL_WAITS_PER_SESSION: u64 = 4;
/// Longest wait of a batch without `--follow`, while the member waits for the rest of its share: a
/// member that owns part of it waits on its own partitions' records, not on the hand-over, so
/// this bounds how late it notices the rest.
const REBALANCE_WAIT_MS_MAX: u64 = 250;
/// Shortest time between two batches that came back empty although they could wait, in case the
/// node answers at once.
const POLL_INTERVAL_MS_MIN: u64 = 100;
/// Pause before trying again after a retryable failure in `--follow` mode.
const FOLLOW_ERROR_PAUSE_MS: u64 = 1_000;

/// How long one batch waits for records: a quarter of the session timeout, at most
/// [`POLL_WAIT_MS_MAX`], at least 1 ms.
pub fn poll_wait(session_timeout: Duration) -> Duration {
    let session_ms = u64::try_from(session_timeout.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis((session_ms / POLL_WAITS_PER_SESSION).clamp(1, POLL_WAIT_MS_MAX))
}

/// Consumes `args.topic` as a member of `group` until caught up (or forever with `--follow`),
/// `--max-records`, an error or `stop`; then commits and leaves the group.
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
    let wait = poll_wait(args.session_timeout);
    let mut config = ConsumerConfig::new(group, [args.topic.clone()]);
    config.session_timeout = Some(args.session_timeout);
    config.assignor = args.assignor.clone();
    config.fetch_wait = wait;
    let mut stop = std::pin::pin!(stop);
    let consumer = tokio::select! {
        // Polled first, so a signal handler it installs is there before anything is printed.
        biased;
        () = &mut stop => return Ok(()),
        joined = Consumer::join(api.clone(), config) => joined?,
    };
    tracing::debug!(group, member = %consumer.member_id(), generation = consumer.generation(), "joined");
    let mut member = Member {
        consumer: &consumer,
        args,
        group,
        remaining: args.max_records,
        wait,
    };
    let result = member.consume(out, stop).await;
    let left = consumer.close().await.map_err(ClientError::from);
    result.and(left)
}

/// What one step of the loop did.
enum Step {
    /// Nothing to commit: keep polling.
    Continue,
    /// Printed and acknowledged a batch: commit it.
    Printed,
    /// Caught up (without `--follow`) or `--max-records` reached.
    Done,
}

/// The command's loop over one member.
struct Member<'a> {
    consumer: &'a Consumer<Api>,
    args: &'a ConsumeArgs,
    group: &'a str,
    /// Records still to print under `--max-records`; `None` for no limit.
    remaining: Option<u64>,
    /// How long a batch waits with `--follow`.
    wait: Duration,
}

impl Member<'_> {
    /// Steps until done or `stop`; with `--follow`, a retryable failure pauses and tries again.
    /// `stop` interrupts a batch, a write or a pause, but not the commit of a batch already
    /// printed, so what was printed is not read again by the group.
    async fn consume(
        &mut self,
        out: &mut (impl AsyncWrite + Unpin),
        mut stop: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), ClientError> {
        loop {
            let step = tokio::select! {
                biased;
                () = &mut stop => return Ok(()),
                step = self.step(out) => step,
            };
            let result = match step {
                Ok(Step::Continue) => Ok(()),
                Ok(Step::Done) => return Ok(()),
                Ok(Step::Printed) => self.commit().await,
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

    /// Takes one batch of the member's records and prints and acknowledges it.
    async fn step(&mut self, out: &mut (impl AsyncWrite + Unpin)) -> Result<Step, ClientError> {
        if self.remaining == Some(0) {
            return Ok(Step::Done);
        }
        let limit = self
            .remaining
            .map_or(POLL_RECORDS_MAX, |r| r.min(POLL_RECORDS_MAX));
        let wait = self.batch_wait();
        let started = Instant::now();
        let assignment = self.consumer.assignment();
        let records = self
            .consumer
            .poll(usize::try_from(limit).unwrap_or(usize::MAX), wait)
            .await?;
        if records.is_empty() {
            // Caught up: nothing on the partitions it had all along, and no more to come.
            let settled = !self.consumer.rebalancing() && self.consumer.assignment() == assignment;
            if !self.args.follow && settled {
                return Ok(Step::Done);
            }
            if !wait.is_zero() {
                let min = Duration::from_millis(POLL_INTERVAL_MS_MIN);
                tokio::time::sleep(min.saturating_sub(started.elapsed())).await;
            }
            return Ok(Step::Continue);
        }
        let text = format_batch(&records, self.args.print_offsets);
        out.write_all(&text).await?;
        out.flush().await?;
        for r in &records {
            self.consumer.ack(r);
        }
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.saturating_sub(records.len() as u64);
        }
        Ok(Step::Printed)
    }

    /// How long the next batch waits for records: always with `--follow`; otherwise only while
    /// the member waits for its share of the partitions, so that an idle member does not spin.
    fn batch_wait(&self) -> Duration {
        if self.args.follow {
            self.wait
        } else if self.consumer.rebalancing() {
            self.wait.min(Duration::from_millis(REBALANCE_WAIT_MS_MAX))
        } else {
            Duration::ZERO
        }
    }

    /// Commits what was printed. A commit the group fences off is dropped (the records go to the
    /// partition's new owner again).
    async fn commit(&mut self) -> Result<(), ClientError> {
        match self.consumer.commit().await {
            Ok(()) => Ok(()),
            Err(e) if is_fenced(&e) => {
                tracing::warn!(group = self.group, error = %e, "commit fenced off; dropped");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The output of one batch, a line per record, in the format of `daftka consume`.
pub fn format_batch(records: &[ConsumerRecord], print_offsets: bool) -> Vec<u8> {
    let mut text = Vec::new();
    for r in records {
        write_record(
            &mut text,
            r.partition,
            r.offset,
            r.record.key.as_deref(),
            &r.record.value,
            print_offsets,
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientCommand, ClientOpts};
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    use daftka_http::mock::{MockNode, Reply, Request};
    use daftka_protocol::Record;
    use serde_json::{json, Value};
    use std::collections::{BTreeMap, VecDeque};
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
    }

    /// One topic `t` and one group `g` on an in-memory node: its partitions' records, the group's
    /// members and commits, and every member every partition (enough for one member at a time).
    #[derive(Default)]
    struct Group {
        partitions: Vec<Vec<String>>,
        commits: BTreeMap<u32, u64>,
        /// Live members.
        members: Vec<String>,
        joins: u32,
        generation: u64,
        /// Records one fetch returns at most, whatever it asks for.
        per_fetch: Option<usize>,
        /// Heartbeats answered with no partitions and `rebalancing` (the share is still held by
        /// others); joins are answered so too while this is not zero.
        rebalancing_beats: u32,
        /// (fetch count, partition, value): appended when that many fetches were asked.
        appends: Vec<(u32, usize, String)>,
        fetches: u32,
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

        /// The member JSON of join and heartbeat answers.
        fn standing(&self, id: &str) -> Value {
            let rebalancing = self.rebalancing_beats > 0;
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
            let unknown = || Reply::error(404, "unknown_member", "no such member");
            match (req.method.as_str(), segments.as_slice()) {
                ("POST", ["v1", "groups", "g", "members"]) => {
                    self.joins += 1;
                    self.generation += 1;
                    let id = format!("m{}", self.joins);
                    self.members.push(id.clone());
                    Reply::json(201, self.standing(&id))
                }
                ("DELETE", ["v1", "groups", "g", "members", id]) => {
                    if !self.members.contains(&id.to_string()) {
                        return unknown();
                    }
                    self.members.retain(|m| m != id);
                    self.left.push(id.to_string());
                    Reply::empty(204)
                }
                ("POST", ["v1", "groups", "g", "members", id, "heartbeat"]) => {
                    if !self.members.contains(&id.to_string()) {
                        return unknown();
                    }
                    self.heartbeats += 1;
                    self.rebalancing_beats = self.rebalancing_beats.saturating_sub(1);
                    Reply::json(200, self.standing(id))
                }
                ("GET", ["v1", "topics", "t", "partitions", p, "records"]) => {
                    self.fetch(req, p.parse().expect("partition"))
                }
                ("POST", ["v1", "groups", "g", "offsets"]) => self.commit(&req.json()),
                _ => Reply::error(404, "not_found", &format!("no route {}", req.path)),
            }
        }

        fn fetch(&mut self, req: &Request, p: usize) -> Reply {
            assert_eq!(req.param("encoding").as_deref(), Some("base64"));
            self.fetches += 1;
            let fetches = self.fetches;
            for (_, at, value) in self.appends.iter().filter(|(n, _, _)| *n == fetches) {
                self.partitions[*at].push(value.clone());
            }
            let values = &self.partitions[p];
            let end = values.len() as u64;
            let start = match req.param("offset").expect("offset").as_str() {
                "earliest" => 0,
                "latest" => end,
                n => n.parse().expect("an offset"),
            };
            let max: usize = req
                .param("max_records")
                .and_then(|m| m.parse().ok())
                .expect("max_records");
            let max = self.per_fetch.map_or(max, |cap| cap.min(max));
            let records: Vec<Value> = (start..end)
                .take(max)
                .map(|offset| {
                    json!({"offset": offset, "key": null,
                           "value": BASE64.encode(&values[offset as usize]),
                           "headers": {}, "timestamp": 0})
                })
                .collect();
            let next = start + records.len() as u64;
            Reply::json(
                200,
                json!({"records": records, "next_offset": next, "high_watermark": end,
                       "log_start_offset": 0}),
            )
        }

        fn commit(&mut self, body: &Value) -> Reply {
            let id = body["member_id"].as_str().expect("a member's commit");
            let generation = body["generation"].as_u64().expect("a generation");
            assert!(generation >= 1 && generation <= self.generation, "{body}");
            if self
                .take_fault(|f| matches!(f, Fault::ExpireOnCommit))
                .is_some()
            {
                self.members.retain(|m| m != id);
            }
            if !self.members.contains(&id.to_string()) {
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
        // Under a third of the session, so a member's waits stay shorter than its heartbeats' period.
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
    fn a_batch_prints_a_line_per_record() {
        // The value per line, or partition, offset, key and value with --print-offsets.
        let record = |partition, offset, key: Option<&'static str>, value: &'static str| {
            let mut record = Record::from_value(value);
            record.key = key.map(Into::into);
            ConsumerRecord {
                topic: "t".into(),
                partition,
                offset,
                record,
            }
        };
        let batch = [record(1, 4, Some("k"), "v4"), record(0, 7, None, "v7")];
        assert_eq!(format_batch(&batch, false), b"v4\nv7\n");
        assert_eq!(format_batch(&batch, true), b"1\t4\tk\tv4\n0\t7\t\tv7\n");
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
        let fetches = sent(&node, "GET", "/records");
        let p0 = fetches
            .iter()
            .find(|r| r.path.ends_with("/partitions/0/records"))
            .expect("a fetch of partition 0");
        assert_eq!(p0.param("offset").as_deref(), Some("1"), "from the commit");
        assert_eq!(
            sent(&node, "POST", "/offsets").len(),
            1,
            "--max-records 1 commits once"
        );
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
            "one commit per printed batch, none for an empty one"
        );
    }

    #[tokio::test]
    async fn fenced_commits_are_dropped_and_the_member_commits_when_it_leaves() {
        // A commit fenced off is dropped and the member carries on; what it printed is committed
        // when it leaves, once the group takes it.
        let group = Group::with_values(&[&["a0", "a1"], &["b0"]]);
        {
            let mut g = group.lock().expect("lock");
            g.per_fetch = Some(1);
            g.faults = VecDeque::from([
                Fault::Commit(409, "not_assigned"),
                Fault::Commit(409, "stale_generation"),
            ]);
        }
        let node = serve(&group).await;
        assert_eq!(consume(&node, &[]).await.expect("consume"), "a0\nb0\na1\n");
        let g = group.lock().expect("lock");
        assert_eq!(g.commits, BTreeMap::from([(0, 2), (1, 1)]));
        assert_eq!(sent(&node, "POST", "/offsets").len(), 3);
        assert_eq!((g.joins, g.left.clone()), (1, vec!["m1".to_string()]));
    }

    #[tokio::test]
    async fn an_expired_member_rejoins_and_reads_from_the_groups_commits() {
        // The group drops the member at its first commit (refused: dropped); its heartbeats learn
        // it, it joins again and reads again from the group's commits: at least once.
        let group = Group::with_values(&[&["a0", "a1"], &["b0"]]);
        group
            .lock()
            .expect("lock")
            .faults
            .push_back(Fault::ExpireOnCommit);
        let node = serve(&group).await;
        let args = [
            "--follow",
            "--max-records",
            "4",
            "--session-timeout",
            "300ms",
        ];
        // The first batch, then the new member's first record.
        let out = consume(&node, &args).await.expect("consume");
        assert_eq!(out, "a0\na1\nb0\na0\n");
        let g = group.lock().expect("lock");
        assert_eq!(g.joins, 2);
        assert_eq!(g.left, vec!["m2"], "the expired member is not left again");
        assert_eq!(g.commits.get(&0), Some(&1), "the new member's commit");
    }

    #[tokio::test]
    async fn other_commit_failures_end_the_command_after_leaving() {
        // A commit failure that is not a fence is the command's error; the member still commits
        // what it printed and leaves.
        let group = Group::with_values(&[&["a0"]]);
        group
            .lock()
            .expect("lock")
            .faults
            .push_back(Fault::Commit(400, "invalid_request"));
        let node = serve(&group).await;
        let err = consume(&node, &[]).await.expect_err("commit fails");
        assert_eq!(err.to_string(), "invalid_request: fenced");
        let g = group.lock().expect("lock");
        assert_eq!(g.left, vec!["m1"]);
        assert_eq!(g.commits, BTreeMap::from([(0, 1)]));
    }

    #[tokio::test]
    async fn a_rebalancing_member_waits_for_its_share() {
        // Without --follow, a member that has no partitions yet waits for its heartbeats to bring
        // them instead of stopping, then reads its share without waiting on the node.
        let group = Group::with_values(&[&["a0"], &["b0"]]);
        group.lock().expect("lock").rebalancing_beats = 2;
        let node = serve(&group).await;
        assert_eq!(consume(&node, &[]).await.expect("consume"), "a0\nb0\n");
        assert!(group.lock().expect("lock").heartbeats >= 2);
        let waits: Vec<String> = sent(&node, "GET", "/records")
            .iter()
            .map(|r| r.param("max_wait_ms").expect("max_wait_ms"))
            .collect();
        assert!(waits.iter().all(|w| w == "0"), "{waits:?}");
    }

    #[tokio::test]
    async fn follow_waits_shorter_than_the_session() {
        // --follow long-polls with a quarter of the session timeout and runs until --max-records.
        let group = Group::with_values(&[&["a0"], &[]]);
        group
            .lock()
            .expect("lock")
            .appends
            .push((4, 1, "late".into()));
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
        let waits: Vec<String> = sent(&node, "GET", "/records")
            .iter()
            .map(|r| r.param("max_wait_ms").expect("max_wait_ms"))
            .collect();
        assert!(
            waits.iter().all(|w| w == "0" || w == "500"),
            "a look without waiting, then a wait of a quarter session: {waits:?}"
        );
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
        assert_eq!(g.fetches, 1, "no fetch after the stop");
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
