//! Writes the seed corpora: real, valid inputs of every kind, so the fuzzers start from real structure.
//!
//!     cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! Files are named `seed-<what>` and written to `fuzz/corpus/<target>/` (existing files are left alone).
//! The formats of the `datagram` (part 3) and `link_frames` inputs are described in those targets.

use chatmesh_core::{
    Body, Contact, Datagram, DatagramBody, Frame, Join, Member, MemberState, MembershipEvent, Message, MessageId,
    NodeId, NodeKey, OrderKey, SigningKey, View,
};
use chatmesh_node::link::{psk_from_network_key, NOISE_PATTERN};
use chatmesh_node::seal::Sealer;
use std::fs;
use std::path::{Path, PathBuf};

const NOW_MS: u64 = 1_795_000_000_000;

fn out(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn key(seed: u8) -> NodeKey {
    NodeKey(SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes())
}

fn member(id: u32, seed: u8, name: &str, state: MemberState) -> Member {
    Member { id: NodeId(id), key: key(seed), name: name.into(), addr: format!("10.0.0.{id}:7000").parse().unwrap(), state }
}

fn view() -> View {
    View {
        term: 3,
        version: 7,
        coordinator: key(3),
        next_id: NodeId(5),
        members: vec![
            member(1, 1, "ana", MemberState::Alive),
            member(2, 2, "bo", MemberState::Failed),
            member(3, 3, "cy", MemberState::Alive),
            Member { addr: "[fe80::1]:7000".parse().unwrap(), ..member(4, 4, "dé", MemberState::Left) },
        ],
    }
}

fn messages() -> Vec<Message> {
    let a = SigningKey::from_bytes(&[1; 32]);
    let b = SigningKey::from_bytes(&[2; 32]);
    let m1 = Message::sign(&a, 1, 1, vec![], NOW_MS, Body::Text("olá".into()));
    let m2 = Message::sign(&b, 1, 2, vec![m1.id()], NOW_MS + 1, Body::Text("hi".into()));
    let m3 = Message::sign(
        &b,
        2,
        3,
        vec![MessageId { author: key(1), seq: 1 }],
        NOW_MS + 2,
        Body::Membership(MembershipEvent::Joined { id: NodeId(4), key: key(4), name: "dé".into() }),
    );
    let m4 = Message::sign(
        &a,
        2,
        4,
        vec![m2.id(), m3.id()],
        NOW_MS + 3,
        Body::Membership(MembershipEvent::CoordinatorChanged { term: 3, id: NodeId(3), key: key(3) }),
    );
    // Three more of a's, signed as one batch (one signature, a Merkle path each).
    let mut batch: Vec<Message> = (3..=5)
        .map(|seq| Message::sign(&a, seq, seq + 2, vec![], NOW_MS + seq, Body::Text(format!("batch {seq}"))))
        .collect();
    Message::sign_batch(&a, &mut batch);
    [vec![m1, m2, m3, m4], batch].concat()
}

fn frames() -> Vec<(&'static str, Frame)> {
    let contact = Contact { id: NodeId(3), key: key(3), addr: "10.0.0.3:7000".parse().unwrap() };
    vec![
        (
            "join",
            Frame::Join(Join {
                mesh: "office".into(),
                name: "ana".into(),
                addr: "10.0.0.1:7000".parse().unwrap(),
                id_hint: Some(NodeId(1)),
                next_id_seen: NodeId(4),
            }),
        ),
        ("welcome", Frame::Welcome { view: view() }),
        ("view", Frame::View { view: view() }),
        ("view-request", Frame::ViewRequest { term: 3 }),
        ("heartbeat", Frame::Heartbeat { term: 3, version: 7 }),
        ("heartbeat-ack", Frame::HeartbeatAck { term: 3, version: 7, coordinator: key(3), next_id_seen: NodeId(5) }),
        ("leave", Frame::Leave { term: 3 }),
        ("election", Frame::Election { term: 4, suspect: Some(key(3)) }),
        ("answer", Frame::Answer { term: 4 }),
        ("not-coordinator", Frame::NotCoordinator { term: 3, coordinator: Some(contact) }),
        ("merge-request", Frame::MergeRequest { view: view() }),
        ("ping", Frame::Ping { term: 3 }),
        ("messages", Frame::Messages { messages: messages() }),
        ("ack", Frame::Ack { acks: vec![(key(1), 2), (key(2), 2)] }),
        ("frontier", Frame::Frontier { frontier: vec![(key(1), 2), (key(2), 1)], reply: true, clock: 9 }),
        (
            "sync-request",
            Frame::SyncRequest {
                frontier: vec![(key(1), 1)],
                after: Some(OrderKey { lamport: 2, author: key(2), seq: 1 }),
                limit: 256,
                sync: 7,
            },
        ),
        ("sync-page", Frame::SyncPage { messages: messages()[1..].to_vec(), more: true, sync: 7 }),
    ]
}

fn datagrams() -> Vec<(&'static str, Datagram)> {
    let contact = Contact { id: NodeId(3), key: key(3), addr: "10.0.0.3:7000".parse().unwrap() };
    vec![
        (
            "discover",
            Datagram {
                mesh: "office".into(),
                body: DatagramBody::Discover {
                    nonce: 0x1234_5678_9abc,
                    key: key(1),
                    addr: "10.0.0.1:7000".parse().unwrap(),
                    id_hint: Some(NodeId(1)),
                },
            },
        ),
        ("offer", Datagram { mesh: "office".into(), body: DatagramBody::Offer { nonce: 42, coordinator: contact, term: 3 } }),
        (
            "beacon",
            Datagram {
                mesh: "office".into(),
                body: DatagramBody::Beacon { coordinator: contact, term: 3, version: 7, members: 4 },
            },
        ),
    ]
}

fn prefixed(frame: &[u8]) -> Vec<u8> {
    let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(frame);
    bytes
}

/// A `link_frames` input: flags, then `len (u16 BE) ‖ bytes` chunks (one transport message each).
fn script(flags: u8, chunks: &[&[u8]]) -> Vec<u8> {
    let mut bytes = vec![flags];
    for c in chunks {
        bytes.extend_from_slice(&(c.len() as u16).to_be_bytes());
        bytes.extend_from_slice(c);
    }
    bytes
}

fn main() {
    // frame_decode: one frame of every kind.
    let dir = out("frame_decode");
    for (name, frame) in frames() {
        write(&dir, name, &frame.encode().unwrap());
    }

    // datagram: the datagrams, the same sealed at NOW_MS with the fuzz key, and seal-then-open programs.
    let dir = out("datagram");
    let sealer = Sealer::new(b"fuzz key");
    for (name, datagram) in datagrams() {
        let bytes = datagram.encode().unwrap();
        write(&dir, name, &bytes);
        write(&dir, &format!("{name}-sealed"), &sealer.seal(NOW_MS, &bytes));
        let mut program = NOW_MS.to_le_bytes().to_vec();
        program.extend_from_slice(&(NOW_MS + 29_000).to_le_bytes());
        program.extend_from_slice(&bytes);
        write(&dir, &format!("{name}-seal-open"), &program);
    }
    let mut stale = u64::MAX.to_le_bytes().to_vec();
    stale.extend_from_slice(&0u64.to_le_bytes());
    stale.extend_from_slice(b"stale");
    write(&dir, "seal-open-stale", &stale);

    // handshake: a genuine message 1 (it depends only on the dialer's ephemeral key and the protocol name),
    // alone, followed by a message 3 of another session, and followed by garbage.
    let dir = out("handshake");
    let psk = psk_from_network_key(b"fuzz key");
    let params: snow::params::NoiseParams = NOISE_PATTERN.parse().unwrap();
    let static_key = snow::Builder::new(params.clone()).generate_keypair().unwrap();
    let mut initiator =
        snow::Builder::new(params.clone()).local_private_key(&static_key.private).psk(3, &psk).build_initiator().unwrap();
    let responder_key = snow::Builder::new(params.clone()).generate_keypair().unwrap();
    let mut responder =
        snow::Builder::new(params).local_private_key(&responder_key.private).psk(3, &psk).build_responder().unwrap();
    let mut buf = [0u8; 1024];
    let mut payload = [0u8; 1024];
    let msg = |len: usize, buf: &[u8]| {
        let mut m = (len as u16).to_be_bytes().to_vec();
        m.extend_from_slice(&buf[..len]);
        m
    };
    let n = initiator.write_message(&[], &mut buf).unwrap();
    let msg1 = msg(n, &buf);
    responder.read_message(&buf[..n], &mut payload).unwrap();
    let n = responder.write_message(&[], &mut buf).unwrap();
    initiator.read_message(&buf[..n], &mut payload).unwrap();
    let n = initiator.write_message(&[], &mut buf).unwrap();
    let msg3 = msg(n, &buf);
    write(&dir, "msg1", &msg1);
    write(&dir, "msg1-msg3", &[msg1.clone(), msg3].concat());
    write(&dir, "msg1-garbage", &[msg1.clone(), vec![0, 64], vec![0x5a; 64], b"more".to_vec()].concat());
    write(&dir, "msg1-short", &[msg1.clone(), vec![0, 64], vec![1; 10]].concat());
    write(&dir, "http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");

    // link_frames: see the target for the format.
    let dir = out("link_frames");
    let all: Vec<u8> = frames().iter().flat_map(|(_, f)| prefixed(&f.encode().unwrap())).collect();
    let small: Vec<u8> = frames().iter().take(12).flat_map(|(_, f)| prefixed(&f.encode().unwrap())).collect();
    write(&dir, "hello-frames-one-message", &script(1, &[&all[..all.len().min(8000)]]));
    write(&dir, "hello-frames-split", &script(1, &[&small[..3], &small[3..17], &[], &small[17..]]));
    write(&dir, "hello-empty-frame", &script(1, &[&prefixed(b""), &prefixed(b"x")]));
    write(&dir, "hello-mid-frame", &script(1, &[&prefixed(b"whole"), &prefixed(&[1; 100])[..50]]));
    write(&dir, "hello-too-long", &script(1, &[&prefixed(b"fine"), &((1u32 << 20) + 1).to_be_bytes()]));
    write(&dir, "hello-garbage-tail", &script(5, &[&prefixed(b"fine"), &[0, 50, 1, 2, 3, 4, 5, 6, 7, 8]]));
    write(&dir, "hello-raw", &[&[3u8][..], &[0, 50], &[0x5a; 50]].concat());
    write(&dir, "hello-zero-message", &[3u8, 0, 0]);
    // The body's first frame as the hello: a well-formed one with a signature of the wrong session.
    let mut hello = vec![1u8];
    hello.extend_from_slice(&[4, b'f', b'u', b'z', b'z']);
    hello.extend_from_slice(&key(9).0);
    hello.push(64);
    hello.extend_from_slice(&[0x11; 64]);
    write(&dir, "fake-hello", &script(0, &[&prefixed(&hello)]));
    write(&dir, "raw-no-hello", &[&[2u8][..], &[0, 20], &[0xab; 20]].concat());
    println!("seed corpora written under {}", Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").display());
}
