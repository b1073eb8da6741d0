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
    let (older, newer, newest) =
        (row_of(&b, "older words").unwrap(), row_of(&b, "newer words").unwrap(), row_of(&b, "newest words").unwrap());
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
