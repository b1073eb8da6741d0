//! `chatmesh bench --quick --json`: every scenario runs on real processes on loopback, completes, and
//! reports numbers. (The figures of a quick run are not compared with the goals: that is docs/BENCHMARKS.md.)

use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCENARIOS: [&str; 7] = ["failover", "join", "latency", "throughput", "converge", "scale", "memory"];

/// Figures every quick run must report, per scenario.
const FIGURES: [(&str, &[&str]); 7] = [
    ("failover", &["kill_p50_ms", "kill_p99_ms", "stop_p99_ms", "loaded_elections"]),
    ("join", &["id_p50_ms", "id_p99_ms", "sync_small_p50_ms", "sync_large_p50_ms"]),
    ("latency", &["n4_r10_delivered_p99_ms", "n4_r1000_delivered_p99_ms", "n4_r1000_acked_p99_ms"]),
    (
        "throughput",
        &["sustained_msgs_per_s", "closed_loop_msgs_per_s", "cpu_us_per_msg_saturated", "sustained_msgs_per_s_batched"],
    ),
    ("converge", &["converge_p50_ms", "merge_p50_ms"]),
    ("scale", &["largest_stable", "rss_mib", "cpu_percent"]),
    ("memory", &["idle_peak_rss_mib", "large_restarted_peak_rss_mib", "large_newcomer_peak_rss_mib"]),
];

#[test]
fn quick_bench_reports_every_scenario_with_numbers() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatmesh"));
    cmd.args(["bench", "--quick", "--json"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("CHATMESH_") {
            cmd.env_remove(k);
        }
    }
    chatmesh_harness::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().expect("start chatmesh bench");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // The quick suite takes about two minutes; a loaded CI machine gets a generous margin.
    let limit = Duration::from_secs(600);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > limit {
            // SIGTERM first: the bench stops its nodes and removes their data.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    eprintln!("{err}");
    let status = status.unwrap_or_else(|| panic!("chatmesh bench --quick did not finish within {limit:?}"));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{out}"));
    assert!(status.success(), "chatmesh bench --quick failed ({status}):\n{out}");
    assert_eq!(v["quick"], true);
    assert!(v["machine"]["nproc"].as_u64().unwrap_or(0) >= 1, "machine: {}", v["machine"]);
    for s in SCENARIOS {
        let sc = &v["scenarios"][s];
        assert!(sc.is_object(), "scenario {s} missing:\n{out}");
        assert_eq!(sc["errors"].as_array().map(|e| e.len()), Some(0), "{s} reported errors: {}", sc["errors"]);
        let figures = sc["figures"].as_object().unwrap_or_else(|| panic!("{s}: no figures"));
        assert!(!figures.is_empty(), "{s}: no figures");
        let table = sc["table"].as_array().unwrap_or_else(|| panic!("{s}: no table"));
        assert_eq!(table.len(), figures.len(), "{s}: table and figures differ");
        for row in table {
            assert!(row["label"].as_str().is_some_and(|l| !l.is_empty()), "{s}: a figure without a label: {row}");
            if let Some(goal) = row.get("goal") {
                assert!(goal["limit"].is_number(), "{s}: a goal without a limit: {row}");
            }
        }
    }
    for (s, keys) in FIGURES {
        for k in keys {
            let x = &v["scenarios"][s]["figures"][k];
            assert!(x.as_f64().is_some_and(|x| x.is_finite() && x >= 0.0), "{s}.{k} is not a number: {x}\n{out}");
        }
    }
    // A few figures that must be positive whatever the machine.
    for (s, k) in [
        ("failover", "kill_p50_ms"),
        ("join", "id_p50_ms"),
        ("latency", "n4_r1000_delivered_p99_ms"),
        ("throughput", "closed_loop_msgs_per_s"),
        ("throughput", "closed_loop_msgs_per_s_batched"),
        ("converge", "converge_p50_ms"),
        ("scale", "largest_stable"),
        ("memory", "idle_peak_rss_mib"),
    ] {
        assert!(v["scenarios"][s]["figures"][k].as_f64().unwrap() > 0.0, "{s}.{k} is zero");
    }
}
