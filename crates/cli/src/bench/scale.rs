//! `scale`: meshes of 32, 48, 64... nodes (8 with --quick), started one after the other (each once the one
//! before has its ID, as people join a chat; a start of all at once is a join storm, another question), each
//! held idle for a while: stable means it
//! formed one mesh, no election started, nobody was declared failed, and at the end every node still
//! shows one mesh of all. Per node: link traffic per second (heartbeats, acknowledgements, pings: the TCP
//! payload bytes of its link connections, from the kernel's tcp_info through `ss`; the coordinator's
//! multicast beacons, 4 a second, are not in it), CPU, and memory (VmRSS from /proc/<pid>/status).

use super::cluster::{cpu_secs, metric_delta, one_mesh, status_kib, tcp_bytes, Cluster, Kind, Res};
use super::stats::{max, median, Cmp, Section};
use super::Ctx;
use serde_json::json;
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Section {
    let mut sec = Section::default();
    let (first, step, last, hold) = if ctx.quick {
        let n = ctx.nodes.unwrap_or(8);
        (n, 16, ctx.scale_max.unwrap_or(n), ctx.scale_secs.unwrap_or(10))
    } else {
        (ctx.nodes.unwrap_or(32), 16, ctx.scale_max.unwrap_or(128), ctx.scale_secs.unwrap_or(60))
    };
    let mut sizes = Vec::new();
    let mut largest = 0;
    let mut best: Option<serde_json::Value> = None;
    let mut n = first;
    while n <= last && !super::interrupted() {
        match size(ctx, n, hold) {
            Ok(r) => {
                let stable = r["stable"].as_bool().unwrap_or(false);
                sizes.push(r.clone());
                if stable {
                    largest = n;
                    best = Some(r);
                } else {
                    break;
                }
            }
            Err(e) => {
                ctx.say(&format!("{n} nodes: {e}"));
                sizes.push(json!({ "nodes": n, "stable": false, "error": e }));
                break;
            }
        }
        n += step;
    }
    if !ctx.quick && n > last && largest == last {
        sec.notes.push(format!("stopped at the largest size tried ({last}, --scale-max): the limit is higher"));
    }
    sec.goal(
        "largest_stable",
        &format!("largest mesh stable for {hold} s"),
        largest as f64,
        "nodes",
        Cmp::AtLeast,
        64.0,
    );
    let b = best.unwrap_or_default();
    let f = |k: &str| b[k].as_f64().unwrap_or(f64::NAN);
    sec.fig(
        "idle_out_bytes_per_s",
        &format!("idle link traffic per node at {largest} nodes, sent (median, TCP payload)"),
        f("write_bytes_per_s_median"),
        "B/s",
    );
    sec.fig(
        "idle_in_bytes_per_s",
        &format!("idle link traffic per node at {largest} nodes, received (median)"),
        f("read_bytes_per_s_median"),
        "B/s",
    );
    sec.fig(
        "coordinator_out_bytes_per_s",
        &format!("idle link traffic of the coordinator at {largest} nodes, sent"),
        f("coordinator_write_bytes_per_s"),
        "B/s",
    );
    sec.fig("rss_mib", &format!("RSS per node at {largest} nodes (median)"), f("rss_mib_median"), "MiB");
    sec.fig("cpu_percent", &format!("CPU per node at {largest} nodes, idle (median)"), f("cpu_percent_median"), "%");
    sec.detail("hold_secs", json!(hold));
    sec.detail("sizes", json!(sizes));
    sec
}

fn size(ctx: &Ctx, n: usize, hold: u64) -> Res<serde_json::Value> {
    let mut cl = Cluster::new(&format!("scale{n}"))?;
    let formed = cl.start_mesh("s", n, None, false)?;
    ctx.say(&format!("{n} nodes formed one mesh in {:.1} s; holding it for {hold} s", formed.as_secs_f64()));
    cl.tap_all()?;
    let all = cl.live();
    let pids = cl.pids(&all);
    ctx.sleep(Duration::from_secs(2))?;
    cl.drain();
    let api_ports: Vec<u16> =
        all.iter().filter_map(|i| cl.nodes[*i].http.rsplit(':').next().and_then(|p| p.parse().ok())).collect();
    let namespaces: Vec<String> =
        all.iter().filter_map(|i| cl.nodes[*i].host.and_then(super::cluster::hosts::namespace)).collect();
    // Without `ss` (iproute2) the traffic figures are missing, and the rest still counts.
    let io0 = tcp_bytes(&pids, &namespaces, &api_ports).unwrap_or_default();
    let m0: Vec<_> = all.iter().map(|i| cl.metrics(*i).unwrap_or_default()).collect();
    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_secs(*p).unwrap_or(0.0)).collect();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(hold);
    let (mut elections, mut failed, mut coordinators) = (0u64, 0u64, 0u64);
    while Instant::now() < end {
        if super::interrupted() {
            return Err("interrupted".into());
        }
        let Some(ev) = cl.next_event(end) else { continue };
        match ev.kind {
            Kind::Election { .. } => elections += 1,
            Kind::MemberFailed { .. } => failed += 1,
            Kind::Coordinator { .. } => coordinators += 1,
            _ => {}
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let io1 = tcp_bytes(&pids, &namespaces, &api_ports).unwrap_or_default();
    let m1: Vec<_> = all.iter().map(|i| cl.metrics(*i).unwrap_or_default()).collect();
    let rate = |k: &str| -> Vec<f64> { m0.iter().zip(&m1).map(|(a, b)| metric_delta(a, b, k) / secs).collect() };
    let (frame_bytes_out, frames_out, datagrams_out) =
        (rate("chatmesh_bytes_out_total"), rate("chatmesh_frames_out_total"), rate("chatmesh_datagrams_out_total"));
    let missed: f64 = rate("chatmesh_heartbeats_missed_total").iter().sum::<f64>() * secs;
    let cpu1: Vec<f64> = pids.iter().map(|p| cpu_secs(*p).unwrap_or(0.0)).collect();
    let delta = |p: &u32, k: usize| {
        let (Some(a), Some(b)) = (io0.get(p), io1.get(p)) else { return f64::NAN };
        let (a, b) = if k == 0 { (a.0, b.0) } else { (a.1, b.1) };
        b.saturating_sub(a) as f64 / secs
    };
    let write: Vec<f64> = pids.iter().map(|p| delta(p, 0)).collect();
    let read: Vec<f64> = pids.iter().map(|p| delta(p, 1)).collect();
    // The coordinator sends every heartbeat: its traffic is the largest.
    let coordinator_out = max(&write);
    let cpu: Vec<f64> = cpu0.iter().zip(&cpu1).map(|(a, b)| (b - a) / secs * 100.0).collect();
    let rss: Vec<f64> = pids.iter().filter_map(|p| status_kib(*p, "VmRSS")).map(|k| k as f64 / 1024.0).collect();
    let end_state = cl.statuses(&all).and_then(|s| one_mesh(&s, n));
    let stable = elections == 0 && failed == 0 && end_state.is_ok();
    ctx.say(&format!(
        "{n} nodes: {}; {elections} elections, {failed} declared failed; per node {:.0} B/s out, {:.0} B/s in, RSS {:.1} MiB, CPU {:.1}%",
        if stable { "stable" } else { "NOT stable" },
        median(&write),
        median(&read),
        median(&rss),
        median(&cpu)
    ));
    Ok(json!({
        "nodes": n,
        "formed_s": formed.as_secs_f64(),
        "held_s": secs,
        "stable": stable,
        "election_started_events": elections,
        "member_failed_events": failed,
        "coordinator_events": coordinators,
        "one_mesh_at_end": end_state.is_ok(),
        "end_state": end_state.err(),
        "write_bytes_per_s_median": median(&write),
        "write_bytes_per_s_max": max(&write),
        "read_bytes_per_s_median": median(&read),
        "read_bytes_per_s_max": max(&read),
        "coordinator_write_bytes_per_s": coordinator_out,
        "frame_bytes_out_per_s_median": median(&frame_bytes_out),
        "frame_bytes_out_per_s_max": max(&frame_bytes_out),
        "frames_out_per_s_median": median(&frames_out),
        "frames_out_per_s_max": max(&frames_out),
        "datagrams_out_per_s_total": datagrams_out.iter().sum::<f64>(),
        "heartbeats_missed": missed,
        "rss_mib_median": median(&rss),
        "rss_mib_max": max(&rss),
        "cpu_percent_median": median(&cpu),
        "cpu_percent_total": cpu.iter().sum::<f64>(),
    }))
}
