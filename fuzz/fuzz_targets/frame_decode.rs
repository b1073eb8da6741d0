//! `Frame::decode` on arbitrary bytes: never panics, never allocates without bound; a frame that decodes
//! re-encodes, and the re-encoding decodes to the same frame and re-encodes to the same bytes.
//!
//! What a node does next with a decoded frame before trusting it (validating a view, verifying a message) is
//! exercised too: it must not panic either, whatever the frame holds.

#![no_main]

use chatmesh_core::{Frame, Member, MemberState, NodeId, NodeKey, View};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::decode(data) else { return };
    let encoded = frame.encode().expect("a decoded frame re-encodes (it is no longer than its input)");
    assert!(encoded.len() <= data.len(), "re-encoding grew: {} -> {} bytes", data.len(), encoded.len());
    let again = Frame::decode(&encoded).expect("a re-encoded frame decodes");
    assert_eq!(again, frame, "decode(encode(frame)) != frame");
    assert_eq!(again.encode().expect("re-encodes"), encoded, "the encoding is not stable");
    let _ = frame.kind();
    after_decode(&frame);
});

/// The checks a node runs on frame contents from the network.
fn after_decode(frame: &Frame) {
    match frame {
        Frame::Welcome { view } | Frame::View { view } | Frame::MergeRequest { view } => check_view(view),
        Frame::Messages { messages } | Frame::SyncPage { messages, .. } => {
            for m in messages {
                let _ = m.verify();
                let _ = m.digest_hash();
                let _ = (m.id(), m.order_key());
            }
        }
        _ => {}
    }
}

fn check_view(view: &View) {
    let _ = view.order();
    let _ = view.coordinator_member();
    if view.validate().is_err() {
        return;
    }
    // A coordinator merges a validated view from another part into its own (membership.rs, merge request).
    let me = Member {
        id: NodeId(1),
        key: NodeKey([0x42; 32]),
        name: "fuzz".into(),
        addr: "127.0.0.1:7000".parse().unwrap(),
        state: MemberState::Alive,
    };
    let mut mine = View::founding(1, me);
    let _ = mine.merge(view);
    let mut theirs = view.clone();
    let _ = theirs.merge(&View::founding(1, mine.members[0].clone()));
}
