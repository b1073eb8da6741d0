//! Real `chatmesh` node processes for the harnesses that run them: the cli integration tests, `chatmesh
//! bench`, `chatmesh demo` and the chaos cluster (`chatmesh-cluster`).
//!
//! # Layout
//!
//! - `process`: finding the binary, a node's command line (`NodeArgs`), spawning it with the parent-death
//!   signal (`die_with_parent`), its stdout read as JSON lines (`ready`, its ID), pausing, resuming, killing
//!   and terminating it (`NodeProcess`, killed on drop).
//! - `client`: the control API as typed calls (`Client`): status, history, sends, metrics, events; answers
//!   parsed into `chatmesh_node::events` types, the ones the node serializes.
//! - `sse`: `GET /events` read as typed events.
//! - `metrics`: the Prometheus text exposition parsed into families and samples.
//! - `check`: checks over many nodes' statuses (one mesh, equal histories).
//!
//! Everything blocks (threads, not async): a harness drives a few processes and waits on them.

pub mod check;
pub mod client;
pub mod metrics;
pub mod process;
pub mod sse;

pub use chatmesh_node::events::{MessageView, Notice, StatusView};
pub use client::{ApiError, Client};
pub use metrics::Scrape;
pub use process::{chatmesh_bin, die_with_parent, NodeArgs, NodeProcess, Ready, Stdout};
pub use sse::{Event, EventStream};
