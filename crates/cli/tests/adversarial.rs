//! Adversaries on the wire, against real processes on loopback: forged, foreign and replayed datagrams.
//! In every case the mesh keeps working, nothing is stored that should not be, and the drops are counted
//! and logged as a summary, not once per packet.

mod common;

use chatmesh_core::{Contact, Datagram, DatagramBody, NodeId, NodeKey};
use chatmesh_harness::StatusView;
use common::*;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

fn group_socket(port: u16) -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    let group = Ipv4Addr::new(239, 255, 77, 77);
    s.bind(&SocketAddrV4::new(group, port).into()).unwrap();
    s.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST).unwrap();
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.into()
}

#[test]
fn forged_foreign_and_replayed_datagrams_are_dropped_counted_and_logged_once() {
    let mut mesh = Mesh::new("adv-datagrams");
    for name in ["a1", "a2", "a3"] {
        mesh.start(name, &[], &[]);
    }
    let all = [0, 1, 2];
    mesh.wait_for("one mesh of 3", &all, LIMIT, |s| one_mesh(s, 3));
    let port: u16 = mesh.group.rsplit(':').next().unwrap().parse().unwrap();
    let sock = group_socket(port);
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 77), port);

    // Capture a genuine (sealed) beacon from the coordinator, to replay it.
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("a beacon within 5 s");
    let captured = buf[..n].to_vec();

    // A forged coordinator: an unsealed core datagram claiming a higher term and ID, with the mesh name.
    let fake = Contact { id: NodeId(1000), key: NodeKey([0xEE; 32]), addr: "127.0.0.1:9".parse().unwrap() };
    let forged = Datagram {
        mesh: mesh.mesh.clone(),
        body: DatagramBody::Beacon { coordinator: fake, term: 1 << 40, version: 1, members: 1 },
    }
    .encode()
    .unwrap();
    let before: u64 = all.iter().map(|i| mesh.status(*i).unwrap().datagrams_dropped).sum();
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        sock.send_to(&forged, group).unwrap();
        sock.send_to(&captured, group).unwrap(); // a replay: same nonce
        let mut garbage = captured.clone();
        garbage[30] ^= 0xFF; // tampered
        sock.send_to(&garbage, group).unwrap();
        sock.send_to(b"\x01not even close", group).unwrap();
        sent += 4;
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    let after: u64 = all.iter().map(|i| mesh.status(*i).unwrap().datagrams_dropped).sum();
    // Each node hears every datagram on the group: at least most of them must have been dropped by each.
    assert!(after - before >= (sent as u64) * 3 / 2, "dropped {} of {sent}×3", after - before);
    // The mesh did not move: same coordinator, no stranger, term far below the forged one, still chatting.
    for i in all {
        let s = mesh.status(i).unwrap();
        assert!(s.term < 1000, "{s:?}");
        let keys: Vec<&str> = s.members.iter().map(|m| m.key.as_str()).collect();
        assert!(!keys.contains(&"ee".repeat(32).as_str()));
    }
    mesh.wait_for("still one mesh", &all, LIMIT, |s| one_mesh(s, 3));
    mesh.send(0, "still here");
    mesh.wait_for("equal digests", &all, LIMIT, same_digest);
    // Logged as summaries (at most one per reason per 10 s), not once per packet.
    std::thread::sleep(Duration::from_millis(200));
    let mut lines = 0;
    for e in std::fs::read_dir(mesh.logs()).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        lines += text.lines().filter(|l| l.contains("dropped datagrams")).count();
    }
    assert!(lines > 0, "the drops were logged");
    assert!(lines <= 3 * 4 * 2, "{lines} log lines for {sent} datagrams: one per packet?");
}

// ----- a key holder that misbehaves, and strangers on the TCP port -----

use chatmesh_core::history::{Body, Message};
use chatmesh_core::{Frame, MemberState, SigningKey, View};
use chatmesh_node::link::{self, LinkKeys, Role};
use chatmesh_node::DEMO_NETWORK_KEY;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn key_of(status: &StatusView) -> NodeKey {
    NodeKey(hex::FromHex::from_hex(&status.key).unwrap())
}

/// Links to node `i` as a holder of the network key with identity `secret`; returns the writer and reader.
async fn attach(
    mesh: &Mesh,
    i: usize,
    secret: [u8; 32],
) -> (
    link::LinkWriter<tokio::io::WriteHalf<tokio::net::TcpStream>>,
    link::LinkReader<tokio::io::ReadHalf<tokio::net::TcpStream>>,
) {
    let s = mesh.status(i).unwrap();
    let addr: std::net::SocketAddr = s.addr.parse().unwrap();
    let keys = LinkKeys::new(DEMO_NETWORK_KEY, SigningKey::from_bytes(&secret), &s.mesh);
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (reader, writer, _) =
        link::establish(stream, &keys, Role::Initiator { expected: key_of(&s) }, Duration::from_secs(3)).await.unwrap();
    (writer, reader)
}

fn history_ids(mesh: &Mesh, i: usize) -> std::collections::HashSet<String> {
    mesh.history(i).into_iter().map(|m| m.id).collect()
}

#[test]
fn a_key_holder_cannot_forge_authors_replay_welcomes_or_starve_the_mesh() {
    let mut mesh = Mesh::new("adv-member");
    for name in ["m1", "m2", "m3"] {
        mesh.start(name, &[], &[]);
    }
    let all = [0, 1, 2];
    mesh.wait_for("one mesh of 3", &all, LIMIT, |s| one_mesh(s, 3));
    let statuses: Vec<_> = all.iter().map(|i| mesh.status(*i).unwrap()).collect();
    let member = statuses.iter().position(|s| s.role == "member").unwrap();
    let victim = key_of(&statuses[(member + 1) % 3]);
    let before = history_ids(&mesh, member);
    let term_before = statuses[member].term;
    let rt = runtime();

    // 1. A message signed by the attacker that names another member as its author.
    let attacker = SigningKey::from_bytes(&[0x42; 32]);
    let mut forged = Message::sign(&attacker, 1, 1_000, vec![], 0, Body::Text("I am someone else".into()));
    forged.author = victim;
    let closed = rt.block_on(async {
        let (mut w, mut r) = attach(&mesh, member, [0x42; 32]).await;
        w.send(&[Frame::Messages { messages: vec![forged] }.encode().unwrap()]).await.unwrap();
        // The node closes this link: reading ends (after whatever it had sent first).
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match r.recv().await {
                    Ok(Some(_)) => continue,
                    _ => return true,
                }
            }
        })
        .await
        .unwrap_or(false)
    });
    assert!(closed, "the link that carried a forged message was closed");

    // 2. A replayed Welcome (a view naming the attacker's own coordinator) sent to a member not joining.
    let fake_view = View {
        term: term_before + 1000,
        version: 1,
        coordinator: NodeKey([0x42; 32]),
        next_id: NodeId(2),
        members: vec![chatmesh_core::Member {
            id: NodeId(1),
            key: NodeKey([0x42; 32]),
            name: "evil".into(),
            addr: "127.0.0.1:9".parse().unwrap(),
            state: MemberState::Alive,
        }],
    };
    rt.block_on(async {
        let (mut w, _r) = attach(&mesh, member, [0x43; 32]).await;
        w.send(&[Frame::Welcome { view: fake_view }.encode().unwrap()]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    let s = mesh.status(member).unwrap();
    assert_eq!(s.coordinator, statuses[member].coordinator, "the replayed welcome changed nothing");
    assert!(s.term < term_before + 1000);
    for i in all {
        let texts: Vec<String> = mesh.history(i).into_iter().map(|m| m.text).collect();
        assert!(!texts.iter().any(|t| t == "I am someone else"), "a forged message was stored on node {i}");
    }
    assert!(before.iter().all(|id| history_ids(&mesh, member).contains(id)), "nothing held was lost");

    // 3. A flood of valid, self-signed messages from one key holder while a member chats.
    let flood_key = SigningKey::from_bytes(&[0x44; 32]);
    let target = member;
    let flood = std::thread::spawn({
        let api_status = mesh.status(target).unwrap();
        let addr: std::net::SocketAddr = api_status.addr.parse().unwrap();
        let node_key = key_of(&api_status);
        let mesh_name = api_status.mesh.clone();
        move || {
            runtime().block_on(async move {
                let keys = LinkKeys::new(DEMO_NETWORK_KEY, SigningKey::from_bytes(&[0x44; 32]), &mesh_name);
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (_r, mut w, _) =
                    link::establish(stream, &keys, Role::Initiator { expected: node_key }, Duration::from_secs(3))
                        .await
                        .unwrap();
                let start = Instant::now();
                let mut seq = 0u64;
                while start.elapsed() < Duration::from_secs(4) {
                    let mut batch = Vec::new();
                    for _ in 0..200 {
                        seq += 1;
                        let m = Message::sign(&flood_key, seq, seq, vec![], 0, Body::Text(format!("flood {seq}")));
                        batch.push(Frame::Messages { messages: vec![m] }.encode().unwrap());
                    }
                    if w.send(&batch).await.is_err() {
                        break;
                    }
                }
                seq
            })
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let honest = (member + 1) % 3;
    let mut worst = Duration::ZERO;
    for k in 0..10 {
        let t = Instant::now();
        let id = mesh.send(honest, &format!("honest {k}"));
        // The flooded node still gets the honest member's messages promptly.
        loop {
            if history_ids(&mesh, target).contains(&id) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "honest message {k} not delivered during the flood");
            std::thread::sleep(Duration::from_millis(20));
        }
        worst = worst.max(t.elapsed());
    }
    let flooded = flood.join().unwrap();
    eprintln!("flood of {flooded} messages from one key holder; worst honest delivery {worst:?}");
    mesh.wait_for("one mesh after the attacks", &all, LIMIT, |s| one_mesh(s, 3));
}

#[test]
fn strangers_on_the_tcp_port_are_cut_off_and_the_mesh_goes_on() {
    use std::io::Write;
    let mut mesh = Mesh::new("adv-tcp");
    for name in ["t1", "t2", "t3"] {
        mesh.start(name, &[], &[]);
    }
    let all = [0, 1, 2];
    mesh.wait_for("one mesh of 3", &all, LIMIT, |s| one_mesh(s, 3));
    let addr: std::net::SocketAddr = mesh.status(0).unwrap().addr.parse().unwrap();
    // Garbage, an endless handshake message (a length prefix, then a trickle), and silence (slowloris).
    let mut garbage = std::net::TcpStream::connect(addr).unwrap();
    let _ = garbage.write_all(&[0xAB; 4096]);
    let mut endless = std::net::TcpStream::connect(addr).unwrap();
    let _ = endless.write_all(&[0xFF, 0xFF]);
    let silent: Vec<_> = (0..40).map(|_| std::net::TcpStream::connect(addr)).collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let _ = endless.write_all(&[0u8]);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Meanwhile the mesh works: a message goes around.
    mesh.send(0, "through the noise");
    mesh.wait_for("equal digests", &all, LIMIT, same_digest);
    // After the handshake timeout (3 s) every stranger has been closed by the node.
    std::thread::sleep(Duration::from_millis(1500));
    let closed = |s: &mut std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 256];
        loop {
            match std::io::Read::read(s, &mut b) {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    };
    assert!(closed(&mut garbage), "garbage connection still open");
    assert!(closed(&mut endless), "endless message connection still open");
    for s in silent.into_iter().flatten().take(5) {
        let mut s = s;
        assert!(closed(&mut s), "a silent connection still open after the handshake timeout");
    }
    // A fresh node can still join: the handshake slots were given back.
    mesh.start("t4", &[], &[]);
    mesh.wait_for("one mesh of 4", &[0, 1, 2, 3], LIMIT, |s| one_mesh(s, 4));
}

/// Removing a member for good: the others move to a new network key (docs/SECURITY.md, "Removing a
/// member"). The removed node keeps the old key and can no longer reach anyone; the history the others held
/// comes along; nothing the removed node writes afterwards reaches them, and nothing of theirs reaches it.
#[test]
fn rotating_the_network_key_shuts_a_removed_member_out_and_keeps_the_history() {
    let old = [("CHATMESH_NETWORK_KEY", "old key of the rotation test")];
    let new = [("CHATMESH_NETWORK_KEY", "new key of the rotation test")];
    let mut mesh = Mesh::new("adv-rotate");
    for name in ["r1", "r2", "r3", "r4"] {
        mesh.start(name, &old, &[]);
    }
    mesh.wait_for("one mesh of 4", &[0, 1, 2, 3], LIMIT, |s| one_mesh(s, 4));
    let before = mesh.send(0, "before the rotation");
    mesh.wait_for("equal digests", &[0, 1, 2, 3], LIMIT, same_digest);
    let removed_key = mesh.status(3).unwrap().key;
    // Rotate r1..r3 one at a time (a restart each, same data directory, new key).
    for (i, name) in ["r1", "r2", "r3"].iter().enumerate() {
        mesh.kill(i);
        mesh.start(name, &new, &[]);
    }
    mesh.wait_for("the three with the new key are one mesh", &[0, 1, 2], LIMIT, |s| {
        for x in s {
            let alive: Vec<&str> = x.members.iter().filter(|m| m.state == "alive").map(|m| m.key.as_str()).collect();
            if alive.len() != 3 || alive.contains(&removed_key.as_str()) {
                return Err(format!("{} sees {alive:?}", x.name));
            }
        }
        same_digest(s)
    });
    let inside = mesh.send(0, "after the rotation");
    let outside = mesh.send(3, "the removed member speaks");
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..3 {
        let held = history_ids(&mesh, i);
        assert!(held.contains(&before), "r{} lost the history from before the rotation", i + 1);
        assert!(held.contains(&inside));
        assert!(!held.contains(&outside), "the removed member's message reached r{}", i + 1);
    }
    assert!(!history_ids(&mesh, 3).contains(&inside), "the removed member read a message after the rotation");
    assert_eq!(mesh.status(3).unwrap().links, 0);
}
