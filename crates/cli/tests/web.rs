//! The web page (`GET /`, docs/WEB.md) in a real browser against real nodes: headless Chromium opens node A's
//! page, a message typed into the send box and submitted reaches node B, the page shows it as acknowledged by
//! all, shows the API's error for an empty message, greys out with a "disconnected" banner when A is killed
//! and recovers by itself when A is back. Screenshots go to `target/web-test/`.
//!
//! Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ended by
//! a NUL byte, commands on the child's fd 3 and answers on its fd 4), so no WebSocket client is needed. Plain
//! `chromium --screenshot --virtual-time-budget=…` cannot be used here: the page's open event stream counts
//! as a pending fetch, so virtual time never advances, and without a budget the capture races the page.
//!
//! Needs a `chromium` (or `chromium-browser`, `google-chrome`) in PATH, or its path in `$CHROMIUM`; on Debian
//! and Ubuntu: `apt-get install -y chromium`. Without one this test fails and says so.

mod common;

use base64::Engine as _;
use chatmesh_harness::{Client, MessageView, NodeArgs, NodeProcess, Stdout};
use common::*;
use serde_json::{json, Value};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Generous limits: the test must hold on a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);
const CALL_LIMIT: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------------------------
// Headless Chromium over the DevTools pipe.

fn find_chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "this test needs headless Chromium and found none in PATH (chromium, chromium-browser, google-chrome): \
         install the Debian/Ubuntu package `chromium` (apt-get install -y chromium) or set CHROMIUM=/path/to/chrome"
    );
}

struct Browser {
    child: Child,
    to: File,
    from: Receiver<Value>,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

/// A pipe whose ends are closed on exec (other tests of this process spawn children concurrently).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nothing else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts headless Chromium with a fresh profile and opens one page of 1280×900 CSS pixels.
    fn launch(out: &Path) -> Browser {
        use std::os::fd::AsRawFd;
        let exe = find_chromium();
        let profile = tempfile::tempdir().expect("profile dir");
        let (cmd_r, cmd_w) = pipe(); // we write commands, Chromium reads them on fd 3
        let (ans_r, ans_w) = pipe(); // Chromium writes answers on fd 4, we read them
        let log = File::create(out.join("chromium.log")).expect("chromium log");
        let mut cmd = Command::new(&exe);
        cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
            .args(["--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio"])
            .args(["--disable-background-networking", "--disable-sync", "--remote-debugging-pipe"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--window-size=1280,900", "about:blank"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        die_with_parent(&mut cmd);
        let (r, w) = (cmd_r.as_raw_fd(), ans_w.as_raw_fd());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Move both ends out of the way first, so that neither is overwritten when it already is 3 or 4;
                // dup2 clears close-on-exec on the copies that Chromium keeps.
                let a = libc::fcntl(r, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        drop((cmd_r, ans_w));
        let (tx, rx) = channel();
        let mut ans_r = ans_r;
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            loop {
                let n = match ans_r.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..end]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser { child, to: cmd_w, from: rx, next: 0, session: String::new(), _profile: profile };
        // The first answer comes once Chromium is up: slow on a loaded machine.
        let target = b.call_in(None, "Target.createTarget", json!({ "url": "about:blank" }), LIMIT).expect("a page");
        let target = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b
            .call_in(None, "Target.attachToTarget", json!({ "targetId": target, "flatten": true }), CALL_LIMIT)
            .expect("attach to the page");
        b.session = attached["sessionId"].as_str().expect("sessionId").to_string();
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
        )
        .expect("window size");
        b
    }

    fn call_in(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
        limit: Duration,
    ) -> Result<Value, String> {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).map_err(|e| format!("{method}: Chromium is gone: {e}"))?;
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from.recv_timeout(left) {
                Ok(v) if v["id"] == json!(id) => {
                    return match v.get("error") {
                        Some(e) => Err(format!("{method}: {e}")),
                        None => Ok(v["result"].clone()),
                    };
                }
                Ok(_) => {} // an event or an older answer
                Err(RecvTimeoutError::Timeout) => return Err(format!("{method}: no answer within {limit:?}")),
                Err(RecvTimeoutError::Disconnected) => return Err(format!("{method}: Chromium closed the pipe")),
            }
        }
    }

    /// A command to the page.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let s = self.session.clone();
        self.call_in(Some(&s), method, params, CALL_LIMIT)
    }

    /// Evaluates JavaScript in the page and returns its value.
    fn eval(&mut self, expr: &str) -> Result<Value, String> {
        let r =
            self.call("Runtime.evaluate", json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }))?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(format!("{expr}: {e}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `expr` until it is true; panics with `what`, and the page's state, after `limit`.
    fn wait_js(&mut self, what: &str, expr: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let last = self.eval(expr);
            if matches!(last, Ok(Value::Bool(true))) {
                return start.elapsed();
            }
            if start.elapsed() > limit {
                let state = self.eval(STATE_JS).unwrap_or_else(|e| json!(e));
                panic!("{what}: not within {limit:?} (last: {last:?}); page: {state}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).expect("navigate");
    }

    /// Clicks the middle of the element `selector`, as a mouse would.
    fn click(&mut self, selector: &str) {
        let js = format!(
            "(() => {{ const r = document.querySelector({}).getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()",
            json!(selector)
        );
        let at = self.eval(&js).expect("element position");
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .expect("mouse event");
        }
    }

    /// Saves a PNG of the page (retried: a capture can time out on a loaded machine).
    fn screenshot(&mut self, path: &Path) {
        let mut last = String::new();
        for _ in 0..3 {
            match self.call("Page.captureScreenshot", json!({ "format": "png" })) {
                Ok(r) => {
                    let data = r["data"].as_str().unwrap_or_default();
                    let png = base64::engine::general_purpose::STANDARD.decode(data).expect("the screenshot is base64");
                    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is not a PNG");
                    std::fs::write(path, png).expect("write the screenshot");
                    println!("screenshot: {}", path.display());
                    return;
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("no screenshot: {last}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let s = self.session.clone();
        let _ = self.call_in(Some(&s), "Browser.close", json!({}), Duration::from_secs(2));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the page shows, for failure messages.
const STATE_JS: &str = "({ conn: document.body.dataset.conn, name: document.getElementById('h-name').textContent, \
    role: document.getElementById('h-role').textContent, \
    banner: document.getElementById('banner-text').textContent + ' ' + document.getElementById('banner-detail').textContent, \
    error: document.getElementById('send-error').textContent, \
    chat: [...document.querySelectorAll('#chat .msg')].slice(-6).map(e => e.textContent) })";

// ---------------------------------------------------------------------------------------------------------
// A node on a fixed HTTP port, so that the page can find it again after a restart.

struct FixedNode(NodeProcess);

impl FixedNode {
    fn start(mesh: &Mesh, name: &str, http: u16) -> FixedNode {
        let data_dir = mesh.dir.path().join(name);
        let mut args = NodeArgs::loopback(Path::new(BIN), name, &mesh.mesh, &mesh.group, &data_dir, &mesh.logs());
        args.http = format!("127.0.0.1:{http}");
        args.stdout = Stdout::Null;
        FixedNode(NodeProcess::spawn(args).expect("start chatmesh"))
    }

    /// Starts it and waits for its API (started again if the port was not free yet).
    fn start_and_wait(mesh: &Mesh, name: &str, http: u16) -> FixedNode {
        let api = client(mesh, http);
        let start = Instant::now();
        loop {
            let mut node = FixedNode::start(mesh, name, http);
            loop {
                if api.status().is_ok_and(|s| s.name == name) {
                    return node;
                }
                if node.0.has_exited() {
                    assert!(start.elapsed() < LIMIT, "{name} cannot start on port {http}");
                    break;
                }
                assert!(start.elapsed() < LIMIT, "{name} does not answer on port {http}");
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn kill(&mut self) {
        self.0.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The control API of the node on `127.0.0.1:{port}`.
fn client(mesh: &Mesh, port: u16) -> Client {
    Client::new(mesh.agent(), &format!("127.0.0.1:{port}"))
}

fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> Result<(), String>) -> Duration {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return start.elapsed(),
            Err(e) if start.elapsed() > limit => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn has_text(history: &[MessageView], text: &str) -> bool {
    history.iter().any(|m| m.text == text)
}

/// `target/web-test/`, next to the binary's profile directory.
fn out_dir() -> PathBuf {
    let target = Path::new(BIN).parent().and_then(Path::parent).expect("target directory");
    let dir = target.join("web-test");
    std::fs::create_dir_all(&dir).expect("create target/web-test");
    dir
}

#[test]
fn the_page_sends_shows_delivery_and_recovers_from_a_lost_node() {
    let out = out_dir();
    find_chromium(); // fail first, and clearly, without a browser
    let mut mesh = Mesh::new("web");
    let port = free_port();
    let a_api = client(&mesh, port);
    let a_url = a_api.url("");
    let mut a = FixedNode::start_and_wait(&mesh, "a", port);
    std::thread::sleep(Duration::from_millis(100));
    let b = mesh.start("b", &[], &[]);
    let b_api = mesh.client(b);
    wait_until("one mesh of a and b", LIMIT, || one_mesh(&[a_api.status()?, b_api.status()?], 2));

    // The page comes from the binary.
    let page = mesh.agent().get(&format!("{a_url}/")).call().expect("GET /");
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let html = page.into_string().unwrap();
    assert!(html.contains("new EventSource('/events')"), "the page listens to the event stream");
    for outside in ["src=\"http", "href=\"http", "url(http", "@import", "src=\"//", "href=\"//"] {
        assert!(!html.contains(outside), "the page fetches nothing from outside the node ({outside})");
    }

    let mut browser = Browser::launch(&out);
    browser.navigate(&format!("{a_url}/"));
    let took = browser.wait_js("the page connects", "document.body.dataset.conn === 'connected'", LIMIT);
    eprintln!("page live after {took:?}");
    browser.wait_js(
        "the header and the graph show the mesh",
        "document.getElementById('h-name').textContent === 'a' \
         && document.querySelectorAll('#graph [data-member]').length === 2 \
         && document.querySelector('#graph [data-member] title') !== null",
        LIMIT,
    );

    // Type into the send box and press the Send button.
    let text = "hello from the page ✓";
    browser.eval("document.getElementById('text').focus()").unwrap();
    browser.call("Input.insertText", json!({ "text": text })).expect("type");
    browser.click("#send-btn");
    let took = wait_until("the message typed on a's page reaches b", LIMIT, || {
        let h = b_api.history()?;
        if has_text(&h, text) {
            Ok(())
        } else {
            Err(format!("b holds {} messages", h.len()))
        }
    });
    eprintln!("typed message on b after {took:?}");
    // On a's page: the message, acknowledged by all (b), and the box emptied.
    let row = format!(
        "[...document.querySelectorAll('#chat .msg.own')].some(r => r.querySelector('.body').textContent === {} \
         && r.querySelector('.dlv.all') !== null) && document.getElementById('text').value === ''",
        json!(text)
    );
    browser.wait_js("the page shows the message as delivered to all (✓✓)", &row, LIMIT);
    // The chat is in a's canonical order.
    wait_until("the page shows a's history in its order", LIMIT, || {
        let h = a_api.history()?;
        let want: Vec<&str> = h.iter().map(|m| m.id.as_str()).collect();
        let shown = browser.eval("[...document.querySelectorAll('#chat .msg')].map(r => r.dataset.id)")?;
        let shown: Vec<&str> = shown.as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        if shown == want {
            Ok(())
        } else {
            Err(format!("page {shown:?} vs /history {want:?}"))
        }
    });

    // The API's error text shows for an empty message.
    browser.click("#send-btn");
    browser.wait_js(
        "the page shows the node's error for an empty message",
        "document.getElementById('send-error').textContent.includes('empty message')",
        LIMIT,
    );
    browser.eval("document.getElementById('send-error').textContent = ''").unwrap();
    browser.screenshot(&out.join("screenshot.png"));

    // The node goes away: the page says so, greyed, and keeps retrying.
    a.kill();
    browser.wait_js(
        "the page shows the disconnected banner",
        "document.body.dataset.conn === 'disconnected' && document.body.classList.contains('offline') \
         && getComputedStyle(document.getElementById('banner')).display !== 'none'",
        LIMIT,
    );
    browser.screenshot(&out.join("disconnected.png"));
    let away = "sent while a was away";
    mesh.send(b, away);

    // a comes back on the same address: the page recovers by itself and reloads what it missed.
    let _a2 = FixedNode::start_and_wait(&mesh, "a", port);
    let took = browser.wait_js("the page reconnects", "document.body.dataset.conn === 'connected'", LIMIT);
    eprintln!("page live again after {took:?}");
    browser.wait_js(
        "the page shows the message sent while a was away",
        &format!(
            "[...document.querySelectorAll('#chat .msg .body')].some(e => e.textContent === {}) \
             && !document.body.classList.contains('offline')",
            json!(away)
        ),
        LIMIT,
    );
    browser.wait_js(
        "the timeline tells of the lost and recovered connection",
        "['LOST', 'BACK'].every(t => [...document.querySelectorAll('#timeline .tag')].some(e => e.textContent === t))",
        LIMIT,
    );
    browser.screenshot(&out.join("reconnected.png"));
}
