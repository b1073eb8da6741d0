//! `Election`: the state of an election this node runs (see `election` for what it does with it).

use crate::types::{NodeKey, Term};
use std::collections::BTreeSet;

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
}
