//! What keys, the mouse and pastes do: line editing, input history, scrolling, sending a line.

use super::*;

impl App {
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
    pub(super) fn input_len(&self) -> usize {
        let lines = self.input.lines();
        lines.iter().map(String::len).sum::<usize>() + lines.len().saturating_sub(1)
    }

    pub fn input_text(&self) -> String {
        self.input.lines().join("\n")
    }

    pub(super) fn set_input(&mut self, text: &str) {
        self.input = new_input();
        self.input.insert_str(text);
    }

    pub(super) fn input_is_empty(&self) -> bool {
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

    pub(super) fn scroll_up(&mut self, rows: usize) {
        // Clamped at the top by the next render.
        self.scroll += rows;
    }

    pub(super) fn scroll_down(&mut self, rows: usize) {
        self.scroll = self.scroll.saturating_sub(rows);
        if self.scroll == 0 {
            self.unseen = 0;
        }
    }

    pub(super) fn history_up(&mut self) {
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

    pub(super) fn history_down(&mut self) {
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

    pub(super) fn submit(&mut self) -> Action {
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
}
