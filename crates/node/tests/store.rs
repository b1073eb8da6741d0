//! The SQLite store on real files: restarts keep everything, a kill at any point between the store and the
//! acknowledgement loses nothing acknowledged, damaged or foreign files get a clear error naming them.

use chatmesh_core::*;
use chatmesh_node::{Store, StoreError, Write, SCHEMA_VERSION};
use chatmesh_sim::SimStore;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

fn addr() -> std::net::SocketAddr {
    "127.0.0.1:7000".parse().unwrap()
}

/// A node's pending outputs: the durable writes of one drain (one transaction) and the events.
fn outputs(node: &mut Node) -> (Vec<Write>, Vec<Event>) {
    let mut writes = Vec::new();
    let mut events = Vec::new();
    while let Some(o) = node.poll_output() {
        match o {
            Output::Persist(s) => writes.push(Write::Snapshot(s)),
            Output::Store { messages, state } => writes.push(Write::Messages { messages, state }),
            Output::Event(e) => events.push(e),
            _ => {}
        }
    }
    (writes, events)
}

/// Carries out a node's outputs the way the driver will: the durable writes of one drain in one
/// transaction, before anything else. Returns the events.
fn drain(node: &mut Node, store: &mut Store) -> Vec<Event> {
    let (writes, events) = outputs(node);
    store.commit(&writes).expect("commit");
    events
}

fn boot(store: &mut Store, seed: u64, now: Instant) -> Node {
    let secret = store.init_identity(ChaCha8Rng::seed_from_u64(seed).gen()).unwrap();
    let cfg = Config::new("test", "writer", secret, addr(), seed);
    let mut node = Node::new(cfg, store.snapshot().unwrap(), store.history_state().unwrap(), now);
    drain(&mut node, store);
    node
}

/// Runs the node alone until it founds its mesh.
fn found(node: &mut Node, store: &mut Store, start: Instant) -> Instant {
    let mut now = start;
    while node.role() != Role::Coordinator {
        now = node.poll_timeout().unwrap();
        node.handle_timeout(now);
        drain(node, store);
    }
    now
}

#[test]
fn a_restarted_node_comes_back_with_its_identity_id_and_whole_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let t0 = Instant::now();
    let (key, id, state) = {
        let mut store = Store::open(&path).unwrap();
        let mut node = boot(&mut store, 1, t0);
        let now = found(&mut node, &mut store, t0);
        for k in 0..500 {
            node.handle_input(now, Input::Command(Command::Send { text: format!("message {k}"), token: 0 }));
            drain(&mut node, &mut store);
        }
        (node.key(), node.my_id(), node.history().clone())
    };
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.message_count().unwrap(), 500);
    let node = boot(&mut store, 99, t0);
    assert_eq!(node.key(), key, "the identity is the stored one, not a new one");
    assert_eq!(node.snapshot().my_id, id);
    assert_eq!(node.history(), &state);
    let history = store.history(None).unwrap();
    assert_eq!(history.len(), 500);
    assert!(history.windows(2).all(|w| w[0].order_key() < w[1].order_key()), "canonical order");
    assert_eq!(store.history(Some(10)).unwrap(), history[490..].to_vec());
    let mut recomputed = HistoryState::default();
    history.iter().for_each(|m| recomputed.apply(m));
    recomputed.seal();
    assert_eq!(recomputed.digest, state.digest);
}

#[test]
fn commits_are_on_disk_when_they_return() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("node.db")).unwrap();
    // WAL, and synchronous = FULL (2): an acknowledged message survives a power loss, not only a crash.
    assert_eq!(store.durability().unwrap(), ("wal".to_string(), 2));
}

#[test]
fn a_new_database_is_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    Store::open(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn a_damaged_file_is_refused_by_name_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let garbage = b"this is not a database, just some bytes that happen to be here".repeat(100);
    std::fs::write(&path, &garbage).unwrap();
    let err = Store::open(&path).err().expect("refused");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "nothing was reset");
}

#[test]
fn another_programs_database_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = rusqlite_connection(&path);
    conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER);").unwrap();
    drop(conn);
    let err = Store::open(&path).err().expect("refused");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("other.db"), "{err}");
}

#[test]
fn a_database_from_a_newer_chatmesh_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    drop(Store::open(&path).unwrap());
    rusqlite_connection(&path).execute_batch("PRAGMA user_version = 99;").unwrap();
    let err = Store::open(&path).err().expect("refused");
    assert!(matches!(err, StoreError::NewerSchema { found: 99, .. }), "{err}");
}

/// A database written before messages carried batch proofs (schema version 1) opens with every message
/// intact: they load, equal to what was written, and verify; and the file is version 2 from then on.
#[test]
fn a_version_1_database_is_migrated_with_its_messages_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let sk = SigningKey::from_bytes(&[4; 32]);
    let messages: Vec<Message> = (1..=50u64)
        .map(|k| {
            Message::sign(
                &sk,
                k,
                k,
                vec![],
                1_000 + k,
                Body::Text(format!("written by version 1: {k}\0{}", "\0".repeat(k as usize % 3))),
            )
        })
        .collect();
    let state = store_new(&path, &messages);
    // What version 1 wrote: each message's encoding without the proof, which is its last byte (see
    // `a_message_stored_before_batches_is_its_encoding_without_the_last_byte`).
    let conn = rusqlite_connection(&path);
    let changed = conn.execute("UPDATE messages SET message = substr(message, 1, length(message) - 1)", []).unwrap();
    assert_eq!(changed, 50);
    strip_acknowledgements(&conn);
    conn.execute_batch("PRAGMA user_version = 1;").unwrap();
    drop(conn);
    let store = Store::open(&path).unwrap();
    let version: i32 = rusqlite_connection(&path).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let req = LoadRequest { id: 1, frontier: Frontier::new(), after: None, max_messages: 100, max_bytes: 1 << 20 };
    let (loaded, more) = store.load(&req).unwrap();
    assert!(!more);
    assert_eq!(loaded, messages);
    assert!(loaded.iter().all(|m| m.verify().is_ok()));
    assert_eq!(store.history_state().unwrap(), state);
}

/// Makes the stored history summary what versions 1 and 2 wrote: the same encoding without the
/// acknowledgements of our own messages, which come last (an empty map is one zero byte).
fn strip_acknowledgements(conn: &rusqlite::Connection) {
    let last: Vec<u8> = conn
        .query_row("SELECT substr(value, length(value)) FROM meta WHERE key = 'history'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(last, [0], "an empty map of acknowledgements ends the summary");
    let changed =
        conn.execute("UPDATE meta SET value = substr(value, 1, length(value) - 1) WHERE key = 'history'", []).unwrap();
    assert_eq!(changed, 1);
}

/// A database written before acknowledgements were stored (schema version 2) opens with its history
/// summary intact and no acknowledgements (they are learnt again from the peers); from then on the file
/// is version 3 and keeps what each peer acknowledged of our own messages across reopenings.
#[test]
fn a_version_2_database_is_migrated_and_then_keeps_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let sk = SigningKey::from_bytes(&[5; 32]);
    let me = key_of(&sk.to_bytes());
    let messages: Vec<Message> =
        (1..=20u64).map(|k| Message::sign(&sk, k, k, vec![], 1_000 + k, Body::Text(format!("v2 {k}")))).collect();
    let mut state = store_new(&path, &messages);
    let conn = rusqlite_connection(&path);
    strip_acknowledgements(&conn);
    conn.execute_batch("PRAGMA user_version = 2;").unwrap();
    drop(conn);

    let mut store = Store::open(&path).unwrap();
    let version: i32 = rusqlite_connection(&path).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(store.history_state().unwrap(), state, "the summary reads as written, with no acknowledgements");
    assert_eq!(store.history(None).unwrap(), messages);
    assert_eq!(state.seq_of(&me), 20);

    // Acknowledgements ride with the summary: with messages, and alone (a summary-only `Store`).
    let (a, b) = (NodeKey([1; 32]), NodeKey([2; 32]));
    state.acked.insert(a, 20);
    state.acked.insert(b, 7);
    store.commit(&[Write::Messages { messages: Vec::new(), state: state.clone() }]).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    let restored = store.history_state().unwrap();
    assert_eq!(restored.acked, state.acked);
    assert_eq!(restored, state);
    assert_eq!(store.message_count().unwrap(), 20, "a summary-only write adds no message");
}

/// A new database at `path` holding `messages` (in one commit) and their summary, which it returns; closed.
fn store_new(path: &std::path::Path, messages: &[Message]) -> HistoryState {
    let mut state = HistoryState::default();
    messages.iter().for_each(|m| state.apply(m));
    state.seal();
    let mut store = Store::open(path).unwrap();
    store.commit(&[Write::Messages { messages: messages.to_vec(), state: state.clone() }]).unwrap();
    state
}

fn rusqlite_connection(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn loads_answer_exactly_as_the_simulated_store_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("node.db")).unwrap();
    let mut sim = SimStore::default();
    // A history of three authors with cross dependencies, as real nodes write it.
    let keys: Vec<SigningKey> = (1..=3u8).map(|b| SigningKey::from_bytes(&[b; 32])).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut state = HistoryState::default();
    let mut all: Vec<Message> = Vec::new();
    for k in 0..300 {
        let who = rng.gen_range(0..3);
        let author = key_of(&keys[who].to_bytes());
        let seq = all.iter().filter(|m| m.author == author).count() as u64 + 1;
        let deps = all.last().filter(|m| m.author != author).map(|m| vec![m.id()]).unwrap_or_default();
        let text = if k % 50 == 0 { "x".repeat(16_000) } else { format!("m{k}") };
        let m = Message::sign(&keys[who], seq, k + 1, deps, 0, Body::Text(text));
        assert!(sim.append(&m).is_none());
        state.apply(&m);
        all.push(m);
    }
    store.commit(&[Write::Messages { messages: all.clone(), state }]).unwrap();
    for _ in 0..200 {
        let mut frontier = Frontier::new();
        for k in &keys {
            if rng.gen_bool(0.7) {
                frontier.insert(key_of(&k.to_bytes()), rng.gen_range(0..120));
            }
        }
        let after = rng.gen_bool(0.5).then(|| all[rng.gen_range(0..all.len())].order_key());
        let req = LoadRequest {
            id: 1,
            frontier,
            after,
            max_messages: rng.gen_range(1..600),
            max_bytes: rng.gen_range(1..200_000),
        };
        assert_eq!(store.load(&req).unwrap(), sim.load(&req), "{req:?}");
    }
}

/// The child side of the kill test: writes messages forever, printing each seq once it is durable (the
/// moment a real node would acknowledge or show it). Run only by the parent test.
#[test]
#[ignore = "run by a_kill_at_any_point_loses_nothing_that_was_acknowledged"]
fn child_writes_until_killed() {
    let Ok(path) = std::env::var("CHATMESH_STORE_CHILD") else { return };
    let mut store = Store::open(std::path::Path::new(&path)).unwrap();
    let start = Instant::now();
    let mut node = boot(&mut store, 5, start);
    let mut k = 0u64;
    loop {
        k += 1;
        node.handle_input(start, Input::Command(Command::Send { text: format!("durable {k}"), token: 0 }));
        for e in drain(&mut node, &mut store) {
            if let Event::Sent { message, .. } = e {
                println!("acked {}", message.seq);
            }
        }
    }
}

#[test]
fn a_kill_at_any_point_loses_nothing_that_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut acked = 0;
    for round in 0..6 {
        let mut child = Process::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_writes_until_killed", "--nocapture", "--test-threads", "1"])
            .env("CHATMESH_STORE_CHILD", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stop_after = rng.gen_range(20..400);
        let mut seen = 0;
        for line in lines {
            let line = line.unwrap();
            if let Some(seq) = line.strip_prefix("acked ") {
                acked = acked.max(seq.parse::<u64>().unwrap());
                seen += 1;
                if seen == stop_after {
                    break;
                }
            }
        }
        // SIGKILL, wherever it is: between a commit and the next acknowledgement, or inside a commit.
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..2000)));
        child.kill().unwrap();
        child.wait().unwrap();
        let mut store = Store::open(&path).unwrap();
        let state = store.history_state().unwrap();
        let history = store.history(None).unwrap();
        assert!(history.len() as u64 >= acked, "round {round}: acknowledged {acked}, found {}", history.len());
        assert_eq!(state.count, history.len() as u64, "round {round}: the summary matches the messages");
        // Recomputed from the messages in canonical order (a linear extension of each author's order).
        let mut recomputed = HistoryState::default();
        history.iter().for_each(|m| recomputed.apply(m));
        recomputed.seal();
        assert_eq!(recomputed.digest, state.digest, "round {round}");
        let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=history.len() as u64).collect::<Vec<_>>(), "round {round}: no gap, no reuse");
        drop(boot(&mut store, 5, Instant::now()));
    }
    assert!(acked > 100, "the children made progress ({acked})");
}

/// What one message's commit costs on this machine's disk, the floor under a message's latency (a message
/// leaves its author only once durable): one 200-byte message per transaction, `synchronous = FULL`, at a
/// chat's pace (10 a second), flat out, and 4 stores side by side at 1,000 a second each (the 4 nodes of
/// `chatmesh bench latency`'s 1,000 msg/s step each commit about that often). A measurement, not a check
/// (`cargo test --release -p chatmesh-node --test store -- --ignored --nocapture commit_costs`).
#[test]
#[ignore = "a measurement: run it by name"]
fn commit_costs() {
    fn commits(stores: usize, per_second: f64, n: usize) -> Vec<Duration> {
        let mut times = std::thread::scope(|s| {
            let writers: Vec<_> = (0..stores)
                .map(|i| {
                    s.spawn(move || {
                        let dir = tempfile::tempdir().unwrap();
                        let mut store = Store::open(&dir.path().join("node.db")).unwrap();
                        let start = Instant::now();
                        let mut node = boot(&mut store, 40 + i as u64, start);
                        found(&mut node, &mut store, start);
                        let mut times = Vec::with_capacity(n);
                        let mut next = Instant::now();
                        for k in 0..n {
                            if per_second > 0.0 {
                                next += Duration::from_secs_f64(1.0 / per_second);
                                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                            }
                            let text = format!("{k:0>200}");
                            node.handle_input(Instant::now(), Input::Command(Command::Send { text, token: 0 }));
                            let (writes, _) = outputs(&mut node);
                            let began = Instant::now();
                            store.commit(&writes).unwrap();
                            times.push(began.elapsed());
                        }
                        times
                    })
                })
                .collect();
            writers.into_iter().flat_map(|w| w.join().unwrap()).collect::<Vec<_>>()
        });
        times.sort();
        times
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (stores, rate, n) in [(1, 10.0, 100), (1, 0.0, 2000), (4, 1000.0, 2000)] {
        let t = commits(stores, rate, n);
        let at = |p: f64| ms(chatmesh_sim::percentile(&t, p).expect("commits"));
        let pace = if rate > 0.0 { format!("{rate} a second each") } else { "flat out".to_string() };
        println!(
            "{stores} store(s), {pace}: commit p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} commits)",
            at(50.0),
            at(99.0),
            at(100.0),
            t.len()
        );
    }
}

fn membership(sk: &SigningKey, seq: u64, n: u8, name: &str) -> Message {
    let e = MembershipEvent::Joined { id: NodeId(n.into()), key: key_of(&[n; 32]), name: name.into() };
    Message::sign(sk, seq, seq, vec![], 0, Body::Membership(e))
}

#[test]
fn membership_events_are_found_without_the_chat_also_in_a_store_written_before_the_event_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let sk = SigningKey::from_bytes(&[4; 32]);
    let mut messages: Vec<Message> =
        (1..=6u64).map(|k| Message::sign(&sk, k, k, vec![], 0, Body::Text(format!("chat {k}")))).collect();
    messages[1] = membership(&sk, 2, 2, "bruno");
    messages[4] = membership(&sk, 5, 3, "carla");
    store_new(&path, &messages);
    let store = Store::open(&path).unwrap();
    let events = vec![messages[1].clone(), messages[4].clone()];
    assert_eq!(store.membership_events().unwrap(), events);
    drop(store);
    // What version 3 held: no flag, no index.
    let conn = rusqlite_connection(&path);
    conn.execute_batch("DROP INDEX messages_events; ALTER TABLE messages DROP COLUMN event; PRAGMA user_version = 3;")
        .unwrap();
    drop(conn);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.membership_events().unwrap(), events, "the migration flags the events stored before");
    let version: i32 = rusqlite_connection(&path).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn a_nick_outlives_restarts_until_the_configured_name_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let reopen = || Store::open(&path).unwrap();
    assert_eq!(reopen().resolve_name("ana").unwrap(), "ana", "first start: the configured name");
    let mut store = reopen();
    store.commit(&[Write::Name { name: "Ana Silva".into(), configured: "ana".into() }]).unwrap();
    drop(store);
    assert_eq!(reopen().resolve_name("ana").unwrap(), "Ana Silva", "restart: the nick is kept");
    assert_eq!(reopen().resolve_name("ana").unwrap(), "Ana Silva", "and kept again");
    assert_eq!(reopen().resolve_name("anabel").unwrap(), "anabel", "a new configured name is a rename");
    assert_eq!(reopen().resolve_name("ana").unwrap(), "ana", "and so is going back to the old one");
    assert_eq!(reopen().name().unwrap(), Some(("ana".into(), "ana".into())));
}

/// `chatmesh history` reads a node's store beside the node: the read-only store sees each commit whole,
/// messages with their summary, and never creates, migrates or writes anything.
#[test]
fn a_read_only_store_sees_whole_commits_beside_the_writer_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let sk = SigningKey::from_bytes(&[6; 32]);
    let messages: Vec<Message> =
        (1..=30u64).map(|k| Message::sign(&sk, k, k, vec![], 1_000 + k, Body::Text(format!("m {k}")))).collect();
    let mut writer = Store::open(&path).unwrap();
    let mut state = HistoryState::default();
    messages[..10].iter().for_each(|m| state.apply(m));
    state.seal();
    writer.commit(&[Write::Messages { messages: messages[..10].to_vec(), state: state.clone() }]).unwrap();

    let reader = Store::open_read_only(&path).unwrap();
    let (seen, summary) = reader
        .read_consistent(|r| -> Result<_, StoreError> {
            let mut seen = Vec::new();
            r.for_each_message(|m| -> Result<(), StoreError> {
                seen.push(m);
                Ok(())
            })?;
            // A commit of the writer in the middle of the read is not seen by it, in part or whole.
            messages[10..].iter().for_each(|m| state.apply(m));
            state.seal();
            writer.commit(&[Write::Messages { messages: messages[10..].to_vec(), state: state.clone() }]).unwrap();
            Ok((seen, r.history_state()?))
        })
        .unwrap();
    assert_eq!(seen, messages[..10]);
    assert_eq!(summary.count, 10, "the summary of the same moment as the messages");
    assert_eq!(reader.history(None).unwrap(), messages, "a later read sees the later commit");

    drop((reader, writer));

    // The node stopped (its WAL checkpointed into the file): reading leaves the file as it was.
    let before = std::fs::read(&path).unwrap();
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.history(None).unwrap(), messages);
    assert_eq!(reader.history_state().unwrap(), state);
    drop(reader);
    assert!(std::fs::read(&path).unwrap() == before, "the database file is unchanged");
}

#[test]
fn a_read_only_open_refuses_a_missing_foreign_or_other_schema_database_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let err = Store::open_read_only(&missing).err().expect("refused");
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("missing.db"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing was created");

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let err = Store::open_read_only(&empty).err().expect("refused");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");

    let other = dir.path().join("other.db");
    rusqlite_connection(&other).execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY);").unwrap();
    let err = Store::open_read_only(&other).err().expect("refused");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");

    let path = dir.path().join("node.db");
    drop(Store::open(&path).unwrap());
    for (version, older) in [(SCHEMA_VERSION - 1, true), (SCHEMA_VERSION + 1, false)] {
        rusqlite_connection(&path).execute_batch(&format!("PRAGMA user_version = {version};")).unwrap();
        let err = Store::open_read_only(&path).err().expect("refused");
        match older {
            true => assert!(matches!(err, StoreError::OlderSchema { found, .. } if found == version), "{err}"),
            false => assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == version), "{err}"),
        }
        let found: i32 = rusqlite_connection(&path).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(found, version, "not migrated");
    }
}
