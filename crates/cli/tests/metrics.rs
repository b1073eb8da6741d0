//! `GET /metrics` as Prometheus reads it, from real node processes on loopback: every family has its HELP
//! and TYPE lines, a lone node's counters are there at 0 before anything was counted (Prometheus's
//! instrumentation guide: "avoid missing metrics"), and `promtool check metrics` finds no problem, on a
//! lone node and on a node of a two-node mesh after some chat (where the labelled families appear).
//!
//! Needs `promtool`: the Debian package `prometheus` (.ci/run installs it).

mod common;

use chatmesh_harness::metrics::{Family, Scrape};
use chatmesh_node::metrics::{Kind, FAMILIES};
use common::*;
use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn scrape(mesh: &Mesh, i: usize) -> String {
    mesh.client(i).get_text("/metrics").expect("GET /metrics")
}

/// What `promtool check metrics` says about `text` (given on stdin): its exit code and everything it printed.
fn promtool(text: &str) -> (Option<i32>, String) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed: install the Debian package `prometheus` \
             (apt-get install -y prometheus), as .ci/run does"
        ),
        Err(e) => panic!("could not run promtool: {e}"),
    };
    // Dropping stdin after the write is the end of input promtool waits for.
    child.stdin.take().expect("promtool's stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), said)
}

fn assert_promtool_accepts(what: &str, text: &str) {
    let (code, said) = promtool(text);
    assert!(
        code == Some(0) && said.trim().is_empty(),
        "promtool check metrics on {what}: exit {code:?}, it said:\n{said}\nthe scrape:\n{text}"
    );
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// Every family in the scrape has HELP and TYPE lines, each one listed in `FAMILIES` with that text and type.
fn assert_every_family_is_described(what: &str, s: &Scrape, text: &str) {
    let having = |has: fn(&Family) -> bool| -> BTreeSet<&String> {
        s.families.iter().filter(|(_, f)| has(f)).map(|(name, _)| name).collect()
    };
    let sampled = having(|f| !f.samples.is_empty());
    assert_eq!(sampled, having(|f| f.kind.is_some()), "{what}: families with samples and with a TYPE line differ");
    assert_eq!(sampled, having(|f| f.help.is_some()), "{what}: families with samples and with a HELP line differ");
    for name in sampled {
        let f = family(name).unwrap_or_else(|| panic!("{what}: {name} is not in FAMILIES:\n{text}"));
        assert_eq!(s.families[name].help.as_deref(), Some(f.help), "{what}: {name}'s HELP");
        assert_eq!(s.families[name].kind.as_deref(), Some(f.kind.as_str()), "{what}: {name}'s TYPE");
    }
}

fn family(name: &str) -> Option<&'static chatmesh_node::metrics::Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// The value of the unlabelled series `name`.
fn value(s: &Scrape, name: &str) -> Option<f64> {
    s.value(name)
}

#[test]
fn a_lone_node_shows_every_unlabelled_family_from_the_first_scrape_with_its_counters_at_zero() {
    let mut mesh = Mesh::new("metrics-lone");
    mesh.start("solo", &[], &[]);
    // The first scrape, as soon as the API answers.
    let text = scrape(&mesh, 0);
    let s = parse(&text);
    assert_every_family_is_described("a lone node's first scrape", &s, &text);
    for f in FAMILIES.iter().filter(|f| f.label.is_none() && f.kind != Kind::Histogram) {
        assert!(value(&s, f.name).is_some(), "{} missing from a lone node's first scrape:\n{text}", f.name);
    }
    assert!(
        s.families.get("chatmesh_store_commit_seconds").is_some_and(|f| !f.samples.is_empty()),
        "the commit histogram is missing:\n{text}"
    );
    // Nothing arrived from a peer on a node that has none: these stay at 0, and are there at 0.
    let silent = [
        "chatmesh_messages_delivered_total",
        "chatmesh_frames_in_total",
        "chatmesh_frames_out_total",
        "chatmesh_bytes_in_total",
        "chatmesh_views_adopted_total",
        "chatmesh_merges_total",
        "chatmesh_sync_pages_total",
        "chatmesh_messages_pulled_total",
        "chatmesh_links_distrusted_total",
        "chatmesh_links_stalled_total",
    ];
    mesh.wait_for("a mesh of one", &[0], LIMIT, |st| one_mesh(st, 1));
    for (when, text) in [("first", text), ("settled", scrape(&mesh, 0))] {
        let s = parse(&text);
        for name in silent {
            assert_eq!(value(&s, name), Some(0.0), "{name} on a lone node's {when} scrape:\n{text}");
        }
        assert_promtool_accepts(&format!("a lone node's {when} scrape"), &text);
    }
}

#[test]
fn a_node_of_a_two_node_mesh_passes_promtool_with_its_labelled_families_after_chat() {
    let mut mesh = Mesh::new("metrics-pair");
    mesh.start("ana", &[], &[]);
    mesh.start("ben", &[], &[]);
    let both = [0, 1];
    mesh.wait_for("one mesh of 2", &both, LIMIT, |s| one_mesh(s, 2));
    for i in both {
        for k in 0..3 {
            mesh.send(i, &format!("message {k} from {i}"));
        }
    }
    mesh.wait_for("equal digests", &both, LIMIT, same_digest);
    for i in both {
        let what = format!("{} in a mesh of two", mesh.nodes[i].name);
        let text = scrape(&mesh, i);
        let s = parse(&text);
        assert_every_family_is_described(&what, &s, &text);
        assert!(text.contains("\nchatmesh_members{state=\"alive\"} 2\n"), "{what}: two alive members:\n{text}");
        assert!(text.contains("\nchatmesh_link_rtt_seconds{peer=\""), "{what}: the link's RTT:\n{text}");
        let delivered = value(&s, "chatmesh_messages_delivered_total").unwrap_or(0.0);
        assert!(delivered >= 3.0, "{what}: {delivered} messages delivered, the peer sent 3:\n{text}");
        assert_promtool_accepts(&what, &text);
    }
}
