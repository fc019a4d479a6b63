//! Kafka client of Switchyard, on rdkafka (librdkafka built from source by `rdkafka-sys`).
//!
//! - [`Producer`]: an idempotent producer (`enable.idempotence=true`, `acks=all`) on rdkafka's
//!   `ThreadedProducer` (its own polling thread serves delivery reports; no tokio reactor, no
//!   glommio executor involved). [`Producer::send`] returns a [`Pending`] delivery the caller
//!   waits on, so a sink accounts values only once the broker acknowledged them. Our records
//!   are envelopes compressed by us (libdeflate), so librdkafka's `compression.type` is
//!   `none` unless overridden.
//! - [`GroupConsumer`]: a consumer-group member that commits only offsets its caller
//!   [confirmed](GroupConsumer::confirm) (`enable.auto.offset.store=false`), at
//!   [`GroupConsumer::commit`] and before its partitions are revoked in a rebalance.
//! - [`admin::create_topic`]: topic creation (tests, tooling).
//!
//! Every call blocks the calling OS thread: call these from sink or worker threads, never from
//! a glommio executor.
//!
//! Metrics: none of its own (callers count outcomes in their ledgers); librdkafka's log lines
//! go to `tracing`.

pub mod admin;
pub mod consumer;
pub mod producer;

pub use consumer::{ConsumerConfig, GroupConsumer, OffsetReset, Record};
pub use producer::{Delivered, Pending, Producer, ProducerConfig};
/// The rdkafka crate (for `rdkafka::mocking::MockCluster` in tests).
pub use rdkafka;
pub use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use std::time::Duration;

/// Why a Kafka call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// librdkafka's error.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// No delivery report arrived in time (librdkafka reports every message within
    /// `message.timeout.ms`, so this means the producer is wedged).
    #[error("no delivery report within {0:?}")]
    Timeout(Duration),
    /// The topic does not exist or reports no partitions.
    #[error("topic {0:?} not found or without partitions")]
    NoTopic(String),
    /// The producer went away before reporting the delivery.
    #[error("producer closed before the delivery report")]
    Closed,
}

impl Error {
    /// Whether sending the same record again can succeed (broker down, timeouts, leader
    /// changes); false for records the broker will never take (too large, not authorized,
    /// invalid) and for a fatal producer state.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout(_) | Error::NoTopic(_) | Error::Closed => true,
            Error::Kafka(e) => !matches!(
                e.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::MessageSizeTooLarge
                        | RDKafkaErrorCode::InvalidMessageSize
                        | RDKafkaErrorCode::InvalidRecord
                        | RDKafkaErrorCode::InvalidMessage
                        | RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::ClusterAuthorizationFailed
                        | RDKafkaErrorCode::InvalidTopic
                        | RDKafkaErrorCode::InvalidRequiredAcks
                        | RDKafkaErrorCode::Fatal
                )
            ),
        }
    }

    /// Whether the producer hit a fatal error (idempotence state lost): it must be
    /// recreated before anything else is sent.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Kafka(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal))
    }
}

/// Milliseconds of `d` as librdkafka config values want them (at least 1).
pub(crate) fn ms(d: Duration) -> String {
    d.as_millis().clamp(1, i32::MAX as u128).to_string()
}
