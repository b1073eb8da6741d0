//! Drawing the screen from `App`: the history (wrapped, with dates and delivery marks), the notices, the
//! members, the status bar, the input box and the popup.

use super::*;

impl App {
    pub(super) fn message_spans(&self, m: &MessageView) -> Vec<Span<'static>> {
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

    pub(super) fn message_rows(&self, m: &MessageView, width: usize) -> Vec<Line<'static>> {
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

    pub(super) fn render_history(&mut self, f: &mut Frame, area: Rect) {
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
    pub(super) fn note_rows(&self, width: usize) -> Vec<(usize, Line<'static>)> {
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

    pub(super) fn render_notes(&mut self, f: &mut Frame, area: Rect, rows: Vec<(usize, Line<'static>)>) {
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

    pub(super) fn render_members(&self, f: &mut Frame, area: Rect) {
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

    pub(super) fn render_status(&self, f: &mut Frame, area: Rect) {
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

    pub(super) fn render_input(&mut self, f: &mut Frame, area: Rect) {
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

    pub(super) fn render_popup(&mut self, f: &mut Frame, area: Rect) {
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
}
