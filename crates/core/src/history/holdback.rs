//! The hold-back queue: valid messages waiting for their dependencies, indexed by the first requirement
//! each one waits for ("author A has reached seq x"), so that a delivery only looks at the messages it may
//! have unblocked instead of at the whole queue.

use super::{HistoryState, Message, MessageId};
use crate::types::NodeKey;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(crate) struct HoldBack {
    messages: BTreeMap<MessageId, Message>,
    waiting: BTreeMap<(NodeKey, u64), Vec<MessageId>>,
}

impl HoldBack {
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn contains(&self, id: &MessageId) -> bool {
        self.messages.contains_key(id)
    }

    pub fn clear(&mut self) {
        self.messages.clear();
        self.waiting.clear();
    }

    /// Holds `m`, which `state` cannot deliver yet.
    pub fn hold(&mut self, state: &HistoryState, m: Message) {
        let Some(requirement) = first_unmet(state, &m) else { return };
        let id = m.id();
        if self.messages.insert(id, m).is_none() {
            self.waiting.entry(requirement).or_default().push(id);
        }
    }

    /// Takes out the messages that were waiting for `author` to reach at most `seq`: some may be ready
    /// now, the caller delivers those and holds the others again (indexed by what they wait for next).
    pub fn woken(&mut self, author: NodeKey, seq: u64) -> Vec<Message> {
        let keys: Vec<(NodeKey, u64)> = self.waiting.range((author, 0)..=(author, seq)).map(|(k, _)| *k).collect();
        let mut out = Vec::new();
        for key in keys {
            for id in self.waiting.remove(&key).unwrap_or_default() {
                out.extend(self.messages.remove(&id));
            }
        }
        out
    }
}

/// The first thing `m` waits for: its author's previous message, then each dependency in order.
fn first_unmet(state: &HistoryState, m: &Message) -> Option<(NodeKey, u64)> {
    if state.seq_of(&m.author) + 1 < m.seq {
        return Some((m.author, m.seq - 1));
    }
    m.deps.iter().find(|d| state.seq_of(&d.author) < d.seq).map(|d| (d.author, d.seq))
}
