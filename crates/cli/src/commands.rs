//! What a user types: a chat message or a `/command` (DESIGN.md section 4, with the seeds' aliases).
//! Shared by the TUI, `--ui plain` and `--ui json`.

use chatmesh_core::history::message::MAX_BODY_LEN;
use chatmesh_core::{Command, MAX_NAME_LEN};
use chatmesh_node::events::{DeliveryView, MessageView, StatusView};
use chatmesh_node::Handle;
use serde_json::{json, Value};
use std::net::{SocketAddr, ToSocketAddrs};

/// The help text, one command a line.
pub const HELP: &[&str] = &[
    "/help (@HELP)              this list",
    "/peers (/members, @MEMBERS) the members with their IDs and states",
    "/connect HOST:PORT         find the mesh through this member too (where multicast does not reach)",
    "/elect (/leader, @LIDER)   start an election now",
    "/list (@LIST)              ask the coordinator for a fresh member list",
    "/history [N]               the last N messages (default 20) in canonical order",
    "/status                    my ID, term, coordinator, history digest",
    "/digest                    the history digest (equal digests mean equal histories)",
    "/nick NAME                 change my name",
    "/quit (/exit, FIM)         leave the mesh and stop",
    "anything else is sent as a chat message; start it with // to send a line that begins with /",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    Help,
    Peers,
    Connect(SocketAddr),
    Elect,
    List,
    History(usize),
    Status,
    Digest,
    Nick(String),
    Quit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Message(String),
    Command(Cmd),
    /// Nothing to do (an empty line).
    Nothing,
}

/// Parses one line of input. An error is one line saying what is wrong and what to do.
pub fn parse(line: &str) -> Result<Line, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(Line::Nothing);
    }
    if let Some(rest) = trimmed.strip_prefix("//") {
        return message(format!("/{rest}"));
    }
    let (word, arg) = match trimmed.split_once(char::is_whitespace) {
        Some((w, a)) => (w, a.trim()),
        None => (trimmed, ""),
    };
    let no_arg = |c: Cmd| {
        if arg.is_empty() {
            Ok(Line::Command(c))
        } else {
            Err(format!("{word} takes no argument"))
        }
    };
    match word.to_ascii_lowercase().as_str() {
        "/help" | "@help" => no_arg(Cmd::Help),
        "/peers" | "/members" | "@members" => no_arg(Cmd::Peers),
        "/elect" | "/leader" | "@lider" => no_arg(Cmd::Elect),
        "/list" | "@list" => no_arg(Cmd::List),
        "/status" => no_arg(Cmd::Status),
        "/digest" => no_arg(Cmd::Digest),
        "/quit" | "/exit" => no_arg(Cmd::Quit),
        "fim" if arg.is_empty() && word == "FIM" => Ok(Line::Command(Cmd::Quit)),
        "/connect" => {
            if arg.is_empty() {
                return Err("usage: /connect HOST:PORT (a member's listen address)".into());
            }
            let addr = arg
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.find(|a| a.is_ipv4()))
                .ok_or_else(|| format!("/connect {arg}: not a reachable HOST:PORT (e.g. 192.168.1.20:7000)"))?;
            Ok(Line::Command(Cmd::Connect(addr)))
        }
        "/history" => {
            if arg.is_empty() {
                return Ok(Line::Command(Cmd::History(20)));
            }
            match arg.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Line::Command(Cmd::History(n))),
                _ => Err(format!("/history {arg}: N must be a positive number, e.g. /history 50")),
            }
        }
        "/nick" => {
            if arg.is_empty() {
                return Err("usage: /nick NAME".into());
            }
            if arg.len() > MAX_NAME_LEN {
                return Err(format!("/nick: the name is {} bytes long; the limit is {MAX_NAME_LEN}", arg.len()));
            }
            if arg.chars().any(char::is_control) {
                return Err("/nick: the name must not contain control characters".into());
            }
            Ok(Line::Command(Cmd::Nick(arg.to_owned())))
        }
        // Only the seeds' `@` aliases above are commands: `@bruno are you there?` is a message.
        w if w.starts_with('/') => {
            Err(format!("unknown command {word}: type /help for the list (start with // to send it as text)"))
        }
        _ => message(line.to_owned()),
    }
}

fn message(text: String) -> Result<Line, String> {
    if text.trim().is_empty() {
        return Err("empty message: type some text".into());
    }
    if text.len() > MAX_BODY_LEN {
        return Err(format!("message of {} bytes: the limit is {MAX_BODY_LEN}; split it", text.len()));
    }
    Ok(Line::Message(text))
}

/// What a command answered: lines for people, a JSON value for `--ui json`, and whether to stop.
pub struct Reply {
    pub lines: Vec<String>,
    pub json: Value,
    pub quit: bool,
}

impl Reply {
    fn new(lines: Vec<String>, json: Value) -> Reply {
        Reply { lines, json, quit: false }
    }
}

/// A Unix time in milliseconds in the local time zone, or `None` where the C library cannot tell.
fn local_time(ms: u64) -> Option<libc::tm> {
    let secs = (ms / 1000) as libc::time_t;
    // SAFETY: localtime_r writes only into the struct we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    (!unsafe { libc::localtime_r(&secs, &mut tm) }.is_null()).then_some(tm)
}

/// `HH:MM:SS` of a Unix time in milliseconds, in the local time zone.
pub fn fmt_time(ms: u64) -> String {
    match local_time(ms) {
        Some(tm) => format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec),
        None => {
            let s = ms / 1000;
            format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
        }
    }
}

/// A message's time as a chat shows it at `now_ms`: `HH:MM:SS` today, `Mon DD HH:MM:SS` earlier this year,
/// `YYYY-MM-DD HH:MM:SS` before that (local time; UTC where the C library cannot tell).
pub fn fmt_stamp(ms: u64, now_ms: u64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let day = |ms: u64| match local_time(ms) {
        Some(tm) => (i64::from(tm.tm_year) + 1900, (tm.tm_mon + 1) as u32, tm.tm_mday as u32),
        None => civil_from_days((ms / 86_400_000) as i64),
    };
    let (then, now) = (day(ms), day(now_ms));
    let time = fmt_time(ms);
    if then == now {
        time
    } else if then.0 == now.0 {
        format!("{} {:02} {time}", MONTHS[(then.1 as usize).clamp(1, 12) - 1], then.2)
    } else {
        format!("{:04}-{:02}-{:02} {time}", then.0, then.1, then.2)
    }
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time in milliseconds, in the local time zone (UTC, marked `Z`, where
/// the C library cannot tell).
pub fn fmt_date_time(ms: u64) -> String {
    match local_time(ms) {
        Some(tm) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            i64::from(tm.tm_year) + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        ),
        None => {
            let s = ms / 1000;
            let (y, m, d) = civil_from_days((s / 86_400) as i64);
            format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z", (s / 3600) % 24, (s / 60) % 60, s % 60)
        }
    }
}

/// The date of a day counted from 1970-01-01 (proleptic Gregorian; H. Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// One message as a line: `12:03:04 ana (#1): hello`.
pub fn message_line(m: &MessageView) -> String {
    message_line_at(&fmt_time(m.sent_at), m)
}

/// One message as a line, after `time`: `<time> ana (#1): hello`, `<time> * bruno (#2) joined`.
pub fn message_line_at(time: &str, m: &MessageView) -> String {
    let who = match (&m.author_name, m.author_id) {
        (Some(n), Some(id)) => format!("{n} (#{id})"),
        _ => m.author[..8].to_string(),
    };
    if m.kind == "event" {
        format!("{time} * {}", m.text)
    } else {
        format!("{time} {who}: {}", m.text)
    }
}

/// How an own message's delivery status reads: `✓✓ all` (every current member holds it), `✓ k/N`, or
/// `✓ stored` (no other member, or not known).
pub fn delivery_mark(d: Option<DeliveryView>) -> String {
    match d {
        Some(d) if d.all() => "✓✓ all".to_string(),
        Some(d) if d.members > 0 => format!("✓ {}/{}", d.acked, d.members),
        _ => "✓ stored".to_string(),
    }
}

/// A line of `/history`: own chat messages end with their delivery status.
pub fn history_line(m: &MessageView) -> String {
    with_delivery_mark(message_line(m), m)
}

/// `line`, with the delivery status after it if `m` is an own chat message.
pub fn with_delivery_mark(line: String, m: &MessageView) -> String {
    match m.own && m.kind == "text" {
        true => format!("{line}  {}", delivery_mark(m.delivery)),
        false => line,
    }
}

pub fn status_lines(s: &StatusView) -> Vec<String> {
    let id = s.id.map_or("-".to_string(), |i| format!("#{i}"));
    let coordinator = s
        .coordinator
        .as_ref()
        .map_or("none".into(), |c| format!("{} (#{})", c.name.clone().unwrap_or_else(|| c.key[..8].to_string()), c.id));
    vec![
        format!("me: {} {id} key {} at {} ({})", s.name, &s.key[..16], s.addr, s.role),
        format!(
            "mesh {}: term {}, coordinator {coordinator}{}",
            s.mesh,
            s.term,
            if s.election_running { ", election running" } else { "" }
        ),
        format!(
            "history: {} messages, digest {}; {} own messages awaiting acknowledgement; {} links",
            s.history.count,
            &s.history.digest[..16],
            s.pending_acks,
            s.links
        ),
    ]
}

pub fn peer_lines(s: &StatusView) -> Vec<String> {
    if s.members.is_empty() {
        return vec!["no members yet (still looking for the mesh)".into()];
    }
    s.members
        .iter()
        .map(|m| {
            format!(
                "#{:<4} {:<16} {:<7} {:<21} {}{}",
                m.id,
                m.name,
                m.state,
                m.addr,
                if m.coordinator { "coordinator" } else { "" },
                if m.key == s.key { " (me)" } else { "" }
            )
        })
        .collect()
}

/// Carries out a command.
pub async fn execute(node: &Handle, cmd: Cmd) -> Reply {
    let stopped = || Reply::new(vec!["the node has stopped".into()], json!({"error": "the node has stopped"}));
    match cmd {
        Cmd::Help => Reply::new(HELP.iter().map(|s| s.to_string()).collect(), json!({ "help": HELP })),
        Cmd::Peers => match node.status().await {
            Some(s) => Reply::new(peer_lines(&s), json!({ "members": s.members })),
            None => stopped(),
        },
        Cmd::Status => match node.status().await {
            Some(s) => Reply::new(status_lines(&s), json!({ "status": s })),
            None => stopped(),
        },
        Cmd::Digest => match node.status().await {
            Some(s) => Reply::new(
                vec![format!("digest {} over {} messages", s.history.digest, s.history.count)],
                json!({ "digest": s.history.digest, "count": s.history.count }),
            ),
            None => stopped(),
        },
        Cmd::Connect(addr) => {
            node.connect(addr).await;
            Reply::new(vec![format!("looking for the mesh through {addr} too")], json!({ "connect": addr.to_string() }))
        }
        Cmd::Elect => {
            node.command(Command::StartElection).await;
            Reply::new(vec!["election started".into()], json!({ "election": "started" }))
        }
        Cmd::List => {
            node.command(Command::RefreshView).await;
            Reply::new(vec!["asked the coordinator for a fresh member list".into()], json!({ "list": "requested" }))
        }
        Cmd::Nick(name) => {
            node.command(Command::Rename { name: name.clone() }).await;
            Reply::new(vec![format!("you are now {name}")], json!({ "nick": name }))
        }
        Cmd::History(n) => match node.history(Some(n)).await {
            Ok(h) => {
                let mut lines: Vec<String> = h.iter().map(history_line).collect();
                if lines.is_empty() {
                    lines.push("no messages yet".into());
                }
                Reply::new(lines, json!({ "history": h }))
            }
            Err(e) => Reply::new(vec![e.clone()], json!({ "error": e })),
        },
        Cmd::Quit => Reply { lines: vec!["leaving the mesh".into()], json: json!({ "quit": true }), quit: true },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_aliases_parse() {
        for (s, c) in [
            ("/help", Cmd::Help),
            ("@HELP", Cmd::Help),
            ("/peers", Cmd::Peers),
            ("/members", Cmd::Peers),
            ("@MEMBERS", Cmd::Peers),
            ("/elect", Cmd::Elect),
            ("/leader", Cmd::Elect),
            ("@LIDER", Cmd::Elect),
            ("/list", Cmd::List),
            ("@LIST", Cmd::List),
            ("/status", Cmd::Status),
            ("/digest", Cmd::Digest),
            ("/quit", Cmd::Quit),
            ("FIM", Cmd::Quit),
            ("/history", Cmd::History(20)),
            ("/history 5", Cmd::History(5)),
            ("/nick zé", Cmd::Nick("zé".into())),
            ("/connect 127.0.0.1:7000", Cmd::Connect("127.0.0.1:7000".parse().unwrap())),
        ] {
            assert_eq!(parse(s), Ok(Line::Command(c)), "{s}");
        }
    }

    #[test]
    fn messages_and_mistakes() {
        assert_eq!(parse("olá mundo"), Ok(Line::Message("olá mundo".into())));
        assert_eq!(parse("fim de semana"), Ok(Line::Message("fim de semana".into())));
        assert_eq!(parse("//help"), Ok(Line::Message("/help".into())));
        // Only the seeds' aliases are commands: any other line starting with @ is text (a mention).
        assert_eq!(parse("@bruno are you there?"), Ok(Line::Message("@bruno are you there?".into())));
        assert_eq!(parse("@lista de compras"), Ok(Line::Message("@lista de compras".into())));
        assert_eq!(parse("@LIDER"), Ok(Line::Command(Cmd::Elect)));
        assert_eq!(parse("   "), Ok(Line::Nothing));
        assert!(parse("/frobnicate").unwrap_err().contains("unknown command /frobnicate"));
        assert!(parse("/history zero").is_err());
        assert!(parse("/history 0").is_err());
        assert!(parse("/connect").is_err());
        assert!(parse("/connect nowhere").is_err());
        assert!(parse("/nick").is_err());
        assert!(parse(&format!("/nick {}", "x".repeat(65))).is_err());
        assert!(parse("/help me").is_err());
        assert!(parse(&"x".repeat(MAX_BODY_LEN + 1)).unwrap_err().contains("limit"));
        assert_eq!(parse(&"x".repeat(MAX_BODY_LEN)), Ok(Line::Message("x".repeat(MAX_BODY_LEN))));
    }
}
