//! Chat messages: identity, signed content, canonical order, limits.

use crate::types::{NodeId, NodeKey, Term};
use ed25519_dalek::{Signer, SigningKey};
use ed25519_zebra::VerificationKey;
use rand::{CryptoRng, Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Longest text body, in bytes of UTF-8.
pub const MAX_BODY_LEN: usize = 16 * 1024;
/// Most dependencies one message may name.
pub const MAX_DEPS: usize = 64;
/// The largest seq or lamport a message may carry: far beyond any real history, and far enough below
/// `u64::MAX` that a node's clock can never saturate (which would break the canonical order).
pub const MAX_COUNTER: u64 = u64::MAX >> 2;
/// Most steps of a batch proof: batches of up to 65,536 messages (an author signs far fewer at once).
pub const MAX_PROOF: usize = 16;
/// Most messages signed as one batch: their paths are at most `MAX_PROOF` steps long.
pub const MAX_BATCH: usize = 1 << MAX_PROOF;
/// Prefix of the bytes an author signs for one message: a signature for anything else cannot be replayed
/// as a message.
const SIGNING_DOMAIN: &[u8] = b"chatmesh/message/v1";
/// Prefix of the bytes an author signs for a batch: the root of a Merkle tree over the batch's messages.
const BATCH_DOMAIN: &[u8] = b"chatmesh/batch/v1";

/// A message's identity: its author and the author's sequence number (from 1, never reused).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct MessageId {
    pub author: NodeKey,
    pub seq: u64,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.author, self.seq)
    }
}

/// A message's place in the canonical history: `(lamport, author, seq)`, a linear extension of causality
/// (every dependency has a smaller lamport), so two nodes holding the same messages show the same history.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct OrderKey {
    pub lamport: u64,
    pub author: NodeKey,
    pub seq: u64,
}

/// What a message says.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Body {
    /// Chat text.
    Text(String),
    /// A membership or coordinator change, written by the coordinator so that every node shows it at the
    /// same place in the history.
    Membership(MembershipEvent),
}

/// `Renamed`: a member's name changed (`/nick`, or a restart under another `--name`), one event and never
/// a leave and a join. Variants are only appended, so that stored and sent encodings stay valid.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum MembershipEvent {
    Joined { id: NodeId, key: NodeKey, name: String },
    Left { id: NodeId, key: NodeKey, name: String },
    Failed { id: NodeId, key: NodeKey, name: String },
    CoordinatorChanged { term: Term, id: NodeId, key: NodeKey },
    Renamed { id: NodeId, key: NodeKey, old: String, new: String },
}

/// An ed25519 signature (serde knows arrays up to 32 bytes, hence two halves).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sig(pub [[u8; 32]; 2]);

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({}..)", hex::encode(&self.0[0][..2]))
    }
}

impl Sig {
    fn to_bytes(self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&self.0[0]);
        b[32..].copy_from_slice(&self.0[1]);
        b
    }

    fn from_bytes(b: [u8; 64]) -> Sig {
        let mut halves = [[0u8; 32]; 2];
        halves[0].copy_from_slice(&b[..32]);
        halves[1].copy_from_slice(&b[32..]);
        Sig(halves)
    }
}

/// One step of a message's path to the root of the batch it was signed in: the sibling's hash, and whether
/// the sibling is the left child.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ProofStep {
    pub left: bool,
    pub hash: [u8; 32],
}

/// A chat message as it travels and is stored.
///
/// An author signs either one message (`proof` empty: the signature is over the message's signed bytes) or
/// a batch of them at once (`Message::sign_batch`: the signature is over the root of a Merkle tree whose
/// leaves are the messages' signed bytes, and each message carries its path to that root). Either way every
/// message verifies on its own, wherever it travels; a batch is one signature for its author to make and,
/// for a receiver that gets several of its messages together, one to check.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Message {
    pub author: NodeKey,
    pub seq: u64,
    /// One more than the largest lamport among the author's previous message and `deps`.
    pub lamport: u64,
    /// The heads of the author's history when it wrote (other authors' messages it had seen last).
    pub deps: Vec<MessageId>,
    /// When the author wrote it: milliseconds since the Unix epoch by the author's clock (display only).
    pub sent_at: u64,
    pub body: Body,
    pub signature: Sig,
    /// The path from this message to the signed root of its batch (empty for a message signed alone). Last
    /// in the encoding, so that a message stored before batches existed is this encoding without its final
    /// byte (an empty list).
    pub proof: Vec<ProofStep>,
}

/// Why a message was refused. Nothing was stored, shown or forwarded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MessageError {
    BadSignature,
    BodyTooLong,
    TooManyDeps,
    /// `seq` 0, a lamport not above what it claims to depend on, or a dependency on itself or later.
    Inconsistent,
    /// A batch proof longer than `MAX_PROOF`.
    ProofTooLong,
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageError::BadSignature => "signature does not verify against the author's key",
            MessageError::BodyTooLong => "body over the size limit",
            MessageError::TooManyDeps => "too many dependencies",
            MessageError::Inconsistent => "inconsistent sequence, lamport or dependencies",
            MessageError::ProofTooLong => "batch proof too long",
        })
    }
}

#[derive(Serialize)]
struct Signed<'a> {
    author: &'a NodeKey,
    seq: u64,
    lamport: u64,
    deps: &'a [MessageId],
    sent_at: u64,
    body: &'a Body,
}

impl Message {
    /// Writes and signs a message. `key` must be the author's signing key.
    pub fn sign(key: &SigningKey, seq: u64, lamport: u64, deps: Vec<MessageId>, sent_at: u64, body: Body) -> Message {
        let author = NodeKey(key.verifying_key().to_bytes());
        let mut m = Message::unsigned(author, seq, lamport, deps, sent_at, body);
        Message::sign_batch(key, std::slice::from_mut(&mut m));
        m
    }

    /// A message with everything but its signature, for `sign_batch`.
    pub(crate) fn unsigned(
        author: NodeKey,
        seq: u64,
        lamport: u64,
        deps: Vec<MessageId>,
        sent_at: u64,
        body: Body,
    ) -> Message {
        Message { author, seq, lamport, deps, sent_at, body, signature: Sig([[0; 32]; 2]), proof: Vec::new() }
    }

    /// Signs `messages` (written by `key`'s owner, signatures and proofs ignored) with one signature: over
    /// the root of a Merkle tree of their signed bytes, each message getting its path to the root. One
    /// message alone is signed as by `sign`, with no proof. At most `MAX_BATCH` messages (their paths are
    /// at most `MAX_PROOF` steps long); more are signed in batches of that size.
    pub fn sign_batch(key: &SigningKey, messages: &mut [Message]) {
        if messages.len() > MAX_BATCH {
            return messages.chunks_mut(MAX_BATCH).for_each(|chunk| Message::sign_batch(key, chunk));
        }
        for m in messages.iter_mut() {
            m.proof.clear();
        }
        match messages {
            [] => return,
            [m] => return m.signature = Sig::from_bytes(key.sign(&m.signed_bytes()).to_bytes()),
            _ => {}
        }
        let mut level: Vec<[u8; 32]> = messages.iter().map(|m| leaf_hash(&m.signed_bytes())).collect();
        let mut position: Vec<usize> = (0..messages.len()).collect();
        while level.len() > 1 {
            for (m, p) in messages.iter_mut().zip(position.iter_mut()) {
                // The last node of an odd level has no sibling: it moves up as it is.
                if let Some(sibling) = level.get(*p ^ 1) {
                    m.proof.push(ProofStep { left: *p & 1 == 1, hash: *sibling });
                }
                *p /= 2;
            }
            level = level.chunks(2).map(|pair| if let [l, r] = pair { node_hash(l, r) } else { pair[0] }).collect();
        }
        let mut payload = BATCH_DOMAIN.to_vec();
        payload.extend_from_slice(&level[0]);
        let signature = Sig::from_bytes(key.sign(&payload).to_bytes());
        for m in messages.iter_mut() {
            m.signature = signature;
        }
    }

    /// What the signature is over: the signed bytes of a message signed alone, or the batch's root.
    fn signed_payload(&self) -> Vec<u8> {
        let bytes = self.signed_bytes();
        if self.proof.is_empty() {
            return bytes;
        }
        let root = self.proof.iter().fold(leaf_hash(&bytes), |h, step| {
            if step.left {
                node_hash(&step.hash, &h)
            } else {
                node_hash(&h, &step.hash)
            }
        });
        let mut payload = BATCH_DOMAIN.to_vec();
        payload.extend_from_slice(&root);
        payload
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let signed = Signed {
            author: &self.author,
            seq: self.seq,
            lamport: self.lamport,
            deps: &self.deps,
            sent_at: self.sent_at,
            body: &self.body,
        };
        postcard::to_extend(&signed, SIGNING_DOMAIN.to_vec()).expect("a Vec grows as needed")
    }

    pub fn id(&self) -> MessageId {
        MessageId { author: self.author, seq: self.seq }
    }

    pub fn order_key(&self) -> OrderKey {
        OrderKey { lamport: self.lamport, author: self.author, seq: self.seq }
    }

    /// Checks limits, internal consistency and the author's signature. (A node checks with its `Verifier`,
    /// which keeps authors' keys decompressed and checks many messages as one batch.)
    pub fn verify(&self) -> Result<(), MessageError> {
        self.verify_with(&mut Verified::default(), &mut KeyCache::default())
    }

    /// `verify`, except that a batch signature found valid before (in `verified`) is not checked again:
    /// the messages of one batch share it, and their proofs lead to the same root.
    fn verify_with(&self, verified: &mut Verified, keys: &mut KeyCache) -> Result<(), MessageError> {
        self.check_fields()?;
        let term = self.signature_term();
        if verified.holds(self, &term) {
            return Ok(());
        }
        let key = keys.get(&self.author.0).ok_or(MessageError::BadSignature)?;
        let sig = ed25519_zebra::Signature::from_bytes(&term.1);
        key.verify(&sig, &term.2).map_err(|_| MessageError::BadSignature)?;
        verified.add(self, term);
        Ok(())
    }

    /// What a signature check takes: the author's key, the signature and the signed payload.
    fn signature_term(&self) -> SignatureTerm {
        (self.author.0, self.signature.to_bytes(), self.signed_payload())
    }

    /// Checks limits and internal consistency: everything `verify` checks but the signature.
    fn check_fields(&self) -> Result<(), MessageError> {
        if let Body::Text(t) = &self.body {
            if t.len() > MAX_BODY_LEN {
                return Err(MessageError::BodyTooLong);
            }
        }
        if self.deps.len() > MAX_DEPS {
            return Err(MessageError::TooManyDeps);
        }
        if self.proof.len() > MAX_PROOF {
            return Err(MessageError::ProofTooLong);
        }
        let self_dep = self.deps.iter().any(|d| d.author == self.author && d.seq >= self.seq);
        let out_of_range = self.seq > MAX_COUNTER || self.lamport > MAX_COUNTER;
        if self.seq == 0 || self.lamport == 0 || self_dep || out_of_range {
            return Err(MessageError::Inconsistent);
        }
        Ok(())
    }

    /// Whether every signature of `messages` is valid, checked together: one multiscalar multiplication for
    /// the whole batch, with the terms of one author's messages combined, so several times cheaper than one
    /// by one; messages signed in one author's batch that share their root and signature are one term. The
    /// ZIP 215 rules (cofactored equation) make the answer the same as checking each message with `verify`:
    /// true exactly when every one of them would pass. On false, the caller checks them one by one to find
    /// the bad ones. The random coefficients come from `rng`, which a sender must not be able to predict
    /// (see `Verifier`).
    fn signatures_valid(messages: &[&Message], rng: &mut (impl RngCore + CryptoRng)) -> bool {
        let mut batch = ed25519_zebra::batch::Verifier::new();
        let mut queued = Verified::default();
        for m in messages {
            let term = m.signature_term();
            if queued.holds(m, &term) {
                continue;
            }
            let key = ed25519_zebra::VerificationKeyBytes::from(term.0);
            let sig = ed25519_zebra::Signature::from_bytes(&term.1);
            batch.queue((key, sig, &term.2));
            queued.add(m, term);
        }
        batch.verify(rng).is_ok()
    }

    /// The hash that enters the history digest: the message's ID and its signed content, signature
    /// included (two messages with one ID but different content give different hashes).
    pub fn digest_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.author.0);
        h.update(self.seq.to_be_bytes());
        h.update(Sha256::digest(self.signed_bytes()));
        h.update(self.signature.to_bytes());
        h.finalize().into()
    }
}

/// `(author key, signature, signed payload)`.
type SignatureTerm = ([u8; 32], [u8; 64], Vec<u8>);

/// Batch signatures already checked (or queued for checking), so that the other messages of the batch do
/// not cost another check.
/// Only batch terms are kept: a message signed alone shares its signature with no other.
#[derive(Default)]
struct Verified(BTreeSet<SignatureTerm>);

impl Verified {
    fn holds(&self, m: &Message, term: &SignatureTerm) -> bool {
        !m.proof.is_empty() && self.0.contains(term)
    }

    fn add(&mut self, m: &Message, term: SignatureTerm) {
        if !m.proof.is_empty() {
            self.0.insert(term);
        }
    }
}

/// A Merkle leaf: a message's signed bytes (tagged, so that no inner node can pass for a leaf).
fn leaf_hash(signed_bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(signed_bytes);
    h.finalize().into()
}

/// A Merkle inner node over its two children.
fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Checks the signatures of the messages a node receives. Owned by the node (`History::verifier`): no
/// global state, and no randomness but what it is given.
///
/// - `rng` draws the random coefficients of batch checks. A sender that could predict them could craft
///   two bad signatures whose errors cancel out in a batch, so they must be unpredictable from outside the
///   node: `for_node` seeds it with a hash of the node's secret key (which never leaves the node) and its
///   `Config::seed`. Given those, it is deterministic, so the simulator replays runs exactly; and it is not
///   the node's other RNG, whose draws stay as they were. The verdicts do not depend on the coefficients
///   (a valid batch always passes; one holding a bad signature fails but with negligible probability).
/// - `keys`: authors' public keys, decompressed once: decompressing a point costs about a fifth of a
///   verification, and a history has few authors and many messages. Bounded: when full, it starts over.
/// - `threads`: how many threads check a large batch (a sync page), found on the first one.
pub struct Verifier {
    rng: ChaCha20Rng,
    keys: KeyCache,
    threads: Option<usize>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").field("keys", &self.keys.0.len()).field("threads", &self.threads).finish()
    }
}

/// A verdict for each message asked about (`None` for the others).
pub type Verdicts = Vec<Option<Result<(), MessageError>>>;

/// Below this many messages to check, signatures are verified one by one.
const BATCH_VERIFY_MIN: usize = 4;
/// From this many messages to check, the batch is split across the cores.
const PARALLEL_VERIFY_MIN: usize = 128;
/// Most authors' keys a `Verifier` keeps decompressed.
const MAX_KEYS: usize = 4096;
/// Most threads a large batch is split across.
const MAX_THREADS: usize = 8;
/// Prefix of what `Verifier::for_node` hashes into its RNG's seed.
const VERIFIER_DOMAIN: &[u8] = b"chatmesh/verifier/v1";

impl Verifier {
    /// A verifier whose batch coefficients come from `seed`, which must be secret.
    pub fn new(seed: [u8; 32]) -> Verifier {
        Verifier { rng: ChaCha20Rng::from_seed(seed), keys: KeyCache::default(), threads: None }
    }

    /// The verifier of the node with ed25519 secret key `secret` and RNG seed `seed`: seeded with
    /// `SHA-256("chatmesh/verifier/v1" ‖ secret ‖ seed)`.
    pub fn for_node(secret: &[u8; 32], seed: u64) -> Verifier {
        let mut h = Sha256::new();
        h.update(VERIFIER_DOMAIN);
        h.update(secret);
        h.update(seed.to_be_bytes());
        Verifier::new(h.finalize().into())
    }

    /// `Message::verify`, with the author's key decompressed once for all its messages.
    pub fn verify(&mut self, m: &Message) -> Result<(), MessageError> {
        m.verify_with(&mut Verified::default(), &mut self.keys)
    }

    /// The verdict of each message marked `fresh` (`None` for the others): exactly `Message::verify`'s,
    /// found sooner. Signatures are checked as batches (one per thread; up to `MAX_THREADS` threads for
    /// large batches), and only a batch that fails is checked again one by one. Pure computation: the
    /// verdicts do not depend on how the work was split, so the simulator's runs stay deterministic.
    pub fn verify_all(&mut self, messages: &[Message], fresh: &[bool]) -> Verdicts {
        let todo = fresh.iter().filter(|f| **f).count();
        if todo < BATCH_VERIFY_MIN {
            return verify_each(messages, fresh, &mut self.keys);
        }
        let threads = if todo < PARALLEL_VERIFY_MIN {
            1
        } else {
            *self
                .threads
                .get_or_insert_with(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS)))
        };
        if threads < 2 {
            return verify_batch(messages, fresh, &mut self.rng)
                .unwrap_or_else(|| verify_each(messages, fresh, &mut self.keys));
        }
        let chunk = messages.len().div_ceil(threads);
        // One generator per part, seeded from ours in order: the same draws however the threads run.
        let seeds: Vec<[u8; 32]> = messages.chunks(chunk).map(|_| self.rng.gen()).collect();
        let keys = &self.keys;
        std::thread::scope(|s| {
            let parts: Vec<_> = messages
                .chunks(chunk)
                .zip(fresh.chunks(chunk))
                .zip(seeds)
                .map(|((ms, fs), seed)| {
                    s.spawn(move || {
                        let mut rng = ChaCha20Rng::from_seed(seed);
                        verify_batch(ms, fs, &mut rng).unwrap_or_else(|| verify_each(ms, fs, &mut keys.clone()))
                    })
                })
                .collect();
            // A part whose thread could not finish is left to the caller, which verifies those one by one.
            parts
                .into_iter()
                .zip(messages.chunks(chunk))
                .flat_map(|(p, ms)| p.join().unwrap_or_else(|_| vec![None; ms.len()]))
                .collect()
        })
    }
}

/// `Verifier::verify_all` on one thread: fields first, then every signature in one batch; `None` if the
/// batch fails (then the caller checks them one by one).
fn verify_batch(messages: &[Message], fresh: &[bool], rng: &mut ChaCha20Rng) -> Option<Verdicts> {
    let verdicts: Verdicts = messages.iter().zip(fresh).map(|(m, f)| f.then(|| m.check_fields())).collect();
    let signed: Vec<&Message> =
        messages.iter().zip(&verdicts).filter(|(_, v)| matches!(v, Some(Ok(())))).map(|(m, _)| m).collect();
    Message::signatures_valid(&signed, rng).then_some(verdicts)
}

/// `Message::verify` of each message marked `fresh`, one by one, but each batch signature checked once.
fn verify_each(messages: &[Message], fresh: &[bool], keys: &mut KeyCache) -> Verdicts {
    let mut verified = Verified::default();
    messages.iter().zip(fresh).map(|(m, f)| f.then(|| m.verify_with(&mut verified, keys))).collect()
}

/// Authors' public keys, decompressed (see `Verifier`).
#[derive(Clone, Default)]
struct KeyCache(BTreeMap<[u8; 32], VerificationKey>);

impl KeyCache {
    fn get(&mut self, bytes: &[u8; 32]) -> Option<VerificationKey> {
        if let Some(k) = self.0.get(bytes) {
            return Some(*k);
        }
        let key = VerificationKey::try_from(*bytes).ok()?;
        if self.0.len() >= MAX_KEYS {
            self.0.clear();
        }
        self.0.insert(*bytes, key);
        Some(key)
    }
}

/// The digest of a history: SHA-256 over its authors in key order, each as `key ‖ seq ‖ chain`, where
/// `chain` is the author's hash chain (`chain_step`) over its messages in seq order. It does not depend on
/// the order in which messages arrived, and equal digests mean equal histories unless SHA-256 collides
/// (a plain XOR of message hashes would not do: it is linear, and two different sets can be built to
/// match).
#[derive(Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HistoryDigest(pub [u8; 32]);

/// One step of an author's hash chain: `SHA-256(previous ‖ digest_hash(m))`.
pub fn chain_step(previous: &[u8; 32], m: &Message) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(m.digest_hash());
    h.finalize().into()
}

impl HistoryDigest {
    /// The digest of authors given as `(key, seq, chain)` in key order.
    pub fn of<'a>(authors: impl Iterator<Item = (&'a NodeKey, u64, &'a [u8; 32])>) -> HistoryDigest {
        let mut h = Sha256::new();
        for (key, seq, chain) in authors {
            h.update(key.0);
            h.update(seq.to_be_bytes());
            h.update(chain);
        }
        HistoryDigest(h.finalize().into())
    }

    /// Sixteen hex digits: enough to compare by eye.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl fmt::Debug for HistoryDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HistoryDigest({})", self.short())
    }
}

impl fmt::Display for HistoryDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn text(s: &str) -> Body {
        Body::Text(s.into())
    }

    /// Coefficients for batch checks in tests.
    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(1)
    }

    #[test]
    fn a_signed_message_verifies_and_any_change_breaks_it() {
        let m = Message::sign(&key(1), 1, 1, vec![], 1000, text("olá"));
        assert_eq!(m.verify(), Ok(()));
        let mut forged = m.clone();
        forged.body = text("ola");
        assert_eq!(forged.verify(), Err(MessageError::BadSignature));
        let mut stolen = m.clone();
        stolen.author = NodeKey(key(2).verifying_key().to_bytes());
        assert_eq!(stolen.verify(), Err(MessageError::BadSignature));
        let mut bumped = m;
        bumped.lamport = 7;
        assert_eq!(bumped.verify(), Err(MessageError::BadSignature));
    }

    /// The edge case that makes batch and single Ed25519 verification disagree in most libraries: a
    /// signature whose R carries a small-order component. ChatMesh checks the cofactored equation (ZIP 215)
    /// both ways, so every node gives the same verdict however its batches were formed.
    #[test]
    fn batch_and_single_verification_agree_on_a_signature_with_a_torsion_component() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::Scalar;
        use ed25519_dalek::Verifier as _;
        use sha2::Sha512;
        let sk = key(3);
        let mut m = Message::sign(&sk, 1, 1, vec![], 1000, text("edge"));
        let r = Scalar::from_bytes_mod_order([7; 32]);
        let big_r = (r * ED25519_BASEPOINT_POINT + EIGHT_TORSION[1]).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(m.author.0);
        h.update(m.signed_bytes());
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * sk.to_scalar();
        let mut sig = [0; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        m.signature = Sig::from_bytes(sig);
        // Cofactorless verification refuses it...
        let dalek = ed25519_dalek::VerifyingKey::from_bytes(&m.author.0).unwrap();
        assert!(dalek.verify(&m.signed_bytes(), &ed25519_dalek::Signature::from_bytes(&sig)).is_err());
        // ...ChatMesh's accepts it, alone and in every batch (a cofactorless batch would pass one time in 8).
        assert_eq!(m.verify(), Ok(()));
        let mut rng = rng();
        let others: Vec<Message> = (1..=9).map(|k| Message::sign(&key(4), k, k, vec![], 0, text("x"))).collect();
        for _ in 0..40 {
            let mut batch: Vec<&Message> = others.iter().collect();
            batch.push(&m);
            assert!(Message::signatures_valid(&batch, &mut rng));
        }
        // And a batch holding a forged message fails as a whole.
        let mut forged = others[0].clone();
        forged.body = text("y");
        assert!(!Message::signatures_valid(&[&m, &others[1], &forged], &mut rng));
    }

    #[test]
    fn limits_are_checked_before_the_signature() {
        let long = Message::sign(&key(1), 1, 1, vec![], 0, Body::Text("x".repeat(MAX_BODY_LEN + 1)));
        assert_eq!(long.verify(), Err(MessageError::BodyTooLong));
        let ok = Message::sign(&key(1), 1, 1, vec![], 0, Body::Text("x".repeat(MAX_BODY_LEN)));
        assert_eq!(ok.verify(), Ok(()));
        let zero = Message::sign(&key(1), 0, 1, vec![], 0, text("a"));
        assert_eq!(zero.verify(), Err(MessageError::Inconsistent));
        let huge = Message::sign(&key(1), 1, u64::MAX - 1, vec![], 0, text("a"));
        assert_eq!(huge.verify(), Err(MessageError::Inconsistent), "a clock pushed near the end would saturate");
    }

    fn batch(signer: u8, n: u64) -> Vec<Message> {
        let author = NodeKey(key(signer).verifying_key().to_bytes());
        let mut batch: Vec<Message> =
            (1..=n).map(|k| Message::unsigned(author, k, k, vec![], 0, text(&format!("m{k}")))).collect();
        Message::sign_batch(&key(signer), &mut batch);
        batch
    }

    #[test]
    fn every_message_of_a_batch_verifies_alone_with_one_signature_for_all() {
        for n in [1u64, 2, 3, 5, 8, 13, 64] {
            let b = batch(1, n);
            assert!(b.iter().all(|m| m.verify() == Ok(())), "batch of {n}");
            assert!(b.iter().all(|m| m.signature == b[0].signature), "one signature");
            let depth = (n as f64).log2().ceil() as usize;
            assert!(b.iter().all(|m| m.proof.len() <= depth), "paths of at most {depth} steps");
            let refs: Vec<&Message> = b.iter().collect();
            assert!(Message::signatures_valid(&refs, &mut rng()));
        }
        // One message alone is signed as before batches existed: no proof, a plain Ed25519 signature over
        // its signed bytes (what messages stored by version 1 carry).
        use ed25519_dalek::Verifier as _;
        let one = batch(1, 1);
        assert!(one[0].proof.is_empty());
        let sig = ed25519_dalek::Signature::from_bytes(&one[0].signature.to_bytes());
        assert!(key(1).verifying_key().verify(&one[0].signed_bytes(), &sig).is_ok());
    }

    #[test]
    fn a_batch_too_large_for_one_tree_is_signed_as_several() {
        let author = NodeKey(key(1).verifying_key().to_bytes());
        let mut all: Vec<Message> =
            (1..=MAX_BATCH as u64 + 1).map(|k| Message::unsigned(author, k, k, vec![], 0, text("m"))).collect();
        Message::sign_batch(&key(1), &mut all);
        assert!(all.iter().all(|m| m.proof.len() <= MAX_PROOF));
        assert_eq!(all[0].proof.len(), MAX_PROOF);
        assert!(all[MAX_BATCH].proof.is_empty(), "the last one, alone in its batch");
        for m in [&all[0], &all[MAX_BATCH - 1], &all[MAX_BATCH]] {
            assert_eq!(m.verify(), Ok(()));
        }
        Message::sign_batch(&key(1), &mut []);
    }

    #[test]
    fn a_batch_message_changed_moved_or_given_another_path_fails() {
        let b = batch(1, 5);
        let mut forged = b[2].clone();
        forged.body = text("forged");
        assert_eq!(forged.verify(), Err(MessageError::BadSignature));
        // A step turned to the other side, a sibling changed, a step dropped or added.
        let mut turned = b[2].clone();
        turned.proof[0].left = !turned.proof[0].left;
        let mut sibling = b[2].clone();
        sibling.proof[1].hash[0] ^= 1;
        let mut short = b[2].clone();
        short.proof.pop();
        let mut long = b[2].clone();
        long.proof.push(ProofStep { left: false, hash: [0; 32] });
        // Another author's batch signature and path; the path and signature of another message of the same
        // author's, in another batch (the same message in another batch would be valid: it is signed there).
        let other = batch(2, 5);
        let mut stolen = other[2].clone();
        stolen.author = b[2].author;
        let again = batch(1, 6);
        let mut mixed = b[2].clone();
        mixed.proof = again[3].proof.clone();
        mixed.signature = again[3].signature;
        // Stripped of its path, the batch signature is not a signature of the message alone.
        let mut bare = b[2].clone();
        bare.proof.clear();
        for m in [&forged, &turned, &sibling, &short, &long, &stolen, &mixed, &bare] {
            assert_eq!(m.verify(), Err(MessageError::BadSignature), "{m:?}");
            let mut refs: Vec<&Message> = b.iter().collect();
            refs.push(m);
            assert!(!Message::signatures_valid(&refs, &mut rng()), "a batch holding {m:?}");
        }
        let mut deep = b[0].clone();
        deep.proof = vec![ProofStep { left: true, hash: [0; 32] }; MAX_PROOF + 1];
        assert_eq!(deep.verify(), Err(MessageError::ProofTooLong));
    }

    #[test]
    fn a_message_stored_before_batches_is_its_encoding_without_the_last_byte() {
        #[derive(Serialize)]
        struct Before<'a> {
            author: NodeKey,
            seq: u64,
            lamport: u64,
            deps: &'a [MessageId],
            sent_at: u64,
            body: &'a Body,
            signature: Sig,
        }
        let m = Message::sign(&key(1), 3, 9, vec![MessageId { author: NodeKey([7; 32]), seq: 2 }], 5, text("old"));
        let before = Before {
            author: m.author,
            seq: m.seq,
            lamport: m.lamport,
            deps: &m.deps,
            sent_at: m.sent_at,
            body: &m.body,
            signature: m.signature,
        };
        let mut old = postcard::to_allocvec(&before).unwrap();
        old.push(0);
        assert_eq!(old, postcard::to_allocvec(&m).unwrap());
    }

    #[test]
    fn the_chain_tells_contents_and_order_apart() {
        let a = Message::sign(&key(1), 1, 1, vec![], 0, text("a"));
        let b = Message::sign(&key(1), 2, 2, vec![], 0, text("b"));
        let other = Message::sign(&key(1), 2, 2, vec![], 0, text("B"));
        let ab = chain_step(&chain_step(&[0; 32], &a), &b);
        assert_ne!(ab, chain_step(&chain_step(&[0; 32], &a), &other));
        assert_ne!(ab, chain_step(&chain_step(&[0; 32], &b), &a));
    }
}

#[cfg(test)]
mod verify_tests {
    use super::*;

    /// Not a check: prints what signing and verifying cost on this machine, for docs/BENCHMARKS.md
    /// (`cargo test --release -p chatmesh-core -- --ignored --nocapture signature_costs`).
    #[test]
    #[ignore]
    fn signature_costs() {
        let keys: Vec<SigningKey> = (1..=4u8).map(|b| SigningKey::from_bytes(&[b; 32])).collect();
        let mut verifier = Verifier::new([1; 32]);
        let body = "x".repeat(200);
        let n = 4096u64;
        let t = std::time::Instant::now();
        let messages: Vec<Message> = (0..n)
            .map(|k| Message::sign(&keys[(k % 4) as usize], k / 4 + 1, k + 1, vec![], 0, Body::Text(body.clone())))
            .collect();
        let sign = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = std::time::Instant::now();
        assert!(messages.iter().all(|m| m.verify().is_ok()));
        let single = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        for batch in [4usize, 16, 64, 512, 2048] {
            let t = std::time::Instant::now();
            for chunk in messages.chunks(batch) {
                let refs: Vec<&Message> = chunk.iter().collect();
                assert!(Message::signatures_valid(&refs, &mut verifier.rng));
            }
            let per = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            println!("batch of {batch}: {per:.1} µs per signature");
        }
        println!("sign {sign:.1} µs, verify one by one {single:.1} µs per message (200-byte bodies, 4 authors)");
        // Signed in batches by one author (`Message::sign_batch`), as a round's own messages are; verified as
        // a receiver gets them, all of a batch together.
        let author = NodeKey(keys[0].verifying_key().to_bytes());
        for size in [1usize, 4, 16, 64] {
            let mut unsigned: Vec<Message> =
                (0..n).map(|k| Message::unsigned(author, k + 1, k + 1, vec![], 0, Body::Text(body.clone()))).collect();
            let t = std::time::Instant::now();
            for chunk in unsigned.chunks_mut(size) {
                Message::sign_batch(&keys[0], chunk);
            }
            let sign = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            let t = std::time::Instant::now();
            for chunk in unsigned.chunks(size) {
                let fresh = vec![true; chunk.len()];
                assert!(verifier.verify_all(chunk, &fresh).iter().all(|v| matches!(v, Some(Ok(())))));
            }
            let verify = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            println!("batches of {size} by one author: sign {sign:.1} µs, verify {verify:.1} µs per message");
        }
    }

    #[test]
    fn verdicts_on_many_threads_equal_verdicts_one_by_one() {
        let keys: Vec<SigningKey> = (1..=5u8).map(|b| SigningKey::from_bytes(&[b; 32])).collect();
        let mut messages: Vec<Message> = (0..300u64)
            .map(|k| {
                let key = &keys[(k % 5) as usize];
                Message::sign(key, k / 5 + 1, k + 1, vec![], 1000, Body::Text(format!("m{k}")))
            })
            .collect();
        // Every third run of 7 signed as one batch by its author instead, interleaved with the others.
        for run in (0..290).step_by(21) {
            let key = &keys[run % 5];
            let author = NodeKey(key.verifying_key().to_bytes());
            let mut batch: Vec<Message> = (0..7u64)
                .map(|j| Message::unsigned(author, 1000 + run as u64 + j, 1, vec![], 0, Body::Text(format!("b{j}"))))
                .collect();
            Message::sign_batch(key, &mut batch);
            messages.splice(run..run + 7, batch);
        }
        // Forged ones scattered through the batch, in several of the threads' parts (3 and 150 signed in a
        // batch with others that stay valid).
        for k in [3usize, 78, 150, 151, 299] {
            messages[k].body = Body::Text("forged".into());
        }
        assert!(!messages[3].proof.is_empty() && !messages[150].proof.is_empty());
        messages[200].seq = 0;
        let fresh: Vec<bool> = (0..messages.len()).map(|k| k % 7 != 0).collect();
        let sequential: Vec<Option<Result<(), MessageError>>> =
            messages.iter().zip(&fresh).map(|(m, f)| f.then(|| m.verify())).collect();
        assert!(fresh.iter().filter(|f| **f).count() >= PARALLEL_VERIFY_MIN);
        let mut verifier = Verifier::new([1; 32]);
        assert_eq!(verifier.verify_all(&messages, &fresh), sequential);
        assert_eq!(sequential.iter().filter(|v| matches!(v, Some(Err(_)))).count(), 6);
        // Small batches (one thread, and one by one) give the same verdicts.
        for n in [2, 5, 40, 127] {
            assert_eq!(verifier.verify_all(&messages[..n], &fresh[..n]), sequential[..n].to_vec(), "{n} messages");
        }
        // All valid: the batch passes as a whole.
        let good: Vec<Message> = messages
            .iter()
            .zip(&sequential)
            .filter(|(_, v)| !matches!(v, Some(Err(_))))
            .map(|(m, _)| m.clone())
            .collect();
        let all = vec![true; good.len()];
        assert!(verifier.verify_all(&good, &all).iter().all(|v| matches!(v, Some(Ok(())))));
    }
}
