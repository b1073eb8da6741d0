//! Checkers for the promises of DESIGN.md section 3, run once faults stop:
//! 1 (nothing lost: what any live node stores, every node of its part stores; no message shown as sent is
//!   lost), 4 (convergence: equal history digests in a part), 5 (one coordinator per connected part; who it
//! is depends on the run, since a live coordinator is never displaced: `truth.rs` and `scenarios.rs` check
//! who wins elections and merges), 6 (IDs unique in a settled view; a key keeps its ID unless a clash forced a
//! new one), and: every live node holds the same view as its part's coordinator.
//! Promises 2 (nothing invented: every stored message is exactly one its author signed; no duplicates) and
//! 3 (causal order, per-author order without gaps) are checked on every write, in `sim.rs` and `store.rs`,
//! and so is 7 (nothing false: no `failed` event for a member alive and reachable from its author
//! throughout), in `sim.rs`.

use crate::sim::Sim;
use chatmesh_core::{MessageId, NodeKey, Role};
use std::collections::{BTreeMap, BTreeSet};

/// Live nodes grouped by who can reach whom (transitively).
pub fn connected_parts(sim: &Sim) -> Vec<Vec<usize>> {
    let live = sim.live();
    let mut part_of: BTreeMap<usize, usize> = BTreeMap::new();
    let mut parts: Vec<Vec<usize>> = Vec::new();
    for &start in &live {
        if part_of.contains_key(&start) {
            continue;
        }
        let id = parts.len();
        let mut part = vec![start];
        part_of.insert(start, id);
        let mut at = 0;
        while at < part.len() {
            let a = part[at];
            for &b in &live {
                if !part_of.contains_key(&b) && sim.reachable(a, b) {
                    part_of.insert(b, id);
                    part.push(b);
                }
            }
            at += 1;
        }
        part.sort_unstable();
        parts.push(part);
    }
    parts
}

/// Everything wrong with the membership state right now, if faults had stopped; empty when settled.
pub fn settled_problems(sim: &Sim) -> Vec<String> {
    let mut problems: Vec<String> =
        sim.nodes.iter().filter(|n| n.pending_start).map(|n| format!("{} has not started yet", n.name)).collect();
    if sim.live().is_empty() {
        problems.push("no live node".into());
    }
    for part in connected_parts(sim) {
        check_part(sim, &part, &mut problems);
    }
    problems
}

fn check_part(sim: &Sim, part: &[usize], problems: &mut Vec<String>) {
    let name = |i: usize| sim.nodes[i].name.clone();
    let core = |i: usize| sim.nodes[i].core.as_ref().expect("live nodes run");
    let not_in = part.iter().filter(|&&i| !matches!(core(i).role(), Role::Member | Role::Coordinator));
    for &i in not_in {
        problems.push(format!("{} is {:?}, not in the mesh", name(i), core(i).role()));
    }
    let coordinators: Vec<usize> = part.iter().copied().filter(|&i| core(i).role() == Role::Coordinator).collect();
    let [c] = coordinators[..] else {
        let names: Vec<_> = coordinators.iter().map(|&i| name(i)).collect();
        problems.push(format!("part {:?} has {} coordinators {names:?}", names_of(sim, part), coordinators.len()));
        return;
    };
    let cview = core(c).view().expect("a coordinator has a view");
    if let Err(e) = cview.validate() {
        problems.push(format!("coordinator {}'s view is invalid: {e:?}", name(c)));
    }
    let keys: BTreeSet<NodeKey> = part.iter().map(|&i| sim.nodes[i].key).collect();
    for m in cview.alive() {
        if !keys.contains(&m.key) {
            problems.push(format!(
                "{}'s view shows {} {} alive, but it is not a live node of the part",
                name(c),
                m.name,
                m.id
            ));
        }
    }
    for &i in part {
        let node = core(i);
        let Some(entry) = cview.get(&node.key()) else {
            problems.push(format!("{} is missing from the coordinator's view", name(i)));
            continue;
        };
        if !entry.is_alive() || Some(entry.id) != node.my_id() {
            problems.push(format!(
                "{} is {:?} {} in the view but believes it is {:?}",
                name(i),
                entry.state,
                entry.id,
                node.my_id()
            ));
        }
        if i != c && node.view() != Some(cview) {
            let theirs = node.view().map(|v| v.order());
            problems.push(format!(
                "{} holds view {theirs:?}, coordinator {} holds {:?}",
                name(i),
                name(c),
                cview.order()
            ));
        }
        // Both ends of a link carry it on one connection, and it is open (a simultaneous dial settled on
        // the same one at both ends).
        for &j in part.iter().filter(|&&j| j > i) {
            let (a, b) = (sim.nodes[i].link_conn(&sim.nodes[j].key), sim.nodes[j].link_conn(&sim.nodes[i].key));
            if let (Some(a), Some(b)) = (a, b) {
                if a != b || !sim.conn_open(a) {
                    let open = if sim.conn_open(a) { "open" } else { "closed" };
                    problems.push(format!(
                        "{} carries its link to {} on connection {a} ({open}), {} on {b}",
                        name(i),
                        name(j),
                        name(j)
                    ));
                }
            }
        }
        let (mine, theirs) = (node.history(), core(c).history());
        if i != c && (mine.digest, mine.count) != (theirs.digest, theirs.count) {
            problems.push(format!(
                "{} holds {} messages (digest {}), coordinator {} holds {} ({})",
                name(i),
                mine.count,
                mine.digest.short(),
                name(c),
                theirs.count,
                theirs.digest.short()
            ));
        }
    }
}

/// Promise 1 once faults stop: every message any live node of a part stores, all of them store; every
/// message shown to its author as sent is stored by its author if the author is live (a crash does not lose
/// it: it was durable before it was shown).
pub fn history_problems(sim: &Sim) -> Vec<String> {
    let mut problems = Vec::new();
    for part in connected_parts(sim) {
        let union: BTreeSet<MessageId> = part.iter().flat_map(|&i| sim.nodes[i].store.ids()).collect();
        for &i in &part {
            let held: BTreeSet<MessageId> = sim.nodes[i].store.ids().collect();
            let missing = union.difference(&held).count();
            if missing > 0 {
                problems.push(format!("{} lacks {missing} messages that others of its part store", sim.nodes[i].name));
            }
        }
    }
    for id in &sim.obs.sent {
        let Some(author) = sim.nodes.iter().find(|n| n.key == id.author) else { continue };
        if author.store.get(id).is_none() {
            problems.push(format!("{} lost {id}, which it had shown as sent", author.name));
        }
    }
    problems
}

fn names_of(sim: &Sim, part: &[usize]) -> Vec<String> {
    part.iter().map(|&i| sim.nodes[i].name.clone()).collect()
}
