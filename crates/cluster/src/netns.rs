//! Network namespaces as hosts: a *switch* namespace holding the bridges, one namespace per node, and a
//! management network that the harness (in the root namespace) uses to reach every node's control API.
//!
//! ```text
//!  root ns ── cm<R>h (10.78.R.254) ─┐
//!                                   │  switch ns "cm<R>sw"
//!                                   ├── brm (management: never cut)
//!  node ns "cm<R>n<i>": mgmt0 (10.78.R.i) ──┘
//!                       eth0  (10.77.R.i) ── d<i> ── br0 (data: multicast and links)
//!                                                     br1 (the other side of a split)
//! ```
//!
//! Faults are made only with `ip link`: a split moves one group's data ports to `br1` (multicast and
//! links stay inside each side), isolating a node sets its data port down, healing puts every port back on
//! `br0` and up. Everything is created under a run-specific prefix and removed on `Drop`; namespaces left
//! by a run whose process is gone are removed by the next run.

use std::process::{Command, Stdio};

/// Runs `ip` with these arguments; an error says which command failed and why.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Runs `ip -n NS -batch -` with these commands on its standard input.
fn ip_batch(ns: &str, commands: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(commands.as_bytes()).map_err(|e| format!("ip -batch: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("ip -batch: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip -n {ns} -batch: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn ip_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run `ip`: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fails with a clear message unless the harness can create network namespaces.
pub fn require_root() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the cluster tests create network namespaces and need root: run them as root \
                    (in CI, `.ci/run` runs as root)"
            .into());
    }
    ip(&["netns", "list"]).map_err(|e| format!("network namespaces are not available: {e}"))
}

/// The most hosts one network holds (the last octet of its addresses).
pub const MAX_HOSTS: usize = 250;

/// One run's network: `n` hosts.
pub struct Net {
    /// Run number: the third octet of both subnets and part of every name.
    pub r: u8,
    pub n: usize,
    prefix: String,
    created: bool,
    /// A detached shell that removes everything once this process is gone, however it ends (its stdin is a
    /// pipe only this process holds: when the pipe closes, it cleans up).
    _janitor: Option<std::process::ChildStdin>,
}

impl Net {
    pub fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    pub fn node_ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// Data address of node `i` (0-based): chat traffic, multicast.
    pub fn data_ip(&self, i: usize) -> String {
        format!("10.77.{}.{}", self.r, i + 1)
    }

    /// Management address of node `i`: its control API.
    pub fn mgmt_ip(&self, i: usize) -> String {
        format!("10.78.{}.{}", self.r, i + 1)
    }

    fn host_if(&self) -> String {
        format!("{}h", self.prefix)
    }

    /// Creates the network for `n` nodes with a run number not used by any other run on this machine.
    pub fn create(n: usize) -> Result<Net, String> {
        require_root()?;
        if n > MAX_HOSTS {
            return Err(format!("at most {MAX_HOSTS} hosts in one network"));
        }
        // Runs in one process (parallel tests) take turns choosing their subnet and names.
        static CREATING: std::sync::Mutex<u32> = std::sync::Mutex::new(0);
        let mut count = CREATING.lock().unwrap_or_else(|p| p.into_inner());
        *count += 1;
        let k = *count % 10;
        remove_stale();
        let used = ip_output(&["-4", "addr"])?;
        let pid = std::process::id();
        let r = (1..=250u32)
            .map(|k| ((pid.wrapping_mul(7919).wrapping_add(k * 31)) % 250 + 1) as u8)
            .find(|r| !used.contains(&format!("10.78.{r}.")))
            .ok_or("no free 10.78.x.0/24 management subnet")?;
        let prefix = format!("cm{r}p{}x{k}", pid % 100_000);
        let mut net = Net { r, n, prefix, created: true, _janitor: None };
        net._janitor = net.janitor();
        if let Err(e) = net.build() {
            net.destroy();
            net.created = false;
            return Err(e);
        }
        Ok(net)
    }

    fn build(&self) -> Result<(), String> {
        let sw = self.switch();
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        for br in ["br0", "br1", "brm"] {
            // Snooping off: multicast is flooded like broadcast, as on a plain switch.
            ip(&["-n", &sw, "link", "add", br, "type", "bridge", "mcast_snooping", "0"])?;
            ip(&["-n", &sw, "link", "set", br, "up"])?;
        }
        // The harness's port on the management network.
        let host = self.host_if();
        ip(&["link", "add", &host, "type", "veth", "peer", "name", "hostm", "netns", &sw])?;
        ip(&["-n", &sw, "link", "set", "hostm", "master", "brm", "up"])?;
        ip(&["addr", "add", &format!("10.78.{}.254/24", self.r), "dev", &host])?;
        ip(&["link", "set", &host, "up"])?;
        for i in 0..self.n {
            self.build_host(i)?;
        }
        Ok(())
    }

    /// Node `i`'s namespace with its data and management ports.
    fn build_host(&self, i: usize) -> Result<(), String> {
        let sw = self.switch();
        let ns = self.node_ns(i);
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let (d, m) = (format!("d{i}"), format!("m{i}"));
        ip(&["-n", &sw, "link", "add", &d, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        ip(&["-n", &sw, "link", "add", &m, "type", "veth", "peer", "name", "mgmt0", "netns", &ns])?;
        ip(&["-n", &sw, "link", "set", &d, "master", "br0", "up"])?;
        ip(&["-n", &sw, "link", "set", &m, "master", "brm", "up"])?;
        ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.data_ip(i)), "dev", "eth0"])?;
        ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.mgmt_ip(i)), "dev", "mgmt0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "mgmt0", "up"])?;
        // Multicast leaves through the data interface.
        ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        Ok(())
    }

    /// One more host on the data network (on `br0`); returns its index.
    pub fn add_host(&mut self) -> Result<usize, String> {
        if self.n >= MAX_HOSTS {
            return Err(format!("at most {MAX_HOSTS} hosts in one network"));
        }
        let i = self.n;
        self.n += 1;
        self.build_host(i)?;
        Ok(i)
    }

    /// Splits the data network: `side_b` nodes on one bridge, all others on the other.
    /// All ports change in one `ip -batch` run, so that the network changes at one moment.
    pub fn split(&self, side_b: &[usize]) -> Result<(), String> {
        let mut batch = String::new();
        for i in 0..self.n {
            let br = if side_b.contains(&i) { "br1" } else { "br0" };
            batch += &format!("link set d{i} master {br}\nlink set d{i} up\n");
        }
        ip_batch(&self.switch(), &batch)
    }

    /// Cuts node `i` off the data network (its control API stays reachable).
    pub fn isolate(&self, i: usize) -> Result<(), String> {
        ip(&["-n", &self.switch(), "link", "set", &format!("d{i}"), "down"])
    }

    /// One data network again, every port up.
    pub fn heal(&self) -> Result<(), String> {
        self.split(&[])
    }

    fn janitor(&self) -> Option<std::process::ChildStdin> {
        // By prefix, so that hosts added after the start are removed too.
        let script = format!(
            "read _ignored; for ns in $(ip netns list | cut -d' ' -f1 | grep -E '^{p}(n[0-9]+|sw)$'); do \
             ip netns del $ns 2>/dev/null; done; ip link del {h} 2>/dev/null; exit 0",
            p = self.prefix,
            h = self.host_if()
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: setsid is async-signal-safe; a session of its own keeps the janitor out of a Ctrl-C
            // sent to the harness's process group.
            unsafe {
                cmd.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
        }
        cmd.spawn().ok().and_then(|mut c| c.stdin.take())
    }

    fn destroy(&mut self) {
        let _ = ip(&["link", "del", &self.host_if()]);
        for i in 0..self.n {
            let _ = ip(&["netns", "del", &self.node_ns(i)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if self.created {
            self.destroy();
        }
    }
}

/// Removes namespaces and host ports of earlier runs whose process is gone (a run killed before its
/// `Drop` could clean up).
fn remove_stale() {
    let Ok(list) = ip_output(&["netns", "list"]) else { return };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix("cm") else { continue };
        let Some((r, tail)) = rest.split_once('p') else { continue };
        let pid_part: String = tail.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(pid) = pid_part.parse::<u32>() else { continue };
        if r.parse::<u8>().is_err() {
            continue;
        }
        // The name holds the pid modulo 100000: a live process with that remainder may own it.
        let alive = std::fs::read_dir("/proc")
            .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).any(|p| p % 100_000 == pid))
            .unwrap_or(true);
        if !alive {
            let _ = ip(&["netns", "del", name]);
            // The harness's port is `<prefix>h`, the prefix being `cm<r>p<pid>x<k>`.
            let xk: String = tail[pid_part.len()..].chars().take(2).collect();
            let _ = ip(&["link", "del", &format!("cm{r}p{pid}{xk}h")]);
        }
    }
}
