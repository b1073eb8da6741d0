//! Discovery: finding the mesh through the multicast group, or founding one when nobody answers.
//!
//! Only the coordinator answers a `Discover` (unicast `Offer`) and only the coordinator beacons, so a joiner
//! hears of exactly the coordinators it can reach. Two nodes that found at once each beacon; the coordinator of
//! lower precedence hears the other's beacon and asks to be merged (see `membership.rs`).

use crate::history::MembershipEvent;
use crate::io::{Destination, Event};
use crate::node::{Node, State};
use crate::timer::Timer;
use crate::types::{Contact, NodeId, NodeKey, Term};
use crate::view::{Member, MemberState, View};
use crate::wire::{DatagramBody, Frame, Join};
use rand::Rng;
use std::net::SocketAddr;
use std::time::Instant;

impl Node {
    /// Starts (or restarts) looking for the mesh, with a fresh randomized founding window.
    pub(crate) fn start_discovery(&mut self, now: Instant) {
        let view = self.take_state().into_view();
        self.set_state(State::Discovering { view, attempt: 0 });
        self.clear_role_state();
        self.timers.set(Timer::Discover, now);
        let (lo, hi) = self.cfg.timing.found_window;
        let window = if hi > lo { lo + (hi - lo).mul_f64(self.rng.gen::<f64>()) } else { lo };
        self.timers.set(Timer::Found, now + window);
    }

    /// Multicasts `Discover` and schedules the next one with exponential backoff.
    pub(crate) fn on_discover_timer(&mut self, now: Instant) {
        let Some(attempt) = self.next_discover_attempt() else { return };
        let body =
            DatagramBody::Discover { nonce: self.nonce, key: self.cfg.key, addr: self.cfg.addr, id_hint: self.my_id };
        self.multicast(Destination::Group, body);
        let timing = &self.cfg.timing;
        let backoff = timing.discover_interval.saturating_mul(1 << attempt.min(16));
        let delay = backoff.min(timing.discover_max_interval);
        let delay = self.jitter(delay);
        self.timers.set(Timer::Discover, now + delay);
    }

    /// Coordinator: answer a joiner, unicast to where its datagram came from. A member answers only a
    /// `Discover` sent to it alone (a joiner given its address with `--peer`), pointing to the coordinator:
    /// on the multicast group only the coordinator speaks.
    pub(crate) fn on_discover(&mut self, from: SocketAddr, nonce: u64, key: NodeKey, direct: bool) {
        if key == self.cfg.key {
            return;
        }
        let coordinator = match self.state() {
            State::Coordinator(_) => self.my_contact(),
            State::Member(_) if direct => match self.coordinator_contact() {
                Some(c) if c.key != key => c,
                _ => return,
            },
            _ => return,
        };
        let body = DatagramBody::Offer { nonce, coordinator, term: self.term() };
        self.multicast(Destination::Addr(from), body);
    }

    pub(crate) fn on_offer(&mut self, now: Instant, nonce: u64, coordinator: Contact) {
        if matches!(self.state(), State::Discovering { .. }) && nonce == self.nonce && coordinator.key != self.cfg.key {
            self.join(now, coordinator);
        }
    }

    /// A beacon is as good as an offer to a joiner; to a coordinator it may reveal another part of the mesh.
    pub(crate) fn on_beacon(&mut self, now: Instant, coordinator: Contact, term: Term, members: u32) {
        if coordinator.key == self.cfg.key {
            return;
        }
        match self.state() {
            State::Discovering { .. } => self.join(now, coordinator),
            State::Coordinator(_) => self.on_foreign_coordinator(now, coordinator, term, members),
            _ => {}
        }
    }

    /// Coordinator: multicast a beacon, then schedule the next.
    pub(crate) fn on_beacon_timer(&mut self, now: Instant) {
        let Some(view) = self.state().coordinator_view() else { return };
        let body = DatagramBody::Beacon {
            coordinator: self.my_contact(),
            term: view.term,
            version: view.version,
            members: self.part_size(now),
        };
        self.multicast(Destination::Group, body);
        let delay = self.jitter(self.cfg.timing.beacon_interval);
        self.timers.set(Timer::Beacon, now + delay);
    }

    /// Sends `Join` to `coordinator` and waits for `Welcome` (also used to rejoin after a step-down or when
    /// a new view leaves this node out).
    pub(crate) fn join(&mut self, now: Instant, coordinator: Contact) {
        if self.leaving {
            // A leaving node tells whichever coordinator it learns of that it is leaving; it never rejoins.
            let term = self.term();
            self.learn_addr(coordinator.key, coordinator.addr);
            self.send(coordinator.key, &Frame::Leave { term });
            return;
        }
        if self.join_backoff.get(&coordinator.key).is_some_and(|(until, _)| now < *until) {
            return;
        }
        let view = self.take_state().into_view();
        self.set_state(State::Joining { view, contact: coordinator });
        self.clear_role_state();
        self.learn_addr(coordinator.key, coordinator.addr);
        self.send_join(coordinator.key, self.my_id);
        self.timers.set(Timer::JoinDeadline, now + self.cfg.timing.join_timeout);
    }

    pub(crate) fn send_join(&mut self, coordinator: NodeKey, id_hint: Option<NodeId>) {
        let join = Join {
            mesh: self.cfg.mesh.clone(),
            name: self.cfg.name.clone(),
            addr: self.cfg.addr,
            id_hint,
            next_id_seen: self.next_id_seen,
        };
        self.send(coordinator, &Frame::Join(join));
    }

    /// No `Welcome` came: the link may be dead without either side knowing, so close it, and look again.
    pub(crate) fn join_timed_out(&mut self, now: Instant) {
        if let State::Joining { contact, .. } = self.state() {
            let key = contact.key;
            self.disconnect(key);
        }
        self.start_discovery(now);
    }

    /// Nobody answered: found a mesh. A restarted node keeps its ID and its registry of keys (so that
    /// returning keys get their IDs back and `next_id` never decreases); the others are not known to be
    /// alive, so they are marked failed until they rejoin.
    pub(crate) fn found(&mut self, now: Instant) {
        let State::Discovering { view: saved, .. } = self.state() else { return };
        let me = Member {
            id: self.my_id.unwrap_or(NodeId(1)),
            key: self.cfg.key,
            name: self.cfg.name.clone(),
            addr: self.cfg.addr,
            state: MemberState::Alive,
        };
        // A node back under another name that finds nobody: its own view renames it, recorded as a rename.
        let renamed = saved.as_ref().and_then(|v| v.get(&me.key)).map(|m| m.name.clone()).filter(|n| *n != me.name);
        let view = match saved.clone() {
            Some(mut saved) => {
                for m in saved.members.iter_mut().filter(|m| m.key != self.cfg.key && m.is_alive()) {
                    m.state = MemberState::Failed;
                }
                saved.admit(me.key, &me.name, me.addr, Some(me.id));
                saved.term = self.fresh_term(saved.term.saturating_add(1));
                saved
            }
            None => View::founding(1, me),
        };
        self.become_coordinator_with(now, view.clone(), view);
        let id = self.my_id.unwrap_or_default();
        if let Some(old) = renamed {
            let (key, new) = (self.cfg.key, self.cfg.name.clone());
            self.record(now, MembershipEvent::Renamed { id, key, old, new });
        }
        self.event(Event::Founded { id, term: self.term() });
    }
}
