//! Prometheus metrics (`GET /metrics`): one recorder per process (a process runs one node).
//!
//! Counters the driver sees are incremented where they happen (frames, bytes, datagrams, messages, store
//! commits); the protocol's own counters (`chatmesh_core::Stats`) and the state gauges are read from the
//! node at scrape time. Every metric is listed with its meaning in docs/METRICS.md.

use crate::events::StatusView;
use chatmesh_core::Stats;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            // A link's RTT series goes away a minute after the link does (the scrape-time gauges are set
            // again at every scrape).
            .idle_timeout(metrics_util::MetricKindMask::GAUGE, Some(std::time::Duration::from_secs(60)))
            .set_buckets_for_metric(
                Matcher::Full("chatmesh_store_commit_seconds".into()),
                &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0],
            )
            .expect("static bucket list");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program): then ours is only rendered.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
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

/// A driver-side counter increment (names in docs/METRICS.md).
pub fn count(name: &'static str, n: u64) {
    metrics::counter!(name).increment(n);
}
