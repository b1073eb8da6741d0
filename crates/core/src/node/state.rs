//! `State`: where a node stands in the mesh, with the view and the fields that only that standing has.
//!
//! The view lives in the state, so code that needs a member's or a coordinator's view gets it by matching
//! the state, and a coordinator's heartbeat bookkeeping or a joiner's target cannot outlive their role.

use super::Role;
use crate::ballot::Election;
use crate::types::{Contact, NodeKey};
use crate::view::View;
use std::collections::BTreeMap;
use std::time::Instant;

/// Where a node stands, and what it holds only while it stands there.
#[derive(Clone, Debug)]
pub(crate) enum State {
    /// Multicasting `Discover`; `view` is the last one this node held (durable, or kept from the mesh it
    /// was in), which founding starts from.
    Discovering {
        view: Option<View>,
        attempt: u32,
    },
    /// Sent `Join` to `contact`, waiting for `Welcome`; `view` as for `Discovering`.
    Joining {
        view: Option<View>,
        contact: Contact,
    },
    Member(Following),
    Coordinator(Coordinating),
    /// Left the mesh, keeping the last view for whoever still asks.
    Stopped {
        view: Option<View>,
    },
}

/// A member: the coordinator's view, and what it knows of the coordinator.
#[derive(Clone, Debug)]
pub(crate) struct Following {
    pub view: View,
    /// When the coordinator last proved it coordinates (a heartbeat or view of our term).
    pub coordinator_heard: Instant,
    /// An election this node runs as a candidate.
    pub election: Option<Election>,
}

/// A coordinator: its own view, and who follows it.
#[derive(Clone, Debug)]
pub(crate) struct Coordinating {
    pub view: View,
    /// When this node became coordinator: members get a grace period from then.
    pub since: Instant,
    /// Members that acknowledged a heartbeat of our current term, and when they last did (the size of the
    /// part that follows us, for merge precedence).
    pub followers: BTreeMap<NodeKey, Instant>,
    /// An election this node runs as a candidate (a forced one, handing over to a higher-ranked member).
    pub election: Option<Election>,
}

/// The state of a node in a mesh, which holds a view of it: what `Node::install` moves to.
pub(crate) trait InMesh: Into<State> {
    fn view(&self) -> &View;
}

impl InMesh for Following {
    fn view(&self) -> &View {
        &self.view
    }
}

impl InMesh for Coordinating {
    fn view(&self) -> &View {
        &self.view
    }
}

impl From<Following> for State {
    fn from(f: Following) -> State {
        State::Member(f)
    }
}

impl From<Coordinating> for State {
    fn from(c: Coordinating) -> State {
        State::Coordinator(c)
    }
}

impl State {
    pub fn role(&self) -> Role {
        match self {
            State::Discovering { .. } => Role::Discovering,
            State::Joining { .. } => Role::Joining,
            State::Member(_) => Role::Member,
            State::Coordinator(_) => Role::Coordinator,
            State::Stopped { .. } => Role::Stopped,
        }
    }

    /// The latest view: the coordinator's (member), our own (coordinator), or the last one held otherwise.
    pub fn view(&self) -> Option<&View> {
        match self {
            State::Discovering { view, .. } | State::Joining { view, .. } | State::Stopped { view } => view.as_ref(),
            State::Member(f) => Some(&f.view),
            State::Coordinator(c) => Some(&c.view),
        }
    }

    /// The view of the mesh this node is in: only as a member or coordinator.
    pub fn mesh_view(&self) -> Option<&View> {
        match self {
            State::Member(f) => Some(&f.view),
            State::Coordinator(c) => Some(&c.view),
            _ => None,
        }
    }

    /// Our own view, as coordinator.
    pub fn coordinator_view(&self) -> Option<&View> {
        match self {
            State::Coordinator(c) => Some(&c.view),
            _ => None,
        }
    }

    pub fn is_stopped(&self) -> bool {
        matches!(self, State::Stopped { .. })
    }

    pub fn in_mesh(&self) -> bool {
        matches!(self, State::Member(_) | State::Coordinator(_))
    }

    /// The election this node runs (only a member or a coordinator runs one).
    pub fn election(&self) -> Option<&Election> {
        match self {
            State::Member(f) => f.election.as_ref(),
            State::Coordinator(c) => c.election.as_ref(),
            _ => None,
        }
    }

    pub fn election_mut(&mut self) -> Option<&mut Election> {
        self.election_slot().and_then(Option::as_mut)
    }

    /// Where a member or coordinator keeps its election; `None` in the states that run none.
    pub fn election_slot(&mut self) -> Option<&mut Option<Election>> {
        match self {
            State::Member(f) => Some(&mut f.election),
            State::Coordinator(c) => Some(&mut c.election),
            _ => None,
        }
    }

    pub fn take_election(&mut self) -> Option<Election> {
        self.election_slot().and_then(Option::take)
    }

    /// The view this state holds, given up for the next state.
    pub fn into_view(self) -> Option<View> {
        match self {
            State::Discovering { view, .. } | State::Joining { view, .. } | State::Stopped { view } => view,
            State::Member(f) => Some(f.view),
            State::Coordinator(c) => Some(c.view),
        }
    }
}
