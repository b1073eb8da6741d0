//! Which connection carries the link to each peer: the driver's side of `Output::Connect` and
//! `Input::LinkUp` / `LinkDown` / `ConnectFailed`, shared by the tokio driver and the simulator so that the
//! simulator's seeds exercise the same rules.
//!
//! A driver may hold several connections to one peer for a moment: both sides dialled at once, or the peer
//! dialled again because it gave an old connection up (it restarted, or the old one stalled across a
//! partition). The core knows of one link per peer; this table decides which connection that is, and both
//! ends of a simultaneous dial decide alike without a word, so they keep the same connection:
//! - the same side dialling again replaces the old connection (it is stale: that side gave it up);
//! - a connection older than `SIMULTANEOUS_DIAL` is replaced by any new one (the peer dialled because it
//!   gave the old one up);
//! - otherwise it is a simultaneous dial, and both sides keep the connection dialled by the higher key.
//!
//! Frames and closes of a connection that does not carry the link are not the core's business
//! (`carries`, `closed`). The table holds a driver's own `handle` per connection (its writer, its tasks)
//! and gives it back whenever that connection must be closed.

use crate::types::NodeKey;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Two connections to one peer that came up within this of each other are a simultaneous dial; a new
/// connection replaces one older than this.
pub const SIMULTANEOUS_DIAL: Duration = Duration::from_secs(1);

/// What to do with an `Output::Connect`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dial {
    /// A connection already carries the link: answer `LinkUp` at once.
    Up,
    /// A dial to this peer is in flight: its outcome answers this one too.
    InFlight,
    /// Dial; report the outcome with `arrived` or `dial_failed`.
    Start,
}

/// What a new connection means.
#[derive(Debug)]
pub enum Arrival<H> {
    /// It carries the link now: give the core `LinkUp`, and close `replaced` (the connection it took over
    /// from), if any.
    Up { replaced: Option<H> },
    /// The connection already up wins the tie-break: close this new one; the core hears nothing.
    Refused(H),
}

#[derive(Debug)]
struct Carrier<H> {
    conn: u64,
    dialer: NodeKey,
    since: Instant,
    handle: H,
}

/// The connection that carries the link to each peer, and the dials in flight.
#[derive(Debug)]
pub struct Connections<H> {
    links: BTreeMap<NodeKey, Carrier<H>>,
    dialing: BTreeSet<NodeKey>,
}

impl<H> Default for Connections<H> {
    fn default() -> Self {
        Connections { links: BTreeMap::new(), dialing: BTreeSet::new() }
    }
}

impl<H> Connections<H> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The core asked to dial `peer`.
    pub fn connect(&mut self, peer: NodeKey) -> Dial {
        if self.links.contains_key(&peer) {
            Dial::Up
        } else if self.dialing.insert(peer) {
            Dial::Start
        } else {
            Dial::InFlight
        }
    }

    /// A dial to `peer` failed (refused, timed out, handshake failed): give the core `ConnectFailed`.
    pub fn dial_failed(&mut self, peer: NodeKey) {
        self.dialing.remove(&peer);
    }

    /// Connection `conn` to `peer`, dialled by `dialer` (this node or the peer), finished its handshake at
    /// `now`.
    pub fn arrived(&mut self, now: Instant, peer: NodeKey, conn: u64, dialer: NodeKey, handle: H) -> Arrival<H> {
        self.dialing.remove(&peer);
        let take = match self.links.get(&peer) {
            None => true,
            Some(old) if old.dialer == dialer => true,
            Some(old) if now.saturating_duration_since(old.since) >= SIMULTANEOUS_DIAL => true,
            Some(old) => dialer > old.dialer,
        };
        if !take {
            return Arrival::Refused(handle);
        }
        let replaced = self.links.insert(peer, Carrier { conn, dialer, since: now, handle }).map(|old| old.handle);
        Arrival::Up { replaced }
    }

    /// Whether `conn` carries the link to `peer`: frames read from any other connection are dropped.
    pub fn carries(&self, peer: &NodeKey, conn: u64) -> bool {
        self.links.get(peer).is_some_and(|c| c.conn == conn)
    }

    /// Connection `conn` to `peer` closed (reset, EOF, error). If it carried the link, it is gone, and its
    /// handle comes back: give the core `LinkDown`. A close of any other connection changes nothing.
    pub fn closed(&mut self, peer: &NodeKey, conn: u64) -> Option<H> {
        if !self.carries(peer, conn) {
            return None;
        }
        self.links.remove(peer).map(|c| c.handle)
    }

    /// Drops the link to `peer` (the core's `Disconnect`, or the driver giving a stuck link up): its handle,
    /// to close, if one was up.
    pub fn remove(&mut self, peer: &NodeKey) -> Option<H> {
        self.links.remove(peer).map(|c| c.handle)
    }

    pub fn get(&self, peer: &NodeKey) -> Option<&H> {
        self.links.get(peer).map(|c| &c.handle)
    }

    pub fn contains(&self, peer: &NodeKey) -> bool {
        self.links.contains_key(peer)
    }

    /// The connection carrying the link to `peer`, if any.
    pub fn conn(&self, peer: &NodeKey) -> Option<u64> {
        self.links.get(peer).map(|c| c.conn)
    }

    /// Every link up, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeKey, &H)> {
        self.links.iter().map(|(k, c)| (k, &c.handle))
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Every link's handle, to close them all (the process stops); the table is left empty.
    pub fn take_all(&mut self) -> Vec<H> {
        self.dialing.clear();
        std::mem::take(&mut self.links).into_values().map(|c| c.handle).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> NodeKey {
        NodeKey([b; 32])
    }

    /// Both ends of a simultaneous dial keep the same connection, whichever arrives first at each.
    #[test]
    fn a_simultaneous_dial_keeps_the_higher_keys_connection_on_both_sides() {
        let (lo, hi) = (key(1), key(9));
        let t = Instant::now();
        // Connection 1 dialled by lo, connection 2 dialled by hi: each side may take them up in either order.
        for (first, second) in [((1, lo), (2, hi)), ((2, hi), (1, lo))] {
            let mut c: Connections<u64> = Connections::new();
            assert!(matches!(c.arrived(t, lo, first.0, first.1, first.0), Arrival::Up { replaced: None }));
            let _ = c.arrived(t + Duration::from_millis(3), lo, second.0, second.1, second.0);
            assert_eq!(c.conn(&lo), Some(2), "{first:?} first");
        }
    }

    #[test]
    fn the_same_side_dialling_again_or_a_late_dial_replaces_the_link() {
        let (me, peer) = (key(9), key(1));
        let t = Instant::now();
        let mut c: Connections<u64> = Connections::new();
        let _ = c.arrived(t, peer, 1, me, 1);
        // The peer (lower key) dials within the window: a simultaneous dial, ours stays.
        assert!(matches!(c.arrived(t, peer, 2, peer, 2), Arrival::Refused(2)));
        // The peer dials again later: it gave the old connection up.
        let late = t + SIMULTANEOUS_DIAL;
        assert!(matches!(c.arrived(late, peer, 3, peer, 3), Arrival::Up { replaced: Some(1) }));
        // Now it redials at once: the same side again, so the new one replaces.
        assert!(matches!(c.arrived(late, peer, 4, peer, 4), Arrival::Up { replaced: Some(3) }));
        assert!(c.carries(&peer, 4) && !c.carries(&peer, 3));
    }

    #[test]
    fn only_the_carrying_connection_closes_the_link() {
        let peer = key(1);
        let t = Instant::now();
        let mut c: Connections<&str> = Connections::new();
        assert_eq!(c.connect(peer), Dial::Start);
        assert_eq!(c.connect(peer), Dial::InFlight);
        let _ = c.arrived(t, peer, 7, key(2), "seven");
        assert_eq!(c.connect(peer), Dial::Up);
        assert_eq!(c.closed(&peer, 6), None);
        assert_eq!(c.closed(&peer, 7), Some("seven"));
        assert_eq!(c.closed(&peer, 7), None);
        assert_eq!(c.connect(peer), Dial::Start);
        c.dial_failed(peer);
        assert_eq!(c.connect(peer), Dial::Start);
    }
}
