//! The history checker: what the clients were told against what every node holds once faults stop.

use crate::workload::{text_of, Op, Outcome};
use chatmesh_harness::{MessageView, StatusView};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub operations: usize,
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
    /// Acknowledged (ok) messages missing from some node.
    pub lost: Vec<String>,
    /// Messages nobody sent: texts that are not an invoked operation, operations the client was told
    /// failed, or an ok operation held under another ID.
    pub unexpected: Vec<String>,
    /// The same message twice in one history, or one operation stored as two messages.
    pub duplicated: Vec<String>,
    /// Causal order, canonical order or per-author seq order broken in some history.
    pub order: Vec<String>,
    /// Histories or digests that differ between nodes.
    pub divergent: Vec<String>,
    /// Not exactly one coordinator, or one that the others do not follow.
    pub coordinator: Vec<String>,
    /// An ID bound to two keys, or a key with two IDs.
    pub ids: Vec<String>,
    /// Unknown (info) operations that turned out stored.
    pub unknown_stored: usize,
    pub messages_per_node: usize,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.lost.len()
            + self.unexpected.len()
            + self.duplicated.len()
            + self.order.len()
            + self.divergent.len()
            + self.coordinator.len()
            + self.ids.len()
    }
}

/// Checks one history on its own: no duplicate, per-author seqs 1, 2, 3... in order, dependencies before
/// their dependents, canonical `(lamport, author, seq)` order.
fn check_one(node: &str, h: &[MessageView], r: &mut Report) {
    let mut seen = HashSet::new();
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut prev: Option<(u64, String, u64)> = None;
    for m in h {
        let id = &m.id;
        if !seen.insert(id) {
            r.duplicated.push(format!("{node}: {id} twice"));
        }
        let (author, seq) = (m.author.clone(), m.seq);
        let expected = last_seq.get(&author).copied().unwrap_or(0) + 1;
        if seq != expected {
            r.order.push(format!("{node}: {author:.8}'s seq {seq} where {expected} was due"));
        }
        last_seq.insert(author.clone(), seq);
        for d in &m.deps {
            if !seen.contains(d) {
                r.order.push(format!("{node}: {id} shown before its dependency {d}"));
            }
        }
        let key = (m.lamport, author, seq);
        if prev.as_ref().is_some_and(|p| *p >= key) {
            r.order.push(format!("{node}: {id} out of canonical order"));
        }
        prev = Some(key);
    }
}

/// `names[i]`, `histories[i]` and `statuses[i]` are node i's, read after the faults stopped and the mesh
/// went quiet.
pub fn check(ops: &[Op], names: &[String], histories: &[Vec<MessageView>], statuses: &[StatusView]) -> Report {
    let mut r = Report { operations: ops.len(), ..Report::default() };
    let mut by_text: HashMap<String, &Op> = HashMap::new();
    for op in ops {
        match op.outcome {
            Outcome::Ok { .. } => r.ok += 1,
            Outcome::Fail { .. } => r.failed += 1,
            Outcome::Info { .. } => r.unknown += 1,
        }
        by_text.insert(text_of(op.k), op);
    }
    for (i, h) in histories.iter().enumerate() {
        check_one(&names[i], h, &mut r);
    }
    // Every node holds the same history.
    let ids: Vec<Vec<&str>> = histories.iter().map(|h| h.iter().map(|m| m.id.as_str()).collect()).collect();
    for i in 1..ids.len() {
        if ids[i] != ids[0] {
            let a: BTreeSet<_> = ids[0].iter().collect();
            let b: BTreeSet<_> = ids[i].iter().collect();
            r.divergent.push(format!(
                "{} and {} differ: {} only on the first, {} only on the second",
                names[0],
                names[i],
                a.difference(&b).count(),
                b.difference(&a).count()
            ));
        }
    }
    let digests: BTreeSet<&str> = statuses.iter().map(|x| x.history.digest.as_str()).collect();
    if digests.len() != 1 {
        r.divergent.push(format!("{} different digests", digests.len()));
    }
    r.messages_per_node = histories.first().map_or(0, Vec::len);

    // Client operations against what is held.
    for (i, h) in histories.iter().enumerate() {
        let held: HashSet<&str> = h.iter().map(|m| m.id.as_str()).collect();
        for op in ops {
            if let Outcome::Ok { id } = &op.outcome {
                if !held.contains(id.as_str()) {
                    r.lost.push(format!("{}: op-{} ({id}) acknowledged to the client, missing", names[i], op.k));
                }
            }
        }
        let mut texts: HashMap<String, String> = HashMap::new();
        for m in h.iter().filter(|m| m.kind == "text") {
            let (text, id) = (m.text.clone(), m.id.clone());
            if let Some(other) = texts.insert(text.clone(), id.clone()) {
                r.duplicated.push(format!("{}: {text} stored twice ({other} and {id})", names[i]));
            }
            match by_text.get(&text).map(|op| &op.outcome) {
                None => r.unexpected.push(format!("{}: {id} says {text:?}, which no client sent", names[i])),
                Some(Outcome::Fail { error }) => {
                    r.unexpected.push(format!("{}: {text} is stored but its client was told: {error}", names[i]))
                }
                Some(Outcome::Ok { id: told }) if *told != id => {
                    r.unexpected.push(format!("{}: {text} stored as {id}, the client was told {told}", names[i]))
                }
                _ => {}
            }
        }
        if i == 0 {
            r.unknown_stored = ops
                .iter()
                .filter(|op| matches!(op.outcome, Outcome::Info { .. }) && texts.contains_key(&text_of(op.k)))
                .count();
        }
    }

    // One coordinator, agreed by all. Who it is depends on the run's history: a live coordinator is never
    // displaced, so it need not be the highest-ranked live member.
    let coordinators: BTreeSet<String> =
        statuses.iter().map(|x| x.coordinator.as_ref().map(|c| c.key.clone()).unwrap_or_default()).collect();
    let claiming = statuses.iter().filter(|x| x.role == "coordinator").count();
    if coordinators.len() != 1 || claiming != 1 {
        r.coordinator.push(format!("{} coordinators named, {claiming} nodes claim the role", coordinators.len()));
    } else if let Some(c) = statuses.iter().find(|x| x.role == "coordinator") {
        let named = coordinators.iter().next().cloned().unwrap_or_default();
        if c.key != named {
            r.coordinator.push(format!("#{} claims the role, but every node follows {named}", c.id.unwrap_or(0)));
        }
    }
    // IDs: one key per ID and one ID per key, across every node's view.
    let mut by_id: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    let mut by_key: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for x in statuses {
        for m in &x.members {
            let (id, key) = (m.id, m.key.clone());
            by_id.entry(id).or_default().insert(key.clone());
            by_key.entry(key).or_default().insert(id);
        }
    }
    for (id, keys) in by_id.iter().filter(|(_, k)| k.len() > 1) {
        r.ids.push(format!("ID #{id} bound to {} keys", keys.len()));
    }
    for (key, ids) in by_key.iter().filter(|(_, i)| i.len() > 1) {
        r.ids.push(format!("key {key:.8} holds IDs {ids:?}"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn msg(author: &str, seq: u64, lamport: u64, text: &str, deps: &[&str]) -> MessageView {
        serde_json::from_value(json!({"id": format!("{author}/{seq}"), "author": author, "seq": seq,
            "lamport": lamport, "kind": "text", "text": text, "deps": deps, "author_label": "x", "sent_at": 0,
            "own": false}))
        .unwrap()
    }

    fn members(ids_keys: &[(u32, &str)]) -> Value {
        let m = |(id, key): &(u32, &str)| {
            json!({"id": id, "key": key, "name": "n", "addr": "a", "state": "alive", "coordinator": false,
                   "linked": true})
        };
        Value::Array(ids_keys.iter().map(m).collect())
    }

    fn status(id: u32, key: &str, coordinator: &str, role: &str) -> StatusView {
        serde_json::from_value(json!({"id": id, "name": "n", "key": key, "mesh": "m", "addr": "a", "role": role,
            "term": 1, "coordinator": {"id": 1, "key": coordinator, "name": null}, "election_running": false,
            "history": {"count": 2, "digest": "d"}, "members": members(&[(1, A), (2, B)]), "pending_acks": 0,
            "links": 1, "rejected": 0, "datagrams_dropped": 0, "uptime_ms": 1}))
        .unwrap()
    }

    fn op(k: u64, outcome: Outcome) -> Op {
        Op { k, node: 0, invoked_ms: 0, completed_ms: 1, outcome }
    }

    fn ok(k: u64, id: &str) -> Op {
        op(k, Outcome::Ok { id: id.into() })
    }

    fn good() -> (Vec<Op>, Vec<MessageView>) {
        let h = vec![msg(A, 1, 1, "op-1", &[]), msg(B, 1, 2, "op-2", &[&format!("{A}/1")])];
        (vec![ok(1, &format!("{A}/1")), ok(2, &format!("{B}/1"))], h)
    }

    fn checked(ops: &[Op], h: Vec<MessageView>) -> Report {
        let names = vec!["n1".to_string(), "n2".to_string()];
        let statuses = vec![status(1, A, B, "member"), status(2, B, B, "coordinator")];
        check(ops, &names, &[h.clone(), h], &statuses)
    }

    #[test]
    fn a_good_run_passes() {
        let (ops, h) = good();
        let r = checked(&ops, h);
        assert_eq!(r.violations(), 0, "{r:?}");
    }

    #[test]
    fn each_violation_is_caught() {
        let (mut ops, h) = good();
        ops.push(ok(3, &format!("{A}/2")));
        assert_eq!(checked(&ops, h.clone()).lost.len(), 2, "an acknowledged message missing on both nodes");

        let (ops, mut h) = good();
        h.push(msg(A, 2, 3, "op-99", &[]));
        assert_eq!(checked(&ops, h).unexpected.len(), 2, "a message no client sent");

        let (mut ops, mut h) = good();
        ops.push(op(3, Outcome::Fail { error: "refused".into() }));
        h.push(msg(A, 2, 3, "op-3", &[]));
        assert_eq!(checked(&ops, h).unexpected.len(), 2, "a failed send that was stored");

        let (ops, mut h) = good();
        h.push(h[1].clone());
        let r = checked(&ops, h);
        assert!(!r.duplicated.is_empty() && !r.order.is_empty(), "{r:?}");

        let (ops, mut h) = good();
        h.swap(0, 1);
        assert!(!checked(&ops, h).order.is_empty(), "a dependency after its dependent");

        let (ops, mut h) = good();
        h.push(msg(A, 3, 5, "op-x", &[]));
        assert!(checked(&ops, h).order.iter().any(|o| o.contains("seq 3 where 2")), "a seq gap");
    }

    #[test]
    fn coordinators_and_ids_are_checked() {
        let (ops, h) = good();
        let names = vec!["n1".to_string(), "n2".to_string()];
        let two = vec![status(1, A, A, "coordinator"), status(2, B, B, "coordinator")];
        assert!(!check(&ops, &names, &[h.clone(), h.clone()], &two).coordinator.is_empty());
        let senior = vec![status(1, A, A, "coordinator"), status(2, B, A, "member")];
        assert!(check(&ops, &names, &[h.clone(), h.clone()], &senior).coordinator.is_empty(), "{senior:?}");
        let junior = vec![status(1, A, B, "member"), status(2, B, B, "coordinator")];
        assert!(check(&ops, &names, &[h.clone(), h.clone()], &junior).coordinator.is_empty(), "{junior:?}");
        let usurper = vec![status(1, A, B, "coordinator"), status(2, B, B, "member")];
        assert!(!check(&ops, &names, &[h.clone(), h.clone()], &usurper).coordinator.is_empty(), "{usurper:?}");
        let mut clash = vec![status(1, A, B, "member"), status(2, B, B, "coordinator")];
        clash[1].members = serde_json::from_value(members(&[(1, B), (2, B)])).unwrap();
        let r = check(&ops, &names, &[h.clone(), h], &clash);
        assert!(r.ids.len() >= 2, "{:?}", r.ids);
    }
}
