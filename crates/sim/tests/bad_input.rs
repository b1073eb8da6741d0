//! Bad input from outside (undecodable bytes, forged or stale messages, messages from strangers) changes
//! nothing in a node's state, is counted by reason, and never panics.

use chatmesh_core::history::message::MAX_BODY_LEN;
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
        let input = Input::Datagram { from: addr(), bytes: bytes.clone(), direct: false };
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
    refused(&mut m, c, Input::Datagram { from: addr(), bytes: d.encode().unwrap(), direct: false }, Reject::WrongMesh);
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

fn contact() -> Contact {
    Contact { id: NodeId(99), key: stranger(), addr: addr() }
}

/// A node that has just started: discovering, not yet answered.
fn discovering() -> Sim {
    let mut sim = Sim::new(SimOptions::quiet(12), Timing::default());
    sim.add_node(Duration::ZERO);
    sim.run_for(Duration::from_millis(1));
    assert_eq!(sim.node(0).unwrap().role(), Role::Discovering);
    sim
}

#[test]
fn an_offer_with_a_foreign_nonce_does_not_make_a_joiner_dial() {
    let mut sim = discovering();
    let offer =
        Datagram { mesh: "sim".into(), body: DatagramBody::Offer { nonce: 12345, coordinator: contact(), term: 9 } };
    sim.inject(0, Input::Datagram { from: addr(), bytes: offer.encode().unwrap(), direct: false });
    assert_eq!(sim.node(0).unwrap().role(), Role::Discovering);
}

#[test]
fn a_joiner_refuses_a_welcome_from_anyone_but_the_coordinator_it_asked() {
    let mut sim = discovering();
    // A beacon makes the joiner ask the stranger to admit it.
    let beacon = Datagram {
        mesh: "sim".into(),
        body: DatagramBody::Beacon { coordinator: contact(), term: 3, version: 1, members: 1 },
    };
    sim.inject(0, Input::Datagram { from: addr(), bytes: beacon.encode().unwrap(), direct: false });
    assert_eq!(sim.node(0).unwrap().role(), Role::Joining);
    let me = sim.nodes[0].key;
    let impostor = NodeKey([0xAB; 32]);
    let view = |coordinator: NodeKey, with_me: bool| {
        let mut members =
            vec![Member { id: NodeId(5), key: coordinator, name: "c".into(), addr: addr(), state: MemberState::Alive }];
        if with_me {
            members.insert(
                0,
                Member { id: NodeId(2), key: me, name: "me".into(), addr: addr(), state: MemberState::Alive },
            );
        }
        // The coordinator outranks the joiner, so the joiner stays a member (no Bully take-over).
        View { term: 3, version: 2, coordinator, next_id: NodeId(6), members }
    };
    let before = state(&sim, 0);
    let count = |sim: &Sim, r: Reject| sim.node(0).unwrap().stats().rejected.get(&r).copied().unwrap_or(0);
    sim.inject(0, frame(impostor, Frame::Welcome { view: view(impostor, true) }));
    assert_eq!(count(&sim, Reject::UnexpectedWelcome), 1);
    sim.inject(0, frame(stranger(), Frame::Welcome { view: view(stranger(), false) }));
    assert_eq!(count(&sim, Reject::InvalidView), 1, "a welcome that does not list the joiner");
    assert_eq!(state(&sim, 0), before);
    // The genuine one is taken.
    sim.inject(0, frame(stranger(), Frame::Welcome { view: view(stranger(), true) }));
    assert_eq!(sim.node(0).unwrap().role(), Role::Member);
    assert_eq!(sim.node(0).unwrap().my_id(), Some(NodeId(2)));
}

#[test]
fn a_forged_or_altered_chat_message_is_never_stored() {
    let mut m = settled_mesh();
    let member = m.member;
    let author = m.coordinator;
    m.sim.command(author, Command::Send { text: "genuine".into(), token: 0 });
    m.sim.run_for(Duration::from_secs(1));
    let from = m.sim.nodes[author].key;
    let genuine = m.sim.nodes[member].store.by_author[&from].values().last().unwrap().clone();
    let count = m.sim.node(member).unwrap().history().count;
    // The next message of that author, with a signature that is not its author's.
    let mut forged = genuine.clone();
    forged.seq += 1;
    forged.lamport += 1;
    forged.body = Body::Text("forged".into());
    refused(&mut m, member, frame(from, Frame::Messages { messages: vec![forged] }), Reject::BadMessage);
    // A body over the limit, properly signed by a stranger.
    let long =
        Message::sign(&SigningKey::from_bytes(&[9; 32]), 1, 1, vec![], 0, Body::Text("x".repeat(MAX_BODY_LEN + 1)));
    refused(
        &mut m,
        member,
        frame(from, Frame::SyncPage { messages: vec![long], more: false, sync: 1 }),
        Reject::BadMessage,
    );
    assert_eq!(m.sim.node(member).unwrap().history().count, count);
    assert!(m.sim.obs.violations.is_empty(), "{:?}", m.sim.obs.violations);
}

#[test]
fn after_bad_input_the_mesh_still_settles_with_the_same_coordinator() {
    let mut m = settled_mesh();
    let before = coordinator_of(&m.sim);
    let member = m.member;
    for b in 0..=255u8 {
        m.sim.inject(member, Input::Frame { from: stranger(), bytes: vec![WIRE_VERSION, b, b, b] });
        m.sim.inject(member, Input::Datagram { from: addr(), bytes: vec![WIRE_VERSION, b, 0, b], direct: false });
    }
    m.sim.run_for(Duration::from_secs(5));
    assert_eq!(settle(&mut m.sim, Duration::from_secs(5)).ok(), before);
    assert!(m.sim.node(member).unwrap().stats().rejected_total() >= 256);
}

/// A joiner that knows one member's address (`--peer`) sends its `Discover` there: the member answers
/// with the coordinator's contact; on the group, members stay silent.
#[test]
fn a_member_answers_a_direct_discover_with_its_coordinator_and_ignores_a_multicast_one() {
    let mut sim = Sim::new(SimOptions::quiet(21), Timing::default());
    for i in 0..3 {
        sim.add_node(Duration::from_millis(20 * i));
    }
    let c = settle(&mut sim, Duration::from_secs(30)).unwrap();
    let member = (0..3).find(|i| *i != c).unwrap();
    sim.tap(member);
    let stranger = NodeKey([0x5A; 32]);
    let discover = |nonce| Datagram {
        mesh: "sim".into(),
        body: DatagramBody::Discover { nonce, key: stranger, addr: addr(), id_hint: None },
    };
    let offers = |sim: &mut Sim, direct: bool, nonce: u64| {
        let bytes = discover(nonce).encode().unwrap();
        sim.inject(member, Input::Datagram { from: addr(), bytes, direct });
        sim.take_datagrams(member)
            .into_iter()
            .filter_map(|(to, bytes)| match Datagram::decode(&bytes).unwrap().body {
                DatagramBody::Offer { nonce: n, coordinator, .. } if n == nonce => Some((to, coordinator)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(offers(&mut sim, false, 1).is_empty(), "a member does not answer on the group");
    let answered = offers(&mut sim, true, 2);
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert_eq!(answered[0].0, Destination::Addr(addr()));
    assert_eq!(answered[0].1.key, sim.nodes[c].key, "the offer points to the coordinator");
}

/// A node that cannot link to a coordinator (another network key, a firewall) must not redial it at every
/// offer and beacon: failed join dials back off per coordinator.
#[test]
fn a_failed_join_dial_backs_off_instead_of_redialling_at_every_beacon() {
    let mut sim = discovering();
    let beacon = Datagram {
        mesh: "sim".into(),
        body: DatagramBody::Beacon { coordinator: contact(), term: 3, version: 1, members: 1 },
    };
    let hear = |sim: &mut Sim| {
        sim.inject(0, Input::Datagram { from: addr(), bytes: beacon.encode().unwrap(), direct: false });
        sim.node(0).unwrap().role()
    };
    assert_eq!(hear(&mut sim), Role::Joining);
    sim.inject(0, Input::ConnectFailed { peer: contact().key });
    assert_eq!(sim.node(0).unwrap().role(), Role::Discovering);
    assert_eq!(hear(&mut sim), Role::Discovering, "no redial at once");
    sim.run_for(Duration::from_millis(300));
    assert_eq!(hear(&mut sim), Role::Joining, "tried again after the backoff");
}
