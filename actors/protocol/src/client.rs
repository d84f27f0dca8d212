//! The typed native client. It sends [`RouterMsg`]s to a node's Router and waits for the reply
//! with a deadline, so callers never build reply ports by hand.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;
use crate::ids::PartitionId;
use crate::messages::*;
use crate::names;
use crate::wire::{Framed, Wire};

/// The default deadline of one call: long enough for a leader election and a retry.
pub const CALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// The default in-flight window of a connection from another actor system
/// ([`crate::remote::RemoteOptions::inflight_bytes_max`]): the record bytes of its produces
/// awaiting an answer.
pub const INFLIGHT_BYTES_DEFAULT: u32 = 64 * 1024 * 1024;

/// Which Router a client talks to.
#[derive(Clone)]
enum Target {
    /// One actor: if it stops, calls fail until a new client is made.
    Fixed(ActorRef<RouterMsg>),
    /// Whatever actor holds this registered name at each call: survives Router restarts.
    Named(String),
}

/// A handle on one node's Router. Cheap to clone; clones share the in-flight window.
#[derive(Clone)]
pub struct Client {
    router: Target,
    /// Deadline of every call; a fetch adds its own `max_wait_ms` on top.
    timeout: Duration,
    /// Bounds the record bytes of this client's produces in flight, if set.
    window: Option<Window>,
}

/// At most `max` record bytes of produces in flight: a produce waits for room before it is sent
/// (backpressure in the producer, not refusals by the node).
#[derive(Clone)]
struct Window {
    room: Arc<Semaphore>,
    max: u32,
    /// Bytes of the produces holding room now (the semaphore's count also drops by what a
    /// waiting produce has been given so far).
    held: Arc<AtomicU32>,
}

/// One produce's room in the window, given back when dropped.
struct Room {
    _permit: OwnedSemaphorePermit,
    bytes: u32,
    held: Arc<AtomicU32>,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Client {
    /// A client of the Router `router`.
    pub fn new(router: ActorRef<RouterMsg>) -> Self {
        Client {
            router: Target::Fixed(router),
            timeout: CALL_TIMEOUT_DEFAULT,
            window: None,
        }
    }

    /// Like [`Client::connect_local`], without checking that the Router runs now.
    pub fn local(node: &str) -> Self {
        Client {
            router: Target::Named(names::router(node)),
            timeout: CALL_TIMEOUT_DEFAULT,
            window: None,
        }
    }

    /// A client of the Router of node `node` in this process, looked up by its registered name at
    /// every call, so it keeps working across Router restarts. Fails if no such Router runs now.
    pub fn connect_local(node: &str) -> Result<Self, Error> {
        let name = names::router(node);
        if names::find(&name).is_none() {
            return Err(Error::unavailable(format!(
                "no router for node {node:?} here"
            )));
        }
        Ok(Client {
            router: Target::Named(name),
            timeout: CALL_TIMEOUT_DEFAULT,
            window: None,
        })
    }

    /// The same client with another call deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same client (and its clones) with an in-flight window of `bytes`: a produce waits
    /// until the record bytes of this client's unanswered produces plus its own fit, then sends.
    /// One larger than the whole window waits until nothing else is in flight. A wait longer
    /// than the call deadline answers `unavailable` (retryable; nothing was sent). Without a
    /// window (the default, but for [`crate::remote::connect`]), produces are bounded only by
    /// the node, which refuses what exceeds its in-flight budget.
    pub fn with_inflight_bytes_max(mut self, bytes: u32) -> Self {
        self.window = (bytes > 0).then(|| Window {
            room: Arc::new(Semaphore::new(bytes as usize)),
            max: bytes,
            held: Arc::new(AtomicU32::new(0)),
        });
        self
    }

    /// Record bytes of this client's produces in flight (0 without a window).
    pub fn inflight_bytes(&self) -> u32 {
        self.window
            .as_ref()
            .map_or(0, |w| w.held.load(Ordering::Relaxed))
    }

    /// Room in the window for `records`, held until the permit is dropped.
    async fn reserve(&self, records: &[ProduceRecord]) -> Result<Option<Room>, Error> {
        let Some(w) = &self.window else {
            return Ok(None);
        };
        let bytes = records.iter().map(|r| r.record.size_bytes()).sum::<usize>();
        let want = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, w.max);
        match tokio::time::timeout(self.timeout, w.room.clone().acquire_many_owned(want)).await {
            Ok(Ok(permit)) => {
                w.held.fetch_add(want, Ordering::Relaxed);
                Ok(Some(Room {
                    _permit: permit,
                    bytes: want,
                    held: w.held.clone(),
                }))
            }
            Ok(Err(_)) => Err(Error::internal("the in-flight window was closed")),
            Err(_) => Err(Error::unavailable(format!(
                "this client's in-flight window ({} bytes) stayed full for {:?}",
                w.max, self.timeout
            ))),
        }
    }

    async fn call<T>(
        &self,
        timeout: Duration,
        build: impl FnOnce(RpcReplyPort<Wire<T>>) -> RouterMsg,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
    {
        match &self.router {
            Target::Fixed(r) => crate::rpc::call(r, build, timeout, "the router").await,
            Target::Named(name) => crate::rpc::call_found(name, build, timeout, "the router").await,
        }
    }

    pub async fn create_topic(&self, spec: TopicSpec) -> Result<TopicDescription, Error> {
        self.call(self.timeout, |reply| RouterMsg::CreateTopic {
            spec: Wire::ok(spec),
            reply,
        })
        .await
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicDescription>, Error> {
        self.call(self.timeout, |reply| RouterMsg::ListTopics { reply })
            .await
    }

    pub async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, Error> {
        let topic = topic.to_string();
        self.call(self.timeout, |reply| RouterMsg::DescribeTopic {
            topic: Wire::ok(topic),
            reply,
        })
        .await
    }

    pub async fn delete_topic(&self, topic: &str) -> Result<(), Error> {
        let topic = topic.to_string();
        self.call(self.timeout, |reply| RouterMsg::DeleteTopic {
            topic: Wire::ok(topic),
            reply,
        })
        .await
    }

    /// Produces records; answers each record's position in request order once all are durable.
    pub async fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<RecordPosition>, Error> {
        let topic = topic.to_string();
        let _room = self.reserve(&records).await?;
        self.call(self.timeout, |reply| RouterMsg::Produce {
            topic: Wire::ok(topic),
            records: Framed::ok(records),
            reply,
        })
        .await
    }

    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchResponse, Error> {
        let timeout = self.timeout + Duration::from_millis(u64::from(request.max_wait_ms));
        self.call(timeout, |reply| RouterMsg::Fetch {
            request: Wire::ok(request),
            reply,
        })
        .await
    }

    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<TopicPartitionOffset>,
    ) -> Result<(), Error> {
        let group = group.to_string();
        self.call(self.timeout, |reply| RouterMsg::CommitOffsets {
            group: Wire::ok(group),
            offsets: Wire::ok(offsets),
            reply,
        })
        .await
    }

    pub async fn committed_offsets(&self, group: &str) -> Result<GroupOffsets, Error> {
        let group = group.to_string();
        self.call(self.timeout, |reply| RouterMsg::FetchOffsets {
            group: Wire::ok(group),
            reply,
        })
        .await
    }

    /// Joins a consumer group; see [`crate::Consumer`] for a member that heartbeats by itself.
    pub async fn join_group(&self, request: JoinGroup) -> Result<MemberAssignment, Error> {
        self.call(self.timeout, |reply| RouterMsg::JoinGroup {
            request: Wire::ok(request),
            reply,
        })
        .await
    }

    pub async fn heartbeat(&self, request: Heartbeat) -> Result<MemberAssignment, Error> {
        self.call(self.timeout, |reply| RouterMsg::GroupHeartbeat {
            request: Wire::ok(request),
            reply,
        })
        .await
    }

    pub async fn leave_group(&self, group: &str, member_id: &str) -> Result<(), Error> {
        let request = MemberRef {
            group: group.to_string(),
            member_id: member_id.to_string(),
        };
        self.call(self.timeout, |reply| RouterMsg::LeaveGroup {
            request: Wire::ok(request),
            reply,
        })
        .await
    }

    pub async fn poll_group(&self, request: PollRequest) -> Result<PollResponse, Error> {
        let timeout = self.timeout + Duration::from_millis(u64::from(request.max_wait_ms));
        self.call(timeout, |reply| RouterMsg::PollGroup {
            request: Wire::ok(request),
            reply,
        })
        .await
    }

    pub async fn commit_group(&self, request: GroupCommit) -> Result<(), Error> {
        self.call(self.timeout, |reply| RouterMsg::CommitGroupOffsets {
            request: Wire::ok(request),
            reply,
        })
        .await
    }

    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>, Error> {
        self.call(self.timeout, |reply| RouterMsg::ListGroups { reply })
            .await
    }

    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, Error> {
        let group = group.to_string();
        self.call(self.timeout, |reply| RouterMsg::DescribeGroup {
            group: Wire::ok(group),
            reply,
        })
        .await
    }

    pub async fn reset_offsets(
        &self,
        request: ResetOffsets,
    ) -> Result<Vec<TopicPartitionOffset>, Error> {
        self.call(self.timeout, |reply| RouterMsg::ResetGroupOffsets {
            request: Wire::ok(request),
            reply,
        })
        .await
    }

    pub async fn cluster_info(&self) -> Result<ClusterInfo, Error> {
        self.call(self.timeout, |reply| RouterMsg::ClusterInfo { reply })
            .await
    }

    /// Moves partition `partition` of `topic` to the replicas `replicas`; answers the started move.
    pub async fn reassign(
        &self,
        topic: &str,
        partition: PartitionId,
        replicas: Vec<String>,
    ) -> Result<Reassignment, Error> {
        self.call(self.timeout, |reply| RouterMsg::Reassign {
            topic: Wire::ok(topic.to_string()),
            partition: Wire::ok(partition),
            replicas: Wire::ok(replicas),
            reply,
        })
        .await
    }

    /// Every replica move in flight.
    pub async fn reassignments(&self) -> Result<Vec<Reassignment>, Error> {
        self.call(self.timeout, |reply| RouterMsg::ListReassignments { reply })
            .await
    }

    /// Starts (`draining`) or ends the drain of `node`; answers the node as the cluster shows it.
    pub async fn drain_node(&self, node: &str, draining: bool) -> Result<NodeInfo, Error> {
        self.call(self.timeout, |reply| RouterMsg::DrainNode {
            node: Wire::ok(node.to_string()),
            draining: Wire::ok(draining),
            reply,
        })
        .await
    }

    /// Grows `topic` to `alter.partitions` (never shrinks: `invalid_request`) and changes its
    /// retention settings; answers the topic's description.
    pub async fn alter_topic(
        &self,
        topic: &str,
        alter: TopicAlter,
    ) -> Result<TopicDescription, Error> {
        self.call(self.timeout, |reply| RouterMsg::AlterTopic {
            topic: Wire::ok(topic.to_string()),
            alter: Wire::ok(alter),
            reply,
        })
        .await
    }

    /// Forgets `node`: refused (`node_active`) while it is up and holds replicas. Its replicas
    /// are created again elsewhere; its data directory may never join again.
    pub async fn remove_node(&self, node: &str) -> Result<NodeInfo, Error> {
        self.call(self.timeout, |reply| RouterMsg::RemoveNode {
            node: Wire::ok(node.to_string()),
            reply,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr};
    use tokio::sync::mpsc;

    use super::*;
    use crate::{ErrorCode, Record};

    type Held = (usize, RpcReplyPort<Wire<Vec<RecordPosition>>>);

    /// A Router that hands each produce (its record count and reply port) to the test, which
    /// answers when it chooses. The thing under test is the client's window.
    struct HoldingRouter;

    impl Actor for HoldingRouter {
        type Msg = RouterMsg;
        type State = mpsc::UnboundedSender<Held>;
        type Arguments = mpsc::UnboundedSender<Held>;

        async fn pre_start(
            &self,
            _: ActorRef<RouterMsg>,
            tx: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(tx)
        }

        async fn handle(
            &self,
            _: ActorRef<RouterMsg>,
            msg: RouterMsg,
            tx: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            if let RouterMsg::Produce { records, reply, .. } = msg {
                tx.send((records.0?.len(), reply))?;
            }
            Ok(())
        }
    }

    fn records(n: usize, bytes: usize) -> Vec<ProduceRecord> {
        (0..n)
            .map(|_| ProduceRecord {
                partition: Some(0),
                record: Record::from_value(vec![7u8; bytes]),
            })
            .collect()
    }

    fn answer((n, reply): Held) {
        let positions = (0..n as u64)
            .map(|offset| RecordPosition {
                partition: 0,
                offset,
            })
            .collect();
        let _ = reply.send(Wire::ok(positions));
    }

    /// Four produces of 600 B through a 1,000 B window go one at a time: each is sent only once
    /// the one before is answered, and all succeed. One larger than the window goes alone.
    #[tokio::test]
    async fn produces_wait_for_room_in_the_window() -> Result<(), Box<dyn std::error::Error>> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (router, handle) = Actor::spawn(None, HoldingRouter, tx).await?;
        let client = Client::new(router.clone()).with_inflight_bytes_max(1000);
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.produce("t", records(6, 100)).await })
            })
            .collect();
        for _ in 0..4 {
            let held = rx.recv().await.ok_or("router stopped")?;
            // Another 600 B cannot fit beside this one: it is the only one sent.
            assert_eq!(client.inflight_bytes(), 600);
            assert!(rx.try_recv().is_err(), "a produce was sent past the window");
            answer(held);
        }
        for t in tasks {
            assert_eq!(t.await??.len(), 6);
        }
        assert_eq!(client.inflight_bytes(), 0);

        // 3,000 B against a 1,000 B window: sent once the window is empty, taking all of it.
        let big = tokio::spawn({
            let c = client.clone();
            async move { c.produce("t", records(3, 1000)).await }
        });
        let held = rx.recv().await.ok_or("router stopped")?;
        assert_eq!(client.inflight_bytes(), 1000);
        answer(held);
        assert_eq!(big.await??.len(), 3);

        router.stop(None);
        handle.await?;
        Ok(())
    }

    /// A produce that finds the window full past the call deadline is `unavailable` (retryable)
    /// and was never sent.
    #[tokio::test]
    async fn a_full_window_past_the_deadline_is_unavailable(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (router, handle) = Actor::spawn(None, HoldingRouter, tx).await?;
        // The first produce waits long (it must hold the window while the second one tries: a
        // short deadline could end it first on a busy machine); the second, sharing the window,
        // gives up after 50 ms.
        let client = Client::new(router.clone())
            .with_inflight_bytes_max(1000)
            .with_timeout(Duration::from_secs(60));
        let first = tokio::spawn({
            let c = client.clone();
            async move { c.produce("t", records(1, 800)).await }
        });
        let held = rx.recv().await.ok_or("router stopped")?;
        let hurried = client.clone().with_timeout(Duration::from_millis(50));
        let refused = hurried.produce("t", records(1, 800)).await;
        assert_eq!(refused.map_err(|e| e.code), Err(ErrorCode::Unavailable));
        assert!(rx.try_recv().is_err(), "the refused produce was sent");
        drop(held); // the first one's reply port: its caller sees a failed call
        assert!(first.await?.is_err());
        assert_eq!(client.inflight_bytes(), 0);

        // Without a window, nothing waits in the client.
        let unbounded = Client::new(router.clone());
        let sent = tokio::spawn(async move { unbounded.produce("t", records(1, 5000)).await });
        answer(rx.recv().await.ok_or("router stopped")?);
        assert_eq!(sent.await??.len(), 1);

        router.stop(None);
        handle.await?;
        Ok(())
    }
}
