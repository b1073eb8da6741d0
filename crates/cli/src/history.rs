//! `chatmesh history`: a node's history read from its data directory, without running it and safe while it
//! runs (the store is opened read-only; WAL lets a reader in beside the writer). Plain lines, JSON or JSON
//! lines, named and marked as the node itself shows them; or, with `--verify`, every signature checked and
//! the digest recomputed.

use crate::commands;
use crate::config::{self, NodeArgs};
use chatmesh_core::history::message::Verifier;
use chatmesh_core::{key_of, Delivery, HistoryState, Message, NodeKey};
use chatmesh_node::events::{DeliveryView, MessageView, Names};
use chatmesh_node::{Store, StoreError};
use clap::{Args, ValueEnum};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per message, like `/history`: local date and time, author and ID, text.
    Text,
    /// One JSON array of the objects `GET /history` gives.
    Json,
    /// One JSON object per line, the same objects.
    Jsonl,
}

/// Which node's history, and how to show it.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The node's data directory [default: the one a node of this --name and --mesh uses].
    #[arg(long, env = "CHATMESH_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The node's configured name, to find its default data directory.
    #[arg(long, env = "CHATMESH_NAME")]
    name: Option<String>,
    /// The node's mesh, to find its default data directory [default: chatmesh].
    #[arg(long, env = "CHATMESH_MESH")]
    mesh: Option<String>,
    /// Config file giving data_dir, name or mesh [default: $XDG_CONFIG_HOME/chatmesh/config.toml when it
    /// exists].
    #[arg(long, env = "CHATMESH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Only the messages written at or after TIME: RFC 3339 (2026-12-06T13:00:00Z, 2026-12-06T14:00:00+01:00)
    /// or Unix milliseconds.
    #[arg(long, value_name = "TIME", value_parser = parse_since, conflicts_with = "verify")]
    since: Option<u64>,
    /// Check every message's signature, recompute the history digest from the messages and compare it with
    /// the stored one; print the digest.
    #[arg(long)]
    verify: bool,
}

/// Why the history could not be shown: exit status 1.
#[derive(Debug)]
enum Failure {
    NoDataDir(PathBuf),
    Store(StoreError),
    /// `--verify` found a message or the summary wrong.
    Invalid {
        path: PathBuf,
        detail: String,
    },
    Output(io::Error),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Output(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoDataDir(dir) => write!(
                f,
                "there is no data directory {} (give the node's --data-dir, or the --name and --mesh it runs with)",
                dir.display()
            ),
            Failure::Store(e) => write!(f, "{e}"),
            Failure::Invalid { path, detail } => write!(f, "{}: verification failed: {detail}", path.display()),
            Failure::Output(e) => write!(f, "cannot write the history: {e}"),
        }
    }
}

/// `chatmesh history`: `top` holds the node flags given before the subcommand, which the subcommand's
/// own override.
pub fn main(args: HistoryArgs, top: &NodeArgs) -> ExitCode {
    let node = NodeArgs {
        config: args.config.clone().or_else(|| top.config.clone()),
        name: args.name.clone().or_else(|| top.name.clone()),
        mesh: args.mesh.clone().or_else(|| top.mesh.clone()),
        data_dir: args.data_dir.clone().or_else(|| top.data_dir.clone()),
        ..NodeArgs::default()
    };
    let dir = match config::data_dir(&node) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("chatmesh: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args, &dir) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`| head`) is not a failure.
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatmesh: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &HistoryArgs, dir: &Path) -> Result<(), Failure> {
    if !dir.is_dir() {
        return Err(Failure::NoDataDir(dir.to_path_buf()));
    }
    let store = Store::open_read_only(&dir.join("chatmesh.db"))?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    // One read transaction: the messages and the summary they are checked against are of one moment. It
    // lasts as long as the output does, which holds back the node's WAL checkpoints meanwhile, not its
    // writes.
    store.read_consistent(|store| match args.verify {
        true => verify(store, args.format, &mut out),
        false => print(store, args, &mut out),
    })?;
    out.flush()?;
    Ok(())
}

/// What a node's store says about who is who and what its members hold: what `GET /history` shows,
/// right after a restart.
struct Reader {
    me: NodeKey,
    names: Names,
    delivery: Delivery,
}

impl Reader {
    fn of(store: &Store) -> Result<Reader, StoreError> {
        // A database whose node died before its first commit has no identity, and no messages either.
        let me = store.identity()?.map_or(NodeKey([0; 32]), |secret| key_of(&secret));
        let snapshot = store.snapshot()?;
        let names = Names::stored(snapshot.view.as_ref(), &store.membership_events()?);
        let delivery = store.history_state()?.delivery(&me, snapshot.view.as_ref());
        Ok(Reader { me, names, delivery })
    }

    fn view(&self, m: &Message) -> MessageView {
        let mut v = self.names.message(m, &self.me);
        if v.own {
            v.delivery = Some(DeliveryView::of(self.delivery.status(m.seq)));
        }
        v
    }
}

fn print(store: &Store, args: &HistoryArgs, out: &mut impl Write) -> Result<(), Failure> {
    let reader = Reader::of(store)?;
    let since = args.since.unwrap_or(0);
    let mut first = true;
    if args.format == Format::Json {
        out.write_all(b"[")?;
    }
    store.for_each_message(|m: Message| -> Result<(), Failure> {
        if m.sent_at < since {
            return Ok(());
        }
        let v = reader.view(&m);
        match args.format {
            Format::Text => {
                let line = commands::message_line_at(&commands::fmt_date_time(v.sent_at), &v);
                writeln!(out, "{}", commands::with_delivery_mark(line, &v))?;
            }
            Format::Json => {
                if !first {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, &v).map_err(io::Error::from)?;
            }
            Format::Jsonl => {
                serde_json::to_writer(&mut *out, &v).map_err(io::Error::from)?;
                out.write_all(b"\n")?;
            }
        }
        first = false;
        Ok(())
    })?;
    if args.format == Format::Json {
        out.write_all(b"]\n")?;
    }
    Ok(())
}

/// Checks every message (limits, consistency, signature) in canonical order, recomputes the summary from
/// them and compares its digest and count with the stored summary's; prints the digest.
fn verify(store: &Store, format: Format, out: &mut impl Write) -> Result<(), Failure> {
    let invalid = |detail: String| Failure::Invalid { path: store.path().to_path_buf(), detail };
    let stored = store.history_state()?;
    let mut state = HistoryState::default();
    // The node's own checker: it keeps each author's key decompressed across their messages.
    let mut verifier = Verifier::new([0; 32]);
    store.for_each_message(|m: Message| -> Result<(), Failure> {
        verifier.verify(&m).map_err(|e| {
            let at = state.count + 1;
            invalid(format!("message {}/{} (number {at} in canonical order): {e}", hex::encode(m.author.0), m.seq))
        })?;
        state.apply(&m);
        Ok(())
    })?;
    state.seal();
    if (state.digest, state.count) != (stored.digest, stored.count) {
        return Err(invalid(format!(
            "the messages give digest {} ({} messages), the stored summary says {} ({} messages)",
            hex::encode(state.digest.0),
            state.count,
            hex::encode(stored.digest.0),
            stored.count
        )));
    }
    let digest = hex::encode(state.digest.0);
    match format {
        Format::Text => writeln!(out, "digest {digest} ({} messages, all signatures valid)", state.count)?,
        Format::Json | Format::Jsonl => {
            writeln!(out, "{}", serde_json::json!({ "digest": digest, "count": state.count, "signatures": "valid" }))?
        }
    }
    Ok(())
}

/// `--since`: Unix milliseconds, or an RFC 3339 time.
fn parse_since(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{s:?} is not a time: give RFC 3339 (2026-12-06T13:00:00Z, 2026-12-06T14:00:00+01:00) or Unix \
             milliseconds (1796562000000)"
        )
    };
    match digits(s) {
        Some(ms) => Ok(ms),
        None => rfc3339_ms(s).ok_or_else(bad),
    }
}

/// A number of ASCII digits only (no sign, no spaces).
fn digits(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`t` or a space for `T` too) in Unix milliseconds; `None`
/// for anything else, an impossible date, or a time before 1970.
fn rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let field = |at: usize, len: usize| s.get(at..at + len).and_then(digits).map(|v| v as i64);
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if b.len() < 20 || separators.iter().any(|(at, c)| b[*at] != *c) || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (field(0, 4)?, field(5, 2)?, field(8, 2)?);
    let (hour, minute, second) = (field(11, 2)?, field(14, 2)?, field(17, 2)?);
    // An impossible date (February 30th) does not come back from the day count unchanged.
    let days = days_from_civil(year, month, day);
    if !(1..=12).contains(&month) || commands::civil_from_days(days) != (year, month as u32, day as u32) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let first3 = fraction[..n].bytes().chain(std::iter::repeat(b'0')).take(3);
        millis = first3.fold(0, |ms, d| ms * 10 + i64::from(d - b'0'));
        rest = &fraction[n..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = (digits(&rest[1..3])? as i64, digits(&rest[4..6])? as i64);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 60 + m)
        }
        _ => return None,
    };
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(secs * 1000 + millis).ok()
}

/// Days from 1970-01-01 to a date (proleptic Gregorian; H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_unix_milliseconds_and_rfc_3339_times_alike() {
        assert_eq!(parse_since("1796562000000"), Ok(1_796_562_000_000));
        assert_eq!(parse_since("2026-12-06T13:00:00Z"), Ok(1_796_562_000_000));
        assert_eq!(parse_since("2026-12-06t13:00:00.5z"), Ok(1_796_562_000_500));
        assert_eq!(parse_since("2026-12-06 14:30:00.123456+01:30"), Ok(1_796_562_000_123));
        assert_eq!(parse_since("2026-12-06T08:00:00-05:00"), Ok(1_796_562_000_000));
        assert_eq!(parse_since("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_since("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000), "a leap day");
    }

    #[test]
    fn since_refuses_what_is_not_a_time_and_says_what_is() {
        for bad in [
            "",
            "yesterday",
            "-5",
            "2026-12-06",
            "2026-12-06T13:00:00",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-06T24:00:00Z",
            "2026-12-06T13:00:00.Z",
            "2026-12-06T13:00:00+0100",
            "1969-12-31T23:59:59Z",
        ] {
            let e = parse_since(bad).expect_err(bad);
            assert!(e.contains("RFC 3339") && e.contains("Unix milliseconds"), "{e}");
        }
    }

    #[test]
    fn day_counts_and_dates_agree_across_four_centuries() {
        for days in (-800_000..800_000).step_by(37) {
            let (y, m, d) = commands::civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
    }
}
