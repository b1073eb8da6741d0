//! The store threads: the writer (group commit of each round's writes) and the reader (anti-entropy loads,
//! history reads), the data directory lock, and the names known at start.

use super::*;

/// Bytes of frames one writer batches into one flush.
pub(super) const WRITE_BATCH_BYTES: usize = 256 * 1024;

pub(super) enum ReadRequest {
    Load(LoadRequest),
    History { limit: Option<usize>, reply: oneshot::Sender<Result<Vec<Message>, StoreError>> },
}

/// An exclusive lock on `<data_dir>/LOCK`, held while the node runs (released by the kernel when the
/// process dies, so a crash never leaves a stale lock).
pub(super) fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir { path: dir.to_path_buf(), source })?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StartError::Locked { path: dir.to_path_buf() });
        }
    }
    Ok(file)
}

pub(super) struct WriteJob {
    pub(super) writes: Vec<Write>,
    pub(super) done: oneshot::Sender<Result<(), String>>,
}

pub(super) fn spawn_writer(mut store: Store, jobs: std::sync::mpsc::Receiver<WriteJob>) {
    std::thread::Builder::new()
        .name("chatmesh-store".into())
        .spawn(move || {
            while let Ok(mut job) = jobs.recv() {
                // Group commit: whatever else is already waiting goes into the same transaction.
                let mut dones = vec![job.done];
                while let Ok(more) = jobs.try_recv() {
                    job.writes.extend(more.writes);
                    dones.push(more.done);
                }
                let r = store.commit(&job.writes).map_err(|e| e.to_string());
                for d in dones {
                    let _ = d.send(r.clone());
                }
            }
        })
        .expect("spawning the store thread");
}

pub(super) fn spawn_reader(store: Store, reqs: std::sync::mpsc::Receiver<ReadRequest>, inbox: mpsc::Sender<Inbox>) {
    std::thread::Builder::new()
        .name("chatmesh-reader".into())
        .spawn(move || {
            while let Ok(req) = reqs.recv() {
                match req {
                    ReadRequest::Load(req) => {
                        let (messages, more) = store.load(&req).unwrap_or_else(|e| {
                            tracing::error!("history load failed: {e}");
                            (Vec::new(), false)
                        });
                        let input = Input::Loaded { id: req.id, messages, more };
                        if inbox.blocking_send(Inbox::Input(input)).is_err() {
                            return;
                        }
                    }
                    ReadRequest::History { limit, reply } => {
                        let _ = reply.send(store.history(limit));
                    }
                }
            }
        })
        .expect("spawning the reader thread");
}

/// The names the node knows at start: from the membership events of its history, and from its last durable
/// view for keys the history does not name (the rule of `Names`), so that a restarted node names everyone
/// before any view arrives.
pub(super) fn names_at_start(store: &Store, snapshot: &chatmesh_core::Snapshot) -> Result<Names, StartError> {
    let events = store.membership_events().map_err(StartError::Store)?;
    Ok(Names::stored(snapshot.view.as_ref(), &events))
}
