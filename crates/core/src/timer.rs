//! Timers are data: one slot per kind, the earliest reported by `Node::poll_timeout`.

use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Timer {
    /// Resend `Discover`, with backoff, while looking for a mesh.
    Discover,
    /// Nobody answered within the randomized founding window: found a mesh.
    Found,
    /// A `Join` got no `Welcome`: look for the mesh again.
    JoinDeadline,
    /// Coordinator: heartbeat every member and declare the silent ones failed.
    Heartbeat,
    /// Coordinator: multicast a beacon so that joiners and split meshes find this one.
    Beacon,
    /// Member: the coordinator has been silent for `coordinator_timeout`.
    CoordinatorSilent,
    /// Candidate: no higher-ranked member answered election `round`; announce.
    ElectionAnswer { round: u64 },
    /// Candidate: answered in `round` but no coordinator was announced; start over.
    ElectionAnnounce { round: u64 },
    /// Ping quiet links, close dead ones, dial members without a link.
    Keepalive,
    /// Leaving: stop even if the coordinator never confirmed.
    LeaveDeadline,
    /// Nudge members that have not acknowledged our latest message (with backoff per member).
    Retransmit,
    /// Exchange frontiers with one random linked member.
    AntiEntropy,
    /// The peer we pull pages from went quiet.
    SyncDeadline,
}

impl Timer {
    fn slot(self) -> usize {
        match self {
            Timer::Discover => 0,
            Timer::Found => 1,
            Timer::JoinDeadline => 2,
            Timer::Heartbeat => 3,
            Timer::Beacon => 4,
            Timer::CoordinatorSilent => 5,
            Timer::ElectionAnswer { .. } | Timer::ElectionAnnounce { .. } => 6,
            Timer::Keepalive => 7,
            Timer::LeaveDeadline => 8,
            Timer::Retransmit => 9,
            Timer::AntiEntropy => 10,
            Timer::SyncDeadline => 11,
        }
    }
}

const SLOTS: usize = 12;

#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    slots: [Option<(Instant, Timer)>; SLOTS],
}

impl Timers {
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.slots[timer.slot()] = Some((at, timer));
    }

    /// Moves `timer` to `at` if it is set, is this very timer (the same round) and is due before `at`.
    pub fn postpone(&mut self, timer: Timer, at: Instant) {
        if let Some((due, t)) = &mut self.slots[timer.slot()] {
            if *t == timer && *due < at {
                *due = at;
            }
        }
    }

    pub fn cancel(&mut self, timer: Timer) {
        self.slots[timer.slot()] = None;
    }

    pub fn clear(&mut self) {
        self.slots = Default::default();
    }

    pub fn earliest(&self) -> Option<Instant> {
        self.slots.iter().flatten().map(|(at, _)| *at).min()
    }

    /// Removes and returns the earliest timer due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let slot = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.filter(|(at, _)| *at <= now).map(|(at, _)| (at, i)))
            .min()?
            .1;
        self.slots[slot].take().map(|(_, t)| t)
    }
}
