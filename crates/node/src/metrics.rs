//! Prometheus metrics (`GET /metrics`): one recorder per process (a process runs one node).
//!
//! Counters the driver sees are incremented where they happen (frames, bytes, datagrams, messages, store
//! commits); the protocol's own counters (`chatmesh_core::Stats`) and the state gauges are read from the
//! node at scrape time.
//!
//! [`FAMILIES`] is the one list of metrics: the recorder describes each family from it (its `# HELP` line)
//! and registers every unlabelled one at zero when it is installed, so the first scrape already has every
//! series `rate()` and absence alerts need. docs/METRICS.md shows the same table; a test fails when the two
//! differ.

use crate::events::StatusView;
use chatmesh_core::Stats;
use metrics::{Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::sync::OnceLock;

/// What a family's samples are, as the `# TYPE` line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: its name, type, unit, label, and the meaning that is both its `# HELP` text and its
/// row in docs/METRICS.md.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    /// The unit, for recorders that use it. The names already end in their base unit (`_seconds`,
    /// `_bytes_..._total`), so the Prometheus exporter's unit suffix stays off: it would append one after
    /// `_total`.
    pub unit: Option<Unit>,
    /// The label a labelled family's series differ by. A labelled family appears once it has a label value;
    /// an unlabelled one is registered at zero.
    pub label: Option<&'static str>,
    pub help: &'static str,
}

const fn family(name: &'static str, kind: Kind, unit: Option<Unit>, help: &'static str) -> Family {
    Family { name, kind, unit, label: None, help }
}

const fn labelled(
    name: &'static str,
    kind: Kind,
    label: &'static str,
    unit: Option<Unit>,
    help: &'static str,
) -> Family {
    Family { name, kind, unit, label: Some(label), help }
}

use Kind::{Counter, Gauge, Histogram};
const COUNT: Option<Unit> = Some(Unit::Count);
const SECONDS: Option<Unit> = Some(Unit::Seconds);
const BYTES: Option<Unit> = Some(Unit::Bytes);

/// Every metric a node exports, in the order of docs/METRICS.md.
pub const FAMILIES: &[Family] = &[
    // Membership and elections
    family("chatmesh_term", Gauge, None, "the coordinator term this node is in"),
    family("chatmesh_is_coordinator", Gauge, None, "1 when this node is the coordinator"),
    family("chatmesh_election_running", Gauge, None, "1 while this node runs an election"),
    labelled(
        "chatmesh_members",
        Gauge,
        "state",
        COUNT,
        "members of the view this node holds, by state (`alive`, `failed`, `left`)",
    ),
    family(
        "chatmesh_elections_started_total",
        Counter,
        COUNT,
        "elections this node started (on a silent coordinator, a lost link, `/elect`)",
    ),
    family("chatmesh_elections_won_total", Counter, COUNT, "elections this node won (it announced itself coordinator)"),
    family("chatmesh_heartbeats_sent_total", Counter, COUNT, "heartbeats sent, as coordinator"),
    family(
        "chatmesh_heartbeats_missed_total",
        Counter,
        COUNT,
        "member: times the coordinator fell silent (or its link could not be re-established) and was suspected; \
         coordinator: members declared failed for silence or an unreachable link",
    ),
    family("chatmesh_views_published_total", Counter, COUNT, "membership views this node published, as coordinator"),
    family("chatmesh_views_adopted_total", Counter, COUNT, "views this node adopted from a coordinator"),
    family("chatmesh_members_failed_total", Counter, COUNT, "members this node marked failed"),
    family("chatmesh_merges_total", Counter, COUNT, "parts of a split mesh this node took in, as coordinator"),
    family(
        "chatmesh_stalls_total",
        Counter,
        COUNT,
        "times this node found itself late on its own timers by `stall_threshold` (250 ms) or more (stopped, \
         swapped out, starved of CPU) and gave its peers a fresh timeout instead of judging their silence",
    ),
    // Chat history and delivery
    family(
        "chatmesh_messages_sent_total",
        Counter,
        COUNT,
        "messages this node wrote (chat, and membership events it wrote as coordinator), each durable before it \
         counts",
    ),
    family(
        "chatmesh_messages_delivered_total",
        Counter,
        COUNT,
        "messages from others, durable here and causally delivered",
    ),
    family("chatmesh_history_messages", Gauge, COUNT, "messages held (the history's size)"),
    family(
        "chatmesh_digest_changes_total",
        Counter,
        COUNT,
        "times the history digest changed (each stored batch of new messages)",
    ),
    family("chatmesh_pending_acks", Gauge, COUNT, "own messages some current member has not acknowledged yet"),
    family("chatmesh_held_back_messages", Gauge, COUNT, "messages received but waiting for what they depend on"),
    family(
        "chatmesh_retransmits_total",
        Counter,
        COUNT,
        "retransmissions: frontier nudges to members lagging this node's own messages",
    ),
    family(
        "chatmesh_anti_entropy_rounds_total",
        Counter,
        COUNT,
        "periodic frontier exchanges with a random linked member",
    ),
    family("chatmesh_sync_pages_total", Counter, COUNT, "sync pages received while pulling missing history"),
    family("chatmesh_messages_pulled_total", Counter, COUNT, "messages those pages brought that were new here"),
    family(
        "chatmesh_store_commits_total",
        Counter,
        COUNT,
        "store transactions (one per round of the core task: group commit)",
    ),
    family(
        "chatmesh_store_commit_seconds",
        Histogram,
        SECONDS,
        "time from handing a round's writes to the store thread to their being durable",
    ),
    // Network
    family("chatmesh_links", Gauge, COUNT, "links (encrypted TCP connections) up"),
    labelled(
        "chatmesh_link_rtt_seconds",
        Gauge,
        "peer",
        SECONDS,
        "each link's round-trip time: the kernel's smoothed TCP estimate (`TCP_INFO`), by the peer's name and ID; \
         a series disappears a minute after its link",
    ),
    family("chatmesh_frames_in_total", Counter, COUNT, "frames received on links"),
    family("chatmesh_frames_out_total", Counter, COUNT, "frames sent on links"),
    family("chatmesh_bytes_in_total", Counter, BYTES, "frame bytes received on links (after decryption)"),
    family("chatmesh_bytes_out_total", Counter, BYTES, "frame bytes sent on links (before encryption)"),
    family("chatmesh_datagrams_in_total", Counter, COUNT, "datagrams received that opened with the network key"),
    family(
        "chatmesh_datagrams_out_total",
        Counter,
        COUNT,
        "datagrams sent (one per destination: the group and each `--peer`)",
    ),
    labelled(
        "chatmesh_datagrams_dropped_total",
        Counter,
        "reason",
        COUNT,
        "datagrams dropped before the protocol: `Forged` (does not open with our key), `Stale` (timestamp outside \
         30 s), `Replayed`, `Malformed`, `RateLimited` (over the per-source or per-IP rate)",
    ),
    labelled(
        "chatmesh_rejected_total",
        Counter,
        "reason",
        COUNT,
        "frames and datagrams the protocol refused, by reason (`UndecodableFrame`, `UndecodableDatagram`, \
         `WrongMesh`, `StaleTerm`, `NotMember`, `UnexpectedWelcome`, `InvalidView`, `NotCoordinator`, \
         `OutOfBounds`, `BadMessage`)",
    ),
    family(
        "chatmesh_links_distrusted_total",
        Counter,
        COUNT,
        "links closed because the peer sent a message whose signature did not verify",
    ),
    family(
        "chatmesh_links_stalled_total",
        Counter,
        COUNT,
        "links dropped (with a reset) because they were stuck retransmitting while the peer was evidently \
         reachable again: its datagram arrived, or it rejoined the view (a healed partition)",
    ),
    // Process
    family("chatmesh_uptime_seconds", Gauge, SECONDS, "time since the node started"),
];

impl Family {
    /// Gives the recorder this family's `# HELP` text and unit. This is what `describe_counter!` and its kin
    /// expand to; called directly because the macros take a unit, not an `Option` of one.
    fn describe(&self, recorder: &dyn Recorder) {
        let (name, help) = (self.name.into(), self.help.into());
        match self.kind {
            Kind::Counter => recorder.describe_counter(name, self.unit, help),
            Kind::Gauge => recorder.describe_gauge(name, self.unit, help),
            Kind::Histogram => recorder.describe_histogram(name, self.unit, help),
        }
    }

    /// Creates an unlabelled family's series at zero, so a scrape shows it before anything is counted
    /// (Prometheus's guide: "avoid missing metrics"). A labelled family has no series until it has a value.
    fn register_at_zero(&self) {
        if self.label.is_some() {
            return;
        }
        match self.kind {
            Kind::Counter => metrics::counter!(self.name).increment(0),
            Kind::Gauge => metrics::gauge!(self.name).set(0.0),
            Kind::Histogram => drop(metrics::histogram!(self.name)),
        }
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program): then ours is only rendered.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// A recorder with every family described and every unlabelled one at zero.
fn recorder() -> PrometheusRecorder {
    let recorder = PrometheusBuilder::new()
        // A link's RTT series goes away a minute after the link does (the scrape-time gauges are set
        // again at every scrape).
        .idle_timeout(metrics_util::MetricKindMask::GAUGE, Some(std::time::Duration::from_secs(60)))
        .set_buckets_for_metric(
            Matcher::Full("chatmesh_store_commit_seconds".into()),
            &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0],
        )
        .expect("static bucket list")
        .build_recorder();
    // Through this recorder itself, not the global one: if another recorder is installed already, ours
    // still renders every family described.
    metrics::with_local_recorder(&recorder, || {
        for f in FAMILIES {
            f.describe(&recorder);
            f.register_at_zero();
        }
    });
    recorder
}

/// What the protocol counted, and its queues, read from the node for a scrape.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub stats: Stats,
    pub held_back: usize,
    /// Each link's round-trip time (the kernel's smoothed estimate), by the peer's label.
    pub link_rtt: Vec<(String, f64)>,
}

/// Renders the text format after bringing the scrape-time values up to date.
pub fn render(status: &StatusView, snap: &Snapshot) -> String {
    let h = handle();
    let s = status;
    metrics::gauge!("chatmesh_term").set(s.term as f64);
    metrics::gauge!("chatmesh_is_coordinator").set(if s.role == "coordinator" { 1.0 } else { 0.0 });
    metrics::gauge!("chatmesh_election_running").set(if s.election_running { 1.0 } else { 0.0 });
    for state in ["alive", "failed", "left"] {
        let n = s.members.iter().filter(|m| m.state == state).count();
        metrics::gauge!("chatmesh_members", "state" => state).set(n as f64);
    }
    metrics::gauge!("chatmesh_links").set(s.links as f64);
    metrics::gauge!("chatmesh_history_messages").set(s.history.count as f64);
    metrics::gauge!("chatmesh_pending_acks").set(s.pending_acks as f64);
    metrics::gauge!("chatmesh_held_back_messages").set(snap.held_back as f64);
    metrics::gauge!("chatmesh_uptime_seconds").set(s.uptime_ms as f64 / 1000.0);
    for (peer, rtt) in &snap.link_rtt {
        metrics::gauge!("chatmesh_link_rtt_seconds", "peer" => peer.clone()).set(*rtt);
    }
    let st = &snap.stats;
    metrics::counter!("chatmesh_elections_started_total").absolute(st.elections_started);
    metrics::counter!("chatmesh_elections_won_total").absolute(st.elections_won);
    metrics::counter!("chatmesh_heartbeats_sent_total").absolute(st.heartbeats_sent);
    metrics::counter!("chatmesh_heartbeats_missed_total").absolute(st.heartbeats_missed);
    metrics::counter!("chatmesh_views_published_total").absolute(st.views_published);
    metrics::counter!("chatmesh_views_adopted_total").absolute(st.views_adopted);
    metrics::counter!("chatmesh_members_failed_total").absolute(st.members_failed);
    metrics::counter!("chatmesh_merges_total").absolute(st.merges);
    metrics::counter!("chatmesh_stalls_total").absolute(st.stalls);
    metrics::counter!("chatmesh_retransmits_total").absolute(st.retransmits);
    metrics::counter!("chatmesh_anti_entropy_rounds_total").absolute(st.anti_entropy_rounds);
    metrics::counter!("chatmesh_sync_pages_total").absolute(st.sync_pages);
    metrics::counter!("chatmesh_messages_pulled_total").absolute(st.messages_pulled);
    metrics::counter!("chatmesh_links_distrusted_total").absolute(st.links_distrusted);
    for (reason, n) in &st.rejected {
        metrics::counter!("chatmesh_rejected_total", "reason" => format!("{reason:?}")).absolute(*n);
    }
    h.render()
}

/// A driver-side counter increment (the name is one of [`FAMILIES`]).
pub fn count(name: &'static str, n: u64) {
    metrics::counter!(name).increment(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A family's row in docs/METRICS.md.
    fn doc_row(f: &Family) -> String {
        let label = f.label.map(|l| format!("{{{l}}}")).unwrap_or_default();
        format!("| `{}{label}` | {} | {} |", f.name, f.kind.as_str(), f.help)
    }

    #[test]
    fn docs_metrics_md_shows_every_family_with_its_help_text_in_order() {
        let doc = include_str!("../../../docs/METRICS.md");
        let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `chatmesh_")).collect();
        let expected: Vec<String> = FAMILIES.iter().map(doc_row).collect();
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(rows.get(i).copied(), Some(want.as_str()), "docs/METRICS.md row {i} differs from FAMILIES");
        }
        assert_eq!(rows.len(), expected.len(), "docs/METRICS.md lists metrics that FAMILIES does not");
    }

    #[test]
    fn family_names_follow_the_prometheus_conventions() {
        let mut names = std::collections::BTreeSet::new();
        for f in FAMILIES {
            assert!(names.insert(f.name), "{} is listed twice", f.name);
            assert_eq!(f.kind == Kind::Counter, f.name.ends_with("_total"), "{}: `_total` is for counters", f.name);
            assert_eq!(f.unit == Some(Unit::Seconds), f.name.ends_with("_seconds"), "{}: base unit", f.name);
            assert_eq!(f.unit == Some(Unit::Bytes), f.name.contains("_bytes"), "{}: base unit", f.name);
            assert!(!f.help.is_empty() && !f.help.contains(['\n', '\\']), "{}: one-line help", f.name);
        }
    }

    #[test]
    fn a_fresh_recorder_describes_every_family_and_shows_the_unlabelled_ones_at_zero() {
        let text = recorder().handle().render();
        for f in FAMILIES.iter().filter(|f| f.label.is_none()) {
            let head = format!("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, f.kind.as_str());
            assert!(text.contains(&head), "{} is not described:\n{text}", f.name);
            let zero = match f.kind {
                Kind::Histogram => format!("\n{}_count 0\n", f.name),
                _ => format!("\n{} 0\n", f.name),
            };
            assert!(text.contains(&zero), "{} is not at zero:\n{text}", f.name);
        }
    }
}
