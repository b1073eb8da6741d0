//! Bad input of every kind from outside: flags, config, key files, ports, data directories, API requests,
//! stdin lines. Each gets one clear line; usage errors exit 2; nothing panics; the node keeps running where
//! it can.

mod common;

use common::*;
use std::io::Write;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn node_args<'a>(dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--ui", "json", "--iface", "127.0.0.1", "--listen", "127.0.0.1:0", "--data-dir", dir];
    a.extend_from_slice(extra);
    a
}

fn usage_error(args: &[&str], env: &[(&str, &str)], expect: &str) {
    let (code, out, err) = run_cli(args, env, T);
    assert_eq!(code, Some(2), "{args:?}: exit {code:?}\nstdout: {out}\nstderr: {err}");
    assert!(err.contains(expect), "{args:?}: stderr does not say {expect:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    // One line from us; clap adds its usage line and a pointer to --help.
    assert!(err.lines().filter(|l| !l.trim().is_empty()).count() <= 3, "one clear line, not a wall: {err}");
}

#[test]
fn bad_flags_and_values_are_usage_errors() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    usage_error(&node_args(dir, &["--frobnicate"]), &[], "unexpected argument");
    usage_error(&node_args(dir, &["--group", "10.0.0.1:7777"]), &[], "not a multicast address");
    usage_error(&node_args(dir, &["--group", "nonsense"]), &[], "--group");
    usage_error(&node_args(dir, &["--group", "239.255.77.77:0"]), &[], "port");
    usage_error(&["--ui", "json", "--data-dir", dir, "--iface", "eth0"], &[], "not an IPv4 address");
    usage_error(&node_args(dir, &["--http", "nowhere"]), &[], "--http");
    usage_error(&node_args(dir, &["--peer", "no-port"]), &[], "--peer");
    usage_error(&["--data-dir", dir, "--ui", "fancy"], &[], "invalid value");
    usage_error(&node_args(dir, &["--log", "loud"]), &[], "invalid value");
    usage_error(&node_args(dir, &["--name", ""]), &[], "must not be empty");
    usage_error(&node_args(dir, &["--name", &"x".repeat(65)]), &[], "limit is 64");
    usage_error(&["demo", "--nodes", "2"], &[], "2 is not in 4..=8");
}

#[test]
fn bad_keys_and_config_files_are_usage_errors() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let missing = d.path().join("missing.key");
    usage_error(
        &node_args(dir, &["--network-key-file", missing.to_str().unwrap()]),
        &[],
        "cannot read the network key file",
    );
    let empty = d.path().join("empty.key");
    std::fs::write(&empty, "\n").unwrap();
    usage_error(&node_args(dir, &["--network-key-file", empty.to_str().unwrap()]), &[], "is empty");
    usage_error(&node_args(dir, &[]), &[("CHATMESH_NETWORK_KEY", "  ")], "CHATMESH_NETWORK_KEY is empty");
    let cfg = d.path().join("bad.toml");
    std::fs::write(&cfg, "name = \"x\"\ncolour = \"blue\"\n").unwrap();
    usage_error(&node_args(dir, &["--config", cfg.to_str().unwrap()]), &[], "unknown field");
    std::fs::write(&cfg, "name = [1, 2\n").unwrap();
    usage_error(&node_args(dir, &["--config", cfg.to_str().unwrap()]), &[], "bad.toml");
    usage_error(&node_args(dir, &["--config", "/nonexistent/chatmesh.toml"]), &[], "cannot read the config file");
    // Environment values are checked like flags.
    usage_error(&node_args(dir, &[]), &[("CHATMESH_GROUP", "1.2.3.4:5")], "not a multicast address");
}

#[test]
fn flags_beat_environment_which_beats_the_config_file() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, "name = \"from-file\"\nmesh = \"file-mesh\"\n").unwrap();
    let dir = d.path().join("data");
    let (dir_s, cfg_s) = (dir.to_str().unwrap(), cfg.to_str().unwrap());
    let ready = |args: &[&str], env: &[(&str, &str)]| {
        // SIGTERM after start: the ready line comes first.
        let (_, out, _) = run_cli(args, env, Duration::from_millis(1500));
        let line = out.lines().next().unwrap_or_default().to_string();
        serde_json::from_str::<serde_json::Value>(&line).unwrap_or_else(|_| panic!("no ready line: {out}"))
    };
    let base = ["--ui", "json", "--iface", "127.0.0.1", "--listen", "127.0.0.1:0", "--group", "239.255.77.77:47311"];
    let mut args = base.to_vec();
    args.extend(["--config", cfg_s, "--data-dir", dir_s]);
    assert_eq!(ready(&args, &[])["name"], "from-file");
    assert_eq!(ready(&args, &[("CHATMESH_NAME", "from-env")])["name"], "from-env");
    let mut flagged = args.clone();
    flagged.extend(["--name", "from-flag"]);
    assert_eq!(ready(&flagged, &[("CHATMESH_NAME", "from-env")])["name"], "from-flag");
}

#[test]
fn an_occupied_port_and_an_unusable_data_directory_are_one_clear_line() {
    let d = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let dir = d.path().join("a");
    let args = ["--ui", "json", "--iface", "127.0.0.1", "--listen", &listen, "--data-dir", dir.to_str().unwrap()];
    let (code, _, err) = run_cli(&args, &[], T);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("already in use"), "{err}");

    // A multicast group that cannot be joined: the interface address is not this machine's.
    let dir = d.path().join("nojoin");
    let args =
        ["--ui", "json", "--iface", "192.0.2.77", "--listen", "127.0.0.1:0", "--data-dir", dir.to_str().unwrap()];
    let (code, _, err) = run_cli(&args, &[], T);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot join multicast group") && err.contains("--iface"), "{err}");

    // A data directory that is a file.
    let file = d.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let args =
        ["--ui", "json", "--iface", "127.0.0.1", "--listen", "127.0.0.1:0", "--data-dir", file.to_str().unwrap()];
    let (code, _, err) = run_cli(&args, &[], T);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot use the data directory"), "{err}");

    // A database that is not ChatMesh's.
    let foreign = d.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("chatmesh.db"), vec![0x42u8; 8192]).unwrap();
    let args =
        ["--ui", "json", "--iface", "127.0.0.1", "--listen", "127.0.0.1:0", "--data-dir", foreign.to_str().unwrap()];
    let (code, _, err) = run_cli(&args, &[], T);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("chatmesh.db"), "{err}");

    // The same data directory twice at once.
    let mut mesh = Mesh::new("lock");
    mesh.start("twice", &[], &[]);
    mesh.status(0).unwrap();
    let dir = mesh.nodes[0].data_dir.to_str().unwrap().to_string();
    let args = ["--ui", "json", "--iface", "127.0.0.1", "--listen", "127.0.0.1:0", "--data-dir", &dir];
    let (code, _, err) = run_cli(&args, &[], T);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("in use by another chatmesh process"), "{err}");

    // An occupied --http port: the node runs on without the API.
    let http = format!("127.0.0.1:{port}");
    let dir = d.path().join("b");
    let args = [
        "--ui",
        "json",
        "--iface",
        "127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--http",
        &http,
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    let (code, out, err) = run_cli(&args, &[], Duration::from_millis(1500));
    assert_eq!(code, None, "still running when stopped: {err}");
    assert!(err.contains("already in use") && err.contains("without the control API"), "{err}");
    let ready = out.lines().any(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["type"] == "ready"));
    assert!(ready, "{out}");
}

#[test]
fn bad_api_requests_get_json_errors_and_change_nothing() {
    let mut mesh = Mesh::new("api");
    mesh.start("api1", &[], &[]);
    mesh.wait_for("founded", &[0], T, |s| one_mesh(s, 1));
    let base = format!("http://{}", mesh.http(0));
    let before = mesh.status(0).unwrap().history;
    let post = |body: &str, ctype: &str| match mesh
        .agent()
        .post(&format!("{base}/messages"))
        .set("Content-Type", ctype)
        .send_string(body)
    {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    };
    for (body, ctype, code) in [
        ("not json", "application/json", 400),
        ("{\"text\": 5}", "application/json", 422),
        ("{\"txt\": \"hi\"}", "application/json", 422),
        ("{\"text\": \"hi\"}", "text/plain", 415),
        ("{\"text\": \"   \"}", "application/json", 400),
    ] {
        let (got, reply) = post(body, ctype);
        assert_eq!(got, code, "{body}: {reply}");
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_else(|_| panic!("not JSON: {reply}"));
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{reply}");
    }
    let long = serde_json::json!({ "text": "x".repeat(16 * 1024 + 1) }).to_string();
    let (got, reply) = post(&long, "application/json");
    assert_eq!(got, 422, "{reply}");
    assert!(reply.contains("size limit"), "{reply}");
    let huge = serde_json::json!({ "text": "x".repeat(80_000) }).to_string();
    assert_eq!(post(&huge, "application/json").0, 413);
    let batch = |body: &str| match mesh
        .agent()
        .post(&format!("{base}/messages/batch"))
        .set("Content-Type", "application/json")
        .send_string(body)
    {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    };
    let long = "x".repeat(16 * 1024 + 1);
    let many = serde_json::json!({ "texts": vec!["a"; 1001] }).to_string();
    let big = serde_json::json!({ "texts": vec!["y".repeat(16_000); 70] }).to_string();
    for (body, code, says) in [
        ("not json".to_string(), 400, "texts"),
        ("{\"text\": \"hi\"}".to_string(), 422, "texts"),
        ("{\"texts\": \"hi\"}".to_string(), 422, "texts"),
        ("{\"texts\": []}".to_string(), 400, "at least one"),
        ("{\"texts\": [\"a\", \" \"]}".to_string(), 400, "texts[1]: empty"),
        (serde_json::json!({ "texts": ["a", "b", long] }).to_string(), 422, "texts[2]: message refused: body over"),
        (many, 413, "at most 1000"),
        (big, 413, ""),
    ] {
        let (got, reply) = batch(&body);
        assert_eq!(got, code, "{}: {reply}", &body[..body.len().min(60)]);
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_else(|_| panic!("not JSON: {reply}"));
        assert!(v["error"].as_str().is_some_and(|e| e.contains(says)), "{reply}");
    }
    match mesh.agent().get(&format!("{base}/nope")).call() {
        Err(ureq::Error::Status(404, r)) => assert!(r.into_string().unwrap().contains("no such endpoint")),
        other => panic!("{other:?}"),
    }
    match mesh.agent().get(&format!("{base}/history?limit=-3")).call() {
        Err(ureq::Error::Status(400, _)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(mesh.status(0).unwrap().history, before, "nothing was stored");
    // And it still works.
    mesh.send(0, "fine");
    let h = mesh.history(0);
    assert_eq!(h.last().unwrap().text, "fine");
    let (got, reply) = batch("{\"texts\": [\"one\", \"two\", \"three\"]}");
    assert_eq!(got, 201, "{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let texts: Vec<&str> = v["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    let h = mesh.history(0);
    let last: Vec<&str> = h[h.len() - 3..].iter().map(|m| m.text.as_str()).collect();
    assert_eq!(last, ["one", "two", "three"], "stored in order");
    // Batches are allowed far more than a single message's 64 KiB request.
    let (got, reply) = batch(&serde_json::json!({ "texts": vec!["z".repeat(16_000); 40] }).to_string());
    assert_eq!(got, 201, "{}", &reply[..reply.len().min(200)]);
    let metrics = mesh.agent().get(&format!("{base}/metrics")).call().unwrap().into_string().unwrap();
    assert!(metrics.contains("chatmesh_term"), "{metrics}");
}

#[test]
fn bad_stdin_lines_are_answered_and_the_node_keeps_running() {
    let d = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["--ui", "json", "--iface", "127.0.0.1", "--listen", "127.0.0.1:0", "--group", "239.255.77.77:47312"])
        .arg("--data-dir")
        .arg(d.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let long = "y".repeat(16 * 1024 + 1);
    for line in [
        "/frobnicate",
        "/history zero",
        "   ",
        &long,
        "/nick",
        "\u{0}\u{1}binary\u{7f}",
        "a real message",
        "/digest",
        "/quit",
    ] {
        writeln!(stdin, "{line}").unwrap();
    }
    let mut bytes = vec![0xffu8, 0xfe, b'\n'];
    bytes.extend_from_slice(b"/status\n");
    let _ = stdin.write_all(&bytes);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let errors: Vec<&str> =
        events.iter().filter(|e| e["type"] == "error").filter_map(|e| e["error"].as_str()).collect();
    assert!(errors.iter().any(|e| e.contains("unknown command /frobnicate")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("positive number")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("the limit is 16384")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("usage: /nick")), "{errors:?}");
    let texts: Vec<&str> =
        events.iter().filter(|e| e["type"] == "message").filter_map(|e| e["text"].as_str()).collect();
    assert!(texts.contains(&"a real message"), "{texts:?}");
    assert!(events.iter().any(|e| e["type"] == "reply" && e["digest"].is_string()), "{stdout}");
    assert!(events.iter().any(|e| e["type"] == "stopped"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// A node in a pipe whose writer never closes (a supervisor, `sleep | chatmesh`) still stops on SIGTERM.
#[test]
fn sigterm_stops_a_line_mode_node_whose_stdin_stays_open() {
    let d = tempfile::tempdir().unwrap();
    for signal in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args([
            "--ui",
            "plain",
            "--iface",
            "127.0.0.1",
            "--listen",
            "127.0.0.1:0",
            "--group",
            "239.255.77.77:47313",
        ])
        .arg("--data-dir")
        .arg(d.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let _stdin = child.stdin.take().unwrap(); // held open for the whole test
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "signal {signal}: still running");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "signal {signal}");
    }
}
