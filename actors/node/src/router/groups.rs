//! Consumer groups in the Router: joins, heartbeats, polls, commits, descriptions and resets.
//!
//! Group state lives in the metadata state machine ([`daftka_core::groups`]); every operation that
//! changes it is a metadata proposal stamped with this node's wall clock, so any node serves any
//! member. A poll reads the member's partitions through the partition leaders like a fetch, and
//! records how far it delivered in the metadata before it answers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use daftka_core::assignor::{Assignor, TopicPartition};
use daftka_core::groups::{GroupCommand, MemberView};
use daftka_core::metadata::{MetadataCommand, MetadataEvent, MetadataState};
use daftka_protocol::{
    ids::validate_name, Error, ErrorCode, FetchOffset, FetchRequest, FetchResponse, GroupCommit,
    GroupDescription, GroupRecord, GroupSummary, Heartbeat, JoinGroup, MemberAssignment,
    MemberDescription, MemberRef, PartitionLag, PollRequest, PollResponse, ResetOffsets, ResetTo,
    TopicPartitionOffset, TopicPartitions,
};
use futures::stream::{FuturesUnordered, StreamExt};

use super::Inner;

fn assignment(v: MemberView) -> MemberAssignment {
    MemberAssignment {
        assignment: TopicPartitions::group(&v.assignment),
        revoking: TopicPartitions::group(&v.revoking),
        member_id: v.member_id,
        generation: v.generation,
        rebalancing: v.rebalancing,
        committed: v
            .committed
            .into_iter()
            .map(|((topic, partition), offset)| TopicPartitionOffset {
                topic,
                partition,
                offset,
            })
            .collect(),
    }
}

fn assignor_name(a: Assignor) -> &'static str {
    match a {
        Assignor::Range => "range",
        Assignor::RoundRobin => "round_robin",
        Assignor::Sticky => "sticky",
    }
}

impl Inner {
    /// Proposes a command for `group`, stamped with this node's clock.
    async fn group_command(
        &self,
        group: &str,
        command: GroupCommand,
    ) -> Result<MetadataEvent, Error> {
        let cmd = MetadataCommand::Group {
            group: group.to_string(),
            command,
            now_ms: crate::metadata::wall_clock_ms(),
        };
        crate::metadata::propose(&self.ctx, cmd).await
    }

    /// Proposes a command answered with the member's view.
    async fn member_command(
        &self,
        group: &str,
        command: GroupCommand,
    ) -> Result<MemberView, Error> {
        match self.group_command(group, command).await? {
            MetadataEvent::Member(v) => Ok(v),
            other => Err(Error::internal(format!(
                "unexpected metadata event {other:?}"
            ))),
        }
    }

    fn loaded_state(&self) -> Result<std::sync::Arc<MetadataState>, Error> {
        let view = self.ctx.metadata_view();
        if !view.loaded {
            return Err(Error::unavailable("metadata is loading"));
        }
        Ok(view.state)
    }

    pub(super) async fn join_group(&self, req: JoinGroup) -> Result<MemberAssignment, Error> {
        let cfg = &self.ctx.config.groups;
        validate_name("group", &req.group)?;
        let topics: BTreeSet<String> = req.topics.into_iter().collect();
        if topics.is_empty() {
            return Err(Error::invalid("topics must name at least one topic"));
        }
        if topics.len() > cfg.topics_per_member_max as usize {
            return Err(Error::too_large(format!(
                "{} topics; groups.topics_per_member_max is {}",
                topics.len(),
                cfg.topics_per_member_max
            )));
        }
        for t in &topics {
            validate_name("topic", t)?;
            self.topic(t)?;
        }
        let timeout = match req.session_timeout_ms {
            Some(ms) => Duration::from_millis(ms),
            None => cfg.session_timeout_default,
        };
        if timeout < cfg.session_timeout_min || timeout > cfg.session_timeout_max {
            return Err(Error::invalid(format!(
                "session_timeout_ms must be {} to {}",
                cfg.session_timeout_min.as_millis(),
                cfg.session_timeout_max.as_millis()
            )));
        }
        let assignor = match req.assignor.as_deref() {
            None => Assignor::default(),
            Some(name) => Assignor::parse(name).ok_or_else(|| {
                Error::invalid(format!(
                    "assignor must be range, round_robin or sticky, got {name:?}"
                ))
            })?,
        };
        let state = self.loaded_state()?;
        let members = state.groups.get(&req.group).map_or(0, |g| g.members.len());
        if members >= cfg.members_max as usize {
            return Err(Error::too_large(format!(
                "group {:?} has {members} members; groups.members_max is {}",
                req.group, cfg.members_max
            )));
        }
        let member_id = format!("{}-{:016x}", self.ctx.node, rand::random::<u64>());
        let command = GroupCommand::Join {
            member_id,
            topics: topics.into_iter().collect(),
            session_timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            assignor,
        };
        let view = self.member_command(&req.group, command).await?;
        Ok(assignment(view))
    }

    pub(super) async fn heartbeat(&self, req: Heartbeat) -> Result<MemberAssignment, Error> {
        validate_name("group", &req.group)?;
        let command = GroupCommand::Heartbeat {
            member_id: req.member_id,
            owned: req.owned.map(|o| TopicPartitions::pairs(&o).collect()),
        };
        Ok(assignment(self.member_command(&req.group, command).await?))
    }

    pub(super) async fn leave_group(&self, req: MemberRef) -> Result<(), Error> {
        validate_name("group", &req.group)?;
        let command = GroupCommand::Leave {
            member_id: req.member_id,
        };
        self.group_command(&req.group, command).await.map(|_| ())
    }

    /// A member's poll (see [`daftka_protocol::RouterMsg::PollGroup`]).
    pub(super) async fn poll_group(&self, req: PollRequest) -> Result<PollResponse, Error> {
        validate_name("group", &req.group)?;
        let limits = &self.ctx.config.limits;
        let max_records = req.max_records.clamp(1, limits.fetch_records_max) as usize;
        let max_bytes = u64::from(req.max_bytes.max(1)).min(limits.fetch_bytes_max);
        let wait = Duration::from_millis(u64::from(req.max_wait_ms)).min(limits.fetch_wait_max);
        // The poll releases what the member was asked to give up and keeps it alive.
        let release = GroupCommand::Heartbeat {
            member_id: req.member_id.clone(),
            owned: Some(Vec::new()),
        };
        let view = self.member_command(&req.group, release).await?;
        if view.assignment.is_empty() {
            // Nothing to read yet (partitions still held by others): wait for this node's
            // metadata to show a share, then let the member poll again.
            let (group, id) = (&req.group, &req.member_id);
            let now = self
                .wait_view_within(wait, |v| {
                    let now = v.state.member_view(group, id).ok()?;
                    (!now.assignment.is_empty()).then_some(now)
                })
                .await;
            return Ok(PollResponse {
                records: Vec::new(),
                member: assignment(now.unwrap_or(view)),
            });
        }
        let positions: BTreeMap<&TopicPartition, u64> =
            view.positions.iter().map(|(tp, o)| (tp, *o)).collect();
        let committed: BTreeMap<&TopicPartition, u64> =
            view.committed.iter().map(|(tp, o)| (tp, *o)).collect();
        let starts: Vec<(TopicPartition, FetchOffset)> = view
            .assignment
            .iter()
            .map(|tp| {
                let at = positions.get(tp).or_else(|| committed.get(tp));
                (
                    tp.clone(),
                    at.map_or(FetchOffset::Earliest, |o| FetchOffset::At(*o)),
                )
            })
            .collect();
        let budget = (
            max_records as u32,
            u32::try_from(max_bytes).unwrap_or(u32::MAX),
        );
        let mut fetched = self.fetch_each(&starts, budget, 0).await?;
        if fetched.iter().all(|(_, r)| r.records.is_empty()) && !wait.is_zero() {
            let ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
            fetched = self.fetch_first(&starts, budget, ms).await?;
        }
        // Deliver in partition order within the budget; positions move only past what is delivered.
        let mut records = Vec::new();
        let mut bytes = 0u64;
        let mut advanced = Vec::new();
        'partitions: for ((topic, partition), response) in fetched {
            let mut next = None;
            for r in response.records {
                let size = r.record.size_bytes() as u64;
                if records.len() >= max_records || (!records.is_empty() && bytes + size > max_bytes)
                {
                    if let Some(n) = next {
                        advanced.push((topic.clone(), partition, n));
                    }
                    break 'partitions;
                }
                bytes += size;
                next = Some(r.offset + 1);
                records.push(GroupRecord {
                    topic: topic.clone(),
                    partition,
                    record: r,
                });
            }
            if let Some(n) = next {
                advanced.push((topic, partition, n));
            }
        }
        let view = if advanced.is_empty() {
            view
        } else {
            let advance = GroupCommand::Advance {
                member_id: req.member_id,
                positions: advanced,
            };
            self.member_command(&req.group, advance).await?
        };
        Ok(PollResponse {
            records,
            member: assignment(view),
        })
    }

    /// Fetches every partition of `starts` at once, each waiting up to `wait_ms`.
    async fn fetch_each(
        &self,
        starts: &[(TopicPartition, FetchOffset)],
        budget: (u32, u32),
        wait_ms: u32,
    ) -> Result<Vec<(TopicPartition, FetchResponse)>, Error> {
        let asks = starts.iter().map(|(tp, at)| async move {
            Ok((tp.clone(), self.fetch_from(tp, *at, budget, wait_ms).await?))
        });
        futures::future::join_all(asks).await.into_iter().collect()
    }

    /// Long-polls every partition of `starts` and answers with the first that has records (or
    /// nothing once all waited `wait_ms`).
    async fn fetch_first(
        &self,
        starts: &[(TopicPartition, FetchOffset)],
        budget: (u32, u32),
        wait_ms: u32,
    ) -> Result<Vec<(TopicPartition, FetchResponse)>, Error> {
        let mut asks: FuturesUnordered<_> =
            starts
                .iter()
                .map(|(tp, at)| async move {
                    (tp.clone(), self.fetch_from(tp, *at, budget, wait_ms).await)
                })
                .collect();
        while let Some((tp, result)) = asks.next().await {
            let response = result?;
            if !response.records.is_empty() {
                return Ok(vec![(tp, response)]);
            }
        }
        Ok(Vec::new())
    }

    /// One partition from `at`; a position outside the log (retention deleted it) moves to the
    /// nearest end that exists.
    async fn fetch_from(
        &self,
        (topic, partition): &TopicPartition,
        at: FetchOffset,
        (max_records, max_bytes): (u32, u32),
        max_wait_ms: u32,
    ) -> Result<FetchResponse, Error> {
        let request = |offset| FetchRequest {
            topic: topic.clone(),
            partition: *partition,
            offset,
            max_records,
            max_bytes,
            max_wait_ms,
        };
        match self.fetch(request(at)).await {
            Err(e) if e.code == ErrorCode::OffsetOutOfRange => {
                let start = e.log_start_offset.unwrap_or(0);
                let moved = match at {
                    FetchOffset::At(o) if o < start => FetchOffset::Earliest,
                    _ => FetchOffset::Latest,
                };
                self.fetch(request(moved)).await
            }
            other => other,
        }
    }

    /// A commit, as a member or for a group without members (see [`GroupCommit`]).
    pub(super) async fn commit_group(&self, req: GroupCommit) -> Result<(), Error> {
        validate_name("group", &req.group)?;
        if req.offsets.is_empty() {
            return Err(Error::invalid("a commit needs at least one offset"));
        }
        daftka_core::limits::check_commit(req.offsets.len(), &self.ctx.config.limits)?;
        for o in &req.offsets {
            validate_name("topic", &o.topic)?;
        }
        self.check_below_watermarks(&req.offsets).await?;
        let offsets = req
            .offsets
            .into_iter()
            .map(|o| (o.topic, o.partition, o.offset))
            .collect();
        match req.member {
            Some((member_id, generation)) => {
                let command = GroupCommand::Commit {
                    member_id,
                    generation,
                    offsets,
                };
                self.group_command(&req.group, command).await?;
            }
            None => {
                let cmd = MetadataCommand::CommitOffsets {
                    group: req.group.clone(),
                    offsets,
                };
                crate::metadata::propose(&self.ctx, cmd).await?;
            }
        }
        self.ctx
            .metrics
            .group_commits
            .with_label_values(&[req.group.as_str()])
            .inc();
        Ok(())
    }

    /// Refuses offsets past their partition's high watermark: committing records that do not
    /// exist yet would skip them when they do.
    async fn check_below_watermarks(&self, offsets: &[TopicPartitionOffset]) -> Result<(), Error> {
        let state = self.loaded_state()?;
        let mut highest: BTreeMap<(&str, u32), u64> = BTreeMap::new();
        for o in offsets {
            state.partition(&o.topic, o.partition)?;
            let h = highest.entry((&o.topic, o.partition)).or_default();
            *h = (*h).max(o.offset);
        }
        let asks = highest.into_iter().map(|((topic, partition), offset)| {
            let state = state.clone();
            async move {
                let p = state.partition(topic, partition)?;
                let (start, hwm) = self.positions(p).await?;
                if offset > hwm {
                    return Err(Error::offset_out_of_range(offset, start, hwm));
                }
                Ok(())
            }
        });
        futures::future::join_all(asks).await.into_iter().collect()
    }

    pub(super) fn list_groups(&self) -> Result<Vec<GroupSummary>, Error> {
        let state = self.loaded_state()?;
        let names: BTreeSet<&String> = state
            .groups
            .keys()
            .chain(state.group_offsets.keys())
            .collect();
        Ok(names
            .into_iter()
            .map(|name| match state.groups.get(name) {
                Some(g) => GroupSummary {
                    group: name.clone(),
                    state: g.state_name().to_string(),
                    generation: g.generation,
                    members: g.members.len() as u32,
                },
                None => GroupSummary {
                    group: name.clone(),
                    state: "empty".to_string(),
                    generation: 0,
                    members: 0,
                },
            })
            .collect())
    }

    pub(super) async fn describe_group(&self, group: &str) -> Result<GroupDescription, Error> {
        validate_name("group", group)?;
        let state = self.loaded_state()?;
        let g = state.groups.get(group);
        let committed = state.group_offsets.get(group);
        if g.is_none() && committed.is_none() {
            return Err(Error::new(
                ErrorCode::UnknownGroup,
                format!("group {group:?} does not exist"),
            ));
        }
        let mut owner: BTreeMap<TopicPartition, String> = BTreeMap::new();
        let mut partitions: BTreeSet<TopicPartition> = BTreeSet::new();
        let mut members = Vec::new();
        if let Some(g) = g {
            for (id, m) in &g.members {
                for tp in m.owned.keys() {
                    owner.insert(tp.clone(), id.clone());
                }
                for t in &m.topics {
                    let n = state.topics.get(t).map_or(0, |t| t.partitions.len() as u32);
                    partitions.extend((0..n).map(|p| (t.clone(), p)));
                }
                let view = g.view(id)?;
                members.push(MemberDescription {
                    member_id: id.clone(),
                    topics: m.topics.iter().cloned().collect(),
                    generation: m.generation,
                    assignment: TopicPartitions::group(&view.assignment),
                    revoking: TopicPartitions::group(&view.revoking),
                    session_timeout_ms: m.session_timeout_ms,
                    last_heartbeat_ms: m.last_seen_ms,
                });
            }
        }
        partitions.extend(committed.into_iter().flat_map(|c| c.keys().cloned()));
        let asks = partitions.into_iter().map(|(topic, partition)| {
            let state = state.clone();
            let committed = committed.and_then(|c| c.get(&(topic.clone(), partition)).copied());
            let member = owner.get(&(topic.clone(), partition)).cloned();
            async move {
                // A partition whose leader does not answer shows zeros, like a topic description.
                let (start, hwm) = match state.partition(&topic, partition) {
                    Ok(p) => self.positions(p).await.unwrap_or((0, 0)),
                    Err(_) => (0, 0),
                };
                PartitionLag {
                    lag: hwm.saturating_sub(committed.unwrap_or(start).max(start)),
                    topic,
                    partition,
                    committed,
                    log_start_offset: start,
                    high_watermark: hwm,
                    member,
                }
            }
        });
        let partitions: Vec<PartitionLag> = futures::future::join_all(asks).await;
        Ok(GroupDescription {
            group: group.to_string(),
            state: g.map_or("empty", |g| g.state_name()).to_string(),
            generation: g.map_or(0, |g| g.generation),
            assignor: assignor_name(g.map_or(Assignor::default(), |g| g.assignor)).to_string(),
            members,
            lag: partitions.iter().map(|p| p.lag).sum(),
            partitions,
        })
    }

    pub(super) async fn reset_offsets(
        &self,
        req: ResetOffsets,
    ) -> Result<Vec<TopicPartitionOffset>, Error> {
        validate_name("group", &req.group)?;
        validate_name("topic", &req.topic)?;
        let t = self.topic(&req.topic)?;
        let chosen: Vec<_> = match req.partition {
            Some(p) => vec![t
                .partitions
                .get(p as usize)
                .ok_or_else(|| Error::unknown_partition(&req.topic, p))?],
            None => t.partitions.iter().collect(),
        };
        let state = self.loaded_state()?;
        if state
            .groups
            .get(&req.group)
            .is_some_and(|g| !g.members.is_empty())
        {
            return Err(Error::new(
                ErrorCode::GroupActive,
                format!(
                    "group {:?} has members: stop them (or wait for their sessions to expire) \
                     before a reset",
                    req.group
                ),
            ));
        }
        let (topic, to) = (&req.topic, req.to);
        let asks = chosen.into_iter().map(|p| async move {
            let (start, hwm) = self.positions(p).await?;
            let offset = match to {
                ResetTo::Earliest => start,
                ResetTo::Latest => hwm,
                ResetTo::Offset(o) if o < start || o > hwm => {
                    return Err(Error::offset_out_of_range(o, start, hwm))
                }
                ResetTo::Offset(o) => o,
            };
            Ok((topic.clone(), p.partition, offset))
        });
        let offsets: Vec<(String, u32, u64)> = futures::future::join_all(asks)
            .await
            .into_iter()
            .collect::<Result<_, Error>>()?;
        let command = GroupCommand::Reset {
            offsets: offsets.clone(),
        };
        self.group_command(&req.group, command).await?;
        Ok(offsets
            .into_iter()
            .map(|(topic, partition, offset)| TopicPartitionOffset {
                topic,
                partition,
                offset,
            })
            .collect())
    }

    /// Updates the group metrics: members and rebalances of every group (as this node's metadata
    /// shows them), and consumer lag of the partitions this node leads.
    pub(super) async fn update_group_metrics(&self) {
        let view = self.ctx.metadata_view();
        if !view.loaded {
            return;
        }
        let state = view.state;
        let m = &self.ctx.metrics;
        m.group_members.reset();
        for (name, g) in &state.groups {
            m.group_members
                .with_label_values(&[name.as_str()])
                .set(g.members.len() as i64);
            let counter = m.group_rebalances.with_label_values(&[name.as_str()]);
            counter.inc_by(g.rebalances.saturating_sub(counter.get()));
        }
        let mut lags = Vec::new();
        for (name, committed) in &state.group_offsets {
            for ((topic, partition), offset) in committed {
                let Ok(p) = state.partition(topic, *partition) else {
                    continue;
                };
                if p.leader.as_deref() == Some(self.ctx.node.as_str()) {
                    lags.push((name, topic, *partition, *offset, p));
                }
            }
        }
        let asks = lags
            .into_iter()
            .map(|(group, topic, partition, offset, p)| async move {
                let deadline = std::time::Instant::now() + self.ctx.config.router.request_timeout;
                let positions = self
                    .call_replica_at(&self.ctx.node, p.group, super::Positions, deadline)
                    .await;
                positions.ok().map(|(start, hwm)| {
                    let lag = hwm.saturating_sub(offset.max(start));
                    (group, topic, partition, lag)
                })
            });
        let lags = futures::future::join_all(asks).await;
        m.consumer_lag.reset();
        for (group, topic, partition, lag) in lags.into_iter().flatten() {
            m.consumer_lag
                .with_label_values(&[group.as_str(), topic.as_str(), &partition.to_string()])
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
    }
}
