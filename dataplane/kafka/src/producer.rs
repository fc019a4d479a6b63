//! The idempotent producer: `ThreadedProducer` (its polling thread runs the delivery
//! callbacks) with one bounded channel per message carrying its delivery report back to the
//! sender, who waits on it ([`Pending::wait`]).

use crate::{ms, Error};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::time::{Duration, Instant};

/// Slack over `message.timeout.ms` before a missing delivery report counts as a timeout.
const REPORT_SLACK: Duration = Duration::from_secs(5);
/// Wait between attempts to enqueue while librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// Producer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// `client.id`.
    pub client_id: String,
    /// `message.timeout.ms`: how long librdkafka keeps retrying a message before it reports
    /// it failed.
    pub message_timeout: Duration,
    /// `linger.ms`: how long librdkafka waits to fill a produce request.
    pub linger: Duration,
    /// `compression.type` of librdkafka's record batches; `none` by default since our
    /// envelopes are compressed already.
    pub compression: String,
    /// Further librdkafka properties, applied last (they override the above).
    pub extra: Vec<(String, String)>,
}

impl ProducerConfig {
    /// Defaults for `brokers`: 30 s message timeout, 5 ms linger, no compression.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: "switchyard".into(),
            message_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(5),
            compression: "none".into(),
            extra: Vec::new(),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &self.compression)
            .set("message.timeout.ms", ms(self.message_timeout))
            .set("linger.ms", ms(self.linger));
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// Where a message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

type Report = Result<Delivered, KafkaError>;

/// Routes each delivery report to the channel sent along with its message.
#[derive(Debug, Default)]
pub struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Sender<Report>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let report = match result {
            Ok(m) => Ok(Delivered {
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err((e, _)) => Err(e.clone()),
        };
        // The sender may have stopped waiting; nothing to do then.
        let _ = tx.try_send(report);
    }
}

/// A message handed to librdkafka, whose delivery report is still to come.
#[derive(Debug)]
#[must_use = "wait for the delivery report"]
pub struct Pending {
    rx: Receiver<Report>,
    timeout: Duration,
}

impl Pending {
    /// Blocks until the broker acknowledged the message (all in-sync replicas) or librdkafka
    /// gave up on it.
    ///
    /// # Errors
    /// The delivery error, [`Error::Timeout`] when no report came in time, [`Error::Closed`]
    /// when the producer was dropped first.
    pub fn wait(self) -> Result<Delivered, Error> {
        match self.rx.recv_timeout(self.timeout) {
            Ok(r) => Ok(r?),
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout(self.timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(Error::Closed),
        }
    }
}

/// The idempotent producer. Cheap to share by reference across threads (`Send + Sync`).
pub struct Producer {
    inner: ThreadedProducer<DeliveryContext>,
    cfg: ProducerConfig,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Creates the producer (connections are opened lazily by librdkafka).
    ///
    /// # Errors
    /// An invalid configuration.
    pub fn new(cfg: ProducerConfig) -> Result<Self, Error> {
        let inner = cfg.client_config().create_with_context(DeliveryContext)?;
        Ok(Self { inner, cfg })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &ProducerConfig {
        &self.cfg
    }

    /// Hands one message to librdkafka: to `partition` if given, else to the partition
    /// librdkafka's partitioner picks for `key`. Waits (up to `message.timeout.ms`) while
    /// librdkafka's local queue is full.
    ///
    /// # Errors
    /// The message was refused locally (too large, unknown partition, fatal producer error)
    /// or the queue stayed full.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        payload: &[u8],
    ) -> Result<Pending, Error> {
        let (tx, rx) = bounded(1);
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(tx))
            .key(key)
            .payload(payload);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let deadline = Instant::now() + self.cfg.message_timeout;
        loop {
            match self.inner.send(record) {
                Ok(()) => {
                    return Ok(Pending {
                        rx,
                        timeout: self.cfg.message_timeout + REPORT_SLACK,
                    })
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    std::thread::sleep(QUEUE_FULL_WAIT);
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Number of partitions of `topic`, from the cluster's metadata.
    ///
    /// # Errors
    /// Metadata could not be fetched, or the topic is missing or empty.
    pub fn partition_count(&self, topic: &str, timeout: Duration) -> Result<usize, Error> {
        let md = self.inner.client().fetch_metadata(Some(topic), timeout)?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if n == 0 {
            return Err(Error::NoTopic(topic.to_owned()));
        }
        Ok(n)
    }

    /// The producer's fatal error, if it has one (it must then be recreated).
    pub fn fatal_error(&self) -> Option<String> {
        self.inner.client().fatal_error().map(|(_, s)| s)
    }

    /// Waits until every message handed over got its delivery report.
    ///
    /// # Errors
    /// Messages were still in flight at the timeout.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        Ok(self.inner.flush(timeout)?)
    }
}
