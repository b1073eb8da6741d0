//! Driver rounds: the inputs a driver takes together (`Node::begin_round` .. `Node::end_round`) send one
//! frame of new messages and one acknowledgement per peer, instead of one per message.
//!
//! A round merges runs of pushes received, acknowledgements received and our own new messages:
//! - messages pushed to us wait, unverified, and are verified together (one batch of signatures) and stored
//!   together (one `Store`);
//! - our own new messages wait, unsigned, to be signed together as one batch (one signature, and for each
//!   receiver one to check), then are stored and shown as sent; their pushes wait for the round's end;
//! - acknowledgements we owe wait, each raised to the highest seq of its author stored in the round.
//!
//! Any other input first ends the run (`settle_round`): the pushes received are handled and what waits is
//! sent, so the input sees the state and the links it would have seen without rounds. What waits is also
//! sent, merged, at the end of the round, and before any output or link change other than a write or an
//! event (another frame, queued for a link or not, a dial, a disconnect, a stop, a datagram, a snapshot, a
//! load). So frames keep their order, and a frame only ever moves later, behind more writes (the ordering
//! contract allows that); a link being closed is not dialled again for what waited for it (those frames
//! are handed to it as it closes and may be lost with it: retransmission and anti-entropy bring them).
//! Outside a round nothing waits. What waits is `history::Round`, in the node's `History`.

use crate::history::{Message, PAGE_MESSAGES};
use crate::io::Output;
use crate::node::Node;
use crate::types::NodeKey;
use crate::wire::Frame;
use std::collections::BTreeMap;
use std::time::Instant;

/// Most of our new messages in one `Messages` frame (a frame that is still too large is split in halves).
const PUSH_MESSAGES: usize = 256;

impl Node {
    /// Starts a driver round: until `end_round`, pushes and acknowledgements are gathered and merged (see
    /// the module doc). A driver that never calls it gets every frame at once, as before.
    pub fn begin_round(&mut self) {
        self.history.round.open = true;
    }

    /// Ends the round: handles the gathered pushes, then sends what waited, merged.
    pub fn end_round(&mut self, now: Instant) {
        self.take_incoming(now);
        self.history.round.open = false;
        self.release_frames();
    }

    /// Queues the output; any output but a write or an event first sends the frames waiting for the round's
    /// end, so that they keep their place before it.
    pub(crate) fn emit(&mut self, o: Output) {
        if !matches!(o, Output::Store { .. } | Output::Event(_)) {
            self.release_frames();
        }
        self.out.push_back(o);
    }

    /// A push to us: inside a round it waits for the others; outside, it is handled at once.
    pub(crate) fn on_pushed(&mut self, now: Instant, from: NodeKey, messages: Vec<Message>) {
        if !self.history.round.open {
            return self.on_messages(now, from, messages);
        }
        let incoming = &mut self.history.round.incoming;
        incoming.extend(messages.into_iter().map(|m| (from, m)));
        if incoming.len() >= PAGE_MESSAGES as usize {
            self.take_incoming(now);
        }
    }

    /// Before an input that is not a push, an ack or our own message: the pushes gathered so far are
    /// handled, and what waits is sent, so that the input sees the state and links it would have seen.
    pub(crate) fn settle_round(&mut self, now: Instant) {
        self.take_incoming(now);
        self.release_frames();
    }

    /// Signs our messages written so far, then verifies and delivers the pushes gathered so far.
    pub(crate) fn take_incoming(&mut self, now: Instant) {
        self.sign_own();
        if self.history.round.incoming.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.history.round.incoming);
        if !self.state().is_stopped() {
            self.receive(now, batch);
        }
    }

    /// Our new message `m`, durable, goes to `to`: merged at the round's end, or now outside a round.
    pub(crate) fn push(&mut self, m: &Message, to: Vec<NodeKey>) {
        self.history.round.outgoing.push((m.clone(), to));
        if !self.history.round.open {
            self.release_frames();
        }
    }

    /// Acknowledges to `author` that we hold its messages up to `seq` (after the write already queued):
    /// merged at the round's end, or now outside a round.
    pub(crate) fn ack(&mut self, author: NodeKey, seq: u64) {
        let due = self.history.round.acks.entry(author).or_default();
        *due = (*due).max(seq);
        if !self.history.round.open {
            self.release_frames();
        }
    }

    /// Signs our messages that wait (`sign_own`), then sends the pushes and acknowledgements that waited:
    /// one frame of messages per peer (peers that get the same messages share one encoding), then one
    /// acknowledgement per author.
    pub(crate) fn release_frames(&mut self) {
        self.sign_own();
        let round = &mut self.history.round;
        if round.outgoing.is_empty() && round.acks.is_empty() {
            return;
        }
        let outgoing = std::mem::take(&mut round.outgoing);
        let acks = std::mem::take(&mut round.acks);
        if self.state().is_stopped() {
            return;
        }
        let mut per_peer: BTreeMap<NodeKey, Vec<usize>> = BTreeMap::new();
        for (k, (_, to)) in outgoing.iter().enumerate() {
            for key in to {
                per_peer.entry(*key).or_default().push(k);
            }
        }
        let mut groups: BTreeMap<Vec<usize>, Vec<NodeKey>> = BTreeMap::new();
        for (key, indices) in per_peer {
            groups.entry(indices).or_default().push(key);
        }
        for (indices, keys) in groups {
            let messages: Vec<Message> = indices.iter().map(|&k| outgoing[k].0.clone()).collect();
            let mut frames = Vec::new();
            push_frames(&messages, &mut frames);
            for bytes in frames {
                for key in &keys {
                    self.send_bytes(*key, bytes.clone());
                }
            }
        }
        for (author, seq) in acks {
            self.send(author, &Frame::Ack { acks: vec![(author, seq)] });
        }
    }
}

/// `messages` as `Messages` frames, in order: at most `PUSH_MESSAGES` each, and halved until each fits.
fn push_frames(messages: &[Message], out: &mut Vec<Vec<u8>>) {
    for chunk in messages.chunks(PUSH_MESSAGES) {
        match (Frame::Messages { messages: chunk.to_vec() }).encode() {
            Ok(bytes) => out.push(bytes),
            Err(_) if chunk.len() > 1 => {
                let (a, b) = chunk.split_at(chunk.len() / 2);
                push_frames(a, out);
                push_frames(b, out);
            }
            Err(e) => tracing::error!(message = %chunk[0].id(), "message not sent: {e}"),
        }
    }
}
