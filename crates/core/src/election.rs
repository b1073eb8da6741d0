//! Election: Bully with terms.
//!
//! A candidate proposes the term after its view's and asks every higher-ranked live member (reachable, as
//! far as it knows). An `Answer` means "I outrank you and am alive: wait for my announcement"; silence until
//! `election_answer_timeout` means the candidate is the highest live member, and it announces itself by
//! publishing its view at the new term. A candidate that was answered but sees no announcement within
//! `election_announce_timeout` starts over. Proposals change nobody's term; only an announced view does, and
//! views are ordered by `(term, coordinator rank, version)`, so two announcements of one term resolve the
//! same way on every node.

use crate::ballot::Election;
use crate::io::Event;
use crate::node::{Node, State};
use crate::timer::Timer;
use crate::types::{NodeKey, Term};
use crate::view::MemberState;
use crate::wire::Frame;
use std::collections::BTreeSet;
use std::time::Instant;

impl Node {
    /// Member: the coordinator is silent, or its link dropped and could not be re-established.
    pub(crate) fn suspect_coordinator(&mut self, now: Instant) {
        if !matches!(self.state(), State::Member(_)) || self.leaving {
            return;
        }
        if let Some(coordinator) = self.coordinator() {
            self.stats.heartbeats_missed += 1;
            self.start_election(now, Some(coordinator));
        }
    }

    pub(crate) fn start_election(&mut self, now: Instant, suspect: Option<NodeKey>) {
        let Some(view) = self.state().mesh_view() else { return };
        if self.leaving || self.state().election().is_some() {
            return;
        }
        let me = self.my_rank();
        let term = view.term.saturating_add(1);
        // The suspected coordinator is asked too, whatever its rank: if only we lost track of it (we were
        // stalled, or it stepped down to follow another coordinator), its heartbeat or redirect ends this
        // election instead of a false `failed` line about it.
        let waiting: BTreeSet<NodeKey> = view
            .alive()
            .filter(|m| m.rank() > me || Some(m.key) == suspect)
            .map(|m| m.key)
            .filter(|k| *k != self.cfg.key && !self.is_unreachable(k))
            .collect();
        self.election_round += 1;
        self.stats.elections_started += 1;
        self.event(Event::ElectionStarted { term });
        tracing::debug!(node = %self.cfg.key, term, asked = waiting.len(), "election started");
        if waiting.is_empty() {
            self.win_election(now, term, suspect);
            return;
        }
        let round = self.election_round;
        let frame = Frame::Election { term, suspect };
        for key in &waiting {
            self.send(*key, &frame);
        }
        if let Some(slot) = self.election_slot() {
            *slot = Some(Election {
                round,
                term,
                suspect,
                waiting,
                answered: false,
                started: now,
                asked_at: now,
                asked_twice: false,
            });
        }
        self.timers.set(Timer::ElectionAnswer { round }, now + self.cfg.timing.election_answer_timeout);
    }

    pub(crate) fn cancel_election(&mut self) {
        if self.take_election().is_some() {
            self.timers.cancel(Timer::ElectionAnswer { round: 0 });
        }
    }

    /// Somebody is running: a candidate that suspects a coordinator other than ours is in another view, and
    /// is only redirected. Otherwise a higher-ranked node answers it. Then, if the candidate suspects our
    /// coordinator (it heard nothing from it for `coordinator_timeout`):
    /// - a coordinator proves it is alive with a heartbeat, which ends the candidate's election without a
    ///   new term: a live coordinator is never displaced, whoever outranks it;
    /// - a member runs its own election only if it has not heard its coordinator recently either: otherwise
    ///   the coordinator is alive, and a cascade of elections would only churn terms.
    ///
    /// If the election is forced (`/elect`, no suspect), it elects the highest-ranked live member, as Bully
    /// does: a coordinator with members above it hands over (runs, and loses to them); one at the top
    /// re-announces at a new term if the candidate proposed one above its own, so once per term; a member
    /// runs its own unless its live coordinator outranks it (then the coordinator takes it from there).
    pub(crate) fn on_election(&mut self, now: Instant, from: NodeKey, proposed: Term, suspect: Option<NodeKey>) {
        let Some(view) = self.state().mesh_view() else { return };
        let coordinating = matches!(self.state(), State::Coordinator(_));
        let me = self.my_rank();
        let Some(their_rank) = view.get(&from).filter(|m| m.is_alive()).map(|m| m.rank()) else {
            if coordinating && view.get(&from).is_some() {
                // A member we declared failed that is alive after all: our view tells it to rejoin.
                let view = view.clone();
                self.send(from, &Frame::View { view });
                return;
            }
            self.redirect(from);
            self.reject(crate::stats::Reject::NotMember, &format!("election from {from}"));
            return;
        };
        let (term, version, coordinator) = (view.term, view.version, view.coordinator);
        if suspect.is_some_and(|s| s != coordinator) {
            // The candidate suspects a coordinator that is not ours: it holds another view (we moved on to
            // another mesh, or it was left behind). An answer would make it wait for an announcement that we
            // will never make; it is told where we are instead, and its election goes on without us.
            self.redirect(from);
            return;
        }
        if coordinating && suspect == Some(self.cfg.key) {
            // Suspected, but alive: prove it to the candidate, whatever our ranks.
            self.send(from, &Frame::Answer { term: proposed });
            self.send(from, &Frame::Heartbeat { term, version });
            return;
        }
        if their_rank > me {
            return;
        }
        let at_top = !view.alive().any(|m| m.rank() > me);
        let coordinator_above = view.rank_of(&coordinator).is_some_and(|r| r > me);
        let forced = suspect.is_none();
        self.send(from, &Frame::Answer { term: proposed });
        let State::Member(f) = self.state() else {
            if forced && !at_top {
                self.start_election(now, None);
            } else if forced && proposed > term {
                self.stats.elections_started += 1;
                self.event(Event::ElectionStarted { term: term.saturating_add(1) });
                self.win_election(now, term.saturating_add(1), None);
            } else {
                self.send(from, &Frame::Heartbeat { term, version });
            }
            return;
        };
        let coordinator_heard =
            now.saturating_duration_since(f.coordinator_heard) < self.cfg.timing.coordinator_timeout;
        if forced && !(coordinator_heard && coordinator_above) {
            self.start_election(now, None);
        } else if !forced && !coordinator_heard && suspect == Some(coordinator) {
            self.start_election(now, suspect);
        }
    }

    pub(crate) fn on_answer(&mut self, now: Instant, from: NodeKey, _term: Term) {
        let Some(e) = self.election_mut() else { return };
        if !e.waiting.contains(&from) || e.answered {
            return;
        }
        e.answered = true;
        let round = e.round;
        self.timers.set(Timer::ElectionAnnounce { round }, now + self.cfg.timing.election_announce_timeout);
    }

    /// A higher-ranked member we asked cannot be reached: it will not answer.
    pub(crate) fn election_target_gone(&mut self, now: Instant, key: NodeKey) {
        let Some(e) = self.election_mut() else { return };
        if !e.waiting.remove(&key) || e.answered || !e.waiting.is_empty() {
            return;
        }
        let (term, suspect) = (e.term, e.suspect);
        self.win_election(now, term, suspect);
    }

    /// Nobody higher answered in time: the candidate wins, unless the suspect was heard since it was asked
    /// and has not been asked twice. A suspect that sends us anything is alive and reachable; if it did not
    /// answer, the question was likely lost (for example with a link that closed while this node was
    /// stopped), so it is asked once more rather than written failed. A suspect heard during the election
    /// that still does not answer (it follows another coordinator now) is not written failed when the
    /// candidate wins: it stays in the view, and the two parts' merge settles where it belongs.
    pub(crate) fn on_election_answer_timeout(&mut self, now: Instant, round: u64) {
        let Some(e) = self.state().election().filter(|e| e.round == round && !e.answered) else { return };
        let (term, suspect, started, asked_at, asked_twice) = (e.term, e.suspect, e.started, e.asked_at, e.asked_twice);
        let heard_since = |k: &NodeKey, t: Instant| self.peers.get(k).and_then(|p| p.last_heard).is_some_and(|h| h > t);
        if !asked_twice && suspect.as_ref().is_some_and(|k| heard_since(k, asked_at)) {
            tracing::debug!(node = %self.cfg.key, "the suspect was heard during the election: asking again");
            if let Some(e) = self.election_mut() {
                e.asked_twice = true;
            }
            self.ask_again(now);
            self.timers.set(Timer::ElectionAnswer { round }, now + self.cfg.timing.election_answer_timeout);
            return;
        }
        let silent = suspect.filter(|k| !heard_since(k, started));
        self.win_election(now, term, silent);
    }

    /// After this node stalled: the running election's question may have been lost while it was stopped
    /// (links close, and nothing it sent arrived), so whoever has not answered is asked again.
    pub(crate) fn ask_again(&mut self, now: Instant) {
        let Some(e) = self.election_mut().filter(|e| !e.answered) else { return };
        e.asked_at = now;
        let frame = Frame::Election { term: e.term, suspect: e.suspect };
        let waiting: Vec<NodeKey> = e.waiting.iter().copied().collect();
        for key in waiting {
            self.send(key, &frame);
        }
    }

    pub(crate) fn on_election_announce_timeout(&mut self, now: Instant, round: u64) {
        let Some(e) = self.take_election().filter(|e| e.round == round) else { return };
        self.start_election(now, e.suspect);
    }

    /// Nobody higher answered: announce ourselves at `term` (or above our view's). The suspected
    /// coordinator did not answer, so it is marked failed in the announced view.
    fn win_election(&mut self, now: Instant, term: Term, suspect: Option<NodeKey>) {
        let Some(base) = self.state().mesh_view().cloned() else { return };
        let mut view = base.clone();
        view.term = self.fresh_term(term.max(view.term.saturating_add(1)));
        // Only an alive coordinator can have failed: one that left gracefully stays `Left`.
        if let Some(s) = suspect.filter(|s| *s != self.cfg.key && view.is_alive(s)) {
            if view.set_state(&s, MemberState::Failed) {
                self.stats.members_failed += 1;
            }
        }
        self.stats.elections_won += 1;
        tracing::debug!(node = %self.cfg.key, term = view.term, "won election");
        self.become_coordinator_with(now, base, view);
    }
}
