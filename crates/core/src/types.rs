//! Identities and ranks: the nouns every other module speaks in.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// A coordinator term. Every control message carries one; a higher term always wins.
pub type Term = u64;

/// The small integer the coordinator gives each key. Unique in a settled view; the same key gets the same
/// ID back when it rejoins.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The ID after this one, saturating (4 billion joins is not a real mesh).
    pub fn next(self) -> NodeId {
        NodeId(self.0.saturating_add(1))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A node's permanent identity: its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeKey(pub [u8; 32]);

impl NodeKey {
    /// The first eight hex digits: enough to tell nodes apart in logs and UIs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.short())
    }
}

/// Bully rank, by seniority: the lower ID ranks higher (it was admitted earlier), the key breaks ties between
/// equal IDs (possible only across a partition), and no ID (`NodeId(0)`: not admitted yet) ranks lowest.
///
/// Seniority, not the highest ID, so that a newcomer (who always gets a fresh, higher ID) never outranks the
/// members already there; a member that restarts keeps its ID and so its rank, but it does not displace a
/// live coordinator either (see `election.rs`): rank decides only who wins an election.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rank {
    pub id: NodeId,
    pub key: NodeKey,
}

impl Ord for Rank {
    fn cmp(&self, other: &Rank) -> std::cmp::Ordering {
        let seniority = |r: &Rank| (r.id.0 != 0, std::cmp::Reverse(r.id));
        seniority(self).cmp(&seniority(other)).then_with(|| self.key.cmp(&other.key))
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Rank) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// How to reach a node and how it ranks: what discovery offers and redirects carry.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Contact {
    pub id: NodeId,
    pub key: NodeKey,
    pub addr: SocketAddr,
}

impl Contact {
    pub fn rank(&self) -> Rank {
        Rank { id: self.id, key: self.key }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(id: u32, key: u8) -> Rank {
        Rank { id: NodeId(id), key: NodeKey([key; 32]) }
    }

    #[test]
    fn the_lowest_id_ranks_highest_and_no_id_ranks_lowest() {
        assert!(rank(1, 0) > rank(2, 9));
        assert!(rank(2, 0) > rank(30, 0));
        assert!(rank(1, 5) > rank(1, 4), "the key breaks a tie");
        assert!(rank(4_000, 0) > rank(0, 255), "a node without an ID ranks below every member");
        let mut ranks = vec![rank(3, 1), rank(0, 1), rank(1, 2), rank(1, 1), rank(2, 1)];
        ranks.sort();
        assert_eq!(ranks, vec![rank(0, 1), rank(3, 1), rank(2, 1), rank(1, 1), rank(1, 2)]);
    }
}
