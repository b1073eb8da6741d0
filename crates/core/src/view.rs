//! The membership view: who is in the mesh, with which ID, written only by the coordinator.
//!
//! Entries are never removed: a failed or departed key keeps its entry so that it gets the same ID back when
//! it rejoins, and so that `next_id` never has to go backwards.

use crate::types::{Contact, NodeId, NodeKey, Rank, Term};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// Longest node or mesh name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Most entries a view may hold (alive, failed and departed together).
pub const MAX_VIEW_ENTRIES: usize = 4096;
/// The largest term or version a view may carry: far beyond any real mesh, and far enough below
/// `u64::MAX` that no increment can overflow.
pub const MAX_TERM: Term = u64::MAX >> 2;
/// The largest `next_id` a view may carry, so that handing out IDs can never wrap or saturate.
pub const MAX_NEXT_ID: NodeId = NodeId(u32::MAX >> 2);

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum MemberState {
    Alive,
    /// Declared failed by the coordinator (silence, or link lost and not re-established).
    Failed,
    /// Left gracefully (`/quit`).
    Left,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub key: NodeKey,
    pub name: String,
    pub addr: SocketAddr,
    pub state: MemberState,
}

impl Member {
    pub fn rank(&self) -> Rank {
        Rank { id: self.id, key: self.key }
    }

    pub fn contact(&self) -> Contact {
        Contact { id: self.id, key: self.key, addr: self.addr }
    }

    pub fn is_alive(&self) -> bool {
        self.state == MemberState::Alive
    }
}

/// `(term, coordinator rank, version)`: the total order in which views supersede each other. Two coordinators
/// of the same term (possible without a quorum) are ordered by rank, so every node picks the same one.
pub type ViewOrder = (Term, Rank, u64);

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct View {
    pub term: Term,
    pub version: u64,
    pub coordinator: NodeKey,
    /// The next fresh ID to hand out; never decreases.
    pub next_id: NodeId,
    /// Sorted by ID.
    pub members: Vec<Member>,
}

/// What `View::admit` did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Admission {
    pub id: NodeId,
    /// The view changed (a new key, a returning key, a new address or name).
    pub changed: bool,
}

/// A key whose ID had to change because another key already held it (merge or concurrent assignment).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Reassignment {
    pub key: NodeKey,
    pub old: NodeId,
    pub new: NodeId,
}

/// Why a received view was refused. The node's state is unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ViewError {
    TooManyEntries,
    DuplicateId,
    DuplicateKey,
    UnsortedEntries,
    NameTooLong,
    CoordinatorMissing,
    NextIdTooLow,
    /// A term, version or `next_id` beyond the bounds no real mesh reaches.
    OutOfRange,
}

impl View {
    /// A one-member view: the founder of a new mesh.
    pub fn founding(term: Term, founder: Member) -> View {
        let next_id = founder.id.next();
        View { term, version: 1, coordinator: founder.key, next_id, members: vec![founder] }
    }

    pub fn get(&self, key: &NodeKey) -> Option<&Member> {
        self.members.iter().find(|m| &m.key == key)
    }

    fn get_mut(&mut self, key: &NodeKey) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| &m.key == key)
    }

    pub fn by_id(&self, id: NodeId) -> Option<&Member> {
        self.members.binary_search_by_key(&id, |m| m.id).ok().map(|i| &self.members[i])
    }

    pub fn alive(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.is_alive())
    }

    pub fn is_alive(&self, key: &NodeKey) -> bool {
        self.get(key).is_some_and(Member::is_alive)
    }

    pub fn rank_of(&self, key: &NodeKey) -> Option<Rank> {
        self.get(key).map(Member::rank)
    }

    pub fn coordinator_member(&self) -> Option<&Member> {
        self.get(&self.coordinator)
    }

    /// The order key of this view; `None` only for a view that failed `validate`.
    pub fn order(&self) -> ViewOrder {
        let rank = self.rank_of(&self.coordinator).unwrap_or(Rank { id: NodeId(0), key: self.coordinator });
        (self.term, rank, self.version)
    }

    /// Checks what a view from the network must satisfy before anything trusts it.
    pub fn validate(&self) -> Result<(), ViewError> {
        if self.term > MAX_TERM || self.version > MAX_TERM || self.next_id > MAX_NEXT_ID {
            return Err(ViewError::OutOfRange);
        }
        if self.members.len() > MAX_VIEW_ENTRIES {
            return Err(ViewError::TooManyEntries);
        }
        if !self.members.windows(2).all(|w| w[0].id <= w[1].id) {
            return Err(ViewError::UnsortedEntries);
        }
        if self.members.windows(2).any(|w| w[0].id == w[1].id) {
            return Err(ViewError::DuplicateId);
        }
        let keys: BTreeSet<_> = self.members.iter().map(|m| m.key).collect();
        if keys.len() != self.members.len() {
            return Err(ViewError::DuplicateKey);
        }
        if self.members.iter().any(|m| m.name.len() > MAX_NAME_LEN) {
            return Err(ViewError::NameTooLong);
        }
        // Present, not necessarily alive: a leaving coordinator publishes its own departure.
        if self.get(&self.coordinator).is_none() {
            return Err(ViewError::CoordinatorMissing);
        }
        if self.members.last().is_some_and(|m| m.id >= self.next_id) {
            return Err(ViewError::NextIdTooLow);
        }
        Ok(())
    }

    /// Raises `next_id` to at least `floor` (never beyond `MAX_NEXT_ID`); returns whether it moved.
    pub fn raise_next_id(&mut self, floor: NodeId) -> bool {
        let floor = floor.min(MAX_NEXT_ID);
        if floor > self.next_id {
            self.next_id = floor;
            true
        } else {
            false
        }
    }

    /// Admits `key` (join or rejoin). The ID a node holds itself (`id_hint`, from its durable state) wins
    /// whenever it is free here: a registry entry for that key with another ID is one the node never learnt
    /// (its `Welcome` was lost) or one from a part it has since left. Otherwise a known key keeps its ID here,
    /// and an unknown key gets a fresh ID.
    pub fn admit(&mut self, key: NodeKey, name: &str, addr: SocketAddr, id_hint: Option<NodeId>) -> Admission {
        let plausible = |h: &NodeId| h.0 > 0 && h.0 < self.next_id.0.saturating_add(MAX_VIEW_ENTRIES as u32);
        let hint = id_hint.filter(|h| plausible(h) && self.by_id(*h).is_none_or(|m| m.key == key));
        if let Some(i) = self.members.iter().position(|m| m.key == key) {
            let mut m = self.members.remove(i);
            let mut changed = m.state != MemberState::Alive || m.addr != addr || m.name != name;
            if let Some(h) = hint.filter(|h| *h != m.id) {
                m.id = h;
                changed = true;
            }
            m.state = MemberState::Alive;
            m.addr = addr;
            m.name = name.to_owned();
            let id = m.id;
            self.raise_next_id(id.next());
            self.insert(m);
            return Admission { id, changed };
        }
        let id = hint.unwrap_or(self.next_id);
        self.raise_next_id(id.next());
        self.insert(Member { id, key, name: name.to_owned(), addr, state: MemberState::Alive });
        Admission { id, changed: true }
    }

    fn insert(&mut self, member: Member) {
        let at = self.members.partition_point(|m| m.id < member.id);
        self.members.insert(at, member);
    }

    /// Sets the state of `key`; returns whether anything changed.
    pub fn set_state(&mut self, key: &NodeKey, state: MemberState) -> bool {
        match self.get_mut(key) {
            Some(m) if m.state != state => {
                m.state = state;
                true
            }
            _ => false,
        }
    }

    /// Merges `other` (the view of a lower-ranked part) into this one. The deterministic rule: a key alive on
    /// either side is alive; a key alive only over there keeps the ID it holds there when that ID is free
    /// here (that is the ID the node itself believes); otherwise keys known here keep their IDs here; a key
    /// new here keeps its ID when free and otherwise gets a fresh one, in the order of its old ID.
    /// `next_id` becomes the larger of both.
    pub fn merge(&mut self, other: &View) -> Vec<Reassignment> {
        self.raise_next_id(other.next_id);
        let mut moved = Vec::new();
        // Keys known on both sides first, so that an ID one of them leaves is free before new keys look.
        let (known, new): (Vec<&Member>, Vec<&Member>) = other.members.iter().partition(|m| self.get(&m.key).is_some());
        for theirs in known {
            let i = self.members.iter().position(|m| m.key == theirs.key).expect("partitioned");
            if !theirs.is_alive() || self.members[i].is_alive() {
                continue;
            }
            let mut mine = self.members.remove(i);
            if self.by_id(theirs.id).is_none() {
                mine.id = theirs.id;
            }
            mine.state = MemberState::Alive;
            mine.addr = theirs.addr;
            mine.name.clone_from(&theirs.name);
            if mine.id != theirs.id {
                moved.push(Reassignment { key: mine.key, old: theirs.id, new: mine.id });
            }
            self.raise_next_id(mine.id.next());
            self.insert(mine);
        }
        for theirs in new {
            let mut member = theirs.clone();
            if self.by_id(member.id).is_some() {
                let new = self.next_id;
                moved.push(Reassignment { key: member.key, old: member.id, new });
                member.id = new;
            }
            self.raise_next_id(member.id.next());
            self.insert(member);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> NodeKey {
        NodeKey([b; 32])
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    fn member(id: u32, k: u8) -> Member {
        Member { id: NodeId(id), key: key(k), name: format!("n{k}"), addr: addr(), state: MemberState::Alive }
    }

    #[test]
    fn the_same_key_gets_the_same_id_back() {
        let mut v = View::founding(1, member(1, 1));
        let a = v.admit(key(2), "b", addr(), None);
        v.set_state(&key(2), MemberState::Left);
        let b = v.admit(key(2), "b", addr(), None);
        assert_eq!(a.id, b.id);
        assert!(b.changed);
        assert_eq!(v.next_id, NodeId(3));
    }

    #[test]
    fn an_id_hint_is_honoured_only_when_free() {
        let mut v = View::founding(1, member(1, 1));
        assert_eq!(v.admit(key(2), "b", addr(), Some(NodeId(7))).id, NodeId(7));
        assert_eq!(v.next_id, NodeId(8));
        assert_eq!(v.admit(key(3), "c", addr(), Some(NodeId(7))).id, NodeId(8));
        assert!(v.validate().is_ok());
    }

    #[test]
    fn merge_keeps_local_ids_and_reassigns_clashes_above_both_next_ids() {
        let mut a = View::founding(3, member(1, 1));
        a.admit(key(2), "b", addr(), None);
        let mut b = View::founding(5, member(1, 9));
        b.admit(key(8), "h", addr(), None);
        b.admit(key(7), "g", addr(), None);
        let moved = a.merge(&b);
        assert_eq!(moved.len(), 2);
        assert_eq!(moved[0], Reassignment { key: key(9), old: NodeId(1), new: NodeId(4) });
        assert_eq!(moved[1], Reassignment { key: key(8), old: NodeId(2), new: NodeId(5) });
        assert_eq!(a.get(&key(7)).unwrap().id, NodeId(3));
        assert_eq!(a.next_id, NodeId(6));
        assert!(a.validate().is_ok());
    }

    #[test]
    fn a_rejoining_key_gets_the_id_it_holds_when_that_id_is_free() {
        let mut v = View::founding(1, member(1, 1));
        assert_eq!(v.admit(key(2), "b", addr(), None).id, NodeId(2));
        // The node never learnt #2 and comes back believing it is #5.
        let a = v.admit(key(2), "b", addr(), Some(NodeId(5)));
        assert_eq!(a, Admission { id: NodeId(5), changed: true });
        assert!(v.by_id(NodeId(2)).is_none());
        assert_eq!(v.next_id, NodeId(6));
        // A hint held by another key is not honoured.
        assert_eq!(v.admit(key(2), "b", addr(), Some(NodeId(1))).id, NodeId(5));
        assert!(v.validate().is_ok());
    }

    #[test]
    fn merge_moves_revived_keys_before_judging_clashes() {
        // P is failed as #3 here and alive as #5 there; Q is new with #3. P moves to #5 first, so #3 is
        // free for Q and nobody's ID changes.
        let mut here = View::founding(1, member(1, 1));
        here.admit(key(2), "x", addr(), None);
        here.admit(key(80), "p", addr(), Some(NodeId(3)));
        here.set_state(&key(80), MemberState::Failed);
        let mut there = View::founding(1, member(4, 9));
        there.admit(key(81), "q", addr(), Some(NodeId(3)));
        there.admit(key(80), "p", addr(), Some(NodeId(5)));
        let moved = here.merge(&there);
        assert!(moved.is_empty(), "{moved:?}");
        assert_eq!(here.get(&key(80)).unwrap().id, NodeId(5));
        assert_eq!(here.get(&key(81)).unwrap().id, NodeId(3));
        assert!(here.validate().is_ok());
    }

    #[test]
    fn implausible_hints_and_next_ids_from_the_network_are_bounded() {
        let mut v = View::founding(1, member(1, 1));
        assert_eq!(v.admit(key(2), "b", addr(), Some(NodeId(u32::MAX))).id, NodeId(2));
        v.raise_next_id(NodeId(u32::MAX));
        assert_eq!(v.next_id, MAX_NEXT_ID);
        assert!(v.validate().is_ok());
        v.term = u64::MAX;
        assert_eq!(v.validate(), Err(ViewError::OutOfRange));
    }

    #[test]
    fn validate_rejects_duplicate_ids_and_low_next_id() {
        let mut v = View::founding(1, member(1, 1));
        v.members.push(member(1, 2));
        assert_eq!(v.validate(), Err(ViewError::DuplicateId));
        let mut v = View::founding(1, member(1, 1));
        v.next_id = NodeId(1);
        assert_eq!(v.validate(), Err(ViewError::NextIdTooLow));
    }
}
