//! DynamoDB lease store with KCL's table layout (cargo feature `dynamodb`).
//!
//! One item per lease, hash key `leaseKey` (S), attributes as KCL's
//! `DynamoDBLeaseSerializer` writes them: `leaseOwner` (S, absent = unowned), `leaseCounter`
//! (N), `checkpoint` (S: decimal sequence number or `TRIM_HORIZON` / `LATEST` /
//! `AT_TIMESTAMP` / `SHARD_END`), `checkpointSubSequenceNumber` (N), `pendingCheckpoint` (S)
//! and `pendingCheckpointSubSequenceNumber` (N), `ownerSwitchesSinceCheckpoint` (N),
//! `parentShardId` (SS), `childShardIds` (SS), `startingHashKey` / `endingHashKey` (S,
//! decimal). KCL has no place for an `AT_TIMESTAMP` time, so ours goes in the extra
//! `checkpointTimestampMillis` / `pendingCheckpointTimestampMillis` (N); attributes this
//! store does not know (KCL 3.x's `throughputKBps`, ...) are left untouched.
//!
//! Every mutation is one `UpdateItem` conditioned on `leaseCounter` (and `leaseOwner` for
//! holder operations). Checkpoints first read the item (consistent read) to refuse
//! backwards moves; the counter condition makes that read-validate-write atomic. When a
//! condition fails, the store reads the current item to tell a lost race from an SDK retry
//! of a write that had in fact succeeded (KCL re-reads for the same reason).
//!
//! The client runs on tokio (the AWS SDK's runtime).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;

use crate::error::LeaseError;
use crate::lease::{check_checkpoint, Checkpoint, HashRange, Lease, Mutation, SequenceNumber};
use crate::store::LeaseStore;

type Item = HashMap<String, AttributeValue>;

/// KCL attribute names.
mod attr {
    pub const KEY: &str = "leaseKey";
    pub const OWNER: &str = "leaseOwner";
    pub const COUNTER: &str = "leaseCounter";
    pub const CHECKPOINT: &str = "checkpoint";
    pub const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
    pub const CHECKPOINT_TS: &str = "checkpointTimestampMillis";
    pub const PENDING: &str = "pendingCheckpoint";
    pub const PENDING_SUB: &str = "pendingCheckpointSubSequenceNumber";
    pub const PENDING_TS: &str = "pendingCheckpointTimestampMillis";
    pub const SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
    pub const PARENTS: &str = "parentShardId";
    pub const CHILDREN: &str = "childShardIds";
    pub const START_HASH: &str = "startingHashKey";
    pub const END_HASH: &str = "endingHashKey";
}

const TRIM_HORIZON: &str = "TRIM_HORIZON";
const LATEST: &str = "LATEST";
const AT_TIMESTAMP: &str = "AT_TIMESTAMP";
const SHARD_END: &str = "SHARD_END";

/// A lease store in one DynamoDB table (KCL layout).
#[derive(Clone, Debug)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The (checkpoint, sub-sequence, timestamp) attribute values of a checkpoint.
fn checkpoint_values(cp: &Checkpoint) -> (AttributeValue, AttributeValue, Option<AttributeValue>) {
    match cp {
        Checkpoint::TrimHorizon => (s(TRIM_HORIZON), n(0), None),
        Checkpoint::Latest => (s(LATEST), n(0), None),
        Checkpoint::AtTimestamp { millis } => (s(AT_TIMESTAMP), n(0), Some(n(millis))),
        Checkpoint::Seq { seq, sub } => (s(seq.as_str()), n(sub), None),
        Checkpoint::ShardEnd => (s(SHARD_END), n(0), None),
    }
}

fn encode(lease: &Lease) -> Item {
    let mut item = Item::new();
    item.insert(attr::KEY.into(), s(&lease.key));
    if let Some(owner) = &lease.owner {
        item.insert(attr::OWNER.into(), s(owner));
    }
    item.insert(attr::COUNTER.into(), n(lease.counter));
    let (cp, sub, ts) = checkpoint_values(&lease.checkpoint);
    item.insert(attr::CHECKPOINT.into(), cp);
    item.insert(attr::CHECKPOINT_SUB.into(), sub);
    if let Some(ts) = ts {
        item.insert(attr::CHECKPOINT_TS.into(), ts);
    }
    if let Some(pending) = &lease.pending_checkpoint {
        let (cp, sub, ts) = checkpoint_values(pending);
        item.insert(attr::PENDING.into(), cp);
        item.insert(attr::PENDING_SUB.into(), sub);
        if let Some(ts) = ts {
            item.insert(attr::PENDING_TS.into(), ts);
        }
    }
    item.insert(attr::SWITCHES.into(), n(lease.owner_switches));
    // DynamoDB refuses empty sets: absent = empty.
    if !lease.parents.is_empty() {
        item.insert(
            attr::PARENTS.into(),
            AttributeValue::Ss(lease.parents.clone()),
        );
    }
    if !lease.children.is_empty() {
        item.insert(
            attr::CHILDREN.into(),
            AttributeValue::Ss(lease.children.clone()),
        );
    }
    if let Some(range) = lease.hash_range {
        item.insert(attr::START_HASH.into(), s(range.start.to_string()));
        item.insert(attr::END_HASH.into(), s(range.end.to_string()));
    }
    item
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, LeaseError> {
    match item.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_n()
            .ok()
            .and_then(|t| t.parse().ok())
            .map(Some)
            .ok_or_else(|| LeaseError::Corrupt(format!("attribute {name}: not a number: {v:?}"))),
    }
}

fn decode_checkpoint(
    item: &Item,
    cp: &str,
    sub: &str,
    ts: &str,
) -> Result<Option<Checkpoint>, LeaseError> {
    let Some(text) = get_s(item, cp) else {
        return Ok(None);
    };
    Ok(Some(match text {
        TRIM_HORIZON => Checkpoint::TrimHorizon,
        LATEST => Checkpoint::Latest,
        SHARD_END => Checkpoint::ShardEnd,
        AT_TIMESTAMP => Checkpoint::AtTimestamp {
            millis: get_n(item, ts)?.unwrap_or(0),
        },
        digits => Checkpoint::Seq {
            seq: SequenceNumber::parse(digits)
                .map_err(|bad| LeaseError::Corrupt(format!("{cp}: {bad:?}")))?,
            sub: get_n(item, sub)?.unwrap_or(0),
        },
    }))
}

fn decode(item: &Item) -> Result<Lease, LeaseError> {
    let key = get_s(item, attr::KEY)
        .ok_or_else(|| LeaseError::Corrupt("item without leaseKey".into()))?
        .to_owned();
    let set = |name| {
        item.get(name)
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default()
    };
    let hash = |name| -> Result<Option<u128>, LeaseError> {
        get_s(item, name)
            .map(|t| {
                t.parse()
                    .map_err(|_| LeaseError::Corrupt(format!("{key}: {name} {t:?}")))
            })
            .transpose()
    };
    let hash_range = match (hash(attr::START_HASH)?, hash(attr::END_HASH)?) {
        (Some(start), Some(end)) => Some(HashRange { start, end }),
        _ => None,
    };
    Ok(Lease {
        owner: get_s(item, attr::OWNER).map(str::to_owned),
        counter: get_n(item, attr::COUNTER)?.unwrap_or(0),
        checkpoint: decode_checkpoint(
            item,
            attr::CHECKPOINT,
            attr::CHECKPOINT_SUB,
            attr::CHECKPOINT_TS,
        )?
        .unwrap_or(Checkpoint::TrimHorizon),
        pending_checkpoint: decode_checkpoint(
            item,
            attr::PENDING,
            attr::PENDING_SUB,
            attr::PENDING_TS,
        )?,
        owner_switches: get_n(item, attr::SWITCHES)?.unwrap_or(0),
        parents: set(attr::PARENTS),
        children: set(attr::CHILDREN),
        hash_range,
        key,
    })
}

/// True if `current` is exactly what `mutation` by `worker` at `expected` would have written:
/// the write succeeded and the SDK's retry of it is what failed the condition.
fn already_applied(mutation: &Mutation, worker: &str, expected: u64, current: &Lease) -> bool {
    if current.counter != expected + 1 {
        return false;
    }
    let owned = current.is_owned_by(worker);
    match mutation {
        Mutation::Renew | Mutation::Take => owned,
        Mutation::Release => current.owner.is_none(),
        Mutation::Checkpoint(cp) => owned && &current.checkpoint == cp,
        Mutation::PrepareCheckpoint(cp) => owned && current.pending_checkpoint.as_ref() == Some(cp),
        Mutation::ShardEnd { .. } => owned && current.checkpoint.is_shard_end(),
    }
}

/// An `UpdateItem` being assembled: expression clauses and their values.
struct Update {
    set: Vec<String>,
    remove: Vec<&'static str>,
    add: Vec<String>,
    condition: String,
    values: Item,
}

impl Update {
    fn new(expected: u64, worker: &str, needs_owner: bool) -> Self {
        let mut values = Item::new();
        values.insert(":c".into(), n(expected));
        values.insert(":n".into(), n(expected + 1));
        values.insert(":w".into(), s(worker));
        let condition = if needs_owner {
            format!("{} = :c AND {} = :w", attr::COUNTER, attr::OWNER)
        } else {
            format!("{} = :c", attr::COUNTER)
        };
        Update {
            set: vec![format!("{} = :n", attr::COUNTER)],
            remove: Vec::new(),
            add: Vec::new(),
            condition,
            values,
        }
    }

    fn set(&mut self, name: &str, placeholder: &str, value: AttributeValue) {
        self.set.push(format!("{name} = {placeholder}"));
        self.values.insert(placeholder.to_owned(), value);
    }

    fn set_checkpoint(&mut self, cp: &Checkpoint, pending: bool) {
        let (name, sub, ts) = if pending {
            (attr::PENDING, attr::PENDING_SUB, attr::PENDING_TS)
        } else {
            (attr::CHECKPOINT, attr::CHECKPOINT_SUB, attr::CHECKPOINT_TS)
        };
        let (cp_v, sub_v, ts_v) = checkpoint_values(cp);
        self.set(name, ":cp", cp_v);
        self.set(sub, ":sub", sub_v);
        match ts_v {
            Some(v) => self.set(ts, ":ts", v),
            None => self.remove.push(ts),
        }
    }

    fn clear_pending(&mut self) {
        self.remove
            .extend([attr::PENDING, attr::PENDING_SUB, attr::PENDING_TS]);
        self.set(attr::SWITCHES, ":zero", n(0));
    }

    fn expression(&self) -> String {
        let mut e = format!("SET {}", self.set.join(", "));
        if !self.remove.is_empty() {
            e.push_str(" REMOVE ");
            e.push_str(&self.remove.join(", "));
        }
        if !self.add.is_empty() {
            e.push_str(" ADD ");
            e.push_str(&self.add.join(", "));
        }
        e
    }
}

impl DynamoDbStore {
    /// A store over `table` with an existing client.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbStore {
            client,
            table: table.into(),
        }
    }

    /// A store over `table` with a client from the standard AWS chain (region, credentials),
    /// optionally with an endpoint override (tests, DynamoDB Local).
    pub async fn from_env(table: impl Into<String>, endpoint: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        let conf = loader.load().await;
        Self::new(Client::new(&conf), table)
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (hash key `leaseKey`, on-demand billing) unless it exists, and waits
    /// until it is active.
    ///
    /// # Errors
    /// A store error, or the table not becoming active within about 30 s.
    pub async fn create_table_if_absent(&self) -> Result<(), LeaseError> {
        let op = "create_table";
        let err = |e: &dyn std::fmt::Display| LeaseError::store(op, e.to_string());
        let key = KeySchemaElement::builder()
            .attribute_name(attr::KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| err(&e))?;
        let def = AttributeDefinition::builder()
            .attribute_name(attr::KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| err(&e))?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key)
            .attribute_definitions(def)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        if let Err(e) = created {
            let text = DisplayErrorContext(&e).to_string();
            if !e.into_service_error().is_resource_in_use_exception() {
                return Err(LeaseError::store(op, text));
            }
        }
        for _ in 0..300 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| LeaseError::store(op, DisplayErrorContext(&e).to_string()))?;
            if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LeaseError::store(
            op,
            format!("table {} not active", self.table),
        ))
    }

    fn key(&self, key: &str) -> (String, AttributeValue) {
        (attr::KEY.to_owned(), s(key))
    }

    async fn send_update(
        &self,
        key: &str,
        update: &Update,
        op: &'static str,
    ) -> Result<Result<Lease, Option<Lease>>, LeaseError> {
        let (k, v) = self.key(key);
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .update_expression(update.expression())
            .condition_expression(&update.condition)
            .set_expression_attribute_values(Some(update.values.clone()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match sent {
            Ok(out) => {
                let item = out
                    .attributes()
                    .ok_or_else(|| LeaseError::Corrupt(format!("{op}: no attributes returned")))?;
                Ok(Ok(decode(item)?))
            }
            Err(e) => {
                let text = DisplayErrorContext(&e).to_string();
                match e.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(c) => {
                        let current = match c.item() {
                            Some(item) => Some(decode(item)?),
                            // Servers without ReturnValuesOnConditionCheckFailure.
                            None => self.get(key).await?,
                        };
                        Ok(Err(current))
                    }
                    _ => Err(LeaseError::store(op, text)),
                }
            }
        }
    }
}

impl LeaseStore for DynamoDbStore {
    async fn create_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(lease)))
            .condition_expression(format!("attribute_not_exists({})", attr::KEY))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) => {
                let text = DisplayErrorContext(&e).to_string();
                if e.into_service_error()
                    .is_conditional_check_failed_exception()
                {
                    Ok(false)
                } else {
                    Err(LeaseError::store("create", text))
                }
            }
        }
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut leases = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| LeaseError::store("list", DisplayErrorContext(&e).to_string()))?;
            for item in page.items() {
                leases.push(decode(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        leases.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(leases)
    }

    async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        let (k, v) = self.key(key);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(k, v)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| LeaseError::store("get", DisplayErrorContext(&e).to_string()))?;
        out.item().map(decode).transpose()
    }

    async fn update(
        &self,
        key: &str,
        worker: &str,
        expected: u64,
        mutation: Mutation,
    ) -> Result<Lease, LeaseError> {
        let op = mutation.name();
        let race = || {
            if mutation.needs_owner() {
                LeaseError::Lost {
                    key: key.to_owned(),
                }
            } else {
                LeaseError::Conflict {
                    key: key.to_owned(),
                }
            }
        };
        let mut update = Update::new(expected, worker, mutation.needs_owner());
        match &mutation {
            Mutation::Renew => {}
            Mutation::Take => {
                update.set(attr::OWNER, ":w", s(worker));
                // Owner switches count only when the owner changes: try that first, and
                // if the condition fails because I already own it, take without counting.
                let mut switching = Update::new(expected, worker, false);
                switching.set(attr::OWNER, ":w", s(worker));
                switching.set.push(format!(
                    "{sw} = if_not_exists({sw}, :zero) + :one",
                    sw = attr::SWITCHES
                ));
                switching.values.insert(":zero".into(), n(0));
                switching.values.insert(":one".into(), n(1));
                switching.condition = format!(
                    "{} = :c AND (attribute_not_exists({o}) OR {o} <> :w)",
                    attr::COUNTER,
                    o = attr::OWNER
                );
                match self.send_update(key, &switching, op).await? {
                    Ok(lease) => return Ok(lease),
                    Err(Some(current))
                        if current.counter == expected && current.is_owned_by(worker) =>
                    {
                        // Retaking my own lease: fall through to the plain update.
                    }
                    Err(Some(current))
                        if already_applied(&mutation, worker, expected, &current) =>
                    {
                        return Ok(current)
                    }
                    Err(Some(_)) => return Err(race()),
                    Err(None) => {
                        return Err(LeaseError::NotFound {
                            key: key.to_owned(),
                        })
                    }
                }
            }
            Mutation::Release => update.remove.push(attr::OWNER),
            Mutation::Checkpoint(cp) | Mutation::PrepareCheckpoint(cp) => {
                let current = self.get(key).await?.ok_or_else(|| LeaseError::NotFound {
                    key: key.to_owned(),
                })?;
                if current.counter != expected || !current.is_owned_by(worker) {
                    return Err(race());
                }
                check_checkpoint(&current, cp)?;
                let pending = matches!(mutation, Mutation::PrepareCheckpoint(_));
                update.set_checkpoint(cp, pending);
                if !pending {
                    update.clear_pending();
                }
            }
            Mutation::ShardEnd { children } => {
                update.set_checkpoint(&Checkpoint::ShardEnd, false);
                update.clear_pending();
                if !children.is_empty() {
                    update.add.push(format!("{} :children", attr::CHILDREN));
                    update
                        .values
                        .insert(":children".into(), AttributeValue::Ss(children.clone()));
                }
            }
        }
        match self.send_update(key, &update, op).await? {
            Ok(lease) => Ok(lease),
            Err(Some(current)) if already_applied(&mutation, worker, expected, &current) => {
                Ok(current)
            }
            Err(Some(_)) => Err(race()),
            Err(None) => Err(LeaseError::NotFound {
                key: key.to_owned(),
            }),
        }
    }

    async fn delete(&self, key: &str, expected: u64) -> Result<(), LeaseError> {
        let (k, v) = self.key(key);
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(k, v)
            .condition_expression(format!("{} = :c", attr::COUNTER))
            .expression_attribute_values(":c", n(expected))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = DisplayErrorContext(&e).to_string();
                if e.into_service_error()
                    .is_conditional_check_failed_exception()
                {
                    match self.get(key).await? {
                        None => Err(LeaseError::NotFound {
                            key: key.to_owned(),
                        }),
                        Some(_) => Err(LeaseError::Conflict {
                            key: key.to_owned(),
                        }),
                    }
                } else {
                    Err(LeaseError::store("delete", text))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_in_kcl_layout() {
        let mut lease = Lease::new(
            "shardId-000000000003",
            Checkpoint::seq(
                SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898")
                    .unwrap(),
                4,
            ),
        )
        .with_parents(["shardId-000000000001", "shardId-000000000002"])
        .with_hash_range(5, u128::MAX);
        lease.owner = Some("host-a".into());
        lease.counter = 42;
        lease.owner_switches = 2;
        lease.pending_checkpoint = Some(Checkpoint::AtTimestamp {
            millis: 1_700_000_000_000,
        });
        lease.children = vec!["shardId-000000000009".into()];
        let item = encode(&lease);
        assert_eq!(item["leaseCounter"], AttributeValue::N("42".into()));
        assert_eq!(item["leaseOwner"], AttributeValue::S("host-a".into()));
        assert_eq!(
            item["checkpointSubSequenceNumber"],
            AttributeValue::N("4".into())
        );
        assert_eq!(
            item["pendingCheckpoint"],
            AttributeValue::S("AT_TIMESTAMP".into())
        );
        assert_eq!(
            item["endingHashKey"],
            AttributeValue::S(u128::MAX.to_string())
        );
        assert!(matches!(&item["parentShardId"], AttributeValue::Ss(p) if p.len() == 2));
        assert_eq!(decode(&item).unwrap(), lease);

        let bare = Lease::new("k", Checkpoint::ShardEnd);
        let item = encode(&bare);
        assert!(!item.contains_key("leaseOwner") && !item.contains_key("parentShardId"));
        assert_eq!(item["checkpoint"], AttributeValue::S("SHARD_END".into()));
        assert_eq!(decode(&item).unwrap(), bare);
    }

    #[test]
    fn checkpoint_update_expression() {
        let mut u = Update::new(3, "w", true);
        u.set_checkpoint(&Checkpoint::Latest, false);
        u.clear_pending();
        assert_eq!(
            u.expression(),
            "SET leaseCounter = :n, checkpoint = :cp, checkpointSubSequenceNumber = :sub, \
             ownerSwitchesSinceCheckpoint = :zero REMOVE checkpointTimestampMillis, \
             pendingCheckpoint, pendingCheckpointSubSequenceNumber, pendingCheckpointTimestampMillis"
        );
        assert_eq!(u.condition, "leaseCounter = :c AND leaseOwner = :w");
    }
}
