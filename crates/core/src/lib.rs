//! The ChatMesh protocol as a pure state machine.
//!
//! No runtime, no sockets, no clock reads, no filesystem, no thread-local randomness, no global state: every
//! entry point takes `now`, randomness comes from `Config` (its seed; and for batch signature checks, which
//! a peer must not predict, a hash of its secret key and seed), and everything the node wants done comes
//! out of `poll_output`. The same `Node` runs under the tokio driver (`chatmesh-node`) and the deterministic
//! simulator (`chatmesh-sim`). One exception to "no runtime" and "no filesystem": a large batch of
//! signatures (a sync page) is checked on several threads (`std::thread::scope`, as many as
//! `available_parallelism` gives, which on Linux reads the cgroup's CPU quota; asked once per node, on its
//! first large batch), pure computation whose verdicts do not depend on the split.
//!
//! # Layout
//! Three layers, and imports point down them only (`tests/layering.rs` checks it, and that no two modules
//! import each other, however indirectly).
//!
//! Data: types and the pure rules on them; they import no module that drives the node.
//! - `types`: `NodeId`, `NodeKey`, `Rank`, `Contact`, `Term`.
//! - `config`: `Config` (identity, secret key, address, RNG seed), `Timing` (every protocol timer), `key_of`.
//! - `stats`: counters, and the reasons input is refused (`Reject`).
//! - `timer`: every timer, one doc line each, and the timer table.
//! - `view`: the membership view, ID assignment and the merge rule.
//! - `ballot`: `Election`, the state of an election this node runs.
//! - `history`: what a node holds of the chat history: `HistoryState` (the durable summary: frontier, clock,
//!   heads, digest, acknowledgements of our own messages), `Delivery`, limits, `page_of`, and the node's
//!   volatile `History` with its `Round` (what waits for the end of a driver round).
//! - `history::message`: a chat message (signed alone or in a batch), its ID and canonical order, the
//!   history digest, and the `Verifier` (batch signature checks with its own RNG and key cache).
//! - `history::holdback`: messages waiting for their dependencies, indexed by what each waits for.
//! - `wire`: frames (links) and datagrams (multicast), versioned `postcard`, size limits, typed errors.
//! - `io`: `Input`, `Output`, `Event`, `Command`, `Snapshot`.
//! - `connections`: which connection carries the link to each peer, and the tie-break of a simultaneous
//!   dial (both ends keep the connection dialled by the higher key); shared by the tokio driver and the
//!   simulator.
//! - `pipeline`: the commit pipeline: which outputs of a driver round go at once, which wait for its writes
//!   (and earlier rounds') to be durable; shared by the tokio driver and the simulator.
//!
//! The node, above the data:
//! - `node`: the `Node`, its driving API, dispatch, links and view installation.
//! - `node::state`: `State`, where the node stands (discovering, joining, member, coordinator, stopped), owning
//!   the view and what only that standing has (a joiner's target, a member's last word from its coordinator,
//!   a coordinator's followers, the election a member or coordinator runs).
//!
//! Behaviour, above the node: each an `impl Node` for one job, importing the node and the data only.
//! - `discovery`: `Discover` / `Offer` / `Beacon`, founding a mesh, joining.
//! - `membership`: admission, replication, heartbeats, failure detection, leave, merge of split meshes.
//! - `election`: Bully with terms.
//! - `health`: local health: a node that was late itself gives peers a fresh chance before judging them.
//! - `delivery`: writing and signing our messages, verifying and causally delivering others', storing,
//!   acknowledgements.
//! - `round`: driver rounds: pushes, own messages and acks merged until the round's end.
//! - `sync`: anti-entropy (frontier exchange, sync pages) and retransmission.
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
//! node.handle_input(later, Input::Command(Command::Send { text: "olá".into(), token: 1 }));
//! assert_eq!(node.history().count, 1);
//! ```

mod ballot;
mod config;
pub mod connections;
mod delivery;
mod discovery;
mod election;
mod health;
pub mod history;
mod io;
mod membership;
mod node;
pub mod pipeline;
mod round;
mod stats;
mod sync;
mod timer;
mod types;
mod view;
mod wire;

pub use config::{key_of, Config, Timing};
pub use connections::{Arrival, Connections, Dial};
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
