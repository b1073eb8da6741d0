//! Real `chatmesh` processes on loopback: multicast discovery, failover after SIGKILL, restart with the
//! same ID, convergence, the network key, `--peer` where multicast does not reach, and the demo.

mod common;

use chatmesh_harness::check::coordinator_id;
use chatmesh_harness::MessageView;
use common::*;
use std::collections::HashSet;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn ids_of(history: &[MessageView]) -> HashSet<String> {
    history.iter().map(|m| m.id.clone()).collect()
}

#[test]
fn four_nodes_form_one_mesh_elect_after_sigkill_and_agree_on_history() {
    let mut mesh = Mesh::new("four");
    for name in ["n1", "n2", "n3", "n4"] {
        mesh.start(name, &[], &[]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let all = [0, 1, 2, 3];
    mesh.wait_for("one mesh of 4", &all, LIMIT, |s| one_mesh(s, 4));
    let mut sent = Vec::new();
    for i in all {
        sent.push(mesh.send(i, &format!("hello from {i}")));
    }
    mesh.wait_for("equal digests", &all, LIMIT, same_digest);
    // The metrics see the mesh: links with their round-trip times, frames, delivered messages.
    let metrics = mesh.agent().get(&format!("http://{}/metrics", mesh.http(0))).call().unwrap().into_string().unwrap();
    for name in ["chatmesh_link_rtt_seconds{peer=", "chatmesh_frames_in_total", "chatmesh_messages_delivered_total"] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }

    let statuses: Vec<_> = all.iter().map(|i| mesh.status(*i).unwrap()).collect();
    let c = statuses.iter().position(|s| s.role == "coordinator").expect("a coordinator");
    let old_id = statuses[c].id.unwrap();
    let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != c).collect();
    // Seniority: the survivor with the lowest ID takes over.
    let expected = survivors.iter().map(|i| statuses[*i].id.unwrap()).min().unwrap();
    mesh.kill(c);
    // Chat goes on during the election.
    for i in &survivors {
        sent.push(mesh.send(*i, &format!("during the election, from {i}")));
    }
    let took = mesh.wait_for("survivors follow the most senior survivor", &survivors, LIMIT, |s| {
        let c: Vec<_> = s.iter().map(coordinator_id).collect();
        if c.iter().all(|x| *x == expected) {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    });
    eprintln!("failover after SIGKILL: {took:?}");
    mesh.wait_for("survivors agree", &survivors, LIMIT, |s| {
        one_mesh(s, 3)?;
        same_digest(s)
    });

    // The killed coordinator comes back from its data directory with its ID and catches up.
    mesh.start(&mesh.nodes[c].name.clone(), &[], &[]);
    mesh.wait_for("all four again", &all, LIMIT, |s| {
        one_mesh(s, 4)?;
        same_digest(s)
    });
    assert_eq!(mesh.status(c).unwrap().id, Some(old_id), "a restarted node keeps its ID");
    for i in all {
        let held = ids_of(&mesh.history(i));
        for id in &sent {
            assert!(held.contains(id), "node {i} lacks {id}");
        }
    }
    // The history is in canonical order on every node: (lamport, author, seq) ascending.
    let h = mesh.history(0);
    let keys: Vec<(u64, &str, u64)> = h.iter().map(|m| (m.lamport, m.author.as_str(), m.seq)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn a_node_with_another_network_key_never_appears_and_receives_nothing() {
    let mut mesh = Mesh::new("wrongkey");
    let good = [("CHATMESH_NETWORK_KEY", "the right key for this test")];
    for name in ["k1", "k2", "k3"] {
        mesh.start(name, &good, &[]);
    }
    let all = [0, 1, 2];
    mesh.wait_for("one mesh of 3", &all, LIMIT, |s| one_mesh(s, 3));
    let intruder = mesh.start("intruder", &[("CHATMESH_NETWORK_KEY", "a wrong key")], &[]);
    let intruder_key = mesh.status(intruder).unwrap().key;
    let secret = mesh.send(0, "only for those with the key");
    let spam = mesh.send(intruder, "let me in");
    // Several beacon and discovery rounds: the intruder hears the coordinator and keeps trying to link.
    for _ in 0..12 {
        std::thread::sleep(Duration::from_millis(250));
        for i in all {
            let s = mesh.status(i).unwrap();
            let keys: Vec<&str> = s.members.iter().map(|m| m.key.as_str()).collect();
            assert!(!keys.contains(&intruder_key.as_str()), "the intruder appears in {}'s members", s.name);
            assert!(!ids_of(&mesh.history(i)).contains(&spam), "the intruder's message reached a member");
        }
        assert!(!ids_of(&mesh.history(intruder)).contains(&secret), "the intruder read a member's message");
    }
    let s = mesh.status(intruder).unwrap();
    assert_eq!(s.links, 0, "no link was ever established: {s:?}");
    mesh.wait_for("the mesh is intact", &all, LIMIT, |s| {
        one_mesh(s, 3)?;
        same_digest(s)
    });
}

#[test]
fn a_node_joins_through_peer_where_multicast_does_not_reach() {
    let mut mesh = Mesh::new("peer");
    mesh.start("p1", &[], &[]);
    mesh.start("p2", &[], &[]);
    mesh.wait_for("one mesh of 2", &[0, 1], LIMIT, |s| one_mesh(s, 2));
    let member = (0..2).find(|i| mesh.status(*i).unwrap().role == "member").unwrap();
    let addr = mesh.status(member).unwrap().addr;
    // Another group port: this node hears none of the mesh's multicast, only what --peer gives it.
    let other = format!("239.255.77.77:{}", port_for("peer-elsewhere"));
    mesh.start("p3", &[], &["--group", &other, "--peer", &addr]);
    mesh.wait_for("the --peer node is in", &[0, 1, 2], LIMIT, |s| one_mesh(s, 3));
    mesh.send(2, "found you through a peer");
    mesh.wait_for("equal digests", &[0, 1, 2], LIMIT, same_digest);
}

#[test]
fn the_demo_passes_and_leaves_no_process_behind() {
    let (code, out, err) = run_cli(&["demo", "--fast"], &[], Duration::from_secs(120));
    assert_eq!(code, Some(0), "demo failed:\n{out}\n{err}");
    assert!(out.contains("DEMO PASSED"), "{out}");
    for step in ["== 1.", "== 2.", "== 3.", "== 4.", "== 5.", "== 6."] {
        assert!(out.contains(step), "missing step {step}:\n{out}");
    }
    // The demo's nodes run with data under a directory named after the demo's pid: none may be left.
    let leftovers = std::process::Command::new("pgrep").args(["-f", "chatmesh-demo-"]).output();
    if let Ok(o) = leftovers {
        let pids = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(pids.is_empty(), "leftover demo processes: {pids}");
    }
}
