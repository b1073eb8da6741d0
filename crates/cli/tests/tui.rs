//! The TUI as a person uses it (issue 21): the real `chatmesh` binary in a pseudo-terminal (a private tmux
//! server per test, a fixed size, the node run from a plain shell in the pane), keys sent with `send-keys`,
//! the screen read with `capture-pane`; what the other members received is read from their control API.
//!
//! Needs `tmux` (the Debian package `tmux`; `./test.sh` installs it).

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);
/// The shell prompt in the pane (so that the tests can tell the shell from the TUI).
const PROMPT: &str = "tuitest$ ";

// ---------------------------------------------------------------------------------------------------------------
// tmux plumbing.

/// A private tmux server (its own socket, no config file) with one session `t` of one pane running
/// `bash --norc --noprofile`; the server is killed when this is dropped.
struct Tmux {
    dir: tempfile::TempDir,
    sock: PathBuf,
}

fn require_tmux() {
    match Command::new("tmux").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "the TUI tests drive the real binary in tmux, which is not installed here: install the Debian \
             package `tmux` (apt-get install tmux), or run ./test.sh, which installs it"
        ),
    }
}

impl Tmux {
    fn new(width: u16, height: u16) -> Tmux {
        require_tmux();
        let dir = tempfile::tempdir().expect("temp dir");
        let sock = dir.path().join("tmux.sock");
        let t = Tmux { dir, sock };
        let (w, h) = (width.to_string(), height.to_string());
        t.ok(&[
            "start-server",
            ";",
            "set",
            "-g",
            "default-terminal",
            "tmux-256color",
            ";",
            "set",
            "-g",
            "history-limit",
            "100",
            ";",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &w,
            "-y",
            &h,
            &format!("env 'PS1={PROMPT}' bash --norc --noprofile"),
        ]);
        t.wait_for("the shell prompt", Duration::from_secs(10), |s| s.contains(PROMPT.trim_end()));
        t
    }

    fn cmd(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.sock).args(["-f", "/dev/null"]).args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("CHATMESH_") || k == "TMUX" || k == "TMUX_PANE" {
                cmd.env_remove(k);
            }
        }
        cmd.output().expect("run tmux")
    }

    /// Runs a tmux command that must succeed; returns its output.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(o.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Keys by tmux's names (`Enter`, `C-w`, `M-f`, `Home`, `PageUp`...).
    fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.ok(&args);
    }

    /// Text typed as it is.
    fn send_literal(&self, text: &str) {
        self.ok(&["send-keys", "-t", "t", "-l", "--", text]);
    }

    /// The visible screen, one line per row (trailing spaces trimmed by tmux).
    fn capture(&self) -> String {
        self.ok(&["capture-pane", "-p", "-t", "t"])
    }

    /// A tmux format of the pane (`#{pane_tty}`, `#{cursor_x}`, `#{alternate_on}`...).
    fn display(&self, format: &str) -> String {
        self.ok(&["display-message", "-p", "-t", "t", format]).trim_end().to_string()
    }

    /// Polls the screen until `check` holds; panics with the last screen after `limit`.
    fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if check(&screen) {
                return screen;
            }
            if start.elapsed() > limit {
                panic!("{what}: not within {limit:?}; the screen:\n{}", framed(&screen));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pane's terminal settings, as `stty -a` prints them.
    fn stty(&self) -> String {
        let tty = self.display("#{pane_tty}");
        let o = Command::new("stty").args(["-a", "-F", &tty]).output().expect("run stty");
        assert!(o.status.success(), "stty -a -F {tty}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
        let _ = &self.dir;
    }
}

/// A screen with a frame, so that a failure message shows where its rows end.
fn framed(screen: &str) -> String {
    screen.lines().map(|l| format!("|{l}\n")).collect()
}

/// Whether `stty -a` output has the flag (`icanon`) set (`-icanon` is unset).
fn has_flag(stty: &str, flag: &str) -> bool {
    stty.split(|c: char| c.is_whitespace() || c == ';').any(|w| w == flag)
}

/// Whether the shell has the terminal: its prompt is the last non-empty row.
fn shell_prompt(screen: &str) -> bool {
    screen.lines().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with(PROMPT.trim_end()))
}

/// The last row of the screen: the input line.
fn input_row(screen: &str) -> String {
    screen.lines().last().unwrap_or("").to_string()
}

/// Whether the screen looks like the whole TUI: the status line of this node and the input prompt.
fn tui_whole(screen: &str, name: &str) -> bool {
    let rows: Vec<&str> = screen.lines().collect();
    let n = rows.len();
    n >= 2
        && rows[n - 2].contains(&format!("me: {name}"))
        && rows[n - 1].starts_with("> ")
        && rows[0].starts_with('┌')
        && !screen.contains(PROMPT.trim_end())
        && !screen.contains("Stopped")
}

// ---------------------------------------------------------------------------------------------------------------
// A TUI node in the mesh.

/// A `chatmesh --ui tui` node in a tmux pane, joined to the harness's mesh.
struct Tui {
    tmux: Tmux,
    name: String,
    data_dir: PathBuf,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Tui {
    /// Starts the TUI node `name` in a fresh `width`x`height` pane, with the same mesh, group and flags as the
    /// harness gives its nodes, from the pane's shell (a job of it: Ctrl-Z and `fg` work). Waits until its
    /// status line shows it is a member.
    fn start(mesh: &Mesh, name: &str, width: u16, height: u16) -> Tui {
        let tmux = Tmux::new(width, height);
        let data_dir = mesh.dir.path().join(name);
        let logs = mesh.logs();
        let line = format!(
            "{} --ui tui --name {} --mesh {} --group {} --iface 127.0.0.1 --listen 127.0.0.1:0 --http 127.0.0.1:0 \
             --log debug --data-dir {} --log-dir {}",
            quote(BIN),
            quote(name),
            quote(&mesh.mesh),
            quote(&mesh.group),
            quote(&data_dir.display().to_string()),
            quote(&logs.display().to_string()),
        );
        tmux.send_literal(&line);
        tmux.send_keys(&["Enter"]);
        let tui = Tui { tmux, name: name.to_string(), data_dir };
        let me = format!("me: {name} #");
        tui.tmux.wait_for("the TUI shows it is a member", LIMIT, |s| s.contains(&me) && !s.contains("discovering"));
        tui
    }

    /// The pid of the node's process (found by its data directory on its command line).
    fn pid(&self) -> Option<u32> {
        let needle = self.data_dir.display().to_string();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let args: Vec<String> =
                cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            if args.first().is_some_and(|a| a.ends_with("chatmesh"))
                && args.contains(&needle)
                && state(pid).is_some_and(|s| s != 'Z')
            {
                return Some(pid);
            }
        }
        None
    }

    fn screen(&self) -> String {
        self.tmux.capture()
    }

    /// Types a line and Enter.
    fn type_line(&self, text: &str) {
        self.tmux.send_literal(text);
        self.tmux.send_keys(&["Enter"]);
    }

    fn wait_whole(&self, what: &str) -> String {
        self.tmux.wait_for(what, LIMIT, |s| tui_whole(s, &self.name))
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        // The node is not left running after the test (the tmux server is killed next).
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGKILL);
        }
    }
}

/// A process's state letter (`R`, `S`, `T`, `Z`...), if it exists.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on the node's own pid.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill {sig} {pid}");
}

fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if start.elapsed() > limit => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The texts of the chat messages by `author` in node `i`'s history.
fn texts_by(mesh: &Mesh, i: usize, author: &str) -> Vec<String> {
    mesh.history(i)
        .into_iter()
        .filter(|m| m.kind == "text" && m.author_name.as_deref() == Some(author))
        .map(|m| m.text)
        .collect()
}

/// Waits until node `i` holds a message by `author` for which `check` holds; returns its text.
fn wait_received(mesh: &Mesh, i: usize, author: &str, check: impl Fn(&str) -> bool) -> String {
    let mut found = None;
    wait_until(&format!("node {i} receives the message of {author}"), LIMIT, || {
        let texts = texts_by(mesh, i, author);
        found = texts.iter().find(|t| check(t)).cloned();
        found.as_ref().map(|_| ()).ok_or_else(|| {
            let shown: Vec<String> = texts
                .iter()
                .map(|t| if t.len() > 80 { format!("{}… ({} bytes)", &t[..80], t.len()) } else { t.clone() })
                .collect();
            format!("its messages by {author}: {shown:?}")
        })
    });
    found.unwrap()
}

/// A mesh of the harness's nodes `others` (the first founds it) and a TUI node `me` at `width`x`height`.
fn mesh_with_tui(test: &str, others: &[&str], width: u16, height: u16) -> (Mesh, Vec<usize>, Tui) {
    let mut mesh = Mesh::new(test);
    let mut ids = Vec::new();
    for (k, name) in others.iter().enumerate() {
        ids.push(mesh.start(name, &[], &[]));
        mesh.wait_for("the mesh forms", &ids, LIMIT, |s| one_mesh(s, k + 1));
    }
    let tui = Tui::start(&mesh, "tuiuser", width, height);
    mesh.wait_for("the TUI node joins", &ids, LIMIT, |s| one_mesh(s, others.len() + 1));
    (mesh, ids, tui)
}

// ---------------------------------------------------------------------------------------------------------------
// The tests.

/// The tests, in a module of their own so that `--skip pty::` leaves them out where tmux cannot be installed.
mod pty {
    use super::*;

    #[test]
    fn a_fast_burst_of_5000_characters_is_sent_whole() {
        let (mesh, ids, tui) = mesh_with_tui("tui-burst", &["ana"], 120, 35);
        let mut text = String::new();
        let mut k = 0;
        while text.len() < 5000 {
            k += 1;
            text.push_str(&format!("w{k:04}.xyz "));
        }
        text.truncate(4999);
        text.push('!');
        assert_eq!(text.chars().count(), 5000);
        // Chunks of 250 characters, one send-keys each, no delay.
        let chars: Vec<char> = text.chars().collect();
        for chunk in chars.chunks(250) {
            tui.tmux.send_literal(&chunk.iter().collect::<String>());
        }
        tui.tmux.send_keys(&["Enter"]);
        let start = Instant::now();
        let mut got = Vec::new();
        while start.elapsed() < LIMIT {
            got = texts_by(&mesh, ids[0], "tuiuser");
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if got.is_empty() {
            let screen = tui.screen();
            // The input line scrolls sideways: its visible end tells how far the typing got.
            let row = input_row(&screen);
            let tail: String = row.trim_end().chars().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            let reached = text.find(&tail).map(|i| i + tail.len());
            panic!(
            "the 5,000 typed characters and Enter sent nothing within {LIMIT:?}; the input line stops at character \
             {reached:?}; the screen:\n{}",
            framed(&screen)
        );
        }
        assert_eq!(got.len(), 1, "one message");
        assert_eq!(got[0].len(), text.len(), "the message's length");
        assert_eq!(got[0], text);
    }

    #[test]
    fn sigstop_and_sigcont_leave_a_working_screen() {
        // A `kill -STOP` from outside, as a job of the pane's shell: the shell sees its job stop, takes the
        // terminal back (cooked mode, its `Stopped` line and prompt over the screen). Then `kill -CONT` from
        // outside and `fg` (the shell gives the terminal back and continues it). (The node cannot be the pane's
        // own process: tmux continues a pane's process that stops at once.)
        let (mesh, ids, tui) = mesh_with_tui("tui-sigstop", &["ana"], 120, 35);
        let pid = tui.pid().expect("the node's pid");
        signal(pid, libc::SIGSTOP);
        tui.tmux.wait_for("the shell reports its job stopped", LIMIT, |s| s.contains("Stopped") && shell_prompt(s));
        assert_eq!(state(pid), Some('T'), "the node is stopped");
        signal(pid, libc::SIGCONT);
        tui.type_line("fg");
        let screen = tui.wait_whole("after SIGCONT and fg the screen is whole again (status line, `> `, no leftovers)");
        assert!(!screen.contains("fg"), "leftovers of the shell on the screen:\n{}", framed(&screen));
        wait_until("raw mode again after SIGCONT", Duration::from_secs(10), || {
            let stty = tui.tmux.stty();
            if has_flag(&stty, "-icanon") {
                Ok(())
            } else {
                Err(format!("stty -a: {stty}\nthe screen:\n{}", framed(&tui.screen())))
            }
        });
        mesh.wait_for("the node is a member again", &ids, LIMIT, |s| one_mesh(s, 2));
        tui.type_line("after the stop");
        wait_received(&mesh, ids[0], "tuiuser", |t| t == "after the stop");
        tui.tmux.wait_for("the TUI shows the message sent", LIMIT, |s| s.contains("tuiuser#2: after the stop"));
    }

    #[test]
    fn ctrl_z_suspends_and_fg_resumes() {
        let (mesh, ids, tui) = mesh_with_tui("tui-ctrlz", &["ana"], 120, 35);
        tui.tmux.send_keys(&["C-z"]);
        let screen = tui.tmux.wait_for("Ctrl-Z gives the shell its prompt back", Duration::from_secs(10), shell_prompt);
        assert_eq!(tui.tmux.display("#{alternate_on}"), "0", "the alternate screen is left:\n{}", framed(&screen));
        // The terminal modes now are the shell's (readline sets its own at the prompt), so they say nothing of
        // what the TUI gave back; the modes the TUI set that the shell would not undo are the alternate screen
        // (above) and mouse reporting.
        assert_eq!(
            tui.tmux.display("#{mouse_any_flag}#{mouse_button_flag}#{mouse_sgr_flag}"),
            "000",
            "mouse reporting is off"
        );
        let pid = tui.pid().expect("the node's pid");
        assert_eq!(state(pid), Some('T'), "the node is stopped");

        tui.type_line("fg");
        tui.wait_whole("after fg the TUI is drawn again whole");
        assert_eq!(tui.tmux.display("#{alternate_on}"), "1", "back on the alternate screen");
        wait_until("raw mode again after fg", Duration::from_secs(10), || {
            let stty = tui.tmux.stty();
            if has_flag(&stty, "-icanon") {
                Ok(())
            } else {
                Err(format!("stty -a: {stty}"))
            }
        });
        mesh.wait_for("the node is a member again", &ids, LIMIT, |s| one_mesh(s, 2));
        tui.type_line("after fg");
        wait_received(&mesh, ids[0], "tuiuser", |t| t == "after fg");
        tui.tmux.wait_for("the TUI shows the message sent", LIMIT, |s| s.contains("tuiuser#2: after fg"));
    }

    /// Every row the history shows of the newest messages, scrolling up with PgUp until `top` is seen.
    fn history_rows(tui: &Tui, top: &str) -> Vec<String> {
        let mut rows: Vec<String> = Vec::new();
        let mut last = String::new();
        for _ in 0..60 {
            let screen = tui.screen();
            let lines: Vec<&str> = screen.lines().collect();
            // The history pane is above the status line and the input line.
            let pane = &lines[..lines.len().saturating_sub(2)];
            rows.extend(pane.iter().map(|r| r.to_string()));
            if screen.contains(top) || screen == last {
                break;
            }
            last = screen;
            tui.tmux.send_keys(&["PageUp"]);
            // Wait for the redraw (or for nothing to change, at the top).
            let start = Instant::now();
            while tui.screen() == last && start.elapsed() < Duration::from_secs(1) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        rows
    }

    #[test]
    fn wrapping_keeps_every_word_and_grapheme() {
        let mut mesh = Mesh::new("tui-wrap");
        let ana = mesh.start("ana", &[], &[]);
        mesh.wait_for("ana founds", &[ana], LIMIT, |s| one_mesh(s, 1));
        let words: Vec<String> = (1..=30).map(|i| format!("{i:04}-abcdefghij")).collect();
        let thumb = "👍🏽";
        // The emoji ends the message: tmux 3.3 draws 👍🏽 four columns wide (the emoji and its modifier two each)
        // where the app (and most terminals) count two, so a cell drawn right after it overwrites the modifier,
        // and a cell that was blank before and after is never redrawn (a stale modifier can stay there). So it is
        // looked for on a screen drawn afresh.
        let text = format!("{} {thumb}", words.join(" "));
        let mut tuis = Vec::new();
        let mut failures = Vec::new();
        for (k, (w, h)) in [(120u16, 35u16), (40, 10)].into_iter().enumerate() {
            let tui = Tui::start(&mesh, &format!("tuiuser{k}"), w, h);
            mesh.wait_for("the TUI node joins", &[ana], LIMIT, |s| one_mesh(s, 2 + k));
            let id = mesh.send(ana, &text);
            tui.tmux.wait_for("the message is shown", LIMIT, |s| s.contains("0030-abcdef"));
            // A full repaint (a resize and back), so that the emoji's row is drawn on a blank screen: see above.
            let (sw, sh, sh1) = (w.to_string(), h.to_string(), (h + 1).to_string());
            tui.tmux.ok(&["resize-window", "-t", "t", "-x", &sw, "-y", &sh1]);
            let drawn = |s: &str, rows: u16| {
                s.lines().count() == usize::from(rows) && tui_whole(s, &tui.name) && s.contains("0030-abcdef")
            };
            tui.tmux.wait_for("redrawn one row taller", LIMIT, |s| drawn(s, h + 1));
            tui.tmux.ok(&["resize-window", "-t", "t", "-x", &sw, "-y", &sh]);
            tui.tmux.wait_for("redrawn at the size again", LIMIT, |s| drawn(s, h));
            let bottom = tui.screen();
            let rows = history_rows(&tui, "0001-");
            let all = framed(&rows.join("\n"));
            let mut failed = Vec::new();
            for word in &words {
                if !rows.iter().any(|r| r.contains(word.as_str())) {
                    failed.push(format!("{word} is not whole on any row"));
                }
            }
            for r in &rows {
                let glued = r
                    .match_indices("abcdefghij")
                    .any(|(i, m)| r[i + m.len()..].chars().next().is_some_and(|c| c.is_ascii_digit() || c == '👍'));
                if glued {
                    failed.push(format!("two words glued together on the row {r:?}"));
                }
            }
            if !bottom.contains(thumb) {
                failed.push(format!("{thumb} is not shown whole on the newest rows:\n{}", framed(&bottom)));
            }
            if !failed.is_empty() {
                failures.push(format!("at {w}x{h}:\n  {}\nthe rows seen:\n{all}", failed.join("\n  ")));
            }
            // The next size is a node of its own (this one ends on drop).
            tuis.push(tui);
            // ana's copy of the text is the text: the fault is in the drawing.
            let stored = mesh.history(ana).into_iter().find(|m| m.id == *id).expect("ana stores it");
            assert_eq!(stored.text, text.as_str());
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_multi_line_paste_keeps_its_lines() {
        let (mesh, ids, tui) = mesh_with_tui("tui-paste", &["ana"], 120, 35);
        // What most terminals send for pasted line ends: a lone CR.
        tui.tmux.ok(&["set-buffer", "-b", "p", "--", "line one of paste\rline two\rline three"]);
        tui.tmux.ok(&["paste-buffer", "-p", "-b", "p", "-t", "t"]);
        tui.tmux.wait_for("the paste reaches the input", LIMIT, |s| s.contains("line three"));
        tui.tmux.send_keys(&["Enter"]);
        let got = wait_received(&mesh, ids[0], "tuiuser", |t| t.contains("line one of paste"));
        assert_eq!(got, "line one of paste\nline two\nline three");
        let screen = tui.tmux.wait_for("the TUI shows the message sent", LIMIT, |s| s.contains("tuiuser#2: line one"));
        let rows: Vec<&str> = screen.lines().collect();
        let row = |needle: &str| rows.iter().position(|r| r.contains(needle));
        let (a, b, c) = (row("line one of paste"), row("line two"), row("line three"));
        assert!(
            matches!((a, b, c), (Some(a), Some(b), Some(c)) if a < b && b < c),
            "the three lines on rows {a:?}, {b:?}, {c:?}; the screen:\n{}",
            framed(&screen)
        );
    }

    #[test]
    fn text_starting_with_at_is_sent_as_text() {
        let (mesh, ids, tui) = mesh_with_tui("tui-at", &["ana"], 120, 35);
        tui.type_line("@bruno are you there?");
        wait_received(&mesh, ids[0], "tuiuser", |t| t == "@bruno are you there?");
        // A known alias of /leader is a command: its reply, not a message.
        tui.type_line("@LIDER");
        tui.tmux.wait_for("the reply of @LIDER", LIMIT, |s| s.contains("election started"));
        mesh.wait_for("the election ends", &ids, LIMIT, |s| {
            one_mesh(s, 2)?;
            if s[0].election_running {
                return Err("an election runs".into());
            }
            Ok(())
        });
        tui.type_line("after the command");
        wait_received(&mesh, ids[0], "tuiuser", |t| t == "after the command");
        let texts = texts_by(&mesh, ids[0], "tuiuser");
        assert!(!texts.iter().any(|t| t.contains("LIDER")), "@LIDER was sent as text: {texts:?}");
    }

    #[test]
    fn line_editing_keys() {
        let (mesh, ids, tui) = mesh_with_tui("tui-edit", &["ana"], 120, 35);
        let t = &tui.tmux;
        let cursor = || t.display("#{cursor_x}").parse::<usize>().unwrap();
        // Waits until the input row reads `row` (trailing spaces aside) with the cursor at column `x`.
        let input = |what: &str, row: &str, x: Option<usize>| {
            let start = Instant::now();
            loop {
                let screen = t.capture();
                let now = input_row(&screen);
                let at = cursor();
                if now.trim_end() == row && x.is_none_or(|x| x == at) {
                    return;
                }
                if start.elapsed() > Duration::from_secs(10) {
                    panic!(
                    "{what}: the input row is {now:?} with the cursor at column {at}, expected {row:?}{}; the screen:\n{}",
                    x.map(|x| format!(" at column {x}")).unwrap_or_default(),
                    framed(&screen)
                );
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        };
        t.send_literal("hello big world");
        input("typed", "> hello big world", Some(17));
        t.send_keys(&["C-w"]);
        input("C-w deletes the word before the cursor", "> hello big", Some(12));
        t.send_literal("again");
        input("typed after C-w", "> hello big again", Some(17));
        t.send_keys(&["Home"]);
        input("Home goes to the start", "> hello big again", Some(2));
        t.send_keys(&["End"]);
        input("End goes to the end", "> hello big again", Some(17));
        t.send_keys(&["C-a"]);
        input("C-a goes to the start", "> hello big again", Some(2));
        t.send_keys(&["M-f"]);
        // Past `hello` (readline) or at the start of `big` (most editors): either way C-k leaves `hello`.
        let x = cursor();
        assert!(
            x == 7 || x == 8,
            "M-f moves one word right: the cursor is at column {x}; the screen:\n{}",
            framed(&t.capture())
        );
        t.send_keys(&["C-k"]);
        input("C-k deletes to the end", "> hello", Some(x));
        t.send_keys(&["C-e"]);
        t.send_keys(&["C-u"]);
        wait_until("C-e then C-u empties the input", Duration::from_secs(10), || {
            let row = input_row(&t.capture());
            if !row.contains("hello") && cursor() == 2 {
                Ok(())
            } else {
                Err(format!("the input row is {row:?}"))
            }
        });

        t.send_literal("one two three");
        input("typed", "> one two three", Some(15));
        t.send_keys(&["M-b"]);
        input("M-b goes to the start of the word", "> one two three", Some(10));
        t.send_keys(&["C-k"]);
        input("C-k deletes to the end", "> one two", Some(10));
        t.send_literal("3");
        input("typed", "> one two 3", Some(11));
        t.send_keys(&["C-Left"]);
        input("C-Left goes to the start of the word", "> one two 3", Some(10));
        t.send_keys(&["C-Left"]);
        input("C-Left again", "> one two 3", Some(6));
        t.send_keys(&["C-u"]);
        input("C-u deletes to the start", "> two 3", Some(2));
        t.send_keys(&["C-Right"]);
        let x = cursor();
        assert!(x == 5 || x == 6, "C-Right moves one word right: the cursor is at column {x}");
        t.send_keys(&["C-e"]);
        input("C-e goes to the end", "> two 3", Some(7));
        t.send_literal(" four");
        input("typed", "> two 3 four", Some(12));
        t.send_keys(&["Enter"]);
        let got = wait_received(&mesh, ids[0], "tuiuser", |_| true);
        assert_eq!(got, "two 3 four");
    }

    #[test]
    fn mouse_wheel_scrolls_the_history() {
        let (mesh, ids, tui) = mesh_with_tui("tui-wheel", &["ana"], 120, 35);
        for i in 1..=100 {
            mesh.send(ids[0], &format!("message number {i:03}"));
        }
        tui.tmux.wait_for("the newest message is shown", LIMIT, |s| s.contains("message number 100"));
        let flags = tui.tmux.display("#{mouse_standard_flag}#{mouse_button_flag}#{mouse_any_flag} #{mouse_sgr_flag}");
        assert!(
            flags.split(' ').next().unwrap_or("").contains('1') && flags.ends_with(" 1"),
            "the app does not request (SGR) mouse reporting: mouse flags standard/button/any sgr = {flags}"
        );
        for _ in 0..5 {
            tui.tmux.send_literal("\x1b[<64;10;5M");
        }
        tui.tmux.wait_for("the wheel scrolls the history up", Duration::from_secs(10), |s| {
            !s.contains("message number 100") && s.contains(" scrolled up")
        });
        for _ in 0..20 {
            tui.tmux.send_literal("\x1b[<65;10;5M");
        }
        tui.tmux.wait_for("the wheel scrolls back down", Duration::from_secs(10), |s| {
            s.contains("message number 100") && !s.contains(" scrolled up")
        });
    }

    #[test]
    fn esc_twice_leaves_and_a_goodbye_line_is_printed() {
        let (mesh, ids, tui) = mesh_with_tui("tui-esc", &["ana"], 120, 35);
        let t = &tui.tmux;
        let pid = tui.pid().expect("the node's pid");
        t.send_keys(&["Escape"]);
        std::thread::sleep(Duration::from_secs(3));
        t.send_keys(&["Escape"]);
        // A key typed after the second Esc shows whether it was taken for a leave.
        t.send_literal("x");
        let screen =
            t.wait_for("the key after the Escs is shown", Duration::from_secs(10), |s| input_row(s).contains('x'));
        assert!(input_row(&screen).starts_with("> x"), "two Escs 3 s apart leave the mesh:\n{}", framed(&screen));
        assert!(state(pid).is_some_and(|s| s != 'Z'), "the node is no longer running");
        t.send_keys(&["BSpace"]);
        t.send_keys(&["Escape"]);
        t.send_keys(&["Escape"]);
        wait_until("Esc Esc ends the process", LIMIT, || match state(pid) {
            None | Some('Z') => Ok(()),
            Some(s) => Err(format!("state {s}; the screen:\n{}", framed(&t.capture()))),
        });
        wait_until("the other node records the leave", LIMIT, || {
            let h = mesh.history(ids[0]);
            let events: Vec<&str> = h.iter().filter(|m| m.kind == "event").map(|m| m.text.as_str()).collect();
            if events.iter().any(|e| e.contains("tuiuser") && e.contains("left")) {
                Ok(())
            } else {
                Err(format!("its events: {events:?}"))
            }
        });
        let screen = t.wait_for("the shell prompt after the exit", LIMIT, shell_prompt);
        assert_eq!(t.display("#{alternate_on}"), "0", "the alternate screen is left");
        assert!(
            screen.contains("left the mesh"),
            "no goodbye line (`left the mesh`) after the exit:\n{}",
            framed(&screen)
        );
    }

    #[test]
    fn members_who_left_are_collapsed() {
        let (mut mesh, ids, tui) = mesh_with_tui("tui-gone", &["ana", "bruno", "carla"], 120, 35);
        // The members pane: the right 30 columns of the rows above the status line.
        let pane = |s: &str| -> Vec<String> {
            let rows: Vec<&str> = s.lines().collect();
            rows[..rows.len().saturating_sub(2)].iter().map(|r| r.chars().skip(90).collect()).collect()
        };
        tui.tmux.wait_for("the members pane lists carla", LIMIT, |s| pane(s).iter().any(|r| r.contains("carla")));
        let carla = ids[2];
        mesh.type_line(carla, "/quit");
        mesh.wait_for("carla has left", &ids[..2], LIMIT, |s| one_mesh(s, 3));
        wait_until("carla's process ends", LIMIT, || match mesh.nodes[carla].process.as_mut().unwrap().has_exited() {
            true => Ok(()),
            false => Err("running".into()),
        });
        let screen = tui.tmux.wait_for("the members pane title reads ` 3 online, 1 gone `", LIMIT, |s| {
            pane(s).iter().any(|r| r.contains(" 3 online, 1 gone "))
        });
        let rows = pane(&screen);
        // Her name may be on the collapsed line (`1 gone: carla`), not on a row of her own.
        assert!(
            !rows.iter().any(|r| r.contains("carla") && !r.contains("1 gone")),
            "the member who left is still listed as a row:\n{}",
            framed(&rows.join("\n"))
        );
        let gone = rows.iter().filter(|r| r.contains("1 gone")).count();
        assert_eq!(gone, 2, "the title and one collapsed line mention `1 gone`:\n{}", framed(&rows.join("\n")));
    }
}
