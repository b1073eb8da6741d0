//! `memory`: peak resident memory (VmHWM from /proc/<pid>/status) of idle nodes, and of nodes holding a
//! large history: the two nodes that wrote it (peak during the writing), one of them restarted from its
//! store, and a newcomer that received all of it.

use super::cluster::{caught_up, count_of, status_kib, Cluster, Res};
use super::load;
use super::stats::{max, median, Cmp, Section};
use super::Ctx;
use serde_json::json;
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Section {
    let mut sec = Section::default();
    if let Err(e) = idle(ctx, &mut sec) {
        sec.errors.push(format!("idle: {e}"));
    }
    if let Err(e) = large(ctx, &mut sec) {
        sec.errors.push(format!("large history: {e}"));
    }
    sec
}

fn mib(pid: u32, field: &str) -> f64 {
    status_kib(pid, field).map_or(f64::NAN, |k| k as f64 / 1024.0)
}

fn idle(ctx: &Ctx, sec: &mut Section) -> Res<()> {
    let n = ctx.nodes.unwrap_or(4);
    let mut cl = Cluster::new("memidle")?;
    cl.start_mesh("m", n, Some(Duration::from_millis(30)), false)?;
    let secs = if ctx.quick { 3 } else { 20 };
    ctx.sleep(Duration::from_secs(secs))?;
    let pids = cl.pids(&cl.live());
    let hwm: Vec<f64> = pids.iter().map(|p| mib(*p, "VmHWM")).collect();
    let rss: Vec<f64> = pids.iter().map(|p| mib(*p, "VmRSS")).collect();
    ctx.say(&format!(
        "{n} idle nodes after {secs} s: peak RSS median {:.1} MiB, max {:.1} MiB; RSS now median {:.1} MiB",
        median(&hwm),
        max(&hwm),
        median(&rss)
    ));
    sec.goal(
        "idle_peak_rss_mib",
        &format!("peak RSS per node, idle mesh of {n} (worst node)"),
        max(&hwm),
        "MiB",
        Cmp::AtMost,
        20.0,
    );
    sec.fig("idle_rss_mib", &format!("RSS per node, idle mesh of {n} (median)"), median(&rss), "MiB");
    sec.detail("idle", json!({ "nodes": n, "secs": secs, "peak_rss_mib": hwm, "rss_mib": rss }));
    Ok(())
}

fn large(ctx: &Ctx, sec: &mut Section) -> Res<()> {
    let total = ctx.history.unwrap_or(if ctx.quick { 10_000 } else { 1_000_000 });
    let mut cl = Cluster::new("memlarge")?;
    cl.start_mesh("m", 2, Some(Duration::from_millis(30)), false)?;
    let pair = cl.live();
    let targets = cl.https(&pair);
    let t = Instant::now();
    // In chunks, to report progress.
    let chunk = (total / 10).max(1000);
    let mut sent = 0;
    while sent < total {
        let (k, _) = load::fill(&targets, chunk.min(total - sent), None, 16, 200, sent)?;
        sent += k;
        if total >= 100_000 {
            ctx.say(&format!(
                "{sent} of {total} messages written ({:.0} msg/s)",
                sent as f64 / t.elapsed().as_secs_f64()
            ));
        }
    }
    cl.wait_synced(&pair, Duration::from_secs(600), Duration::from_millis(200))?;
    let wrote = t.elapsed().as_secs_f64();
    let count = count_of(&cl.status(pair[0])?);
    let pids = cl.pids(&pair);
    let writers_peak: Vec<f64> = pids.iter().map(|p| mib(*p, "VmHWM")).collect();
    let writers_rss: Vec<f64> = pids.iter().map(|p| mib(*p, "VmRSS")).collect();
    ctx.say(&format!(
        "{count} messages held by 2 nodes ({wrote:.0} s to write); peak RSS while writing {:.1} MiB, RSS now {:.1} MiB",
        max(&writers_peak),
        max(&writers_rss)
    ));
    let du = dir_bytes(&cl.nodes[pair[0]].data_dir) as f64 / 1024.0 / 1024.0;

    // One of them restarted from its store, then used: some chat, a status, an idle while.
    let name = cl.nodes[pair[1]].name.clone();
    cl.kill(pair[1]);
    cl.spawn(&name, &[], false)?;
    cl.ready(pair[1])?;
    cl.wait("the restarted node is back", &pair, Duration::from_secs(60), Duration::from_millis(50), |s| {
        super::cluster::one_mesh(s, 2)
    })?;
    let targets = cl.https(&pair);
    load::fill(&targets, 1000, None, 4, 200, total)?;
    cl.wait_synced(&pair, Duration::from_secs(60), Duration::from_millis(50))?;
    ctx.sleep(Duration::from_secs(if ctx.quick { 1 } else { 5 }))?;
    let restarted_peak = mib(cl.nodes[pair[1]].pid, "VmHWM");

    // A newcomer receives all of it.
    let t0 = Instant::now();
    let i = cl.start("newcomer")?;
    let done = cl.wait(
        "the newcomer holds everything",
        &[i, pair[0]],
        Duration::from_secs(1800),
        Duration::from_millis(50),
        caught_up,
    )?;
    let newcomer_peak = mib(cl.nodes[i].pid, "VmHWM");
    let sync_s = (done - t0).as_secs_f64();
    ctx.say(&format!(
        "restarted holder: peak RSS {restarted_peak:.1} MiB; newcomer received {count} messages in {sync_s:.1} s, peak RSS {newcomer_peak:.1} MiB; store {du:.0} MiB"
    ));
    let label = super::stats::fmt_value(total as f64, "");
    sec.goal(
        "large_restarted_peak_rss_mib",
        &format!("peak RSS, node restarted holding {label} messages"),
        restarted_peak,
        "MiB",
        Cmp::AtMost,
        100.0,
    );
    sec.goal(
        "large_newcomer_peak_rss_mib",
        &format!("peak RSS, newcomer receiving {label} messages"),
        newcomer_peak,
        "MiB",
        Cmp::AtMost,
        100.0,
    );
    sec.goal(
        "large_writer_peak_rss_mib",
        &format!("peak RSS, node writing {label} messages at full speed"),
        max(&writers_peak),
        "MiB",
        Cmp::AtMost,
        100.0,
    );
    sec.fig("large_newcomer_sync_s", &format!("newcomer start → holds all {label} messages"), sync_s, "s");
    sec.detail(
        "large",
        json!({
            "messages": total,
            "history_count": count,
            "write_secs": wrote,
            "write_rate": total as f64 / wrote,
            "writers_peak_rss_mib": writers_peak,
            "writers_rss_mib": writers_rss,
            "restarted_peak_rss_mib": restarted_peak,
            "newcomer_peak_rss_mib": newcomer_peak,
            "newcomer_sync_secs": sync_s,
            "store_mib": du,
        }),
    );
    Ok(())
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
