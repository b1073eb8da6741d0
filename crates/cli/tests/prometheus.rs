//! The real Prometheus server scraping a mesh of four real node processes on loopback: it sees the four
//! targets up and one coordinator among them; after the coordinator is SIGKILLed it sees that target down,
//! its series gone stale, the term risen and again exactly one coordinator, a survivor, the one the
//! survivors' `/status` names. Everything is read through Prometheus's HTTP query API
//! (`GET /api/v1/query`), as a dashboard or an alert would.
//!
//! Prometheus runs with its own temporary config file and storage directory, on a free port of
//! 127.0.0.1, scraping every 250 ms; it is killed when the test ends, also when it fails.
//!
//! Needs the `prometheus` binary: the Debian package `prometheus` (`./test.sh` installs it, as root).
//! Without it this test fails and says so.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LIMIT: Duration = Duration::from_secs(30);
const NAMES: [&str; 4] = ["ana", "bruno", "carla", "davi"];

/// One sample of an instant vector: its labels and its value.
type Sample = (BTreeMap<String, String>, f64);

fn find_prometheus() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("PROMETHEUS") {
        Some(p) => vec![PathBuf::from(p)],
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain([PathBuf::from("/usr/bin")])
            .map(|dir| dir.join("prometheus"))
            .collect(),
    };
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "this test needs the Prometheus server and found none (`prometheus` in PATH or /usr/bin, or \
             $PROMETHEUS): install the Debian/Ubuntu package `prometheus` (apt-get install -y \
             --no-install-recommends prometheus; ./test.sh does it when run as root) or set \
             PROMETHEUS=/path/to/prometheus"
        )
    })
}

/// A Prometheus server of the test's own; killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (a node's name, its `host:port`) every 250 ms, and waits until
    /// it is ready.
    fn start(bin: &Path, targets: &[(String, String)]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        // Each target with a `node` label: the node's name (the instance label is its API's address).
        let mut config = String::from(
            "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n  evaluation_interval: 250ms\n\
             scrape_configs:\n  - job_name: chatmesh\n    metrics_path: /metrics\n    static_configs:\n",
        );
        for (name, addr) in targets {
            config += &format!("      - targets: ['{addr}']\n        labels: {{node: '{name}'}}\n");
        }
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write the config");
        // A free port on loopback (released just before Prometheus takes it).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("the log file");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
        let mut p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(3)).build(),
        };
        let limit = Instant::now() + LIMIT;
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited at start ({status}):\n{}", p.log());
            }
            if p.agent.get(&format!("{}/-/ready", p.url)).call().is_ok() {
                return p;
            }
            assert!(Instant::now() < limit, "prometheus not ready within {LIMIT:?}:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Evaluates `query` at `time` (seconds since the epoch) through the HTTP API: the instant vector's
    /// samples as (labels, value).
    fn query(&self, query: &str, time: f64) -> Result<Vec<Sample>, String> {
        let url = format!("{}/api/v1/query", self.url);
        let answer: Value = self
            .agent
            .get(&url)
            .query("query", query)
            .query("time", &format!("{time:.3}"))
            .call()
            .map_err(|e| format!("{query}: {e}"))?
            .into_json()
            .map_err(|e| format!("{query}: not JSON: {e}"))?;
        if answer["status"] != "success" || answer["data"]["resultType"] != "vector" {
            return Err(format!("{query}: {answer}"));
        }
        let result = answer["data"]["result"].as_array().ok_or_else(|| format!("{query}: {answer}"))?;
        result
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                    .unwrap_or_default();
                // [ <unix time>, "<value>" ]
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| format!("{query}: a sample without a value: {s}"))?;
                Ok((labels, value))
            })
            .collect()
    }

    /// The value of an aggregation (`sum(...)`, `max(...)`, ...): one sample without labels, or none.
    fn scalar(&self, query: &str, time: f64) -> Result<Option<f64>, String> {
        match self.query(query, time)?.as_slice() {
            [] => Ok(None),
            [(_, v)] => Ok(Some(*v)),
            more => Err(format!("{query}: {} samples, expected one: {more:?}", more.len())),
        }
    }

    /// Per node (the `node` label): the value of `query`.
    fn by_node(&self, query: &str, time: f64) -> Result<BTreeMap<String, f64>, String> {
        Ok(self
            .query(query, time)?
            .into_iter()
            .map(|(labels, v)| (labels.get("node").cloned().unwrap_or_default(), v))
            .collect())
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Polls `check` on queries evaluated at one instant (now) until it holds; panics after `limit`.
    fn wait<T>(&self, what: &str, limit: Duration, check: impl Fn(f64) -> Result<T, String>) -> (T, Duration) {
        let start = Instant::now();
        loop {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
            match check(now) {
                Ok(t) => return (t, start.elapsed()),
                Err(e) if start.elapsed() > limit => {
                    panic!("{what}: not within {limit:?}: {e}\nprometheus's last log lines:\n{}", self.log())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What Prometheus says at one instant about the mesh.
#[derive(Debug)]
struct Seen {
    up: BTreeMap<String, f64>,
    is_coordinator: BTreeMap<String, f64>,
    sum_coordinator: Option<f64>,
    max_term: Option<f64>,
    min_term: Option<f64>,
}

fn seen(p: &Prometheus, t: f64) -> Result<Seen, String> {
    Ok(Seen {
        up: p.by_node("up{job=\"chatmesh\"}", t)?,
        is_coordinator: p.by_node("chatmesh_is_coordinator", t)?,
        sum_coordinator: p.scalar("sum(chatmesh_is_coordinator)", t)?,
        max_term: p.scalar("max(chatmesh_term)", t)?,
        min_term: p.scalar("min(chatmesh_term)", t)?,
    })
}

impl Seen {
    /// The one node whose `chatmesh_is_coordinator` is 1, when exactly one is and the sum says 1.
    fn coordinator(&self) -> Result<String, String> {
        let ones: Vec<&String> = self.is_coordinator.iter().filter(|(_, v)| **v == 1.0).map(|(n, _)| n).collect();
        match (ones.as_slice(), self.sum_coordinator) {
            ([one], Some(1.0)) => Ok(one.to_string()),
            _ => Err(format!("not one coordinator: {self:?}")),
        }
    }
}

#[test]
fn a_real_prometheus_scrape_of_four_nodes_shows_the_term_rise_and_one_coordinator_after_the_coordinator_dies() {
    let started = Instant::now();
    let bin = find_prometheus();
    let mut mesh = Mesh::new("prometheus");
    for name in NAMES {
        mesh.start(name, &[], &[]);
    }
    let all = [0, 1, 2, 3];
    mesh.wait_for("one mesh of 4", &all, LIMIT, |s| one_mesh(s, 4));
    let statuses: Vec<_> = all.iter().map(|i| mesh.status(*i).unwrap()).collect();
    let c = statuses.iter().position(|s| s.role == "coordinator").expect("a coordinator");
    let victim = NAMES[c];
    let term = statuses[c].term as f64;

    let targets: Vec<(String, String)> = all.iter().map(|i| (NAMES[*i].to_string(), mesh.http(*i))).collect();
    let prom = Prometheus::start(&bin, &targets);

    // Before: four targets up, four series of each gauge, all in the coordinator's term, and one coordinator,
    // the one the nodes' /status names.
    let (before, took) = prom.wait("prometheus sees the mesh of 4", LIMIT, |t| {
        let s = seen(&prom, t)?;
        if s.up.len() != 4 || s.up.values().any(|v| *v != 1.0) {
            return Err(format!("targets not all up: {:?}", s.up));
        }
        if s.is_coordinator.len() != 4 || s.max_term != Some(term) || s.min_term != Some(term) {
            return Err(format!("not four nodes in term {term} yet: {s:?}"));
        }
        if s.coordinator()? != victim {
            return Err(format!("the coordinator is not {victim}: {s:?}"));
        }
        Ok(s)
    });
    eprintln!("before ({took:?} after prometheus was ready): {before:?}");

    mesh.kill(c);
    let killed = Instant::now();
    let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != c).collect();

    // After: the killed node's target down and its series stale (so three left), the term above the one
    // before, and exactly one coordinator again: a survivor.
    let (after, took) = prom.wait("prometheus sees the failover", LIMIT, |t| {
        let s = seen(&prom, t)?;
        let up: Vec<(&str, f64)> = NAMES.iter().map(|n| (*n, s.up.get(*n).copied().unwrap_or(-1.0))).collect();
        if up.iter().any(|(n, v)| *v != if *n == victim { 0.0 } else { 1.0 }) {
            return Err(format!("up is not 0 for {victim} and 1 for the others: {up:?}"));
        }
        if s.is_coordinator.len() != 3 || s.is_coordinator.contains_key(victim) {
            return Err(format!("{victim}'s series are not stale yet: {s:?}"));
        }
        if s.max_term.is_none_or(|m| m <= term) {
            return Err(format!("the term did not rise above {term}: {s:?}"));
        }
        s.coordinator()?;
        Ok(s)
    });
    eprintln!("after ({took:?} after the kill): {after:?}");
    let new_coordinator = after.coordinator().unwrap();
    assert_ne!(new_coordinator, victim);
    assert_eq!(after.sum_coordinator, Some(1.0));
    assert!(after.max_term.unwrap() > before.max_term.unwrap(), "term: before {before:?}, after {after:?}");

    // Prometheus agrees with the survivors themselves: one mesh of three under the node it names.
    let st = mesh.wait_for("the survivors agree", &survivors, LIMIT, |s| one_mesh(s, 3));
    let named = survivors.iter().find(|i| mesh.status(**i).unwrap().role == "coordinator").map(|i| NAMES[*i]);
    assert_eq!(named, Some(new_coordinator.as_str()), "the survivors' coordinator is not the one Prometheus shows");
    eprintln!(
        "failover seen by prometheus {:?} after the kill (survivors settled {st:?}); test took {:?}",
        killed.elapsed(),
        started.elapsed()
    );
}
