//! Promise 7 with real processes: a coordinator stopped with SIGSTOP for 1, 5 and 30 s and then continued
//! writes no false `failed` line into the history (issue 20: it wrote every member, itself included, as
//! failed), does not take the role back, and every node ends with the same history. Joins start no
//! election: the history holds one coordinator line per stop, written by the successor.

mod common;

use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn signal(mesh: &mut Mesh, i: usize, sig: i32) {
    mesh.nodes[i].process.as_mut().expect("running").signal(sig);
}

fn coordinator(mesh: &Mesh, nodes: &[usize]) -> usize {
    let statuses: Vec<_> = nodes.iter().map(|i| mesh.status(*i).unwrap()).collect();
    nodes[statuses.iter().position(|s| s.role == "coordinator").expect("a coordinator")]
}

fn event_lines(mesh: &Mesh, i: usize) -> Vec<String> {
    mesh.history(i).into_iter().filter(|m| m.kind == "event").map(|m| m.text).collect()
}

#[test]
fn a_stopped_coordinator_writes_no_false_failures_when_continued() {
    let mut mesh = Mesh::new("pause");
    let names = ["ana", "bruno", "carla", "davi"];
    for name in names {
        mesh.start(name, &[], &[]);
        std::thread::sleep(Duration::from_millis(150));
    }
    let all = [0, 1, 2, 3];
    mesh.wait_for("one mesh of 4", &all, LIMIT, |s| one_mesh(s, 4));
    let mut stopped: Vec<usize> = Vec::new();
    for (round, pause) in [1u64, 5, 30].into_iter().enumerate() {
        let c = coordinator(&mesh, &all);
        signal(&mut mesh, c, libc::SIGSTOP);
        let others: Vec<usize> = all.iter().copied().filter(|i| *i != c).collect();
        // The others chat while it is stopped, and elect a successor.
        let until = std::time::Instant::now() + Duration::from_secs(pause);
        let mut k = 0;
        while std::time::Instant::now() < until {
            mesh.send(others[k % others.len()], &format!("round {round}, message {k}"));
            k += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        signal(&mut mesh, c, libc::SIGCONT);
        stopped.push(c);
        mesh.wait_for(&format!("one mesh of 4 after a {pause} s stop"), &all, LIMIT, |s| {
            one_mesh(s, 4)?;
            same_digest(s)
        });
        for i in all {
            let events = event_lines(&mesh, i);
            let false_lines: Vec<&String> = events
                .iter()
                .filter(|t| t.contains(" failed"))
                .filter(|t| !stopped.iter().any(|s| t.starts_with(names[*s])))
                .collect();
            assert!(false_lines.is_empty(), "after a {pause} s stop, {}'s history: {events:#?}", names[i]);
            let coordinator_lines = events.iter().filter(|t| t.contains("coordinates from term")).count();
            assert_eq!(coordinator_lines, round + 1, "one coordinator change per stop: {events:#?}");
        }
        let now = coordinator(&mesh, &all);
        assert_ne!(now, c, "after a {pause} s stop: the continued coordinator took the role back");
    }
}
