//! The split screen of `chatmesh demo`: one pane per node side by side, the narration under them.
//!
//! [`Narrator`] is where the demo sends everything it has to say. `Plain` prints the narrated text (not on a
//! terminal, or with `--plain`); `Tui` pushes it into a [`DemoView`] that a thread of its own ([`Screen`]) draws
//! about ten times a second. That thread also reads the keys (`q` and Ctrl-C, a key in raw mode, stop the demo)
//! and the terminal is restored at the end, on failure, on interrupt and on panic. `DemoView` is plain data with
//! pure methods that the tests drive on a `TestBackend`.

use crate::term::{self, wrap};
use chatmesh_node::events::StatusView;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::{Frame, Terminal};
use serde_json::Value;
use std::cell::Cell;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Lines kept per node pane and in the narration (the panes show the last that fit).
const MAX_LINES: usize = 300;
/// How often the screen is drawn (and the keyboard looked at).
const FRAME: Duration = Duration::from_millis(100);
/// Up to 4 panes stand in one row if each gets this many columns...
const MIN_PANE_WIDTH: usize = 20;
/// ...and more than 4 if each gets this many; otherwise they wrap into two rows.
const WIDE_PANE_WIDTH: usize = 32;
/// Name of the thread that draws (the panic hook tells it from the others).
const UI_THREAD: &str = "chatmesh-demo-ui";

/// Colours for authors' names, by the author's pane.
const COLOURS: [Color; 9] = [
    Color::Cyan,
    Color::Green,
    Color::Magenta,
    Color::Blue,
    Color::LightCyan,
    Color::LightGreen,
    Color::LightMagenta,
    Color::LightBlue,
    Color::LightRed,
];

/// What became of a node's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Not started yet (the newcomer, until its step).
    Waiting,
    Running,
    Killed,
    /// Started again after a kill, not back in the mesh yet.
    Restarting,
}

/// What the last `/status` of a node said.
#[derive(Clone, Debug, Default, PartialEq)]
struct NodeStatus {
    id: Option<u64>,
    role: String,
    term: u64,
    digest: String,
}

struct Pane {
    name: String,
    state: NodeState,
    status: Option<NodeStatus>,
    lines: VecDeque<Vec<Span<'static>>>,
}

impl Pane {
    fn push(&mut self, line: Vec<Span<'static>>) {
        self.lines.push_back(line);
        while self.lines.len() > MAX_LINES {
            self.lines.pop_front();
        }
    }
}

/// How a narration line looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Info,
    Step,
    Ok,
    Passed,
    Failed,
}

/// Everything the split screen shows.
pub struct DemoView {
    panes: Vec<Pane>,
    narration: VecDeque<(Tone, String)>,
    /// The title of the step under way.
    step: String,
    /// What the narrated output would have printed so far, minus node events and histories: printed as plain
    /// text once the screen is gone.
    transcript: Vec<String>,
    /// A stop was asked for (q, Ctrl-C or a signal).
    stopping: bool,
    /// The demo ended (passed or not).
    done: Option<bool>,
}

impl DemoView {
    /// A view with one pane per name (in this order), none started yet.
    pub fn new(names: &[&str]) -> DemoView {
        DemoView {
            panes: names
                .iter()
                .map(|n| Pane { name: n.to_string(), state: NodeState::Waiting, status: None, lines: VecDeque::new() })
                .collect(),
            narration: VecDeque::new(),
            step: String::new(),
            transcript: Vec::new(),
            stopping: false,
            done: None,
        }
    }

    pub fn narrate(&mut self, tone: Tone, text: &str) {
        if tone == Tone::Step {
            self.step = text.to_string();
        }
        self.narration.push_back((tone, text.to_string()));
        while self.narration.len() > MAX_LINES {
            self.narration.pop_front();
        }
    }

    pub fn set_state(&mut self, i: usize, state: NodeState) {
        let Some(p) = self.panes.get_mut(i) else { return };
        let was = p.state;
        p.state = state;
        let grey = Style::new().fg(Color::DarkGray);
        match state {
            NodeState::Killed => p.push(vec![Span::styled("✗ killed (SIGKILL)", grey.add_modifier(Modifier::BOLD))]),
            NodeState::Restarting => {
                p.push(vec![Span::styled("↻ restarted from its data directory", Style::new().fg(Color::Yellow))])
            }
            NodeState::Running if was == NodeState::Killed => {
                p.push(vec![Span::styled("↻ started again", Style::new().fg(Color::Yellow))])
            }
            _ => {}
        }
    }

    /// Takes a node's `/status`; a restarting node that is a member again is running.
    pub fn set_status(&mut self, i: usize, s: &StatusView) {
        let Some(p) = self.panes.get_mut(i) else { return };
        let st = NodeStatus {
            id: s.id.map(u64::from),
            role: s.role.to_string(),
            term: s.term,
            digest: s.history.digest.chars().take(8).collect(),
        };
        if p.state == NodeState::Restarting && (st.role == "member" || st.role == "coordinator") {
            p.state = NodeState::Running;
        }
        p.status = Some(st);
    }

    /// One event of node `i`'s JSON stream, as a line of its pane (the uninteresting ones are left out).
    pub fn node_event(&mut self, i: usize, v: &Value) {
        let grey = Style::new().fg(Color::DarkGray);
        let system = Style::new().fg(Color::Yellow);
        let s = |key: &str| v[key].as_str().unwrap_or("?").to_string();
        let line: Vec<Span<'static>> = match v["type"].as_str().unwrap_or("") {
            "message" if v["kind"] == "event" => {
                vec![Span::styled(format!("* {}", s("text")), grey.add_modifier(Modifier::ITALIC))]
            }
            "message" => {
                let who = s("author_name");
                let colour = self.panes.iter().position(|p| p.name == who).map_or(Color::White, |k| COLOURS[k % 9]);
                let label = v["author_label"].as_str().map_or(who, String::from);
                vec![
                    Span::styled(label, Style::new().fg(colour).add_modifier(Modifier::BOLD)),
                    Span::raw(": "),
                    Span::raw(s("text")),
                ]
            }
            "ready" => vec![Span::styled(format!("process started on {}", s("addr")), grey)],
            "founded" => vec![Span::styled(format!("founded the mesh as #{}", v["id"]), system)],
            "joined" => vec![Span::styled(format!("joined as #{} (term {})", v["id"], v["term"]), system)],
            "coordinator" if v["me"] == true => {
                vec![Span::styled(format!("★ I coordinate (term {})", v["term"]), system.add_modifier(Modifier::BOLD))]
            }
            "coordinator" => vec![Span::styled(
                format!("coordinator: {} #{} (term {})", v["name"].as_str().unwrap_or("?"), v["id"], v["term"]),
                system,
            )],
            "election_started" => {
                vec![Span::styled(format!("election started (term {})", v["term"]), Style::new().fg(Color::LightRed))]
            }
            "id_reassigned" => vec![Span::styled(format!("ID #{} is now #{}", v["old"], v["new"]), system)],
            "send_refused" => vec![Span::styled(format!("not sent: {}", s("reason")), Style::new().fg(Color::Red))],
            "info" => vec![Span::styled(s("info"), grey)],
            "stopped" => vec![Span::styled("stopped", grey)],
            _ => return,
        };
        if let Some(p) = self.panes.get_mut(i) {
            p.push(line);
        }
    }

    pub fn render(&self, f: &mut Frame) {
        let area = f.area();
        let narration_rows = (area.height / 4).clamp(4, 10);
        let [panes, narration, footer] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(narration_rows), Constraint::Length(1)])
                .areas(area);
        for (p, r) in self.panes.iter().zip(pane_grid(self.panes.len(), panes)) {
            render_pane(f, p, r);
        }
        self.render_narration(f, narration);
        let (text, style) = match (self.done, self.stopping) {
            (Some(true), _) => {
                ("DEMO PASSED · q: leave now", Style::new().fg(Color::Green).add_modifier(Modifier::BOLD))
            }
            (Some(false), _) => ("DEMO FAILED", Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)),
            (None, true) => ("stopping the demo...", Style::new().fg(Color::Yellow)),
            (None, false) => ("q / Ctrl-C: stop the demo", Style::new().fg(Color::DarkGray)),
        };
        f.render_widget(Paragraph::new(Line::styled(format!(" {text}"), style)), footer);
    }

    fn render_narration(&self, f: &mut Frame, area: Rect) {
        let title = if self.step.is_empty() { "ChatMesh demo".to_string() } else { self.step.clone() };
        let block =
            Block::bordered().title(Line::styled(format!(" {title} "), Style::new().add_modifier(Modifier::BOLD)));
        let inner = block.inner(area);
        f.render_widget(block, area);
        let lines = self.narration.iter().map(|(tone, text)| match tone {
            Tone::Step => {
                vec![Span::styled(format!("== {text}"), Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD))]
            }
            Tone::Ok => vec![Span::styled("ok: ", Style::new().fg(Color::Green)), Span::raw(text.clone())],
            Tone::Info => vec![Span::raw(text.clone())],
            Tone::Passed => {
                vec![Span::styled(text.clone(), Style::new().fg(Color::Green).add_modifier(Modifier::BOLD))]
            }
            Tone::Failed => vec![Span::styled(text.clone(), Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))],
        });
        f.render_widget(Paragraph::new(last_rows(lines, inner)), inner);
    }
}

fn render_pane(f: &mut Frame, p: &Pane, area: Rect) {
    let grey = Style::new().fg(Color::DarkGray);
    let dim = matches!(p.state, NodeState::Killed | NodeState::Waiting);
    let room = (area.width as usize).saturating_sub(2);
    let st = p.status.clone().unwrap_or_default();
    // Top: name, ID and role (a killed node has none); the role word goes first when the pane is narrow.
    let coordinator = st.role == "coordinator" && !dim;
    let name = format!(" {}{} ", p.name, st.id.map(|id| format!(" #{id}")).unwrap_or_default());
    let mut top = vec![Span::styled(name.clone(), Style::new().add_modifier(Modifier::BOLD))];
    let role = if dim {
        String::new()
    } else if coordinator {
        "★ coordinator ".into()
    } else {
        format!("{} ", st.role)
    };
    if coordinator {
        let fits = name.chars().count() + role.chars().count() <= room;
        let role = if fits { role } else { "★ ".into() };
        top.push(Span::styled(role, Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)));
    } else if !role.trim().is_empty() && name.chars().count() + role.chars().count() <= room {
        top.push(Span::raw(role));
    }
    // Bottom: term, digest and state (just the state when there is no status worth showing).
    let state = match p.state {
        NodeState::Waiting => "waiting",
        NodeState::Running => "running",
        NodeState::Killed => "killed (SIGKILL)",
        NodeState::Restarting => "restarting",
    };
    let bottom = if p.status.is_some() && !dim {
        let full = format!(" t{} · {} · {state} ", st.term, st.digest);
        if full.chars().count() <= room || p.state != NodeState::Running {
            full
        } else {
            format!(" t{} · {} ", st.term, st.digest)
        }
    } else {
        format!(" {state} ")
    };
    let mut block = Block::bordered().title(Line::from(top)).title_bottom(Line::from(bottom));
    if dim {
        block = block.border_style(grey).title_style(grey);
    } else if coordinator {
        block = block.border_style(Style::new().fg(Color::Yellow));
    } else if p.state == NodeState::Restarting {
        block = block.border_style(Style::new().fg(Color::LightRed));
    }
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows = if p.state == NodeState::Waiting && p.lines.is_empty() {
        vec![Line::styled("not started yet", grey)]
    } else {
        let lines = p.lines.iter().map(|l| {
            if dim {
                l.iter().map(|s| Span::styled(s.content.clone(), grey)).collect()
            } else {
                l.clone()
            }
        });
        last_rows(lines, inner)
    };
    f.render_widget(Paragraph::new(rows), inner);
}

/// The rows that fill `area` with the end of `lines` (wrapped to its width).
fn last_rows<I>(lines: I, area: Rect) -> Vec<Line<'static>>
where
    I: DoubleEndedIterator<Item = Vec<Span<'static>>>,
{
    let (width, height) = (area.width as usize, area.height as usize);
    let mut rows: VecDeque<Line<'static>> = VecDeque::new();
    if width == 0 || height == 0 {
        return Vec::new();
    }
    for l in lines.rev() {
        for r in wrap(&l, width, 0).into_iter().rev() {
            if rows.len() == height {
                return rows.into();
            }
            rows.push_front(r);
        }
    }
    rows.into()
}

/// Where the panes of `n` nodes go in `area`: side by side in one row, or in two rows when there are more than 4
/// nodes or the terminal is narrow.
pub fn pane_grid(n: usize, area: Rect) -> Vec<Rect> {
    if n == 0 {
        return Vec::new();
    }
    let width = area.width as usize;
    let one_row = (n <= 4 && width >= MIN_PANE_WIDTH * n) || width >= WIDE_PANE_WIDTH * n;
    let rows = if one_row { 1 } else { n.min(2) };
    let per_row = n.div_ceil(rows);
    let row_areas = Layout::vertical(vec![Constraint::Ratio(1, rows as u32); rows]).split(area);
    let mut out = Vec::with_capacity(n);
    for (r, row) in row_areas.iter().enumerate() {
        let count = per_row.min(n - (r * per_row).min(n));
        if count > 0 {
            out.extend(Layout::horizontal(vec![Constraint::Ratio(1, count as u32); count]).split(*row).iter());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Where the demo's words go.

/// One line of plain output; a closed or failing stdout is not a reason to stop (nodes must still be removed).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The sink of everything the demo says.
pub enum Narrator {
    /// The narrated text, line by line, as it happens.
    Plain,
    /// The split screen; `fell_back` once the screen died early (the rest is then told as plain text).
    Tui { screen: Screen, fell_back: Cell<bool> },
}

impl Narrator {
    /// The split screen for these panes, or the error that prevents it.
    pub fn tui(names: &[&str], interrupted: &'static AtomicBool) -> std::io::Result<Narrator> {
        Ok(Narrator::Tui { screen: Screen::start(DemoView::new(names), interrupted)?, fell_back: Cell::new(false) })
    }

    pub fn is_tui(&self) -> bool {
        matches!(self, Narrator::Tui { fell_back, .. } if !fell_back.get())
    }

    /// The shared view while the screen is up; `None` for plain text.
    fn view(&self) -> Option<MutexGuard<'_, DemoView>> {
        let Narrator::Tui { screen, fell_back } = self else { return None };
        if fell_back.get() {
            return None;
        }
        let v = lock(&screen.view);
        if screen.is_up() {
            return Some(v);
        }
        // The screen is gone (the terminal failed, or the drawing panicked): go on as plain text, from the start.
        fell_back.set(true);
        for l in &v.transcript {
            say(l);
        }
        None
    }

    /// A line of narration (the greeting).
    pub fn line(&self, text: &str) {
        match self.view() {
            Some(mut v) => {
                v.transcript.push(text.to_string());
                if !text.is_empty() {
                    v.narrate(Tone::Info, text.trim());
                }
            }
            None => say(text),
        }
    }

    pub fn step(&self, title: &str) {
        let plain = format!("\n== {title}");
        match self.view() {
            Some(mut v) => {
                v.transcript.push(plain);
                v.narrate(Tone::Step, title);
            }
            None => say(&plain),
        }
    }

    pub fn ok(&self, what: &str) {
        let plain = format!("   ok: {what}");
        match self.view() {
            Some(mut v) => {
                v.transcript.push(plain);
                v.narrate(Tone::Ok, what);
            }
            None => say(&plain),
        }
    }

    /// A table of statuses (the panes show the same on screen; kept for the summary).
    pub fn table(&self, lines: &[String]) {
        match self.view() {
            Some(mut v) => v.transcript.extend(lines.iter().cloned()),
            None => lines.iter().for_each(|l| say(l)),
        }
    }

    /// Detail of the plain output only (the histories: the panes show the chat).
    pub fn detail(&self, line: &str) {
        if self.view().is_none() {
            say(line);
        }
    }

    /// An event from node `i`'s stream, with its line of plain output if it has one.
    pub fn node_event(&self, i: usize, v: &Value, plain: Option<String>) {
        match self.view() {
            Some(mut view) => view.node_event(i, v),
            None => {
                if let Some(l) = plain {
                    say(&l);
                }
            }
        }
    }

    pub fn status(&self, i: usize, s: &StatusView) {
        if let Some(mut v) = self.view() {
            v.set_status(i, s);
        }
    }

    pub fn state(&self, i: usize, state: NodeState) {
        if let Some(mut v) = self.view() {
            v.set_state(i, state);
        }
    }

    /// The outcome, on screen (the plain text prints it after [`Narrator::finish`]).
    pub fn outcome(&self, passed: bool, text: &str) {
        if let Some(mut v) = self.view() {
            v.narrate(if passed { Tone::Passed } else { Tone::Failed }, text);
            v.done = Some(passed);
        }
    }

    /// Leaves the split screen (restoring the terminal) and returns the narration to print in its place.
    pub fn finish(&mut self) -> Vec<String> {
        let lines = match self {
            Narrator::Plain => Vec::new(),
            Narrator::Tui { screen, fell_back } => {
                let up = !fell_back.get();
                screen.close();
                if up {
                    std::mem::take(&mut lock(&screen.view).transcript)
                } else {
                    Vec::new()
                }
            }
        };
        *self = Narrator::Plain;
        lines
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The terminal.

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The split screen, drawn by a thread of its own from the shared view.
pub struct Screen {
    view: Arc<Mutex<DemoView>>,
    stop: Arc<AtomicBool>,
    ui: Option<JoinHandle<()>>,
}

impl Screen {
    /// Takes the terminal (raw mode, alternate screen) and starts drawing `view`; `q` and Ctrl-C set `interrupted`.
    pub fn start(view: DemoView, interrupted: &'static AtomicBool) -> std::io::Result<Screen> {
        use crossterm::{cursor, execute};
        // No mouse reporting: people select and copy the demo's text. Any panic gives the terminal back.
        term::enter(term::Modes { mouse: false, focus: false, log_other_panics: false })?;
        let setup = execute!(std::io::stdout(), cursor::Hide)
            .and_then(|_| Terminal::new(CrosstermBackend::new(std::io::stdout())));
        let mut terminal = match setup {
            Ok(t) => t,
            Err(e) => {
                term::leave();
                return Err(e);
            }
        };
        let _ = terminal.clear();
        let view = Arc::new(Mutex::new(view));
        let stop = Arc::new(AtomicBool::new(false));
        let ui = {
            let (view, stop) = (view.clone(), stop.clone());
            std::thread::Builder::new()
                .name(UI_THREAD.into())
                .spawn(move || draw_loop(terminal, &view, &stop, interrupted))
        };
        match ui {
            Ok(ui) => Ok(Screen { view, stop, ui: Some(ui) }),
            Err(e) => {
                term::leave();
                Err(e)
            }
        }
    }

    /// Whether the screen is still being drawn.
    fn is_up(&self) -> bool {
        term::active() && self.ui.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Stops drawing and restores the terminal (again: nothing).
    fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(ui) = self.ui.take() {
            let _ = ui.join();
        }
        term::leave();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.close();
    }
}

fn is_stop_key(k: &KeyEvent) -> bool {
    k.kind != KeyEventKind::Release
        && match k.code {
            KeyCode::Char('q') | KeyCode::Char('Q') => true,
            KeyCode::Char('c') | KeyCode::Char('C') => k.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

fn is_suspend_key(k: &KeyEvent) -> bool {
    k.kind != KeyEventKind::Release && k.code == KeyCode::Char('z') && k.modifiers.contains(KeyModifiers::CONTROL)
}

fn draw_loop<B: ratatui::backend::Backend>(
    mut terminal: Terminal<B>,
    view: &Mutex<DemoView>,
    stop: &AtomicBool,
    interrupted: &AtomicBool,
) {
    term::claim_ui_thread();
    // Continued after a stop from outside (SIGSTOP, then `fg`): the terminal is taken again.
    let continued = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGCONT, continued.clone());
    let mut keys = true;
    while !stop.load(Ordering::SeqCst) {
        if continued.swap(false, Ordering::SeqCst) {
            term::resume();
        }
        let drawn = {
            let mut v = lock(view);
            if interrupted.load(Ordering::SeqCst) {
                v.stopping = true;
            }
            let _d = term::draw_lock();
            if !term::active() {
                return;
            }
            if term::take_repaint() {
                let _ = terminal.clear();
            }
            terminal.draw(|f| v.render(f)).is_ok()
        };
        if !drawn {
            // The terminal is gone or broken: give it back and let the demo go on in plain text.
            term::leave();
            return;
        }
        if !keys {
            std::thread::sleep(FRAME);
            continue;
        }
        match crossterm::event::poll(FRAME) {
            Ok(false) => {}
            Ok(true) => match crossterm::event::read() {
                Ok(Event::Key(k)) if is_stop_key(&k) => interrupted.store(true, Ordering::SeqCst),
                // Ctrl-Z: the shell gets the terminal until `fg` (the demo's nodes are paused with it).
                Ok(Event::Key(k)) if is_suspend_key(&k) => term::suspend(true),
                Ok(_) => {}
                Err(_) => keys = false,
            },
            Err(_) => keys = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use serde_json::json;

    const NAMES: [&str; 9] = ["ana", "bruno", "carla", "davi", "eva", "fabio", "gina", "hugo", "iris"];

    fn draw(v: &DemoView, w: u16, h: u16) -> Buffer {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| v.render(f)).unwrap();
        t.backend().buffer().clone()
    }

    fn text(b: &Buffer) -> String {
        (0..b.area.height)
            .map(|y| (0..b.area.width).map(|x| b[(x, y)].symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn status(name: &str, id: u64, role: &str) -> StatusView {
        serde_json::from_value(json!({"name": name, "id": id, "role": role, "term": 3,
            "history": {"count": 4, "digest": "0123456789abcdef"}, "key": "ab", "mesh": "m", "addr": "a",
            "coordinator": null, "election_running": false, "members": [], "pending_acks": 0, "links": 0,
            "rejected": 0, "datagrams_dropped": 0, "uptime_ms": 0}))
        .unwrap()
    }

    /// A view of `n` nodes in the middle of a demo: statuses, chat, a killed coordinator, narration.
    fn busy(n: usize) -> DemoView {
        let mut v = DemoView::new(&NAMES[..n]);
        for (i, name) in NAMES.iter().enumerate().take(n - 1) {
            v.set_state(i, NodeState::Running);
            v.node_event(i, &json!({"type": "ready", "addr": "127.0.0.1:4000"}));
            v.node_event(i, &json!({"type": "joined", "id": i + 1, "term": 1, "coordinator": "ab"}));
            v.set_status(i, &status(name, i as u64 + 1, if i == n - 2 { "coordinator" } else { "member" }));
            for author in NAMES.iter().take(n - 1) {
                let text = format!("olá from {author}, a message long enough to wrap in a narrow pane");
                let m = json!({"type": "message", "kind": "text", "author_name": author, "text": text});
                v.node_event(i, &m);
            }
            v.node_event(i, &json!({"type": "message", "kind": "event", "text": "eva (5) joined"}));
            v.node_event(i, &json!({"type": "delivery", "seq": 1, "acked": 1, "members": 2}));
        }
        v.set_state(n - 2, NodeState::Killed);
        v.narrate(Tone::Step, "3. The coordinator is killed with SIGKILL while the others keep chatting");
        v.narrate(Tone::Ok, "survivors elected #3 (the highest-ranked survivor) 812 ms after the kill");
        v
    }

    #[test]
    fn panes_side_by_side_or_in_two_rows() {
        for (w, h) in [(80, 24), (200, 50), (60, 20), (10, 4), (0, 0)] {
            let area = Rect::new(0, 0, w, h);
            for n in 1..=9 {
                let rects = pane_grid(n, area);
                assert_eq!(rects.len(), n, "{n} panes in {w}x{h}");
                for (a, r) in rects.iter().enumerate() {
                    assert!(area.union(*r) == area || r.area() == 0, "{r:?} outside {area:?}");
                    for s in &rects[a + 1..] {
                        assert!(!r.intersects(*s), "{r:?} overlaps {s:?}");
                    }
                }
            }
        }
        let rows = |n, w, h| {
            let mut ys: Vec<u16> = pane_grid(n, Rect::new(0, 0, w, h)).iter().map(|r| r.y).collect();
            ys.dedup();
            ys.len()
        };
        assert_eq!(rows(4, 80, 24), 1);
        assert_eq!(rows(5, 80, 24), 2);
        assert_eq!(rows(4, 60, 24), 2, "narrow");
        assert_eq!(rows(5, 200, 50), 1);
        assert_eq!(rows(8, 200, 50), 2);
    }

    #[test]
    fn four_five_and_eight_nodes_render_on_small_and_large_terminals() {
        for n in [4, 5, 8, 9] {
            for (w, h) in [(80, 24), (200, 50), (30, 8), (1, 1)] {
                let v = busy(n);
                let b = draw(&v, w, h);
                if w >= 80 {
                    let s = text(&b);
                    for name in &NAMES[..n] {
                        assert!(s.contains(name), "{name} missing in {n} panes at {w}x{h}:\n{s}");
                    }
                    assert!(s.contains("killed (SIGKILL)"), "{s}");
                    assert!(s.contains("q / Ctrl-C: stop the demo"), "{s}");
                    assert!(s.contains("not started yet"), "{s}");
                }
            }
        }
        let s = text(&draw(&busy(4), 200, 50));
        assert!(s.contains("#1 member"), "{s}");
        assert!(!s.contains("#3 coordinator"), "the killed coordinator shows no role:\n{s}");
        assert!(s.contains("t3 · 01234567 · running"), "{s}");
        assert!(s.contains("olá from"), "{s}");
        assert!(s.contains("* eva (5) joined"), "{s}");
    }

    #[test]
    fn narration_lands_in_the_view_most_recent_at_the_bottom() {
        let mut v = busy(4);
        for k in 0..30 {
            v.narrate(Tone::Ok, &format!("check number {k}"));
        }
        assert_eq!(v.narration.back().map(|(_, t)| t.as_str()), Some("check number 29"));
        let s = text(&draw(&v, 80, 24));
        assert!(s.contains("ok: check number 29"), "{s}");
        assert!(!s.contains("check number 10"), "only the most recent lines fit:\n{s}");
        let rows: Vec<&str> = s.lines().collect();
        let last = rows.iter().position(|r| r.contains("check number 29")).unwrap();
        let before = rows.iter().position(|r| r.contains("check number 28")).unwrap();
        assert!(before < last);
        // The step under way titles the narration pane.
        assert!(s.contains("3. The coordinator is killed"), "{s}");
    }

    #[test]
    fn statuses_and_states_reach_the_pane_titles() {
        let mut v = DemoView::new(&NAMES[..2]);
        v.set_state(0, NodeState::Running);
        v.set_status(0, &status("ana", 2, "coordinator"));
        let s = text(&draw(&v, 80, 24));
        assert!(s.contains("ana #2 ★ coordinator"), "{s}");
        assert!(s.contains("t3 · 01234567 · running"), "{s}");
        // Narrow panes keep the star and the digest.
        let mut narrow = DemoView::new(&NAMES[..4]);
        narrow.set_state(2, NodeState::Running);
        narrow.set_status(2, &status("carla", 3, "coordinator"));
        let s = text(&draw(&narrow, 80, 24));
        assert!(s.contains("carla #3 ★"), "{s}");
        assert!(s.contains("t3 · 01234567 "), "{s}");
        v.set_state(0, NodeState::Killed);
        let s = text(&draw(&v, 80, 24));
        assert!(!s.contains("★"), "a killed node coordinates nothing:\n{s}");
        assert!(s.contains(" killed (SIGKILL) "), "{s}");
        v.set_state(0, NodeState::Restarting);
        v.set_status(0, &status("ana", 2, "joining"));
        assert_eq!(v.panes[0].state, NodeState::Restarting);
        v.set_status(0, &status("ana", 2, "member"));
        assert_eq!(v.panes[0].state, NodeState::Running);
        // Out of range is ignored, not a panic.
        v.set_status(7, &status("x", 1, "member"));
        v.node_event(7, &json!({"type": "founded", "id": 1, "term": 1}));
        v.set_state(7, NodeState::Killed);
    }

    #[test]
    fn wrapping_breaks_at_spaces_and_cuts_long_words() {
        let rows = wrap(&[Span::raw("olá from ana and bruno")], 9, 0);
        let texts: Vec<String> = rows.iter().map(|l| l.to_string()).collect();
        assert_eq!(texts, ["olá from", "ana and", "bruno"]);
        let rows = wrap(&[Span::raw("abcdefghij")], 4, 0);
        let texts: Vec<String> = rows.iter().map(|l| l.to_string()).collect();
        assert_eq!(texts, ["abcd", "efgh", "ij"]);
        assert_eq!(wrap(&[], 5, 0).len(), 1);
    }

    #[test]
    fn plain_narrator_has_no_view() {
        let n = Narrator::Plain;
        assert!(!n.is_tui());
        assert!(n.view().is_none());
    }
}
