//! The ChatMesh node driver: the only crate with I/O. It will own the tokio runtime, the multicast socket,
//! the Noise-encrypted TCP links, the SQLite store, the control HTTP API and the metrics, and drive a
//! `chatmesh_core::Node` through one inbox (see docs/ARCHITECTURE.md).
//!
//! Not built yet: the protocol core and the simulator come first. Until then this crate only re-exports the
//! core so that the workspace has its final shape.

pub use chatmesh_core as core;
