//! The ChatMesh node driver: the only crate with I/O.
//!
//! # Layout
//! - `store`: the SQLite store (identity, membership snapshot, messages, history summary), group commit,
//!   schema migrations, loads for anti-entropy.
//!
//! Still to come (see docs/ARCHITECTURE.md): the tokio driver with the multicast socket, the Noise links,
//! the timers and one inbox feeding the core, the control HTTP API and the metrics.

pub mod api;
pub mod driver;
pub mod events;
pub mod link;
pub mod metrics;
pub mod net;
pub mod seal;
pub mod store;

pub use chatmesh_core as core;
pub use driver::{start, Handle, NodeOptions, SendError, StartError, DEMO_NETWORK_KEY};
pub use events::{MessageView, Notice, StatusView};
pub use store::{Store, StoreError, Write, SCHEMA_VERSION};
