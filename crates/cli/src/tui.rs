//! The full-screen terminal interface: the history in canonical order, the members, a status line, the
//! notices and replies, and an input box with line editing.
//!
//! The state lives in [`App`], plain data with pure methods (`apply_notice`, `on_key`, `on_mouse`, `render`)
//! that the tests drive without a terminal; [`run`] owns the terminal (through `term`) and feeds `App` from
//! the terminal's events (keys, paste, mouse, focus, resize; read on a thread of its own), the node's event stream, a status poll every
//! 300 ms, the results of spawned sends and commands, and the signals (SIGCONT after a stop repaints).
//!
//! This file holds `App`'s state and what changes it from the node's side (notices, replies, the history
//! read); `keys` what the user's keys, mouse and pastes do, `render` the drawing, `event_loop` the terminal
//! and the loop, `tests` the tests on `App` without a terminal.

use crate::commands::{self, Cmd, Line as Input, Reply};
use crate::run::Started;
use crate::term::{self, text_width, wrap};
use chatmesh_core::history::message::MAX_BODY_LEN;
use chatmesh_node::events::{DeliveryView, MessageView, Notice, StatusView};
use chatmesh_node::Handle;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::{Frame, Terminal};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tui_textarea::TextArea;

mod event_loop;
mod keys;
mod render;

pub use event_loop::run;

/// Messages kept on screen (the oldest go first beyond this; `/history` still reads the store).
const MAX_MESSAGES: usize = 5000;

/// Notices kept (the pane scrolls through them).
const MAX_NOTES: usize = 200;

/// Rows the notices pane grows to (more when the newest notice needs them: it is never cut).
const NOTE_ROWS: usize = 5;

/// Rows the input box grows to (a multi-line message scrolls inside it beyond this).
const INPUT_ROWS: usize = 5;

/// Rows one turn of the mouse wheel scrolls.
const WHEEL_ROWS: usize = 3;

/// Width of the members pane.
const MEMBERS_WIDTH: u16 = 30;

/// Continuation rows of a wrapped message start under its text, after the time.
const INDENT: usize = 9;

const STATUS_EVERY: Duration = Duration::from_millis(300);

const STOP_WAIT: Duration = Duration::from_secs(3);

const PLACEHOLDER: &str = "type a message or /help; Alt-Enter new line; PgUp/PgDn scroll; Ctrl-C leaves";

const UNREAD_MARK: &str = "── new ──";

const INPUT_FULL: &str = "the input is full: a message holds at most 16,384 bytes";

/// Colours for authors' names, chosen by a hash of the key.
const AUTHOR_COLOURS: [Color; 8] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Magenta,
    Color::LightCyan,
    Color::LightGreen,
    Color::LightMagenta,
];

/// Canonical order of the history: `(lamport, author key, seq)`.
type Key = (u64, String, u64);

/// What a key press asks the loop to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// Send a chat message.
    Send(String),
    /// Run a command; the string is the line typed (the title of its reply).
    Exec(Cmd, String),
    /// Ctrl-Z: give the terminal back and stop until the shell continues us.
    Suspend,
    /// Ctrl-L: clear the screen and draw it all again.
    Repaint,
    /// Leave the mesh gracefully.
    Quit,
    /// Stop at once (a second Ctrl-C while leaving).
    QuitNow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Info,
    Reply,
    Error,
}

struct Note {
    level: Level,
    text: String,
}

/// A reply of several lines, shown over the rest until a key press.
struct Popup {
    title: String,
    lines: Vec<String>,
    scroll: usize,
    /// Rows shown at the last render (the page size).
    page: usize,
}

/// A second Esc within this leaves the mesh; later, it only reminds again.
const ESC_WINDOW: Duration = Duration::from_millis(1500);

const ESC_REMINDER: &str = "press Esc again (within 1.5 s) to leave the mesh";

/// An empty input box.
fn new_input() -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_cursor_line_style(Style::new());
    // Only the cursor is drawn reversed: `render_input` finds it by that.
    t.set_cursor_style(Style::new().add_modifier(Modifier::REVERSED));
    t.set_placeholder_text(PLACEHOLDER);
    t.set_placeholder_style(Style::new().fg(Color::DarkGray));
    t
}

/// Everything the screen shows.
pub struct App {
    started: Started,
    messages: BTreeMap<Key, MessageView>,
    ids: HashMap<String, Key>,
    /// Own seq -> (acknowledged by, current members).
    acks: HashMap<u64, (usize, usize)>,
    status: Option<StatusView>,
    /// Key (hex) -> (id, name) from the member lists seen, for messages whose author the node did not know yet.
    names: HashMap<String, (u32, String)>,
    notes: VecDeque<Note>,
    /// Rows of notices hidden below the pane (0: the newest are shown).
    notes_scroll: usize,
    popup: Option<Popup>,
    /// The input box (tui-textarea: readline's keys, several lines with Alt-Enter or a paste).
    input: TextArea<'static>,
    /// Lines typed before, oldest first, and where Up/Down is among them.
    typed: Vec<String>,
    typed_pos: Option<usize>,
    draft: String,
    /// Rows of history hidden below the view (0: follow the bottom).
    scroll: usize,
    /// Messages that arrived while scrolled up.
    unseen: usize,
    /// The first message from others that arrived while this terminal was out of focus or scrolled up: the
    /// unread marker goes above it, until the user sends something.
    unread_from: Option<Key>,
    /// Whether the terminal has the focus (as its focus reports say; assumed until told otherwise).
    focused: bool,
    history_width: usize,
    history_height: usize,
    /// Where the history and the notices were drawn last (for the mouse wheel).
    history_area: Rect,
    notes_area: Rect,
    /// When Esc was pressed once: a second press within `ESC_WINDOW` leaves the mesh.
    esc_armed: Option<Instant>,
    quitting: bool,
    /// A member was renamed: the history shown is read again, so that every row names its author as the
    /// node's naming rule does now (as `/history` does).
    pub reload: bool,
    /// The clock that decides which timestamps get a date (fixed by the tests).
    now_ms: Option<u64>,
}

impl App {
    pub fn new(started: Started) -> App {
        App {
            started,
            messages: BTreeMap::new(),
            ids: HashMap::new(),
            acks: HashMap::new(),
            status: None,
            names: HashMap::new(),
            notes: VecDeque::new(),
            notes_scroll: 0,
            popup: None,
            input: new_input(),
            typed: Vec::new(),
            typed_pos: None,
            draft: String::new(),
            scroll: 0,
            unseen: 0,
            unread_from: None,
            focused: true,
            history_width: 0,
            history_height: 0,
            history_area: Rect::default(),
            notes_area: Rect::default(),
            esc_armed: None,
            quitting: false,
            reload: false,
            now_ms: None,
        }
    }

    /// The greeting, as `--ui plain` prints it.
    fn greet(&mut self) {
        let s = &self.started;
        let line = format!(
            "ChatMesh: {} listening on {}{}; logs in {}. Type /help for commands, Ctrl-C to leave.",
            s.name,
            s.addr,
            s.http.map(|a| format!(", control API on http://{a}")).unwrap_or_default(),
            s.log_dir
        );
        let demo = s.demo_key;
        self.note(Level::Info, line);
        if demo {
            self.note(
                Level::Error,
                "no network key given: using the well-known demo key (anyone can join); set --network-key-file \
                 or CHATMESH_NETWORK_KEY"
                    .into(),
            );
        }
        self.note(Level::Info, "looking for the mesh...".into());
    }

    fn note(&mut self, level: Level, text: String) {
        self.notes.push_back(Note { level, text });
        while self.notes.len() > MAX_NOTES {
            self.notes.pop_front();
        }
        // A new notice brings the pane back to the newest.
        self.notes_scroll = 0;
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.note(Level::Info, text.into());
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.note(Level::Error, text.into());
    }

    /// Adds (or updates) one message in its canonical place.
    pub fn insert(&mut self, m: MessageView) {
        if let Some(d) = m.delivery.filter(|_| m.own) {
            self.note_delivery(m.seq, d.acked, d.members);
        }
        if let Some(k) = self.ids.get(&m.id) {
            if let Some(old) = self.messages.get_mut(k) {
                // The same message; keep what is known about its author.
                let name = old.author_name.take();
                let id = old.author_id;
                *old = m;
                if old.author_name.is_none() {
                    old.author_name = name;
                    old.author_id = old.author_id.or(id);
                }
            }
            return;
        }
        let key: Key = (m.lamport, m.author.clone(), m.seq);
        let unread = !m.own && m.kind != "event" && self.unread_from.is_none() && (self.scroll > 0 || !self.focused);
        if unread {
            self.unread_from = Some(key.clone());
        }
        if self.scroll > 0 {
            // Keep the view where it is: the new rows (and the marker line) are (nearly always) below it.
            self.scroll += self.message_rows(&m, self.history_width.max(1)).len() + usize::from(unread);
            self.unseen += 1;
        }
        self.ids.insert(m.id.clone(), key.clone());
        self.messages.insert(key, m);
        while self.messages.len() > MAX_MESSAGES {
            if let Some((k, old)) = self.messages.pop_first() {
                self.ids.remove(&old.id);
                if old.own {
                    self.acks.remove(&old.seq);
                }
                if self.unread_from.as_ref() == Some(&k) {
                    self.unread_from = None;
                }
            }
        }
    }

    /// An own message's delivery status, from a `Delivery` notice or from the message itself (a reply, or
    /// the history read at start: right after a restart, the statuses the node restored). With the same
    /// members acknowledgements only grow, so a status read earlier but arriving later changes nothing.
    fn note_delivery(&mut self, seq: u64, acked: usize, members: usize) {
        let shown = self.acks.entry(seq).or_insert((acked, members));
        if shown.1 != members || acked > shown.0 {
            *shown = (acked, members);
        }
    }

    /// The history read from the store (at start, and again after the event stream lagged).
    pub fn load(&mut self, history: Vec<MessageView>) {
        for m in history {
            self.insert(m);
        }
    }

    pub fn set_status(&mut self, s: StatusView) {
        for m in &s.members {
            self.names.insert(m.key.clone(), (m.id, m.name.clone()));
        }
        self.status = Some(s);
    }

    /// The terminal gained or lost the focus: messages that arrive while it is away are marked unread.
    pub fn set_focus(&mut self, focused: bool) {
        if !focused && self.focused {
            // Leaving again: what was unread before has been seen.
            self.unread_from = None;
        }
        self.focused = focused;
    }

    /// Applies one event of the node; answers whether the member list should be refreshed now.
    pub fn apply_notice(&mut self, n: Notice) -> bool {
        match n {
            Notice::Message(m) => {
                self.insert(m);
                false
            }
            Notice::Delivery { seq, acked, members } => {
                self.note_delivery(seq, acked, members);
                false
            }
            Notice::Founded { id, term } => {
                self.info(format!("nobody answered: I founded the mesh as #{id}, coordinator of term {term}"));
                true
            }
            Notice::Joined { id, term, .. } => {
                self.info(format!("joined the mesh as #{id} (term {term})"));
                true
            }
            Notice::Coordinator { term, id, name, me, .. } => {
                if me {
                    self.info(format!("I am the coordinator (term {term})"));
                } else {
                    self.info(format!("coordinator: {} (#{id}), term {term}", name.unwrap_or_default()));
                }
                true
            }
            // The history shows these (the coordinator writes them into it).
            Notice::MemberJoined { .. } | Notice::MemberLeft { .. } | Notice::MemberFailed { .. } => true,
            Notice::MemberRenamed { .. } => {
                self.reload = true;
                true
            }
            Notice::IdReassigned { old, new, .. } => {
                self.info(format!("an ID clash after a merge: #{old} is now #{new}"));
                true
            }
            Notice::ElectionStarted { term } => {
                self.info(format!("election started for term {term}"));
                true
            }
            Notice::SendRefused { reason } => {
                self.error(format!("not sent: {reason}"));
                false
            }
            Notice::Rejected { .. } => false,
            Notice::Stopped => {
                self.info("stopped");
                false
            }
        }
    }

    /// A command's answer: several lines open a popup, one goes to the notices. Answers whether to quit.
    pub fn on_reply(&mut self, title: &str, reply: Reply) -> bool {
        if reply.lines.len() > 1 {
            self.popup = Some(Popup { title: title.to_owned(), lines: reply.lines, scroll: 0, page: 1 });
        } else {
            for l in reply.lines {
                self.note(Level::Reply, l);
            }
        }
        reply.quit
    }

    fn author(&self, m: &MessageView) -> (String, Option<u32>) {
        if let Some(n) = &m.author_name {
            return (n.clone(), m.author_id);
        }
        if let Some((id, name)) = self.names.get(&m.author) {
            return (name.clone(), Some(*id));
        }
        (m.author.get(..8).unwrap_or(&m.author).to_owned(), m.author_id)
    }

    fn now_ms(&self) -> u64 {
        self.now_ms.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        })
    }

    /// The line printed on the normal screen once the terminal is given back.
    fn goodbye(&self, left: bool) -> String {
        let s = &self.started;
        let what = if left {
            "left the mesh"
        } else {
            "stopped without the node confirming its leave (the others will notice it gone)"
        };
        let history = match &self.status {
            Some(st) => format!(
                "; {} messages in the history (digest {})",
                st.history.count,
                st.history.digest.get(..12).unwrap_or(&st.history.digest)
            ),
            None => String::new(),
        };
        format!(
            "ChatMesh: {} {what}{history}. It is kept in {}: `chatmesh history --data-dir {}` prints it.",
            s.name, s.data_dir, s.data_dir
        )
    }
}

/// A stable colour for an author key.
fn author_colour(key: &str) -> Color {
    // FNV-1a: stable across runs and machines.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    AUTHOR_COLOURS[(h % AUTHOR_COLOURS.len() as u64) as usize]
}

#[cfg(test)]
mod tests;
