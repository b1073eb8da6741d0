//! Real-network tests for ChatMesh, the way Jepsen tests a system: real `chatmesh` processes, each in a
//! network namespace of its own on a bridge (`netns`); nemeses made only of signals and `ip link` (kill and
//! restart, SIGSTOP and SIGCONT, isolating a node, splitting the mesh); a client workload recording every
//! send as invoke / ok / fail / unknown (`workload`); and a checker comparing what the clients were told
//! with what every node holds once faults stop (`checker`). `chaos` puts them together; the
//! `chatmesh-cluster` binary and `tests/chaos.rs` run it. Everything needs root (network namespaces).

pub mod chaos;
pub mod checker;
pub mod cluster;
pub mod netns;
pub mod workload;

pub use chaos::{run, ChaosOptions, Summary};
