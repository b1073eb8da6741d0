//! Checks over a set of nodes' `GET /status` answers, shared by the tests, the bench and the demo.

use chatmesh_node::events::StatusView;
use std::collections::BTreeSet;

/// Every status shows one mesh of `n` alive members with unique IDs and one agreed coordinator, each node
/// a member or the coordinator.
pub fn one_mesh(s: &[StatusView], n: usize) -> Result<(), String> {
    let mut coordinators = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for x in s {
        if x.role != "member" && x.role != "coordinator" {
            return Err(format!("{} is {}", x.name, x.role));
        }
        let alive = alive(x);
        if alive != n {
            return Err(format!("{} ({}) sees {alive} alive members", x.name, x.role));
        }
        coordinators.insert(x.coordinator.as_ref().map(|c| c.key.as_str()));
        ids.insert(x.id);
    }
    if coordinators.len() != 1 {
        return Err(format!("{} different coordinators", coordinators.len()));
    }
    if ids.len() != s.len() {
        return Err("IDs are not unique".into());
    }
    Ok(())
}

/// How many members a status shows alive.
pub fn alive(s: &StatusView) -> usize {
    s.members.iter().filter(|m| m.state == "alive").count()
}

/// All statuses show the same history: equal counts and digests.
pub fn same_history(s: &[StatusView]) -> Result<(), String> {
    let d: BTreeSet<(u64, &str)> = s.iter().map(|x| (x.history.count, x.history.digest.as_str())).collect();
    match d.len() {
        1 => Ok(()),
        k => Err(format!("{k} different histories")),
    }
}

/// All statuses show the same history digest.
pub fn same_digest(s: &[StatusView]) -> Result<(), String> {
    let d: BTreeSet<&str> = s.iter().map(|x| x.history.digest.as_str()).collect();
    match d.len() {
        1 => Ok(()),
        k => Err(format!("{k} different digests")),
    }
}

/// No own message of any node waits for an acknowledgement.
pub fn all_acked(s: &[StatusView]) -> Result<(), String> {
    match s.iter().map(|x| x.pending_acks).sum::<u64>() {
        0 => Ok(()),
        k => Err(format!("{k} messages not acknowledged by all")),
    }
}

/// The ID of the coordinator a status follows (0 when it follows none).
pub fn coordinator_id(s: &StatusView) -> u32 {
    s.coordinator.as_ref().map_or(0, |c| c.id)
}
