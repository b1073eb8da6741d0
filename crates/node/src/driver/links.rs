//! Links: accepting and dialling TCP connections, the Noise handshake, and each link's reader and writer
//! tasks; TCP facts read from the kernel (round-trip time, a stuck retransmission), resets on close.

use super::*;

/// Frames queued for one link's writer. A peer that does not read for this long is cut off (its link
/// closes; the core redials and anti-entropy repairs) instead of growing memory without bound.
pub(super) const LINK_QUEUE: usize = 16384;

/// Connections in their handshake at once; more wait (slowloris cannot exhaust anything else).
pub(super) const MAX_HANDSHAKES: usize = 64;

/// Connections in their handshake at once from one IP address; more are closed at once.
pub(super) const MAX_HANDSHAKES_PER_IP: usize = 32;

/// Frames one link may have waiting in the inbox: a flooding peer waits for its own frames to be taken,
/// and never holds more than this share of the inbox.
pub(super) const LINK_INBOX_QUOTA: usize = 1024;

/// Frames per second one link may deliver (a token bucket with this burst): beyond it the reader waits,
/// which slows that peer down at its TCP window and nobody else.
pub(super) const LINK_FRAMES_PER_SEC: f64 = 50_000.0;

/// `--log heartbeat` shows heartbeats (target `heartbeat`); `--log debug` every frame (target `frames`).
/// Frames are decoded for this only when one of those is on.
pub(super) fn trace_frame(dir: &'static str, peer: &NodeKey, bytes: &[u8]) {
    let heartbeats = tracing::enabled!(target: "heartbeat", tracing::Level::TRACE);
    let frames = tracing::enabled!(target: "frames", tracing::Level::TRACE);
    if !heartbeats && !frames {
        return;
    }
    let Ok(frame) = chatmesh_core::Frame::decode(bytes) else { return };
    let kind = frame.kind();
    if heartbeats && matches!(kind, "heartbeat" | "heartbeat-ack") {
        tracing::trace!(target: "heartbeat", %peer, "{dir} {kind}");
    } else if frames {
        tracing::trace!(target: "frames", %peer, len = bytes.len(), "{dir} {kind}");
    }
}

pub(super) static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A connection's writer and tasks; which connection carries each peer's link is `Connections`'.
pub(super) struct LinkHandle {
    pub(super) tx: mpsc::Sender<Vec<u8>>,
    pub(super) tasks: Vec<AbortHandle>,
    pub(super) fd: i32,
}

/// The kernel's smoothed round-trip time of a TCP socket, in seconds (Linux `TCP_INFO`).
pub(super) fn tcp_rtt(fd: i32) -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getsockopt writes at most `len` bytes into the zeroed struct; a closed or reused fd only
        // makes the call fail or report another socket's estimate, never memory unsafety.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = unsafe {
            libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info as *mut _ as *mut libc::c_void, &mut len)
        };
        (r == 0).then(|| info.tcpi_rtt as f64 / 1_000_000.0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        None
    }
}

/// Whether a TCP connection is stuck retransmitting: its retransmission timer has fired on data that is
/// still unacknowledged, and it may have been backed off (Linux `TCP_INFO`). After a partition heals, such a
/// connection stays silent until its backed-off timer fires, which can be seconds away.
pub(super) fn tcp_stalled(fd: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as in `tcp_rtt`.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = unsafe {
            libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info as *mut _ as *mut libc::c_void, &mut len)
        };
        r == 0 && (info.tcpi_retransmits > 0 || info.tcpi_backoff > 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        false
    }
}

/// Makes closing the socket send a reset (`SO_LINGER` with a zero timeout) instead of queueing a FIN.
/// The caller holds the link (its tasks own the socket), so `fd` is open for the call.
pub(super) fn reset_on_close(fd: i32) {
    // SAFETY: the borrow lasts only for this call, while the link's tasks still own the socket.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if let Err(e) = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO)) {
        tracing::debug!("SO_LINGER not set: {e}");
    }
}

impl LinkHandle {
    pub(super) fn close(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

pub(super) static REFUSED_CONNECTIONS: Throttle = Throttle::new();

pub(super) async fn accept_loop(
    listener: tokio::net::TcpListener,
    keys: Arc<LinkKeys>,
    timeout: Duration,
    handshakes: Arc<Semaphore>,
    inbox: mpsc::Sender<Inbox>,
) {
    let per_ip: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = from.ip();
        {
            let mut per_ip = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= MAX_HANDSHAKES_PER_IP {
                REFUSED_CONNECTIONS.log(|more| {
                    tracing::warn!(%from, "connection closed: {MAX_HANDSHAKES_PER_IP} handshakes from {ip} already running ({more} more refusals since the last report)")
                });
                continue;
            }
            *n += 1;
        }
        let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
        let keys = keys.clone();
        let inbox = inbox.clone();
        let per_ip = per_ip.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let fd = raw_fd(&stream);
            let r = link::establish(stream, &keys, link::Role::Responder, timeout).await;
            drop(permit);
            {
                let mut map = per_ip.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = map.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&ip);
                    }
                }
            }
            match r {
                Ok((reader, writer, peer)) => run_link(reader, writer, peer, peer, inbox, fd).await,
                Err(e) => REFUSED_CONNECTIONS.log(|more| {
                    tracing::warn!(%from, "incoming connection refused: {e} ({more} more refusals since the last report)")
                }),
            }
        });
    }
}

pub(super) async fn dial(
    me: NodeKey,
    peer: NodeKey,
    addr: SocketAddr,
    keys: Arc<LinkKeys>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    inbox: mpsc::Sender<Inbox>,
) {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, %addr, "dial failed: {e}");
            let _ = inbox.send(Inbox::DialFailed { peer }).await;
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer, %addr, "dial timed out");
            let _ = inbox.send(Inbox::DialFailed { peer }).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let fd = raw_fd(&stream);
    match link::establish(stream, &keys, link::Role::Initiator { expected: peer }, handshake_timeout).await {
        Ok((reader, writer, proven)) => run_link(reader, writer, proven, me, inbox, fd).await,
        Err(e) => {
            tracing::info!(peer = %peer, %addr, "link to peer failed: {e}");
            let _ = inbox.send(Inbox::DialFailed { peer }).await;
        }
    }
}

pub(super) fn raw_fd(stream: &TcpStream) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        stream.as_raw_fd()
    }
    #[cfg(not(unix))]
    {
        let _ = stream;
        -1
    }
}

/// Runs an established link: announces it to the core, then reads frames until it ends.
pub(super) async fn run_link<R, W>(
    mut reader: LinkReader<R>,
    mut writer: LinkWriter<W>,
    peer: NodeKey,
    dialer: NodeKey,
    inbox: mpsc::Sender<Inbox>,
    fd: i32,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(LINK_QUEUE);
    let write_task = tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut bytes = first.len();
            batch.push(first);
            while bytes < WRITE_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(f) => {
                        bytes += f.len();
                        batch.push(f);
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = writer.send(&batch).await {
                tracing::debug!(peer = %peer, "link write failed: {e}");
                return;
            }
            batch.clear();
        }
    });
    // The reader starts only once the core knows the link, so that no frame overtakes `LinkReady`.
    let (go, started) = oneshot::channel::<()>();
    let read_inbox = inbox.clone();
    let read_task = tokio::spawn(async move {
        if started.await.is_err() {
            return;
        }
        let quota = Arc::new(Semaphore::new(LINK_INBOX_QUOTA));
        let mut bucket = TokenBucket::new(LINK_FRAMES_PER_SEC);
        let reason = loop {
            match reader.recv().await {
                Ok(Some(bytes)) => {
                    if let Some(wait) = bucket.take() {
                        tokio::time::sleep(wait).await;
                    }
                    let Ok(slot) = quota.clone().acquire_owned().await else { return };
                    if read_inbox.send(Inbox::LinkFrame { conn, peer, bytes, _quota: slot }).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break "closed by the peer".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        tracing::debug!(peer = %peer, conn, "link ended: {reason}");
        let _ = read_inbox.send(Inbox::LinkClosed { conn, peer }).await;
    });
    let tasks = vec![write_task.abort_handle(), read_task.abort_handle()];
    if inbox.send(Inbox::LinkReady { conn, peer, dialer, tx, tasks, fd }).await.is_err() {
        write_task.abort();
        read_task.abort();
        return;
    }
    let _ = go.send(());
}
