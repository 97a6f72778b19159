//! The store's read threads: records are read back from segment files here, never on an async worker and never
//! under a queue's lock.
//!
//! Job: a queue whose next message is known only by its place on disk asks for a read-ahead (`Reader::submit`): a
//! batch of locations (an open segment `File` and an offset each, taken under the queue's lock), and what to do with
//! the records. A small pool of threads (`READ_THREADS` per data directory) takes the batches in order of arrival,
//! reads them with no lock held (records that lie close together in one segment come in one `pread`), and hands
//! the records (or the error per record) to the batch's callback, which takes the queue's lock briefly to install
//! them and dispatch.
//!
//! Invariants:
//! - A read holds the segment's `File` open, so a segment deleted meanwhile (its records all acked) still reads;
//!   whoever installs the result checks under the queue's lock that each record is still where it was, and drops
//!   what is not (purged, taken, moved, expired, the queue deleted).
//! - Nothing here writes, and nothing here takes a lock a queue holds while it submits: `submit` only pushes onto
//!   this pool's own queue, so a queue may submit under its lock, and a callback may submit again.
//! - Tests can hold every read here (`DiskBudget::hold_reads`) to show what does not wait on them.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use tracing::error;

use super::record::{self, Decoded, Record};
use super::DiskBudget;

/// Threads per data directory: one slow read (a cold disk, a stuck device) does not hold up every queue's reads.
pub const READ_THREADS: usize = 2;

/// Records read ahead in one batch at most, and the bytes one `pread` covers at most. Each batch costs a hand-over
/// to a read thread and back (about a millisecond on a loaded 2-core machine), so a batch must cover many small
/// messages: with 64, four no-ack consumers of 16-byte messages paged out got 56k msg/s (P4C4), against 714k before
/// reads left the runtime.
pub const READ_AHEAD_RECORDS: usize = 4096;
pub const READ_AHEAD_BYTES: u64 = 1024 * 1024;

/// A record to read: its segment and where it starts.
#[derive(Clone)]
pub struct ReadRequest {
    pub file: Arc<File>,
    pub offset: u64,
}

/// What a batch's reader calls with one result per request, in request order.
pub type ReadDone = Box<dyn FnOnce(Vec<io::Result<Record>>) + Send>;

enum Job {
    Batch {
        requests: Vec<ReadRequest>,
        done: ReadDone,
    },
    /// Any other read (a stream consumer's): it does its own reading and hands the result on.
    Task(Box<dyn FnOnce() + Send>),
}

#[derive(Default)]
struct Jobs {
    queue: VecDeque<Job>,
    stop: bool,
}

struct Shared {
    jobs: Mutex<Jobs>,
    wake: Condvar,
    budget: DiskBudget,
}

/// A handle to the data directory's read threads (cheap to clone).
#[derive(Clone)]
pub struct Reader {
    shared: Arc<Shared>,
}

impl Reader {
    /// Starts the read threads; None when none could start (queues then read in place, as before).
    pub fn start(budget: DiskBudget) -> Option<Self> {
        let shared = Arc::new(Shared {
            jobs: Mutex::new(Jobs::default()),
            wake: Condvar::new(),
            budget,
        });
        let mut started = 0;
        for i in 0..READ_THREADS {
            let worker = shared.clone();
            match std::thread::Builder::new()
                .name(format!("warren-read-{i}"))
                .spawn(move || run(&worker))
            {
                Ok(_) => started += 1,
                Err(e) => error!(error = %e, "could not start a store read thread"),
            }
        }
        (started > 0).then_some(Reader { shared })
    }

    /// Queues a batch of reads; `done` runs on a read thread once they are all done. Never blocks on the disk.
    pub fn submit(&self, requests: Vec<ReadRequest>, done: ReadDone) {
        let mut jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.queue.push_back(Job::Batch { requests, done });
        drop(jobs);
        self.shared.wake.notify_one();
    }

    /// Queues a read that is not a batch of records (a stream consumer's), to run on a read thread.
    pub fn run(&self, task: Box<dyn FnOnce() + Send>) {
        let mut jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.queue.push_back(Job::Task(task));
        drop(jobs);
        self.shared.wake.notify_one();
    }

    /// Ends the threads once the batches queued now are done (the store is closing).
    pub fn stop(&self) {
        self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.shared.wake.notify_all();
    }
}

fn run(shared: &Shared) {
    loop {
        let job = {
            let mut jobs = shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = jobs.queue.pop_front() {
                    break job;
                }
                if jobs.stop {
                    return;
                }
                jobs = shared.wake.wait(jobs).unwrap_or_else(|e| e.into_inner());
            }
        };
        shared.budget.wait_for_reads();
        match job {
            Job::Batch { requests, done } => done(read_batch(&requests)),
            Job::Task(task) => task(),
        }
    }
}

/// Reads every request, one `pread` for each run of requests that lie within `READ_AHEAD_BYTES` of each other in
/// one file (a record that runs past the end of its run's read is read on its own).
pub fn read_batch(requests: &[ReadRequest]) -> Vec<io::Result<Record>> {
    let mut out = Vec::with_capacity(requests.len());
    let mut i = 0;
    while i < requests.len() {
        let first = &requests[i];
        let mut end = i + 1;
        while end < requests.len()
            && Arc::ptr_eq(&requests[end].file, &first.file)
            && requests[end].offset > requests[end - 1].offset
            && requests[end].offset - first.offset < READ_AHEAD_BYTES
        {
            end += 1;
        }
        if end - i == 1 {
            out.push(read_record(&first.file, first.offset));
            i = end;
            continue;
        }
        // The last record's size is not known yet: read a little past its start, and read it alone if it is larger.
        let span = requests[end - 1].offset - first.offset + 64 * 1024;
        let chunk = read_up_to(&first.file, first.offset, span);
        for r in &requests[i..end] {
            let at = usize::try_from(r.offset - first.offset).unwrap_or(usize::MAX);
            let decoded = match &chunk {
                Ok(c) if at < c.len() => match record::decode(&c.slice(at..)) {
                    Decoded::Ok(rec, _) => Some(Ok(rec)),
                    Decoded::Corrupt(_) => Some(Err(checksum_error(r.offset))),
                    // Past the end of what was read: read it alone.
                    Decoded::Torn => None,
                },
                _ => None,
            };
            out.push(decoded.unwrap_or_else(|| read_record(&r.file, r.offset)));
        }
        i = end;
    }
    out
}

/// Reads up to `len` bytes at `offset` (fewer at the end of the file).
fn read_up_to(file: &File, offset: u64, len: u64) -> io::Result<Bytes> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(Bytes::from(buf))
}

fn checksum_error(offset: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("record at offset {offset} failed its checksum"),
    )
}

/// Reads one record at `offset`: its length prefix, then the whole record.
pub fn read_record(file: &File, offset: u64) -> io::Result<Record> {
    let mut prefix = [0u8; record::PREFIX];
    file.read_exact_at(&mut prefix, offset)?;
    let size = record::declared_size(&prefix).unwrap_or(0);
    if !(record::PREFIX..=record::MAX_RECORD + record::PREFIX).contains(&size) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "implausible record length"));
    }
    let mut buf = vec![0u8; size];
    file.read_exact_at(&mut buf, offset)?;
    match record::decode(&Bytes::from(buf)) {
        Decoded::Ok(r, _) => Ok(r),
        _ => Err(checksum_error(offset)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use std::io::Write;

    #[test]
    fn a_batch_reads_close_records_together_and_far_or_large_ones_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seg");
        let mut f = File::create(&path).expect("create");
        let mut offsets = Vec::new();
        let mut at = 0u64;
        // Small records, one larger than the read-past margin, then one past `READ_AHEAD_BYTES`.
        let bodies: Vec<Vec<u8>> = vec![
            b"a".to_vec(),
            b"b".to_vec(),
            vec![7u8; 200 * 1024],
            b"c".to_vec(),
            vec![9u8; READ_AHEAD_BYTES as usize],
            b"d".to_vec(),
        ];
        for (seq, body) in bodies.iter().enumerate() {
            let mut buf = BytesMut::new();
            let meta = record::Meta {
                seq: seq as u64,
                enqueued_ms: 0,
                tx: 0,
            };
            let n = record::encode(&mut buf, meta, b"", b"k", &[], body);
            f.write_all(&buf).expect("write");
            offsets.push(at);
            at += n as u64;
        }
        let file = Arc::new(File::open(&path).expect("open"));
        let requests: Vec<ReadRequest> = offsets
            .iter()
            .map(|&offset| ReadRequest {
                file: file.clone(),
                offset,
            })
            .collect();
        let got: Vec<Vec<u8>> = read_batch(&requests)
            .into_iter()
            .map(|r| r.expect("read").body.to_vec())
            .collect();
        assert_eq!(got, bodies);
        // Past the end of the file: an error for that record only.
        let past = ReadRequest { file, offset: at };
        let got = read_batch(&[requests[0].clone(), past]);
        assert!(got[0].is_ok() && got[1].is_err());
    }
}
