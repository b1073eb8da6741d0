//! The terminal and the loop around `App`: taking and giving back the terminal, the key thread, signals
//! (Ctrl-Z, SIGCONT), and the loop that feeds `App` from keys, node events, status polls and replies.

use super::*;

/// The terminal taken (raw mode, alternate screen, bracketed paste, mouse and focus reports) for as long as it
/// lives.
pub(super) struct TerminalGuard;

impl TerminalGuard {
    pub(super) fn enter() -> anyhow::Result<(TerminalGuard, Terminal<CrosstermBackend<std::io::Stdout>>)> {
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
pub(super) struct KeyReader {
    pub(super) stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub(super) rx: mpsc::Receiver<std::io::Result<Event>>,
}

impl KeyReader {
    pub(super) fn spawn() -> anyhow::Result<KeyReader> {
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
pub(super) struct Signals {
    #[cfg(unix)]
    pub(super) leave: Vec<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    pub(super) cont: Option<tokio::signal::unix::Signal>,
}

pub(super) enum Sig {
    Leave,
    Continued,
}

impl Signals {
    pub(super) fn new() -> Signals {
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

    pub(super) async fn next(&mut self) -> Sig {
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
pub(super) enum Done {
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
pub(super) const MAX_EVENTS_PER_FRAME: usize = 4096;

/// What one terminal event asks of the loop.
pub(super) struct Flow {
    /// Some(true): leave gracefully; Some(false): stop at once.
    pub(super) quit: Option<bool>,
    /// The terminal cannot be read any more.
    pub(super) fatal: Option<anyhow::Error>,
}

/// One event from the terminal: keys, a paste, the mouse, the focus.
pub(super) fn on_event(
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
pub(super) async fn event_loop(
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
