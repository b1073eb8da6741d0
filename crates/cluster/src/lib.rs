//! Real-network tests for ChatMesh: network namespaces, a bridge, real `chatmesh` processes, nemeses
//! (kill, stop, cut, partition) and a history checker (see docs/ARCHITECTURE.md).
//!
//! Not built yet: it needs the node driver. The crate exists so that the workspace has its final shape.

pub use chatmesh_core as core;
