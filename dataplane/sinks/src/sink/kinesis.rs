//! Kinesis Data Streams sink: queue items become KPL-aggregated `PutRecords` entries, one
//! stream batch (envelope) per item and destination shard, many envelopes per record (see
//! [`pack`] for the layout).
//!
//! - Aggregation across items: after the item the driver hands it, the sink takes more
//!   queued items for up to `linger` (default 200 ms; [`Ctx::next_item`]) or until a call's
//!   worth is gathered, so the envelopes of small items (HTTP payloads) share records and
//!   calls. Every item taken is settled (delivered or dropped) before `handle` returns, so
//!   the ledger holds no value in a buffer between items and nothing is left at shutdown.
//! - Pacing: a token bucket per shard for bytes and one for records (`shard_bytes_per_sec`,
//!   `shard_records_per_sec`, by default the AWS write limits 1 MiB/s and 1000 records/s, a
//!   burst of [`shards::BURST`]); a record goes only when its shard has the tokens, so the
//!   sink never offers a shard more than its limits. Calls take the records of every shard
//!   with tokens in turn; when none has, the sink waits (the queue behind it fills and the
//!   intake pushes back). Records are at most one burst large.
//!
//! - Client: `aws-sdk-kinesis` on the sink's own tokio current-thread runtime (the sink
//!   worker is a plain thread and `block_on`s each call). Region and credentials come from the
//!   standard AWS chain; `region` and `endpoint` from the config override it.
//! - Shards: `ListShards` (open shards only, so closed parents of a split or merge get
//!   nothing); refreshed every [`SHARD_REFRESH`], after any failed call, and at once when
//!   Kinesis puts a record on another shard than planned (a reshard). Then the series of that
//!   record the shard it landed on does not hold are packed again for their own shard, ahead
//!   of what was queued behind them, and every queued record is planned again for the new
//!   map; the Kinesis workers leave such misplaced series out (they deliver only their
//!   lease's hash range), so a series keeps its order across splits and merges.
//! - Record limit: the stream's `MaxRecordSizeInKiB` from `DescribeStreamSummary`, 1 MiB
//!   (logged) when the server does not report it. Calls stay within 500 records and 5 MiB.
//! - Failures: only the failed entries of a call are resent. An entry failing with
//!   `ProvisionedThroughputExceededException` backs its shard off (exponential, jittered,
//!   [`THROTTLE_BASE`] to [`THROTTLE_CAP`]); other entry errors count as an attempt too. An
//!   entry that failed more than `max_retries` times is dropped (`retries_exhausted`).
//!   Whole-call errors go through the driver's retry policy ([`Ctx::deliver`]). Every value
//!   ends delivered or dropped by reason. A call carries at most one record per shard and a
//!   failed record goes back to the front of its shard's queue, so a shard's records (and a
//!   series') keep their order through partial failures.
//!
//! Metrics (the sink's [`StreamStats`](crate::stats::StreamStats), rendered by the control
//! plane with label `sink`):
//! - `switchyard_sink_stream_calls_total`: `PutRecords` calls answered;
//! - `switchyard_sink_stream_records_total{outcome=put|throttled|failed}`: aggregated
//!   records per entry outcome; `switchyard_sink_stream_user_records_total`: user records
//!   (envelopes) put;
//! - `switchyard_sink_stream_bytes_total`: record bytes (data + partition key) put;
//! - `switchyard_sink_stream_shard_refreshes_total`: shard map reloads after the first;
//! - `switchyard_sink_stream_points_moved_total`: points a reshard put on a shard that does
//!   not hold their series, sent again to the right one.
//!
//! Besides these, the shared sink metrics apply: `switchyard_sink_requests_total` and the
//! latency histogram per call, `switchyard_sink_bytes_total` (bytes sent per call, resends
//! included), delivered and dropped values.

pub mod pack;
pub mod shards;

use crate::driver::Ctx;
use crate::stats::{DropReason, RequestOutcome, SinkStats};
use crate::SinkError;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use pack::{plan_call, Entry, PackDrops, Packer, MAX_CALL_BYTES, MAX_CALL_RECORDS};
use rand::Rng;
use shards::{Pacer, ShardMap, ShardRange};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use switchyard_core::config::{BatchEncoding, Compression as CfgCompression, KinesisSettings};
use switchyard_core::egress::Egress;
use switchyard_core::translate::TranslateConfig;
use switchyard_stream::kpl::{self, parse_hash_key, DEFAULT_MAX_RECORD_BYTES};
use switchyard_stream::{
    Compression, Decoded, Encoding, Point, StreamBatch, StreamDecoder, StreamEncoder,
};

/// How often the shard map is reloaded even without errors.
pub const SHARD_REFRESH: Duration = Duration::from_secs(60);
/// First per-shard backoff after a throttled entry.
pub const THROTTLE_BASE: Duration = Duration::from_millis(100);
/// Largest per-shard backoff.
pub const THROTTLE_CAP: Duration = Duration::from_secs(5);

/// Per-shard throttling state.
#[derive(Debug, Clone, Copy, Default)]
struct Throttle {
    until: Option<Instant>,
    level: u32,
}

/// The Kinesis sink.
pub struct KinesisSink {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_kinesis::Client,
    stream: String,
    map: ShardMap,
    /// Every shard of the last listing, closed ones too (where a reshard put a record).
    listed: Vec<ShardRange>,
    refreshed: Option<Instant>,
    stale: bool,
    packer: Packer,
    batch: StreamBatch,
    decoder: StreamDecoder,
    key: String,
    scratch: super::ParseScratch,
    max_retries: u32,
    throttle: Vec<Throttle>,
    pacer: Pacer,
    linger: Duration,
    /// Records waiting to be put, by shard index.
    queues: Vec<VecDeque<Entry>>,
    take: Vec<usize>,
}

/// Longest single sleep while waiting for a shard's tokens or backoff (abort is checked
/// between sleeps).
const WAIT_SLICE: Duration = Duration::from_millis(50);

impl std::fmt::Debug for KinesisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KinesisSink")
            .field("stream", &self.stream)
            .field("shards", &self.map.len())
            .field("max_record_bytes", &self.packer.max_record_bytes())
            .finish_non_exhaustive()
    }
}

/// A Kinesis client for `s`: region and credentials from the standard AWS chain, `region`
/// and `endpoint` overriding it, `request_timeout` per attempt, and one attempt per call
/// (callers retry, with their own accounting). Shared by the sink and the stream workers.
pub async fn load_client(s: &KinesisSettings) -> aws_sdk_kinesis::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(s.stream_settings.request_timeout)
            .build(),
    );
    if let Some(r) = &s.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(u) = &s.endpoint {
        loader = loader.endpoint_url(u.clone());
    }
    let conf = loader.load().await;
    let kconf = aws_sdk_kinesis::config::Builder::from(&conf)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_kinesis::Client::from_conf(kconf)
}

/// An SDK error as `Code: message` (service errors) or its debug form (transport errors).
pub fn sdk_err<E: ProvideErrorMetadata + std::fmt::Debug>(
    e: &aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
) -> String {
    match e.as_service_error() {
        Some(s) => format!("{}: {}", s.code().unwrap_or("?"), s.message().unwrap_or("")),
        None => format!("{e:?}"),
    }
}

impl KinesisSink {
    /// Builds the client and reads the stream's record limit and shards.
    ///
    /// # Errors
    /// [`SinkError::Fatal`] when the runtime cannot start or the stream cannot be described
    /// (missing stream, no credentials, unreachable endpoint).
    pub fn new(s: &KinesisSettings) -> Result<Self, SinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::Fatal(format!("kinesis runtime: {e}")))?;
        let ss = &s.stream_settings;
        let client = rt.block_on(load_client(s));
        let summary = rt
            .block_on(
                client
                    .describe_stream_summary()
                    .stream_name(&s.stream)
                    .send(),
            )
            .map_err(|e| {
                SinkError::Fatal(format!(
                    "DescribeStreamSummary {}: {}",
                    s.stream,
                    sdk_err(&e)
                ))
            })?;
        let max_record = match summary
            .stream_description_summary()
            .and_then(|d| d.max_record_size_in_kib())
            .filter(|&k| k > 0)
        {
            Some(kib) => kib as usize * 1024,
            None => {
                tracing::info!(stream = %s.stream, "the stream does not report MaxRecordSizeInKiB: assuming 1 MiB records");
                DEFAULT_MAX_RECORD_BYTES
            }
        };
        let encoding = match ss.encoding {
            BatchEncoding::Rkyv => Encoding::Rkyv,
            BatchEncoding::Json => Encoding::Json,
        };
        let compression = match ss.compression {
            CfgCompression::Gzip => Compression::Gzip,
            CfgCompression::Deflate => Compression::Deflate,
            CfgCompression::None => Compression::None,
        };
        let encoder =
            StreamEncoder::with_level(TranslateConfig::default(), i32::from(ss.compression_level))
                .map_err(|e| SinkError::Fatal(format!("kinesis compression level: {e}")))?;
        let pacer = Pacer::new(s.shard_bytes_per_sec, s.shard_records_per_sec);
        // A record larger than a shard's burst could never be offered within its rate.
        let max_record = max_record.min(pacer.burst_bytes().max(1024));
        let mut sink = Self {
            rt,
            client,
            stream: s.stream.clone(),
            map: ShardMap::default(),
            listed: Vec::new(),
            refreshed: None,
            stale: true,
            packer: Packer::new(encoder, encoding, compression, max_record),
            batch: StreamBatch::new(),
            decoder: StreamDecoder::default(),
            key: String::new(),
            scratch: super::ParseScratch::default(),
            max_retries: ss.max_retries,
            throttle: Vec::new(),
            pacer,
            linger: s.linger,
            queues: Vec::new(),
            take: Vec::new(),
        };
        sink.refresh_shards().map_err(SinkError::Fatal)?;
        Ok(sink)
    }

    /// The per-record limit in use (bytes).
    pub fn max_record_bytes(&self) -> usize {
        self.packer.max_record_bytes()
    }

    /// The open shards currently mapped.
    pub fn shards(&self) -> &ShardMap {
        &self.map
    }

    fn refresh_shards(&mut self) -> Result<(), String> {
        let mut items: Vec<(String, String, String, bool)> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let out = self
                .rt
                .block_on(req.send())
                .map_err(|e| format!("ListShards {}: {}", self.stream, sdk_err(&e)))?;
            for sh in out.shards() {
                let Some(r) = sh.hash_key_range() else {
                    continue;
                };
                let closed = sh
                    .sequence_number_range()
                    .and_then(|s| s.ending_sequence_number())
                    .is_some();
                items.push((
                    sh.shard_id().to_owned(),
                    r.starting_hash_key().to_owned(),
                    r.ending_hash_key().to_owned(),
                    closed,
                ));
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        let map = ShardMap::from_listing(
            items
                .iter()
                .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), *d)),
        );
        if map.is_empty() {
            return Err(format!("stream {} has no open shard", self.stream));
        }
        self.listed = items
            .iter()
            .filter_map(|(id, start, end, _)| {
                Some(ShardRange {
                    id: id.clone(),
                    start: parse_hash_key(start)?,
                    end: parse_hash_key(end)?,
                })
            })
            .collect();
        self.map = map;
        self.throttle = vec![Throttle::default(); self.map.len()];
        self.pacer.remap(&self.map, Instant::now());
        self.queues.truncate(self.map.len());
        self.queues.resize_with(self.map.len(), VecDeque::new);
        self.refreshed = Some(Instant::now());
        self.stale = false;
        Ok(())
    }

    /// Delivers one queue item, and the items [`Ctx::next_item`] hands over within
    /// `linger`: every value of each ends delivered or dropped before this returns.
    pub fn handle(&mut self, item: &Egress, ctx: &Ctx<'_>) {
        // Nothing is open or queued between calls, so the map may change here.
        if self.stale || self.refreshed.is_none_or(|t| t.elapsed() >= SHARD_REFRESH) {
            match self.refresh_shards() {
                Ok(()) => SinkStats::add(&ctx.stats.stream.shard_refreshes, 1),
                Err(e) => {
                    tracing::warn!(sink = ctx.name, error = %e, "shard map refresh failed; keeping the previous map");
                }
            }
        }
        self.add_item(item, ctx);
        if !self.linger.is_zero() {
            let until = Instant::now() + self.linger;
            while self.gathered_bytes() < MAX_CALL_BYTES
                && self.queues.iter().map(VecDeque::len).sum::<usize>() < MAX_CALL_RECORDS
            {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match ctx.next_item(left) {
                    Some(next) => self.add_item(&next, ctx),
                    None => break,
                }
            }
        }
        self.packer.finish(&mut self.queues);
        self.send(ctx);
    }

    /// Bytes gathered: queued records and open aggregates.
    fn gathered_bytes(&self) -> usize {
        self.packer.open_bytes()
            + self
                .queues
                .iter()
                .flatten()
                .map(|e| e.record.size())
                .sum::<usize>()
    }

    /// Packs one item's series into the open aggregates (full records join the queues).
    fn add_item(&mut self, item: &Egress, ctx: &Ctx<'_>) {
        let total = item.points();
        self.batch.clear();
        match item {
            Egress::Series(b) => self.batch.extend_from_series_batch(b),
            Egress::Forward(f) => return super::not_forwarded(f, ctx),
            Egress::Payload(p) => {
                let parsed = self.scratch.load_payload(p).and_then(|(body, buffers)| {
                    self.batch.extend_from_intake(p.endpoint, body, buffers)
                });
                if let Err(e) = parsed {
                    return ctx.drop_once_logged(
                        DropReason::Unsupported,
                        total,
                        &format!("{} payload not carried by kinesis: {e}", p.endpoint.label()),
                    );
                }
            }
        }
        // Points the stream batch could not hold (null values in intake payloads).
        let held = self.batch.point_count() as u64;
        if held < total {
            ctx.drop_values(DropReason::Translation, total - held);
        }
        let drops = self.packer.add(&self.batch, &self.map, &mut self.queues);
        self.account(drops, ctx);
    }

    /// Counts what the packer could not turn into records.
    fn account(&mut self, drops: PackDrops, ctx: &Ctx<'_>) {
        if drops.too_large > 0 {
            ctx.drop_once_logged(
                DropReason::Rejected,
                drops.too_large,
                "series larger than the stream's record limit",
            );
        }
        if drops.unmapped > 0 {
            self.stale = true;
            ctx.drop_once_logged(
                DropReason::Fatal,
                drops.unmapped,
                "series hash outside every open shard",
            );
        }
    }

    /// How long `shard` stays backed off after throttling.
    fn backed_off(throttle: &[Throttle], shard: usize, now: Instant) -> Duration {
        throttle
            .get(shard)
            .and_then(|t| t.until)
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(now))
    }

    fn back_off(&mut self, shard: usize) {
        if let Some(t) = self.throttle.get_mut(shard) {
            let exp = THROTTLE_BASE
                .saturating_mul(1u32 << t.level.min(16))
                .min(THROTTLE_CAP);
            // Equal jitter: half fixed, half random.
            let half = exp.as_millis() as u64 / 2;
            let wait = Duration::from_millis(half + rand::thread_rng().gen_range(0..=half));
            t.until = Some(Instant::now() + wait);
            t.level = t.level.saturating_add(1);
        }
    }

    /// Sends the queued records in paced calls until every one is put or dropped.
    fn send(&mut self, ctx: &Ctx<'_>) {
        let mut take = std::mem::take(&mut self.take);
        while self.queues.iter().any(|q| !q.is_empty()) {
            if ctx.aborting() {
                let pts = self.queues.iter().flatten().map(|e| e.points).sum();
                self.queues.iter_mut().for_each(VecDeque::clear);
                ctx.drop_values(DropReason::Shutdown, pts);
                break;
            }
            let now = Instant::now();
            let (throttle, pacer) = (&self.throttle, &mut self.pacer);
            let n = plan_call(
                &self.queues,
                |s, e| {
                    Self::backed_off(throttle, s, now).is_zero()
                        && pacer.try_take(s, e.record.size(), now)
                },
                &mut take,
            );
            if n == 0 {
                // No shard with records has the tokens: wait for the first that will.
                let wait = self
                    .queues
                    .iter()
                    .enumerate()
                    .filter_map(|(s, q)| q.front().map(|e| (s, e.record.size())))
                    .map(|(s, size)| {
                        Self::backed_off(&self.throttle, s, now).max(self.pacer.wait(s, size, now))
                    })
                    .min()
                    .unwrap_or(Duration::ZERO);
                std::thread::sleep(wait.clamp(Duration::from_millis(1), WAIT_SLICE));
                continue;
            }
            let mut call = Vec::with_capacity(n);
            for (q, &k) in self.queues.iter_mut().zip(&take) {
                call.extend(q.drain(..k.min(q.len())));
            }
            // Failed entries go back to the front of their shard, before what was left.
            let mut moved = Vec::new();
            for e in self.put(call, ctx, &mut moved).into_iter().rev() {
                match self.queues.get_mut(e.shard) {
                    Some(q) => q.push_front(e),
                    None => ctx.drop_values(DropReason::Fatal, e.points),
                }
            }
            if !moved.is_empty() {
                self.replan(moved, ctx);
            }
        }
        self.take = take;
    }

    /// After Kinesis put records on other shards than planned (a split or merge the map had
    /// not seen): reloads the map, then plans again, in order, each moved record and every
    /// record still queued. Of a moved record, the series the shard it landed on holds are
    /// delivered (its worker keeps them); the others, which that shard's worker drops as
    /// misplaced, are packed again for their shard, ahead of the records queued behind
    /// them, so each series keeps its order. Queued records are packed again for the new
    /// map. Records that cannot be read back (the JSON encoding, whose consumers do not
    /// filter by range) stay as they are: a moved one counts delivered where it landed, a
    /// queued one goes to the shard its explicit hash key now falls in. Only a reshard takes
    /// this path, so it may allocate.
    fn replan(&mut self, moved: Vec<Moved>, ctx: &Ctx<'_>) {
        let mut old = std::mem::take(&mut self.queues);
        loop {
            match self.refresh_shards() {
                Ok(()) => {
                    SinkStats::add(&ctx.stats.stream.shard_refreshes, 1);
                    break;
                }
                Err(e) if ctx.aborting() => {
                    tracing::warn!(sink = ctx.name, error = %e, "shard map reload failed at shutdown");
                    let pts = moved.iter().map(|m| m.entry.points).sum::<u64>()
                        + old.iter().flatten().map(|e| e.points).sum::<u64>();
                    ctx.drop_values(DropReason::Shutdown, pts);
                    return;
                }
                Err(e) => {
                    tracing::warn!(sink = ctx.name, error = %e, "shard map reload after a reshard failed; retrying");
                    std::thread::sleep(WAIT_SLICE * 4);
                }
            }
        }
        tracing::info!(
            sink = ctx.name,
            records = moved.len(),
            shards = self.map.len(),
            "records landed on other shards than planned (a reshard): planning again"
        );
        let mut moved: Vec<Option<Moved>> = moved.into_iter().map(Some).collect();
        for (shard, queue) in old.iter_mut().enumerate() {
            // At most one record per shard per call, so at most one moved per shard; it goes
            // before the records queued behind it.
            for slot in moved.iter_mut() {
                if slot.as_ref().is_some_and(|m| m.entry.shard == shard) {
                    if let Some(m) = slot.take() {
                        self.repack_moved(m, ctx);
                    }
                }
            }
            for e in queue.drain(..) {
                self.repack(e, None, ctx);
            }
        }
        for m in moved.into_iter().flatten() {
            self.repack_moved(m, ctx);
        }
        self.packer.finish(&mut self.queues);
    }

    fn repack_moved(&mut self, m: Moved, ctx: &Ctx<'_>) {
        let range = self.listed.iter().find(|s| s.id == m.actual).cloned();
        self.repack(m.entry, Some(range), ctx);
    }

    /// Packs the series of `e` again for the current map. `landed`: `e` was put on a shard
    /// (with that range when known), whose series are delivered rather than packed.
    fn repack(&mut self, e: Entry, landed: Option<Option<ShardRange>>, ctx: &Ctx<'_>) {
        self.batch.clear();
        let mut kept = 0u64;
        let mut readable = true;
        for user in kpl::deaggregate(&e.record.data) {
            let Ok(Decoded::Rkyv(a)) = self.decoder.decode(&user.data) else {
                readable = false;
                break;
            };
            for s in a.series() {
                let h = s.partition_hash(&mut self.key);
                if let Some(Some(r)) = &landed {
                    if r.start <= h && h <= r.end {
                        kept += s.points().len() as u64;
                        continue;
                    }
                }
                self.batch.push_series(
                    s.name(),
                    s.kind(),
                    s.interval(),
                    s.host(),
                    s.device(),
                    s.tags(),
                    s.points()
                        .map(|(timestamp, value)| Point { timestamp, value }),
                );
            }
        }
        if !readable {
            self.batch.clear();
            if landed.is_some() {
                return ctx.delivered(e.points);
            }
            let to = e
                .record
                .explicit_hash_key
                .as_deref()
                .and_then(parse_hash_key)
                .and_then(|h| self.map.lookup(h));
            match to.and_then(|shard| self.queues.get_mut(shard).map(|q| (shard, q))) {
                Some((shard, q)) => q.push_back(Entry { shard, ..e }),
                None => {
                    self.stale = true;
                    ctx.drop_once_logged(
                        DropReason::Fatal,
                        e.points,
                        "record hash outside every open shard",
                    );
                }
            }
            return;
        }
        if kept > 0 {
            ctx.delivered(kept);
        }
        let carried = self.batch.point_count() as u64;
        if kept + carried < e.points {
            // Cannot happen for records this sink packed; counted rather than lost.
            ctx.drop_values(DropReason::Translation, e.points - kept - carried);
        }
        if carried > 0 {
            if landed.is_some() {
                SinkStats::add(&ctx.stats.stream.points_moved, carried);
            }
            let drops = self.packer.add(&self.batch, &self.map, &mut self.queues);
            self.account(drops, ctx);
        }
    }

    /// One `PutRecords` call (with the driver's whole-call retries); returns the entries to
    /// resend. Entries Kinesis put on another shard than planned go to `moved`, not yet
    /// counted delivered ([`KinesisSink::replan`] settles them).
    fn put(&mut self, call: Vec<Entry>, ctx: &Ctx<'_>, moved: &mut Vec<Moved>) -> Vec<Entry> {
        let mut reqs = Vec::with_capacity(call.len());
        for e in &call {
            let mut b = PutRecordsRequestEntry::builder()
                .data(Blob::new(e.record.data.clone()))
                .partition_key(&e.record.partition_key);
            if let Some(k) = &e.record.explicit_hash_key {
                b = b.explicit_hash_key(k);
            }
            match b.build() {
                Ok(r) => reqs.push(r),
                Err(err) => {
                    tracing::error!(sink = ctx.name, error = %err, "invalid PutRecords entry");
                    return Vec::new();
                }
            }
        }
        let bytes: u64 = call.iter().map(|e| e.record.size() as u64).sum();
        let mut out = None;
        let mut calls = 0u32;
        let mut last: Option<&'static str> = None;
        let stats = ctx.stats;
        let ok = ctx.deliver(0, bytes, || {
            calls += 1;
            let started = Instant::now();
            let res = self.rt.block_on(
                self.client
                    .put_records()
                    .stream_name(&self.stream)
                    .set_records(Some(reqs.clone()))
                    .send(),
            );
            match res {
                Ok(o) => {
                    stats.request(RequestOutcome::Success, started.elapsed());
                    out = Some(o);
                    Ok(bytes)
                }
                Err(e) => {
                    self.stale = true;
                    let (err, kind) = classify(&e);
                    stats.request(
                        if kind == "rejected" {
                            RequestOutcome::Rejected
                        } else {
                            RequestOutcome::Retryable
                        },
                        started.elapsed(),
                    );
                    last = Some(kind);
                    Err(err)
                }
            }
        });
        let Some(out) = out.filter(|_| ok) else {
            let reason = match last {
                Some("rejected") => DropReason::Rejected,
                Some("fatal") => DropReason::Fatal,
                _ if calls > self.max_retries => DropReason::RetriesExhausted,
                _ => DropReason::Shutdown,
            };
            ctx.drop_values(reason, call.iter().map(|e| e.points).sum());
            return Vec::new();
        };
        SinkStats::add(&ctx.stats.stream.calls, 1);
        let mut failed = Vec::new();
        let results = out.records();
        for (i, mut e) in call.into_iter().enumerate() {
            let r = results.get(i);
            match r.and_then(|r| r.error_code()) {
                None if r.is_some() => {
                    SinkStats::add(&ctx.stats.stream.records_put, 1);
                    SinkStats::add(
                        &ctx.stats.stream.user_records_put,
                        e.record.user_records as u64,
                    );
                    SinkStats::add(&ctx.stats.stream.bytes_put, e.record.size() as u64);
                    if let Some(t) = self.throttle.get_mut(e.shard) {
                        t.level = 0;
                    }
                    let expected = self.map.get(e.shard).map(|s| s.id.as_str());
                    match r.and_then(|r| r.shard_id()) {
                        Some(id) if Some(id) != expected => {
                            // A reshard the map has not seen: the record sits on a shard
                            // whose range may not hold all of its series.
                            self.stale = true;
                            moved.push(Moved {
                                actual: id.to_owned(),
                                entry: e,
                            });
                        }
                        _ => ctx.delivered(e.points),
                    }
                }
                code => {
                    let throttled = code == Some("ProvisionedThroughputExceededException");
                    if throttled {
                        SinkStats::add(&ctx.stats.stream.records_throttled, 1);
                    } else {
                        SinkStats::add(&ctx.stats.stream.records_failed, 1);
                    }
                    self.back_off(e.shard);
                    e.attempts += 1;
                    if e.attempts > self.max_retries {
                        tracing::warn!(
                            sink = ctx.name,
                            code = code.unwrap_or("missing result"),
                            points = e.points,
                            "record failed too often; dropping it"
                        );
                        ctx.drop_values(DropReason::RetriesExhausted, e.points);
                    } else {
                        SinkStats::add(&ctx.stats.retries, 1);
                        failed.push(e);
                    }
                }
            }
        }
        failed
    }
}

/// A record put on another shard than planned.
#[derive(Debug)]
struct Moved {
    entry: Entry,
    /// The shard Kinesis put it on.
    actual: String,
}

/// Maps a whole-call error to the driver's retry classes (and a label for the drop reason).
fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(
    e: &aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
) -> (SinkError, &'static str) {
    let msg = format!("PutRecords: {}", sdk_err(e));
    match e.as_service_error().and_then(|s| s.code()) {
        Some("ValidationException" | "InvalidArgumentException") => {
            let status = e.raw_response().map_or(400, |r| r.status().as_u16());
            (
                SinkError::Rejected {
                    status,
                    response: String::new(),
                    reason: msg,
                },
                "rejected",
            )
        }
        Some(
            "AccessDeniedException"
            | "KMSAccessDeniedException"
            | "KMSDisabledException"
            | "KMSNotFoundException",
        ) => (SinkError::Fatal(msg), "fatal"),
        _ => (SinkError::Retryable(msg), "retryable"),
    }
}
