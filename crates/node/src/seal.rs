//! Sealed datagrams: discovery traffic encrypted and authenticated with the network key.
//!
//! Every datagram the core emits (`Discover`, `Offer`, `Beacon`) leaves as
//!
//! ```text
//! version (1 = 0x01) ‖ nonce (24 random bytes) ‖ XChaCha20-Poly1305( timestamp_ms (u64 LE) ‖ datagram )
//! ```
//!
//! keyed by `SHA-256("chatmesh/datagram/v1" ‖ network key)`. A receiver drops, and counts, a datagram that
//! does not open with its key (forged, or another network), whose timestamp is more than `WINDOW` away from
//! its own clock (stale: a replay of an old capture, or a badly set clock), or whose nonce it has already seen
//! within the window (replayed). Without the key nothing can be read: not the mesh name, not who the
//! coordinator is, not who is joining.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};
use std::fmt;

pub const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to the core's datagram.
pub const OVERHEAD: usize = 1 + NONCE_LEN + 8 + TAG_LEN;
/// How far a datagram's timestamp may be from the receiver's clock, either way (milliseconds).
pub const WINDOW_MS: u64 = 30_000;
/// Nonces remembered against replay; beyond this the oldest are forgotten first.
pub const MAX_REMEMBERED: usize = 65_536;
const DOMAIN: &[u8] = b"chatmesh/datagram/v1";

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealError {
    /// Too short, or an unknown version byte.
    Malformed,
    /// Does not open with our network key: forged, corrupted, or from another network.
    Forged,
    /// Its timestamp is outside the window.
    Stale,
    /// Its nonce was seen before within the window.
    Replayed,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::Malformed => "malformed (not a ChatMesh datagram)",
            SealError::Forged => "does not authenticate with our network key (forged, or another network)",
            SealError::Stale => "timestamp outside the 30 s window (an old replay, or a clock far off)",
            SealError::Replayed => "replayed (nonce already seen)",
        })
    }
}

pub struct Sealer {
    cipher: XChaCha20Poly1305,
    seen: HashSet<[u8; NONCE_LEN]>,
    /// Nonces in arrival order with the instant (ms) after which they can be forgotten.
    order: VecDeque<([u8; NONCE_LEN], u64)>,
}

impl Sealer {
    pub fn new(network_key: &[u8]) -> Sealer {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(network_key);
        let key: [u8; 32] = h.finalize().into();
        Sealer { cipher: XChaCha20Poly1305::new(&key.into()), seen: HashSet::new(), order: VecDeque::new() }
    }

    /// Seals `datagram` at wall-clock time `now_ms` with a fresh random nonce.
    pub fn seal(&self, now_ms: u64, datagram: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::Rng::fill(&mut rand::thread_rng(), &mut nonce);
        self.seal_with(now_ms, nonce, datagram)
    }

    fn seal_with(&self, now_ms: u64, nonce: [u8; NONCE_LEN], datagram: &[u8]) -> Vec<u8> {
        let mut plain = Vec::with_capacity(8 + datagram.len());
        plain.extend_from_slice(&now_ms.to_le_bytes());
        plain.extend_from_slice(datagram);
        let sealed = self.cipher.encrypt(XNonce::from_slice(&nonce), plain.as_slice()).unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a received datagram at wall-clock time `now_ms`: the core's datagram, or why it was dropped.
    pub fn open(&mut self, now_ms: u64, bytes: &[u8]) -> Result<Vec<u8>, SealError> {
        if bytes.len() < OVERHEAD || bytes[0] != SEAL_VERSION {
            return Err(SealError::Malformed);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[1..1 + NONCE_LEN]);
        let plain =
            self.cipher.decrypt(XNonce::from_slice(&nonce), &bytes[1 + NONCE_LEN..]).map_err(|_| SealError::Forged)?;
        if plain.len() < 8 {
            return Err(SealError::Malformed);
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&plain[..8]);
        let ts = u64::from_le_bytes(ts);
        if ts.abs_diff(now_ms) > WINDOW_MS {
            return Err(SealError::Stale);
        }
        self.forget(now_ms);
        if !self.seen.insert(nonce) {
            return Err(SealError::Replayed);
        }
        // A nonce can be forgotten once its timestamp is out of the window: a replay is then stale.
        self.order.push_back((nonce, ts.saturating_add(WINDOW_MS)));
        if self.order.len() > MAX_REMEMBERED {
            if let Some((old, _)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        Ok(plain[8..].to_vec())
    }

    fn forget(&mut self, now_ms: u64) {
        while let Some((nonce, until)) = self.order.front().copied() {
            if until >= now_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&nonce);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_000_000_000;

    #[test]
    fn round_trip_and_every_refusal() {
        let mut a = Sealer::new(b"key one");
        let sealed = a.seal(NOW, b"hello mesh");
        assert_eq!(sealed.len(), b"hello mesh".len() + OVERHEAD);
        assert!(!sealed.windows(4).any(|w| w == b"mesh"), "the content is not readable on the wire");
        assert_eq!(a.open(NOW + 5, &sealed).unwrap(), b"hello mesh");
        assert_eq!(a.open(NOW + 6, &sealed), Err(SealError::Replayed));
        let mut other = Sealer::new(b"key two");
        assert_eq!(other.open(NOW, &a.seal(NOW, b"x")), Err(SealError::Forged));
        let mut tampered = a.seal(NOW, b"hello");
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(a.open(NOW, &tampered), Err(SealError::Forged));
        assert_eq!(a.open(NOW, &a.seal(NOW - WINDOW_MS - 1, b"old")), Err(SealError::Stale));
        assert_eq!(a.open(NOW, &a.seal(NOW + WINDOW_MS + 1, b"future")), Err(SealError::Stale));
        assert_eq!(a.open(NOW, b""), Err(SealError::Malformed));
        assert_eq!(a.open(NOW, &[2u8; 64]), Err(SealError::Malformed));
        assert_eq!(a.open(NOW, &[1u8; 20]), Err(SealError::Malformed));
    }

    #[test]
    fn a_replay_after_the_window_is_stale_and_memory_stays_bounded() {
        let mut a = Sealer::new(b"k");
        let sealed = a.seal(NOW, b"beacon");
        a.open(NOW, &sealed).unwrap();
        // Later than the window: the nonce is forgotten, and the replay is refused as stale.
        assert_eq!(a.open(NOW + WINDOW_MS + 10, &sealed), Err(SealError::Stale));
        for i in 0..(MAX_REMEMBERED as u64 + 100) {
            let s = a.seal(NOW + WINDOW_MS + 10, &i.to_le_bytes());
            a.open(NOW + WINDOW_MS + 10, &s).unwrap();
        }
        assert!(a.seen.len() <= MAX_REMEMBERED && a.order.len() <= MAX_REMEMBERED);
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut a = Sealer::new(b"k");
        for _ in 0..20_000 {
            let len = rng.gen_range(0..200);
            let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.5) && !b.is_empty() {
                b[0] = SEAL_VERSION;
            }
            assert!(a.open(NOW, &b).is_err());
        }
    }
}
