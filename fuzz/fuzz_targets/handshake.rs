//! The responder side of the link handshake, fed the fuzz input as everything the dialer sends (the stream
//! then ends): never panics, never hangs, never allocates without bound, and never completes.
//!
//! Runs on a current-thread tokio runtime with a paused clock, so the 50 ms deadline is virtual: it fires
//! only if the responder is stuck with every task idle, which on a closed stream is a bug (it would wait for
//! bytes that can never come), and is reported as one. A slow or loaded machine cannot trip it.
//!
//! Limit: the dialer's message 3 depends on the responder's fresh ephemeral key, so no fixed input gets past
//! message 3: this target covers message 1 (a genuine one is in the seed corpus) and the refusal of message 3.
//! `link_frames` covers what follows a genuine handshake.

#![no_main]

use chatmesh_core::SigningKey;
use chatmesh_node::link::{establish, LinkError, LinkKeys, Role};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{duplex, AsyncWriteExt};
use tokio::runtime::{Builder, Runtime};

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Builder::new_current_thread().enable_time().start_paused(true).build().unwrap())
}

fn keys() -> &'static LinkKeys {
    static KEYS: OnceLock<LinkKeys> = OnceLock::new();
    KEYS.get_or_init(|| LinkKeys::new(b"fuzz key", SigningKey::from_bytes(&[7; 32]), "fuzz"))
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        // Room for the whole input, and for everything the responder answers (nobody reads it).
        let (ours, mut peer) = duplex(data.len() + (1 << 16));
        peer.write_all(data).await.unwrap();
        peer.shutdown().await.unwrap();
        match establish(ours, keys(), Role::Responder, Duration::from_millis(50)).await {
            Err(LinkError::Timeout) => panic!("the responder timed out on a closed stream"),
            Err(_) => {}
            Ok((mut reader, _writer, key)) => {
                let drained = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Ok(Some(_)) = reader.recv().await {}
                })
                .await;
                assert!(drained.is_ok(), "recv hangs on a closed stream");
                panic!("fixed bytes completed an authenticated handshake as {key:?}");
            }
        }
        drop(peer);
    });
});
