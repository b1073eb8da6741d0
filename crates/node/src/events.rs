//! What the node tells its user interfaces and the control API: one event stream, one status, one history
//! format, all plain data that serializes to the JSON documented in docs/INTERFACES.md.

use chatmesh_core::{Body, MemberState, MembershipEvent, Message, NodeId, NodeKey};
use serde::Serialize;
use std::collections::HashMap;

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// `author-key-hex/seq` (without `format!`: a synced history makes one for every message and dependency).
fn message_id(author_hex: &str, seq: u64) -> String {
    let mut digits = [0u8; 20];
    let mut n = seq;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut id = String::with_capacity(author_hex.len() + 1 + digits.len() - at);
    id.push_str(author_hex);
    id.push('/');
    id.extend(digits[at..].iter().map(|d| char::from(*d)));
    id
}

/// A message as users see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessageView {
    /// `author-key-hex/seq`: unique in the mesh.
    pub id: String,
    /// The author's full public key (hex).
    pub author: String,
    /// The author's ID and name when known (from the membership views this node saw).
    pub author_id: Option<u32>,
    pub author_name: Option<String>,
    pub seq: u64,
    pub lamport: u64,
    /// The messages it depends on (`author-key-hex/seq`), besides the author's previous one.
    pub deps: Vec<String>,
    /// The author's wall clock when it wrote (Unix milliseconds).
    pub sent_at: u64,
    /// `text` for chat, `event` for membership and coordinator changes (written by the coordinator).
    pub kind: &'static str,
    pub text: String,
    /// Written by this node.
    pub own: bool,
    /// Own messages only: how many current members hold it (absent for other authors' messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryView>,
}

/// The delivery status of one of this node's own messages, from the acknowledgements it holds (durable:
/// right after a restart too). `members` counts the current alive members other than this node (after a
/// restart, those of its last view until it rejoins); `acked` those of them that hold the message, also
/// when they acknowledged it before the restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryView {
    pub acked: usize,
    pub members: usize,
}

impl DeliveryView {
    pub fn of(s: chatmesh_core::DeliveryStatus) -> DeliveryView {
        DeliveryView { acked: s.acked, members: s.members }
    }

    /// Held by every current alive member other than this node (`✓✓ all`); with no other member, only
    /// stored.
    pub fn all(&self) -> bool {
        self.members > 0 && self.acked >= self.members
    }
}

/// Who is who: names and IDs for keys, from every view this node saw (departed members keep theirs).
#[derive(Clone, Debug, Default)]
pub struct Names(pub HashMap<NodeKey, (NodeId, String)>);

impl Names {
    pub fn learn(&mut self, key: NodeKey, id: NodeId, name: &str) {
        self.0.insert(key, (id, name.to_owned()));
    }

    pub fn label(&self, key: &NodeKey) -> String {
        match self.0.get(key) {
            Some((id, name)) => format!("{name} ({id})"),
            None => key.short(),
        }
    }

    pub fn message(&self, m: &Message, me: &NodeKey) -> MessageView {
        let (author_id, author_name) = match self.0.get(&m.author) {
            Some((id, name)) => (Some(id.0), Some(name.clone())),
            None => (None, None),
        };
        let (kind, text) = match &m.body {
            Body::Text(t) => ("text", t.clone()),
            Body::Membership(e) => ("event", self.describe(e)),
        };
        let author = hex(&m.author.0);
        MessageView {
            id: message_id(&author, m.seq),
            author,
            author_id,
            author_name,
            seq: m.seq,
            lamport: m.lamport,
            deps: m.deps.iter().map(|d| message_id(&hex(&d.author.0), d.seq)).collect(),
            sent_at: m.sent_at,
            kind,
            text,
            own: m.author == *me,
            delivery: None,
        }
    }
}

impl Names {
    /// A membership event in words.
    pub fn describe(&self, e: &MembershipEvent) -> String {
        match e {
            MembershipEvent::Joined { id, name, .. } => format!("{name} ({id}) joined"),
            MembershipEvent::Left { id, name, .. } => format!("{name} ({id}) left"),
            MembershipEvent::Failed { id, name, .. } => format!("{name} ({id}) failed"),
            MembershipEvent::CoordinatorChanged { term, id, key } => match self.0.get(key) {
                Some((_, name)) => format!("{name} ({id}) coordinates from term {term}"),
                None => format!("{id} ({}) coordinates from term {term}", key.short()),
            },
        }
    }
}

/// One event of the stream that the TUI, `--ui plain`, `--ui json` and `GET /events` show.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notice {
    /// A message is durable here and causally delivered (`own`: this node wrote it, and it is stored).
    Message(MessageView),
    /// How many current members acknowledged this node's own message `seq`.
    Delivery {
        seq: u64,
        acked: usize,
        members: usize,
    },
    /// Nobody answered discovery: this node founded the mesh.
    Founded {
        id: u32,
        term: u64,
    },
    /// Admitted to the mesh with this ID.
    Joined {
        id: u32,
        term: u64,
        coordinator: String,
    },
    Coordinator {
        term: u64,
        id: u32,
        key: String,
        name: Option<String>,
        me: bool,
    },
    MemberJoined {
        id: u32,
        key: String,
        name: String,
    },
    MemberLeft {
        id: u32,
        key: String,
        name: String,
    },
    MemberFailed {
        id: u32,
        key: String,
        name: String,
    },
    IdReassigned {
        key: String,
        old: u32,
        new: u32,
    },
    ElectionStarted {
        term: u64,
    },
    /// A send was refused; nothing was stored or sent.
    SendRefused {
        reason: String,
    },
    /// Input from the network was refused (logged; shown only in debug views).
    Rejected {
        reason: String,
    },
    /// The node left the mesh and stopped.
    Stopped,
}

/// A member as `/status` and `/peers` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberView {
    pub id: u32,
    pub name: String,
    pub key: String,
    pub addr: String,
    /// `alive`, `failed` or `left`.
    pub state: &'static str,
    pub coordinator: bool,
    /// A link to it is up (always false for this node itself).
    pub linked: bool,
}

pub fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Alive => "alive",
        MemberState::Failed => "failed",
        MemberState::Left => "left",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistorySummary {
    pub count: u64,
    pub digest: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoordinatorView {
    pub id: u32,
    pub key: String,
    pub name: Option<String>,
}

/// `GET /status` and `/status`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusView {
    pub id: Option<u32>,
    pub name: String,
    pub key: String,
    pub mesh: String,
    pub addr: String,
    /// `discovering`, `joining`, `member`, `coordinator` or `stopped`.
    pub role: &'static str,
    pub term: u64,
    pub coordinator: Option<CoordinatorView>,
    pub election_running: bool,
    pub members: Vec<MemberView>,
    pub history: HistorySummary,
    /// Own messages that some current member has not acknowledged yet.
    pub pending_acks: u64,
    pub links: usize,
    /// Frames and datagrams the core refused (undecodable, stale, not from a member...).
    pub rejected: u64,
    /// Datagrams dropped before the core: forged, from another network key, stale or replayed.
    pub datagrams_dropped: u64,
    pub uptime_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_read_as_formatted() {
        let author = hex(&[0xab; 32]);
        for seq in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX / 4, u64::MAX] {
            assert_eq!(message_id(&author, seq), format!("{author}/{seq}"));
        }
    }
}
