//! A consumer-group member that commits only what its caller confirmed.
//!
//! `enable.auto.commit=false` and `enable.auto.offset.store=false`: a record's offset is
//! stored only by [`GroupConsumer::confirm`] (after the caller delivered it) and committed by
//! [`GroupConsumer::commit`] and, before a rebalance takes partitions away, by the rebalance
//! callback, so the next owner resumes right after the last confirmed record (at-least-once).

use crate::{ms, Error};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use std::time::Duration;

/// Where a group without a committed offset starts reading a partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OffsetReset {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// Consumer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// `group.id`.
    pub group: String,
    /// `client.id`.
    pub client_id: String,
    /// `session.timeout.ms`: a member silent this long leaves the group (set it low in
    /// tests: brokers such as tansu take about half of it to complete a join).
    pub session_timeout: Duration,
    /// `auto.offset.reset`.
    pub offset_reset: OffsetReset,
    /// Further librdkafka properties, applied last.
    pub extra: Vec<(String, String)>,
}

impl ConsumerConfig {
    /// Defaults for `brokers` and `group`: 10 s session timeout, earliest.
    pub fn new(brokers: impl Into<String>, group: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group: group.into(),
            client_id: "switchyard".into(),
            session_timeout: Duration::from_secs(10),
            offset_reset: OffsetReset::Earliest,
            extra: Vec::new(),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("client.id", &self.client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", ms(self.session_timeout))
            .set(
                "heartbeat.interval.ms",
                ms((self.session_timeout / 3).max(Duration::from_millis(100))),
            )
            .set(
                "auto.offset.reset",
                match self.offset_reset {
                    OffsetReset::Earliest => "earliest",
                    OffsetReset::Latest => "latest",
                },
            );
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// Commits the stored (confirmed) offsets before partitions are revoked.
#[derive(Debug, Default)]
pub struct CommitOnRevoke;

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            if let Err(e) = commit_stored(consumer) {
                tracing::warn!(error = %e, "commit before revoke failed; the next owner re-reads");
            }
        }
    }
}

fn commit_stored<C: ConsumerContext>(c: &BaseConsumer<C>) -> Result<(), KafkaError> {
    match c.commit_consumer_state(CommitMode::Sync) {
        // Nothing confirmed since the last commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        r => r,
    }
}

/// One record read from the topic (copied out of librdkafka's buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key, if any.
    pub key: Option<Vec<u8>>,
    /// Value (empty for a null value).
    pub payload: Vec<u8>,
}

/// A member of a consumer group, subscribed to its topics. Poll it regularly (rebalances and
/// heartbeats are served from [`GroupConsumer::poll`]); confirm what was delivered.
pub struct GroupConsumer {
    inner: BaseConsumer<CommitOnRevoke>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer").finish_non_exhaustive()
    }
}

impl GroupConsumer {
    /// Joins the group (asynchronously: partitions arrive over the next polls) and subscribes
    /// to `topics`.
    ///
    /// # Errors
    /// An invalid configuration.
    pub fn new(cfg: &ConsumerConfig, topics: &[&str]) -> Result<Self, Error> {
        let inner: BaseConsumer<CommitOnRevoke> =
            cfg.client_config().create_with_context(CommitOnRevoke)?;
        inner.subscribe(topics)?;
        Ok(Self { inner })
    }

    /// The next record, or `None` when none arrived within `timeout`.
    ///
    /// # Errors
    /// A consumer error (broker, group or partition errors reported by librdkafka).
    pub fn poll(&self, timeout: Duration) -> Result<Option<Record>, Error> {
        match self.inner.poll(timeout) {
            None => Ok(None),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(m)) => Ok(Some(Record {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            })),
        }
    }

    /// Marks `record` (and everything before it in its partition) as delivered: its offset
    /// is committed by the next [`GroupConsumer::commit`] or rebalance.
    ///
    /// # Errors
    /// The partition is no longer assigned to this member (its next owner re-reads it).
    pub fn confirm(&self, record: &Record) -> Result<(), Error> {
        // rd_kafka_offset_store stores offset + 1, the next record to read.
        Ok(self
            .inner
            .store_offset(&record.topic, record.partition, record.offset)?)
    }

    /// Commits the confirmed offsets (synchronously).
    ///
    /// # Errors
    /// The commit failed (the records are then read again after a rebalance).
    pub fn commit(&self) -> Result<(), Error> {
        Ok(commit_stored(&self.inner)?)
    }

    /// Partitions currently assigned to this member, sorted.
    ///
    /// # Errors
    /// librdkafka could not report its assignment.
    pub fn assignment(&self) -> Result<Vec<(String, i32)>, Error> {
        let tpl = self.inner.assignment()?;
        let mut v: Vec<_> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Records between this member's position and the high watermark of its assigned
    /// partitions, summed. Partitions without a position yet (nothing fetched since they
    /// were assigned) are not counted. One `ListOffsets` request per partition: call it
    /// now and then, not per record.
    ///
    /// # Errors
    /// The assignment or a partition's watermarks could not be read in time.
    pub fn lag(&self, timeout: Duration) -> Result<u64, Error> {
        let pos = self.inner.position()?;
        let mut lag = 0u64;
        for e in pos.elements() {
            let Some(at) = e.offset().to_raw().filter(|o| *o >= 0) else {
                continue;
            };
            let (_, high) = self
                .inner
                .fetch_watermarks(e.topic(), e.partition(), timeout)?;
            lag += u64::try_from(high - at).unwrap_or(0);
        }
        Ok(lag)
    }

    /// Committed offsets of the assigned partitions (next record to read), by partition.
    ///
    /// # Errors
    /// The group coordinator did not answer in time.
    pub fn committed(&self, timeout: Duration) -> Result<Vec<(i32, Option<i64>)>, Error> {
        let tpl = self.inner.committed(timeout)?;
        Ok(tpl
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset().to_raw()))
            .collect())
    }
}
