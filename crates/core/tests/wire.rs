//! The wire format: every variant round-trips; no byte string makes the decoders panic; limits hold.

use chatmesh_core::*;
use proptest::prelude::*;
use std::net::SocketAddr;

fn key() -> impl Strategy<Value = NodeKey> {
    any::<[u8; 32]>().prop_map(NodeKey)
}

fn id() -> impl Strategy<Value = NodeId> {
    any::<u32>().prop_map(NodeId)
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

fn contact() -> impl Strategy<Value = Contact> {
    (id(), key(), addr()).prop_map(|(id, key, addr)| Contact { id, key, addr })
}

fn member() -> impl Strategy<Value = Member> {
    let state = prop_oneof![Just(MemberState::Alive), Just(MemberState::Failed), Just(MemberState::Left)];
    (id(), key(), ".{0,20}", addr(), state).prop_map(|(id, key, name, addr, state)| Member {
        id,
        key,
        name,
        addr,
        state,
    })
}

fn view() -> impl Strategy<Value = View> {
    (any::<u64>(), any::<u64>(), key(), id(), prop::collection::vec(member(), 0..6)).prop_map(
        |(term, version, coordinator, next_id, members)| View { term, version, coordinator, next_id, members },
    )
}

fn frame() -> impl Strategy<Value = Frame> {
    let join = (".{0,10}", ".{0,10}", addr(), proptest::option::of(id()), id()).prop_map(
        |(mesh, name, addr, id_hint, next_id_seen)| Frame::Join(Join { mesh, name, addr, id_hint, next_id_seen }),
    );
    prop_oneof![
        join,
        view().prop_map(|view| Frame::Welcome { view }),
        view().prop_map(|view| Frame::View { view }),
        any::<u64>().prop_map(|term| Frame::ViewRequest { term }),
        (any::<u64>(), any::<u64>()).prop_map(|(term, version)| Frame::Heartbeat { term, version }),
        (any::<u64>(), any::<u64>(), key(), id()).prop_map(|(term, version, coordinator, next_id_seen)| {
            Frame::HeartbeatAck { term, version, coordinator, next_id_seen }
        }),
        any::<u64>().prop_map(|term| Frame::Leave { term }),
        (any::<u64>(), proptest::option::of(key())).prop_map(|(term, suspect)| Frame::Election { term, suspect }),
        any::<u64>().prop_map(|term| Frame::Answer { term }),
        (any::<u64>(), proptest::option::of(contact()))
            .prop_map(|(term, coordinator)| Frame::NotCoordinator { term, coordinator }),
        view().prop_map(|view| Frame::MergeRequest { view }),
        any::<u64>().prop_map(|term| Frame::Ping { term }),
    ]
}

fn datagram() -> impl Strategy<Value = Datagram> {
    let body = prop_oneof![
        (any::<u64>(), key(), addr(), proptest::option::of(id()))
            .prop_map(|(nonce, key, addr, id_hint)| DatagramBody::Discover { nonce, key, addr, id_hint }),
        (any::<u64>(), contact(), any::<u64>()).prop_map(|(nonce, coordinator, term)| DatagramBody::Offer {
            nonce,
            coordinator,
            term
        }),
        (contact(), any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(coordinator, term, version, members)| {
            DatagramBody::Beacon { coordinator, term, version, members }
        }),
    ];
    (".{0,16}", body).prop_map(|(mesh, body)| Datagram { mesh, body })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_frame_round_trips(f in frame()) {
        let bytes = f.encode().unwrap();
        prop_assert_eq!(bytes[0], WIRE_VERSION);
        prop_assert_eq!(Frame::decode(&bytes).unwrap(), f);
    }

    #[test]
    fn every_datagram_round_trips(d in datagram()) {
        let bytes = d.encode().unwrap();
        prop_assert!(bytes.len() <= MAX_DATAGRAM_LEN);
        prop_assert_eq!(Datagram::decode(&bytes).unwrap(), d);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Frame::decode(&bytes);
        let _ = Datagram::decode(&bytes);
    }

    #[test]
    fn decoding_arbitrary_bytes_after_the_version_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut b = vec![WIRE_VERSION];
        b.extend(bytes);
        let _ = Frame::decode(&b);
        let _ = Datagram::decode(&b);
    }

    #[test]
    fn a_corrupted_frame_never_panics(f in frame(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = f.encode().unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = Frame::decode(&bytes);
    }

    /// The encoding is self-delimiting: a frame cut short anywhere is an error, never another frame.
    #[test]
    fn every_strict_prefix_of_a_frame_is_refused(f in frame(), at in any::<prop::sample::Index>()) {
        let bytes = f.encode().unwrap();
        let cut = at.index(bytes.len());
        prop_assert!(Frame::decode(&bytes[..cut]).is_err());
    }
}

#[test]
fn empty_input_is_a_typed_error() {
    assert_eq!(Frame::decode(&[]), Err(DecodeError::Empty));
    assert_eq!(Datagram::decode(&[]), Err(DecodeError::Empty));
}

#[test]
fn another_wire_version_is_refused_by_name() {
    let mut bytes = Frame::Ping { term: 1 }.encode().unwrap();
    bytes[0] = WIRE_VERSION + 1;
    assert_eq!(Frame::decode(&bytes), Err(DecodeError::UnsupportedVersion(WIRE_VERSION + 1)));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = Frame::Ping { term: 1 }.encode().unwrap();
    bytes.push(0);
    assert_eq!(Frame::decode(&bytes), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let bytes = vec![WIRE_VERSION; MAX_DATAGRAM_LEN + 1];
    assert!(matches!(Datagram::decode(&bytes), Err(DecodeError::TooLong { .. })));
    let bytes = vec![WIRE_VERSION; MAX_FRAME_LEN + 1];
    assert!(matches!(Frame::decode(&bytes), Err(DecodeError::TooLong { .. })));
}

#[test]
fn a_datagram_too_large_for_one_packet_is_not_encoded() {
    let d = Datagram {
        mesh: "x".repeat(MAX_DATAGRAM_LEN),
        body: DatagramBody::Offer {
            nonce: 1,
            coordinator: Contact { id: NodeId(1), key: NodeKey([0; 32]), addr: "127.0.0.1:1".parse().unwrap() },
            term: 1,
        },
    };
    assert!(matches!(d.encode(), Err(EncodeError::TooLong { .. })));
}

#[test]
fn a_length_prefix_claiming_a_huge_vector_does_not_allocate_it() {
    // View { term, version, coordinator, next_id, members: len = u32::MAX as varint } with nothing after.
    let mut bytes = vec![WIRE_VERSION, 2, 1, 1];
    bytes.extend([0u8; 32]);
    bytes.push(1);
    bytes.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(Frame::decode(&bytes), Err(DecodeError::Malformed(_))));
}
