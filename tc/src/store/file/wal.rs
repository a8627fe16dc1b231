//! Group commit: callers frame their record into one shared buffer under a mutex and get a
//! oneshot; a dedicated writer thread takes everything queued, writes it with one `write`,
//! calls `fdatasync` once, then completes every waiter of that batch. While it syncs, new
//! records pile up for the next batch, so the number of syncs per second stays near
//! `1 / sync latency` however many requests are in flight.
//!
//! The writer also rolls to a new segment once the active one passes the size limit and asks
//! the compactor (`compact.rs`) to snapshot everything before it. It does not read or delete
//! files.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use super::record::{self, Record, SEGMENT_MAGIC};
use super::recover::segment_name;
use crate::store::StoreError;

/// What a waiter learns once its batch is written (and synced).
pub(super) type Outcome = Result<(), StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Running,
    /// `close` was called: write what is queued, then stop.
    Closing,
    /// A write or sync failed. The file may now end in a partial batch and the kernel may
    /// have dropped dirty pages, so nothing more is appended; every later write fails with
    /// this message until the TC restarts and recovery cuts the tail.
    Failed(std::io::ErrorKind, String),
}

#[derive(Debug)]
struct Queue {
    /// Framed records not yet handed to the writer.
    buf: Vec<u8>,
    waiters: Vec<oneshot::Sender<Outcome>>,
    records: u64,
    mode: Mode,
    /// The writer is parked on the condvar; only then does a caller pay for a wake-up.
    writer_idle: bool,
}

/// Counters since open.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) records: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) syncs: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) segments_rolled: AtomicU64,
}

/// State shared by the store handle and the writer thread.
#[derive(Debug)]
pub(super) struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    pub(super) counters: Counters,
}

fn io_error(kind: std::io::ErrorKind, msg: &str) -> StoreError {
    StoreError::Io(std::io::Error::new(kind, msg.to_owned()))
}

/// Why a write is refused in `mode`, if it is.
fn refusal(mode: &Mode) -> Result<(), StoreError> {
    match mode {
        Mode::Running => Ok(()),
        Mode::Closing => Err(StoreError::Backend(
            "the file store is closed (the TC is shutting down)".into(),
        )),
        Mode::Failed(kind, msg) => Err(io_error(*kind, msg)),
    }
}

impl Shared {
    pub(super) fn new() -> Self {
        Shared {
            queue: Mutex::new(Queue {
                buf: Vec::with_capacity(64 * 1024),
                waiters: Vec::new(),
                records: 0,
                mode: Mode::Running,
                writer_idle: false,
            }),
            wake: Condvar::new(),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding this lock; if something ever did, the queue is still
        // consistent (records are appended whole or truncated back).
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one record. The receiver resolves once the record is durable (or written, with
    /// `sync = none`). Records reach the file in the order of these calls (and of
    /// [`submit_framed`](Self::submit_framed)).
    pub(super) fn submit(
        &self,
        rec: &Record<'_>,
    ) -> Result<oneshot::Receiver<Outcome>, StoreError> {
        let mut q = self.lock();
        refusal(&q.mode)?;
        record::append(&mut q.buf, rec).map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(self.queued(q))
    }

    /// Queues one record framed beforehand by [`record::frame`], outside this lock. Fails
    /// only when the store no longer accepts writes.
    pub(super) fn submit_framed(
        &self,
        framed: &[u8],
    ) -> Result<oneshot::Receiver<Outcome>, StoreError> {
        let mut q = self.lock();
        refusal(&q.mode)?;
        q.buf.extend_from_slice(framed);
        Ok(self.queued(q))
    }

    fn queued(&self, mut q: MutexGuard<'_, Queue>) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        q.waiters.push(tx);
        q.records += 1;
        if q.writer_idle {
            q.writer_idle = false;
            self.wake.notify_one();
        }
        rx
    }

    /// `Ok` while writes are accepted; otherwise the error every write now gets.
    pub(super) fn accepting(&self) -> Result<(), StoreError> {
        refusal(&self.lock().mode)
    }

    /// Asks the writer to finish what is queued and stop.
    pub(super) fn close(&self) {
        let mut q = self.lock();
        if q.mode == Mode::Running {
            q.mode = Mode::Closing;
        }
        self.wake.notify_one();
    }
}

/// Zeros written ahead of the data, and synced once, so the `fdatasync` of each batch
/// overwrites allocated blocks and has no file size or block map to write back: on ext4 that
/// saves an inode write per sync and keeps the sync out of other files' journal commits.
/// Recovery reads zeros at the end of the newest segment as unused space.
const PREALLOC_CHUNK: u64 = 4 << 20;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The segment being appended to.
#[derive(Debug)]
pub(super) struct Segment {
    pub(super) number: u64,
    pub(super) file: File,
    /// End of the records (the file cursor stays here).
    pub(super) len: u64,
    /// End of the file: `len` plus preallocated zeros.
    allocated: u64,
    /// Preallocation failed (e.g. disk nearly full); plain appends from then on.
    no_prealloc: bool,
}

impl Segment {
    /// Makes room for `more` bytes after the records by writing (and syncing) zeros. A failure
    /// only turns preallocation off: appends still work while the disk has room.
    fn reserve(&mut self, more: u64) -> std::io::Result<()> {
        let needed = self.len.saturating_add(more);
        if needed <= self.allocated || self.no_prealloc {
            return Ok(());
        }
        let target = needed.saturating_add(PREALLOC_CHUNK);
        let grown = self.write_zeros(target);
        // Wherever the zeros stopped, records continue at `len`.
        self.file.seek(SeekFrom::Start(self.len))?;
        match grown {
            Ok(()) => self.allocated = target,
            Err(e) => {
                warn!(error = %e, "file store could not preallocate its segment; appending without");
                self.no_prealloc = true;
            }
        }
        Ok(())
    }

    fn write_zeros(&mut self, target: u64) -> std::io::Result<()> {
        let mut at = self.allocated.max(self.len);
        self.file.seek(SeekFrom::Start(at))?;
        while at < target {
            let n = usize::try_from(target - at).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
            self.file.write_all(ZEROS.get(..n).unwrap_or_default())?;
            at += n as u64;
        }
        self.file.sync_data()
    }

    /// Cuts the unused zeros off and makes the segment durable (it stops being the newest,
    /// where zeros are read as the end).
    fn finish(&self) -> std::io::Result<()> {
        if self.allocated > self.len {
            self.file.set_len(self.len)?;
        }
        self.file.sync_all()
    }
}

/// Creates segment `number` with its magic, durably (file and directory entry synced), so a
/// record synced into it later is found again.
pub(super) fn create_segment(dir: &Path, number: u64) -> std::io::Result<Segment> {
    let path = dir.join(segment_name(number));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all(SEGMENT_MAGIC)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(Segment {
        number,
        file,
        len: SEGMENT_MAGIC.len() as u64,
        allocated: SEGMENT_MAGIC.len() as u64,
        no_prealloc: false,
    })
}

/// fsyncs a directory so entries created, renamed or removed in it are durable.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How the writer runs.
#[derive(Debug, Clone)]
pub(super) struct WriterConfig {
    pub(super) dir: PathBuf,
    pub(super) fsync: bool,
    pub(super) segment_bytes: u64,
}

/// Body of the writer thread; returns when closed and drained, or after a failure.
pub(super) fn run(
    shared: Arc<Shared>,
    config: WriterConfig,
    mut segment: Segment,
    compactor: mpsc::Sender<u64>,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut waiters: Vec<oneshot::Sender<Outcome>> = Vec::new();
    let mut roll_at = config.segment_bytes;
    loop {
        let records = {
            let mut q = shared.lock();
            while q.buf.is_empty() && q.mode == Mode::Running {
                q.writer_idle = true;
                q = shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
            q.writer_idle = false;
            if q.buf.is_empty() {
                break;
            }
            std::mem::swap(&mut q.buf, &mut batch);
            std::mem::swap(&mut q.waiters, &mut waiters);
            std::mem::take(&mut q.records)
        };
        let result = segment
            .reserve(batch.len() as u64)
            .and_then(|()| segment.file.write_all(&batch))
            .and_then(|()| {
                crate::failpoints::hit("tc::file::group_commit");
                if config.fsync {
                    shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
                    let started = std::time::Instant::now();
                    let synced = segment.file.sync_data();
                    crate::metrics::seata().fsync(started.elapsed());
                    synced
                } else {
                    Ok(())
                }
            });
        let c = &shared.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            error!(error = %e, file = %segment_name(segment.number),
                "file store write failed; refusing further writes until restart");
            fail(&shared, &mut waiters, e.kind(), &e.to_string());
            return;
        }
        c.records.fetch_add(records, Ordering::Relaxed);
        crate::metrics::seata().group_commit(records);
        c.bytes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        segment.len += batch.len() as u64;
        for w in waiters.drain(..) {
            // A caller that stopped waiting (its request was dropped) is no error.
            let _ = w.send(Ok(()));
        }
        // A burst can grow the buffer a lot; do not keep that memory forever.
        if batch.capacity() > 4 << 20 {
            batch = Vec::with_capacity(64 * 1024);
        } else {
            batch.clear();
        }
        if segment.len >= roll_at {
            match roll(&config, &segment) {
                Ok(next) => {
                    debug!(
                        from = segment.number,
                        to = next.number,
                        "file store rolled to a new segment"
                    );
                    c.segments_rolled.fetch_add(1, Ordering::Relaxed);
                    // The compactor may have stopped (close); the next open compacts then.
                    let _ = compactor.send(next.number);
                    segment = next;
                    roll_at = config.segment_bytes;
                }
                Err(e) => {
                    // Keep appending to the current segment (still healthy); try again later.
                    warn!(error = %e, "file store could not start a new segment; will retry");
                    roll_at = segment.len.saturating_add(config.segment_bytes / 8 + 1);
                }
            }
        }
    }
    // Closing: leave the segment without its zeros, and synced (with `sync = none` the one
    // sync at a clean shutdown makes the log survive a power loss right after it).
    if let Err(e) = segment.finish() {
        warn!(error = %e, "file store could not sync at shutdown");
    }
}

/// Finishes the current segment on disk and starts the next. The finished one is synced even
/// with `sync = none`: recovery accepts a torn tail only in the newest segment.
fn roll(config: &WriterConfig, segment: &Segment) -> std::io::Result<Segment> {
    segment.finish()?;
    create_segment(&config.dir, segment.number.saturating_add(1))
}

fn fail(
    shared: &Shared,
    waiters: &mut Vec<oneshot::Sender<Outcome>>,
    kind: std::io::ErrorKind,
    msg: &str,
) {
    let msg = format!(
        "{msg} (the file store stopped accepting writes; restart the TC after fixing the disk)"
    );
    let queued = {
        let mut q = shared.lock();
        q.mode = Mode::Failed(kind, msg.clone());
        q.buf.clear();
        std::mem::take(&mut q.waiters)
    };
    for w in waiters.drain(..).chain(queued) {
        let _ = w.send(Err(io_error(kind, &msg)));
    }
}
