//! Bad input from outside (undecodable bytes, forged or stale messages, messages from strangers) changes
//! nothing in a node's state, is counted by reason, and never panics.

use chatmesh_core::*;
use chatmesh_sim::{coordinator_of, settle, Sim, SimOptions};
use std::time::Duration;

struct Mesh {
    sim: Sim,
    coordinator: usize,
    member: usize,
}

fn settled_mesh() -> Mesh {
    let mut sim = Sim::new(SimOptions::quiet(11), Timing::default());
    for _ in 0..3 {
        sim.add_node(Duration::ZERO);
    }
    let coordinator = settle(&mut sim, Duration::from_secs(30)).expect("settles");
    let member = (0..3).find(|&i| i != coordinator).expect("three nodes");
    Mesh { sim, coordinator, member }
}

fn state(sim: &Sim, i: usize) -> (Role, Snapshot, Option<NodeKey>) {
    let n = sim.node(i).expect("running");
    (n.role(), n.snapshot(), n.coordinator())
}

fn frame(from: NodeKey, f: Frame) -> Input {
    Input::Frame { from, bytes: f.encode().expect("encodes") }
}

/// Injects `input` into node `i` and checks that its state did not move and that `reason` was counted.
fn refused(m: &mut Mesh, i: usize, input: Input, reason: Reject) {
    let before = state(&m.sim, i);
    let count = |m: &Mesh| m.sim.node(i).unwrap().stats().rejected.get(&reason).copied().unwrap_or(0);
    let counted = count(m);
    m.sim.inject(i, input);
    assert_eq!(state(&m.sim, i), before, "state changed after input refused as {reason:?}");
    assert_eq!(count(m), counted + 1, "{reason:?} not counted");
}

fn stranger() -> NodeKey {
    NodeKey([0xEE; 32])
}

fn addr() -> std::net::SocketAddr {
    "10.9.9.9:7000".parse().unwrap()
}

#[test]
fn undecodable_frames_and_datagrams_are_counted_and_change_nothing() {
    let mut m = settled_mesh();
    let peer = m.sim.nodes[m.coordinator].key;
    for bytes in [vec![], vec![0xFF], vec![WIRE_VERSION, 0xFF, 0xFF], vec![WIRE_VERSION + 1, 0], vec![7; 5000]] {
        let member = m.member;
        refused(&mut m, member, Input::Frame { from: peer, bytes: bytes.clone() }, Reject::UndecodableFrame);
        let input = Input::Datagram { from: addr(), bytes: bytes.clone() };
        refused(&mut m, member, input, Reject::UndecodableDatagram);
    }
}

#[test]
fn a_datagram_for_another_mesh_is_refused() {
    let mut m = settled_mesh();
    let d = Datagram {
        mesh: "other".into(),
        body: DatagramBody::Discover { nonce: 1, key: stranger(), addr: addr(), id_hint: None },
    };
    let c = m.coordinator;
    refused(&mut m, c, Input::Datagram { from: addr(), bytes: d.encode().unwrap() }, Reject::WrongMesh);
}

#[test]
fn a_forged_welcome_is_refused_by_a_member() {
    let mut m = settled_mesh();
    let coordinator = m.sim.nodes[m.coordinator].key;
    let mut view = m.sim.node(m.coordinator).unwrap().view().unwrap().clone();
    view.term += 10;
    // From the real coordinator's key (a replay) and from a stranger claiming to coordinate.
    let member = m.member;
    refused(&mut m, member, frame(coordinator, Frame::Welcome { view: view.clone() }), Reject::UnexpectedWelcome);
    view.coordinator = stranger();
    refused(&mut m, member, frame(stranger(), Frame::Welcome { view }), Reject::UnexpectedWelcome);
}

#[test]
fn a_view_not_sent_by_its_coordinator_or_inconsistent_is_refused() {
    let mut m = settled_mesh();
    let member = m.member;
    let mut view = m.sim.node(m.coordinator).unwrap().view().unwrap().clone();
    view.term += 10;
    // Claims another coordinator than the sender.
    refused(&mut m, member, frame(stranger(), Frame::View { view: view.clone() }), Reject::InvalidView);
    // Two keys with one ID.
    let coordinator = view.coordinator;
    let mut dup = view.clone();
    let mut twin = dup.members[0].clone();
    twin.key = stranger();
    dup.members.push(twin);
    refused(&mut m, member, frame(coordinator, Frame::View { view: dup }), Reject::InvalidView);
    // next_id below an ID in use.
    let mut low = view.clone();
    low.next_id = NodeId(1);
    refused(&mut m, member, frame(coordinator, Frame::View { view: low }), Reject::InvalidView);
    // A name over the limit.
    let mut long = view;
    long.members[0].name = "x".repeat(MAX_NAME_LEN + 1);
    refused(&mut m, member, frame(coordinator, Frame::View { view: long }), Reject::InvalidView);
}

#[test]
fn a_heartbeat_or_view_of_an_old_term_is_refused() {
    let mut m = settled_mesh();
    let view = m.sim.node(m.coordinator).unwrap().view().unwrap().clone();
    let member = m.member;
    let old = view.term - 1;
    refused(&mut m, member, frame(view.coordinator, Frame::Heartbeat { term: old, version: 1 }), Reject::StaleTerm);
    // A lower-ranked member pretending to be coordinator of an older term.
    let other =
        m.sim.nodes.iter().map(|n| n.key).find(|k| *k != view.coordinator && *k != m.sim.nodes[member].key).unwrap();
    let mut stale = view.clone();
    stale.term = old;
    stale.coordinator = other;
    refused(&mut m, member, frame(other, Frame::View { view: stale }), Reject::StaleTerm);
}

#[test]
fn messages_only_members_or_coordinators_may_send_are_refused_from_others() {
    let mut m = settled_mesh();
    let member = m.member;
    let coordinator = m.coordinator;
    // An election from a key that is not a member.
    refused(&mut m, member, frame(stranger(), Frame::Election { term: 99, suspect: None }), Reject::NotMember);
    // A join sent to a member rather than the coordinator.
    let join = Join { mesh: "sim".into(), name: "x".into(), addr: addr(), id_hint: None, next_id_seen: NodeId(1) };
    refused(&mut m, member, frame(stranger(), Frame::Join(join.clone())), Reject::NotCoordinator);
    // A join for another mesh, and one with an oversized name, sent to the coordinator.
    let wrong = Join { mesh: "other".into(), ..join.clone() };
    refused(&mut m, coordinator, frame(stranger(), Frame::Join(wrong)), Reject::WrongMesh);
    let long = Join { name: "x".repeat(MAX_NAME_LEN + 1), ..join };
    refused(&mut m, coordinator, frame(stranger(), Frame::Join(long)), Reject::OutOfBounds);
}

#[test]
fn an_offer_with_a_foreign_nonce_does_not_pull_a_member_away() {
    let mut m = settled_mesh();
    let member = m.member;
    let before = state(&m.sim, member);
    let offer = Datagram {
        mesh: "sim".into(),
        body: DatagramBody::Offer {
            nonce: 12345,
            coordinator: Contact { id: NodeId(99), key: stranger(), addr: addr() },
            term: 999,
        },
    };
    m.sim.inject(member, Input::Datagram { from: addr(), bytes: offer.encode().unwrap() });
    assert_eq!(state(&m.sim, member), before);
}

#[test]
fn after_bad_input_the_mesh_still_settles_with_the_same_coordinator() {
    let mut m = settled_mesh();
    let before = coordinator_of(&m.sim);
    let member = m.member;
    for b in 0..=255u8 {
        m.sim.inject(member, Input::Frame { from: stranger(), bytes: vec![WIRE_VERSION, b, b, b] });
        m.sim.inject(member, Input::Datagram { from: addr(), bytes: vec![WIRE_VERSION, b, 0, b] });
    }
    m.sim.run_for(Duration::from_secs(5));
    assert_eq!(settle(&mut m.sim, Duration::from_secs(5)).ok(), before);
    assert!(m.sim.node(member).unwrap().stats().rejected_total() >= 256);
}
