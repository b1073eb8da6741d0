//! A driver pairs each `Command::Send` with its outcome by the token it gave: the `Sent` of the message
//! written, or the `SendRefused`, carries it, whatever else the round holds.

use chatmesh_core::history::message::MAX_BODY_LEN;
use chatmesh_core::{Command, Config, Event, HistoryState, Input, Node, Output, Role, Snapshot};
use std::time::{Duration, Instant};

fn founded() -> (Node, Instant) {
    let start = Instant::now();
    let cfg = Config::new("tokens", "ana", [7; 32], "127.0.0.1:7000".parse().unwrap(), 42);
    let mut node = Node::new(cfg, Snapshot::default(), HistoryState::default(), start);
    node.handle_input(start, Input::Clock { unix_ms: 1_700_000_000_000 });
    let later = start + Duration::from_secs(3);
    while let Some(at) = node.poll_timeout().filter(|at| *at <= later) {
        node.handle_timeout(at);
        while node.poll_output().is_some() {}
    }
    assert_eq!(node.role(), Role::Coordinator);
    (node, later)
}

/// `(token, Ok(text) | Err(()))` of every send outcome among the outputs, in order.
fn outcomes(node: &mut Node) -> Vec<(u64, Result<String, ()>)> {
    let mut out = Vec::new();
    while let Some(o) = node.poll_output() {
        match o {
            Output::Event(Event::Sent { message, token }) => {
                let text = match message.body {
                    chatmesh_core::Body::Text(t) => t,
                    _ => continue,
                };
                out.push((token, Ok(text)));
            }
            Output::Event(Event::SendRefused { token, .. }) => out.push((token, Err(()))),
            _ => {}
        }
    }
    out
}

#[test]
fn each_send_comes_back_with_its_token_in_a_round_and_alone() {
    let (mut node, now) = founded();
    // Alone: signed and shown at once.
    node.handle_input(now, Input::Command(Command::Send { text: "one".into(), token: 11 }));
    assert_eq!(outcomes(&mut node), [(11, Ok("one".to_string()))]);
    // In a round: a refused send between two written ones; the written ones come back at the round's end.
    node.begin_round();
    node.handle_input(now, Input::Command(Command::Send { text: "two".into(), token: 21 }));
    node.handle_input(now, Input::Command(Command::Send { text: "x".repeat(MAX_BODY_LEN + 1), token: 22 }));
    node.handle_input(now, Input::Command(Command::Send { text: "three".into(), token: 23 }));
    let mut got = outcomes(&mut node);
    node.end_round(now);
    got.extend(outcomes(&mut node));
    assert_eq!(got, [(22, Err(())), (21, Ok("two".to_string())), (23, Ok("three".to_string()))]);
}
