//! Counters of what the node did and refused; the driver exports them as metrics.

use std::collections::BTreeMap;
use std::fmt;

/// Why an input was refused. In every case the node's state is unchanged.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Reject {
    /// The bytes did not decode (too long, wrong version, malformed).
    UndecodableFrame,
    UndecodableDatagram,
    /// A datagram for another mesh name.
    WrongMesh,
    /// A control message from a term this node has moved past.
    StaleTerm,
    /// A message that only members may send, from a key that is not an alive member.
    NotMember,
    /// A `Welcome` this node did not ask for, or from a node it did not ask.
    UnexpectedWelcome,
    /// A view that is internally inconsistent, or not sent by its own coordinator.
    InvalidView,
    /// A request that only the coordinator serves, sent to a node that is not it.
    NotCoordinator,
    /// A name longer than the limit, or another field out of bounds.
    OutOfBounds,
    /// A chat message whose signature does not verify, over the limits, or inconsistent.
    BadMessage,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reject::UndecodableFrame => "undecodable frame",
            Reject::UndecodableDatagram => "undecodable datagram",
            Reject::WrongMesh => "datagram for another mesh",
            Reject::StaleTerm => "stale term",
            Reject::NotMember => "sender is not a member",
            Reject::UnexpectedWelcome => "unexpected welcome",
            Reject::InvalidView => "invalid view",
            Reject::NotCoordinator => "request for the coordinator sent to a member",
            Reject::OutOfBounds => "field out of bounds",
            Reject::BadMessage => "invalid or forged chat message",
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub rejected: BTreeMap<Reject, u64>,
    pub elections_started: u64,
    pub elections_won: u64,
    pub heartbeats_sent: u64,
    pub views_published: u64,
    pub views_adopted: u64,
    pub members_failed: u64,
    pub merges: u64,
    /// Times this node found itself late by `Timing::stall_threshold` or more (and gave peers a fresh chance).
    pub stalls: u64,
    /// Links closed because the peer sent a message whose signature did not verify.
    pub links_distrusted: u64,
    /// Retransmissions: frontier nudges to members that lag this node's own messages.
    pub retransmits: u64,
    /// Periodic anti-entropy rounds (a frontier sent to a random linked member).
    pub anti_entropy_rounds: u64,
    /// Sync pages received, and the messages they brought that were new here.
    pub sync_pages: u64,
    pub messages_pulled: u64,
    /// Times the coordinator went silent long enough to be suspected (member), or a member was
    /// declared failed for silence or an unreachable link (coordinator).
    pub heartbeats_missed: u64,
}

impl Stats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}
