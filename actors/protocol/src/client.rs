//! The typed native client. It sends [`RouterMsg`]s to a node's Router and waits for the reply
//! with a deadline, so callers never build reply ports by hand.

use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};

use crate::error::Error;
use crate::messages::*;
use crate::names;
use crate::wire::Wire;

/// The default deadline of one call: long enough for a leader election and a retry.
pub const CALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Which Router a client talks to.
#[derive(Clone)]
enum Target {
    /// One actor: if it stops, calls fail until a new client is made.
    Fixed(ActorRef<RouterMsg>),
    /// Whatever actor holds this registered name at each call: survives Router restarts.
    Named(String),
}

/// A handle on one node's Router. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    router: Target,
    /// Deadline of every call; a fetch adds its own `max_wait_ms` on top.
    timeout: Duration,
}

impl Client {
    /// A client of the Router `router`.
    pub fn new(router: ActorRef<RouterMsg>) -> Self {
        Client {
            router: Target::Fixed(router),
            timeout: CALL_TIMEOUT_DEFAULT,
        }
    }

    /// Like [`Client::connect_local`], without checking that the Router runs now.
    pub fn local(node: &str) -> Self {
        Client {
            router: Target::Named(names::router(node)),
            timeout: CALL_TIMEOUT_DEFAULT,
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
        })
    }

    /// The same client with another call deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
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
            Target::Named(name) => crate::rpc::call_named(name, build, timeout, "the router").await,
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
        self.call(self.timeout, |reply| RouterMsg::Produce {
            topic: Wire::ok(topic),
            records: Wire::ok(records),
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
}
