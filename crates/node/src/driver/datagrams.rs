//! Datagrams: the UDP receive tasks with their per-source rate limits, rejoining the multicast group, and
//! resolving `--peer` host names; a throttle for repeated log lines.

use super::*;

/// Datagrams per second taken from one source address (IP and port), and from one IP address; the
/// rest are dropped and counted before any decryption.
pub(super) const DATAGRAMS_PER_SOURCE: u32 = 200;

pub(super) const DATAGRAMS_PER_IP: u32 = 2000;

/// How often the `--peer` host names are resolved again.
pub(super) const PEER_RESOLVE_PERIOD: Duration = Duration::from_secs(10);

/// How often the multicast group is joined again.
pub(super) const REJOIN_PERIOD: Duration = Duration::from_secs(5);

/// Resolves the `--peer` host names now and every `PEER_RESOLVE_PERIOD`; a name that does not resolve is
/// tried again (logged once until it resolves).
pub(super) async fn resolve_peers(names: Vec<String>, inbox: mpsc::Sender<Inbox>) {
    let mut failing: HashSet<String> = HashSet::new();
    loop {
        let mut addrs = Vec::new();
        for name in &names {
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(found) => {
                    failing.remove(name);
                    addrs.extend(found.filter(SocketAddr::is_ipv4));
                }
                Err(e) => {
                    if failing.insert(name.clone()) {
                        tracing::warn!("--peer {name} does not resolve yet ({e}); trying again every 10 s");
                    }
                }
            }
        }
        addrs.sort();
        addrs.dedup();
        if inbox.send(Inbox::PeerNames(addrs)).await.is_err() {
            return;
        }
        tokio::time::sleep(PEER_RESOLVE_PERIOD).await;
    }
}

/// Joins the multicast group again every `REJOIN_PERIOD`. The kernel drops a membership when its interface
/// goes away (a container disconnected and connected again, Wi-Fi, a VPN): without this the node would
/// still send to the group but never hear it again. Joining while a member is refused harmlessly.
pub(super) async fn rejoin_group(socket: Arc<UdpSocket>, group: SocketAddrV4, iface: Option<Ipv4Addr>) {
    let on = iface.unwrap_or(Ipv4Addr::UNSPECIFIED);
    loop {
        tokio::time::sleep(REJOIN_PERIOD).await;
        if Arc::strong_count(&socket) == 1 {
            return;
        }
        match socket.join_multicast_v4(*group.ip(), on) {
            Ok(()) => {
                tracing::info!(group = %group.ip(), iface = %on, "joined the multicast group again (the membership had been lost)")
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => tracing::debug!("rejoining the multicast group: {e}"),
        }
    }
}

/// A token bucket of one second's worth of tokens: `take` says how long to wait before the next unit.
pub(super) struct TokenBucket {
    pub(super) rate: f64,
    pub(super) tokens: f64,
    pub(super) at: Instant,
}

impl TokenBucket {
    pub(super) fn new(rate: f64) -> TokenBucket {
        TokenBucket { rate, tokens: rate, at: Instant::now() }
    }

    pub(super) fn take(&mut self) -> Option<Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        self.tokens -= 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// Datagram rates per source address and per IP, counted in one-second windows (the maps are cleared
/// every window, so they stay as small as the number of senders in one second).
pub(super) struct DatagramRates {
    pub(super) window: Instant,
    pub(super) by_source: HashMap<SocketAddr, u32>,
    pub(super) by_ip: HashMap<std::net::IpAddr, u32>,
}

impl DatagramRates {
    pub(super) fn allow(&mut self, from: SocketAddr) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.by_source.clear();
            self.by_ip.clear();
        }
        let ip = self.by_ip.entry(from.ip()).or_insert(0);
        *ip += 1;
        let over_ip = *ip > DATAGRAMS_PER_IP;
        let src = self.by_source.entry(from).or_insert(0);
        *src += 1;
        *src <= DATAGRAMS_PER_SOURCE && !over_ip
    }
}

/// Log lines about floods (refused handshakes, dropped datagrams) at most once per `DROP_LOG_PERIOD`,
/// with how many were not logged.
pub(super) struct Throttle {
    pub(super) last: std::sync::Mutex<Option<Instant>>,
    pub(super) suppressed: AtomicU64,
}

impl Throttle {
    pub(super) const fn new() -> Throttle {
        Throttle { last: std::sync::Mutex::new(None), suppressed: AtomicU64::new(0) }
    }

    /// Calls `log` with the number of events not logged since the last call, if one is due.
    pub(super) fn log(&self, log: impl FnOnce(u64)) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= DROP_LOG_PERIOD) {
            *last = Some(now);
            log(self.suppressed.swap(0, Ordering::Relaxed));
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub(super) static RATE_LIMITED_DATAGRAMS: Throttle = Throttle::new();

/// Receives datagrams and hands them to the core; when the inbox is full they are dropped (datagrams are
/// resent or superseded), so a datagram flood cannot stall the links.
pub(super) fn spawn_udp(socket: Arc<UdpSocket>, direct: bool, inbox: mpsc::Sender<Inbox>, limited: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut rates = DatagramRates { window: Instant::now(), by_source: HashMap::new(), by_ip: HashMap::new() };
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    if !rates.allow(from) {
                        limited.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("chatmesh_datagrams_dropped_total", "reason" => "RateLimited").increment(1);
                        RATE_LIMITED_DATAGRAMS.log(|more| {
                            tracing::warn!(%from, "datagrams over the rate limit dropped ({more} more since the last report)")
                        });
                        continue;
                    }
                    if n > MAX_DATAGRAM_LEN + crate::seal::OVERHEAD {
                        tracing::debug!(%from, len = n, "datagram over the size limit dropped");
                        continue;
                    }
                    match inbox.try_send(Inbox::Datagram { from, bytes: buf[..n].to_vec(), direct }) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                // ICMP errors from earlier sends surface here on some systems; they are not fatal.
                Err(e) => {
                    tracing::trace!("datagram receive: {e}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    });
}
