//! What the chat's TUI (`tui`) and the demo's split screen (`demo_tui`) share: wrapping styled text by words
//! and grapheme clusters, and owning the terminal (raw mode, the alternate screen, bracketed paste, mouse
//! reporting) with a way back from every exit: a normal one, a panic, and a suspension (Ctrl-Z, SIGSTOP) followed
//! by SIGCONT.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError, TryLockError};
use std::time::{Duration, Instant};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

// ---------------------------------------------------------------------------------------------------------------
// Text.

/// Columns a string takes on a terminal, counted as ratatui draws it (grapheme by grapheme).
pub fn text_width(s: &str) -> usize {
    s.graphemes(true).map(UnicodeWidthStr::width).sum()
}

/// A grapheme as it may be drawn: text from the network must not drive the terminal, so control characters
/// become U+FFFD (a tab becomes a space; line ends are handled by the caller).
fn drawable(g: &str) -> &str {
    if g == "\t" {
        " "
    } else if g.chars().any(char::is_control) {
        "\u{fffd}"
    } else {
        g
    }
}

/// Wraps styled text into rows of `width` columns: at spaces (the space at a break is dropped, and the word
/// after it starts the next row), within a word only when it is longer than a row, and never inside a
/// grapheme cluster (`👍🏽` stays whole). Continuation rows are indented by `indent` columns (unless the rows
/// are too narrow for that). Line ends in the text (LF, CR LF or CR) start a new row.
pub fn wrap(spans: &[Span<'_>], width: usize, indent: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let indent = if indent * 2 < width { indent } else { 0 };
    let mut rows: Vec<Line<'static>> = Vec::new();
    // The current row: its graphemes with their styles and widths; the first `indent` are padding.
    let mut row: Vec<(&str, Style, usize)> = Vec::new();
    let mut row_width = 0;
    let mut lead = 0;
    // Where the row may break: just after its last space.
    let mut brk: Option<usize> = None;
    let new_row = |row: &mut Vec<(&str, Style, usize)>, rows: &mut Vec<Line<'static>>, lead: &mut usize| {
        rows.push(to_line(row));
        row.clear();
        row.extend(std::iter::repeat_n((" ", Style::new(), 1), indent));
        *lead = indent;
    };
    for span in spans {
        for g in span.content.graphemes(true) {
            if g == "\n" || g == "\r\n" || g == "\r" {
                new_row(&mut row, &mut rows, &mut lead);
                row_width = indent;
                brk = None;
                continue;
            }
            let g = drawable(g);
            let w = g.width();
            if row_width + w > width && row.len() > lead {
                // Carry the word being written (after the last space) to the next row, if it has a space; a
                // space that overflows is the break itself, and carries nothing.
                let rest = match brk {
                    Some(b) if g != " " && b > lead && b < row.len() => row.split_off(b),
                    _ => Vec::new(),
                };
                // The spaces at a break are not shown at either end of it.
                while row.len() > lead && row.last().is_some_and(|c| c.0 == " ") {
                    row.pop();
                }
                new_row(&mut row, &mut rows, &mut lead);
                if g == " " {
                    row_width = indent;
                    brk = None;
                    continue;
                }
                row_width = indent + rest.iter().map(|c| c.2).sum::<usize>();
                row.extend(rest);
                brk = None;
            }
            row.push((g, span.style, w));
            row_width += w;
            if g == " " {
                brk = Some(row.len());
            }
        }
    }
    if row.len() > lead || rows.is_empty() {
        rows.push(to_line(&row));
    }
    rows
}

/// One row of graphemes as a line of spans, one span per run of equal style.
fn to_line(cells: &[(&str, Style, usize)]) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut style = None;
    for &(g, s, _) in cells {
        if style.is_some_and(|st| st != s) {
            spans.push(Span::styled(std::mem::take(&mut text), style.unwrap_or_default()));
        }
        style = Some(s);
        text.push_str(g);
    }
    if !text.is_empty() {
        spans.push(Span::styled(text, style.unwrap_or_default()));
    }
    Line::from(spans)
}

// ---------------------------------------------------------------------------------------------------------------
// The terminal.

/// Whether this process has the terminal in raw mode and on the alternate screen.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Whether mouse reporting and focus reports were asked for (so that a resume asks again, and every way
/// out turns them off).
static MOUSE: AtomicBool = AtomicBool::new(false);
static FOCUS: AtomicBool = AtomicBool::new(false);
/// Set when the screen may hold something else (a panic's report, a suspension): the next frame clears first.
static REPAINT: AtomicBool = AtomicBool::new(false);
/// Held while a frame is drawn, so that the panic hook does not restore the terminal in the middle of one.
static DRAW: Mutex<()> = Mutex::new(());
/// The thread that draws: a panic there ends the screen. A panic elsewhere ends it too unless
/// `LOG_OTHER_PANICS`: then it goes to the log (the chat's node tasks, which the runtime survives).
static UI_THREAD: Mutex<Option<std::thread::ThreadId>> = Mutex::new(None);
static LOG_OTHER_PANICS: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the terminal is taken.
pub fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Whether the next frame must clear the screen first (and forget that it must).
pub fn take_repaint() -> bool {
    REPAINT.swap(false, Ordering::SeqCst)
}

/// Asks the next frame to clear the screen first and draw everything (Ctrl-L).
pub fn request_repaint() {
    REPAINT.store(true, Ordering::SeqCst);
}

/// The lock to hold while drawing a frame.
pub fn draw_lock() -> MutexGuard<'static, ()> {
    lock(&DRAW)
}

/// The modes this process sets, in the order it sets them.
fn set_modes() -> std::io::Result<()> {
    use crossterm::{event, execute, terminal};
    terminal::enable_raw_mode()?;
    execute!(std::io::stdout(), terminal::EnterAlternateScreen, event::EnableBracketedPaste)?;
    if MOUSE.load(Ordering::SeqCst) {
        execute!(std::io::stdout(), event::EnableMouseCapture)?;
    }
    if FOCUS.load(Ordering::SeqCst) {
        execute!(std::io::stdout(), event::EnableFocusChange)?;
    }
    Ok(())
}

/// Every mode set by `set_modes` undone; errors are ignored (the terminal may be gone).
fn restore() {
    use crossterm::{cursor, event, execute, terminal};
    if MOUSE.load(Ordering::SeqCst) {
        let _ = execute!(std::io::stdout(), event::DisableMouseCapture);
    }
    if FOCUS.load(Ordering::SeqCst) {
        let _ = execute!(std::io::stdout(), event::DisableFocusChange);
    }
    let _ = execute!(std::io::stdout(), event::DisableBracketedPaste, terminal::LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
}

/// What `enter` asks of the terminal besides raw mode, the alternate screen and bracketed paste.
#[derive(Clone, Copy)]
pub struct Modes {
    /// Mouse reporting (the wheel; people then select text with Shift held).
    pub mouse: bool,
    /// Focus reports (terminals that do not know them ignore the request).
    pub focus: bool,
    /// A panic off the drawing thread goes to the log instead of ending the screen (see `LOG_OTHER_PANICS`).
    pub log_other_panics: bool,
}

/// Takes the terminal: raw mode, the alternate screen, bracketed paste, and the `modes` asked for. The
/// drawing thread is the calling one.
pub fn enter(modes: Modes) -> std::io::Result<()> {
    let Modes { mouse, focus, log_other_panics } = modes;
    install_panic_hook();
    *lock(&UI_THREAD) = Some(std::thread::current().id());
    LOG_OTHER_PANICS.store(log_other_panics, Ordering::SeqCst);
    MOUSE.store(mouse, Ordering::SeqCst);
    FOCUS.store(focus, Ordering::SeqCst);
    ACTIVE.store(true, Ordering::SeqCst);
    if let Err(e) = set_modes() {
        leave();
        return Err(e);
    }
    Ok(())
}

/// Makes the calling thread the drawing one (for the panic hook), when it is not the one that called `enter`.
pub fn claim_ui_thread() {
    *lock(&UI_THREAD) = Some(std::thread::current().id());
}

/// Gives the terminal back as it was (once, whoever asks first; later calls do nothing).
pub fn leave() {
    let _g = lock(&DRAW);
    if ACTIVE.swap(false, Ordering::SeqCst) {
        restore();
    }
}

/// Ctrl-Z: gives the terminal back and stops this process (with `group`, its whole process group, as a ^Z
/// typed in a cooked terminal does: the demo's nodes stop with it), as the shell expects of a job; when the
/// shell continues it (`fg`), takes the terminal again and repaints.
pub fn suspend(group: bool) {
    if !ACTIVE.load(Ordering::SeqCst) {
        return;
    }
    {
        let _g = lock(&DRAW);
        restore();
    }
    // Stops here until SIGCONT (the default action: nothing of ours handles SIGTSTP).
    if group {
        // SAFETY: kill(2) with pid 0 signals this process's group; no memory is involved.
        unsafe { libc::kill(0, libc::SIGTSTP) };
    } else {
        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGTSTP);
    }
    resume();
}

/// After SIGCONT (from `fg`, `kill -CONT` or our own `suspend`): a shell that took the terminal back while we
/// were stopped has put it in cooked mode and left the alternate screen, so set every mode again (raw mode
/// unconditionally: crossterm remembers having set it and would otherwise do nothing) and repaint the whole
/// screen.
pub fn resume() {
    if !ACTIVE.load(Ordering::SeqCst) {
        return;
    }
    let _g = lock(&DRAW);
    let _ = crossterm::terminal::disable_raw_mode();
    if let Err(e) = set_modes() {
        tracing::warn!("cannot take the terminal again after a stop: {e}");
    }
    REPAINT.store(true, Ordering::SeqCst);
}

/// `DRAW`, waited for up to `limit` (`None` if a frame takes longer than that).
fn lock_draw_within(limit: Duration) -> Option<MutexGuard<'static, ()>> {
    let deadline = Instant::now() + limit;
    loop {
        match DRAW.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(TryLockError::WouldBlock) => return None,
        }
    }
}

/// Restores the terminal before a panic is reported, so that the report is readable and the shell usable;
/// with `LOG_OTHER_PANICS`, a panic off the drawing thread goes to the log instead and the screen repaints.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !ACTIVE.load(Ordering::SeqCst) {
                return previous(info);
            }
            let here = std::thread::current();
            let on_ui = UI_THREAD.lock().map(|t| *t == Some(here.id())).unwrap_or(true);
            if !on_ui && LOG_OTHER_PANICS.load(Ordering::SeqCst) {
                tracing::error!(thread = here.name().unwrap_or("?"), "panic: {info}");
                REPAINT.store(true, Ordering::SeqCst);
                return;
            }
            // Let a frame being drawn finish (unless the drawing is what panicked), but never wait long.
            let guard = if on_ui { None } else { lock_draw_within(Duration::from_millis(500)) };
            if ACTIVE.swap(false, Ordering::SeqCst) {
                restore();
            }
            drop(guard);
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn texts(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect()).collect()
    }

    #[test]
    fn wrap_breaks_at_spaces_and_handles_wide_characters() {
        assert_eq!(texts(&wrap(&[Span::raw("aaaa bbbb cccc")], 10, 2)), ["aaaa bbbb", "  cccc"]);
        assert_eq!(texts(&wrap(&[Span::raw("漢字漢字漢字")], 5, 0)), ["漢字", "漢字", "漢字"]);
        assert_eq!(texts(&wrap(&[Span::raw("a\x1b[31mb\nc")], 20, 0)), ["a\u{fffd}[31mb", "c"]);
        assert_eq!(wrap(&[Span::raw("xyz")], 0, 4).len(), 3);
        assert_eq!(texts(&wrap(&[Span::raw("one\rtwo\r\nthree")], 20, 0)), ["one", "two", "three"]);
    }

    /// The defect the issue reported: when the space after a word was the character that overflowed the row,
    /// the word went to the next row and that space was dropped, gluing it to the word after it.
    #[test]
    fn no_two_words_are_glued_at_a_break() {
        let text: String = (1..=40).map(|i| format!("{i:04}-abcdefghij ")).collect();
        for width in [15, 16, 20, 31, 32, 40, 79] {
            let rows = texts(&wrap(&[Span::raw(text.trim_end())], width, 0));
            let words: Vec<&str> = rows.iter().flat_map(|r| r.split_whitespace()).collect();
            assert_eq!(words, text.split_whitespace().collect::<Vec<_>>(), "width {width}: {rows:#?}");
        }
    }

    #[test]
    fn a_grapheme_cluster_is_never_split() {
        // 👍🏽 is two code points (a thumb and a skin tone) and two columns.
        let rows = texts(&wrap(&[Span::raw("ab👍🏽👍🏽👍🏽")], 4, 0));
        assert_eq!(rows, ["ab👍🏽", "👍🏽👍🏽"]);
        assert_eq!(text_width("👍🏽"), 2);
        let rows = texts(&wrap(&[Span::raw("e\u{301}e\u{301}e\u{301}")], 2, 0));
        assert_eq!(rows, ["e\u{301}e\u{301}", "e\u{301}"]);
    }

    #[test]
    fn styles_are_kept_across_a_break() {
        let bold = Style::new().add_modifier(ratatui::style::Modifier::BOLD);
        let rows = wrap(&[Span::styled("name", bold), Span::raw(": hello world")], 12, 0);
        assert_eq!(texts(&rows), ["name: hello", "world"]);
        assert_eq!(rows[0].spans[0].style, bold);
        assert_eq!(rows[1].spans[0].style, Style::new());
    }

    proptest! {
        /// Every word comes out whole and in order (no word longer than a row is split, none are glued), no
        /// row is wider than the width, and no grapheme is lost.
        #[test]
        fn wrapping_keeps_every_word(words in proptest::collection::vec("(?:[a-z0-9é漢]|👍🏽|👍){1,5}", 0..40),
                                     width in 20usize..60, indent in 0usize..6) {
            let text = words.join(" ");
            let rows = texts(&wrap(&[Span::raw(text.as_str())], width, indent));
            for r in &rows {
                prop_assert!(text_width(r) <= width, "{r:?} wider than {width}");
            }
            let out: Vec<&str> = rows.iter().flat_map(|r| r.split_whitespace()).collect();
            prop_assert_eq!(out, words.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
