//! Membership: the coordinator is the single writer of the view; it admits joiners, replicates every change,
//! heartbeats the members and declares the silent ones failed. Members follow the highest view they see
//! (`View::order`) and rejoin when a view leaves them out. Parts of a split mesh merge under the
//! coordinator of higher precedence `(members following it, term, rank)`.

use crate::io::{Destination, Event};
use crate::node::{Coordinating, Following, Node, State};
use crate::stats::Reject;
use crate::timer::Timer;
use crate::types::{Contact, NodeId, NodeKey, Term};
use crate::view::{MemberState, View, MAX_NAME_LEN};
use crate::wire::{DatagramBody, Frame, Join};
use std::time::{Duration, Instant};

impl Node {
    /// Coordinator: admit (or readmit) a joiner. The view is replicated to the members before the joiner is
    /// welcomed, so that whoever the joiner talks to next already knows it.
    pub(crate) fn on_join(&mut self, now: Instant, from: NodeKey, join: Join) {
        if join.mesh != self.cfg.mesh {
            self.reject(Reject::WrongMesh, &format!("join from {from} for mesh {:?}", join.mesh));
            return;
        }
        if join.name.len() > MAX_NAME_LEN {
            self.reject(Reject::OutOfBounds, &format!("join from {from}: name of {} bytes", join.name.len()));
            return;
        }
        let mut view = match self.state().coordinator_view() {
            Some(view) if !self.leaving => view.clone(),
            _ => {
                self.redirect(from);
                self.reject(Reject::NotCoordinator, &format!("join from {from}"));
                return;
            }
        };
        self.learn_next_id(view.next_id, join.next_id_seen);
        let was_member = view.is_alive(&from);
        let raised = view.raise_next_id(self.next_id_seen);
        let admission = view.admit(from, &join.name, join.addr, join.id_hint);
        self.learn_addr(from, join.addr);
        if let Some(hint) = join.id_hint.filter(|h| *h != admission.id) {
            self.event(Event::IdReassigned { key: from, old: hint, new: admission.id });
        }
        if let Some(peer) = self.peers.get_mut(&from) {
            peer.last_heard = Some(now);
        }
        if was_member {
            // A member asking to keep its ID, or a restarted one we had not missed: it gets the view.
            if admission.changed || raised {
                self.publish(now, view, None);
            } else {
                let view = view.clone();
                self.send(from, &Frame::View { view });
            }
            return;
        }
        if admission.changed || raised {
            self.publish(now, view, Some(from));
        }
        if let Some(view) = self.state().coordinator_view() {
            let view = view.clone();
            self.send(from, &Frame::Welcome { view });
        }
    }

    /// Joiner: the coordinator we asked admitted us. A `Welcome` we did not ask for, or from anyone else,
    /// is refused: it could only be forged or stale.
    pub(crate) fn on_welcome(&mut self, now: Instant, from: NodeKey, view: View) {
        if !matches!(self.state(), State::Joining { contact, .. } if contact.key == from) {
            self.reject(Reject::UnexpectedWelcome, &format!("from {from}"));
            return;
        }
        if !self.acceptable_view(from, &view) || !view.is_alive(&self.cfg.key) {
            self.reject(Reject::InvalidView, &format!("welcome from {from}"));
            return;
        }
        self.enter_mesh(now, view);
    }

    /// Joiner -> member.
    fn enter_mesh(&mut self, now: Instant, view: View) {
        self.clear_role_state();
        self.join_backoff.clear();
        let (term, coordinator) = (view.term, view.coordinator);
        let old = self.take_state().into_view();
        self.install(old.as_ref(), false, Following { view, coordinator_heard: now, election: None });
        self.coordinator_alive(now);
        let id = self.my_id.unwrap_or_default();
        self.event(Event::Joined { id, term, coordinator });
        self.send_frontier(coordinator, false);
        self.after_view_change(now);
    }

    /// A view must come from its own coordinator and be internally consistent.
    fn acceptable_view(&mut self, from: NodeKey, view: &View) -> bool {
        view.coordinator == from && view.validate().is_ok()
    }

    pub(crate) fn on_view(&mut self, now: Instant, from: NodeKey, view: View) {
        if !self.acceptable_view(from, &view) {
            self.reject(Reject::InvalidView, &format!("view from {from}"));
            return;
        }
        let me = self.cfg.key;
        match self.state() {
            State::Joining { view: held, contact } => {
                let newer = held.as_ref().is_none_or(|mine| view.order() > mine.order());
                let from_target = contact.key == from;
                // A view that moves us off our own (free) ID predates our `Join`: wait for its answer.
                if view.is_alive(&me) && (from_target || newer) && self.moved_off_free_id(&view).is_none() {
                    self.enter_mesh(now, view);
                }
            }
            State::Member(Following { view: held, .. }) | State::Coordinator(Coordinating { view: held, .. }) => {
                let mine = held.order();
                let theirs = view.order();
                if theirs > mine {
                    self.follow(now, view);
                } else if (theirs.0, theirs.1) < (mine.0, mine.1) {
                    self.redirect(from);
                    self.reject(Reject::StaleTerm, &format!("view of term {} from {from}", theirs.0));
                }
            }
            State::Discovering { .. } | State::Stopped { .. } => {}
        }
    }

    /// Adopts a view that supersedes ours (stepping down if we coordinated), or rejoins if it leaves us out.
    fn follow(&mut self, now: Instant, view: View) {
        let me = self.cfg.key;
        // Leaving, and the view records us as left, or does not know us at all (a view of a part we were never
        // merged into: its coordinator cannot record our departure, and would answer every `Leave` with
        // this same view): we are out.
        if self.leaving && view.get(&me).is_none_or(|m| m.state == MemberState::Left) {
            if view.get(&me).is_some() {
                // Recorded as left: a member of that view on its way out, until it stops just below.
                let (old, election) = match self.take_state() {
                    State::Member(f) => (f.view, f.election),
                    State::Coordinator(c) => (c.view, c.election),
                    other => {
                        self.set_state(other);
                        return;
                    }
                };
                self.install(Some(&old), true, Following { view, coordinator_heard: now, election });
            }
            self.stop();
            return;
        }
        let coordinator = view.coordinator_member().expect("validated").contact();
        if !view.is_alive(&me) {
            self.join(now, coordinator);
            return;
        }
        if let Some(mine) = self.moved_off_free_id(&view) {
            // The coordinator moved us to another ID although ours is free there (it merged an older picture
            // of us): ask it to keep ours, as a join would, rather than take the new one.
            self.send_join(coordinator.key, Some(mine));
            return;
        }
        if let State::Coordinator(_) = self.state() {
            self.clear_role_state();
            self.hand_over_members(&view);
        }
        self.stats.views_adopted += 1;
        let (old, election) = match self.take_state() {
            State::Member(f) => (f.view, f.election),
            // A coordinator stepping down: its election (a forced one) ends with its role.
            State::Coordinator(c) => (c.view, None),
            other => {
                self.set_state(other);
                return;
            }
        };
        self.install(Some(&old), true, Following { view, coordinator_heard: now, election });
        self.coordinator_alive(now);
        self.after_view_change(now);
    }

    /// A coordinator stepping down to follow `view`: members of ours that it leaves out are told where the
    /// mesh is now, and rejoin at once. Left alone, they would hear no heartbeat, suspect us and elect, and
    /// the winner would record us as failed although we are alive and linked.
    fn hand_over_members(&mut self, view: &View) {
        let Some(mine) = self.state().coordinator_view() else { return };
        let Some(coordinator) = view.coordinator_member().map(|m| m.contact()) else { return };
        let stranded: Vec<NodeKey> =
            mine.alive().map(|m| m.key).filter(|k| *k != self.cfg.key && !view.is_alive(k)).collect();
        let frame = Frame::NotCoordinator { term: view.term, coordinator: Some(coordinator) };
        for key in stranded {
            self.send(key, &frame);
        }
    }

    /// Our own ID, if `view` gives us another one although ours is free in it.
    fn moved_off_free_id(&self, view: &View) -> Option<NodeId> {
        let offered = view.get(&self.cfg.key).map(|m| m.id);
        self.my_id.filter(|id| Some(*id) != offered && view.by_id(*id).is_none())
    }

    /// After a member adopts a view: keep the full mesh, and start an election if the coordinator is gone.
    /// A live coordinator is followed even by members that outrank it (a restarted senior member): rank
    /// decides elections, it does not start them, so joins and restarts never change the coordinator.
    fn after_view_change(&mut self, now: Instant) {
        self.dial_members(now);
        let Some(view) = self.state().mesh_view() else { return };
        let coordinator = view.coordinator;
        if !view.is_alive(&coordinator) {
            self.take_election();
            self.start_election(now, Some(coordinator));
        } else if self.state().election().is_some_and(|e| e.suspect.is_some() || view.term >= e.term) {
            // A suspicion is moot now that we follow a live coordinator; an election a user asked for
            // (`/elect`) ends with the announcement of its term (or a later one).
            self.cancel_election();
        }
    }

    pub(crate) fn on_view_request(&mut self, from: NodeKey) {
        match self.state().coordinator_view() {
            Some(view) if view.is_alive(&from) => {
                let view = view.clone();
                self.send(from, &Frame::View { view });
            }
            _ => self.redirect(from),
        }
    }

    /// Tells `to` which coordinator this node follows.
    pub(crate) fn redirect(&mut self, to: NodeKey) {
        let frame = Frame::NotCoordinator { term: self.term(), coordinator: self.coordinator_contact() };
        self.send(to, &frame);
    }

    pub(crate) fn on_not_coordinator(&mut self, now: Instant, from: NodeKey, term: Term, hint: Option<Contact>) {
        let Some(hint) = hint.filter(|c| c.key != self.cfg.key) else { return };
        match self.state() {
            State::Joining { contact, .. } if contact.key == from && contact.key != hint.key => self.join(now, hint),
            // A coordinator told of another coordinator does not just join it: which part merges into which is
            // decided by precedence, so it shows the other its beacon (size included) and the other answers
            // with its own or asks to be merged.
            State::Coordinator(_) => {
                let recently = self
                    .merge_requested
                    .get(&hint.key)
                    .is_some_and(|t| now.saturating_duration_since(*t) < self.cfg.timing.beacon_interval);
                if !recently {
                    self.merge_requested.insert(hint.key, now);
                    self.beacon_to(now, hint);
                }
            }
            State::Member(Following { view, .. }) => {
                // A greater (term, coordinator) means we are behind; an equal one, sent in answer to us, means
                // its sender does not count us as a member: either way the hinted coordinator sorts it out.
                let mine = (view.term, view.rank_of(&view.coordinator));
                if (term, Some(hint.rank())) >= mine {
                    self.join(now, hint);
                }
            }
            _ => {}
        }
    }

    /// Member: answer the coordinator's heartbeat with our view version; refuse a stale coordinator.
    pub(crate) fn on_heartbeat(&mut self, now: Instant, from: NodeKey, term: Term) {
        let Some(view) = self.state().mesh_view() else { return };
        if term < view.term {
            self.redirect(from);
            self.reject(Reject::StaleTerm, &format!("heartbeat of term {term} from {from}"));
            return;
        }
        let ack = Frame::HeartbeatAck {
            term: view.term,
            version: view.version,
            coordinator: view.coordinator,
            next_id_seen: self.next_id_seen,
        };
        let from_coordinator = view.coordinator == from;
        let my_term = view.term;
        let outranks_me = view.rank_of(&from).is_some_and(|r| r > self.my_rank());
        if from_coordinator && term == my_term && matches!(self.state(), State::Member(_)) {
            self.coordinator_alive(now);
        }
        self.send(from, &ack);
        if self.leaving && from_coordinator {
            // Our `Leave` may have been lost: repeat it until the coordinator records it.
            self.send(from, &Frame::Leave { term: my_term });
        }
        // The coordinator is alive: a suspicion of it is unfounded, and an election it outranks is moot.
        if from_coordinator && self.state().election().is_some_and(|e| e.suspect == Some(from) || outranks_me) {
            self.cancel_election();
        }
    }

    /// Coordinator: a member is alive; resend the view if it is behind; take up a higher `next_id`.
    pub(crate) fn on_heartbeat_ack(
        &mut self,
        now: Instant,
        from: NodeKey,
        held: (Term, u64, NodeKey),
        next_id_seen: NodeId,
    ) {
        let Some(view) = self.state().coordinator_view() else { return };
        // An ack read just after a stall may have waited in a socket buffer through it (sent before the
        // others elected someone else): only acks read a heartbeat period after it show who follows us now.
        let fresh =
            self.stalled_until.is_none_or(|s| now.saturating_duration_since(s) >= self.cfg.timing.heartbeat_interval);
        let follows = fresh && held.0 == view.term && held.2 == self.cfg.key;
        // Any other (term, version) than ours means the member holds another view: older, or of another
        // coordinator of the same term. Either way it needs ours (and tells us if ours is the stale one).
        let behind = !view.is_alive(&from) || held != (view.term, view.version, view.coordinator);
        let current = view.next_id;
        if follows {
            self.follower_heard(from, now);
        }
        if next_id_seen > current && self.learn_next_id(current, next_id_seen) {
            if let Some(view) = self.state().coordinator_view().cloned() {
                self.publish(now, view, None);
            }
        } else if behind {
            if let Some(view) = self.state().coordinator_view().cloned() {
                self.send(from, &Frame::View { view });
            }
        }
    }

    /// Takes up a `next_id` a member has seen, if plausible: no real mesh is more than a view's worth of
    /// IDs ahead of another part. Returns whether it was taken.
    fn learn_next_id(&mut self, current: NodeId, seen: NodeId) -> bool {
        if seen.0 > current.0.saturating_add(crate::view::MAX_VIEW_ENTRIES as u32) {
            self.reject(Reject::OutOfBounds, &format!("next_id {seen} far beyond {current}"));
            return false;
        }
        self.next_id_seen = self.next_id_seen.max(seen);
        true
    }

    /// Coordinator, every `heartbeat_interval`: heartbeat the members, declare the silent ones failed.
    pub(crate) fn on_heartbeat_timer(&mut self, now: Instant) {
        let State::Coordinator(Coordinating { view, since, .. }) = self.state() else { return };
        let timeout = self.cfg.timing.member_timeout;
        let since = *since;
        let (mut silent, mut fine) = (Vec::new(), Vec::new());
        for m in view.alive().filter(|m| m.key != self.cfg.key) {
            let heard = self.heard_at(&m.key).map_or(since, |t| t.max(since));
            if now.saturating_duration_since(heard) >= timeout {
                silent.push(m.key);
            } else {
                fine.push(m.key);
            }
        }
        if let Ok(bytes) = (Frame::Heartbeat { term: view.term, version: view.version }).encode() {
            for key in fine {
                self.send_bytes(key, bytes.clone());
                self.stats.heartbeats_sent += 1;
            }
        }
        if !silent.is_empty() {
            self.declare_failed(now, silent);
        }
        self.timers.set(Timer::Heartbeat, now + self.cfg.timing.heartbeat_interval);
    }

    /// Coordinator: mark `keys` failed and announce it. Not once a peer has shown us a view of a later
    /// term: another coordinator has taken over, and failures judged for a term we no longer hold would be
    /// false lines in everyone's history (we step down as soon as the newer coordinator's view or a redirect
    /// reaches us).
    pub(crate) fn declare_failed(&mut self, now: Instant, keys: Vec<NodeKey>) {
        if self.superseded(now) {
            tracing::info!(node = %self.cfg.key, term = self.term(), "superseded: no failures declared");
            return;
        }
        self.stats.heartbeats_missed += keys.len() as u64;
        let Some(mut view) = self.state().coordinator_view().cloned() else { return };
        let mut changed = false;
        for key in &keys {
            changed |= view.set_state(key, MemberState::Failed);
        }
        if changed {
            self.stats.members_failed += keys.len() as u64;
            self.publish(now, view, None);
            // Tell them too, best effort: one that is alive after all (a stall, a dial that failed by
            // chance) learns it is out and rejoins, instead of running an election nobody answers.
            if let Some(view) = self.state().coordinator_view().cloned() {
                for key in keys {
                    self.send(key, &Frame::View { view: view.clone() });
                }
            }
        }
    }

    /// A peer showed us a later term within the last `member_timeout` (evidence that must keep coming: a
    /// peer that once sent a wild term does not silence failure detection for good).
    fn superseded(&self, now: Instant) -> bool {
        self.term_heard.is_some_and(|(term, at)| {
            term > self.term() && now.saturating_duration_since(at) < self.cfg.timing.member_timeout
        })
    }

    pub(crate) fn on_leave(&mut self, now: Instant, from: NodeKey) {
        let Some(mut view) = self.state().coordinator_view().cloned() else {
            self.redirect(from);
            return;
        };
        if view.set_state(&from, MemberState::Left) {
            self.publish(now, view, None);
        }
        if let Some(view) = self.state().coordinator_view().cloned() {
            self.send(from, &Frame::View { view });
        }
    }

    /// `/quit`: a member asks the coordinator to record its departure; a coordinator records its own and
    /// replicates it, which makes the members elect a successor at once.
    pub(crate) fn leave(&mut self, now: Instant) {
        match self.state() {
            State::Discovering { .. } | State::Joining { .. } => self.stop(),
            State::Member(_) => {
                self.leaving = true;
                let term = self.term();
                if let Some(c) = self.coordinator() {
                    self.send(c, &Frame::Leave { term });
                }
                self.timers.set(Timer::LeaveDeadline, now + self.cfg.timing.leave_timeout);
            }
            State::Coordinator(c) => {
                let mut view = c.view.clone();
                self.leaving = true;
                view.set_state(&self.cfg.key, MemberState::Left);
                self.publish(now, view, None);
                // Give the driver a moment to flush the view before the links close.
                self.timers.set(Timer::LeaveDeadline, now + self.cfg.timing.heartbeat_interval);
                self.timers.cancel(Timer::Heartbeat);
                self.timers.cancel(Timer::Beacon);
            }
            State::Stopped { .. } => {}
        }
    }

    /// Coordinator: another coordinator of the same mesh exists (a healed partition, simultaneous founders,
    /// a stale coordinator back from a stall, a member that was cut off and elected itself, a restarted
    /// member that founded alone). The part of lower precedence asks the other to merge it. Precedence is
    /// `(members, term, rank)`: the part that more members follow (acknowledged a heartbeat of its term
    /// within `member_timeout`) wins, so a coordinator of one, whatever its term or rank, joins the mesh
    /// instead of taking it over, and a live coordinator is displaced only by a larger part; then the later
    /// election; then seniority. Every node compares the same triple (the beacon carries the size).
    pub(crate) fn on_foreign_coordinator(&mut self, now: Instant, other: Contact, other_term: Term, other_size: u32) {
        let recently = self
            .merge_requested
            .get(&other.key)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.cfg.timing.beacon_interval);
        if recently {
            return;
        }
        self.merge_requested.insert(other.key, now);
        let mine = (self.part_size(now), self.term(), self.my_rank());
        if (other_size, other_term, other.rank()) <= mine {
            // A coordinator of lower precedence asks to merge once it hears us. It may not hear our multicast
            // (its membership of the group can be gone, e.g. after its interface was replaced), so tell it
            // directly: a beacon to its own address (the port of its links also takes datagrams).
            self.beacon_to(now, other);
            return;
        }
        let State::Coordinator(c) = self.state() else { return };
        let view = Self::view_of_followers(c, self.cfg.key, self.cfg.timing.member_timeout, now);
        self.learn_addr(other.key, other.addr);
        self.send(other.key, &Frame::MergeRequest { view });
    }

    /// Coordinator: how many nodes follow us now (ourselves, and the alive members that acknowledged a
    /// heartbeat of our term within `member_timeout`).
    pub(crate) fn part_size(&self, now: Instant) -> u32 {
        let State::Coordinator(Coordinating { view, followers, .. }) = self.state() else { return 1 };
        let recent = |t: &Instant| now.saturating_duration_since(*t) < self.cfg.timing.member_timeout;
        let followers = followers.iter().filter(|(k, t)| view.is_alive(k) && recent(t)).count();
        1 + followers as u32
    }

    /// Our view as a merge request carries it: only the members that follow us now are alive in it, so the
    /// merge revives only nodes known to be alive (a view kept through a stall or a long partition may still
    /// show members alive that died meanwhile; they rejoin by themselves if they are not dead).
    fn view_of_followers(c: &Coordinating, me: NodeKey, member_timeout: Duration, now: Instant) -> View {
        let mut view = c.view.clone();
        let recent = |t: &Instant| now.saturating_duration_since(*t) < member_timeout;
        for m in view.members.iter_mut().filter(|m| m.key != me && m.is_alive()) {
            if !c.followers.get(&m.key).is_some_and(recent) {
                m.state = MemberState::Failed;
            }
        }
        view
    }

    /// Coordinator: our beacon, sent to `other` alone.
    pub(crate) fn beacon_to(&mut self, now: Instant, other: Contact) {
        let Some(view) = self.state().coordinator_view() else { return };
        let body = DatagramBody::Beacon {
            coordinator: self.my_contact(),
            term: view.term,
            version: view.version,
            members: self.part_size(now),
        };
        self.multicast(Destination::Addr(other.addr), body);
    }

    /// Coordinator: take the requester's part into this mesh, at a term above both.
    pub(crate) fn on_merge_request(&mut self, now: Instant, from: NodeKey, theirs: View) {
        if !self.acceptable_view(from, &theirs) {
            self.reject(Reject::InvalidView, &format!("merge request from {from}"));
            return;
        }
        let mine = match self.state().coordinator_view() {
            Some(mine) if !self.leaving => mine,
            _ => {
                self.redirect(from);
                self.reject(Reject::NotCoordinator, &format!("merge request from {from}"));
                return;
            }
        };
        if mine.is_alive(&from) && theirs.term < mine.term {
            // Already merged (a request that was in flight, or repeated: a merge publishes above both terms):
            // nothing new to take. At an equal term the requester coordinates a view of its own (two
            // elections of one term), however it appears in ours: that is a real merge.
            return;
        }
        let their_rank = theirs.rank_of(&from).expect("validated");
        // Their request shows alive exactly the nodes that follow them (`view_of_followers`).
        let their_size = theirs.alive().count() as u32;
        if (their_size, theirs.term, their_rank) > (self.part_size(now), mine.term, self.my_rank()) {
            // They take precedence: we are the part to be merged.
            let contact = theirs.coordinator_member().expect("validated").contact();
            self.on_foreign_coordinator(now, contact, theirs.term, their_size);
            return;
        }
        let mut view = mine.clone();
        let moved = view.merge(&theirs);
        view.term = self.fresh_term(view.term.max(theirs.term).saturating_add(1));
        self.stats.merges += 1;
        for r in moved {
            self.event(Event::IdReassigned { key: r.key, old: r.old, new: r.new });
        }
        for m in theirs.alive() {
            self.learn_addr(m.key, m.addr);
            if let Some(peer) = self.peers.get_mut(&m.key) {
                peer.last_heard = Some(now);
            }
        }
        self.publish(now, view, None);
    }

    /// Becomes coordinator with `view` (its term already chosen), the successor of `base` (the view held
    /// before): publishes it, which is the announcement.
    pub(crate) fn become_coordinator_with(&mut self, now: Instant, base: View, view: View) {
        self.clear_role_state();
        let c = Coordinating { view: base, since: now, followers: Default::default(), election: None };
        self.take_state();
        self.publish_from(now, c, view, None);
        self.timers.set(Timer::Heartbeat, now);
        self.timers.set(Timer::Beacon, now);
    }
}
