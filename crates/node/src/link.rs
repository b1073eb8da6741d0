//! Encrypted, mutually authenticated links between ChatMesh nodes, over any byte stream (TCP in production,
//! in-memory pipes in tests).
//!
//! # The link protocol (version 1)
//!
//! **1. Noise handshake.** `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s`, the dialer is the Noise initiator. Every
//! handshake message travels as a `u16` big-endian length followed by that many bytes; handshake payloads
//! are empty (a non-empty one is ignored), so the three messages are 48, 96 and 64 bytes long. Each node's
//! Noise static key is a fresh x25519 key pair made when the node starts ([`LinkKeys::new`]); it is not
//! derived from anything and means nothing beyond one run. The pre-shared key is
//! `SHA-256("chatmesh/noise-psk/v1" || network_key)` ([`psk_from_network_key`]): only holders of the network
//! key complete the handshake.
//!
//! With `XXpsk3` the responder sends its second message before the PSK is checked (at the initiator's third
//! message). Because a node's identity only travels after the handshake (step 3), a peer without the network
//! key learns nothing but a throwaway Noise static key. A responder that fails to decrypt message 3 closes the
//! stream without sending anything more; the initiator then sees the stream end (or reset) where it expects
//! the responder's hello, and fails too.
//!
//! **2. Transport.** After the handshake each direction is a sequence of Noise transport messages, each a
//! `u16` big-endian length followed by that many bytes (at most 65535, the 16-byte tag included, so at most
//! 65519 bytes of plaintext; never zero). Nonces count messages per direction from 0. The plaintexts of one
//! direction, concatenated, form a stream of application frames: each frame is a `u32` big-endian length
//! followed by that many bytes. Frame boundaries and message boundaries are independent: small frames sent
//! together share a message, large frames span several. A frame is at most [`MAX_FRAME_LEN`] (1 MiB) long.
//! A declared frame length above that, a message that fails to authenticate, or a zero-length message ends
//! the link with an error; so does the stream ending in the middle of a message or a frame. The stream
//! ending exactly between frames is a clean close.
//!
//! **3. Identity binding.** The first frame in each direction is a hello: the byte `1` (the link version),
//! then the postcard encoding of
//!
//! ```text
//! struct Hello { mesh: String, key: [u8; 32], signature: Vec<u8> /* 64 bytes */ }
//! ```
//!
//! where `key` is the node's ed25519 public key (its `NodeKey`) and `signature` its ed25519 signature over
//! `"chatmesh/link/v1" || handshake_hash || mesh` (`handshake_hash` is the 32-byte Noise handshake hash, the
//! same on both sides; `mesh` the UTF-8 mesh name). Bytes after the encoded `Hello` are ignored (room for
//! appended fields). Both sides send their hello as soon as the handshake completes, then read the peer's,
//! and check: the version is 1; the mesh name equals their own; `key` is not their own key (a reflected
//! hello); the signature verifies (strictly) under `key` over *their own* handshake hash. The hash is unique
//! to the session, so a hello replayed from another session fails. The dialer also checks that `key` is the
//! key it meant to reach. Only then is the link up and `key` the peer's proven identity.
//!
//! **4. Deadline.** The whole of steps 1 and 3 runs under a deadline the caller chooses: a silent or slow
//! peer fails with [`LinkError::Timeout`].
//!
//! # Using a link
//! [`establish`] runs the handshake and the hello exchange and splits the stream into a [`LinkReader`] and
//! a [`LinkWriter`], which two tasks may drive concurrently (they share the Noise keys, and each keeps the
//! nonce of its own direction). [`LinkReader::recv`] is cancel-safe. A [`LinkWriter::send`] that fails or is
//! cancelled part-way leaves the link unusable: later calls return [`LinkError::Closed`], and the link should
//! be dropped.

use chatmesh_core::{NodeKey, MAX_FRAME_LEN};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use snow::params::NoiseParams;
use snow::{HandshakeState, StatelessTransportState};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

/// The Noise protocol name of every link.
pub const NOISE_PATTERN: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";
/// Domain separation for the PSK derived from the network key.
pub const PSK_CONTEXT: &[u8] = b"chatmesh/noise-psk/v1";
/// Domain separation for the hello signature.
pub const HELLO_CONTEXT: &[u8] = b"chatmesh/link/v1";
/// The first byte of a hello frame.
pub const LINK_VERSION: u8 = 1;
/// The longest Noise message, length prefix excluded (the tag included).
pub const MAX_NOISE_MESSAGE: usize = 65535;
/// The ChaChaPoly authentication tag at the end of every transport message.
const TAG_LEN: usize = 16;
/// The most plaintext one transport message carries.
pub const MAX_MESSAGE_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;
/// A writer hands its encrypted bytes to the stream in chunks of about this size (bounding its buffer).
const WRITE_CHUNK: usize = 256 * 1024;
/// The reader's ciphertext buffer: room for two whole messages with their length prefixes.
const READ_BUFFER: usize = 2 * (2 + MAX_NOISE_MESSAGE);

/// Why a handshake read failed, in words a user can act on.
const NOT_A_PEER: &str = "the peer does not have our network key (or is not a ChatMesh node)";
/// The dialer's view of a responder that rejected its PSK: the stream ends where the responder's hello was due.
const PEER_HUNG_UP: &str = "the peer closed the link without proving its identity: it probably does not have our \
                            network key (or is not a ChatMesh node)";

/// The pre-shared key of every link of a network: `SHA-256("chatmesh/noise-psk/v1" || network_key)`.
pub fn psk_from_network_key(key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(PSK_CONTEXT);
    hasher.update(key);
    hasher.finalize().into()
}

fn noise_params() -> NoiseParams {
    // A constant, valid protocol name: parsing cannot fail.
    NOISE_PATTERN.parse().expect("the Noise protocol name is valid")
}

/// What a node needs to make and accept links: the network PSK, its identity, its mesh, and its Noise static
/// key pair (fresh per `LinkKeys`).
#[derive(Clone)]
pub struct LinkKeys {
    psk: [u8; 32],
    signing: SigningKey,
    key: NodeKey,
    mesh: String,
    noise_private: Vec<u8>,
    noise_public: Vec<u8>,
}

impl LinkKeys {
    /// Derives the PSK from `network_key` and generates a fresh Noise static key pair.
    pub fn new(network_key: &[u8], signing: SigningKey, mesh: &str) -> LinkKeys {
        // The default resolver always provides x25519 and an OS RNG for these (constant) parameters.
        let noise = snow::Builder::new(noise_params()).generate_keypair().expect("x25519 key generation");
        let key = NodeKey(signing.verifying_key().to_bytes());
        LinkKeys {
            psk: psk_from_network_key(network_key),
            signing,
            key,
            mesh: mesh.to_owned(),
            noise_private: noise.private,
            noise_public: noise.public,
        }
    }

    /// This node's identity, as its hello proves it.
    pub fn node_key(&self) -> NodeKey {
        self.key
    }

    /// The mesh this node's links belong to.
    pub fn mesh(&self) -> &str {
        &self.mesh
    }

    /// This run's Noise static public key (meaningless beyond this run; for logs and tests).
    pub fn noise_public_key(&self) -> &[u8] {
        &self.noise_public
    }
}

impl fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkKeys").field("key", &self.key).field("mesh", &self.mesh).finish_non_exhaustive()
    }
}

/// Which side of the handshake this node plays.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// The dialer: the link is refused unless the peer proves `expected`.
    Initiator { expected: NodeKey },
    /// The listener: any node of the network and mesh is accepted; `establish` returns its key.
    Responder,
}

/// Why a link could not be made, or ended.
#[derive(Debug)]
pub enum LinkError {
    /// The stream failed.
    Io(io::Error),
    /// The handshake and hello exchange did not complete within the deadline.
    Timeout,
    /// The Noise handshake failed: wrong network key, or not a ChatMesh peer.
    Handshake(String),
    /// The peer's hello is malformed, of another version, or its signature does not verify.
    BadHello(&'static str),
    /// The dialled peer proved another identity than the one we meant to reach.
    WrongPeer { expected: NodeKey, got: NodeKey },
    /// The peer belongs to another mesh.
    WrongMesh { ours: String, theirs: String },
    /// A frame longer than `MAX_FRAME_LEN` (declared by the peer, or handed to `send`).
    FrameTooLong(u64),
    /// A transport message failed to authenticate (or was empty): corruption or tampering.
    Decrypt,
    /// The stream ended in the middle of a message or frame, or the link already failed earlier.
    Closed,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Io(e) => write!(f, "link I/O error: {e}"),
            LinkError::Timeout => f.write_str("the peer did not complete the link handshake in time"),
            LinkError::Handshake(detail) => write!(f, "handshake failed: {detail}"),
            LinkError::BadHello(detail) => write!(f, "the peer's hello is invalid: {detail}"),
            LinkError::WrongPeer { expected, got } => {
                write!(f, "the peer proved to be node {got}, not node {expected} that we meant to reach")
            }
            LinkError::WrongMesh { ours, theirs } => {
                write!(f, "the peer belongs to mesh {theirs:?}, not to our mesh {ours:?}")
            }
            LinkError::FrameTooLong(len) => {
                write!(f, "a {len}-byte frame exceeds the link's limit of {MAX_FRAME_LEN} bytes")
            }
            LinkError::Decrypt => {
                f.write_str("a link message failed to authenticate (corrupted or tampered with); closing the link")
            }
            LinkError::Closed => f.write_str(
                "the link closed unexpectedly (the peer hung up in the middle of a message, or the link had \
                 already failed)",
            ),
        }
    }
}

impl std::error::Error for LinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LinkError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        LinkError::Io(e)
    }
}

/// Runs the Noise handshake and the hello exchange on `stream` within `timeout`; returns the two halves of
/// the link and the peer's proven identity.
pub async fn establish<S>(
    stream: S,
    keys: &LinkKeys,
    role: Role,
    timeout: Duration,
) -> Result<(LinkReader<ReadHalf<S>>, LinkWriter<WriteHalf<S>>, NodeKey), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match tokio::time::timeout(timeout, establish_now(stream, keys, role)).await {
        Ok(result) => result,
        Err(_) => Err(LinkError::Timeout),
    }
}

async fn establish_now<S>(
    mut stream: S,
    keys: &LinkKeys,
    role: Role,
) -> Result<(LinkReader<ReadHalf<S>>, LinkWriter<WriteHalf<S>>, NodeKey), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let initiator = matches!(role, Role::Initiator { .. });
    let builder = snow::Builder::new(noise_params()).local_private_key(&keys.noise_private).psk(3, &keys.psk);
    let built = if initiator { builder.build_initiator() } else { builder.build_responder() };
    let mut hs = built.map_err(|e| LinkError::Handshake(format!("cannot set up Noise: {e}")))?;
    let mut message = vec![0u8; MAX_NOISE_MESSAGE];
    let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
    if initiator {
        write_handshake(&mut stream, &mut hs, &mut message).await?; // -> e
        read_handshake(&mut stream, &mut hs, &mut message, &mut payload).await?; // <- e, ee, s, es
        write_handshake(&mut stream, &mut hs, &mut message).await?; // -> s, se, psk
    } else {
        read_handshake(&mut stream, &mut hs, &mut message, &mut payload).await?;
        write_handshake(&mut stream, &mut hs, &mut message).await?;
        read_handshake(&mut stream, &mut hs, &mut message, &mut payload).await?;
    }
    drop((message, payload));
    if !hs.is_handshake_finished() {
        return Err(LinkError::Handshake("the Noise handshake did not finish".into()));
    }
    let hash = hs.get_handshake_hash().to_vec();
    let noise = Arc::new(
        hs.into_stateless_transport_mode()
            .map_err(|e| LinkError::Handshake(format!("cannot enter transport mode: {e}")))?,
    );

    let (read, write) = tokio::io::split(stream);
    let mut reader = LinkReader::new(read, Arc::clone(&noise));
    let mut writer = LinkWriter::new(write, noise);
    // Our hello first, then theirs: neither side waits for the other before sending, so no deadlock.
    let hello = hello_frame(keys, &hash)?;
    let theirs = async {
        writer.send(&[hello]).await?;
        reader.recv().await
    };
    let frame = match theirs.await {
        Ok(Some(frame)) => frame,
        // Only the responder checks the PSK (on message 3), and it hangs up when it does not match: for the
        // dialer, a stream that ends here almost always means another network key.
        Ok(None) if initiator => return Err(LinkError::Handshake(PEER_HUNG_UP.into())),
        Ok(None) => return Err(LinkError::Closed),
        Err(LinkError::Io(e)) if initiator && hung_up(&e) => return Err(LinkError::Handshake(PEER_HUNG_UP.into())),
        Err(e) => return Err(e),
    };
    let peer = verify_hello(&frame, keys, &hash)?;
    if let Role::Initiator { expected } = role {
        if peer != expected {
            return Err(LinkError::WrongPeer { expected, got: peer });
        }
    }
    Ok((reader, writer, peer))
}

fn hung_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

async fn write_handshake<S: AsyncWrite + Unpin>(
    stream: &mut S,
    hs: &mut HandshakeState,
    buf: &mut [u8],
) -> Result<(), LinkError> {
    let len = hs.write_message(&[], buf).map_err(|e| LinkError::Handshake(format!("Noise: {e}")))?;
    let prefix = u16::try_from(len).map_err(|_| LinkError::Handshake("oversized handshake message".into()))?;
    stream.write_all(&prefix.to_be_bytes()).await?;
    stream.write_all(&buf[..len]).await?;
    stream.flush().await?;
    Ok(())
}

async fn read_handshake<S: AsyncRead + Unpin>(
    stream: &mut S,
    hs: &mut HandshakeState,
    buf: &mut [u8],
    payload: &mut [u8],
) -> Result<(), LinkError> {
    let mut prefix = [0u8; 2];
    read_exact_or_closed(stream, &mut prefix).await?;
    let len = usize::from(u16::from_be_bytes(prefix));
    let message = &mut buf[..len]; // len <= 65535 = buf.len()
    read_exact_or_closed(stream, message).await?;
    hs.read_message(message, payload).map_err(|_| LinkError::Handshake(NOT_A_PEER.into()))?;
    Ok(())
}

async fn read_exact_or_closed<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> Result<(), LinkError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(LinkError::Closed),
        Err(e) => Err(LinkError::Io(e)),
    }
}

/// The identity proof each side sends as its first frame (after the version byte).
#[derive(Serialize, Deserialize)]
struct Hello {
    mesh: String,
    key: [u8; 32],
    signature: Vec<u8>,
}

/// What a hello signs: `"chatmesh/link/v1" || handshake_hash || mesh`.
fn hello_signed_bytes(hash: &[u8], mesh: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HELLO_CONTEXT.len() + hash.len() + mesh.len());
    bytes.extend_from_slice(HELLO_CONTEXT);
    bytes.extend_from_slice(hash);
    bytes.extend_from_slice(mesh.as_bytes());
    bytes
}

fn hello_frame(keys: &LinkKeys, hash: &[u8]) -> Result<Vec<u8>, LinkError> {
    let signature = keys.signing.sign(&hello_signed_bytes(hash, &keys.mesh));
    let hello = Hello { mesh: keys.mesh.clone(), key: keys.key.0, signature: signature.to_bytes().to_vec() };
    postcard::to_extend(&hello, vec![LINK_VERSION])
        .map_err(|e| LinkError::Handshake(format!("cannot encode our hello: {e}")))
}

fn verify_hello(frame: &[u8], keys: &LinkKeys, hash: &[u8]) -> Result<NodeKey, LinkError> {
    let (&version, body) = frame.split_first().ok_or(LinkError::BadHello("empty hello frame"))?;
    if version != LINK_VERSION {
        return Err(LinkError::BadHello("unsupported link protocol version"));
    }
    // Trailing bytes are ignored: fields may be appended to the hello.
    let (hello, _rest): (Hello, &[u8]) =
        postcard::take_from_bytes(body).map_err(|_| LinkError::BadHello("malformed hello"))?;
    if hello.mesh != keys.mesh {
        return Err(LinkError::WrongMesh { ours: keys.mesh.clone(), theirs: hello.mesh });
    }
    if hello.key == keys.key.0 {
        // Both sides sign the same bytes, so a peer could send our own hello back to claim our identity.
        return Err(LinkError::BadHello("the peer claims our own identity"));
    }
    let signature: [u8; 64] =
        hello.signature.as_slice().try_into().map_err(|_| LinkError::BadHello("the signature is not 64 bytes"))?;
    let key = VerifyingKey::from_bytes(&hello.key).map_err(|_| LinkError::BadHello("the key is not an ed25519 key"))?;
    key.verify_strict(&hello_signed_bytes(hash, &hello.mesh), &Signature::from_bytes(&signature))
        .map_err(|_| LinkError::BadHello("the identity signature does not match this session"))?;
    Ok(NodeKey(hello.key))
}

/// A frame whose length prefix has been read, being filled.
struct Partial {
    bytes: Vec<u8>,
    len: usize,
}

/// The receiving half of a link: decrypts messages and yields the frames they carry.
pub struct LinkReader<R> {
    io: R,
    noise: Arc<StatelessTransportState>,
    /// The nonce of the next message to decrypt (the count of messages received).
    nonce: u64,
    /// Ciphertext read from the stream: `inbuf[in_start..in_end]` is not decrypted yet.
    inbuf: Box<[u8]>,
    in_start: usize,
    in_end: usize,
    /// Plaintext of the last message: `plain[plain_start..plain_end]` is not consumed yet.
    plain: Box<[u8]>,
    plain_start: usize,
    plain_end: usize,
    /// The length prefix of the next frame, as far as it has arrived.
    header: [u8; 4],
    header_len: usize,
    frame: Option<Partial>,
    failed: bool,
}

impl<R> LinkReader<R> {
    fn new(io: R, noise: Arc<StatelessTransportState>) -> Self {
        LinkReader {
            io,
            noise,
            nonce: 0,
            inbuf: vec![0u8; READ_BUFFER].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            plain: vec![0u8; MAX_MESSAGE_PLAINTEXT].into_boxed_slice(),
            plain_start: 0,
            plain_end: 0,
            header: [0; 4],
            header_len: 0,
            frame: None,
            failed: false,
        }
    }

    /// Takes the next complete frame out of the decrypted plaintext, if there is one. Returns `Ok(None)` when
    /// the plaintext is used up.
    fn take_frame(&mut self) -> Result<Option<Vec<u8>>, LinkError> {
        loop {
            let available = &self.plain[self.plain_start..self.plain_end];
            match &mut self.frame {
                Some(partial) => {
                    let n = (partial.len - partial.bytes.len()).min(available.len());
                    partial.bytes.extend_from_slice(&available[..n]);
                    self.plain_start += n;
                    if partial.bytes.len() == partial.len {
                        return Ok(self.frame.take().map(|partial| partial.bytes));
                    }
                    return Ok(None);
                }
                None => {
                    if available.is_empty() {
                        return Ok(None);
                    }
                    let n = (4 - self.header_len).min(available.len());
                    self.header[self.header_len..self.header_len + n].copy_from_slice(&available[..n]);
                    self.header_len += n;
                    self.plain_start += n;
                    if self.header_len < 4 {
                        return Ok(None);
                    }
                    self.header_len = 0;
                    let declared = u32::from_be_bytes(self.header);
                    let len = usize::try_from(declared).unwrap_or(usize::MAX);
                    if len > MAX_FRAME_LEN {
                        return Err(LinkError::FrameTooLong(u64::from(declared)));
                    }
                    // Checked against MAX_FRAME_LEN just above.
                    self.frame = Some(Partial { bytes: Vec::with_capacity(len), len });
                }
            }
        }
    }

    /// Decrypts the next message if it is wholly buffered; `Ok(false)` if more bytes are needed.
    fn decrypt_next(&mut self) -> Result<bool, LinkError> {
        let buffered = &self.inbuf[self.in_start..self.in_end];
        if buffered.len() < 2 {
            return Ok(false);
        }
        let len = usize::from(u16::from_be_bytes([buffered[0], buffered[1]]));
        if len == 0 {
            return Err(LinkError::Decrypt);
        }
        if buffered.len() < 2 + len {
            return Ok(false);
        }
        let n = self
            .noise
            .read_message(self.nonce, &buffered[2..2 + len], &mut self.plain)
            .map_err(|_| LinkError::Decrypt)?;
        // snow refuses nonce u64::MAX, so a successful read leaves room for the increment.
        self.nonce += 1;
        self.in_start += 2 + len;
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
        }
        self.plain_start = 0;
        self.plain_end = n;
        Ok(true)
    }
}

impl<R: AsyncRead + Unpin> LinkReader<R> {
    /// The next frame; `Ok(None)` on clean EOF at a message boundary.
    ///
    /// Cancel-safe: a `recv` dropped before it completes loses nothing. After an error the link is dead, and
    /// later calls return [`LinkError::Closed`].
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, LinkError> {
        if self.failed {
            return Err(LinkError::Closed);
        }
        let result = self.recv_now().await;
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    async fn recv_now(&mut self) -> Result<Option<Vec<u8>>, LinkError> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            if self.decrypt_next()? {
                continue;
            }
            if !self.fill().await? {
                let between_frames = self.in_start == self.in_end && self.header_len == 0 && self.frame.is_none();
                return if between_frames { Ok(None) } else { Err(LinkError::Closed) };
            }
        }
    }

    /// Reads more ciphertext; `Ok(false)` at end of stream. Called only when no whole message is buffered,
    /// so the buffered bytes are less than one message and there is room after them.
    async fn fill(&mut self) -> Result<bool, LinkError> {
        if self.in_start > 0 && self.inbuf.len() - self.in_start < 2 + MAX_NOISE_MESSAGE {
            self.inbuf.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
        let n = self.io.read(&mut self.inbuf[self.in_end..]).await?;
        self.in_end += n;
        Ok(n > 0)
    }
}

/// The sending half of a link: packs frames into as few Noise messages as possible.
pub struct LinkWriter<W> {
    io: W,
    noise: Arc<StatelessTransportState>,
    /// The nonce of the next message to encrypt (the count of messages sent).
    nonce: u64,
    /// Plaintext not yet sealed into a message (less than one message's worth).
    plain: Vec<u8>,
    /// Sealed messages, with their length prefixes, not yet written.
    out: Vec<u8>,
    failed: bool,
}

impl<W> LinkWriter<W> {
    fn new(io: W, noise: Arc<StatelessTransportState>) -> Self {
        LinkWriter {
            io,
            noise,
            nonce: 0,
            // Both grow on demand (to at most one message, and `WRITE_CHUNK` plus one message) and are reused.
            plain: Vec::new(),
            out: Vec::new(),
            failed: false,
        }
    }
}

/// Encrypts `plaintext` (at most `MAX_MESSAGE_PLAINTEXT` bytes) as the next message and appends it, with its
/// length prefix, to `out`.
fn seal(
    noise: &StatelessTransportState,
    nonce: &mut u64,
    out: &mut Vec<u8>,
    plaintext: &[u8],
) -> Result<(), LinkError> {
    let start = out.len();
    out.resize(start + 2 + plaintext.len() + TAG_LEN, 0);
    let sealed = match noise.write_message(*nonce, plaintext, &mut out[start + 2..]) {
        Ok(len) => len,
        Err(e) => {
            out.truncate(start);
            return Err(LinkError::Io(io::Error::other(format!("link encryption failed: {e}"))));
        }
    };
    // snow refuses messages over 65535 bytes, and nonce u64::MAX.
    let prefix = u16::try_from(sealed).map_err(|_| LinkError::Io(io::Error::other("oversized link message")))?;
    out[start..start + 2].copy_from_slice(&prefix.to_be_bytes());
    out.truncate(start + 2 + sealed);
    *nonce += 1;
    Ok(())
}

impl<W: AsyncWrite + Unpin> LinkWriter<W> {
    /// Encrypts and writes these frames (packed into as few Noise messages as possible), then flushes.
    ///
    /// A frame over `MAX_FRAME_LEN` fails the call with [`LinkError::FrameTooLong`] before anything is sent
    /// (the link stays usable). Any other failure, or cancelling the call part-way, leaves the link unusable.
    pub async fn send(&mut self, frames: &[Vec<u8>]) -> Result<(), LinkError> {
        if self.failed {
            return Err(LinkError::Closed);
        }
        if let Some(long) = frames.iter().find(|frame| frame.len() > MAX_FRAME_LEN) {
            return Err(LinkError::FrameTooLong(long.len() as u64));
        }
        // Cleared once the whole batch is out: an error or a cancellation in between leaves it set.
        self.failed = true;
        for frame in frames {
            // Checked above: a frame's length fits in u32.
            let header = (frame.len() as u32).to_be_bytes();
            self.push(&header).await?;
            self.push(frame).await?;
        }
        if !self.plain.is_empty() {
            seal(&self.noise, &mut self.nonce, &mut self.out, &self.plain)?;
            self.plain.clear();
        }
        self.write_out().await?;
        self.io.flush().await?;
        self.failed = false;
        Ok(())
    }

    /// Shuts the stream down for writing (the peer's reader sees a clean end after the last frame).
    pub async fn shutdown(&mut self) -> Result<(), LinkError> {
        self.io.shutdown().await?;
        Ok(())
    }

    /// Appends `data` to the plaintext stream, sealing every full message and writing out every
    /// `WRITE_CHUNK` or so of ciphertext.
    async fn push(&mut self, mut data: &[u8]) -> Result<(), LinkError> {
        while !data.is_empty() {
            let taken = if self.plain.is_empty() && data.len() >= MAX_MESSAGE_PLAINTEXT {
                // A whole message's worth: seal it straight from the frame, without a copy.
                seal(&self.noise, &mut self.nonce, &mut self.out, &data[..MAX_MESSAGE_PLAINTEXT])?;
                MAX_MESSAGE_PLAINTEXT
            } else {
                let n = (MAX_MESSAGE_PLAINTEXT - self.plain.len()).min(data.len());
                self.plain.extend_from_slice(&data[..n]);
                if self.plain.len() == MAX_MESSAGE_PLAINTEXT {
                    seal(&self.noise, &mut self.nonce, &mut self.out, &self.plain)?;
                    self.plain.clear();
                }
                n
            };
            data = &data[taken..];
            if self.out.len() >= WRITE_CHUNK {
                self.write_out().await?;
            }
        }
        Ok(())
    }

    async fn write_out(&mut self) -> Result<(), LinkError> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}
