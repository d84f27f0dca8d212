//! The bench over the native client: this process joins the cluster's ractor_cluster network
//! ([`daftka_protocol::remote::connect`]) and sends typed messages to a Router. Producers share the
//! one session; each has one request in flight.

use std::time::Duration;

use daftka_protocol::remote::{connect as remote_connect, Remote, RemoteOptions};
use daftka_protocol::{
    Client, ErrorCode, FetchOffset, FetchRequest, ProduceRecord, Record, TopicSpec,
};

use super::drive::{read_stamp, write_stamp, Failure, Fetched, Producer, Reader};
use super::plan::Ticket;
use super::{Spread, TopicInfo};
use crate::args::BenchCommon;
use daftka_http::client::ClientError;

/// How long connecting and finding a Router may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// `max_bytes` of every fetch.
const FETCH_MAX_BYTES: u32 = 64 * 1024 * 1024;

/// Retryable codes (`unavailable`, `not_leader`, `timeout`) are tried again; others end the run.
fn failure(e: daftka_protocol::Error) -> Failure {
    if e.code.retryable() {
        Failure::Retry(e.to_string())
    } else {
        Failure::Fatal(ClientError::from(e))
    }
}

/// Joins the cluster through `--seed` with `--cookie`.
pub async fn connect(common: &BenchCommon) -> Result<Remote, ClientError> {
    let (Some(seed), Some(cookie)) = (&common.seed, &common.cookie) else {
        return Err(ClientError::Usage(
            "--transport native needs --seed and --cookie".into(),
        ));
    };
    let mut opts = RemoteOptions::new(seed.clone(), cookie.clone());
    opts.cluster = common.cluster.clone();
    opts.name = daftka_protocol::remote::unique_name("daftka-bench");
    opts.timeout = CONNECT_TIMEOUT;
    remote_connect(opts).await.map_err(ClientError::from)
}

/// Creates the topic (if `create` and it does not exist) and waits until every partition has a
/// leader; answers its partitions and replication factor.
pub async fn prepare_topic(
    client: &Client,
    topic: &str,
    create: Option<(u32, Option<u32>)>,
) -> Result<TopicInfo, ClientError> {
    if let Some((partitions, replication_factor)) = create {
        let spec = TopicSpec {
            name: topic.to_owned(),
            partitions: Some(partitions),
            replication_factor,
        };
        match client.create_topic(spec).await {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::TopicExists => {}
            Err(e) => return Err(ClientError::from(e)),
        }
    }
    super::wait_for_leaders(|| async {
        let t = client
            .describe_topic(topic)
            .await
            .map_err(ClientError::from)?;
        let partitions = t.partitions.iter().map(|p| {
            let led = p.leader.is_some();
            (p.partition, p.log_start_offset, p.high_watermark, led)
        });
        Ok(TopicInfo::described(t.replication_factor, partitions))
    })
    .await
}

/// A producer: one request in flight over the shared session.
pub struct NativeProducer {
    client: Client,
    topic: String,
    /// The record every request repeats: its value is shared, not copied.
    record: Record,
    spread: Spread,
    variants: u64,
}

impl NativeProducer {
    pub fn new(client: &Client, topic: &str, value: &[u8], spread: Spread) -> NativeProducer {
        NativeProducer {
            client: client.clone(),
            topic: topic.to_owned(),
            record: Record::from_value(value.to_vec()),
            spread,
            variants: u64::from(spread.variants()),
        }
    }
}

impl Producer for NativeProducer {
    async fn send(&mut self, ticket: &Ticket, stamp: Option<u64>) -> Result<(), Failure> {
        let record = match stamp {
            None => self.record.clone(),
            Some(stamp) => {
                let mut value = self.record.value.to_vec();
                write_stamp(&mut value, stamp);
                Record::from_value(value)
            }
        };
        let variant = (ticket.index % self.variants) as u32;
        let records = (0..ticket.records)
            .map(|j| ProduceRecord {
                partition: self.spread.partition(variant, j),
                record: record.clone(),
            })
            .collect();
        let positions = self
            .client
            .produce(&self.topic, records)
            .await
            .map_err(failure)?;
        if positions.len() != ticket.records as usize {
            return Err(Failure::Fatal(ClientError::Decode(format!(
                "{} records sent, {} acknowledged",
                ticket.records,
                positions.len()
            ))));
        }
        Ok(())
    }
}

/// A reader of one partition over the shared session.
pub struct NativeReader {
    client: Client,
    topic: String,
    partition: u32,
}

impl NativeReader {
    pub fn new(client: &Client, topic: &str, partition: u32) -> NativeReader {
        NativeReader {
            client: client.clone(),
            topic: topic.to_owned(),
            partition,
        }
    }
}

impl Reader for NativeReader {
    async fn fetch(
        &mut self,
        offset: u64,
        max_records: u32,
        wait_ms: u32,
        mut stamps: Option<&mut Vec<u64>>,
    ) -> Result<Fetched, Failure> {
        let reply = self
            .client
            .fetch(FetchRequest {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: FetchOffset::At(offset),
                max_records,
                max_bytes: FETCH_MAX_BYTES,
                max_wait_ms: wait_ms,
            })
            .await
            .map_err(failure)?;
        let mut bytes = 0;
        for r in &reply.records {
            bytes += r.record.value.len() as u64;
            if let Some(stamps) = stamps.as_deref_mut() {
                stamps.extend(read_stamp(&r.record.value));
            }
        }
        Ok(Fetched {
            records: reply.records.len() as u64,
            bytes,
            next_offset: reply.next_offset,
        })
    }
}
