//! What the node tells its user interfaces and the control API: one event stream, one status, one history
//! format, all plain data that serializes to the JSON documented in docs/INTERFACES.md.

use chatmesh_core::{Body, MemberState, MembershipEvent, Message, NodeId, NodeKey, OrderKey, View};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashMap;

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageView {
    /// `author-key-hex/seq`: unique in the mesh.
    pub id: String,
    /// The author's full public key (hex).
    pub author: String,
    /// The author's ID and name by the naming rule (`Names`), when anything names the author.
    pub author_id: Option<u32>,
    pub author_name: Option<String>,
    /// The name to show: `author_name`, with the ID when another known member has the same name
    /// (`ana#3`), or the short key when nothing names the author.
    pub author_label: String,
    pub seq: u64,
    pub lamport: u64,
    /// The messages it depends on (`author-key-hex/seq`), besides the author's previous one.
    pub deps: Vec<String>,
    /// The author's wall clock when it wrote (Unix milliseconds).
    pub sent_at: u64,
    /// `text` for chat, `event` for membership and coordinator changes (written by the coordinator).
    #[serde(deserialize_with = "kind_of")]
    pub kind: Fixed,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// Who is who: the one rule every interface shows names by (docs/INTERFACES.md, "Names").
///
/// A key's name is the one its latest membership event in the history gives it (`Joined`, `Renamed`,
/// `Left`, `Failed`; latest in canonical order, so the same on every node holding the same history,
/// whatever order its messages arrived in). Only a key the history names nowhere (the founder of a mesh,
/// or a member whose `Joined` has not arrived yet) goes by the name the current view gives it. A name that
/// two or more known keys go by is shown with the ID (`ana#1`, `ana#3`).
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// From the history: per key, the latest event naming it.
    told: HashMap<NodeKey, (OrderKey, NodeId, String)>,
    /// From the current view (or the last durable one): for keys the history does not name.
    seen: HashMap<NodeKey, (NodeId, String)>,
    /// How many keys go by each name.
    holders: HashMap<String, usize>,
}

impl Names {
    /// The names a node's store gives: the membership events of its history and, for keys the history does
    /// not name, its last durable view. What a node knows at start, and what a reader of its store shows.
    pub fn stored(view: Option<&View>, events: &[Message]) -> Names {
        let mut names = Names::default();
        if let Some(view) = view {
            names.learn_view(view);
        }
        for m in events {
            names.learn(m);
        }
        names
    }

    /// Learns from a message of the history: a membership event naming a key, if it is the latest for it.
    /// Answers whether a name changed.
    pub fn learn(&mut self, m: &Message) -> bool {
        let Body::Membership(e) = &m.body else { return false };
        let (id, key, name) = match e {
            MembershipEvent::Joined { id, key, name }
            | MembershipEvent::Left { id, key, name }
            | MembershipEvent::Failed { id, key, name }
            | MembershipEvent::Renamed { id, key, new: name, .. } => (*id, *key, name),
            MembershipEvent::CoordinatorChanged { .. } => return false,
        };
        let at = m.order_key();
        if self.told.get(&key).is_some_and(|(seen_at, _, _)| *seen_at >= at) {
            return false;
        }
        let changed = self.name(&key) != Some((id, name.as_str()));
        self.told.insert(key, (at, id, name.clone()));
        if changed {
            self.count_holders();
        }
        changed
    }

    /// Learns the current view: the names of keys the history does not name (yet).
    pub fn learn_view(&mut self, view: &View) {
        self.seen = view.members.iter().map(|m| (m.key, (m.id, m.name.clone()))).collect();
        self.count_holders();
    }

    fn count_holders(&mut self) {
        let mut holders: HashMap<String, usize> = HashMap::new();
        let untold = self.seen.iter().filter(|(k, _)| !self.told.contains_key(k)).map(|(_, (_, n))| n);
        for name in self.told.values().map(|(_, _, n)| n).chain(untold) {
            *holders.entry(name.clone()).or_default() += 1;
        }
        self.holders = holders;
    }

    /// A key's ID and name by the rule, if anything names it.
    pub fn name(&self, key: &NodeKey) -> Option<(NodeId, &str)> {
        match self.told.get(key) {
            Some((_, id, name)) => Some((*id, name)),
            None => self.seen.get(key).map(|(id, name)| (*id, name.as_str())),
        }
    }

    /// The name to show for a key: its name, with its ID when another known key goes by the same name
    /// (`ana#3`); the short key when nothing names it.
    pub fn display(&self, key: &NodeKey) -> String {
        match self.name(key) {
            Some((id, name)) if self.holders.get(name).is_some_and(|n| *n > 1) => format!("{name}{id}"),
            Some((_, name)) => name.to_owned(),
            None => key.short(),
        }
    }

    /// `name (#id)`, for logs and metrics.
    pub fn label(&self, key: &NodeKey) -> String {
        match self.name(key) {
            Some((id, _)) => format!("{} ({id})", self.display(key)),
            None => key.short(),
        }
    }

    pub fn message(&self, m: &Message, me: &NodeKey) -> MessageView {
        let (author_id, author_name) = match self.name(&m.author) {
            Some((id, name)) => (Some(id.0), Some(name.to_owned())),
            None => (None, None),
        };
        let (kind, text) = match &m.body {
            Body::Text(t) => ("text", t.clone()),
            Body::Membership(e) => ("event", self.describe(e)),
        };
        let author = hex::encode(m.author.0);
        MessageView {
            id: message_id(&author, m.seq),
            author_label: self.display(&m.author),
            author,
            author_id,
            author_name,
            seq: m.seq,
            lamport: m.lamport,
            deps: m.deps.iter().map(|d| message_id(&hex::encode(d.author.0), d.seq)).collect(),
            sent_at: m.sent_at,
            kind,
            text,
            own: m.author == *me,
            delivery: None,
        }
    }

    /// A membership event in words, with the member's ID. Joins, departures and renames name the member as
    /// the event does (what happened then); a coordinator change, which carries no name, by the rule.
    pub fn describe(&self, e: &MembershipEvent) -> String {
        match e {
            MembershipEvent::Joined { id, name, .. } => format!("{name} ({id}) joined"),
            MembershipEvent::Left { id, name, .. } => format!("{name} ({id}) left"),
            MembershipEvent::Failed { id, name, .. } => format!("{name} ({id}) failed"),
            MembershipEvent::Renamed { id, old, new, .. } => format!("{old} ({id}) is now {new}"),
            MembershipEvent::CoordinatorChanged { term, id, key } => match self.name(key) {
                Some((_, name)) => format!("{name} ({id}) coordinates from term {term}"),
                None => format!("{id} ({}) coordinates from term {term}", key.short()),
            },
        }
    }
}

/// One event of the stream that the TUI, `--ui plain`, `--ui json` and `GET /events` show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// A member's name changed: a `Renamed` event of the history was delivered here.
    MemberRenamed {
        id: u32,
        key: String,
        old: String,
        new: String,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: u32,
    pub name: String,
    pub key: String,
    pub addr: String,
    /// `alive`, `failed` or `left`.
    #[serde(deserialize_with = "state_of")]
    pub state: Fixed,
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistorySummary {
    pub count: u64,
    pub digest: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoordinatorView {
    pub id: u32,
    pub key: String,
    pub name: Option<String>,
}

/// `GET /status` and `/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub id: Option<u32>,
    pub name: String,
    pub key: String,
    pub mesh: String,
    pub addr: String,
    /// `discovering`, `joining`, `member`, `coordinator` or `stopped`.
    #[serde(deserialize_with = "role_of")]
    pub role: Fixed,
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

/// A view field that takes one of a few fixed values (`KINDS`, `STATES`, `ROLES`). An alias rather than
/// `&'static str` written out, because serde's derive takes a field written `&str` for a string borrowed
/// from the input, which would make the views readable only from `'static` input.
pub type Fixed = &'static str;

// Reading the views back (the harness's API client parses the node's JSON into these same types): the
// fields kept as `&'static str` take one of the values the node writes, and refuse any other.

/// `MessageView::kind`.
pub const KINDS: [&str; 2] = ["text", "event"];
/// `MemberView::state`, as `state_name` writes it.
pub const STATES: [&str; 3] = ["alive", "failed", "left"];
/// `StatusView::role`.
pub const ROLES: [&str; 5] = ["discovering", "joining", "member", "coordinator", "stopped"];

fn one_of<'de, D: Deserializer<'de>>(d: D, known: &'static [&'static str]) -> Result<&'static str, D::Error> {
    let s = std::borrow::Cow::<str>::deserialize(d)?;
    known.iter().copied().find(|k| *k == s).ok_or_else(|| serde::de::Error::unknown_variant(&s, known))
}

fn kind_of<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &KINDS)
}

fn state_of<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &STATES)
}

fn role_of<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &ROLES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmesh_core::{key_of, Member, SigningKey};

    /// The coordinator of the tests, who writes every event.
    fn coordinator() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    fn key(n: u8) -> NodeKey {
        key_of(&[n; 32])
    }

    fn event(lamport: u64, e: MembershipEvent) -> Message {
        Message::sign(&coordinator(), lamport, lamport, Vec::new(), 0, Body::Membership(e))
    }

    fn joined(lamport: u64, n: u8, name: &str) -> Message {
        event(lamport, MembershipEvent::Joined { id: NodeId(n.into()), key: key(n), name: name.into() })
    }

    fn renamed(lamport: u64, n: u8, old: &str, new: &str) -> Message {
        let (old, new) = (old.into(), new.into());
        event(lamport, MembershipEvent::Renamed { id: NodeId(n.into()), key: key(n), old, new })
    }

    fn view(members: &[(u8, &str)]) -> View {
        let member = |(n, name): &(u8, &str)| Member {
            id: NodeId((*n).into()),
            key: key(*n),
            name: (*name).into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            state: MemberState::Alive,
        };
        let mut v = View::founding(1, member(&members[0]));
        v.members.extend(members[1..].iter().map(member));
        v
    }

    fn names_from(messages: &[Message]) -> Names {
        let mut names = Names::default();
        for m in messages {
            names.learn(m);
        }
        names
    }

    #[test]
    fn the_latest_naming_event_in_canonical_order_wins_whatever_the_arrival_order() {
        let history = [joined(1, 2, "bruno"), renamed(5, 2, "bruno", "Bruno Silva"), joined(3, 3, "carla")];
        let in_order = names_from(&history);
        let reversed = names_from(&[history[1].clone(), history[2].clone(), history[0].clone()]);
        for names in [&in_order, &reversed] {
            assert_eq!(names.name(&key(2)), Some((NodeId(2), "Bruno Silva")));
            assert_eq!(names.display(&key(3)), "carla");
        }
    }

    #[test]
    fn the_view_names_only_keys_the_history_does_not_name() {
        let mut names = names_from(&[joined(1, 2, "bruno")]);
        names.learn_view(&view(&[(1, "ana"), (2, "Bruno in the view")]));
        assert_eq!(names.display(&key(1)), "ana", "the founder, whom no event names");
        assert_eq!(names.display(&key(2)), "bruno", "the history wins over the view");
        assert_eq!(names.display(&key(7)), key(7).short(), "nothing names it");
        let m = names.message(&joined(2, 9, "x"), &key(1));
        assert_eq!((m.author_id, m.author_name, m.author_label), (None, None, key_of(&[9; 32]).short()));
    }

    #[test]
    fn equal_names_are_shown_with_their_ids_and_unique_ones_plain() {
        let mut names = names_from(&[joined(1, 2, "ana"), joined(2, 3, "ana"), joined(3, 4, "bruno")]);
        names.learn_view(&view(&[(1, "carla")]));
        assert_eq!(names.display(&key(2)), "ana#2");
        assert_eq!(names.display(&key(3)), "ana#3");
        assert_eq!(names.display(&key(4)), "bruno");
        assert_eq!(names.label(&key(3)), "ana#3 (#3)");
        // One of them takes another name: the other one is the only ana again.
        names.learn(&renamed(4, 3, "ana", "ana b"));
        assert_eq!((names.display(&key(2)), names.display(&key(3))), ("ana".into(), "ana b".into()));
        // A view name counts as well, for a key the history does not name.
        names.learn_view(&view(&[(1, "bruno")]));
        assert_eq!((names.display(&key(1)), names.display(&key(4))), ("bruno#1".into(), "bruno#4".into()));
    }

    #[test]
    fn events_read_as_what_happened_and_coordinator_changes_by_the_rule() {
        let names = names_from(&[joined(1, 2, "bruno"), renamed(2, 2, "bruno", "Bruno Silva")]);
        let text = |m: &Message| names.message(m, &key(1)).text;
        assert_eq!(text(&joined(1, 2, "bruno")), "bruno (#2) joined");
        assert_eq!(text(&renamed(2, 2, "bruno", "Bruno Silva")), "bruno (#2) is now Bruno Silva");
        let took_over = event(3, MembershipEvent::CoordinatorChanged { term: 2, id: NodeId(2), key: key(2) });
        assert_eq!(text(&took_over), "Bruno Silva (#2) coordinates from term 2");
        let unknown = event(4, MembershipEvent::CoordinatorChanged { term: 3, id: NodeId(7), key: key(7) });
        assert_eq!(text(&unknown), format!("#7 ({}) coordinates from term 3", key(7).short()));
    }

    /// The harness's client reads the API's JSON back into these types: every field survives the trip.
    #[test]
    fn views_and_notices_read_back_as_written() {
        let mut names = names_from(&[joined(1, 2, "bruno")]);
        names.learn_view(&view(&[(1, "ana"), (2, "bruno")]));
        let mut own = names.message(&joined(2, 9, "x"), &NodeKey(coordinator().verifying_key().to_bytes()));
        own.delivery = Some(DeliveryView { acked: 1, members: 2 });
        let other = names.message(&renamed(3, 2, "bruno", "b"), &key(1));
        let status = StatusView {
            id: Some(1),
            name: "ana".into(),
            key: hex::encode(key(1).0),
            mesh: "m".into(),
            addr: "127.0.0.1:1".into(),
            role: "coordinator",
            term: 4,
            coordinator: Some(CoordinatorView { id: 1, key: hex::encode(key(1).0), name: None }),
            election_running: false,
            members: vec![MemberView {
                id: 1,
                name: "ana".into(),
                key: hex::encode(key(1).0),
                addr: "127.0.0.1:1".into(),
                state: "failed",
                coordinator: true,
                linked: false,
            }],
            history: HistorySummary { count: 3, digest: "ab".into() },
            pending_acks: 1,
            links: 2,
            rejected: 3,
            datagrams_dropped: 4,
            uptime_ms: 5,
        };
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(serde_json::from_str::<StatusView>(&json).unwrap(), status);
        let notices = [
            Notice::Message(own),
            Notice::Message(other),
            Notice::Coordinator { term: 2, id: 1, key: "k".into(), name: None, me: true },
            Notice::Delivery { seq: 1, acked: 1, members: 2 },
            Notice::Stopped,
        ];
        for n in notices {
            let json = serde_json::to_string(&n).unwrap();
            assert_eq!(serde_json::from_str::<Notice>(&json).unwrap(), n, "{json}");
        }
        let bad = json.replace("\"coordinator\",\"term\"", "\"king\",\"term\"");
        assert!(serde_json::from_str::<StatusView>(&bad).is_err(), "an unknown role is refused: {bad}");
    }

    #[test]
    fn message_ids_read_as_formatted() {
        let author = hex::encode([0xab; 32]);
        for seq in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX / 4, u64::MAX] {
            assert_eq!(message_id(&author, seq), format!("{author}/{seq}"));
        }
    }
}
