//! Chat load through the nodes' control APIs: several client threads, each with its own keep-alive HTTP
//! agent, sending `POST /messages` either on a schedule (open loop: message k is due at start + k / rate,
//! whatever happened to earlier ones) or as fast as the nodes answer (closed loop, to fill histories).
//! The `_batched` forms send `POST /messages/batch` requests of several messages instead.

use super::cluster::{post, post_batch, Res};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One message sent: to which target, when the request started, when the node answered (stored), its ID.
#[derive(Clone, Debug)]
pub struct Sent {
    pub target: usize,
    pub at: Instant,
    pub stored_at: Instant,
    pub id: String,
}

#[derive(Debug)]
pub struct Load {
    pub sent: Vec<Sent>,
    /// Messages not sent (a failed batch counts each of its messages).
    pub errors: u64,
    pub first_error: Option<String>,
    pub started: Instant,
    pub ended: Instant,
}

/// A text body of exactly `size` bytes (at least the number), unique per `k`.
pub fn body(k: u64, size: usize) -> String {
    let mut s = format!("bench message {k} ");
    while s.len() < size {
        s.push(char::from(b'a' + (s.len() % 26) as u8));
    }
    s
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).max_idle_connections_per_host(4).build()
}

/// Sends on a schedule: `rate` messages per second in all for `dur`, spread over `targets` in turn, from
/// `threads` client threads. A message whose turn comes while its thread still waits for an earlier answer
/// is sent late (the offered rate is then not achieved, which the caller sees).
pub fn paced(targets: &[String], rate: f64, dur: Duration, threads: usize, size: usize, stop: &AtomicBool) -> Load {
    paced_batched(targets, rate, dur, threads, size, 1, stop)
}

/// `paced` in requests of `batch` messages (`POST /messages/batch` when above 1): request j, holding
/// messages j * batch up to (j + 1) * batch, is due at start + j * batch / rate.
pub fn paced_batched(
    targets: &[String],
    rate: f64,
    dur: Duration,
    threads: usize,
    size: usize,
    batch: usize,
    stop: &AtomicBool,
) -> Load {
    let threads = threads.max(1);
    let batch = batch.max(1) as u64;
    let start = Instant::now() + Duration::from_millis(20);
    let total = (rate * dur.as_secs_f64()).round() as u64;
    let out = Mutex::new(Vec::with_capacity(total as usize));
    let errors = AtomicU64::new(0);
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (out, errors, first_error) = (&out, &errors, &first_error);
            s.spawn(move || {
                let agent = agent();
                let mut mine = Vec::new();
                let mut j = t as u64;
                while j * batch < total && !stop.load(Ordering::Relaxed) && !super::interrupted() {
                    let k = j * batch;
                    let due = start + Duration::from_secs_f64(k as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let target = (j % targets.len() as u64) as usize;
                    let at = Instant::now();
                    let texts: Vec<String> = (k..(k + batch).min(total)).map(|k| body(k, size)).collect();
                    let outcome = if batch == 1 {
                        post(&agent, &targets[target], &texts[0]).map(|id| vec![id])
                    } else {
                        post_batch(&agent, &targets[target], &texts)
                    };
                    match outcome {
                        Ok(ids) => {
                            let stored_at = Instant::now();
                            mine.extend(ids.into_iter().map(|id| Sent { target, at, stored_at, id }));
                        }
                        Err(e) => {
                            errors.fetch_add(texts.len() as u64, Ordering::Relaxed);
                            first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                        }
                    }
                    j += threads as u64;
                }
                out.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            });
        }
    });
    let mut sent = out.into_inner().unwrap_or_else(|p| p.into_inner());
    sent.sort_by_key(|s| s.at);
    Load {
        sent,
        errors: errors.into_inner(),
        first_error: first_error.into_inner().unwrap_or_else(|p| p.into_inner()),
        started: start,
        ended: Instant::now(),
    }
}

/// Sends `total` messages as fast as the nodes answer, from `threads` client threads spread over `targets`
/// (or until `until`). Returns how many were stored and how long it took.
pub fn fill(
    targets: &[String],
    total: u64,
    until: Option<Instant>,
    threads: usize,
    size: usize,
    salt: u64,
) -> Res<(u64, Duration)> {
    fill_batched(targets, total, until, threads, size, salt, 1)
}

/// `fill` in requests of `batch` messages (`POST /messages/batch` when above 1).
pub fn fill_batched(
    targets: &[String],
    total: u64,
    until: Option<Instant>,
    threads: usize,
    size: usize,
    salt: u64,
    batch: usize,
) -> Res<(u64, Duration)> {
    let batch = batch.max(1) as u64;
    let start = Instant::now();
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..threads.max(1) {
            let (next, done, failed, first_error) = (&next, &done, &failed, &first_error);
            s.spawn(move || {
                let agent = agent();
                let target = &targets[t % targets.len()];
                let mut errors = 0;
                while !failed.load(Ordering::Relaxed)
                    && !super::interrupted()
                    && until.is_none_or(|u| Instant::now() < u)
                {
                    let k = next.fetch_add(batch, Ordering::Relaxed);
                    if k >= total {
                        break;
                    }
                    let outcome = if batch == 1 {
                        post(&agent, target, &body(salt + k, size)).map(|_| 1)
                    } else {
                        let texts: Vec<String> = (k..(k + batch).min(total)).map(|k| body(salt + k, size)).collect();
                        post_batch(&agent, target, &texts).map(|ids| ids.len() as u64)
                    };
                    match outcome {
                        Ok(n) => {
                            done.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            errors += 1;
                            if errors > 20 {
                                failed.store(true, Ordering::Relaxed);
                                first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            });
        }
    });
    if failed.load(Ordering::Relaxed) {
        let e = first_error.into_inner().unwrap_or_else(|p| p.into_inner()).unwrap_or_default();
        return Err(format!("sending failed: {e}"));
    }
    Ok((done.into_inner(), start.elapsed()))
}
