//! `chatmesh demo`: the mission on real node processes on this machine.
//!
//! Every node is this same binary started as `chatmesh --ui json ...` with its own data directory, on the
//! loopback interface (multicast included: nothing leaves the machine), on a mesh name and group port of
//! its own so that several demos or tests can run at once. The demo drives and checks them through their
//! control APIs, narrates what their event streams say, and removes every process it started, also on
//! Ctrl-C, on failure, and (through the kernel's parent-death signal) if the demo itself is killed.

use crate::commands::fmt_time;
use crate::demo_tui::{Narrator, NodeState};
use chatmesh_harness::check::{all_acked, coordinator_id, one_mesh, same_history};
use chatmesh_harness::process::{terminate_all, Line};
use chatmesh_harness::{Client, MessageView, NodeArgs, NodeProcess, Notice, StatusView, Stdout};
use clap::Args;
use serde_json::Value;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

const NAMES: [&str; 9] = ["ana", "bruno", "carla", "davi", "eva", "fabio", "gina", "hugo", "iris"];
/// How long any one check may take before the step fails.
const STEP_LIMIT: Duration = Duration::from_secs(20);

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of nodes to start (a newcomer joins later on top of these).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(4..=8))]
    nodes: u16,
    /// Tell the story on the deterministic simulator instead (virtual time, the same protocol core).
    #[arg(long)]
    simulated: bool,
    /// Seed of the simulated network (with --simulated).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Keep the nodes' data and log directories (printed at the end) instead of removing them.
    #[arg(long)]
    keep: bool,
    /// No pauses between steps (for tests and scripts); by default the demo paces itself for people.
    #[arg(long)]
    fast: bool,
    /// Narrated plain text even on a terminal (by default a terminal gets the nodes side by side).
    #[arg(long)]
    plain: bool,
}

/// Set by SIGINT, SIGTERM or SIGHUP.
static INTERRUPTED: LazyLock<Arc<AtomicBool>> = LazyLock::new(Arc::default);

pub fn main(args: DemoArgs) -> ExitCode {
    if args.simulated {
        return match crate::sim_demo::run(&crate::sim_demo::DemoOptions { nodes: args.nodes.into(), seed: args.seed }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("chatmesh demo: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&INTERRUPTED))
            .expect("SIGINT, SIGTERM and SIGHUP can be caught");
    }
    let base = std::env::temp_dir().join(format!("chatmesh-demo-{}", std::process::id()));
    let pace = if args.fast { Duration::ZERO } else { Duration::from_millis(1500) };
    let mut demo = match Demo::new(base.clone(), pace) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("chatmesh demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let n = args.nodes as usize;
    if !args.plain && std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        match Narrator::tui(&NAMES[..=n], &INTERRUPTED) {
            Ok(tui) => demo.out = tui,
            Err(e) => eprintln!("chatmesh demo: cannot use the terminal ({e}); telling it as plain text"),
        }
    }
    let result = demo.play(n);
    match &result {
        Ok(()) => {
            demo.out.outcome(true, "DEMO PASSED: every check held.");
            // Let people see the final state (q leaves at once).
            if demo.out.is_tui() && !args.fast {
                demo.linger(Duration::from_secs(3));
            }
        }
        Err(e) => demo.out.outcome(false, &format!("DEMO FAILED: {e}")),
    }
    demo.stop_all();
    for line in demo.out.finish() {
        say(&line);
    }
    let code = match result {
        Ok(()) => {
            say("\nDEMO PASSED: every check held.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("\nDEMO FAILED: {e}"));
            say(&format!("   node logs: {}", base.join("logs").display()));
            ExitCode::FAILURE
        }
    };
    if args.keep {
        say(&format!("   data and logs kept in {}", base.display()));
    } else if result_is_ok(&code) {
        let _ = std::fs::remove_dir_all(&base);
    }
    code
}

fn result_is_ok(code: &ExitCode) -> bool {
    *code == ExitCode::SUCCESS
}

/// One line of output; a closed stdout does not stop the demo (its nodes must still be removed).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// One node process.
struct Proc {
    name: String,
    process: Option<NodeProcess>,
    /// Its control API, from its `ready` line.
    http: Option<String>,
}

struct Demo {
    base: PathBuf,
    mesh: String,
    group: String,
    exe: PathBuf,
    procs: Vec<Proc>,
    /// (node index, event) from every node's stdout.
    events_tx: mpsc::Sender<(usize, Value)>,
    events: mpsc::Receiver<(usize, Value)>,
    agent: ureq::Agent,
    started: Instant,
    /// IDs of every message the demo sent and was told was stored.
    sent: Vec<String>,
    /// A pause after each step, for people to read (zero with --fast).
    pace: Duration,
    /// Where everything the demo says goes: plain text or the split screen.
    out: Narrator,
}

type Res<T> = Result<T, String>;

impl Demo {
    fn new(base: PathBuf, pace: Duration) -> Res<Demo> {
        std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
        let salt = std::process::id() ^ (Instant::now().elapsed().subsec_nanos());
        let port = 20000 + (salt % 30000) as u16;
        let (events_tx, events) = mpsc::channel();
        Ok(Demo {
            base,
            mesh: format!("demo-{}", std::process::id()),
            group: format!("239.255.77.77:{port}"),
            exe,
            procs: Vec::new(),
            events_tx,
            events,
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(3)).build(),
            started: Instant::now(),
            sent: Vec::new(),
            pace,
            out: Narrator::Plain,
        })
    }

    fn check_interrupt(&self) -> Res<()> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            Err("interrupted".into())
        } else {
            Ok(())
        }
    }

    /// Starts node `i` (a new one, or again after a kill with the same data directory).
    fn spawn(&mut self, i: usize) -> Res<()> {
        let name = NAMES[i].to_string();
        let mut args = NodeArgs::loopback(
            &self.exe,
            &name,
            &self.mesh,
            &self.group,
            &self.base.join(&name),
            &self.base.join("logs"),
        );
        args.stdout = Stdout::Lines { keep: false, forward: Some((i, self.events_tx.clone())) };
        let p = Proc { name, process: Some(NodeProcess::spawn(args)?), http: None };
        if i < self.procs.len() {
            self.procs[i] = p;
            self.out.state(i, NodeState::Restarting);
        } else {
            self.procs.push(p);
            self.out.state(i, NodeState::Running);
        }
        Ok(())
    }

    /// Reads node events for up to `d`, narrating the interesting ones; returns at once on an interrupt.
    fn pump(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if INTERRUPTED.load(Ordering::SeqCst) {
                break;
            }
            match self.events.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok((i, v)) => self.narrate(i, &v),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn narrate(&mut self, i: usize, v: &Value) {
        let name = self.procs.get(i).map_or("?".to_string(), |p| p.name.clone());
        let t = self.started.elapsed().as_secs_f64();
        let line = match Line::of(v) {
            Line::Ready(r) => {
                if let Some(p) = self.procs.get_mut(i) {
                    p.http.clone_from(&r.http);
                }
                Some(format!(
                    "process started, listening on {}; live page: http://{}/",
                    r.addr,
                    r.http.as_deref().unwrap_or("?")
                ))
            }
            Line::Notice(Notice::Founded { id, .. }) => Some(format!("nobody answered: founded the mesh as #{id}")),
            Line::Notice(Notice::Joined { id, .. }) => Some(format!("joined through multicast, got ID #{id}")),
            Line::Notice(Notice::ElectionStarted { term }) => Some(format!("election started (term {term})")),
            Line::Notice(Notice::Coordinator { me: true, term, .. }) => {
                Some(format!("I am the coordinator (term {term})"))
            }
            Line::Notice(Notice::IdReassigned { old, new, .. }) => Some(format!("ID #{old} is now #{new}")),
            _ => None,
        };
        self.out.node_event(i, v, line.map(|line| format!("   {t:6.2}s [{name:<5}] {line}")));
    }

    fn http(&mut self, i: usize) -> Res<String> {
        let limit = Instant::now() + STEP_LIMIT;
        while self.procs[i].http.is_none() {
            self.check_interrupt()?;
            if Instant::now() > limit {
                return Err(format!("{} never reported its control API address", self.procs[i].name));
            }
            self.pump(Duration::from_millis(50));
        }
        Ok(self.procs[i].http.clone().unwrap_or_default())
    }

    fn client(&mut self, i: usize) -> Res<Client> {
        let http = self.http(i)?;
        Ok(Client::new(&self.agent, &http))
    }

    fn status(&mut self, i: usize) -> Res<StatusView> {
        let s = self.client(i)?.status().map_err(|e| format!("{}: {e}", self.procs[i].name))?;
        self.out.status(i, &s);
        Ok(s)
    }

    fn send(&mut self, i: usize, text: &str) -> Res<MessageView> {
        let m = self.client(i)?.send(text).map_err(|e| format!("{} could not send: {e}", self.procs[i].name))?;
        self.sent.push(m.id.clone());
        Ok(m)
    }

    /// Waits until `nodes` hold equal histories that include every message sent so far.
    fn wait_synced(&mut self, what: &str, nodes: &[usize]) -> Res<Duration> {
        let start = Instant::now();
        loop {
            self.wait_for(what, nodes, same_history)?;
            let held: std::collections::HashSet<String> = self.history(nodes[0])?.into_iter().map(|m| m.id).collect();
            let missing = self.sent.iter().filter(|id| !held.contains(*id)).count();
            if missing == 0 {
                return Ok(start.elapsed());
            }
            if start.elapsed() > STEP_LIMIT {
                return Err(format!("{what}: {missing} sent messages missing after {}s", STEP_LIMIT.as_secs()));
            }
            self.pump(Duration::from_millis(50));
        }
    }

    fn history(&mut self, i: usize) -> Res<Vec<MessageView>> {
        Ok(self.client(i)?.history()?)
    }

    fn live(&self) -> Vec<usize> {
        (0..self.procs.len()).filter(|i| self.procs[*i].process.is_some()).collect()
    }

    /// Polls until `check` holds over the statuses of `nodes`; returns how long it took.
    fn wait_for(
        &mut self,
        what: &str,
        nodes: &[usize],
        check: impl Fn(&[StatusView]) -> Result<(), String>,
    ) -> Res<Duration> {
        let start = Instant::now();
        let mut last;
        loop {
            self.check_interrupt()?;
            let statuses: Res<Vec<StatusView>> = nodes.iter().map(|i| self.status(*i)).collect();
            match statuses.and_then(|s| check(&s)) {
                Ok(()) => return Ok(start.elapsed()),
                Err(e) => last = e,
            }
            if start.elapsed() > STEP_LIMIT {
                return Err(format!("{what}: not within {}s ({last})", STEP_LIMIT.as_secs()));
            }
            self.pump(Duration::from_millis(20));
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].process.take() {
            p.kill();
            self.out.state(i, NodeState::Killed);
        }
    }

    /// SIGTERM to every node (they leave the mesh), SIGKILL to those still there after 3 s.
    fn stop_all(&mut self) {
        let mut procs: Vec<NodeProcess> = self.procs.iter_mut().filter_map(|p| p.process.take()).collect();
        terminate_all(&mut procs, Duration::from_secs(3));
    }

    fn play(&mut self, n: usize) -> Res<()> {
        self.out.line(&format!(
            "ChatMesh demo: {n} real node processes on this machine (loopback only; mesh {}, group {})",
            self.mesh, self.group
        ));
        self.out.line(&format!("   data and logs under {}", self.base.display()));
        self.out.line("");

        self.out.step(
            "1. Nodes start one after another, find each other through multicast and get IDs from the coordinator",
        );
        for i in 0..n {
            self.spawn(i)?;
            self.pump(Duration::from_millis(200) + self.pace / 5);
        }
        let all: Vec<usize> = (0..n).collect();
        let t = self.wait_for("one mesh with every node", &all, |s| one_mesh(s, n))?;
        let statuses: Vec<StatusView> = all.iter().map(|i| self.status(*i)).collect::<Res<_>>()?;
        self.out.table(&table(&statuses));
        let coordinator = index_of_coordinator(&statuses).ok_or("no coordinator")?;
        self.out.ok(&format!(
            "one mesh: {n} members, unique IDs, one coordinator, agreed by all ({} after the last start); the \
             founder coordinates, and newcomers join without an election (a live coordinator is never displaced)",
            secs(t)
        ));

        self.pause()?;
        self.out.step("2. Everyone chats");
        for i in 0..n {
            let text = format!("olá from {}", self.procs[i].name);
            self.send(i, &text)?;
        }
        let t = self.wait_synced("histories agree", &all)?;
        self.show_history(0, 6)?;
        self.out.ok(&format!("every node holds the same history (equal digests) {} after the last send", secs(t)));

        self.pause()?;
        let victim = coordinator;
        let victim_id = statuses[victim].id.unwrap_or(0);
        self.out.step(&format!(
            "3. The coordinator {} (#{victim_id}) is killed with SIGKILL while the others keep chatting",
            self.procs[victim].name
        ));
        let killed_at = Instant::now();
        self.kill(victim);
        let survivors: Vec<usize> = self.live();
        let mut sent_during = 0;
        for (k, i) in survivors.iter().enumerate() {
            let text = format!("still here: {} (during the election)", self.procs[*i].name);
            match self.send(*i, &text) {
                Ok(_) => sent_during += 1,
                Err(e) => return Err(format!("sending during the election failed: {e}")),
            }
            if k == 0 {
                self.pump(Duration::from_millis(5));
            }
        }
        // Bully by seniority: the survivor with the lowest ID takes over.
        let expected = survivors.iter().map(|i| statuses[*i].id.unwrap_or(0)).min().unwrap_or(0);
        self.wait_for("a new coordinator followed by all survivors", &survivors, |s| {
            let c: Vec<u32> = s.iter().map(coordinator_id).collect();
            if c.iter().all(|x| *x == expected) {
                Ok(())
            } else {
                Err(format!("coordinators seen: {c:?}, expecting #{expected}"))
            }
        })?;
        let took = killed_at.elapsed();
        self.out.ok(&format!(
            "survivors elected #{expected} (the most senior survivor) {} after the kill; {sent_during} messages sent meanwhile were stored",
            ms(took)
        ));
        let t = self.wait_synced("survivors' histories agree", &survivors)?;
        self.out.ok(&format!("the messages sent during the election reached every survivor ({} later)", secs(t)));

        self.pause()?;
        self.out.step(&format!(
            "4. {} restarts from its data directory, gets its old ID back and catches up",
            self.procs[victim].name
        ));
        self.spawn(victim)?;
        let everyone: Vec<usize> = (0..n).collect();
        self.wait_for("the restarted node is back", &everyone, |s| one_mesh(s, n))?;
        self.same_coordinator(victim, expected)?;
        let st = self.status(victim)?;
        if st.id != Some(victim_id) {
            return Err(format!("{} came back as #{:?} instead of #{victim_id}", self.procs[victim].name, st.id));
        }
        let t = self.wait_synced("the restarted node caught up", &everyone)?;
        self.out.ok(&format!(
            "{} is #{victim_id} again and holds the history it missed (equal digests {} after it rejoined); it \
             follows #{expected}: it outranks it, but a live coordinator is never displaced",
            self.procs[victim].name,
            secs(t)
        ));

        self.pause()?;
        self.out.step(&format!("5. A newcomer, {}, joins and receives the whole history", NAMES[n]));
        self.spawn(n)?;
        let everyone: Vec<usize> = (0..=n).collect();
        let t = self.wait_for("the newcomer is in", &everyone, |s| one_mesh(s, n + 1))?;
        let t2 = self.wait_synced("the newcomer has everything", &everyone)?;
        self.same_coordinator(n, expected)?;
        let newcomer = self.status(n)?;
        self.out.ok(&format!(
            "{} got ID #{} in {} and holds all {} messages {} later",
            NAMES[n],
            newcomer.id.unwrap_or(0),
            secs(t),
            newcomer.history.count,
            secs(t2)
        ));
        self.send(n, "obrigado, I have read everything")?;

        self.pause()?;
        self.out.step("6. Final check on every node");
        self.wait_synced("final agreement", &everyone)?;
        let t = self.wait_for("final agreement", &everyone, |s| {
            one_mesh(s, n + 1)?;
            same_history(s)?;
            all_acked(s)
        })?;
        let statuses: Vec<StatusView> = everyone.iter().map(|i| self.status(*i)).collect::<Res<_>>()?;
        self.out.table(&table(&statuses));
        self.show_history(n, 100)?;
        // The history tells the truth: one coordinator change (the kill), and nobody but the killed node
        // recorded as failed.
        let victim_name = self.procs[victim].name.clone();
        let events: Vec<String> = self.history(n)?.into_iter().filter(|m| m.kind == "event").map(|m| m.text).collect();
        let changes = events.iter().filter(|t| t.contains("coordinates from term")).count();
        if changes != 1 {
            return Err(format!("the history holds {changes} coordinator changes, not 1 (the kill): {events:?}"));
        }
        if let Some(false_line) = events.iter().find(|t| t.contains(" failed") && !t.starts_with(&victim_name)) {
            return Err(format!("the history says {false_line:?}, but only {victim_name} failed"));
        }
        self.out.ok(&format!("the history records one coordinator change (the kill) and only {victim_name} as failed"));
        self.out.ok(&format!(
            "{} nodes, one coordinator, every message acknowledged by all, one history digest {} ({})",
            n + 1,
            statuses[0].history.digest.get(..16).unwrap_or(""),
            secs(t)
        ));
        Ok(())
    }

    /// Node `i` follows the coordinator `#id` (the one elected after the kill): joins and restarts do not move it.
    fn same_coordinator(&mut self, i: usize, id: u32) -> Res<()> {
        let st = self.status(i)?;
        match coordinator_id(&st) {
            c if c == id => Ok(()),
            c => Err(format!(
                "{} follows #{c}, expected #{id}: a join or restart moved the coordinator",
                self.procs[i].name
            )),
        }
    }

    fn show_history(&mut self, i: usize, last: usize) -> Res<()> {
        let h = self.history(i)?;
        self.out.detail(&format!(
            "   history as {} shows it ({} messages in canonical order; the last {} here):",
            self.procs[i].name,
            h.len(),
            last.min(h.len())
        ));
        for m in h.iter().skip(h.len().saturating_sub(last)) {
            let at = fmt_time(m.sent_at);
            if m.kind == "event" {
                self.out.detail(&format!("     {at}  * {}", m.text));
            } else {
                self.out.detail(&format!("     {at}  {}: {}", m.author_label, m.text));
            }
        }
        Ok(())
    }
}

impl Demo {
    /// Lets people read what happened (events keep printing meanwhile).
    fn pause(&mut self) -> Res<()> {
        self.check_interrupt()?;
        let pace = self.pace;
        self.pump(pace);
        self.check_interrupt()
    }

    /// Keeps showing the nodes' events for `d`, or until q / Ctrl-C.
    fn linger(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !INTERRUPTED.load(Ordering::SeqCst) {
            self.pump(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    /// Also on a panic: no node outlives the demo.
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn index_of_coordinator(s: &[StatusView]) -> Option<usize> {
    s.iter().position(|x| x.role == "coordinator")
}

fn table(s: &[StatusView]) -> Vec<String> {
    let mut lines =
        vec![format!("   {:<7} {:>4}  {:<12} {:>5}  {:>8}  digest", "node", "ID", "role", "term", "messages")];
    for x in s {
        lines.push(format!(
            "   {:<7} {:>4}  {:<12} {:>5}  {:>8}  {}",
            x.name,
            format!("#{}", x.id.map_or("null".into(), |id| id.to_string())),
            x.role,
            x.term,
            x.history.count,
            x.history.digest.get(..16).unwrap_or("")
        ));
    }
    lines
}
