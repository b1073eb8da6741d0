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
        self.0[..4].iter().map(|b| format!("{b:02x}")).collect()
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

/// Bully rank: higher ID wins, the key breaks ties between equal IDs (possible only across a partition).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Rank {
    pub id: NodeId,
    pub key: NodeKey,
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
