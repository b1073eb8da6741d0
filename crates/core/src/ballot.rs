//! `Election`: the state of an election this node runs (see `election` for what it does with it).

use crate::types::{NodeKey, Term};
use std::collections::BTreeSet;
use std::time::Instant;

/// An election this node runs as a candidate.
#[derive(Clone, Debug)]
pub(crate) struct Election {
    pub round: u64,
    /// The proposed term.
    pub term: Term,
    /// The coordinator this election replaces; `None` for a forced election (`/elect`).
    pub suspect: Option<NodeKey>,
    /// Higher-ranked members asked and not yet answered or known gone.
    pub waiting: BTreeSet<NodeKey>,
    pub answered: bool,
    /// When the election started, and when `waiting` were last asked: hearing from the suspect after either
    /// proves it alive.
    pub started: Instant,
    pub asked_at: Instant,
    /// The suspect was heard but did not answer, and was asked once more (it is not asked a third time:
    /// a suspect that talks but never answers has left our mesh).
    pub asked_twice: bool,
}
