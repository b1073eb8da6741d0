//! `converge`: a partition, emulated on loopback, during which both sides write 10,000 messages; then the
//! sides meet, and the bench times until all four nodes show equal history digests.
//!
//! With `--netns` the partition is real: four nodes in one mesh, each in its own network namespace, and the
//! bridge is split into two (`ip link`); the heal puts every port back on one bridge.
//!
//! On loopback, which cannot be cut, the two sides are two pairs of nodes of the same mesh name and network key on
//! two different multicast groups: they cannot hear each other, and each founds its own mesh (as the sides of
//! a real partition do, each under its own coordinator). The heal is both coordinators learning each
//! other's address at the same moment (`/connect` on their stdin): from then on each one's beacons reach
//! the other, as they would across a healed network, and the two parts merge and sync.

use super::cluster::{group_port, one_mesh, same_history, Cluster, Res};
use super::load;
use super::stats::{dist, max, ms, percentile, Cmp, Section};
use super::Ctx;
use chatmesh_harness::StatusView;
use serde_json::json;
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Section {
    let mut sec = Section::default();
    let runs = ctx.runs.map_or(if ctx.quick { 1 } else { 3 }, |r| r.min(10));
    let per_side: u64 = if ctx.quick { 1_000 } else { 10_000 };
    let (mut merged, mut converged) = (Vec::new(), Vec::new());
    for r in 0..runs {
        match once(ctx, r, per_side) {
            Ok((m, c)) => {
                merged.push(m);
                converged.push(c);
            }
            Err(e) => {
                sec.errors.push(format!("run {r}: {e}"));
                break;
            }
        }
    }
    let label =
        format!("{} divergent messages: heal → all digests equal", super::stats::fmt_value(2.0 * per_side as f64, ""));
    sec.goal("converge_p50_ms", &format!("{label}, p50"), percentile(&converged, 50.0), "ms", Cmp::AtMost, 1000.0);
    sec.fig("converge_max_ms", &format!("{label}, max"), max(&converged), "ms");
    sec.fig("merge_p50_ms", "heal → one mesh of 4 (views merged), p50", percentile(&merged, 50.0), "ms");
    sec.detail("per_side", json!(per_side));
    sec.detail("converge_ms", dist(&converged));
    sec.detail("converge_samples_ms", json!(converged));
    sec.detail("merge_ms", dist(&merged));
    sec.detail(
        "partition",
        json!(if super::cluster::hosts::enabled() {
            "real: one mesh of 4 in network namespaces, the bridge split 2-2 with ip link, heal = one bridge again"
        } else {
            "emulated on loopback: two sides of 2 nodes with the same mesh name and key on different multicast groups; heal = /connect between the coordinators"
        }),
    );
    sec
}

fn once(ctx: &Ctx, r: usize, per_side: u64) -> Res<(f64, f64)> {
    if super::cluster::hosts::enabled() {
        return once_split(ctx, r, per_side);
    }
    let mesh = format!("bench-{}-converge{r}", std::process::id());
    let ga = format!("239.255.77.77:{}", group_port("convA"));
    let mut gb = format!("239.255.77.77:{}", group_port("convB"));
    if gb == ga {
        gb = format!("239.255.77.77:{}", group_port("convB2"));
    }
    let mut a = Cluster::with("convA", &mesh, &ga)?;
    let mut b = Cluster::with("convB", &mesh, &gb)?;
    a.start_mesh("a", 2, Some(Duration::from_millis(30)), true)?;
    b.start_mesh("b", 2, Some(Duration::from_millis(30)), true)?;
    let (aa, bb) = (a.live(), b.live());
    let t = Instant::now();
    let (na, nb) = fill_both(&a.https(&aa), &b.https(&bb), per_side)?;
    a.wait_synced(&aa, Duration::from_secs(120), Duration::from_millis(50))?;
    b.wait_synced(&bb, Duration::from_secs(120), Duration::from_millis(50))?;
    ctx.say(&format!("both sides wrote {na} + {nb} messages in {:.1} s, apart", t.elapsed().as_secs_f64()));
    let coordinator = |cl: &Cluster, nodes: &[usize]| -> Res<usize> {
        let st = cl.statuses(nodes)?;
        st.iter().position(|s| s.role == "coordinator").map(|k| nodes[k]).ok_or_else(|| "no coordinator".to_string())
    };
    let (ca, cb) = (coordinator(&a, &aa)?, coordinator(&b, &bb)?);
    let (addr_a, addr_b) = (a.nodes[ca].addr.clone(), b.nodes[cb].addr.clone());
    ctx.sleep(Duration::from_millis(200))?;
    let t0 = Instant::now();
    a.command(ca, &format!("/connect {addr_b}"))?;
    b.command(cb, &format!("/connect {addr_a}"))?;
    wait_healed(ctx, t0, na + nb, || {
        let mut st = a.statuses(&aa)?;
        st.extend(b.statuses(&bb)?);
        Ok(st)
    })
}

/// `--netns`: a real 2-2 split of one mesh of 4.
fn once_split(ctx: &Ctx, r: usize, per_side: u64) -> Res<(f64, f64)> {
    use super::cluster::hosts;
    let mut cl = Cluster::new(&format!("converge{r}"))?;
    cl.start_mesh("c", 4, Some(Duration::from_millis(30)), false)?;
    let all = cl.live();
    let (aa, bb) = (all[..2].to_vec(), all[2..].to_vec());
    let side_b: Vec<usize> = bb.iter().filter_map(|i| cl.nodes[*i].host).collect();
    hosts::split(&side_b)?;
    let parted = cl
        .wait("two meshes of 2", &aa, Duration::from_secs(30), Duration::from_millis(50), |s| one_mesh(s, 2))
        .and_then(|_| {
            cl.wait("two meshes of 2", &bb, Duration::from_secs(30), Duration::from_millis(50), |s| one_mesh(s, 2))
        });
    if let Err(e) = parted {
        let _ = hosts::heal();
        return Err(e);
    }
    let t = Instant::now();
    let written = fill_both(&cl.https(&aa), &cl.https(&bb), per_side);
    let synced = written.and_then(|w| {
        cl.wait_synced(&aa, Duration::from_secs(120), Duration::from_millis(50))?;
        cl.wait_synced(&bb, Duration::from_secs(120), Duration::from_millis(50))?;
        Ok(w)
    });
    let (na, nb) = match synced {
        Ok(w) => w,
        Err(e) => {
            let _ = hosts::heal();
            return Err(e);
        }
    };
    ctx.say(&format!("both sides of the split wrote {na} + {nb} messages in {:.1} s", t.elapsed().as_secs_f64()));
    ctx.sleep(Duration::from_millis(200))?;
    // From the moment the network is whole again (every port moves in one `ip -batch`).
    hosts::heal()?;
    let t0 = Instant::now();
    wait_healed(ctx, t0, na + nb, || cl.statuses(&all))
}

/// Both sides write `per_side` messages at once; returns how many each wrote.
fn fill_both(a: &[String], b: &[String], per_side: u64) -> Res<(u64, u64)> {
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| load::fill(a, per_side, None, 8, 200, 0));
        let rb = load::fill(b, per_side, None, 8, 200, 0);
        (ha.join().unwrap_or_else(|_| Err("a sender panicked".into())), rb)
    });
    Ok((ra?.0, rb?.0))
}

/// From the heal at `t0`, polls `statuses` until one mesh of 4 (noted) and equal digests over at least
/// `total` messages; returns both times in ms.
fn wait_healed(ctx: &Ctx, t0: Instant, total: u64, statuses: impl Fn() -> Res<Vec<StatusView>>) -> Res<(f64, f64)> {
    let mut merged_at = None;
    let limit = t0 + Duration::from_secs(120);
    loop {
        if super::interrupted() {
            return Err("interrupted".into());
        }
        let st = statuses()?;
        let now = Instant::now();
        if merged_at.is_none() && one_mesh(&st, 4).is_ok() {
            merged_at = Some(now);
        }
        if same_history(&st).is_ok() && st.iter().all(|s| s.history.count >= total) {
            let conv = ms(now - t0);
            let merged = ms(merged_at.unwrap_or(now) - t0);
            ctx.say(&format!("healed: one mesh after {merged:.0} ms, all digests equal after {conv:.0} ms"));
            return Ok((merged, conv));
        }
        if now > limit {
            return Err(format!("digests still differ 120 s after the heal (one mesh: {})", merged_at.is_some()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
