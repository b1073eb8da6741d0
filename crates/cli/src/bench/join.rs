//! `join`: from process start to an assigned ID (the node's `joined` line on stdout, stamped on arrival),
//! and from process start to holding a mesh's whole history of 10,000 and 100,000 messages (the newcomer's
//! `/status` shows the same count and digest as a member's: stored, so durable).

use super::cluster::{caught_up, count_of, Cluster, Res};
use super::load;
use super::stats::{dist, max, ms, percentile, Cmp, Section};
use super::Ctx;
use serde_json::json;
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Section {
    let mut sec = Section::default();
    if let Err(e) = measure(ctx, &mut sec) {
        sec.errors.push(e);
    }
    sec
}

fn measure(ctx: &Ctx, sec: &mut Section) -> Res<()> {
    let n = ctx.nodes.unwrap_or(4);
    let runs = ctx.runs(20, 3);
    let mut cl = Cluster::new("join")?;
    cl.start_mesh("j", n, Some(Duration::from_millis(30)), false)?;
    let members: Vec<usize> = cl.live();

    let mut ids = Vec::new();
    for r in 0..=runs {
        let i = cl.spawn(&format!("new{r}"), &[], false)?;
        let (at, _) = cl.wait_id(i, Duration::from_secs(10))?;
        let took = ms(at - cl.nodes[i].spawned_at);
        cl.ready(i)?;
        // Leave gracefully, so that the mesh stays as it was.
        cl.terminate(i, Duration::from_secs(3));
        let _ = std::fs::remove_dir_all(&cl.nodes[i].data_dir);
        // The first start warms up (the binary in the page cache) and is not counted.
        if r > 0 {
            ids.push(took);
        }
        ctx.sleep(Duration::from_millis(100))?;
    }
    ctx.say(&format!(
        "start to ID x{}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ids.len(),
        percentile(&ids, 50.0),
        percentile(&ids, 99.0),
        max(&ids)
    ));
    sec.goal("id_p50_ms", "process start → ID assigned, p50", percentile(&ids, 50.0), "ms", Cmp::AtMost, 300.0);
    sec.goal("id_p99_ms", "process start → ID assigned, p99", percentile(&ids, 99.0), "ms", Cmp::AtMost, 300.0);
    sec.detail("nodes", json!(n));
    sec.detail("id_ms", dist(&ids));

    let sizes: [u64; 2] = if ctx.quick { [1_000, 3_000] } else { [10_000, 100_000] };
    let sync_runs = ctx.runs.map_or(if ctx.quick { 1 } else { 3 }, |r| r.min(5));
    let targets = cl.https(&members);
    let mut have = 0;
    for size in sizes {
        let t = Instant::now();
        let (sent, took) = load::fill(&targets, size - have, None, 4 * n, 200, have)?;
        have += sent;
        cl.wait_synced(&members, Duration::from_secs(300), Duration::from_millis(100))?;
        let count = count_of(&cl.status(members[0])?);
        ctx.say(&format!(
            "history of {have} messages ({count} with membership events) written in {:.1} s ({:.0} msg/s), all acknowledged after {:.1} s",
            took.as_secs_f64(),
            sent as f64 / took.as_secs_f64(),
            t.elapsed().as_secs_f64()
        ));
        let mut syncs = Vec::new();
        for r in 0..sync_runs {
            let i = cl.spawn(&format!("h{size}-{r}"), &[], false)?;
            let t0 = cl.nodes[i].spawned_at;
            cl.ready(i)?;
            let done = cl.wait(
                "the newcomer holds the whole history",
                &[i, members[0]],
                Duration::from_secs(600),
                Duration::from_millis(5),
                caught_up,
            )?;
            syncs.push(ms(done - t0));
            cl.terminate(i, Duration::from_secs(3));
            let _ = std::fs::remove_dir_all(&cl.nodes[i].data_dir);
            ctx.say(&format!("newcomer holds all {count} messages {:.0} ms after its start", ms(done - t0)));
            ctx.sleep(Duration::from_millis(200))?;
        }
        let key = if size == sizes[1] { "sync_large" } else { "sync_small" };
        let label =
            format!("start → history of {} messages held and stored, p50", super::stats::fmt_value(size as f64, ""));
        if size == 100_000 || (ctx.quick && size == sizes[1]) {
            sec.goal(&format!("{key}_p50_ms"), &label, percentile(&syncs, 50.0), "ms", Cmp::AtMost, 2000.0);
        } else {
            sec.fig(&format!("{key}_p50_ms"), &label, percentile(&syncs, 50.0), "ms");
        }
        sec.fig(&format!("{key}_max_ms"), &label.replace("p50", "max"), max(&syncs), "ms");
        sec.detail(key, json!({ "messages": size, "history_count": count, "runs": syncs.len(), "ms": dist(&syncs) }));
    }
    Ok(())
}
