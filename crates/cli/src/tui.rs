//! The full-screen terminal interface: the history in canonical order, the members, a status line, the
//! notices and replies, and an input box with line editing.
//!
//! The state lives in [`App`], plain data with pure methods (`apply_notice`, `on_key`, `on_mouse`, `render`)
//! that the tests drive without a terminal; [`run`] owns the terminal (through `term`) and feeds `App` from
//! the terminal's events (keys, paste, mouse, focus, resize; read on a thread of its own), the node's event stream, a status poll every
//! 300 ms, the results of spawned sends and commands, and the signals (SIGCONT after a stop repaints).

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

    /// Pasted text goes into the input box with its line breaks (whether the terminal sends LF, CR LF or a
    /// lone CR, as most do): a multi-line paste is a multi-line message. Tabs become spaces, other control
    /// characters are dropped, and so are line ends at the very end (a copied line usually carries one).
    pub fn paste(&mut self, text: &str) {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let clean: String =
            text.chars().map(|c| if c == '\t' { ' ' } else { c }).filter(|&c| c == '\n' || !c.is_control()).collect();
        let clean = clean.trim_end_matches('\n');
        // The input holds at most one message's worth: what does not fit is not taken (and said so).
        let room = MAX_BODY_LEN.saturating_sub(self.input_len());
        let mut cut = clean.len().min(room);
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut < clean.len() {
            self.error(format!(
                "pasted {} bytes: a message holds at most {MAX_BODY_LEN}; the first {cut} were taken",
                clean.len()
            ));
        }
        self.input.insert_str(&clean[..cut]);
    }

    /// Bytes in the input box, line breaks included.
    fn input_len(&self) -> usize {
        let lines = self.input.lines();
        lines.iter().map(String::len).sum::<usize>() + lines.len().saturating_sub(1)
    }

    pub fn input_text(&self) -> String {
        self.input.lines().join("\n")
    }

    fn set_input(&mut self, text: &str) {
        self.input = new_input();
        self.input.insert_str(text);
    }

    fn input_is_empty(&self) -> bool {
        self.input.lines().iter().all(String::is_empty)
    }

    pub fn on_key(&mut self, k: KeyEvent) -> Action {
        self.on_key_at(k, Instant::now())
    }

    /// `on_key` at `now` (the Esc-twice window is measured in time).
    pub fn on_key_at(&mut self, k: KeyEvent, now: Instant) -> Action {
        if k.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        let quit = if self.quitting { Action::QuitNow } else { Action::Quit };
        match k.code {
            KeyCode::Char('c') if ctrl => return quit,
            // Ctrl-D leaves on an empty line, as in a shell; otherwise it deletes the next character.
            KeyCode::Char('d') if ctrl && self.input_is_empty() => return quit,
            KeyCode::Char('z') if ctrl => return Action::Suspend,
            KeyCode::Char('l') if ctrl => return Action::Repaint,
            _ => {}
        }
        if let Some(p) = &mut self.popup {
            match k.code {
                KeyCode::Esc | KeyCode::Enter => {
                    self.popup = None;
                    return Action::None;
                }
                KeyCode::Up => p.scroll = p.scroll.saturating_sub(1),
                KeyCode::Down => p.scroll += 1,
                KeyCode::PageUp => p.scroll = p.scroll.saturating_sub(p.page.max(1)),
                KeyCode::PageDown => p.scroll += p.page.max(1),
                KeyCode::Home => p.scroll = 0,
                // Clamped at the next render.
                KeyCode::End => p.scroll = usize::MAX / 2,
                _ => {
                    // Any other key closes it and does its usual work.
                    self.popup = None;
                    return self.on_key_at(k, now);
                }
            }
            return Action::None;
        }
        if k.code == KeyCode::Esc {
            if self.quitting {
                return Action::None;
            }
            if self.esc_armed.take().is_some_and(|t| now.saturating_duration_since(t) <= ESC_WINDOW) {
                return Action::Quit;
            }
            self.esc_armed = Some(now);
            // One reminder line, not one per press.
            if self.notes.back().is_none_or(|n| n.text != ESC_REMINDER) {
                self.info(ESC_REMINDER);
            }
            return Action::None;
        }
        self.esc_armed = None;
        let page = self.history_height.saturating_sub(1).max(1);
        let (row, _) = self.input.cursor();
        match k.code {
            // Alt-Enter (or Shift-Enter where the terminal tells it apart) starts a new line of the message.
            KeyCode::Enter if alt || k.modifiers.contains(KeyModifiers::SHIFT) => {
                if self.input_len() < MAX_BODY_LEN {
                    self.input.insert_newline();
                }
            }
            KeyCode::Enter => return self.submit(),
            // Readline's Ctrl-U (tui-textarea's is undo).
            KeyCode::Char('u') if ctrl => {
                self.input.delete_line_by_head();
            }
            KeyCode::Up if k.modifiers.is_empty() && row == 0 => self.history_up(),
            KeyCode::Down if k.modifiers.is_empty() && row + 1 >= self.input.lines().len() => self.history_down(),
            // Clamped by the next render.
            KeyCode::PageUp if alt => self.notes_scroll += NOTE_ROWS,
            KeyCode::PageDown if alt => self.notes_scroll = self.notes_scroll.saturating_sub(NOTE_ROWS),
            KeyCode::PageUp => self.scroll_up(page),
            KeyCode::PageDown => self.scroll_down(page),
            // No tab stops in a chat line.
            KeyCode::Tab | KeyCode::BackTab => {}
            // Full: one message's worth (a longer one could not be sent anyway).
            KeyCode::Char(c) if !ctrl && !alt && self.input_len() + c.len_utf8() > MAX_BODY_LEN => {
                if self.notes.back().is_none_or(|n| n.text != INPUT_FULL) {
                    self.error(INPUT_FULL);
                }
            }
            _ => {
                self.input.input(k);
            }
        }
        Action::None
    }

    /// The mouse: the wheel scrolls the history or, over it, the notices pane.
    pub fn on_mouse(&mut self, m: MouseEvent) {
        let at = Position { x: m.column, y: m.row };
        let over_notes = self.notes_area.contains(at);
        match m.kind {
            MouseEventKind::ScrollUp if over_notes => self.notes_scroll += WHEEL_ROWS,
            MouseEventKind::ScrollDown if over_notes => {
                self.notes_scroll = self.notes_scroll.saturating_sub(WHEEL_ROWS)
            }
            MouseEventKind::ScrollUp => {
                if let Some(p) = &mut self.popup {
                    p.scroll = p.scroll.saturating_sub(WHEEL_ROWS);
                } else {
                    self.scroll_up(WHEEL_ROWS);
                }
            }
            MouseEventKind::ScrollDown => {
                if let Some(p) = &mut self.popup {
                    p.scroll += WHEEL_ROWS;
                } else {
                    self.scroll_down(WHEEL_ROWS);
                }
            }
            _ => {}
        }
    }

    fn scroll_up(&mut self, rows: usize) {
        // Clamped at the top by the next render.
        self.scroll += rows;
    }

    fn scroll_down(&mut self, rows: usize) {
        self.scroll = self.scroll.saturating_sub(rows);
        if self.scroll == 0 {
            self.unseen = 0;
        }
    }

    fn history_up(&mut self) {
        if self.typed.is_empty() {
            return;
        }
        let pos = match self.typed_pos {
            None => {
                self.draft = self.input_text();
                self.typed.len() - 1
            }
            Some(p) => p.saturating_sub(1),
        };
        self.typed_pos = Some(pos);
        let line = self.typed[pos].clone();
        self.set_input(&line);
    }

    fn history_down(&mut self) {
        match self.typed_pos {
            None => {}
            Some(p) if p + 1 < self.typed.len() => {
                self.typed_pos = Some(p + 1);
                let line = self.typed[p + 1].clone();
                self.set_input(&line);
            }
            Some(_) => {
                self.typed_pos = None;
                let draft = std::mem::take(&mut self.draft);
                self.set_input(&draft);
            }
        }
    }

    fn submit(&mut self) -> Action {
        let line = self.input_text();
        self.input = new_input();
        self.typed_pos = None;
        self.draft.clear();
        if line.trim().is_empty() {
            return Action::None;
        }
        if self.typed.last() != Some(&line) {
            self.typed.push(line.clone());
        }
        if self.quitting {
            self.error("leaving the mesh: nothing more is sent");
            return Action::None;
        }
        match commands::parse(&line) {
            Ok(Input::Nothing) => Action::None,
            Ok(Input::Message(text)) => {
                // Writing brings the view back to the newest messages, and means what came before was read.
                self.scroll = 0;
                self.unseen = 0;
                self.unread_from = None;
                Action::Send(text)
            }
            Ok(Input::Command(cmd)) => Action::Exec(cmd, line.trim().to_owned()),
            Err(e) => {
                self.error(e);
                Action::None
            }
        }
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

    fn message_spans(&self, m: &MessageView) -> Vec<Span<'static>> {
        let stamp = commands::fmt_stamp(m.sent_at, self.now_ms());
        let time = Span::styled(format!("{stamp} "), Style::new().fg(Color::DarkGray));
        if m.kind == "event" {
            let style = Style::new().fg(Color::DarkGray).add_modifier(Modifier::ITALIC);
            return vec![time, Span::styled(format!("* {}", m.text), style)];
        }
        let colour = author_colour(&m.author);
        let (name, id) = self.author(m);
        let mut spans = vec![time, Span::styled(name, Style::new().fg(colour).add_modifier(Modifier::BOLD))];
        if let Some(id) = id {
            spans.push(Span::styled(format!("#{id}"), Style::new().fg(colour)));
        }
        spans.push(Span::raw(": "));
        spans.push(Span::raw(m.text.clone()));
        if m.own {
            let d = self.acks.get(&m.seq).map(|&(acked, members)| DeliveryView { acked, members });
            let colour = match d {
                Some(d) if d.all() => Color::Green,
                Some(d) if d.members > 0 => Color::Yellow,
                _ => Color::DarkGray,
            };
            spans.push(Span::styled(format!("  {}", commands::delivery_mark(d)), Style::new().fg(colour)));
        }
        spans
    }

    fn message_rows(&self, m: &MessageView, width: usize) -> Vec<Line<'static>> {
        wrap(&self.message_spans(m), width, INDENT)
    }

    pub fn render(&mut self, f: &mut Frame) {
        let area = f.area();
        if area.width == 0 || area.height == 0 {
            return;
        }
        // The input box grows with the lines of the message, up to INPUT_ROWS (never over half the screen).
        let input_rows = self.input.lines().len().clamp(1, INPUT_ROWS).min((area.height as usize / 2).max(1)) as u16;
        let [main, status_area, input_area] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(1), Constraint::Length(input_rows)]).areas(area);
        let members_width = if main.width >= 2 * MEMBERS_WIDTH { MEMBERS_WIDTH } else { 0 };
        let [left, right] = Layout::horizontal([Constraint::Min(0), Constraint::Length(members_width)]).areas(main);
        let note_rows = self.note_rows(left.width.saturating_sub(2) as usize);
        // Whole notices only: the newest (up to half the pane, however long), those before it that fit
        // within NOTE_ROWS, and a recent warning whatever its length.
        let mut per_note = vec![0; self.notes.len()];
        for (i, _) in &note_rows {
            per_note[*i] += 1;
        }
        let mut want = 0;
        for (age, (&rows, n)) in per_note.iter().zip(&self.notes).rev().enumerate() {
            // A recent warning is shown whole even past NOTE_ROWS.
            let warning = n.level == Level::Error && age < 3;
            if want > 0 && want + rows > NOTE_ROWS && !warning {
                break;
            }
            want += rows;
        }
        let want = want.min(left.height as usize / 2) as u16;
        let notes_height = if want > 0 && left.height >= want + 2 + 5 { want + 2 } else { 0 };
        let [history_area, notes_area] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(notes_height)]).areas(left);
        self.history_area = history_area;
        self.notes_area = notes_area;
        self.render_history(f, history_area);
        if notes_height > 0 {
            self.render_notes(f, notes_area, note_rows);
        }
        if members_width > 0 {
            self.render_members(f, right);
        }
        self.render_status(f, status_area);
        self.render_input(f, input_area);
        if self.popup.is_some() {
            self.render_popup(f, main);
        }
    }

    fn render_history(&mut self, f: &mut Frame, area: Rect) {
        let mesh = self.status.as_ref().map(|s| s.mesh.clone()).unwrap_or_default();
        let mut block = Block::bordered().title(format!(" ChatMesh {mesh} "));
        if self.scroll > 0 {
            let more = if self.unseen > 0 { format!("{} new, ", self.unseen) } else { String::new() };
            block = block.title_bottom(
                Line::styled(format!(" scrolled up: {more}PgDn to follow "), Style::new().fg(Color::Yellow))
                    .right_aligned(),
            );
        }
        let inner = block.inner(area);
        f.render_widget(block, area);
        let (width, height) = (inner.width as usize, inner.height as usize);
        self.history_width = width;
        self.history_height = height;
        if width == 0 || height == 0 {
            return;
        }
        if self.messages.is_empty() {
            let hint = Line::styled("no messages yet: type one, or /help", Style::new().fg(Color::DarkGray));
            f.render_widget(Paragraph::new(hint), inner);
            return;
        }
        // From the newest up, just as many rows as the view needs.
        let need = self.scroll + height;
        let mut rows: Vec<Line<'static>> = Vec::new();
        let marker = Style::new().fg(Color::LightRed);
        for (k, m) in self.messages.iter().rev() {
            rows.extend(self.message_rows(m, width).into_iter().rev());
            if self.unread_from.as_ref() == Some(k) {
                let pad = width.saturating_sub(text_width(UNREAD_MARK)) / 2;
                rows.push(Line::styled(format!("{}{UNREAD_MARK}", " ".repeat(pad)), marker));
            }
            if rows.len() >= need {
                break;
            }
        }
        if rows.len() < need {
            // The top of the history: no further up.
            self.scroll = rows.len().saturating_sub(height);
        }
        if self.scroll == 0 {
            self.unseen = 0;
        }
        let skip = self.scroll.min(rows.len());
        let end = (skip + height).min(rows.len());
        let shown: Vec<Line<'static>> = rows[skip..end].iter().rev().cloned().collect();
        // Newest at the bottom, next to the input line.
        let h = shown.len() as u16;
        let at = Rect { y: inner.y + inner.height - h, height: h, ..inner };
        f.render_widget(Paragraph::new(shown), at);
    }

    /// Every notice kept, wrapped to `width`, each row with the index of its notice.
    fn note_rows(&self, width: usize) -> Vec<(usize, Line<'static>)> {
        let mut rows = Vec::new();
        for (i, n) in self.notes.iter().enumerate() {
            let (prefix, style) = match n.level {
                Level::Info => ("* ", Style::new().fg(Color::Gray)),
                Level::Reply => ("", Style::new()),
                Level::Error => ("! ", Style::new().fg(Color::Red)),
            };
            for r in wrap(&[Span::styled(format!("{prefix}{}", n.text), style)], width.max(1), 2) {
                rows.push((i, r));
            }
        }
        rows
    }

    fn render_notes(&mut self, f: &mut Frame, area: Rect, rows: Vec<(usize, Line<'static>)>) {
        let height = area.height.saturating_sub(2) as usize;
        self.notes_scroll = self.notes_scroll.min(rows.len().saturating_sub(height));
        let mut block = Block::bordered().title(" Notices ").border_style(Style::new().fg(Color::DarkGray));
        if self.notes_scroll > 0 {
            block = block.title_bottom(
                Line::styled(" scrolled up: Alt-PgDn or the wheel ", Style::new().fg(Color::Yellow)).right_aligned(),
            );
        } else if rows.len() > height {
            block = block.title_bottom(Line::from(" Alt-PgUp for older ").right_aligned());
        }
        let inner = block.inner(area);
        f.render_widget(block, area);
        if inner.width == 0 || inner.height == 0 {
            return;
        }
        let end = rows.len() - self.notes_scroll;
        let start = end.saturating_sub(height);
        let shown: Vec<Line<'static>> = rows.into_iter().skip(start).take(end - start).map(|(_, l)| l).collect();
        f.render_widget(Paragraph::new(shown), inner);
    }

    fn render_members(&self, f: &mut Frame, area: Rect) {
        let grey = Style::new().fg(Color::DarkGray);
        let Some(s) = &self.status else {
            let block = Block::bordered().title(" Members ");
            let inner = block.inner(area);
            f.render_widget(block, area);
            f.render_widget(Paragraph::new(Line::styled("waiting for the node...", grey)), inner);
            return;
        };
        let (alive, gone): (Vec<_>, Vec<_>) = s.members.iter().partition(|m| m.state == "alive");
        let title = match gone.len() {
            0 => format!(" Members: {} online ", alive.len()),
            n => format!(" Members: {} online, {n} gone ", alive.len()),
        };
        let block = Block::bordered().title(title);
        let inner = block.inner(area);
        f.render_widget(block, area);
        if s.members.is_empty() {
            let text = match s.role {
                "discovering" => "looking for the mesh...",
                "joining" => "joining...",
                _ => "no members",
            };
            f.render_widget(Paragraph::new(Line::styled(text, grey)), inner);
            return;
        }
        let mut alive = alive;
        alive.sort_by_key(|m| m.id);
        let mut lines: Vec<Line> = alive
            .iter()
            .map(|m| {
                let mut spans = vec![
                    if m.coordinator {
                        Span::styled("★ ", Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD))
                    } else {
                        Span::raw("  ")
                    },
                    Span::raw(format!("#{:<3} ", m.id)),
                    Span::styled(m.name.clone(), Style::new().fg(author_colour(&m.key))),
                ];
                if m.key == s.key {
                    spans.push(Span::styled(" (me)", Style::new().add_modifier(Modifier::BOLD)));
                }
                Line::from(spans)
            })
            .collect();
        if !gone.is_empty() {
            // Who left or failed is one line, not a row each forever (`/members` lists them all).
            let mut gone = gone;
            gone.sort_by_key(|m| m.id);
            let names: Vec<&str> = gone.iter().map(|m| m.name.as_str()).collect();
            let text = format!("  {} gone: {}", gone.len(), names.join(", "));
            lines.extend(wrap(&[Span::styled(text, grey)], inner.width as usize, 4));
        }
        f.render_widget(Paragraph::new(lines), inner);
    }

    fn render_status(&self, f: &mut Frame, area: Rect) {
        let bar = Style::new().fg(Color::Black).bg(Color::Gray);
        let mut spans = Vec::new();
        // The tags first: the line is cut on the right on narrow terminals.
        if self.started.demo_key {
            spans.push(Span::styled(
                " DEMO KEY ",
                Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
            ));
        }
        match &self.status {
            None => spans.push(Span::raw(format!(" me: {} | starting...", self.started.name))),
            Some(s) => {
                if s.election_running {
                    spans.push(Span::styled(
                        " election… ",
                        Style::new().fg(Color::White).bg(Color::Blue).add_modifier(Modifier::BOLD),
                    ));
                }
                let id = s.id.map_or("#-".to_string(), |i| format!("#{i}"));
                let coordinator = s.coordinator.as_ref().map_or("none".to_string(), |c| {
                    let name = c.name.clone().unwrap_or_else(|| c.key.get(..8).unwrap_or(&c.key).to_string());
                    format!("{name} #{}", c.id)
                });
                let online = s.members.iter().filter(|m| m.state == "alive").count();
                let digest = s.history.digest.get(..12).unwrap_or(&s.history.digest);
                let mut text = format!(
                    " me: {} {id} | term {} | coordinator {coordinator} | {online} online | digest {digest} | {} msgs | pending {} | links {}",
                    s.name, s.term, s.history.count, s.pending_acks, s.links
                );
                if matches!(s.role, "discovering" | "joining" | "stopped") {
                    text.push_str(&format!(" | {}", s.role));
                }
                spans.push(Span::raw(text));
            }
        }
        f.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
    }

    fn render_input(&mut self, f: &mut Frame, area: Rect) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let prompt = if self.quitting { "leaving… " } else { "> " };
        let prompt_width = (text_width(prompt) as u16).min(area.width);
        let [prompt_area, box_area] =
            Layout::horizontal([Constraint::Length(prompt_width), Constraint::Min(0)]).areas(area);
        let style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
        f.render_widget(Paragraph::new(Line::styled(prompt, style)), prompt_area);
        if self.quitting {
            return;
        }
        f.render_widget(&self.input, box_area);
        // The terminal's own cursor goes where tui-textarea drew its cursor (its viewport is not public), so
        // that the terminal, an input method or a screen reader knows where typing goes.
        let buf = f.buffer_mut();
        let area = box_area.intersection(buf.area);
        if area.is_empty() {
            return;
        }
        let at = area.positions().find(|&p| buf[p].modifier.contains(Modifier::REVERSED));
        if let Some(p) = at {
            f.set_cursor_position(p);
        }
    }

    fn render_popup(&mut self, f: &mut Frame, area: Rect) {
        let Some(p) = &mut self.popup else { return };
        if area.width < 3 || area.height < 3 {
            return;
        }
        let longest = p.lines.iter().map(|l| text_width(l)).max().unwrap_or(0) + 2;
        let width = (longest as u16).max(30).min(area.width);
        let inner_width = width.saturating_sub(2) as usize;
        let rows: Vec<Line<'static>> =
            p.lines.iter().flat_map(|l| wrap(&[Span::raw(l.clone())], inner_width, 2)).collect();
        let height = (rows.len() as u16 + 2).min(area.height);
        let page = height.saturating_sub(2) as usize;
        p.page = page.max(1);
        p.scroll = p.scroll.min(rows.len().saturating_sub(page));
        let rect = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
        let mut block = Block::bordered()
            .title(format!(" {} ", p.title))
            .border_style(Style::new().fg(Color::Cyan))
            .title_bottom(Line::from(" Esc closes ").right_aligned());
        if rows.len() > page {
            block = block.title_bottom(Line::from(format!(
                " {}-{} of {} (↑↓ PgUp PgDn) ",
                p.scroll + 1,
                (p.scroll + page).min(rows.len()),
                rows.len()
            )));
        }
        let shown: Vec<Line<'static>> = rows.into_iter().skip(p.scroll).take(page).collect();
        f.render_widget(Clear, rect);
        f.render_widget(Paragraph::new(shown).block(block), rect);
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

// ---------------------------------------------------------------------------------------------------------------
// The terminal.

/// The terminal taken (raw mode, alternate screen, bracketed paste, mouse and focus reports) for as long as it
/// lives.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> anyhow::Result<(TerminalGuard, Terminal<CrosstermBackend<std::io::Stdout>>)> {
        // Focus reports mark what arrives while the user is away.
        let modes = term::Modes { mouse: true, focus: true, log_other_panics: true };
        term::enter(modes).map_err(|e| anyhow::anyhow!("cannot use the terminal: {e} (try --ui plain)"))?;
        let guard = TerminalGuard;
        let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        terminal.clear()?;
        Ok((guard, terminal))
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        term::leave();
    }
}

/// Reads the terminal on a thread of its own, blocking in crossterm's `read`. crossterm is built with
/// `use-dev-tty`: its default source polls the terminal edge-triggered and reads 1,024 bytes at a time, so a
/// burst of more than that was left unread until the next key (the message typed was stuck, its Enter too).
/// (crossterm's `EventStream` is no way out: with `use-dev-tty` it sees one event per wake-up of a helper
/// thread, and a 5,000-character burst took seconds.)
struct KeyReader {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    rx: mpsc::Receiver<std::io::Result<Event>>,
}

impl KeyReader {
    fn spawn() -> anyhow::Result<KeyReader> {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(MAX_EVENTS_PER_FRAME);
        let flag = stop.clone();
        std::thread::Builder::new().name("chatmesh-keys".into()).spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let event = match crossterm::event::poll(Duration::from_millis(100)) {
                    Ok(false) => continue,
                    Ok(true) => crossterm::event::read(),
                    Err(e) => Err(e),
                };
                let failed = event.is_err();
                if tx.blocking_send(event).is_err() || failed {
                    break;
                }
            }
        })?;
        Ok(KeyReader { stop, rx })
    }
}

impl Drop for KeyReader {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The signals the loop handles: SIGTERM, SIGHUP and SIGINT leave the mesh (raw mode turns Ctrl-C into a
/// key; these come from elsewhere), SIGCONT takes the terminal again after a stop.
struct Signals {
    #[cfg(unix)]
    leave: Vec<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    cont: Option<tokio::signal::unix::Signal>,
}

enum Sig {
    Leave,
    Continued,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let leave = [SignalKind::terminate(), SignalKind::hangup(), SignalKind::interrupt()]
                .into_iter()
                .filter_map(|k| signal(k).ok())
                .collect();
            let cont = signal(SignalKind::from_raw(signal_hook::consts::SIGCONT)).ok();
            Signals { leave, cont }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> Sig {
        #[cfg(unix)]
        {
            let Signals { leave, cont } = self;
            let leave = async {
                if leave.is_empty() {
                    return std::future::pending().await;
                }
                futures_util::future::select_all(leave.iter_mut().map(|s| Box::pin(s.recv()))).await;
            };
            let cont = async {
                match cont {
                    Some(c) => c.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = leave => Sig::Leave,
                _ = cont => Sig::Continued,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Sig::Leave
        }
    }
}

/// Results of the work spawned off the loop.
enum Done {
    Status(Option<StatusView>),
    History(Result<Vec<MessageView>, String>),
    Sent(Result<MessageView, chatmesh_node::SendError>),
    Reply(String, Reply),
}

pub async fn run(node: Handle, started: Started) -> anyhow::Result<()> {
    // Subscribe before reading the history, so that nothing falls between the two.
    let mut events = node.subscribe();
    let (guard, mut terminal) = TerminalGuard::enter()?;
    let result = event_loop(&node, started, &mut events, &mut terminal).await;
    let _ = terminal.show_cursor();
    drop(terminal);
    drop(guard);
    // On the normal screen, after the terminal is given back: the chat's last word.
    let (result, goodbye) = match result {
        Ok(goodbye) => (Ok(()), Some(goodbye)),
        Err(e) => (Err(e), None),
    };
    if let Some(line) = goodbye {
        println!("{line}");
    }
    result
}

/// Terminal events handled between two frames at most (a frame still comes during an endless paste).
const MAX_EVENTS_PER_FRAME: usize = 4096;

/// What one terminal event asks of the loop.
struct Flow {
    /// Some(true): leave gracefully; Some(false): stop at once.
    quit: Option<bool>,
    /// The terminal cannot be read any more.
    fatal: Option<anyhow::Error>,
}

/// One event from the terminal: keys, a paste, the mouse, the focus.
fn on_event(
    app: &mut App,
    event: Option<std::io::Result<Event>>,
    node: &Handle,
    done_tx: &mpsc::UnboundedSender<Done>,
) -> Flow {
    let mut flow = Flow { quit: None, fatal: None };
    match event {
        Some(Ok(Event::Key(k))) => match app.on_key(k) {
            Action::None => {}
            Action::Send(text) => {
                let (node, tx) = (node.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let _ = tx.send(Done::Sent(node.send(text).await));
                });
            }
            Action::Exec(cmd, title) => {
                let (node, tx) = (node.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let reply = commands::execute(&node, cmd).await;
                    let _ = tx.send(Done::Reply(title, reply));
                });
            }
            // Stops the whole process until SIGCONT; the node's peers see a pause, as with SIGSTOP.
            Action::Suspend => term::suspend(false),
            Action::Repaint => term::request_repaint(),
            Action::Quit => flow.quit = Some(true),
            Action::QuitNow => flow.quit = Some(false),
        },
        Some(Ok(Event::Paste(text))) => app.paste(&text),
        Some(Ok(Event::Mouse(m))) => app.on_mouse(m),
        Some(Ok(Event::FocusGained)) => app.set_focus(true),
        Some(Ok(Event::FocusLost)) => app.set_focus(false),
        // A resize: the next draw adapts.
        Some(Ok(Event::Resize(..))) => {}
        Some(Err(e)) => {
            flow.fatal = Some(anyhow::anyhow!("cannot read the keyboard: {e}"));
            flow.quit = Some(true);
        }
        None => {
            flow.fatal = Some(anyhow::anyhow!("the keyboard closed"));
            flow.quit = Some(true);
        }
    }
    flow
}

/// Runs the screen until the node stops; answers the goodbye line.
async fn event_loop(
    node: &Handle,
    started: Started,
    events: &mut tokio::sync::broadcast::Receiver<Notice>,
    terminal: &mut Terminal<CrosstermBackend<std::io::Stdout>>,
) -> anyhow::Result<String> {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut app = App::new(started);
    app.greet();

    let load = |node: &Handle| {
        let (node, tx) = (node.clone(), done_tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(Done::History(node.history(Some(1000)).await));
        });
    };
    let mut status_pending = false;
    let ask_status = |node: &Handle, pending: &mut bool| {
        if *pending {
            return;
        }
        *pending = true;
        let (node, tx) = (node.clone(), done_tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(Done::Status(node.status().await));
        });
    };
    load(node);
    ask_status(node, &mut status_pending);

    let mut keys = KeyReader::spawn()?;
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut signals = Signals::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut fatal: Option<anyhow::Error> = None;
    let mut keys_open = true;
    let mut draw_failed = false;
    let mut left = false;

    loop {
        let drawn = {
            let _frame = term::draw_lock();
            if term::take_repaint() {
                let _ = terminal.clear();
            }
            terminal.draw(|f| app.render(f)).map(|_| ())
        };
        if let Err(e) = drawn {
            // The terminal is gone (hung up?): leave the mesh, and say why afterwards.
            if !draw_failed {
                draw_failed = true;
                tracing::warn!("cannot draw: {e}");
                if !app.quitting {
                    fatal = Some(anyhow::anyhow!("cannot draw on the terminal: {e}"));
                    app.quitting = true;
                    deadline = Some(tokio::time::Instant::now() + STOP_WAIT);
                    node.shutdown(true).await;
                }
            }
        }
        // Some(true): leave gracefully; Some(false): stop at once.
        let mut quit: Option<bool> = None;
        tokio::select! {
            key = keys.rx.recv(), if keys_open => {
                // Everything the terminal has sent already is handled before the next frame: a fast burst of
                // typing or a paste without bracketed paste costs one frame, not one per key.
                let mut key = Some(key);
                let mut handled = 0;
                while let Some(event) = key.take() {
                    let flow = on_event(&mut app, event, node, &done_tx);
                    if let Some(e) = flow.fatal {
                        keys_open = false;
                        fatal = Some(e);
                    }
                    quit = quit.or(flow.quit);
                    handled += 1;
                    if keys_open && quit.is_none() && handled < MAX_EVENTS_PER_FRAME {
                        key = keys.rx.try_recv().ok().map(Some);
                    }
                }
            },
            notice = events.recv() => match notice {
                Ok(Notice::Stopped) => {
                    app.apply_notice(Notice::Stopped);
                    left = app.quitting;
                    break;
                }
                Ok(n) => {
                    if app.apply_notice(n) {
                        ask_status(node, &mut status_pending);
                    }
                    if std::mem::take(&mut app.reload) {
                        load(node);
                    }
                }
                Err(RecvError::Lagged(k)) => {
                    app.info(format!("{k} events skipped: reloading the history"));
                    load(node);
                    ask_status(node, &mut status_pending);
                }
                Err(RecvError::Closed) => break,
            },
            _ = tick.tick() => ask_status(node, &mut status_pending),
            Some(done) = done_rx.recv() => match done {
                Done::Status(s) => {
                    status_pending = false;
                    if let Some(s) = s {
                        app.set_status(s);
                    }
                }
                Done::History(Ok(h)) => app.load(h),
                Done::History(Err(e)) => app.error(format!("cannot read the history: {e}")),
                Done::Sent(Ok(m)) => app.insert(m),
                Done::Sent(Err(e)) => app.error(e.to_string()),
                Done::Reply(title, reply) => {
                    if app.on_reply(&title, reply) {
                        quit = Some(true);
                    }
                }
            },
            sig = signals.next() => match sig {
                Sig::Leave => quit = Some(!app.quitting),
                Sig::Continued => term::resume(),
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                tracing::warn!("the node did not stop within {STOP_WAIT:?}: stopping it at once");
                let _ = tokio::time::timeout(Duration::from_millis(500), node.shutdown(false)).await;
                break;
            }
        }
        match quit {
            Some(true) if !app.quitting => {
                app.quitting = true;
                app.popup = None;
                app.info("leaving the mesh...");
                deadline = Some(tokio::time::Instant::now() + STOP_WAIT);
                let node = node.clone();
                tokio::spawn(async move { node.shutdown(true).await });
            }
            Some(true) => {}
            Some(false) => {
                let _ = tokio::time::timeout(Duration::from_millis(500), node.shutdown(false)).await;
                break;
            }
            None => {}
        }
    }
    {
        let _frame = term::draw_lock();
        let _ = terminal.draw(|f| app.render(f));
    }
    match fatal {
        Some(e) => Err(e),
        None => Ok(app.goodbye(left)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmesh_node::events::{CoordinatorView, HistorySummary, MemberView};
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;

    fn started() -> Started {
        Started {
            name: "ana".into(),
            key: key('a'),
            addr: "127.0.0.1:7000".parse().unwrap(),
            http: None,
            data_dir: "/tmp/x".into(),
            log_dir: "/tmp/x/logs".into(),
            demo_key: true,
        }
    }

    fn key(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn msg(author: char, name: &str, lamport: u64, seq: u64, text: &str, own: bool) -> MessageView {
        MessageView {
            id: format!("{}/{seq}", key(author)),
            author: key(author),
            author_id: Some(u32::from(author as u8 - b'a' + 1)),
            author_name: Some(name.into()),
            author_label: name.into(),
            seq,
            lamport,
            deps: Vec::new(),
            sent_at: 1_700_000_000_000 + lamport * 1000,
            kind: "text",
            text: text.into(),
            own,
            delivery: None,
        }
    }

    fn member(id: u32, name: &str, state: &'static str, coordinator: bool) -> MemberView {
        MemberView {
            id,
            name: name.into(),
            key: key((b'a' + id as u8 - 1) as char),
            addr: format!("127.0.0.1:700{id}"),
            state,
            coordinator,
            linked: true,
        }
    }

    fn status() -> StatusView {
        StatusView {
            id: Some(1),
            name: "ana".into(),
            key: key('a'),
            mesh: "test".into(),
            addr: "127.0.0.1:7001".into(),
            role: "member",
            term: 4,
            coordinator: Some(CoordinatorView { id: 2, key: key('b'), name: Some("bob".into()) }),
            election_running: true,
            members: vec![
                member(1, "ana", "alive", false),
                member(2, "bob", "alive", true),
                member(3, "carol", "failed", false),
            ],
            history: HistorySummary { count: 3, digest: "0123456789abcdef".repeat(4) },
            pending_acks: 1,
            links: 2,
            rejected: 0,
            datagrams_dropped: 0,
            uptime_ms: 1000,
        }
    }

    fn draw(app: &mut App, w: u16, h: u16) -> Buffer {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| app.render(f)).unwrap();
        t.backend().buffer().clone()
    }

    /// The rows as text: a wide grapheme's second cell is not a character of its own.
    fn rows(b: &Buffer) -> Vec<String> {
        (0..b.area.height)
            .map(|y| {
                let mut row = String::new();
                let mut skip = 0;
                for x in 0..b.area.width {
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    let s = b[(x, y)].symbol();
                    skip = text_width(s).saturating_sub(1);
                    row.push_str(s);
                }
                row
            })
            .collect()
    }

    fn row_of(b: &Buffer, needle: &str) -> Option<usize> {
        rows(b).iter().position(|r| r.contains(needle))
    }

    fn press(app: &mut App, code: KeyCode) -> Action {
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn type_str(app: &mut App, s: &str) {
        for c in s.chars() {
            press(app, KeyCode::Char(c));
        }
    }

    #[test]
    fn a_late_older_message_takes_its_canonical_place() {
        let mut app = App::new(started());
        app.apply_notice(Notice::Message(msg('b', "bob", 5, 1, "newer words", false)));
        app.apply_notice(Notice::Message(msg('c', "carol", 7, 1, "newest words", false)));
        // Arrives last, but is older: it goes above both.
        app.apply_notice(Notice::Message(msg('d', "dan", 2, 1, "older words", false)));
        // And a duplicate (from the store, say) changes nothing.
        app.load(vec![msg('d', "dan", 2, 1, "older words", false)]);
        assert_eq!(app.messages.len(), 3);
        let b = draw(&mut app, 80, 20);
        let (older, newer, newest) = (
            row_of(&b, "older words").unwrap(),
            row_of(&b, "newer words").unwrap(),
            row_of(&b, "newest words").unwrap(),
        );
        assert!(older < newer && newer < newest, "{:#?}", rows(&b));
        let line = &rows(&b)[older];
        assert!(line.contains("dan#4: older words"), "{line}");
    }

    #[test]
    fn a_rename_reads_the_history_again_so_old_rows_show_the_new_name_as_history_does() {
        let mut app = App::new(started());
        app.apply_notice(Notice::Message(msg('b', "bob", 5, 1, "said as bob", false)));
        let notice = Notice::MemberRenamed { id: 2, key: key('b'), old: "bob".into(), new: "Bob Silva".into() };
        assert!(app.apply_notice(notice), "the member list is read again");
        assert!(std::mem::take(&mut app.reload), "and the history");
        // What the node answers then: the same message, named by the rule.
        app.load(vec![msg('b', "Bob Silva", 5, 1, "said as bob", false)]);
        let b = draw(&mut app, 80, 20);
        let line = &rows(&b)[row_of(&b, "said as bob").unwrap()];
        assert!(line.contains("Bob Silva#2: said as bob"), "{line}");
    }

    #[test]
    fn own_status_goes_stored_then_counted_then_all() {
        let mut app = App::new(started());
        app.apply_notice(Notice::Message(msg('a', "ana", 3, 7, "hello", true)));
        let b = draw(&mut app, 80, 20);
        assert!(rows(&b)[row_of(&b, "hello").unwrap()].contains("hello  ✓ stored"));
        app.apply_notice(Notice::Delivery { seq: 7, acked: 1, members: 3 });
        let b = draw(&mut app, 80, 20);
        assert!(rows(&b)[row_of(&b, "hello").unwrap()].contains("hello  ✓ 1/3"));
        app.apply_notice(Notice::Delivery { seq: 7, acked: 3, members: 3 });
        let b = draw(&mut app, 80, 20);
        assert!(rows(&b)[row_of(&b, "hello").unwrap()].contains("hello  ✓✓ all"));
    }

    /// After a restart the history read from the store carries the statuses the node restored: own
    /// messages every member acknowledged before the restart show `✓✓ all` at once, and a reply or a
    /// notice read late never takes a mark back.
    #[test]
    fn own_statuses_come_from_the_history_read_at_start() {
        let mut app = App::new(started());
        let with = |seq, text, acked, members| {
            let mut m = msg('a', "ana", seq, seq, text, true);
            m.delivery = Some(DeliveryView { acked, members });
            m
        };
        app.load(vec![with(1, "held by all", 2, 2), with(2, "held by one", 1, 2), with(3, "held by none", 0, 2)]);
        let b = draw(&mut app, 80, 20);
        assert!(rows(&b)[row_of(&b, "held by all").unwrap()].contains("held by all  ✓✓ all"));
        assert!(rows(&b)[row_of(&b, "held by one").unwrap()].contains("held by one  ✓ 1/2"));
        assert!(rows(&b)[row_of(&b, "held by none").unwrap()].contains("held by none  ✓ 0/2"));
        app.apply_notice(Notice::Delivery { seq: 2, acked: 2, members: 2 });
        app.insert(with(2, "held by one", 1, 2));
        let b = draw(&mut app, 80, 20);
        assert!(rows(&b)[row_of(&b, "held by one").unwrap()].contains("held by one  ✓✓ all"));
        // Other members (a view change) replace the status.
        app.apply_notice(Notice::Delivery { seq: 3, acked: 0, members: 1 });
        let b = draw(&mut app, 80, 20);
        assert!(rows(&b)[row_of(&b, "held by none").unwrap()].contains("held by none  ✓ 0/1"));
    }

    #[test]
    fn members_pane_marks_the_coordinator_and_collapses_the_gone() {
        let mut app = App::new(started());
        app.set_status(status());
        let b = draw(&mut app, 100, 20);
        let all = rows(&b);
        assert!(row_of(&b, "Members: 2 online, 1 gone").is_some(), "{all:#?}");
        let bob = row_of(&b, "bob").unwrap();
        assert!(all[bob].contains("★ #2"), "{}", all[bob]);
        let ana = all.iter().position(|r| r.contains("ana (me)")).unwrap();
        assert!(!all[ana].contains('★'));
        // Who is gone is one grey line, not a row each.
        let carol = row_of(&b, "carol").unwrap();
        assert!(all[carol].contains("1 gone: carol"), "{}", all[carol]);
        let x = all[carol].find("carol").unwrap();
        let col = all[carol][..x].chars().count() as u16;
        assert_eq!(b[(col, carol as u16)].fg, Color::DarkGray);
        let bob_col = all[bob][..all[bob].find("bob").unwrap()].chars().count() as u16;
        assert_ne!(b[(bob_col, bob as u16)].fg, Color::DarkGray);
        // The status line.
        let wide = rows(&draw(&mut app, 150, 20));
        let last = &wide[18];
        for part in [
            "me: ana #1",
            "term 4",
            "coordinator bob #2",
            "2 online",
            "digest 0123456789ab |",
            "3 msgs",
            "pending 1",
            "links 2",
            "election…",
            "DEMO KEY",
        ] {
            assert!(last.contains(part), "{part} in {last}");
        }
    }

    fn ctrl(app: &mut App, c: char) -> Action {
        app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
    }

    fn alt(app: &mut App, code: KeyCode) -> Action {
        app.on_key(KeyEvent::new(code, KeyModifiers::ALT))
    }

    /// The input row as drawn (the last row of a 60x10 screen).
    fn input_row(app: &mut App) -> String {
        let r = rows(&draw(app, 60, 10));
        r.last().unwrap().trim_end().to_owned()
    }

    #[test]
    fn input_editing_with_multibyte_characters() {
        let mut app = App::new(started());
        type_str(&mut app, "olá mundo");
        press(&mut app, KeyCode::Left);
        press(&mut app, KeyCode::Backspace);
        press(&mut app, KeyCode::Char('ã'));
        assert_eq!(app.input_text(), "olá munão");
        press(&mut app, KeyCode::Home);
        press(&mut app, KeyCode::Delete);
        press(&mut app, KeyCode::Right);
        press(&mut app, KeyCode::Right);
        press(&mut app, KeyCode::Char('😀'));
        assert_eq!(app.input_text(), "lá😀 munão");
        press(&mut app, KeyCode::End);
        press(&mut app, KeyCode::Backspace);
        assert_eq!(app.input_text(), "lá😀 munã");
        assert_eq!(input_row(&mut app), "> lá😀 munã");
        assert_eq!(press(&mut app, KeyCode::Enter), Action::Send("lá😀 munã".into()));
        assert_eq!(app.input_text(), "");
        let row = input_row(&mut app);
        assert!(row.starts_with("> ") && row.contains("type a message or /help"), "{row}");
        // Ctrl-U clears; Up and Down walk what was typed.
        type_str(&mut app, "/peers");
        assert!(matches!(press(&mut app, KeyCode::Enter), Action::Exec(Cmd::Peers, _)));
        type_str(&mut app, "draft");
        ctrl(&mut app, 'u');
        assert_eq!(app.input_text(), "");
        type_str(&mut app, "wip");
        press(&mut app, KeyCode::Up);
        assert_eq!(app.input_text(), "/peers");
        press(&mut app, KeyCode::Up);
        assert_eq!(app.input_text(), "lá😀 munã");
        press(&mut app, KeyCode::Up);
        assert_eq!(app.input_text(), "lá😀 munã");
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        assert_eq!(app.input_text(), "wip");
        // A mistake is reported, not sent.
        ctrl(&mut app, 'u');
        type_str(&mut app, "/frob");
        assert_eq!(press(&mut app, KeyCode::Enter), Action::None);
        assert!(app.notes.back().unwrap().text.contains("unknown command"));
        // Esc twice within a moment and Ctrl-C quit; two Escs seconds apart do not, and the reminder is
        // one line in the notices however often it is shown.
        let esc = KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE);
        let t0 = Instant::now();
        assert_eq!(app.on_key_at(esc, t0), Action::None);
        let notes = app.notes.len();
        assert_eq!(app.on_key_at(esc, t0 + Duration::from_secs(8)), Action::None, "8 s apart");
        assert_eq!(app.notes.len(), notes, "the reminder is not repeated");
        assert_eq!(app.on_key_at(esc, t0 + Duration::from_millis(8_500)), Action::Quit);
        assert_eq!(ctrl(&mut app, 'c'), Action::Quit);
        // Ctrl-D leaves on an empty line only; Ctrl-Z suspends.
        type_str(&mut app, "ab");
        press(&mut app, KeyCode::Home);
        assert_eq!(ctrl(&mut app, 'd'), Action::None);
        assert_eq!(app.input_text(), "b");
        press(&mut app, KeyCode::End);
        ctrl(&mut app, 'u');
        assert_eq!(ctrl(&mut app, 'd'), Action::Quit);
        assert_eq!(ctrl(&mut app, 'z'), Action::Suspend);
        assert_eq!(ctrl(&mut app, 'l'), Action::Repaint);
    }

    /// readline's keys, as irssi and weechat have them.
    #[test]
    fn words_and_line_ends_are_edited_as_in_readline() {
        let mut app = App::new(started());
        type_str(&mut app, "hello big world");
        ctrl(&mut app, 'w');
        assert_eq!(app.input_text(), "hello big ");
        type_str(&mut app, "again");
        ctrl(&mut app, 'a');
        // Alt-f goes to the start of the next word (as tui-textarea does it, like vi's `w`).
        alt(&mut app, KeyCode::Char('f'));
        ctrl(&mut app, 'k');
        assert_eq!(app.input_text(), "hello ");
        type_str(&mut app, "there friend");
        alt(&mut app, KeyCode::Char('b'));
        app.on_key(KeyEvent::new(KeyCode::Left, KeyModifiers::CONTROL));
        ctrl(&mut app, 'u');
        assert_eq!(app.input_text(), "there friend");
        app.on_key(KeyEvent::new(KeyCode::Right, KeyModifiers::CONTROL));
        type_str(&mut app, "dear ");
        ctrl(&mut app, 'e');
        type_str(&mut app, "!");
        assert_eq!(press(&mut app, KeyCode::Enter), Action::Send("there dear friend!".into()));
    }

    #[test]
    fn alt_enter_and_a_paste_make_a_multi_line_message() {
        let mut app = App::new(started());
        type_str(&mut app, "first");
        alt(&mut app, KeyCode::Enter);
        type_str(&mut app, "second");
        let r = rows(&draw(&mut app, 60, 10));
        assert_eq!(r[8].trim_end(), "> first");
        assert_eq!(r[9].trim_end(), "  second");
        // Up on the last line moves up in the message, not through what was typed.
        press(&mut app, KeyCode::Up);
        type_str(&mut app, "!");
        assert_eq!(press(&mut app, KeyCode::Enter), Action::Send("first!\nsecond".into()));
        app.paste("line one\rline two\r");
        assert_eq!(press(&mut app, KeyCode::Enter), Action::Send("line one\nline two".into()));
    }

    #[test]
    fn pasted_line_ends_are_line_breaks_whatever_the_terminal_sends() {
        let mut app = App::new(started());
        // Most terminals send a lone CR between pasted lines; it used to vanish and glue the lines.
        app.paste("line one of paste\rline two\r\nline three\nend\tof it\x07\r\n");
        assert_eq!(app.input_text(), "line one of paste\nline two\nline three\nend of it");
    }

    #[test]
    fn long_replies_open_a_popup_until_a_key() {
        let mut app = App::new(started());
        let lines: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
        let quit = app.on_reply("/history 40", Reply { lines, json: serde_json::Value::Null, quit: false });
        assert!(!quit);
        let b = draw(&mut app, 80, 24);
        assert!(row_of(&b, "line 0").is_some() && row_of(&b, "/history 40").is_some());
        press(&mut app, KeyCode::End);
        let b = draw(&mut app, 80, 24);
        assert!(row_of(&b, "line 39").is_some() && row_of(&b, "line 0 ").is_none());
        // A typed character closes it and is typed.
        press(&mut app, KeyCode::Char('x'));
        assert!(app.popup.is_none());
        assert_eq!(app.input_text(), "x");
    }

    #[test]
    fn long_messages_wrap_and_scroll() {
        let mut app = App::new(started());
        for i in 0..50 {
            app.insert(msg('b', "bob", i, i, &format!("message number {i} {}", "word ".repeat(i as usize % 7)), false));
        }
        let b = draw(&mut app, 40, 12);
        assert!(row_of(&b, "number 49").is_some());
        press(&mut app, KeyCode::PageUp);
        let b = draw(&mut app, 40, 12);
        assert!(row_of(&b, "number 49").is_none());
        assert!(row_of(&b, "PgDn").is_some());
        // Scrolled up, new messages do not move the view.
        let before = rows(&b);
        app.insert(msg('c', "carol", 60, 1, "late", false));
        let after = rows(&draw(&mut app, 40, 12));
        assert_eq!(before[1..6], after[1..6]);
        for _ in 0..100 {
            press(&mut app, KeyCode::PageUp);
        }
        let b = draw(&mut app, 40, 12);
        assert!(row_of(&b, "number 0 ").is_some(), "{:#?}", rows(&b));
        for _ in 0..100 {
            press(&mut app, KeyCode::PageDown);
        }
        let b = draw(&mut app, 40, 12);
        assert!(row_of(&b, "late").is_some());
        assert_eq!(app.scroll, 0);
    }

    /// 2026-07-15 12:00 UTC: mid-year, so that two days before is the same year in every time zone.
    const NOW_MS: u64 = 1_784_116_800_000;

    #[test]
    fn older_timestamps_carry_their_date() {
        let mut app = App::new(started());
        app.now_ms = Some(NOW_MS);
        let at = |ms: u64, text: &str| {
            let mut m = msg('b', "bob", ms / 1000, ms / 1000, text, false);
            m.sent_at = ms;
            m
        };
        app.insert(at(NOW_MS - 400 * 86_400_000, "last year"));
        app.insert(at(NOW_MS - 2 * 86_400_000, "two days ago"));
        app.insert(at(NOW_MS, "just now"));
        let b = draw(&mut app, 100, 20);
        let r = rows(&b);
        let line = |t: &str| r[row_of(&b, t).unwrap()].clone();
        assert!(line("last year").contains(&format!("│{}", commands::fmt_date_time(NOW_MS - 400 * 86_400_000))));
        let two = line("two days ago");
        let stamp = commands::fmt_stamp(NOW_MS - 2 * 86_400_000, NOW_MS);
        assert!(stamp.len() == 15 && stamp.as_bytes()[3] == b' ', "{stamp}");
        assert!(two.contains(&format!("│{stamp} bob#2: two days ago")), "{two}");
        let now = line("just now");
        assert!(now.contains(&format!("│{} bob#2: just now", commands::fmt_time(NOW_MS))), "{now}");
    }

    #[test]
    fn an_unread_marker_sits_above_what_arrived_while_away() {
        let mut app = App::new(started());
        app.insert(msg('b', "bob", 1, 1, "seen before", false));
        app.set_focus(false);
        app.insert(msg('a', "ana", 2, 1, "my own from another window", true));
        app.insert(msg('b', "bob", 3, 2, "first unseen", false));
        app.insert(msg('c', "carol", 4, 1, "second unseen", false));
        app.set_focus(true);
        let b = draw(&mut app, 80, 20);
        let mark = row_of(&b, UNREAD_MARK).expect("the marker is drawn");
        assert_eq!(mark + 1, row_of(&b, "first unseen").unwrap());
        assert!(row_of(&b, "seen before").unwrap() < mark);
        // It stays while the user reads, and goes when they write.
        let b = draw(&mut app, 80, 20);
        assert!(row_of(&b, UNREAD_MARK).is_some());
        type_str(&mut app, "hi");
        assert_eq!(press(&mut app, KeyCode::Enter), Action::Send("hi".into()));
        let b = draw(&mut app, 80, 20);
        assert!(row_of(&b, UNREAD_MARK).is_none());
        // Scrolled up, what arrives is unread too.
        for i in 0..30 {
            app.insert(msg('b', "bob", 10 + i, 10 + i, &format!("filler {i}"), false));
        }
        draw(&mut app, 80, 20);
        press(&mut app, KeyCode::PageUp);
        draw(&mut app, 80, 20);
        app.insert(msg('c', "carol", 100, 2, "while scrolled", false));
        for _ in 0..5 {
            press(&mut app, KeyCode::PageDown);
        }
        let b = draw(&mut app, 80, 20);
        assert_eq!(row_of(&b, UNREAD_MARK).unwrap() + 1, row_of(&b, "while scrolled").unwrap());
    }

    #[test]
    fn the_mouse_wheel_scrolls_the_history_and_the_notices() {
        use crossterm::event::{MouseEvent, MouseEventKind};
        let mut app = App::new(started());
        for i in 0..60 {
            app.insert(msg('b', "bob", i, i, &format!("number {i}"), false));
        }
        for i in 0..20 {
            app.info(format!("notice {i}"));
        }
        let wheel = |app: &mut App, kind, row| {
            app.on_mouse(MouseEvent { kind, column: 5, row, modifiers: KeyModifiers::NONE });
        };
        let b = draw(&mut app, 80, 30);
        assert!(row_of(&b, "number 59").is_some() && row_of(&b, "notice 19").is_some());
        let notes_row = row_of(&b, "notice 19").unwrap() as u16;
        // Over the history: it scrolls, three rows a turn.
        wheel(&mut app, MouseEventKind::ScrollUp, 3);
        let b = draw(&mut app, 80, 30);
        assert!(row_of(&b, "number 59").is_none() && row_of(&b, "number 56").is_some());
        assert!(row_of(&b, "scrolled up").is_some());
        wheel(&mut app, MouseEventKind::ScrollDown, 3);
        let b = draw(&mut app, 80, 30);
        assert!(row_of(&b, "number 59").is_some() && app.scroll == 0);
        // Over the notices: they scroll, and the history stays.
        wheel(&mut app, MouseEventKind::ScrollUp, notes_row);
        let b = draw(&mut app, 80, 30);
        assert!(row_of(&b, "notice 19").is_none() && row_of(&b, "notice 16").is_some(), "{:#?}", rows(&b));
        assert!(row_of(&b, "number 59").is_some());
        for _ in 0..20 {
            wheel(&mut app, MouseEventKind::ScrollUp, notes_row);
        }
        let b = draw(&mut app, 80, 30);
        assert!(row_of(&b, "looking").is_some() || row_of(&b, "notice 0").is_some(), "{:#?}", rows(&b));
        // Alt-PgDn (and any new notice) bring back the newest.
        for _ in 0..10 {
            alt(&mut app, KeyCode::PageDown);
        }
        let b = draw(&mut app, 80, 30);
        assert!(row_of(&b, "notice 19").is_some());
    }

    #[test]
    fn the_newest_notice_is_never_cut() {
        let mut app = App::new(started());
        app.greet();
        let long = format!("a warning that goes on {} and ends here", "and on ".repeat(30));
        app.error(long);
        for w in [40, 60, 100] {
            let b = draw(&mut app, w, 30);
            let text: String =
                rows(&b).iter().map(|r| r.trim_matches(|c| c == '│' || c == ' ')).collect::<Vec<_>>().join(" ");
            assert!(text.contains("! a warning that goes on"), "{w}: {text}");
            assert!(text.contains("and ends here"), "{w}: {text}");
        }
        // And the demo-key warning is whole on its own too.
        let mut app = App::new(started());
        app.greet();
        let b = draw(&mut app, 60, 30);
        let text = rows(&b).join(" ");
        assert!(text.contains("no network key given") && text.contains("CHATMESH_NETWORK_KEY"), "{text}");
    }

    /// The input box's widget counts columns in u16: a paste of 70,000 characters would overflow it. The
    /// input holds one message's worth (16,384 bytes) and says what it left out.
    #[test]
    fn a_huge_paste_or_typing_stops_at_one_message() {
        let mut app = App::new(started());
        app.paste(&"x".repeat(70_000));
        assert_eq!(app.input_len(), MAX_BODY_LEN);
        assert!(app.notes.back().unwrap().text.contains("at most 16384"));
        draw(&mut app, 80, 10);
        type_str(&mut app, "more");
        assert_eq!(app.input_len(), MAX_BODY_LEN);
        assert_eq!(app.notes.back().unwrap().text, INPUT_FULL);
        alt(&mut app, KeyCode::Enter);
        assert_eq!(app.input_len(), MAX_BODY_LEN);
        assert!(matches!(press(&mut app, KeyCode::Enter), Action::Send(t) if t.len() == MAX_BODY_LEN));
        // Many lines too.
        app.paste(&"a\n".repeat(70_000));
        assert!(app.input_len() <= MAX_BODY_LEN);
        draw(&mut app, 80, 10);
        // A multi-byte character is never cut in half.
        let mut app = App::new(started());
        app.paste(&"é".repeat(10_000));
        assert!(app.input_len() <= MAX_BODY_LEN && app.input_text().chars().all(|c| c == 'é'));
    }

    #[test]
    fn tiny_terminals_do_not_panic() {
        let mut app = App::new(started());
        app.greet();
        app.set_status(status());
        for i in 0..30 {
            app.insert(msg('b', "bob", i, i, "a fairly long message that has to wrap several times", i % 2 == 0));
        }
        app.on_reply(
            "/help",
            Reply { lines: vec!["one".into(), "two".into()], json: serde_json::Value::Null, quit: false },
        );
        type_str(&mut app, "olá 😀 this input is longer than the screen");
        for (w, h) in [(20, 5), (1, 1), (2, 3), (5, 2), (0, 0), (20, 1), (120, 3), (3, 40)] {
            draw(&mut app, w, h);
            press(&mut app, KeyCode::PageUp);
            draw(&mut app, w, h);
        }
        app.popup = None;
        let b = draw(&mut app, 20, 5);
        assert_eq!(b.area.height, 5);
    }
}
