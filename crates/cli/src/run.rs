//! `chatmesh` with no subcommand: one node, with the TUI, `--ui plain` or `--ui json` in front of it.

use crate::commands::{self, Line};
use crate::config::{LogLevel, Settings, Ui};
use chatmesh_node::events::Notice;
use chatmesh_node::{api, Handle};
use serde_json::json;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tracing_appender::non_blocking::WorkerGuard;

/// What the faces show about the node besides its events.
#[derive(Clone, Debug)]
pub struct Started {
    pub name: String,
    pub key: String,
    pub addr: SocketAddr,
    pub http: Option<SocketAddr>,
    pub data_dir: String,
    pub log_dir: String,
    pub demo_key: bool,
}

/// Rotating log files `chatmesh-<name>.<date>.log` in the log directory (one file per node, also on a
/// shared `/logs` volume), never on the terminal.
pub fn init_logging(dir: &Path, name: &str, level: LogLevel) -> Result<WorkerGuard, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the log directory {}: {e}", dir.display()))?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(format!("chatmesh-{}", sanitize(name)))
        .filename_suffix("log")
        .max_log_files(7)
        .build(dir)
        .map_err(|e| format!("cannot write logs in {}: {e}", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = match level {
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Heartbeat => "info,heartbeat=trace",
        LogLevel::Debug => "debug,heartbeat=trace,frames=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHATMESH_LOG_FILTER")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(false).init();
    Ok(guard)
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

pub fn run(settings: Settings) -> ExitCode {
    let ui = settings.ui.unwrap_or(if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        Ui::Tui
    } else {
        Ui::Plain
    });
    if let Err(e) = std::fs::create_dir_all(&settings.node.data_dir) {
        eprintln!(
            "chatmesh: cannot use the data directory {}: {e} (choose a writable one with --data-dir)",
            settings.node.data_dir.display()
        );
        return ExitCode::from(1);
    }
    let _guard = match init_logging(&settings.log_dir, &settings.node.name, settings.log) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("chatmesh: {e} (choose another with --log-dir)");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("chatmesh").build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chatmesh: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run_async(settings, ui));
    // The stdin reader may be blocked in a read that never returns (a pipe held open): do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

async fn run_async(settings: Settings, ui: Ui) -> ExitCode {
    if settings.demo_key && ui != Ui::Json {
        eprintln!(
            "chatmesh: warning: no network key given; using the well-known demo key (anyone can join): \
             set --network-key-file or CHATMESH_NETWORK_KEY"
        );
    }
    let (node, task) = match chatmesh_node::start(settings.node.clone()).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("chatmesh: {e}");
            return ExitCode::from(1);
        }
    };
    let mut http = None;
    if let Some(addr) = settings.http {
        match api::serve(node.clone(), addr).await {
            Ok((bound, _task)) => http = Some(bound),
            // The chat still works without the API: say so and go on.
            Err(e) => eprintln!("chatmesh: {e}; running without the control API"),
        }
    }
    let started = Started {
        // The configured name, or the `/nick` the data directory keeps under it.
        name: node.name().to_owned(),
        key: hex::encode(node.key().0),
        addr: node.addr(),
        http,
        data_dir: settings.node.data_dir.display().to_string(),
        log_dir: settings.log_dir.display().to_string(),
        demo_key: settings.demo_key,
    };
    tracing::info!(?started, "started");
    let result = match ui {
        Ui::Tui => crate::tui::run(node.clone(), started).await.map_err(|e| e.to_string()),
        Ui::Plain | Ui::Json => lines(node.clone(), started, ui == Ui::Json).await,
    };
    if let Err(e) = result {
        eprintln!("chatmesh: {e}");
        node.shutdown(false).await;
        let _ = task.await;
        return ExitCode::from(1);
    }
    match task.await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("chatmesh: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("chatmesh: the node failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// Ctrl-C, SIGTERM or SIGHUP (the terminal went away).
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
            (Ok(mut term), Ok(mut hup)) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The notice that `k` events were skipped, as JSON and as a line.
fn lagged(k: u64) -> (serde_json::Value, String) {
    (json!({"type": "lagged", "skipped": k}), format!("! {k} events skipped (output too slow)"))
}

/// Writes bytes to stdout at once (a broken pipe is ignored: the node keeps running without its output).
fn write_out(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

fn emit(json_mode: bool, value: serde_json::Value, lines: &[String]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json_mode {
        let _ = writeln!(out, "{value}");
    } else {
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    let _ = out.flush();
}

/// A notice as a line of `--ui plain`; `None` for what the history already shows.
fn plain(n: &Notice) -> Option<String> {
    Some(match n {
        Notice::Message(m) => {
            let line = commands::message_line(m);
            if m.own && m.kind == "text" {
                format!("{line}  [stored]")
            } else {
                line
            }
        }
        Notice::Delivery { seq, acked, members } if acked == members && *members > 0 => {
            format!("         (your message number {seq} reached all {members} members)")
        }
        Notice::Founded { id, term } => {
            format!("* nobody answered: I founded the mesh as #{id}, coordinator of term {term}")
        }
        Notice::Joined { id, term, .. } => format!("* in the mesh as #{id}, following the coordinator of term {term}"),
        Notice::Coordinator { term, id, name, me, .. } => {
            if *me {
                format!("* I am the coordinator (term {term})")
            } else {
                format!("* coordinator: {} (#{id}), term {term}", name.clone().unwrap_or_default())
            }
        }
        Notice::ElectionStarted { term } => format!("* election started for term {term}"),
        Notice::IdReassigned { old, new, .. } => format!("* an ID clash after a merge: #{old} is now #{new}"),
        Notice::SendRefused { reason } => format!("! not sent: {reason}"),
        Notice::Stopped => "* stopped".to_string(),
        _ => return None,
    })
}

/// `--ui plain` and `--ui json`: events out, lines in.
async fn lines(node: Handle, started: Started, json_mode: bool) -> Result<(), String> {
    let mut events = node.subscribe();
    let ready = json!({
        "type": "ready",
        "name": started.name,
        "key": started.key,
        "addr": started.addr.to_string(),
        "http": started.http.map(|a| a.to_string()),
        "data_dir": started.data_dir,
        "log_dir": started.log_dir,
        "demo_key": started.demo_key,
    });
    let mut hello = vec![format!(
        "ChatMesh: {} listening on {}{}; logs in {}. Type /help for commands.",
        started.name,
        started.addr,
        started.http.map(|a| format!(", control API on http://{a}")).unwrap_or_default(),
        started.log_dir
    )];
    hello.push("* looking for the mesh...".into());
    emit(json_mode, ready, &hello);
    // Lines as bytes: input that is not UTF-8 is shown with replacement characters, not refused.
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).split(b'\n');
    let mut stdin_open = true;
    let mut quitting = false;
    let stop = interrupted();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(n) => {
                    // This event and those already waiting behind it (a sync delivers thousands at once)
                    // go out in one write.
                    let mut out = Vec::new();
                    let mut next = Some(n);
                    let mut stopped = false;
                    while let Some(n) = next.take() {
                        stopped |= n == Notice::Stopped;
                        if json_mode {
                            if serde_json::to_writer(&mut out, &n).is_ok() {
                                out.push(b'\n');
                            }
                        } else if let Some(l) = plain(&n) {
                            out.extend_from_slice(l.as_bytes());
                            out.push(b'\n');
                        }
                        if out.len() < 64 * 1024 && !stopped {
                            match events.try_recv() {
                                Ok(n) => next = Some(n),
                                Err(TryRecvError::Lagged(k)) => {
                                    let (v, l) = lagged(k);
                                    out.extend_from_slice(if json_mode { v.to_string() } else { l }.as_bytes());
                                    out.push(b'\n');
                                }
                                Err(_) => {}
                            }
                        }
                    }
                    write_out(&out);
                    if stopped {
                        return Ok(());
                    }
                }
                Err(RecvError::Lagged(k)) => {
                    let (v, l) = lagged(k);
                    emit(json_mode, v, &[l]);
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            line = stdin.next_segment(), if stdin_open && !quitting => match line {
                Ok(Some(line)) => {
                    let line = String::from_utf8_lossy(&line);
                    if handle_line(&node, &line, json_mode).await {
                        quitting = true;
                        node.shutdown(true).await;
                    }
                }
                // End of input: keep running (a node under a supervisor, or in a pipe), until a signal.
                Ok(None) => stdin_open = false,
                Err(e) => {
                    emit(json_mode, json!({"type": "error", "error": format!("stdin: {e}")}), &[format!("! stdin: {e}")]);
                    stdin_open = false;
                }
            },
            _ = &mut stop, if !quitting => {
                quitting = true;
                emit(json_mode, json!({"type": "info", "info": "interrupted: leaving the mesh"}), &["* interrupted: leaving the mesh".into()]);
                node.shutdown(true).await;
                // A second interrupt stops at once.
                tokio::spawn({
                    let node = node.clone();
                    async move {
                        interrupted().await;
                        node.shutdown(false).await;
                    }
                });
            }
        }
    }
}

/// Returns whether the user asked to quit.
async fn handle_line(node: &Handle, line: &str, json_mode: bool) -> bool {
    match commands::parse(line) {
        Ok(Line::Nothing) => false,
        Ok(Line::Message(text)) => {
            match node.send(text).await {
                // The event stream shows the message itself.
                Ok(_) => {}
                Err(e) => emit(json_mode, json!({"type": "error", "error": e.to_string()}), &[format!("! {e}")]),
            }
            false
        }
        Ok(Line::Command(cmd)) => {
            let name = format!("{cmd:?}").to_lowercase();
            let reply = commands::execute(node, cmd).await;
            let mut value = json!({"type": "reply", "command": name.split(['(', ' ']).next().unwrap_or("")});
            if let (Some(obj), Some(extra)) = (value.as_object_mut(), reply.json.as_object()) {
                obj.extend(extra.clone());
            }
            emit(json_mode, value, &reply.lines);
            reply.quit
        }
        Err(e) => {
            emit(json_mode, json!({"type": "error", "error": e}), &[format!("! {e}")]);
            false
        }
    }
}
