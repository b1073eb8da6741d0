//! A simulated process's durable message store: what `Output::Store` wrote, answering `Output::Load` as
//! the SQLite store does, and checking on every write the promises a store can see.

use chatmesh_core::history::chain_step;
use chatmesh_core::{HistoryDigest, HistoryState, LoadRequest, Message, MessageId, NodeKey};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct SimStore {
    pub by_author: BTreeMap<NodeKey, BTreeMap<u64, Message>>,
    /// The last summary the core asked to store (with the messages, or alone): a restart comes back with
    /// it, and so with what each peer acknowledged of this process's own messages (`HistoryState::acked`).
    pub state: HistoryState,
    /// Each author's hash chain, recomputed here from the stored messages, independently of the core.
    pub chains: BTreeMap<NodeKey, [u8; 32]>,
    pub count: u64,
}

impl SimStore {
    pub fn get(&self, id: &MessageId) -> Option<&Message> {
        self.by_author.get(&id.author).and_then(|m| m.get(&id.seq))
    }

    pub fn ids(&self) -> impl Iterator<Item = MessageId> + '_ {
        self.by_author.iter().flat_map(|(a, m)| m.keys().map(move |s| MessageId { author: *a, seq: *s }))
    }

    /// Appends `m`; returns what is wrong with it as the next message of this history, if anything:
    /// a duplicate, a gap in its author's sequence, or a dependency not held before it (or not ordered
    /// before it canonically).
    pub fn append(&mut self, m: &Message) -> Option<String> {
        let id = m.id();
        if self.get(&id).is_some() {
            return Some(format!("{id} stored twice"));
        }
        let prev = self.by_author.get(&m.author).and_then(|s| s.last_key_value());
        if prev.map_or(0, |(s, _)| *s) + 1 != m.seq {
            return Some(format!("{id} stored after a gap in its author's sequence"));
        }
        if prev.is_some_and(|(_, p)| p.lamport >= m.lamport) {
            return Some(format!("{id} does not come after its author's previous message in canonical order"));
        }
        for d in &m.deps {
            match self.get(d) {
                None => return Some(format!("{id} stored before its dependency {d}")),
                Some(dep) if dep.lamport >= m.lamport => {
                    return Some(format!("{id} is not after its dependency {d} in canonical order"));
                }
                _ => {}
            }
        }
        self.by_author.entry(m.author).or_default().insert(m.seq, m.clone());
        let chain = self.chains.entry(m.author).or_insert([0; 32]);
        *chain = chain_step(chain, m);
        self.count += 1;
        None
    }

    /// The digest of what this store holds, computed from its own chains.
    pub fn digest(&self) -> HistoryDigest {
        HistoryDigest::of(self.by_author.iter().map(|(k, m)| {
            let seq = m.keys().next_back().copied().unwrap_or(0);
            (k, seq, self.chains.get(k).expect("a chain per author stored"))
        }))
    }

    /// Answers a load as `chatmesh-node`'s store does (sizes are encoded sizes).
    pub fn load(&self, req: &LoadRequest) -> (Vec<Message>, bool) {
        let limit = req.max_messages.max(1) as usize;
        let mut candidates: Vec<(&Message, usize)> = Vec::new();
        for (author, msgs) in &self.by_author {
            let held = req.frontier.get(author).copied().unwrap_or(0);
            let after = msgs
                .range(held.saturating_add(1)..)
                .map(|(_, m)| m)
                .filter(|m| req.after.is_none_or(|a| m.order_key() > a));
            candidates.extend(after.take(limit + 1).map(|m| (m, encoded_len(m))));
        }
        candidates.sort_by_key(|(m, _)| m.order_key());
        let chosen = chatmesh_core::history::page_of(&candidates, limit, req.max_bytes as usize);
        let more = candidates.len() > chosen;
        (candidates[..chosen].iter().map(|(m, _)| (*m).clone()).collect(), more)
    }
}

fn encoded_len(m: &Message) -> usize {
    postcard::to_allocvec(m).map_or(usize::MAX / 2, |b| b.len())
}
