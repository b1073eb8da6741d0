//! Local health: a node that was itself late does not take its own lateness for others' silence.
//!
//! The idea is Lifeguard's (memberlist's "local health"): failure detection measures silence, and silence
//! measured by a process that was stopped (SIGSTOP, swapped out, starved of CPU) includes the time it could
//! not listen. Every input and timeout first checks how late the node is against its earliest timer; a
//! node late by `Timing::stall_threshold` or more has stalled, and then
//! - every peer's silence is measured from the end of the stall (`heard_at`), so each gets a full timeout
//!   to be heard again before it is suspected or declared failed;
//! - the timers that judge others (coordinator silence, election answers and announcements, a join or a
//!   sync waiting for a reply, founding a mesh) are pushed a full period past the stall, so that what
//!   arrived meanwhile is read before anything is concluded;
//! - a running election asks again whoever has not answered (the question may have been lost while the
//!   node was stopped), and a dial that fails within `link_timeout` of the stall is no evidence (it may
//!   have failed waiting on us).
//!
//! A stall costs at most one timeout of detection, never a false `failed` line in the history.

use crate::node::Node;
use crate::timer::Timer;
use crate::types::NodeKey;
use std::time::Instant;

impl Node {
    /// Called first on every input and timeout: notices that this node is late and gives peers a fresh chance.
    pub(crate) fn check_own_lateness(&mut self, now: Instant) {
        let Some(due) = self.timers.earliest() else { return };
        let late = now.saturating_duration_since(due);
        if late < self.cfg.timing.stall_threshold {
            return;
        }
        self.stats.stalls += 1;
        tracing::info!(node = %self.cfg.key, late_ms = late.as_millis() as u64, "this node stalled: peers get a fresh chance");
        self.stalled_until = Some(now);
        // Who followed us before the stall is no evidence of who follows us now (see `part_size`), and our
        // coordinator's silence is measured from now.
        self.forget_evidence(now);
        let timing = self.cfg.timing.clone();
        for (timer, period) in [
            (Timer::CoordinatorSilent, timing.coordinator_timeout),
            (Timer::JoinDeadline, timing.join_timeout),
            (Timer::SyncDeadline, timing.sync_timeout),
            (Timer::Found, timing.found_window.0),
        ] {
            self.timers.postpone(timer, now + period);
        }
        if let Some(e) = self.state().election() {
            let round = e.round;
            self.timers.postpone(Timer::ElectionAnswer { round }, now + timing.election_answer_timeout);
            self.timers.postpone(Timer::ElectionAnnounce { round }, now + timing.election_announce_timeout);
        }
        self.ask_again(now);
    }

    /// This node stalled within the last `link_timeout`: a dial that failed now may have failed waiting on
    /// us (a stopped process does not finish a handshake), so it is no evidence about the peer.
    pub(crate) fn stalled_recently(&self, now: Instant) -> bool {
        self.stalled_until.is_some_and(|s| now.saturating_duration_since(s) < self.cfg.timing.link_timeout)
    }

    /// When `key` was last heard, for judging its silence: never before the end of this node's last stall.
    pub(crate) fn heard_at(&self, key: &NodeKey) -> Option<Instant> {
        let heard = self.peers.get(key).and_then(|p| p.last_heard);
        match (heard, self.stalled_until) {
            (Some(h), Some(s)) => Some(h.max(s)),
            (h, s) => h.or(s),
        }
    }
}
