//! The tokio driver on a real node (alone, on loopback): what it answers to sends taken in one round.

use chatmesh_node::core::{Body, Command, Frontier, LoadRequest, Message};
use chatmesh_node::{start, NodeOptions, SendError, Store};

/// Sends taken in one round are answered each with its own outcome, although the core refuses a send at
/// once and shows the others as sent only when the round's messages are signed, at its end; a send given
/// as a plain command (no one waiting for it) takes no one else's answer.
#[tokio::test]
async fn sends_of_one_round_each_get_their_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (node, task) = start(solo(&dir, 0)).await.expect("the node starts");
    let too_long = "x".repeat(20_000);
    // On this current-thread runtime, `join!` queues all of them before the core task runs: one round.
    let (first, refused, plain, second) = tokio::join!(
        node.send("first".into()),
        node.send(too_long),
        node.command(Command::Send { text: "plain".into(), token: 0 }),
        node.send("second".into()),
    );
    let first = first.expect("the first is written");
    assert_eq!((first.text.as_str(), first.seq), ("first", 1));
    assert!(matches!(refused, Err(SendError::Refused(_))), "{refused:?}");
    assert!(plain);
    let second = second.expect("the second is written");
    assert_eq!((second.text.as_str(), second.seq), ("second", 3), "after the plain one");
    node.shutdown(false).await;
    task.await.unwrap().unwrap();
    // The three that were written were signed as one batch: one signature.
    assert_one_batch(&dir, 3);
}

/// `send_many` writes its texts in one round, in order, signed as one batch; a bad text refuses the whole
/// call, naming it, and writes nothing.
#[tokio::test]
async fn send_many_writes_all_in_one_batch_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (node, task) = start(solo(&dir, 1)).await.expect("the node starts");
    let bad = node.send_many(vec!["ok".into(), "  ".into(), "x".repeat(20_000)]).await;
    assert!(matches!(bad, Err((1, SendError::Empty))), "{bad:?}");
    let bad = node.send_many(vec!["ok".into(), "x".repeat(20_000)]).await;
    assert!(matches!(bad, Err((1, SendError::Refused(_)))), "{bad:?}");
    let texts: Vec<String> = (0..50).map(|i| format!("message {i}")).collect();
    let sent = node.send_many(texts.clone()).await.expect("all checked");
    let sent: Vec<_> = sent.into_iter().map(|r| r.expect("written")).collect();
    assert_eq!(sent.iter().map(|m| m.text.clone()).collect::<Vec<_>>(), texts);
    assert_eq!(sent.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>(), "nothing before");
    node.shutdown(false).await;
    task.await.unwrap().unwrap();
    assert_one_batch(&dir, 50);
}

/// `/connect` to an address already connected to adds nothing: every datagram to the group goes once to
/// each address given, however often and in whatever order it was given (`connect(a)`, `connect(b)`,
/// `connect(a)` must not send to `a` twice).
#[tokio::test]
async fn repeated_connect_addresses_get_each_datagram_once() {
    let dir = tempfile::tempdir().unwrap();
    let (node, task) = start(solo(&dir, 2)).await.expect("the node starts");
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&a, &b] {
        s.set_nonblocking(true).unwrap();
    }
    for addr in [a.local_addr().unwrap(), b.local_addr().unwrap(), a.local_addr().unwrap()] {
        assert!(node.connect(addr).await);
    }
    // The inbox is served in order: once the status is back, the connects are taken.
    node.status().await.expect("the node answers");
    let drain = |s: &std::net::UdpSocket| {
        let mut buf = [0u8; 65_536];
        std::iter::from_fn(|| s.recv(&mut buf).ok()).count()
    };
    drain(&a);
    drain(&b);
    // A lone node beacons or looks for a mesh every few hundred milliseconds, to the group and to each peer.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (to_a, to_b) = (drain(&a), drain(&b));
    assert!(to_b > 0, "the node sent nothing to its peers");
    assert_eq!(to_a, to_b, "a peer given twice got each datagram twice");
    node.shutdown(false).await;
    task.await.unwrap().unwrap();
}

/// A lone node's options, its data in `dir`, on a port of its own (`k` tells this file's tests apart).
fn solo(dir: &tempfile::TempDir, k: u32) -> NodeOptions {
    let port = 40_000 + ((std::process::id() + 7 * k) % 20_000) as u16;
    NodeOptions::local(&format!("driver-test-{}-{k}", std::process::id()), "solo", dir.path().into(), port)
}

/// The stopped node's store holds `n` text messages, all valid and sharing one signature.
fn assert_one_batch(dir: &tempfile::TempDir, n: usize) {
    let store = Store::open(&dir.path().join("chatmesh.db")).unwrap();
    let all = LoadRequest { id: 1, frontier: Frontier::new(), after: None, max_messages: 100, max_bytes: 1 << 20 };
    let (messages, _) = store.load(&all).unwrap();
    let texts: Vec<&Message> = messages.iter().filter(|m| matches!(m.body, Body::Text(_))).collect();
    assert_eq!(texts.len(), n, "{messages:?}");
    assert!(texts.iter().all(|m| m.signature == texts[0].signature && m.verify().is_ok()), "{texts:?}");
}
