//! `chatmesh history` on real stores: beside a running node it shows what `GET /history` shows and
//! verifies to the digest `GET /status` gives; a missing, damaged or tampered store is refused by name
//! with status 1, and nothing is created or written; bad flags are usage errors (status 2).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);
const CLI: Duration = Duration::from_secs(20);

fn history_cli(dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let dir = dir.to_str().unwrap();
    let args: Vec<&str> = ["history", "--data-dir", dir].iter().chain(extra).copied().collect();
    run_cli(&args, &[], CLI)
}

/// Polls until `check` holds (the node's store commits a moment after its status shows a change).
fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if start.elapsed() > LIMIT => panic!("{what}: not within {LIMIT:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Two nodes that chatted, every message held and acknowledged by both.
fn two_nodes_that_chatted(test: &str) -> (Mesh, usize, usize) {
    let mut mesh = Mesh::new(test);
    let ana = mesh.start("ana", &[], &[]);
    mesh.wait_for("ana founds", &[ana], LIMIT, |s| one_mesh(s, 1));
    let bruno = mesh.start("bruno", &[], &[]);
    mesh.wait_for("one mesh of 2", &[ana, bruno], LIMIT, |s| one_mesh(s, 2));
    mesh.send(ana, "olá from ana");
    mesh.send(bruno, "oi from bruno");
    mesh.send(ana, "tamper me");
    // 4 messages: bruno's join and the three texts.
    mesh.wait_for("both hold everything, acknowledged", &[ana, bruno], LIMIT, |s| {
        same_digest(s)?;
        match s.iter().all(|x| x.pending_acks == 0 && x.history.count == 4) {
            true => Ok(()),
            false => Err(format!("{s:?}")),
        }
    });
    (mesh, ana, bruno)
}

/// `GET /history` as raw JSON: `chatmesh history` must print the very same objects, field for field.
fn history_json(mesh: &Mesh, i: usize) -> Vec<Value> {
    mesh.client(i).get("/history").expect("history")
}

#[test]
fn history_beside_a_running_node_shows_what_its_api_shows_and_verifies_to_its_digest() {
    let (mesh, ana, _bruno) = two_nodes_that_chatted("history-live");
    let dir = mesh.nodes[ana].data_dir.clone();

    eventually("json equals GET /history", || {
        let api = history_json(&mesh, ana);
        let (code, out, err) = history_cli(&dir, &["--format", "json"]);
        if code != Some(0) {
            return Err(format!("exit {code:?}: {err}"));
        }
        // The same objects: IDs and order, names, texts, delivery statuses.
        let read: Vec<Value> = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        match api == read {
            true => Ok(()),
            false => Err(format!("the API shows {api:#?}, history {read:#?}")),
        }
    });

    eventually("--verify gives the live digest", || {
        let status = mesh.status(ana)?;
        let (digest, count) = (&status.history.digest, status.history.count);
        let (code, out, err) = history_cli(&dir, &["--verify"]);
        let expected = format!("digest {digest} ({count} messages, all signatures valid)\n");
        match (code, out == expected) {
            (Some(0), true) => Ok(()),
            _ => Err(format!("exit {code:?}, {out:?} {err}, expected {expected:?}")),
        }
    });

    let api = history_json(&mesh, ana);
    let (code, text, err) = history_cli(&dir, &[]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), api.len(), "one line per message: {text}");
    for line in &lines {
        let (date, time) = (&line.as_bytes()[..10], &line.as_bytes()[10..20]);
        let digits_at = |s: &[u8], seps: &[usize]| {
            s.iter().enumerate().all(|(i, c)| if seps.contains(&i) { !c.is_ascii_digit() } else { c.is_ascii_digit() })
        };
        assert!(digits_at(date, &[4, 7]) && digits_at(time, &[0, 3, 6, 9]), "not `YYYY-MM-DD HH:MM:SS `: {line}");
    }
    assert!(lines.iter().any(|l| l.ends_with(" ana (#1): olá from ana  ✓✓ all")), "{text}");
    assert!(lines.iter().any(|l| l.ends_with(" bruno (#2): oi from bruno")), "{text}");
    assert!(lines.iter().any(|l| l.ends_with(" * bruno (#2) joined")), "{text}");

    let (code, jsonl, err) = history_cli(&dir, &["--format", "jsonl"]);
    assert_eq!(code, Some(0), "{err}");
    let read: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(read, api);

    // --since keeps the messages written from then on, in the same order.
    let since = api[api.len() - 2]["sent_at"].as_u64().unwrap();
    let (code, out, err) = history_cli(&dir, &["--format", "json", "--since", &since.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    let read: Vec<Value> = serde_json::from_str(&out).unwrap();
    let expected: Vec<_> = api.iter().filter(|m| m["sent_at"].as_u64().unwrap() >= since).cloned().collect();
    assert!(!expected.is_empty() && expected.len() < api.len());
    assert_eq!(read, expected);
    let (code, out, err) = history_cli(&dir, &["--since", "2999-01-01T00:00:00Z"]);
    assert_eq!((code, out.as_str()), (Some(0), ""), "{err}");
}

#[test]
fn a_stopped_nodes_store_is_read_without_a_write_and_a_tampered_one_fails_verification_by_name() {
    let (mut mesh, ana, bruno) = two_nodes_that_chatted("history-tamper");
    let dir = mesh.nodes[ana].data_dir.clone();
    let digest = mesh.status(ana).unwrap().history.digest;
    eventually("the store holds what the status shows", || {
        let (_, out, _) = history_cli(&dir, &["--verify"]);
        match out.contains(&digest) {
            true => Ok(()),
            false => Err(out),
        }
    });
    // ana first: killed after bruno, she would record his failure.
    mesh.kill(ana);
    mesh.kill(bruno);

    // The database and its WAL, as the killed node left them (the shared-memory index is readers' too).
    let files = |d: &Path| -> Vec<(String, Vec<u8>)> {
        let mut f: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("chatmesh.db"))
            .filter(|p| !p.to_string_lossy().ends_with("-shm"))
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect();
        f.sort();
        f
    };
    let db = dir.join("chatmesh.db");
    let before = files(&dir);
    let (code, out, err) = history_cli(&dir, &["--verify", "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["digest"], digest.as_str(), "{out}");
    let (code, _, err) = history_cli(&dir, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(files(&dir) == before, "reading wrote nothing to the database or its WAL");

    // One message's text changed: its signature no longer verifies, and the error names it.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (author, seq, blob): (Vec<u8>, i64, Vec<u8>) = conn
        .query_row(
            "SELECT author, seq, message FROM messages WHERE instr(message, CAST('tamper me' AS BLOB)) > 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let at = blob.windows(9).position(|w| w == b"tamper me").unwrap();
    let mut forged = blob.clone();
    forged[at..at + 9].copy_from_slice(b"tamper ME");
    conn.execute(
        "UPDATE messages SET message = ?1 WHERE author = ?2 AND seq = ?3",
        rusqlite::params![forged, author, seq],
    )
    .unwrap();
    let id = format!("{}/{seq}", hex::encode(&author));
    let (code, out, err) = history_cli(&dir, &["--verify"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains(&id) && err.contains("signature does not verify"), "{err}");
    assert!(err.contains(&db.display().to_string()), "the error names the file: {err}");

    // The message gone instead: every signature verifies, but the messages no longer give the digest.
    conn.execute("DELETE FROM messages WHERE author = ?1 AND seq = ?2", rusqlite::params![author, seq]).unwrap();
    drop(conn);
    let (code, out, err) = history_cli(&dir, &["--verify"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("stored summary says") && err.contains(&digest), "{err}");
}

#[test]
fn a_missing_or_damaged_store_is_refused_by_name_with_status_1_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let nowhere = tmp.path().join("nowhere");
    let (code, out, err) = history_cli(&nowhere, &[]);
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(err.contains("there is no data directory") && err.contains(&nowhere.display().to_string()), "{err}");
    assert!(!nowhere.exists(), "nothing was created");

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, err) = history_cli(&empty, &["--verify"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no ChatMesh database at") && err.contains("chatmesh.db"), "{err}");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "nothing was created");

    let damaged = tmp.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    let garbage = b"not a database, only bytes ".repeat(200);
    std::fs::write(damaged.join("chatmesh.db"), &garbage).unwrap();
    let (code, _, err) = history_cli(&damaged, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a usable database") && err.contains("chatmesh.db"), "{err}");
    assert_eq!(std::fs::read(damaged.join("chatmesh.db")).unwrap(), garbage, "left as it was");

    // Without --data-dir, the directory a node of that --name and --mesh uses.
    let xdg = tmp.path().to_str().unwrap();
    let (code, _, err) = run_cli(
        &["history", "--name", "ghost", "--mesh", "office"],
        &[("XDG_DATA_HOME", xdg), ("XDG_CONFIG_HOME", xdg)],
        CLI,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&tmp.path().join("chatmesh").join("office-ghost").display().to_string()), "{err}");
}

#[test]
fn bad_flags_are_usage_errors_with_status_2() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["--format", "bogus"][..], "bogus"),
        (&["--since", "yesterday"][..], "RFC 3339"),
        (&["--since", "1796562000000", "--verify"][..], "cannot be used with"),
    ] {
        let (code, out, err) = history_cli(tmp.path(), args);
        assert_eq!((code, out.as_str()), (Some(2), ""), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
