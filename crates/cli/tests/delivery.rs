//! Delivery status is durable: an author killed and restarted shows its messages acknowledged by all at once,
//! in `GET /history` and `GET /status` alike, without waiting to hear from the members again.

mod common;

use chatmesh_harness::MessageView;
use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// The delivery status of each own text message in a `GET /history`: `(acked, members)`.
fn own_statuses(history: &[MessageView]) -> Vec<(u64, Option<(usize, usize)>)> {
    history
        .iter()
        .filter(|m| m.own && m.kind == "text")
        .map(|m| (m.seq, m.delivery.map(|d| (d.acked, d.members))))
        .collect()
}

#[test]
fn an_author_restarted_after_every_member_acknowledged_shows_its_messages_held_by_all() {
    let mut mesh = Mesh::new("delivery");
    for name in ["d1", "d2", "d3"] {
        mesh.start(name, &[], &[]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let all = [0, 1, 2];
    mesh.wait_for("one mesh of 3", &all, LIMIT, |s| one_mesh(s, 3));
    // A member, so that its restart starts no election.
    let author = all.into_iter().find(|i| mesh.status(*i).unwrap().role == "member").expect("a member");
    for k in 0..5 {
        mesh.send(author, &format!("to be held by all {k}"));
    }
    mesh.wait_for("acknowledged by all", &[author], LIMIT, |s| match s[0].pending_acks {
        0 => Ok(()),
        p => Err(format!("pending_acks {p}")),
    });
    let before = own_statuses(&mesh.history(author));
    assert_eq!(before.len(), 5);
    assert!(before.iter().all(|(_, d)| *d == Some((2, 2))), "before the restart: {before:?}");
    // Acknowledgements are written with the next write, or alone at a retransmission tick (200 ms).
    std::thread::sleep(Duration::from_millis(1000));
    let name = mesh.nodes[author].name.clone();
    mesh.kill(author);
    mesh.start(&name, &[], &[]);
    // As soon as the API answers: the history first, then the status.
    let after = own_statuses(&mesh.history(author));
    let status = mesh.status(author).unwrap();
    eprintln!("after the restart ({}): {after:?}", status.role);
    assert_eq!(after.len(), 5);
    assert!(after.iter().all(|(_, d)| *d == Some((2, 2))), "after the restart ({}): {after:?}", status.role);
    assert_eq!(status.pending_acks, 0, "{status:?}");
    mesh.wait_for("all three again", &all, LIMIT, |s| {
        one_mesh(s, 3)?;
        same_digest(s)
    });

    // Restarted where it hears no one (another multicast group): nothing can be learnt again from the
    // members, so what it shows while it still looks for its mesh comes from its store alone. Once it
    // founds a mesh of its own, no other member is current: `✓ stored`, and nothing pending.
    std::thread::sleep(Duration::from_millis(500));
    mesh.kill(author);
    let elsewhere = format!("239.255.77.77:{}", port_for("delivery-elsewhere"));
    mesh.start(&name, &[], &["--group", &elsewhere]);
    let first = mesh.status(author).unwrap();
    let alone = own_statuses(&mesh.history(author));
    let status = mesh.status(author).unwrap();
    let roles = (first.role, status.role);
    eprintln!("restarted alone {roles:?}: {alone:?}");
    let expected: &[Option<(usize, usize)>] = match roles {
        ("discovering", "discovering") => &[Some((2, 2))],
        ("discovering", _) => &[Some((2, 2)), Some((0, 0))],
        _ => &[Some((0, 0))],
    };
    assert!(alone.iter().all(|(_, d)| expected.contains(d)), "restarted alone {roles:?}: {alone:?}");
    assert_eq!(alone.len(), 5);
    assert_eq!(first.pending_acks, 0, "{first:?}");
    assert_eq!(status.pending_acks, 0, "{status:?}");
}
