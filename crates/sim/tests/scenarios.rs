//! Named scenarios: the situations the seeds and DESIGN.md name, each checked against the promises.
//! Times are virtual: deterministic for a given seed, whatever the machine is doing.

use chatmesh_core::{Body, Command, MemberState, MembershipEvent, Message, NodeId, NodeKey, Rank, Role, Timing};
use chatmesh_sim::*;
use std::collections::BTreeSet;
use std::time::Duration;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn mesh(seed: u64, n: usize) -> (Sim, usize) {
    let mut sim = Sim::new(SimOptions::quiet(seed), Timing::default());
    for i in 0..n {
        sim.add_node(Duration::from_millis(20 * i as u64));
    }
    let c = settle(&mut sim, secs(30)).unwrap_or_else(|p| panic!("did not settle: {p:?}"));
    (sim, c)
}

fn id(sim: &Sim, i: usize) -> NodeId {
    sim.node(i).and_then(|c| c.my_id()).expect("in the mesh")
}

fn assert_clean(sim: &Sim) {
    assert!(sim.obs.violations.is_empty(), "{:?}", sim.obs.violations);
    assert!(history_problems(sim).is_empty(), "{:?}", history_problems(sim));
}

#[test]
fn coordinator_crash_elects_the_highest_survivor_within_milliseconds() {
    let (mut sim, c) = mesh(1, 5);
    sim.crash(c);
    let next = highest(&sim, &sim.live()).unwrap();
    let key = sim.nodes[next].key;
    let took = sim.run_until_true(secs(5), |s| all_follow(s, key)).expect("failover");
    assert!(took < Duration::from_millis(50), "took {took:?}");
    settle(&mut sim, secs(5)).unwrap();
    let view = sim.node(next).unwrap().view().unwrap();
    assert_eq!(view.get(&sim.nodes[c].key).unwrap().state, MemberState::Failed, "the dead coordinator is announced");
    assert_clean(&sim);
}

#[test]
fn coordinator_paused_then_resumed_goes_silent_then_follows_its_successor() {
    let (mut sim, c) = mesh(2, 5);
    let old_id = id(&sim, c);
    sim.pause(c);
    let next = highest(&sim, &sim.live()).unwrap();
    let key = sim.nodes[next].key;
    let took = sim.run_until_true(secs(5), |s| all_follow(s, key)).expect("failover");
    assert!(took < secs(1), "silent failover took {took:?}");
    sim.run_for(secs(3));
    sim.resume(c);
    let back = settle(&mut sim, secs(10)).unwrap();
    // A live coordinator is never displaced: the resumed node, although it outranks the successor, rejoins
    // as a member with its ID.
    assert_eq!(back, next);
    assert_eq!(sim.node(c).unwrap().role(), Role::Member);
    assert_eq!(id(&sim, c), old_id);
    assert_clean(&sim);
}

#[test]
fn partition_gives_each_part_a_coordinator_and_heal_merges_them() {
    let (mut sim, _) = mesh(3, 6);
    sim.partition(&[vec![0, 1, 2], vec![3, 4, 5]]);
    settle(&mut sim, secs(10)).unwrap();
    let parts = connected_parts(&sim);
    assert_eq!(parts.len(), 2);
    let mut coordinators = Vec::new();
    for part in &parts {
        let here: Vec<usize> =
            part.iter().copied().filter(|&i| sim.node(i).unwrap().role() == Role::Coordinator).collect();
        assert_eq!(here.len(), 1, "one coordinator per part");
        coordinators.push(here[0]);
    }
    let terms: Vec<_> = parts.iter().map(|p| sim.node(p[0]).unwrap().term()).collect();
    // The merge rule: the part of the later term (the one that had to elect), seniority breaking a tie.
    let precedence = |i: usize| (sim.node(i).unwrap().term(), Rank { id: id(&sim, i), key: sim.nodes[i].key });
    let winner = coordinators.iter().copied().max_by_key(|&i| precedence(i)).unwrap();
    sim.heal();
    let c = settle(&mut sim, secs(10)).unwrap();
    assert_eq!(c, winner);
    assert!(sim.node(c).unwrap().term() > *terms.iter().max().unwrap(), "the merged term is above both");
    assert_clean(&sim);
}

#[test]
fn simultaneous_founders_end_as_one_mesh_with_distinct_ids() {
    let mut sim = Sim::new(SimOptions::quiet(4), Timing::default());
    let a = sim.add_node(Duration::ZERO);
    let b = sim.add_node(Duration::ZERO);
    // Neither hears the other while it looks for a mesh: both found one, both as #1.
    sim.partition(&[vec![a], vec![b]]);
    sim.run_for(secs(2));
    for i in [a, b] {
        assert_eq!(sim.node(i).unwrap().role(), Role::Coordinator);
        assert_eq!(id(&sim, i), NodeId(1));
    }
    sim.heal();
    let c = settle(&mut sim, secs(5)).unwrap();
    assert_ne!(id(&sim, a), id(&sim, b));
    assert_eq!(sim.node(c).unwrap().view().unwrap().alive().count(), 2);
    assert_clean(&sim);
}

#[test]
fn simultaneous_starts_without_a_partition_end_as_one_mesh() {
    for seed in 0..50 {
        let mut sim = Sim::new(SimOptions::quiet(seed), Timing::default());
        for _ in 0..4 {
            sim.add_node(Duration::ZERO);
        }
        settle(&mut sim, secs(10)).unwrap_or_else(|p| panic!("seed {seed}: {p:?}"));
        assert_clean(&sim);
    }
}

#[test]
fn sixteen_nodes_joining_at_once_settle_with_sixteen_distinct_ids() {
    let mut sim = Sim::new(SimOptions::quiet(5), Timing::default());
    for _ in 0..16 {
        sim.add_node(Duration::ZERO);
    }
    let took = sim.run_until_true(secs(20), |s| settled_problems(s).is_empty());
    assert!(took.is_some(), "{:?}", settled_problems(&sim));
    let ids: BTreeSet<NodeId> = (0..16).map(|i| id(&sim, i)).collect();
    assert_eq!(ids.len(), 16);
    assert_clean(&sim);
}

#[test]
fn a_restarted_member_rejoins_with_the_same_id() {
    let (mut sim, c) = mesh(6, 4);
    let m = (0..4).find(|&i| i != c).unwrap();
    let before = id(&sim, m);
    sim.crash(m);
    sim.run_until_true(secs(5), |s| {
        s.node(c).unwrap().view().unwrap().get(&s.nodes[m].key).unwrap().state == MemberState::Failed
    })
    .expect("the crash is detected and announced");
    sim.run_for(secs(2));
    sim.restart(m);
    settle(&mut sim, secs(10)).unwrap();
    assert_eq!(id(&sim, m), before);
    assert_clean(&sim);
}

#[test]
fn a_member_that_left_gets_its_id_back_when_it_returns() {
    let (mut sim, c) = mesh(7, 4);
    let m = (0..4).find(|&i| i != c).unwrap();
    let before = id(&sim, m);
    sim.command(m, Command::Leave);
    sim.run_for(secs(1));
    assert!(sim.nodes[m].left);
    let view = sim.node(c).unwrap().view().unwrap();
    assert_eq!(
        view.get(&sim.nodes[m].key).unwrap().state,
        MemberState::Left,
        "announced as a departure, not a failure"
    );
    sim.rejoin(m);
    settle(&mut sim, secs(10)).unwrap();
    assert_eq!(id(&sim, m), before);
    assert_clean(&sim);
}

#[test]
fn a_leaving_coordinator_is_succeeded_at_once() {
    let (mut sim, c) = mesh(8, 5);
    sim.command(c, Command::Leave);
    let next = highest(&sim, &sim.live()).unwrap();
    let key = sim.nodes[next].key;
    let took = sim.run_until_true(secs(5), |s| all_follow(s, key)).expect("succession");
    assert!(took < Duration::from_millis(50), "took {took:?}");
    settle(&mut sim, secs(5)).unwrap();
    let view = sim.node(next).unwrap().view().unwrap();
    assert_eq!(view.get(&sim.nodes[c].key).unwrap().state, MemberState::Left);
    assert_clean(&sim);
}

#[test]
fn a_cascade_of_coordinator_failures_always_ends_with_the_highest_survivor() {
    let (mut sim, mut c) = mesh(9, 8);
    let mut last_term = sim.node(c).unwrap().term();
    for round in 0..5 {
        if round % 2 == 0 {
            sim.crash(c);
        } else {
            sim.pause(c);
        }
        let next = highest(&sim, &sim.live()).unwrap();
        c = settle(&mut sim, secs(10)).unwrap_or_else(|p| panic!("round {round}: {p:?}"));
        assert_eq!(c, next);
        let term = sim.node(c).unwrap().term();
        assert!(term > last_term);
        last_term = term;
    }
    assert_clean(&sim);
}

#[test]
fn commands_are_not_refused_while_an_election_runs() {
    let (mut sim, c) = mesh(10, 5);
    sim.pause(c);
    let low = (0..5).filter(|&i| i != c).min_by_key(|&i| id(&sim, i)).unwrap();
    sim.run_until_true(secs(5), |s| s.node(low).unwrap().election_running()).expect("an election starts");
    let rejected = sim.node(low).unwrap().stats().rejected_total();
    sim.command(low, Command::RefreshView);
    sim.command(low, Command::StartElection);
    assert!(sim.node(low).unwrap().election_running());
    assert_eq!(sim.node(low).unwrap().stats().rejected_total(), rejected);
    sim.command(low, Command::Leave);
    sim.run_for(secs(2));
    assert!(sim.nodes[low].left, "/quit during an election still leaves");
    sim.resume(c);
    settle(&mut sim, secs(10)).unwrap();
    assert_clean(&sim);
}

#[test]
fn elect_command_runs_an_election_that_the_highest_member_wins() {
    let (mut sim, c) = mesh(12, 5);
    let term = sim.node(c).unwrap().term();
    let low = (0..5).filter(|&i| i != c).min_by_key(|&i| id(&sim, i)).unwrap();
    sim.command(low, Command::StartElection);
    assert!(sim.node(low).unwrap().election_running());
    sim.run_for(secs(1));
    let again = settle(&mut sim, secs(5)).unwrap();
    assert_eq!(again, c);
    assert!(sim.node(c).unwrap().term() > term, "a new term was announced");
    assert_clean(&sim);
}

#[test]
fn an_isolated_coordinator_is_replaced_and_steps_down_when_it_returns() {
    let (mut sim, c) = mesh(13, 5);
    sim.isolate(c);
    let others: Vec<usize> = (0..5).filter(|&i| i != c).collect();
    let next = highest(&sim, &others).unwrap();
    let key = sim.nodes[next].key;
    sim.run_until_true(secs(5), |s| others.iter().all(|&i| s.node(i).unwrap().coordinator() == Some(key)))
        .expect("the others elect a coordinator");
    // The isolated one still believes it coordinates a mesh of one.
    assert_eq!(sim.node(c).unwrap().role(), Role::Coordinator);
    sim.heal();
    let after = settle(&mut sim, secs(10)).unwrap();
    assert_eq!(after, next, "the successor (of the later term) keeps the role");
    assert_eq!(sim.node(c).unwrap().role(), Role::Member);
    assert_clean(&sim);
}

#[test]
fn a_node_back_after_a_long_absence_finds_the_mesh_and_keeps_its_id() {
    let (mut sim, c) = mesh(14, 4);
    let m = (0..4).find(|&i| i != c).unwrap();
    let before = id(&sim, m);
    sim.crash(m);
    sim.run_for(Duration::from_secs(7 * 24 * 3600));
    sim.restart(m);
    settle(&mut sim, secs(10)).unwrap();
    assert_eq!(id(&sim, m), before);
    assert_clean(&sim);
}

#[test]
fn failover_after_a_crash_takes_milliseconds_and_after_silence_under_a_second() {
    let seeds: Vec<u64> = (0..200).collect();
    for failure in [Failure::Crash, Failure::Silent] {
        let times: Vec<Duration> = run_parallel(&seeds, |s| failover_run(s, 5, failure))
            .into_iter()
            .enumerate()
            .map(|(s, r)| r.unwrap_or_else(|p| panic!("seed {s}: {p:?}")))
            .collect();
        let (p50, p99, max) = percentiles(times);
        println!("{failure:?}: p50 {p50:?} p99 {p99:?} max {max:?}");
        match failure {
            Failure::Crash => assert!(p99 < Duration::from_millis(50), "crash failover p99 {p99:?}"),
            Failure::Silent => assert!(p99 < secs(1), "silent failover p99 {p99:?}"),
        }
    }
}

#[test]
fn a_member_stalled_long_enough_to_be_declared_failed_rejoins_without_taking_over() {
    // Review finding: a member stalled for ~700 ms was declared failed, then ran an election nobody
    // answered, won it, and displaced the coordinator (three coordinators, four terms).
    for stall_ms in [400, 700, 900, 1500] {
        let (mut sim, c) = mesh(31, 5);
        let term = sim.node(c).unwrap().term();
        let low = (0..5).filter(|&i| i != c).min_by_key(|&i| id(&sim, i)).unwrap();
        sim.pause(low);
        sim.run_for(Duration::from_millis(stall_ms));
        sim.resume(low);
        let after = settle(&mut sim, secs(10)).unwrap_or_else(|p| panic!("{stall_ms} ms: {p:?}"));
        assert_eq!(after, c, "{stall_ms} ms: the coordinator stays");
        assert_eq!(sim.node(c).unwrap().term(), term, "{stall_ms} ms: no new term");
        assert_clean(&sim);
    }
}

#[test]
fn a_node_with_a_name_over_the_limit_joins_under_a_shortened_name() {
    let mut sim = Sim::new(SimOptions::quiet(32), Timing::default());
    sim.add_node(Duration::ZERO);
    let long = sim.add_named_node(&"é".repeat(50), Duration::from_millis(10));
    settle(&mut sim, secs(10)).unwrap();
    let view = sim.node(0).unwrap().view().unwrap();
    let name = &view.get(&sim.nodes[long].key).unwrap().name;
    assert!(name.len() <= chatmesh_core::MAX_NAME_LEN && name.starts_with("éé"), "{name:?}");
    assert_clean(&sim);
}

/// The membership events node `i` holds, in canonical order.
fn membership_events(sim: &Sim, i: usize) -> Vec<MembershipEvent> {
    let mut held: Vec<&Message> = sim.nodes[i].store.by_author.values().flat_map(|m| m.values()).collect();
    held.sort_by_key(|m| m.order_key());
    held.iter()
        .filter_map(|m| match &m.body {
            Body::Membership(e) => Some(e.clone()),
            Body::Text(_) => None,
        })
        .collect()
}

/// What node `i`'s history says happened to `key` besides coordinator changes: `joined`, `left`, `failed`,
/// `renamed old -> new`.
fn story(sim: &Sim, i: usize, key: NodeKey) -> Vec<String> {
    membership_events(sim, i)
        .into_iter()
        .filter_map(|e| match e {
            MembershipEvent::Joined { key: k, .. } if k == key => Some("joined".to_string()),
            MembershipEvent::Left { key: k, .. } if k == key => Some("left".to_string()),
            MembershipEvent::Failed { key: k, .. } if k == key => Some("failed".to_string()),
            MembershipEvent::Renamed { key: k, old, new, .. } if k == key => Some(format!("renamed {old} -> {new}")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_rename_reaches_every_view_for_members_and_the_coordinator() {
    let (mut sim, c) = mesh(31, 4);
    let member = (0..4).find(|i| *i != c).unwrap();
    let (mk, ck) = (sim.nodes[member].key, sim.nodes[c].key);
    let (member_was, c_was) = (sim.nodes[member].name.clone(), sim.nodes[c].name.clone());
    let before: Vec<_> = (0..4).map(|i| (story(&sim, i, mk), story(&sim, i, ck))).collect();
    sim.command(member, Command::Rename { name: "zed".into() });
    sim.command(c, Command::Rename { name: "boss".into() });
    sim.run_for(secs(2));
    for i in 0..4 {
        let view = sim.node(i).unwrap().view().unwrap();
        assert_eq!(view.get(&mk).unwrap().name, "zed", "node {i}");
        assert_eq!(view.get(&ck).unwrap().name, "boss", "node {i}");
        assert_eq!(view.get(&mk).unwrap().id, id(&sim, member), "the ID is kept");
    }
    assert_eq!(coordinator_of(&sim), Some(c), "a rename starts no election");
    settle(&mut sim, secs(10)).unwrap();
    // Each rename is exactly one event in every node's history: no departure, no join.
    for (i, (member_before, c_before)) in before.into_iter().enumerate() {
        let mut member_story = member_before;
        member_story.push(format!("renamed {member_was} -> zed"));
        let mut c_story = c_before;
        c_story.push(format!("renamed {c_was} -> boss"));
        assert_eq!(story(&sim, i, mk), member_story, "node {i}");
        assert_eq!(story(&sim, i, ck), c_story, "node {i}");
    }
    assert_clean(&sim);
}

#[test]
fn a_restart_under_another_name_is_recorded_as_a_rename_after_the_rejoin() {
    let (mut sim, c) = mesh(33, 4);
    let member = (0..4).find(|i| *i != c).unwrap();
    let key = sim.nodes[member].key;
    let was = sim.nodes[member].name.clone();
    sim.crash(member);
    sim.nodes[member].cfg.name = "renamed".into();
    sim.restart(member);
    settle(&mut sim, secs(10)).unwrap();
    for i in 0..4 {
        // Failed and joined again (the coordinator saw the crash) or not, then renamed: once, and last.
        let story = story(&sim, i, key);
        assert_eq!(story.last(), Some(&format!("renamed {was} -> renamed")), "node {i}: {story:?}");
        assert_eq!(story.iter().filter(|s| s.starts_with("renamed")).count(), 1, "node {i}: {story:?}");
        assert!(!story.contains(&"left".to_string()), "node {i}: {story:?}");
        assert_eq!(sim.node(i).unwrap().view().unwrap().get(&key).unwrap().name, "renamed", "node {i}");
    }
    assert_clean(&sim);
}

#[test]
fn a_node_back_alone_under_another_name_records_its_rename_when_it_founds() {
    let (mut sim, _) = mesh(34, 2);
    let key = sim.nodes[1].key;
    let was = sim.nodes[1].name.clone();
    sim.crash(0);
    sim.crash(1);
    sim.nodes[1].cfg.name = "alone".into();
    sim.restart(1);
    sim.run_for(secs(5));
    assert_eq!(sim.node(1).unwrap().role(), Role::Coordinator, "it found nobody");
    let story = story(&sim, 1, key);
    assert_eq!(story.last(), Some(&format!("renamed {was} -> alone")), "{story:?}");
}

#[test]
fn a_coordinator_that_leaves_gracefully_is_recorded_as_left_not_failed() {
    let (mut sim, c) = mesh(32, 4);
    let key = sim.nodes[c].key;
    sim.command(c, Command::Leave);
    sim.run_for(secs(3));
    settle(&mut sim, secs(10)).unwrap();
    for i in sim.live() {
        let view = sim.node(i).unwrap().view().unwrap();
        assert_eq!(view.get(&key).unwrap().state, MemberState::Left, "node {i}");
    }
    assert_clean(&sim);
}
