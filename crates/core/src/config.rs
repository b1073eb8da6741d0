//! Configuration of one node: who it is, where it listens, and every protocol timer.

use crate::types::NodeKey;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone)]
pub struct Config {
    /// Nodes only talk to nodes of the same mesh name.
    pub mesh: String,
    /// Display name.
    pub name: String,
    /// The node's ed25519 secret key (its seed): it signs this node's messages.
    pub secret: [u8; 32],
    /// The public key: the node's identity. `Node::new` derives it from `secret`, whatever it says here.
    pub key: NodeKey,
    /// The TCP address other nodes dial to reach this one.
    pub addr: SocketAddr,
    /// Seeds the node's RNG (election jitter, founding window, nonces).
    pub seed: u64,
    pub timing: Timing,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("mesh", &self.mesh)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("key", &self.key)
            .field("addr", &self.addr)
            .field("seed", &self.seed)
            .field("timing", &self.timing)
            .finish()
    }
}

impl Config {
    pub fn new(mesh: &str, name: &str, secret: [u8; 32], addr: SocketAddr, seed: u64) -> Config {
        Config {
            mesh: mesh.into(),
            name: name.into(),
            secret,
            key: key_of(&secret),
            addr,
            seed,
            timing: Timing::default(),
        }
    }
}

/// The public key (identity) of an ed25519 secret key.
pub fn key_of(secret: &[u8; 32]) -> NodeKey {
    NodeKey(ed25519_dalek::SigningKey::from_bytes(secret).verifying_key().to_bytes())
}

/// Every protocol timer. The defaults are for a LAN or one machine: fast failover without false elections on
/// a loaded 2-core machine with 16 nodes (see docs/PROTOCOL.md for the reasoning and measured figures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Coordinator -> member heartbeat period.
    pub heartbeat_interval: Duration,
    /// A member suspects the coordinator after this much silence.
    pub coordinator_timeout: Duration,
    /// The coordinator declares a member failed after this much silence.
    pub member_timeout: Duration,
    /// First `Discover` resend delay; doubles up to `discover_max_interval`.
    pub discover_interval: Duration,
    pub discover_max_interval: Duration,
    /// Nobody answered discovery within a random time in this window: found a mesh.
    pub found_window: (Duration, Duration),
    /// A `Join` with no `Welcome` after this long is abandoned and discovery restarts.
    pub join_timeout: Duration,
    /// A candidate that hears no `Answer` within this announces itself.
    pub election_answer_timeout: Duration,
    /// A candidate that was answered but sees no announcement within this starts over.
    pub election_announce_timeout: Duration,
    /// Coordinator beacon period on the multicast group.
    pub beacon_interval: Duration,
    /// Ping period on every link; also when missing links to members are dialled.
    pub keepalive_interval: Duration,
    /// A link silent this long is closed.
    pub link_timeout: Duration,
    /// A leaving member stops after this long even without the coordinator's confirmation.
    pub leave_timeout: Duration,
    /// Period of the retransmission timer: a member that has acknowledged nothing new of ours for a whole
    /// period while lagging is nudged (its first nudge one to two periods after its last progress); the
    /// interval doubles per member up to `retransmit_max`.
    pub retransmit_interval: Duration,
    pub retransmit_max: Duration,
    /// Frontier exchange with one random linked member.
    pub anti_entropy_interval: Duration,
    /// A sync whose next page does not come within this is abandoned.
    pub sync_timeout: Duration,
    /// A node driven this long after its earliest timer was due has stalled (stopped, swapped out, starved
    /// of CPU): its peers get a fresh timeout before it judges their silence (see `health.rs`).
    pub stall_threshold: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        let ms = Duration::from_millis;
        Timing {
            heartbeat_interval: ms(100),
            coordinator_timeout: ms(600),
            member_timeout: ms(600),
            discover_interval: ms(50),
            discover_max_interval: ms(400),
            found_window: (ms(500), ms(1000)),
            join_timeout: ms(1000),
            election_answer_timeout: ms(150),
            election_announce_timeout: ms(600),
            beacon_interval: ms(250),
            keepalive_interval: ms(1000),
            link_timeout: ms(3000),
            leave_timeout: ms(500),
            retransmit_interval: ms(200),
            retransmit_max: ms(5000),
            anti_entropy_interval: ms(1000),
            sync_timeout: ms(2000),
            stall_threshold: ms(250),
        }
    }
}
