//! The ChatMesh protocol as a pure state machine.
//!
//! No runtime, no sockets, no clock reads, no filesystem, no thread-local randomness: every entry point
//! takes `now`, randomness comes from the seed in `Config`, and everything the node wants done comes out of
//! `poll_output`. The same `Node` runs under the tokio driver (`chatmesh-node`) and the deterministic
//! simulator (`chatmesh-sim`).
//!
//! # Layout
//! - `types`: `NodeId`, `NodeKey`, `Rank`, `Contact`, `Term`.
//! - `wire`: frames (links) and datagrams (multicast), versioned `postcard`, size limits, typed errors.
//! - `view`: the membership view, ID assignment and the merge rule.
//! - `node`: the `Node`, its driving API, links and view installation.
//! - `discovery`: `Discover` / `Offer` / `Beacon`, founding a mesh, joining.
//! - `membership`: admission, replication, heartbeats, failure detection, leave, merge of split meshes.
//! - `election`: Bully with terms.
//! - `health`: local health: a node that was late itself gives peers a fresh chance before judging them.
//! - `timer`: every timer, one doc line each.
//! - `io`: `Input`, `Output`, `Event`, `Snapshot`.
//! - `pipeline`: the commit pipeline: which outputs of a round go at once, which wait for its writes (and
//!   earlier rounds') to be durable; shared by the tokio driver and the simulator.
//! - `stats`: counters, and the reasons input is refused.
//! - `history`: chat messages (`message`: signing, canonical order, digest), causal delivery and acks
//!   (`mod.rs`), anti-entropy and retransmission (`sync`).
//!
//! # Driving the node
//! ```
//! use chatmesh_core::{Command, Config, HistoryState, Input, Node, Output, Role, Snapshot};
//! use std::time::{Duration, Instant};
//!
//! let start = Instant::now(); // a driver reads the clock; the core never does
//! let cfg = Config::new("demo", "ana", [7; 32], "127.0.0.1:7000".parse().unwrap(), 42);
//! // A fresh node: no durable membership snapshot, no history yet.
//! let mut node = Node::new(cfg, Snapshot::default(), HistoryState::default(), start);
//! node.handle_input(start, Input::Clock { unix_ms: 1_700_000_000_000 });
//! // Nobody answers discovery: once the founding window has passed, the node founds the mesh.
//! let later = start + Duration::from_secs(2);
//! while let Some(at) = node.poll_timeout().filter(|at| *at <= later) {
//!     node.handle_timeout(at);
//!     while let Some(output) = node.poll_output() {
//!         match output {
//!             Output::Persist(_) | Output::Store { .. } => { /* make durable before what follows */ }
//!             _ => { /* send datagrams and frames, dial links, answer loads, show events */ }
//!         }
//!     }
//! }
//! assert_eq!(node.role(), Role::Coordinator);
//! node.handle_input(later, Input::Command(Command::Send { text: "olá".into() }));
//! assert_eq!(node.history().count, 1);
//! ```

mod config;
mod discovery;
mod election;
mod health;
pub mod history;
mod io;
mod membership;
mod node;
pub mod pipeline;
mod stats;
mod timer;
mod types;
mod view;
mod wire;

pub use config::{key_of, Config, Timing};
pub use ed25519_dalek::SigningKey;
pub use history::{
    AuthorState, Body, Delivery, DeliveryStatus, Frontier, HistoryDigest, HistoryState, MembershipEvent, Message,
    MessageError, MessageId, OrderKey, ProofStep, MAX_HELD, PAGE_BYTES, PAGE_MESSAGES,
};
pub use io::{Command, Destination, Event, Input, LoadRequest, Output, Snapshot};
pub use node::{Node, Role};
pub use pipeline::{Pipeline, Ready};
pub use stats::{Reject, Stats};
pub use timer::Timer;
pub use types::{Contact, NodeId, NodeKey, Rank, Term};
pub use view::{
    Admission, Member, MemberState, Reassignment, View, ViewError, ViewOrder, MAX_NAME_LEN, MAX_VIEW_ENTRIES,
};
pub use wire::{
    Datagram, DatagramBody, DecodeError, EncodeError, Frame, Join, MAX_DATAGRAM_LEN, MAX_FRAME_LEN, WIRE_VERSION,
};
