//! Names on real `chatmesh` processes: one rule on every node, after restarts and for late joiners; `/nick`
//! as a rename event that outlives a restart; equal names told apart.

mod common;

use chatmesh_harness::MessageView;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

fn key_of(mesh: &Mesh, i: usize) -> String {
    mesh.status(i).unwrap().key
}

/// Polls `check` over what node `i` printed until it holds (or panics after `LIMIT`).
fn wait_lines(mesh: &Mesh, i: usize, what: &str, check: impl Fn(&[Value]) -> bool) {
    let start = Instant::now();
    while !check(&mesh.lines(i)) {
        assert!(start.elapsed() < LIMIT, "{what}: not within {LIMIT:?}; node {i} printed {:#?}", mesh.lines(i));
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Node `i`'s `GET /history` once it holds `count` messages: a status shows a message before its commit, the
/// history read from the store after it.
fn history_of(mesh: &Mesh, i: usize) -> Vec<MessageView> {
    let count = mesh.status(i).unwrap().history.count as usize;
    let start = Instant::now();
    loop {
        let h = mesh.history(i);
        if h.len() >= count {
            return h;
        }
        assert!(start.elapsed() < LIMIT, "node {i}: {} of {count} messages in its store", h.len());
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `(author_name, author_label, text)` of every message of a history, for comparing nodes.
fn named(history: &[MessageView]) -> Vec<(Option<&str>, &str, &str)> {
    history.iter().map(|m| (m.author_name.as_deref(), m.author_label.as_str(), m.text.as_str())).collect()
}

/// Every message names its author, and no event line falls back to a short key.
fn assert_all_named(history: &[MessageView], who: &str, keys: &[String]) {
    for m in history {
        assert!(m.author_name.is_some(), "{who}: a message without its author's name: {m:?}");
        let text = &m.text;
        if m.kind == "event" {
            for k in keys {
                assert!(!text.contains(&k[..8]), "{who}: an event line names a key, not a name: {text:?}");
            }
        }
    }
}

#[test]
fn a_nick_is_one_rename_event_seen_by_everyone_kept_by_a_late_joiner_and_across_a_restart() {
    let mut mesh = Mesh::new("nick");
    let ana = mesh.start("ana", &[], &[]);
    mesh.wait_for("ana founds", &[ana], LIMIT, |s| one_mesh(s, 1));
    let bruno = mesh.start("bruno", &[], &[]);
    mesh.wait_for("one mesh of 2", &[ana, bruno], LIMIT, |s| one_mesh(s, 2));
    mesh.send(bruno, "before the nick");
    mesh.type_line(bruno, "/nick Bruno Silva");
    mesh.wait_for("the nick reaches the view", &[ana, bruno], LIMIT, |s| {
        let names: Vec<&str> = s.iter().flat_map(|x| x.members.iter().map(|m| m.name.as_str())).collect();
        if names.contains(&"Bruno Silva") && !names.contains(&"bruno") {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    mesh.send(bruno, "after the nick");
    // Others see the rename as one line (a history event and a notice), never as a leave and a join.
    wait_lines(&mesh, ana, "ana sees the rename", |lines| {
        lines.iter().any(|l| l["type"] == "message" && l["text"] == "bruno (#2) is now Bruno Silva")
            && lines.iter().any(|l| l["type"] == "member_renamed" && l["old"] == "bruno" && l["new"] == "Bruno Silva")
    });
    for l in mesh.lines(ana) {
        assert!(
            !(l["type"] == "member_left" || l["type"] == "member_failed") && l["text"] != "bruno (#2) left",
            "a rename shows as a departure: {l}"
        );
    }

    // A late joiner names everyone as the others do.
    let carla = mesh.start("carla", &[], &[]);
    let all = [ana, bruno, carla];
    mesh.wait_for("three agree", &all, LIMIT, |s| {
        one_mesh(s, 3)?;
        same_digest(s)
    });
    let histories: Vec<_> = all.iter().map(|i| history_of(&mesh, *i)).collect();
    for (i, h) in histories.iter().enumerate() {
        assert_eq!(named(h), named(&histories[0]), "node {i} names the history differently from node 0");
        let by_bruno: Vec<_> = h.iter().filter(|m| m.kind == "text").collect();
        assert!(by_bruno.iter().all(|m| m.author_name.as_deref() == Some("Bruno Silva")), "node {i}: {by_bruno:#?}");
        let renames = h.iter().filter(|m| m.text == "bruno (#2) is now Bruno Silva").count();
        assert_eq!(renames, 1, "node {i}: one rename event");
        let joins = h.iter().filter(|m| m.text.contains("(#2) joined")).count();
        assert_eq!(joins, 1, "node {i}: bruno joined once");
    }

    // The nick outlives a restart under the same --name.
    mesh.kill(bruno);
    mesh.start("bruno", &[], &[]);
    wait_lines(&mesh, bruno, "bruno is ready", |lines| lines.iter().any(|l| l["type"] == "ready"));
    let ready = mesh.lines(bruno).into_iter().find(|l| l["type"] == "ready").unwrap();
    assert_eq!(ready["name"], "Bruno Silva", "the ready line names the kept nick");
    mesh.wait_for("bruno back", &all, LIMIT, |s| one_mesh(s, 3));
    assert_eq!(mesh.status(bruno).unwrap().name, "Bruno Silva");
    mesh.wait_for("the others name him by his nick", &[ana, carla], LIMIT, |s| {
        let names: Vec<&str> = s.iter().flat_map(|x| x.members.iter().map(|m| m.name.as_str())).collect();
        if names.contains(&"bruno") {
            Err(format!("{names:?}"))
        } else {
            Ok(())
        }
    });
    let h = history_of(&mesh, ana);
    let texts: Vec<&str> = h.iter().filter(|m| m.kind == "event").map(|m| m.text.as_str()).collect();
    let count = |text: &str| texts.iter().filter(|t| **t == text).count();
    assert_eq!(count("bruno (#2) joined"), 1, "{texts:?}");
    assert_eq!(count("bruno (#2) is now Bruno Silva"), 1, "{texts:?}");
    assert!(!texts.iter().any(|t| t.ends_with("is now bruno")), "the restart did not undo the nick: {texts:?}");

    // Another --name at a restart is a rename to it, seen as such by everyone.
    mesh.kill(bruno);
    mesh.start_as("bruno", "B. Silva", &[], &[]);
    mesh.wait_for("the new --name", &all, LIMIT, |s| {
        one_mesh(s, 3)?;
        same_digest(s)?;
        let named = s.iter().all(|x| x.members.iter().any(|m| m.name == "B. Silva"));
        if named {
            Ok(())
        } else {
            Err("not everyone names bruno B. Silva".into())
        }
    });
    for i in all {
        let h = history_of(&mesh, i);
        let renames = h.iter().filter(|m| m.text == "Bruno Silva (#2) is now B. Silva").count();
        assert_eq!(renames, 1, "node {i}");
        assert!(!h.iter().any(|m| m.text == "Bruno Silva (#2) left"), "node {i}");
    }
}

#[test]
fn a_restarted_node_names_coordinator_events_and_messages_before_it_hears_anyone() {
    let mut mesh = Mesh::new("restart-names");
    let ana = mesh.start("ana", &[], &[]);
    mesh.wait_for("ana founds", &[ana], LIMIT, |s| one_mesh(s, 1));
    let bruno = mesh.start("bruno", &[], &[]);
    mesh.wait_for("one mesh of 2", &[ana, bruno], LIMIT, |s| one_mesh(s, 2));
    let keys = [key_of(&mesh, ana), key_of(&mesh, bruno)];
    mesh.send(ana, "from ana");
    mesh.send(bruno, "from bruno");
    // Bruno takes over: a coordinator event naming him. Ana comes back and joins him.
    mesh.kill(ana);
    mesh.wait_for("bruno coordinates", &[bruno], LIMIT, |s| {
        if s[0].role == "coordinator" {
            Ok(())
        } else {
            Err(s[0].role.to_string())
        }
    });
    mesh.start("ana", &[], &[]);
    mesh.wait_for("ana back", &[ana, bruno], LIMIT, |s| {
        one_mesh(s, 2)?;
        same_digest(s)
    });
    let before = history_of(&mesh, ana);
    assert!(
        before.iter().any(|m| m.text.starts_with("bruno (#2) coordinates from term")),
        "the coordinator event names bruno: {before:#?}"
    );

    // Everyone down; ana restarts alone: before any view reaches it, its history names everyone.
    mesh.kill(bruno);
    mesh.kill(ana);
    mesh.start("ana", &[], &[]);
    let after = mesh.history(ana);
    assert_eq!(mesh.status(ana).unwrap().role, "discovering", "checked before ana hears anyone");
    assert_all_named(&after, "ana after a restart", &keys);
    // (What happened after `before` was read, a take-over or bruno's failure, comes later in the history.)
    assert!(after.len() >= before.len(), "{after:#?}");
    assert_eq!(named(&after[..before.len()]), named(&before), "the same names as before the restart");

    // Bruno restarts too and joins: the JSON UI names his messages and coordinator events.
    mesh.start("bruno", &[], &[]);
    mesh.wait_for("both back", &[ana, bruno], LIMIT, |s| one_mesh(s, 2));
    mesh.send(bruno, "bruno again");
    wait_lines(&mesh, ana, "ana shows bruno's message", |lines| {
        lines.iter().any(|l| l["type"] == "message" && l["text"] == "bruno again")
    });
    for l in mesh.lines(ana).iter().filter(|l| l["type"] == "message") {
        assert!(l["author_name"].is_string(), "the JSON UI shows a message without a name: {l}");
    }
    assert_all_named(&mesh.history(bruno), "bruno after a restart", &keys);
}

#[test]
fn two_members_with_one_name_are_told_apart_by_their_ids_on_every_node() {
    let mut mesh = Mesh::new("two-anas");
    let ana = mesh.start("ana", &[], &[]);
    mesh.wait_for("ana founds", &[ana], LIMIT, |s| one_mesh(s, 1));
    let bruno = mesh.start("bruno", &[], &[]);
    mesh.wait_for("one mesh of 2", &[ana, bruno], LIMIT, |s| one_mesh(s, 2));
    let other = mesh.start_as("ana-too", "ana", &[], &[]);
    let all = [ana, bruno, other];
    mesh.wait_for("one mesh of 3", &all, LIMIT, |s| one_mesh(s, 3));
    let id = |i: usize| mesh.status(i).unwrap().id.unwrap();
    let (first, second) = (format!("ana#{}", id(ana)), format!("ana#{}", id(other)));
    mesh.send(ana, "I am the first ana");
    mesh.send(other, "I am the second ana");
    mesh.send(bruno, "I am bruno");
    mesh.wait_for("equal digests", &all, LIMIT, same_digest);
    for i in all {
        let h = history_of(&mesh, i);
        let label = |text: &str| h.iter().find(|m| m.text == text).map(|m| m.author_label.as_str());
        assert_eq!(label("I am the first ana"), Some(first.as_str()), "node {i}");
        assert_eq!(label("I am the second ana"), Some(second.as_str()), "node {i}");
        assert_eq!(label("I am bruno"), Some("bruno"), "node {i}: a unique name stays plain");
    }
    // The live stream labels them the same way.
    wait_lines(&mesh, bruno, "bruno's stream", |lines| {
        lines.iter().any(|l| l["text"] == "I am the first ana" && l["author_label"] == first.as_str())
            && lines.iter().any(|l| l["text"] == "I am the second ana" && l["author_label"] == second.as_str())
    });
}
