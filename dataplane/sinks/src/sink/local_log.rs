//! `local_log` sink: every item appended to the local segment log (`switchyard-log`) as one
//! stream record, acknowledged only once it is durable.
//!
//! The log's writer lives on a glommio executor, so each log directory gets one dedicated
//! thread ([`LogService`]) running a small `LocalExecutor` (512 KiB of I/O memory) that owns
//! the [`Log`] and serves append requests from a channel. A sink worker (a plain thread)
//! turns its item into a [`StreamBatch`], encodes it in the configured envelope
//! (`encoding`, `compression`, `compression_level`), sends it and blocks until the record is
//! durable; several sink workers ([`WRITERS`]) share the log's fsyncs (group commit). Values
//! are counted delivered when durable, dropped (`fatal`, or `retries_exhausted`) when the
//! write fails.
//!
//! Services are shared per directory within the process: [`LogService::open`] returns the
//! running one if there is one, so the stream workers of the same process read the log
//! through its [`LogHandle`] and a reloaded sink does not fight itself for the directory's
//! lock. The log is closed (synced, padding trimmed) when the last user drops it.
//!
//! Flushed statsd batches become one record per chunk of [`MAX_SERIES_PER_RECORD`] series;
//! an HTTP `/api/v1/series` or `/api/v2/series` payload becomes one record (its null points
//! are dropped as `translation`); other intake endpoints are `unsupported`.
//!
//! Metrics: the sink counters of the driver (`switchyard_sink_*`); none of its own.

use super::{chunks, ParseScratch};
use crate::driver::Ctx;
use crate::stats::DropReason;
use crate::SinkError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use switchyard_core::config::{BatchEncoding, Compression as CfgCompression, LocalLogSettings};
use switchyard_core::egress::{Egress, Endpoint, IntakePayload};
use switchyard_core::intake;
use switchyard_core::translate::TranslateConfig;
use switchyard_log::{Log, LogConfig, LogHandle};
use switchyard_stream::{Compression, Encoding, Point, StreamBatch, StreamEncoder};

/// Sink workers per local log (they share fsyncs).
pub const WRITERS: usize = 4;

/// Most series of a statsd batch in one record.
pub const MAX_SERIES_PER_RECORD: usize = 10_000;

/// I/O memory of the log thread's glommio executor.
const IO_MEMORY: usize = 512 << 10;

/// Largest record the log accepts.
const MAX_RECORD_BYTES: u32 = 32 << 20;

/// How often the log thread runs the log's time-driven housekeeping.
const MAINTAIN_EVERY: Duration = Duration::from_secs(60);

/// One append: the record, and where to say when it is durable (its offset) or why not.
struct Append {
    record: Vec<u8>,
    reply: crossbeam_channel::Sender<Result<u64, String>>,
}

/// The thread owning one log directory's writer.
pub struct LogService {
    dir: PathBuf,
    tx: Option<flume::Sender<Append>>,
    handle: LogHandle,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LogService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogService")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<LogService>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Weak<LogService>>>> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

/// The log settings of a `local_log` sink.
pub fn log_config(s: &LocalLogSettings) -> LogConfig {
    LogConfig {
        segment_bytes: s.segment_bytes,
        segment_age: s.segment_age,
        retention_bytes: Some(s.retention_bytes),
        retention_age: Some(s.retention_age),
        max_record_bytes: MAX_RECORD_BYTES,
        ..LogConfig::default()
    }
}

impl LogService {
    /// The running service of `s.dir` in this process, or a new one: creates the directory,
    /// starts the log thread and opens (recovers) the log there.
    ///
    /// # Errors
    /// [`SinkError::Fatal`]: the directory cannot be created, the executor cannot start, or
    /// the log cannot be opened (held by another process, corrupt, I/O error).
    pub fn open(s: &LocalLogSettings) -> Result<Arc<Self>, SinkError> {
        std::fs::create_dir_all(&s.dir)
            .map_err(|e| SinkError::Fatal(format!("creating {}: {e}", s.dir.display())))?;
        let dir = std::fs::canonicalize(&s.dir)
            .map_err(|e| SinkError::Fatal(format!("resolving {}: {e}", s.dir.display())))?;
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(svc) = reg.get(&dir).and_then(Weak::upgrade) {
            return Ok(svc);
        }
        let svc = Arc::new(Self::start(dir.clone(), log_config(s))?);
        reg.insert(dir, Arc::downgrade(&svc));
        Ok(svc)
    }

    fn start(dir: PathBuf, cfg: LogConfig) -> Result<Self, SinkError> {
        let (tx, rx) = flume::unbounded::<Append>();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let d = dir.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-log".into())
            .spawn(move || serve(d, cfg, rx, ready_tx))
            .map_err(|e| SinkError::Fatal(format!("starting the log thread: {e}")))?;
        let handle = match ready_rx.recv() {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(SinkError::Fatal(format!(
                    "opening log {}: {e}",
                    dir.display()
                )));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(SinkError::Fatal(format!(
                    "the log thread of {} exited at start",
                    dir.display()
                )));
            }
        };
        tracing::info!(dir = %dir.display(), start = handle.start_offset(),
            end = handle.durable_offset(), "local log open");
        Ok(Self {
            dir,
            tx: Some(tx),
            handle,
            thread: Some(thread),
        })
    }

    /// The log directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A `Send + Sync` handle for readers and consumer offsets on any glommio executor.
    pub fn handle(&self) -> LogHandle {
        self.handle.clone()
    }

    /// Appends one record and blocks until it is durable; returns its offset.
    ///
    /// # Errors
    /// [`SinkError::Fatal`] when the log refused or failed the write (a failed write
    /// poisons the log until the process restarts) or its thread is gone.
    pub fn append(&self, record: Vec<u8>) -> Result<u64, SinkError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let Some(tx) = &self.tx else {
            return Err(SinkError::Fatal("the log is closed".into()));
        };
        tx.send(Append { record, reply })
            .map_err(|_| SinkError::Fatal("the log thread is gone".into()))?;
        match rx.recv() {
            Ok(Ok(offset)) => Ok(offset),
            Ok(Err(e)) => Err(SinkError::Fatal(e)),
            Err(_) => Err(SinkError::Fatal("the log thread is gone".into())),
        }
    }
}

impl Drop for LogService {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; it then closes the log.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The log thread: opens the log, serves appends (each in its own task, so concurrent
/// requests share fsyncs), runs housekeeping, and closes the log when the channel closes.
fn serve(
    dir: PathBuf,
    cfg: LogConfig,
    rx: flume::Receiver<Append>,
    ready: crossbeam_channel::Sender<Result<LogHandle, String>>,
) {
    let ex = match glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(IO_MEMORY)
        .name("switchyard-log")
        .make()
    {
        Ok(ex) => ex,
        Err(e) => {
            let _ = ready.send(Err(format!("starting a glommio executor: {e}")));
            return;
        }
    };
    ex.run(async move {
        let log = match Log::open(&dir, cfg).await {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        let _ = ready.send(Ok(log.handle()));
        let maint = log.clone();
        let housekeeping = glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(MAINTAIN_EVERY).await;
                if let Err(e) = maint.maintain().await {
                    tracing::warn!(error = %e, "local log housekeeping failed");
                }
            }
        });
        while let Ok(req) = rx.recv_async().await {
            let log = log.clone();
            glommio::spawn_local(async move {
                let r = match log.append(&req.record).await {
                    Ok(off) => log.wait_durable(off).await.map(|_| off),
                    Err(e) => Err(e),
                };
                let _ = req.reply.send(r.map_err(|e| e.to_string()));
            })
            .detach();
        }
        housekeeping.cancel().await;
        match log.close().await {
            Ok(end) => tracing::info!(dir = %dir.display(), end, "local log closed"),
            Err(e) => tracing::error!(dir = %dir.display(), error = %e, "closing the local log"),
        }
    });
}

/// Writes items to the local log.
pub struct LocalLogSink {
    service: Arc<LogService>,
    encoder: StreamEncoder,
    encoding: Encoding,
    compression: Compression,
    batch: StreamBatch,
    record: Vec<u8>,
    scratch: ParseScratch,
}

impl std::fmt::Debug for LocalLogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLogSink")
            .field("dir", &self.service.dir)
            .finish_non_exhaustive()
    }
}

/// The envelope encoding of a configured batch encoding.
pub fn encoding(e: BatchEncoding) -> Encoding {
    match e {
        BatchEncoding::Rkyv => Encoding::Rkyv,
        BatchEncoding::Json => Encoding::Json,
    }
}

/// The envelope compression of a configured compression.
pub fn compression(c: CfgCompression) -> Compression {
    match c {
        CfgCompression::Gzip => Compression::Gzip,
        CfgCompression::Deflate => Compression::Deflate,
        CfgCompression::None => Compression::None,
    }
}

impl LocalLogSink {
    /// Opens (or joins) the log of `s.dir`.
    ///
    /// # Errors
    /// As [`LogService::open`]; an invalid compression level.
    pub fn new(s: &LocalLogSettings) -> Result<Self, SinkError> {
        let ss = &s.stream_settings;
        let encoder =
            StreamEncoder::with_level(TranslateConfig::default(), i32::from(ss.compression_level))
                .map_err(|e| SinkError::Fatal(format!("compression_level: {e}")))?;
        Ok(Self {
            service: LogService::open(s)?,
            encoder,
            encoding: encoding(ss.encoding),
            compression: compression(ss.compression),
            batch: StreamBatch::new(),
            record: Vec::new(),
            scratch: ParseScratch::default(),
        })
    }

    /// The log's service (its [`LogHandle`] for readers).
    pub fn service(&self) -> &Arc<LogService> {
        &self.service
    }

    /// Delivers one queue item.
    pub fn handle(&mut self, item: &Egress, ctx: &Ctx<'_>) {
        match item {
            Egress::Series(b) => {
                if b.len() <= MAX_SERIES_PER_RECORD {
                    self.batch.clear();
                    self.batch.extend_from_series_batch(b);
                    return self.write(b.len() as u64, ctx);
                }
                let mut name = String::new();
                for c in chunks(b, MAX_SERIES_PER_RECORD) {
                    self.batch.clear();
                    for s in b.iter().skip(c.start).take(c.len()) {
                        name.clear();
                        name.push_str(s.base_name());
                        name.push_str(s.suffix());
                        self.batch.push_series(
                            &name,
                            s.kind().into(),
                            Some(b.interval),
                            Some(s.host()),
                            None,
                            s.tags(),
                            [Point {
                                timestamp: b.timestamp as f64,
                                value: s.value(),
                            }],
                        );
                    }
                    self.write(c.len() as u64, ctx);
                }
            }
            Egress::Payload(p) => self.write_payload(p, ctx),
            Egress::Forward(f) => super::not_forwarded(f, ctx),
        }
    }

    fn write_payload(&mut self, p: &IntakePayload, ctx: &Ctx<'_>) {
        if !matches!(p.endpoint, Endpoint::SeriesV1 | Endpoint::SeriesV2) {
            return ctx.drop_once_logged(
                DropReason::Unsupported,
                p.points,
                &format!(
                    "{} payloads are not written to a local log",
                    p.endpoint.label()
                ),
            );
        }
        self.batch.clear();
        let batch = &mut self.batch;
        let mut nulls = 0u64;
        let parsed = self.scratch.load_payload(p).and_then(|(body, buffers)| {
            intake::for_each_series(p.endpoint, body, buffers, |s| {
                nulls += batch.push_dd(s) as u64;
            })
        });
        if let Err(e) = parsed {
            tracing::error!(sink = ctx.name, error = %e, "invalid series payload: dropping it");
            return ctx.drop_values(DropReason::Fatal, p.points);
        }
        let nulls = nulls.min(p.points);
        if nulls > 0 {
            ctx.drop_values(DropReason::Translation, nulls);
        }
        self.write(p.points - nulls, ctx);
    }

    /// Encodes `self.batch` and appends it as `values` values.
    fn write(&mut self, values: u64, ctx: &Ctx<'_>) {
        self.record.clear();
        if let Err(e) = self.encoder.encode(
            &self.batch,
            self.encoding,
            self.compression,
            &mut self.record,
        ) {
            tracing::error!(sink = ctx.name, error = %e, values, "batch cannot be encoded: dropping it");
            return ctx.drop_values(DropReason::Fatal, values);
        }
        let raw = self.record.len() as u64;
        let (service, record) = (&self.service, &self.record);
        ctx.deliver(values, raw, || service.append(record.clone()).map(|_| raw));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::RetryPolicy;
    use crate::stats::SinkStats;
    use std::sync::atomic::AtomicBool;
    use switchyard_core::config::{Config, SinkKind};
    use switchyard_core::model::{SeriesBatch, SeriesType};
    use switchyard_stream::{Decoded, StreamDecoder};

    fn settings(dir: &Path, encoding: &str) -> LocalLogSettings {
        let src = format!(
            "[sinks.s]\ntype = \"local_log\"\ndir = \"{}\"\nbatch_encoding = \"{encoding}\"\n[[routes]]\nname = \"r\"\nto = [\"s\"]\n",
            dir.display()
        );
        let cfg = Config::from_toml(&src).unwrap();
        match cfg.sinks["s"].kind() {
            SinkKind::LocalLog(s) => s,
            _ => unreachable!(),
        }
    }

    /// Reads every durable record on a glommio executor of its own.
    fn read_all(h: &LogHandle) -> Vec<Vec<u8>> {
        let h = h.clone();
        std::thread::spawn(move || {
            let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(IO_MEMORY)
                .make()
                .unwrap();
            ex.run(async move {
                let mut r = h.reader();
                let mut out = Vec::new();
                let mut b = switchyard_log::ReadBatch::new();
                let mut at = h.start_offset();
                loop {
                    r.read(at, switchyard_log::ReadLimits::default(), &mut b)
                        .await
                        .unwrap();
                    let Some(next) = b.next_offset() else { break };
                    out.extend(b.iter().map(|rec| rec.payload.to_vec()));
                    at = next;
                }
                out
            })
        })
        .join()
        .unwrap()
    }

    #[test]
    fn statsd_batches_and_payloads_become_durable_records() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path(), "rkyv");
        let mut sink = LocalLogSink::new(&s).unwrap();
        // A second sink on the same directory shares the service (no lock conflict).
        let other = LocalLogSink::new(&s).unwrap();
        assert!(Arc::ptr_eq(sink.service(), other.service()));
        let stats = SinkStats::default();
        let abort = AtomicBool::new(false);
        let ctx = Ctx::new("s", &stats, &abort, RetryPolicy::default());

        let mut b = SeriesBatch::new(1_700_000_000, 10.0);
        for i in 0..3 {
            let id = b.identity(&format!("m{i}"), ["a:b"], "h");
            b.push(id, "", SeriesType::Gauge, f64::from(i));
        }
        ctx.begin_item();
        sink.handle(&Egress::Series(Arc::new(b)), &ctx);
        assert_eq!(ctx.item_tally().delivered, 3);

        let body = br#"{"series":[{"metric":"x","points":[[1700000000,1.5],[1700000010,null]],"type":"gauge","tags":["t:1"]}]}"#;
        let p = IntakePayload::json(Endpoint::SeriesV1, body.to_vec(), None, 1, 2);
        ctx.begin_item();
        sink.handle(&Egress::Payload(Arc::new(p)), &ctx);
        let t = ctx.item_tally();
        assert_eq!((t.delivered, t.dropped), (1, 1));
        assert_eq!(stats.dropped(DropReason::Translation), 1);
        let ev = IntakePayload::json(Endpoint::Events, b"{}".to_vec(), None, 1, 1);
        sink.handle(&Egress::Payload(Arc::new(ev)), &ctx);
        assert_eq!(stats.dropped(DropReason::Unsupported), 1);

        // Durable: visible to a reader on another executor, decodable.
        let records = read_all(&sink.service().handle());
        assert_eq!(records.len(), 2);
        let mut dec = StreamDecoder::default();
        let Decoded::Rkyv(a) = dec.decode(&records[0]).unwrap() else {
            panic!("expected rkyv")
        };
        let names: Vec<_> = a.series().map(|s| s.name().to_string()).collect();
        assert_eq!(names, ["m0", "m1", "m2"]);
        let Decoded::Rkyv(a) = dec.decode(&records[1]).unwrap() else {
            panic!("expected rkyv")
        };
        let pts: Vec<_> = a.series().next().unwrap().points().collect();
        assert_eq!(pts, [(1_700_000_000.0, 1.5)]);

        // Reopened after the last user is gone: the records survived.
        drop((sink, other));
        let again = LogService::open(&s).unwrap();
        assert_eq!(again.handle().durable_offset(), 2);
    }
}
