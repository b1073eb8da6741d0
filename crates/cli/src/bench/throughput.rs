//! `throughput`: messages of 200 bytes offered on a schedule at rising rates to a 4-node mesh through
//! several keep-alive HTTP clients; for each step, the rate the mesh achieved (messages sent / time from the
//! first send until every node holds all of them and every author has every acknowledgement) and the CPU
//! the node processes used per message (utime + stime from /proc). Then as fast as the clients can go.

use super::cluster::{count_of, cpu_total, per_message, Cluster, Res};
use super::load;
use super::stats::{Cmp, Section};
use super::Ctx;
use serde_json::json;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const BODY: usize = 200;
/// Messages per request in the batched series.
const BATCH: usize = 50;

pub fn run(ctx: &Ctx) -> Section {
    let mut sec = Section::default();
    if let Err(e) = measure(ctx, &mut sec) {
        sec.errors.push(e);
    }
    sec
}

struct Step {
    offered: f64,
    sent: usize,
    posted_rate: f64,
    achieved: f64,
    drain_ms: f64,
    cpu_us_per_msg: f64,
    cpu_cores: f64,
    errors: u64,
    /// Cores in use meanwhile: the machine, the nodes, the bench's clients, other processes.
    machine: serde_json::Value,
    /// From the nodes' metrics, summed over the nodes, per message sent.
    per_msg: serde_json::Value,
}

fn measure(ctx: &Ctx, sec: &mut Section) -> Res<()> {
    let n = ctx.nodes.unwrap_or(4);
    let mut cl = Cluster::new("throughput")?;
    cl.start_mesh("t", n, Some(Duration::from_millis(30)), false)?;
    let all = cl.live();
    let targets = cl.https(&all);
    let pids = cl.pids(&all);
    // Each client waits for its answer, which comes once the message is durable (a commit, a few ms): the
    // clients must be many, or they and not the mesh set the rate (16 clients held it near 1,700 msg/s).
    let threads = (16 * n).min(128);
    // Warm-up.
    load::fill(&targets, if ctx.quick { 300 } else { 3000 }, None, threads, BODY, 0)?;
    cl.wait_synced(&all, Duration::from_secs(60), Duration::from_millis(20))?;

    // One message per request, as a chat client sends; then in requests of `BATCH` (`POST /messages/batch`,
    // as a bridge or an importer would), where the HTTP exchange no longer costs as much as the message.
    let single = series(ctx, &cl, &all, &targets, &pids, threads, 1, 0)?;
    let batched = series(ctx, &cl, &all, &targets, &pids, threads, BATCH, 2_000_000_000)?;
    for (s, key, how) in [(&single, "", "one message per request"), (&batched, "_batched", "50 messages per request")] {
        sec.goal(
            &format!("sustained_msgs_per_s{key}"),
            &format!("highest sustained rate, {n} nodes, delivered to and acked by all, {how}"),
            s.sustained,
            "msg/s",
            Cmp::AtLeast,
            20_000.0,
        );
        sec.fig(
            &format!("closed_loop_msgs_per_s{key}"),
            &format!("as fast as {threads} HTTP clients go, delivered to and acked by all, {how}"),
            s.closed,
            "msg/s",
        );
        sec.fig(
            &format!("cpu_us_per_msg{key}"),
            &format!("CPU of all {n} nodes per message, at the highest sustained rate, {how}"),
            s.cpu_at_sustained,
            "µs",
        );
        sec.fig(
            &format!("cpu_us_per_msg_saturated{key}"),
            &format!("CPU of all {n} nodes per message, closed loop, {how}"),
            s.closed_cpu_us,
            "µs",
        );
    }
    sec.detail("nodes", json!(n));
    sec.detail("clients", json!(threads));
    sec.detail("body_bytes", json!(BODY));
    sec.detail("batch", json!(BATCH));
    sec.detail("step_secs", json!(if ctx.quick { 2.0 } else { 5.0 }));
    sec.detail("steps", single.steps);
    sec.detail("closed_loop", single.closed_detail);
    sec.detail("steps_batched", batched.steps);
    sec.detail("closed_loop_batched", batched.closed_detail);
    Ok(())
}

/// One series of steps at rising offered rates, then the closed loop, with requests of `batch` messages.
struct Series {
    sustained: f64,
    cpu_at_sustained: f64,
    closed: f64,
    closed_cpu_us: f64,
    steps: serde_json::Value,
    closed_detail: serde_json::Value,
}

#[allow(clippy::too_many_arguments)]
fn series(
    ctx: &Ctx,
    cl: &Cluster,
    all: &[usize],
    targets: &[String],
    pids: &[u32],
    threads: usize,
    batch: usize,
    salt: u64,
) -> Res<Series> {
    let how = if batch == 1 { "one per request".to_string() } else { format!("{batch} per request") };
    let rates: &[f64] = match (ctx.quick, batch) {
        (true, 1) => &[500.0, 2000.0],
        (true, _) => &[2000.0],
        (false, 1) => &[500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 15_000.0, 20_000.0, 30_000.0, 40_000.0],
        (false, _) => &[2000.0, 5000.0, 10_000.0, 15_000.0, 20_000.0, 30_000.0, 40_000.0, 60_000.0],
    };
    let secs = if ctx.quick { 2.0 } else { 5.0 };
    let run_step = |rate: f64| -> Res<Step> {
        let stop = AtomicBool::new(false);
        let meter = super::cluster::CpuMeter::start();
        let cpu0 = cpu_total(pids);
        let base = count_of(&cl.status(all[0])?);
        let m0 = cl.metrics_sum(all)?;
        let sent = load::paced_batched(targets, rate, Duration::from_secs_f64(secs), threads, BODY, batch, &stop);
        let n_sent = sent.sent.len();
        let done = cl.wait_synced(all, Duration::from_secs(120), Duration::from_millis(10))?;
        let cpu = cpu_total(pids) - cpu0;
        let machine = meter.cores(cpu);
        let m1 = cl.metrics_sum(all)?;
        let count = count_of(&cl.status(all[0])?);
        if count < base + n_sent as u64 {
            return Err(format!("{} messages sent but the history grew by {}", n_sent, count - base));
        }
        let step = Step {
            offered: rate,
            sent: n_sent,
            posted_rate: n_sent as f64 / (sent.ended - sent.started).as_secs_f64(),
            achieved: n_sent as f64 / (done - sent.started).as_secs_f64(),
            drain_ms: (done.saturating_duration_since(sent.ended)).as_secs_f64() * 1000.0,
            cpu_us_per_msg: cpu * 1e6 / n_sent.max(1) as f64,
            cpu_cores: cpu / (done - sent.started).as_secs_f64(),
            errors: sent.errors,
            machine,
            per_msg: per_message(&m0, &m1, n_sent),
        };
        ctx.say(&format!(
            "offered {rate:.0} msg/s, {how}: the API took {:.0}/s, delivered to and acked by all at {:.0}/s \
             (drained {:.0} ms after the last send); nodes' CPU {:.0} µs per message, {:.2} cores; machine {}{}",
            step.posted_rate,
            step.achieved,
            step.drain_ms,
            step.cpu_us_per_msg,
            step.cpu_cores,
            step.machine,
            if step.errors > 0 { format!(", {} send errors", step.errors) } else { String::new() }
        ));
        Ok(step)
    };
    // Sustained: the mesh kept up with the offered rate (90 %) and drained within a second.
    let kept_up = |s: &Step| s.achieved >= 0.9 * s.offered && s.drain_ms < 1000.0;
    let mut steps = Vec::new();
    let (mut lo, mut hi) = (None, None);
    for &rate in rates {
        let step = run_step(rate)?;
        let ok = kept_up(&step);
        steps.push(step);
        if ok {
            lo = Some(rate);
        } else {
            hi = Some(rate);
            break;
        }
    }
    // Between the last rate kept up with and the first one not: bisect.
    if let (Some(mut l), Some(mut h)) = (lo, hi) {
        for _ in 0..if ctx.quick { 1 } else { 3 } {
            let mid = ((l + h) / 2.0 / 50.0).round() * 50.0;
            if mid <= l || mid >= h {
                break;
            }
            let step = run_step(mid)?;
            if kept_up(&step) {
                l = mid;
            } else {
                h = mid;
            }
            steps.push(step);
        }
    }
    steps.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    // As fast as the clients can go (closed loop).
    let cpu0 = cpu_total(pids);
    let m0 = cl.metrics_sum(all)?;
    let t0 = Instant::now();
    let (closed_sent, took) = load::fill_batched(
        targets,
        u64::MAX / 2,
        Some(t0 + Duration::from_secs_f64(secs)),
        threads,
        BODY,
        salt + 1_000_000_000,
        batch,
    )?;
    let done = cl.wait_synced(all, Duration::from_secs(120), Duration::from_millis(10))?;
    let closed_cpu = cpu_total(pids) - cpu0;
    let closed_per_msg = per_message(&m0, &cl.metrics_sum(all)?, closed_sent as usize);
    ctx.say(&format!("closed loop, {how}, per message (all nodes): {closed_per_msg}"));
    let closed = closed_sent as f64 / (done - t0).as_secs_f64();
    let closed_cpu_us = closed_cpu * 1e6 / closed_sent.max(1) as f64;
    ctx.say(&format!(
        "closed loop, {threads} clients, {how}: the API took {:.0}/s, delivered to and acked by all at {closed:.0}/s; \
         nodes' CPU {closed_cpu_us:.0} µs per message",
        closed_sent as f64 / took.as_secs_f64(),
    ));
    let sustained = steps.iter().filter(|s| kept_up(s)).map(|s| s.achieved).fold(0.0, f64::max);
    let at = steps.iter().filter(|s| kept_up(s)).max_by(|a, b| a.achieved.total_cmp(&b.achieved));
    Ok(Series {
        sustained,
        cpu_at_sustained: at.map_or(f64::NAN, |s| s.cpu_us_per_msg),
        closed,
        closed_cpu_us,
        steps: json!(steps
            .iter()
            .map(|s| json!({
                "offered": s.offered,
                "sent": s.sent,
                "api_rate": s.posted_rate,
                "achieved": s.achieved,
                "drain_ms": s.drain_ms,
                "cpu_us_per_msg": s.cpu_us_per_msg,
                "cpu_cores": s.cpu_cores,
                "errors": s.errors,
                "per_message": s.per_msg,
                "cores": s.machine,
            }))
            .collect::<Vec<_>>()),
        closed_detail: json!({ "sent": closed_sent, "api_rate": closed_sent as f64 / took.as_secs_f64(),
            "achieved": closed, "cpu_us_per_msg": closed_cpu_us, "per_message": closed_per_msg }),
    })
}
