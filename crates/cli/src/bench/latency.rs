//! `latency`: from `POST /messages` (the bench's clock before the request) to the message's `message` event
//! on every other node, and to the sender's `delivery` event with every member acknowledging, at 10 and
//! 1,000 messages per second across the mesh, for meshes of 4 and 16 nodes.

use super::cluster::{Cluster, Kind, Res};
use super::load;
use super::stats::{dist, max, ms, percentile, Cmp, Section};
use super::Ctx;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Section {
    let mut sec = Section::default();
    let sizes = match ctx.nodes {
        Some(n) => vec![n],
        None if ctx.quick => vec![4],
        None => vec![4, 16],
    };
    let mut runs = Vec::new();
    for n in sizes {
        if let Err(e) = mesh(ctx, n, &mut sec, &mut runs) {
            sec.errors.push(format!("{n} nodes: {e}"));
        }
    }
    sec.detail("runs", json!(runs));
    sec
}

fn mesh(ctx: &Ctx, n: usize, sec: &mut Section, runs: &mut Vec<serde_json::Value>) -> Res<()> {
    let mut cl = Cluster::new(&format!("latency{n}"))?;
    cl.start_mesh("l", n, Some(Duration::from_millis(30)), false)?;
    cl.tap_all()?;
    let all = cl.live();
    let targets = cl.https(&all);
    for rate in [10.0, 1000.0] {
        let secs = match (ctx.quick, rate < 100.0) {
            (true, true) => 3.0,
            (true, false) => 2.0,
            (false, true) => 20.0,
            (false, false) => 10.0,
        };
        let threads = if rate < 100.0 { 2 } else { (2 * n).min(32) };
        // Warm-up at the same rate (connections, caches, the store's pages), not counted.
        let warm = if ctx.quick { 0.5 } else { 2.0 };
        let stop = AtomicBool::new(false);
        load::paced(&targets, rate, Duration::from_secs_f64(warm), threads, 200, &stop);
        cl.wait_synced(&all, Duration::from_secs(60), Duration::from_millis(20))?;
        ctx.sleep(Duration::from_millis(200))?;
        cl.drain();

        // Sender threads on a schedule; this thread collects the events meanwhile.
        let mut c = Collector::default();
        let meter = super::cluster::CpuMeter::start();
        let pids = cl.pids(&all);
        let cpu0 = super::cluster::cpu_total(&pids);
        // Metrics are a side figure: a node that does not answer them leaves them out, not the step.
        let m0 = cl.metrics_sum(&all).unwrap_or_default();
        let sent = std::thread::scope(|s| {
            let h = s.spawn(|| load::paced(&targets, rate, Duration::from_secs_f64(secs), threads, 200, &stop));
            while !h.is_finished() {
                if let Some(ev) = cl.next_event(Instant::now() + Duration::from_millis(50)) {
                    c.add(ev);
                }
            }
            h.join().map_err(|_| "a sender thread panicked".to_string())
        })?;
        // The stragglers, until everything is accounted for (or 5 s).
        let until = Instant::now() + Duration::from_secs(5);
        while c.deliveries < sent.sent.len() * (n - 1) || c.acked.len() < sent.sent.len() {
            match cl.next_event(until) {
                Some(ev) => c.add(ev),
                None => break,
            }
        }
        let Collector { delivered, acked, lagged, .. } = c;
        let cpu = super::cluster::cpu_total(&pids) - cpu0;
        let cores = meter.cores(cpu);
        let per_msg = super::cluster::per_message(&m0, &cl.metrics_sum(&all).unwrap_or_default(), sent.sent.len());
        let (mut to_all, mut to_all_acked, mut stored, mut each) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut missing, mut unacked) = (0, 0);
        for m in &sent.sent {
            let sender = all[m.target];
            stored.push(ms(m.stored_at - m.at));
            let got: Vec<Instant> = delivered
                .get(&m.id)
                .map(|v| v.iter().filter(|(node, _)| *node != sender).map(|(_, t)| *t).collect())
                .unwrap_or_default();
            each.extend(got.iter().map(|t| ms(t.saturating_duration_since(m.at))));
            if got.len() + 1 >= n {
                to_all.push(ms(got.iter().max().copied().unwrap_or(m.at).saturating_duration_since(m.at)));
            } else {
                missing += 1;
            }
            let seq: u64 = m.id.rsplit('/').next().and_then(|s| s.parse().ok()).unwrap_or(0);
            match acked.get(&(sender, seq)) {
                Some(t) => to_all_acked.push(ms(t.saturating_duration_since(m.at))),
                None => unacked += 1,
            }
        }
        let achieved = sent.sent.len() as f64 / secs;
        ctx.say(&format!(
            "{n} nodes at {rate} msg/s ({achieved:.0} sent/s): delivered to all p50 {:.2} ms p99 {:.2} ms max {:.2} ms; \
             acked by all p50 {:.2} ms p99 {:.2} ms; stored p50 {:.2} ms{}",
            percentile(&to_all, 50.0),
            percentile(&to_all, 99.0),
            max(&to_all),
            percentile(&to_all_acked, 50.0),
            percentile(&to_all_acked, 99.0),
            percentile(&stored, 50.0),
            if missing + unacked + lagged > 0 {
                format!(" ({missing} not seen everywhere, {unacked} not seen acked, {lagged} events skipped)")
            } else {
                String::new()
            }
        ));
        let tag = format!("n{n}_r{}", rate as u64);
        let desc = format!("{n} nodes, {} msg/s", rate as u64);
        let headline = n == 4 && rate >= 1000.0;
        sec.fig(
            &format!("{tag}_delivered_p50_ms"),
            &format!("{desc}: send → delivered on all others, p50"),
            percentile(&to_all, 50.0),
            "ms",
        );
        if headline {
            sec.goal(
                &format!("{tag}_delivered_p99_ms"),
                &format!("{desc}: send → delivered on all others, p99"),
                percentile(&to_all, 99.0),
                "ms",
                Cmp::AtMost,
                2.0,
            );
        } else {
            sec.fig(
                &format!("{tag}_delivered_p99_ms"),
                &format!("{desc}: send → delivered on all others, p99"),
                percentile(&to_all, 99.0),
                "ms",
            );
        }
        sec.fig(
            &format!("{tag}_delivered_max_ms"),
            &format!("{desc}: send → delivered on all others, max"),
            max(&to_all),
            "ms",
        );
        sec.fig(
            &format!("{tag}_acked_p50_ms"),
            &format!("{desc}: send → acknowledged by all, p50"),
            percentile(&to_all_acked, 50.0),
            "ms",
        );
        if headline {
            sec.goal(
                &format!("{tag}_acked_p99_ms"),
                &format!("{desc}: send → acknowledged by all, p99"),
                percentile(&to_all_acked, 99.0),
                "ms",
                Cmp::AtMost,
                5.0,
            );
        } else {
            sec.fig(
                &format!("{tag}_acked_p99_ms"),
                &format!("{desc}: send → acknowledged by all, p99"),
                percentile(&to_all_acked, 99.0),
                "ms",
            );
        }
        runs.push(json!({
            "nodes": n,
            "rate": rate,
            "secs": secs,
            "sent": sent.sent.len(),
            "send_errors": sent.errors,
            "achieved_rate": achieved,
            "delivered_to_all_ms": dist(&to_all),
            "delivered_each_ms": dist(&each),
            "acked_by_all_ms": dist(&to_all_acked),
            "stored_ms": dist(&stored),
            "not_delivered_everywhere": missing,
            "not_acked": unacked,
            "events_skipped": lagged,
            "cores": cores,
            // The nodes' CPU and work per message sent, all nodes together (the stragglers' time included).
            "cpu_us_per_msg": cpu * 1e6 / sent.sent.len().max(1) as f64,
            "per_message": per_msg,
        }));
        if sent.errors > 0 {
            sec.errors.push(format!("{desc}: {} sends failed ({:?})", sent.errors, sent.first_error));
        }
    }
    Ok(())
}

/// Arrival times of the events a latency run looks at.
#[derive(Default)]
struct Collector {
    /// Message ID -> (node, arrival) on nodes other than its author.
    delivered: HashMap<String, Vec<(usize, Instant)>>,
    deliveries: usize,
    /// (author node, seq) -> arrival of its `delivery` event with every member acknowledging.
    acked: HashMap<(usize, u64), Instant>,
    lagged: u64,
}

impl Collector {
    fn add(&mut self, ev: super::cluster::Ev) {
        match ev.kind {
            Kind::Message { id, own: false } => {
                self.delivered.entry(id).or_default().push((ev.node, ev.at));
                self.deliveries += 1;
            }
            Kind::Delivery { seq, acked, members } if members > 0 && acked >= members => {
                self.acked.entry((ev.node, seq)).or_insert(ev.at);
            }
            Kind::Lagged(k) => self.lagged += k,
            _ => {}
        }
    }
}
