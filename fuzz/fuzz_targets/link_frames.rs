//! The link after a genuine handshake: an in-process dialer (snow, driven by hand like `RawPeer` in
//! crates/node/tests/link.rs) completes the Noise handshake with a real responder (`establish`), then sends
//! what the fuzz input says. Never panics, hangs or allocates without bound, and the frames the responder
//! yields are exactly those of a reference parser of the documented framing.
//!
//! Input: a flags byte, then the body.
//! - flags & 1: the dialer sends a valid hello first (so the body drives `LinkReader::recv` after the link
//!   is up); otherwise the body's first frame is the hello (fuzzing `verify_hello`, which must refuse it: the
//!   signature would have to cover this session's handshake hash).
//! - flags & 2 (raw): the body is written verbatim after the handshake (and hello): raw ciphertext.
//! - otherwise (sealed): the body is a sequence of `len (u16 BE) ‖ len bytes` chunks (the last one cut short
//!   by the end of the input); each chunk's bytes are encrypted as one Noise transport message, so the
//!   plaintext stream (frame headers and frame bytes) is fuzzed, with fuzz-chosen message boundaries.
//!   With flags & 4 the last chunk is written raw instead (garbage after valid messages).
//!
//! The runtime's clock is paused: the (virtual) deadlines fire only when everything is stuck.

#![no_main]

use chatmesh_core::{NodeKey, SigningKey, MAX_FRAME_LEN};
use chatmesh_node::link::{
    establish, psk_from_network_key, LinkError, LinkKeys, Role, MAX_MESSAGE_PLAINTEXT, NOISE_PATTERN,
};
use ed25519_dalek::Signer;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::runtime::{Builder, Runtime};

const NETWORK: &[u8] = b"fuzz key";
const MESH: &str = "fuzz";
const DEADLINE: Duration = Duration::from_secs(10);

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Builder::new_current_thread().enable_time().start_paused(true).build().unwrap())
}

/// The responder's keys.
fn keys() -> &'static LinkKeys {
    static KEYS: OnceLock<LinkKeys> = OnceLock::new();
    KEYS.get_or_init(|| LinkKeys::new(NETWORK, SigningKey::from_bytes(&[7; 32]), MESH))
}

/// The dialer's identity and Noise static key.
struct Dialer {
    signing: SigningKey,
    noise_private: Vec<u8>,
    psk: [u8; 32],
}

fn dialer() -> &'static Dialer {
    static DIALER: OnceLock<Dialer> = OnceLock::new();
    DIALER.get_or_init(|| Dialer {
        signing: SigningKey::from_bytes(&[9; 32]),
        noise_private: snow::Builder::new(NOISE_PATTERN.parse().unwrap()).generate_keypair().unwrap().private,
        psk: psk_from_network_key(NETWORK),
    })
}

/// The hello, as the module documentation of `link` describes it.
#[derive(Serialize)]
struct Hello {
    mesh: String,
    key: [u8; 32],
    signature: Vec<u8>,
}

fn prefixed_frame(frame: &[u8]) -> Vec<u8> {
    let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(frame);
    bytes
}

/// What the dialer sends after the handshake.
struct Script<'a> {
    hello: bool,
    /// Each becomes one transport message.
    sealed: Vec<&'a [u8]>,
    /// Written verbatim after the sealed messages.
    raw: &'a [u8],
}

fn parse(data: &[u8]) -> Option<Script<'_>> {
    let (&flags, mut body) = data.split_first()?;
    let hello = flags & 1 != 0;
    if flags & 2 != 0 {
        return Some(Script { hello, sealed: Vec::new(), raw: body });
    }
    let mut sealed = Vec::new();
    while !body.is_empty() {
        let (len, rest) = if body.len() >= 2 {
            (usize::from(u16::from_be_bytes([body[0], body[1]])), &body[2..])
        } else {
            (body.len(), body)
        };
        let len = len.min(rest.len()).min(MAX_MESSAGE_PLAINTEXT);
        sealed.push(&rest[..len]);
        body = &rest[len..];
    }
    let raw = if flags & 4 != 0 { sealed.pop().unwrap_or(&[]) } else { &[] };
    Some(Script { hello, sealed, raw })
}

/// How the reference parser says the plaintext stream ends.
#[derive(Debug, PartialEq)]
enum End {
    Clean,
    MidFrame,
    TooLong(u64),
}

/// The documented framing: `u32` BE length, then that many bytes; at most `MAX_FRAME_LEN`.
fn reference_frames(stream: &[u8]) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        if rest.is_empty() {
            return (frames, End::Clean);
        }
        if rest.len() < 4 {
            return (frames, End::MidFrame);
        }
        let declared = u32::from_be_bytes(rest[..4].try_into().unwrap());
        if declared as usize > MAX_FRAME_LEN {
            return (frames, End::TooLong(u64::from(declared)));
        }
        rest = &rest[4..];
        if rest.len() < declared as usize {
            return (frames, End::MidFrame);
        }
        frames.push(&rest[..declared as usize]);
        rest = &rest[declared as usize..];
    }
}

async fn write_prefixed(stream: &mut DuplexStream, message: &[u8]) -> std::io::Result<()> {
    stream.write_all(&(message.len() as u16).to_be_bytes()).await?;
    stream.write_all(message).await
}

/// The dialer: a genuine handshake, then the script. Returns its end of the stream (kept open until the
/// responder is done, so that the responder's own writes do not fail).
async fn dial(mut stream: DuplexStream, script: &Script<'_>) -> DuplexStream {
    let d = dialer();
    let mut hs = snow::Builder::new(NOISE_PATTERN.parse().unwrap())
        .local_private_key(&d.noise_private)
        .psk(3, &d.psk)
        .build_initiator()
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let mut payload = vec![0u8; 65535];
    let n = hs.write_message(&[], &mut buf).unwrap();
    write_prefixed(&mut stream, &buf[..n]).await.expect("message 1");
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await.expect("message 2");
    let msg2 = &mut buf[..usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(msg2).await.expect("message 2");
    hs.read_message(msg2, &mut payload).expect("a genuine message 2");
    let n = hs.write_message(&[], &mut buf).unwrap();
    write_prefixed(&mut stream, &buf[..n]).await.expect("message 3");
    let hash = hs.get_handshake_hash().to_vec();
    let mut noise = hs.into_transport_mode().unwrap();

    let mut messages: Vec<Vec<u8>> = Vec::new();
    if script.hello {
        let mut signed = b"chatmesh/link/v1".to_vec();
        signed.extend_from_slice(&hash);
        signed.extend_from_slice(MESH.as_bytes());
        let hello = Hello {
            mesh: MESH.to_owned(),
            key: d.signing.verifying_key().to_bytes(),
            signature: d.signing.sign(&signed).to_bytes().to_vec(),
        };
        let mut frame = vec![1u8];
        frame.extend(postcard::to_allocvec(&hello).unwrap());
        messages.push(prefixed_frame(&frame));
    }
    messages.extend(script.sealed.iter().map(|p| p.to_vec()));
    // The responder may give up (and drop its end) at any point: later writes then fail, and that is fine.
    for plaintext in &messages {
        let mut sealed = vec![0u8; plaintext.len() + 16];
        let n = noise.write_message(plaintext, &mut sealed).unwrap();
        if write_prefixed(&mut stream, &sealed[..n]).await.is_err() {
            return stream;
        }
    }
    if stream.write_all(script.raw).await.is_ok() {
        let _ = stream.shutdown().await;
    }
    stream
}

/// What the responder did.
#[derive(Debug)]
enum Outcome {
    Refused(LinkError),
    Up { peer: NodeKey, frames: Vec<Vec<u8>>, end: Result<(), LinkError> },
}

async fn respond(stream: DuplexStream) -> Outcome {
    match establish(stream, keys(), Role::Responder, DEADLINE).await {
        Err(LinkError::Timeout) => panic!("the responder timed out: it waits for bytes that never come"),
        Err(e) => Outcome::Refused(e),
        Ok((mut reader, _writer, peer)) => {
            let mut frames = Vec::new();
            let end = tokio::time::timeout(DEADLINE, async {
                loop {
                    match reader.recv().await {
                        Ok(Some(frame)) => frames.push(frame),
                        Ok(None) => return Ok(()),
                        Err(e) => {
                            assert!(matches!(reader.recv().await, Err(LinkError::Closed)), "a failed link stays failed");
                            return Err(e);
                        }
                    }
                }
            })
            .await
            .expect("recv hangs on a closed stream");
            Outcome::Up { peer, frames, end }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(script) = parse(data) else { return };
    let outcome = runtime().block_on(async {
        let (ours, theirs) = duplex(1 << 16);
        let (outcome, theirs) = tokio::join!(respond(ours), dial(theirs, &script));
        drop(theirs);
        outcome
    });

    // The reference: what the sealed plaintext stream holds, and whether garbage follows it.
    let mut plaintext = Vec::new();
    for p in &script.sealed {
        plaintext.extend_from_slice(p);
    }
    let (expected, end) = reference_frames(&plaintext);
    let garbage = !script.raw.is_empty();
    let ends_ok = |e: &Result<(), LinkError>| match (&end, e) {
        (End::TooLong(n), Err(LinkError::FrameTooLong(m))) => n == m,
        (End::TooLong(_), _) => false,
        (_, Err(LinkError::Decrypt | LinkError::Closed)) if garbage => true,
        (_, _) if garbage => false,
        (End::Clean, Ok(())) => true,
        (End::MidFrame, Err(LinkError::Closed)) => true,
        _ => false,
    };

    let dialer_key = NodeKey(dialer().signing.verifying_key().to_bytes());
    match (script.hello, outcome) {
        (true, Outcome::Up { peer, frames, end: got_end }) => {
            assert_eq!(peer, dialer_key);
            assert_eq!(frames.len(), expected.len(), "frame count (end {got_end:?}, expected {end:?})");
            for (i, (got, want)) in frames.iter().zip(&expected).enumerate() {
                assert!(got == want, "frame {i} differs");
            }
            assert!(ends_ok(&got_end), "link ended with {got_end:?}, the reference says {end:?} (garbage: {garbage})");
        }
        (true, Outcome::Refused(e)) => panic!("a genuine dialer with a valid hello was refused: {e:?}"),
        (false, Outcome::Up { peer, .. }) => panic!("a link came up without a valid hello, as {peer:?}"),
        (false, Outcome::Refused(e)) => {
            if !expected.is_empty() {
                // The first frame was the hello, and it cannot be valid.
                assert!(matches!(e, LinkError::BadHello(_) | LinkError::WrongMesh { .. }), "{e:?}");
            } else {
                // No whole first frame: a clean end is `Closed` too, for a responder still waiting for a hello.
                let as_end = match e {
                    LinkError::Closed if end == End::Clean && !garbage => Ok(()),
                    e => Err(e),
                };
                assert!(ends_ok(&as_end), "refused with {as_end:?}, the reference says {end:?} (garbage: {garbage})");
            }
        }
    }
});
