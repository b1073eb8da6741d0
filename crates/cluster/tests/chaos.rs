//! Real processes in network namespaces (needs root; `.ci/run` runs as root). Without root these tests fail
//! with a clear message rather than pass silently.
//!
//! `CHATMESH_CHAOS_SECS` sets the length of the chaos run (default 90 s); the long run recorded in
//! docs/CHAOS.md used `CHATMESH_CHAOS_SECS=1800`. `CHATMESH_CHAOS_SEED` picks the seed.

use chatmesh_cluster::cluster::Cluster;
use chatmesh_cluster::{run, ChaosOptions};
use chatmesh_harness::{check, StatusView};
use std::collections::BTreeSet;
use std::time::Duration;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn chaos_five_nodes_mixed_nemesis_loses_nothing_and_converges() {
    let dir = tempfile::Builder::new().prefix("chatmesh-chaos-").tempdir().unwrap();
    let opts = ChaosOptions {
        nodes: 5,
        duration: Duration::from_secs(env_u64("CHATMESH_CHAOS_SECS", 90)),
        seed: env_u64("CHATMESH_CHAOS_SEED", 20261121),
        rate: 20.0,
        clients: 4,
        dir: dir.path().to_path_buf(),
        converge_limit: Duration::from_secs(60),
    };
    let summary = run(&opts).unwrap_or_else(|e| panic!("{e}"));
    summary.print();
    if !summary.passed() {
        // Keep the evidence: operations, faults, node output and logs.
        let kept = dir.keep();
        panic!("chaos run failed; operations, faults and logs kept in {}", kept.display());
    }
    assert!(summary.report.ok > 0, "the clients got nothing through");
    assert!(!summary.faults.is_empty(), "no fault was injected");
}

/// A clean split: each side elects its own coordinator and keeps chatting; after the heal the parts merge
/// under one coordinator and every message sent on either side is everywhere.
#[test]
fn a_split_mesh_chats_on_both_sides_and_merges_when_healed() {
    let dir = tempfile::Builder::new().prefix("chatmesh-split-").tempdir().unwrap();
    let c = Cluster::start(4, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let one = |s: &[StatusView], n: usize| -> Result<(), String> {
        let coordinators: BTreeSet<_> = s.iter().map(|x| x.coordinator.as_ref().map(|c| &c.key)).collect();
        if coordinators.len() == 1 && s.iter().all(|x| check::alive(x) == n) {
            Ok(())
        } else {
            Err(format!("{} coordinators", coordinators.len()))
        }
    };
    c.wait_for(Duration::from_secs(30), |s| one(s, 4)).unwrap();
    c.net.split(&[0, 1]).unwrap();
    // Each side notices and ends with its own coordinator.
    c.wait_for(Duration::from_secs(20), |s| {
        let key = |i: usize| s[i].coordinator.as_ref().map(|c| &c.key);
        let (a, b) = (key(0), key(2));
        if a != b && key(1) == a && key(3) == b && a.is_some() && b.is_some() {
            Ok(())
        } else {
            Err("not two parts yet".into())
        }
    })
    .unwrap();
    let mut sent = Vec::new();
    for i in 0..4 {
        sent.push(c.client(i).send(&format!("during the split, from n{}", i + 1)).unwrap().id);
    }
    c.net.heal().unwrap();
    let took = c
        .wait_for(Duration::from_secs(30), |s| {
            one(s, 4)?;
            check::same_digest(s)
        })
        .unwrap();
    eprintln!("merged and converged {took:?} after the heal");
    for i in 0..4 {
        let held: std::collections::HashSet<String> = c.history(i).unwrap().into_iter().map(|m| m.id).collect();
        for id in &sent {
            assert!(held.contains(id), "n{} lacks {id}", i + 1);
        }
    }
}
