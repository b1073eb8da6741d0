//! The commit pipeline: how a driver carries out a round of outputs while the round's writes, and earlier
//! rounds' writes, are still on their way to disk.
//!
//! The ordering contract of `Output` says a write must be durable before any output after it is carried out.
//! A driver that waited for each write before taking the next input would do one fsync per round in series;
//! instead it takes inputs while up to `MAX_IN_FLIGHT` rounds commit, and [`Pipeline`] decides, for each
//! round, what may go at once and what waits:
//!
//! - **now**: the outputs ahead of the round's first write when no earlier round is still committing (the
//!   contract holds back only what follows a write); a `FrameAhead` (it acknowledges nothing) while at most
//!   one earlier round is committing; and the `Delivered` / `Acked` events (a message from another author is
//!   durable at its author, and an acknowledgement of our own message was made durable by the peer).
//! - **writes**: every `Persist` and `Store` of the round, to be made durable in one transaction.
//! - **after**: everything else, carried out once this round's writes and every earlier round's are
//!   durable, rounds in order ([`Pipeline::persisted`]).
//!
//! The tokio driver and the simulator both use it, so the simulator's seeds exercise the same ordering the
//! real node keeps (the simulator commits after a simulated disk delay, and a crash loses the rounds still
//! in flight). `T` is what the driver attaches to a round and gets back when it completes (the replies to
//! send once the round's messages are durable).

use crate::io::{Event, Output};
use std::collections::VecDeque;

/// Rounds committing at once, at most: past this, the driver stops taking inputs until the oldest is
/// durable, so that a slow disk slows the node instead of piling up uncommitted work.
pub const MAX_IN_FLIGHT: usize = 16;

/// One round's outputs, sorted by what they wait for.
#[derive(Debug)]
pub struct Ready {
    /// The round's number: `Pipeline::persisted(number)` once `writes` are durable.
    pub number: u64,
    /// Carry these out now, in this order.
    pub now: Vec<Output>,
    /// `Persist` and `Store` outputs, in order: make them durable, in one transaction; then call
    /// `Pipeline::persisted(number)` (when there are none and the driver wrote nothing of its own with the
    /// round, no call is needed: the round is durable).
    pub writes: Vec<Output>,
}

struct Round<T> {
    number: u64,
    after: Vec<Output>,
    extra: T,
    durable: bool,
}

/// The rounds between `begin` and their completion, oldest first.
pub struct Pipeline<T> {
    rounds: VecDeque<Round<T>>,
    next: u64,
}

impl<T> Default for Pipeline<T> {
    fn default() -> Self {
        Pipeline { rounds: VecDeque::new(), next: 1 }
    }
}

impl<T> Pipeline<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rounds begun and not yet completed (their writes, or an earlier round's, are not durable yet).
    pub fn in_flight(&self) -> usize {
        self.rounds.len()
    }

    /// Whether the driver may take more inputs.
    pub fn has_room(&self) -> bool {
        self.rounds.len() < MAX_IN_FLIGHT
    }

    /// Sorts a round's outputs (see the module's doc) and keeps what waits, with `extra`. `own_writes`: the
    /// driver writes something of its own with the round (the tokio driver: a `/nick` name), so the round
    /// waits for its commit even without a `Persist` or `Store`.
    pub fn begin(&mut self, outputs: Vec<Output>, extra: T, own_writes: bool) -> Ready {
        let number = self.next;
        self.next += 1;
        let earlier = self.rounds.len();
        let mut now = Vec::new();
        let mut writes = Vec::new();
        let mut after = Vec::with_capacity(outputs.len());
        let mut ahead = earlier == 0;
        for o in outputs {
            ahead &= !matches!(o, Output::Persist(_) | Output::Store { .. });
            match o {
                o @ (Output::Persist(_) | Output::Store { .. }) => writes.push(o),
                o @ Output::FrameAhead { .. } if earlier <= 1 => now.push(o),
                o if ahead => now.push(o),
                o @ Output::Event(Event::Delivered { .. } | Event::Acked { .. }) => now.push(o),
                o => after.push(o),
            }
        }
        let durable = writes.is_empty() && !own_writes;
        self.rounds.push_back(Round { number, after, extra, durable });
        Ready { number, now, writes }
    }

    /// The writes of round `number` are durable: answers the held outputs (and extras) of every round now
    /// complete, oldest first. A round completes when its writes and those of every earlier round are durable.
    pub fn persisted(&mut self, number: u64) -> Vec<(Vec<Output>, T)> {
        if let Some(r) = self.rounds.iter_mut().find(|r| r.number == number) {
            r.durable = true;
        }
        self.complete()
    }

    /// The rounds at the front whose writes are durable (a round without writes is durable from the start:
    /// it completes as soon as the rounds before it do).
    pub fn complete(&mut self) -> Vec<(Vec<Output>, T)> {
        let mut done = Vec::new();
        while self.rounds.front().is_some_and(|r| r.durable) {
            if let Some(r) = self.rounds.pop_front() {
                done.push((r.after, r.extra));
            }
        }
        done
    }

    /// A crash: every round not yet complete is forgotten, held outputs with it (their writes never become
    /// durable, or become durable with nobody left to carry out what followed them). Answers how many.
    pub fn crash(&mut self) -> usize {
        let n = self.rounds.len();
        self.rounds.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Destination, Snapshot};
    use crate::types::NodeKey;

    fn frame(n: u8) -> Output {
        Output::Frame { to: NodeKey([n; 32]), bytes: vec![n] }
    }
    fn ahead(n: u8) -> Output {
        Output::FrameAhead { to: NodeKey([n; 32]), bytes: vec![n] }
    }
    fn write() -> Output {
        Output::Persist(Snapshot::default())
    }
    fn datagram() -> Output {
        Output::Datagram { to: Destination::Group, bytes: vec![] }
    }
    fn names(os: &[Output]) -> Vec<String> {
        os.iter()
            .map(|o| match o {
                Output::Frame { bytes, .. } => format!("f{}", bytes[0]),
                Output::FrameAhead { bytes, .. } => format!("a{}", bytes[0]),
                Output::Persist(_) => "w".into(),
                Output::Datagram { .. } => "d".into(),
                _ => "?".into(),
            })
            .collect()
    }

    #[test]
    fn what_follows_a_write_waits_for_it_and_rounds_complete_in_order() {
        let mut p: Pipeline<&str> = Pipeline::new();
        // Nothing in flight: the frame ahead of the write goes now, the one after it waits.
        let r1 = p.begin(vec![frame(1), write(), frame(2)], "one", false);
        assert_eq!(names(&r1.now), ["f1"]);
        assert_eq!(names(&r1.writes), ["w"]);
        // Round 1 still committing: round 2's outputs all wait, although it writes nothing, except a
        // FrameAhead (one round in flight).
        let r2 = p.begin(vec![frame(3), ahead(4)], "two", false);
        assert_eq!(names(&r2.now), ["a4"]);
        assert!(r2.writes.is_empty());
        assert_eq!(p.complete().len(), 0, "round 2 waits behind round 1");
        // Two rounds in flight: a FrameAhead waits too.
        let r3 = p.begin(vec![ahead(5), write()], "three", false);
        assert!(r3.now.is_empty());
        assert_eq!(p.in_flight(), 3);
        // Round 3's write lands first: nothing completes until round 1's does.
        assert!(p.persisted(r3.number).is_empty());
        let done = p.persisted(r1.number);
        let got: Vec<(Vec<String>, &str)> = done.iter().map(|(o, e)| (names(o), *e)).collect();
        assert_eq!(got, [(vec!["f2".to_string()], "one"), (vec!["f3".into()], "two"), (vec!["a5".into()], "three")]);
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn a_round_without_writes_completes_at_once_when_nothing_is_ahead() {
        let mut p: Pipeline<()> = Pipeline::new();
        let r = p.begin(vec![datagram(), frame(1)], (), false);
        assert_eq!(names(&r.now), ["d", "f1"]);
        assert!(r.writes.is_empty());
        let done = p.complete();
        assert_eq!(done.len(), 1);
        assert!(done[0].0.is_empty());
        assert!(p.has_room());
    }

    /// A round whose only write is the driver's own (a name) waits for its commit like any other.
    #[test]
    fn a_round_with_only_the_drivers_own_write_waits_for_it() {
        let mut p: Pipeline<()> = Pipeline::new();
        let r1 = p.begin(vec![write()], (), false);
        let r2 = p.begin(vec![frame(1)], (), true);
        assert!(r2.now.is_empty() && r2.writes.is_empty());
        let done = p.persisted(r1.number);
        assert_eq!(done.len(), 1, "round 1 completes, round 2 still waits for its own write");
        assert_eq!(p.in_flight(), 1);
        // And the next round counts it as in flight: nothing of it goes ahead.
        let r3 = p.begin(vec![frame(2), write()], (), false);
        assert!(r3.now.is_empty());
        let done = p.persisted(r2.number);
        assert_eq!(names(&done[0].0), ["f1"]);
    }

    #[test]
    fn a_crash_forgets_the_rounds_in_flight() {
        let mut p: Pipeline<()> = Pipeline::new();
        p.begin(vec![write(), frame(1)], (), false);
        p.begin(vec![frame(2)], (), false);
        assert_eq!(p.crash(), 2);
        assert_eq!(p.in_flight(), 0);
        let r = p.begin(vec![frame(3)], (), false);
        assert_eq!(names(&r.now), ["f3"]);
    }
}
