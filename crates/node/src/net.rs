//! Sockets: the multicast group socket, the unicast datagram socket and the TCP listener.
//!
//! Two UDP sockets, because on one machine several nodes share the group port (`SO_REUSEPORT`) and the
//! kernel would hand a unicast reply to any one of them:
//! - the *group* socket is bound to the group address and port and only receives what is multicast;
//! - the *direct* socket is bound to this node's own address, on the same port number as its TCP listener
//!   (UDP and TCP ports are separate spaces). Every datagram this node sends leaves from it, so replies
//!   (`Offer`) come back to it alone; a joiner given `--peer HOST:PORT` sends its `Discover` there.

use socket2::{Domain, Protocol, Socket, Type};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use tokio::net::{TcpListener, UdpSocket};

/// Why the node's sockets could not be opened: each says what to do about it.
#[derive(Debug)]
pub enum NetError {
    /// The group is not an IPv4 multicast address.
    NotMulticast(SocketAddrV4),
    /// Joining the group on the interface failed.
    Join {
        group: Ipv4Addr,
        iface: Ipv4Addr,
        source: io::Error,
    },
    /// Binding a socket failed (the port is taken, or the address is not this machine's).
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    Io {
        what: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::NotMulticast(g) => {
                write!(f, "--group {g} is not an IPv4 multicast address (use one in 224.0.0.0/4, e.g. 239.255.77.77:7777)")
            }
            NetError::Join { group, iface, source } => write!(
                f,
                "cannot join multicast group {group} on interface {iface}: {source} \
                 (check that --iface names an address of an interface with multicast, e.g. 127.0.0.1 or your LAN address)"
            ),
            NetError::Bind { what, addr, source } if source.kind() == io::ErrorKind::AddrInUse => {
                write!(f, "cannot listen on {addr} ({what}): the port is already in use (choose another with --listen, or 0 for any)")
            }
            NetError::Bind { what, addr, source } => write!(
                f,
                "cannot bind {what} to {addr}: {source} (is it an address of this machine? see --listen and --iface)"
            ),
            NetError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for NetError {}

/// The node's open sockets.
pub struct Sockets {
    pub group_socket: UdpSocket,
    pub direct: UdpSocket,
    pub listener: TcpListener,
    /// The group and port datagrams go to.
    pub group: SocketAddrV4,
    /// The address other nodes dial (TCP) and send direct datagrams to (UDP).
    pub advertised: SocketAddr,
}

/// Opens the three sockets.
///
/// `iface` is the address of the interface multicast uses (`None`: the kernel's choice by its routes).
/// `listen` is where the TCP listener (and the direct socket) bind; port 0 picks a free port.
pub fn open(group: SocketAddrV4, iface: Option<Ipv4Addr>, listen: SocketAddr) -> Result<Sockets, NetError> {
    if !group.ip().is_multicast() {
        return Err(NetError::NotMulticast(group));
    }
    let group_socket = group_socket(group, iface)?;
    // The listener's port may be 0: bind TCP first, then UDP on the same port; retry if that UDP port is
    // taken by something else (only when the port was ours to choose).
    let mut attempts = 0;
    let (listener, direct) = loop {
        attempts += 1;
        let listener = StdTcpListener::bind(listen).map_err(|source| NetError::Bind {
            what: "the TCP listener",
            addr: listen,
            source,
        })?;
        let bound = listener.local_addr().map_err(|source| NetError::Io { what: "listener address", source })?;
        match direct_socket(bound, group, iface) {
            Ok(d) => break (listener, d),
            Err(_) if listen.port() == 0 && attempts < 20 => continue,
            Err(e) => return Err(e),
        }
    };
    let bound = listener.local_addr().map_err(|source| NetError::Io { what: "listener address", source })?;
    let advertised = SocketAddr::new(advertised_ip(bound.ip(), iface, group), bound.port());
    listener.set_nonblocking(true).map_err(|source| NetError::Io { what: "listener", source })?;
    let listener = TcpListener::from_std(listener).map_err(|source| NetError::Io { what: "listener", source })?;
    Ok(Sockets { group_socket, direct, listener, group, advertised })
}

fn group_socket(group: SocketAddrV4, iface: Option<Ipv4Addr>) -> Result<UdpSocket, NetError> {
    let io = |what| move |source| NetError::Io { what, source };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io("group socket"))?;
    s.set_reuse_address(true).map_err(io("SO_REUSEADDR"))?;
    #[cfg(unix)]
    s.set_reuse_port(true).map_err(io("SO_REUSEPORT"))?;
    // Bound to the group address itself, this socket receives only what is sent to the group.
    let addr = SocketAddr::V4(group);
    s.bind(&addr.into()).map_err(|source| NetError::Bind { what: "the multicast socket", addr, source })?;
    let on = iface.unwrap_or(Ipv4Addr::UNSPECIFIED);
    s.join_multicast_v4(group.ip(), &on).map_err(|source| NetError::Join { group: *group.ip(), iface: on, source })?;
    s.set_nonblocking(true).map_err(io("group socket"))?;
    UdpSocket::from_std(StdUdpSocket::from(s)).map_err(io("group socket"))
}

fn direct_socket(bound: SocketAddr, group: SocketAddrV4, iface: Option<Ipv4Addr>) -> Result<UdpSocket, NetError> {
    let io = |what| move |source| NetError::Io { what, source };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io("datagram socket"))?;
    s.bind(&bound.into()).map_err(|source| NetError::Bind { what: "the datagram socket", addr: bound, source })?;
    // TTL 1: discovery never leaves the local network.
    s.set_multicast_ttl_v4(1).map_err(io("IP_MULTICAST_TTL"))?;
    // Loopback on: nodes on the same machine hear each other (the demo, the tests, four terminals).
    s.set_multicast_loop_v4(true).map_err(io("IP_MULTICAST_LOOP"))?;
    if let Some(iface) = iface {
        s.set_multicast_if_v4(&iface).map_err(|source| NetError::Join { group: *group.ip(), iface, source })?;
    }
    s.set_nonblocking(true).map_err(io("datagram socket"))?;
    UdpSocket::from_std(StdUdpSocket::from(s)).map_err(io("datagram socket"))
}

/// The address to tell others: the listen address if it is specific, else the multicast interface's, else
/// the address the kernel would send to the group from (found without sending anything).
fn advertised_ip(bound: IpAddr, iface: Option<Ipv4Addr>, group: SocketAddrV4) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    if let Some(i) = iface.filter(|i| !i.is_unspecified()) {
        return IpAddr::V4(i);
    }
    let probe = StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|s| {
        s.connect(SocketAddr::V4(SocketAddrV4::new(*group.ip(), group.port())))?;
        s.local_addr()
    });
    match probe {
        Ok(a) if !a.ip().is_unspecified() => a.ip(),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}
