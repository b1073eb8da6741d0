//! Discovery datagrams, as a node receives them from the multicast group:
//!
//! 1. `Datagram::decode` on arbitrary bytes: never panics; a datagram that decodes re-encodes, and the
//!    re-encoding decodes to the same datagram.
//! 2. `Sealer::open` on arbitrary bytes (a fresh sealer keyed with `b"fuzz key"`, at a fixed clock): never
//!    panics; what opens is handed to `Datagram::decode`, as the driver does.
//! 3. Seal-then-open with fuzz-chosen clocks and payload (input = seal time u64 LE ‖ open time u64 LE ‖
//!    payload): opens to the payload exactly when the two clocks are within the window (else `Stale`), and a
//!    second open of the same bytes is `Replayed` (or still `Stale`).

#![no_main]

use chatmesh_core::Datagram;
use chatmesh_node::seal::{SealError, Sealer, OVERHEAD, WINDOW_MS};
use libfuzzer_sys::fuzz_target;

/// The clock of the receiver in part 2 (the seed corpus holds datagrams sealed at this time).
const NOW_MS: u64 = 1_795_000_000_000;
const KEY: &[u8] = b"fuzz key";

fuzz_target!(|data: &[u8]| {
    // 1. The datagram codec.
    if let Ok(datagram) = Datagram::decode(data) {
        let encoded = datagram.encode().expect("a decoded datagram re-encodes");
        let again = Datagram::decode(&encoded).expect("a re-encoded datagram decodes");
        assert_eq!(again, datagram, "decode(encode(datagram)) != datagram");
    }

    // 2. Arbitrary bytes as a sealed datagram.
    let mut receiver = Sealer::new(KEY);
    match receiver.open(NOW_MS, data) {
        Ok(plain) => {
            assert_eq!(plain.len() + OVERHEAD, data.len());
            let _ = Datagram::decode(&plain);
            assert_eq!(receiver.open(NOW_MS, data), Err(SealError::Replayed));
        }
        Err(SealError::Malformed) => assert!(data.len() < OVERHEAD || data[0] != chatmesh_node::seal::SEAL_VERSION),
        Err(_) => {}
    }

    // 3. Seal-then-open.
    if data.len() >= 16 {
        let sealed_at = u64::from_le_bytes(data[..8].try_into().unwrap());
        let opened_at = u64::from_le_bytes(data[8..16].try_into().unwrap());
        let payload = &data[16..];
        let sender = Sealer::new(KEY);
        let sealed = sender.seal(sealed_at, payload);
        assert_eq!(sealed.len(), payload.len() + OVERHEAD);
        let mut receiver = Sealer::new(KEY);
        let first = receiver.open(opened_at, &sealed);
        if sealed_at.abs_diff(opened_at) <= WINDOW_MS {
            assert_eq!(first.as_deref(), Ok(payload), "open(seal(x)) != x");
            assert_eq!(receiver.open(opened_at, &sealed), Err(SealError::Replayed));
        } else {
            assert_eq!(first, Err(SealError::Stale));
            assert_eq!(receiver.open(opened_at, &sealed), Err(SealError::Stale));
        }
        // Another network key never opens it.
        assert_eq!(Sealer::new(b"another key").open(opened_at, &sealed), Err(SealError::Forged));
    }
});
