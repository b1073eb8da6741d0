//! Settings of an interactive node: flags > `CHATMESH_*` environment > config file > defaults.
//!
//! clap reads the flags and the environment (each flag names its variable); the config file fills what
//! neither gave; the defaults fill the rest. Every value is checked here, so that a bad one is one clear
//! line and exit status 2 before anything starts.

use chatmesh_node::{NodeOptions, DEMO_NETWORK_KEY};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_GROUP: &str = "239.255.77.77:7777";
pub const DEFAULT_MESH: &str = "chatmesh";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ui {
    /// Full-screen terminal interface (the default on a terminal).
    Tui,
    /// Readable lines, for a plain terminal or a pipe.
    Plain,
    /// One JSON object per event on stdout; stdin lines are messages or /commands.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything, including every heartbeat and frame kind on the wire.
    Debug,
    /// Membership, elections and the heartbeats (the seeds' heartbeat mode).
    Heartbeat,
    Info,
    Warn,
}

/// The node's flags (each also read from its `CHATMESH_*` variable).
#[derive(Args, Debug, Default, Clone)]
pub struct NodeArgs {
    /// Config file (TOML, keys as the long flags with underscores). Default: $XDG_CONFIG_HOME/chatmesh/config.toml
    /// when it exists.
    #[arg(long, env = "CHATMESH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Display name.
    #[arg(long, env = "CHATMESH_NAME")]
    pub name: Option<String>,
    /// Mesh name: nodes only talk to nodes of the same mesh [default: chatmesh].
    #[arg(long, env = "CHATMESH_MESH")]
    pub mesh: Option<String>,
    /// Multicast group for discovery [default: 239.255.77.77:7777].
    #[arg(long, env = "CHATMESH_GROUP", value_name = "ADDR:PORT")]
    pub group: Option<String>,
    /// Address of the interface multicast uses (e.g. 127.0.0.1 for one machine) [default: the listen address
    /// when that is loopback, else the system's choice by its routes].
    #[arg(long, env = "CHATMESH_IFACE", value_name = "ADDR")]
    pub iface: Option<String>,
    /// TCP address to listen on for links (the same port takes direct datagrams) [default: 0.0.0.0:0].
    #[arg(long, env = "CHATMESH_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// A member to find the mesh through where multicast does not reach (repeatable).
    #[arg(long = "peer", env = "CHATMESH_PEERS", value_delimiter = ',', value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Data directory: identity, membership and history [default: $XDG_DATA_HOME/chatmesh/<mesh>-<name>].
    #[arg(long, env = "CHATMESH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of the rotating log files [default: <data-dir>/logs].
    #[arg(long, env = "CHATMESH_LOG_DIR", value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Log detail [default: info].
    #[arg(long, env = "CHATMESH_LOG", value_enum)]
    pub log: Option<LogLevel>,
    /// Serve the control API (status, history, messages, events, metrics) on this address.
    #[arg(long, env = "CHATMESH_HTTP", value_name = "ADDR:PORT")]
    pub http: Option<String>,
    /// User interface [default: tui on a terminal, plain otherwise].
    #[arg(long, env = "CHATMESH_UI", value_enum)]
    pub ui: Option<Ui>,
    /// File holding the network key: only nodes with the same key can link [env: CHATMESH_NETWORK_KEY holds
    /// the key itself].
    #[arg(long, env = "CHATMESH_NETWORK_KEY_FILE", value_name = "FILE")]
    pub network_key_file: Option<PathBuf>,
}

/// The config file's keys.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    mesh: Option<String>,
    group: Option<String>,
    iface: Option<String>,
    listen: Option<String>,
    #[serde(alias = "peer")]
    peers: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    log: Option<LogLevel>,
    http: Option<String>,
    ui: Option<Ui>,
    network_key_file: Option<PathBuf>,
}

/// Everything resolved and checked.
#[derive(Debug)]
pub struct Settings {
    pub node: NodeOptions,
    pub log_dir: PathBuf,
    pub log: LogLevel,
    pub http: Option<SocketAddr>,
    pub ui: Option<Ui>,
    /// No network key was given: the well-known demo key is in use.
    pub demo_key: bool,
}

/// A usage error: printed as one line, exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

fn read_file_config(args: &NodeArgs) -> Result<FileConfig, UsageError> {
    let (path, explicit) = match &args.config {
        Some(p) => (p.clone(), true),
        None => match dirs::config_dir() {
            Some(d) => (d.join("chatmesh").join("config.toml"), false),
            None => return Ok(FileConfig::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => return Err(usage(format!("cannot read the config file {}: {e}", path.display()))),
    };
    toml::from_str(&text).map_err(|e| usage(format!("config file {}: {}", path.display(), e.message())))
}

/// A name as a single path component: anything but letters, digits, `-`, `_` and `.` becomes `_`.
fn path_safe(s: &str) -> String {
    let s: String = s.chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

fn default_name() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "node".into())
}

/// Resolves host names too (`--peer laptop.local:7000`); the first IPv4 address wins.
fn parse_addr(what: &str, s: &str) -> Result<SocketAddr, UsageError> {
    let bad = |detail: String| usage(format!("{what} {s:?}: {detail} (expected HOST:PORT, e.g. 192.168.1.20:7000)"));
    let mut addrs = s.to_socket_addrs().map_err(|e| bad(e.to_string()))?;
    addrs.find(|a| a.is_ipv4()).ok_or_else(|| bad("no IPv4 address".into()))
}

fn parse_ipv4(what: &str, s: &str) -> Result<Ipv4Addr, UsageError> {
    s.parse().map_err(|_| usage(format!("{what} {s:?} is not an IPv4 address (e.g. 127.0.0.1 or 192.168.1.20)")))
}

fn valid_name(what: &str, s: &str) -> Result<String, UsageError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(usage(format!("{what} must not be empty")));
    }
    if s.len() > chatmesh_core::MAX_NAME_LEN {
        return Err(usage(format!("{what} is {} bytes long; the limit is {}", s.len(), chatmesh_core::MAX_NAME_LEN)));
    }
    if s.chars().any(char::is_control) {
        return Err(usage(format!("{what} must not contain control characters")));
    }
    Ok(s.to_owned())
}

/// The network key: the key file from the flag (or `CHATMESH_NETWORK_KEY_FILE`), else `CHATMESH_NETWORK_KEY`,
/// else the config file's key file, else the demo key.
fn network_key(flag_file: Option<&Path>, config_file: Option<&Path>) -> Result<(Vec<u8>, bool), UsageError> {
    if let Some(f) = flag_file {
        return key_file(f);
    }
    if let Ok(k) = std::env::var("CHATMESH_NETWORK_KEY") {
        let k = k.trim().as_bytes().to_vec();
        if k.is_empty() {
            return Err(usage("CHATMESH_NETWORK_KEY is empty: set it to a shared secret, or unset it"));
        }
        return Ok((k, false));
    }
    match config_file {
        Some(f) => key_file(f),
        None => Ok((DEMO_NETWORK_KEY.to_vec(), true)),
    }
}

fn key_file(path: &Path) -> Result<(Vec<u8>, bool), UsageError> {
    let bytes =
        std::fs::read(path).map_err(|e| usage(format!("cannot read the network key file {}: {e}", path.display())))?;
    let key = bytes.trim_ascii().to_vec();
    if key.is_empty() {
        return Err(usage(format!(
            "the network key file {} is empty (put a shared secret in it, e.g. `head -c 32 /dev/urandom | base64 > {}`)",
            path.display(),
            path.display()
        )));
    }
    Ok((key, false))
}

/// The data directory given, else the default one of a node of this mesh and name.
fn data_dir_of(given: Option<PathBuf>, mesh: &str, name: &str) -> Result<PathBuf, UsageError> {
    match given {
        Some(d) => Ok(d),
        None => Ok(dirs::data_dir()
            .ok_or_else(|| usage("no data directory could be found: give one with --data-dir"))?
            .join("chatmesh")
            .join(format!("{}-{}", path_safe(mesh), path_safe(name)))),
    }
}

/// The data directory a node started with these settings uses, resolved as `resolve` does (flags >
/// environment > config file > defaults), for commands that read a node's data without running it.
pub fn data_dir(args: &NodeArgs) -> Result<PathBuf, UsageError> {
    let file = read_file_config(args)?;
    if let Some(d) = args.data_dir.clone().or(file.data_dir) {
        return Ok(d);
    }
    let name = valid_name("--name", &args.name.clone().or(file.name).unwrap_or_else(default_name))?;
    let mesh = valid_name("--mesh", &args.mesh.clone().or(file.mesh).unwrap_or_else(|| DEFAULT_MESH.into()))?;
    data_dir_of(None, &mesh, &name)
}

pub fn resolve(args: &NodeArgs) -> Result<Settings, UsageError> {
    let file = read_file_config(args)?;
    let name = valid_name("--name", &args.name.clone().or(file.name).unwrap_or_else(default_name))?;
    let mesh = valid_name("--mesh", &args.mesh.clone().or(file.mesh).unwrap_or_else(|| DEFAULT_MESH.into()))?;
    let group_s = args.group.clone().or(file.group).unwrap_or_else(|| DEFAULT_GROUP.into());
    let group: SocketAddrV4 =
        group_s.parse().map_err(|_| usage(format!("--group {group_s:?} is not IPV4:PORT (e.g. {DEFAULT_GROUP})")))?;
    if !group.ip().is_multicast() {
        return Err(usage(format!(
            "--group {group} is not a multicast address (use one in 224.0.0.0/4, e.g. {DEFAULT_GROUP})"
        )));
    }
    if group.port() == 0 {
        return Err(usage("--group needs a port other than 0"));
    }
    let listen_s = args.listen.clone().or(file.listen).unwrap_or_else(|| "0.0.0.0:0".into());
    let listen = parse_addr("--listen", &listen_s)?;
    let iface = match args.iface.clone().or(file.iface) {
        Some(s) => Some(parse_ipv4("--iface", &s)?),
        // A node listening on loopback does its multicast there too.
        None => match listen {
            SocketAddr::V4(a) if a.ip().is_loopback() => Some(*a.ip()),
            _ => None,
        },
    };
    let peer_strings = if args.peers.is_empty() { file.peers.unwrap_or_default() } else { args.peers.clone() };
    // Addresses are taken as they are; host names are resolved by the node, again and again (a name may not
    // resolve yet when the node starts, e.g. a container that is not up), so only their form is checked here.
    let mut peers = Vec::new();
    let mut peer_names = Vec::new();
    for p in &peer_strings {
        match p.parse::<SocketAddr>() {
            Ok(a) => peers.push(a),
            Err(_) => match p.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                    peer_names.push(p.clone())
                }
                _ => {
                    return Err(usage(format!(
                        "--peer {p:?}: expected HOST:PORT, e.g. 192.168.1.20:7000 or laptop.local:7000"
                    )))
                }
            },
        }
    }
    let data_dir = data_dir_of(args.data_dir.clone().or(file.data_dir), &mesh, &name)?;
    let log_dir = args.log_dir.clone().or(file.log_dir).unwrap_or_else(|| data_dir.join("logs"));
    let log = args.log.or(file.log).unwrap_or(LogLevel::Info);
    let http = match args.http.clone().or(file.http) {
        Some(s) => Some(parse_addr("--http", &s)?),
        None => None,
    };
    let ui = args.ui.or(file.ui);
    let (network_key, demo_key) = network_key(args.network_key_file.as_deref(), file.network_key_file.as_deref())?;
    let mut node = NodeOptions::local(&mesh, &name, data_dir, group.port());
    node.group = group;
    node.iface = iface;
    node.listen = listen;
    node.peers = peers;
    node.peer_names = peer_names;
    node.network_key = network_key;
    node.handshake_timeout = Duration::from_secs(3);
    Ok(Settings { node, log_dir, log, http, ui, demo_key })
}
