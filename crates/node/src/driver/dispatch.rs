//! The core task's dispatch: each inbox message into the core, and each output the core gives carried out
//! (frames on links, datagrams, dials, loads); sends paired with their outcome by token.

use super::*;

impl Core {
    pub(super) fn close_all(&mut self) {
        for l in self.links.take_all() {
            l.close();
        }
    }

    /// A datagram from a peer proves that the network between us works now. If our link to that peer is
    /// stuck retransmitting (typically: a partition just healed and the connection's timer is backed off),
    /// it is dropped at once, so that the next frame to the peer dials a fresh connection instead of waiting
    /// in the old one's queue for seconds.
    pub(super) fn drop_stalled_link(&mut self, bytes: &[u8], outputs: &mut Vec<Output>) {
        let Ok(d) = Datagram::decode(bytes) else { return };
        let peer = match d.body {
            DatagramBody::Discover { key, .. } => key,
            DatagramBody::Offer { coordinator, .. } | DatagramBody::Beacon { coordinator, .. } => coordinator.key,
        };
        if self.reset_if_stalled(peer, "the peer's datagrams arrive") {
            self.input(Input::LinkDown { peer }, outputs);
        }
    }

    /// Drops the link to `peer` if it is stuck retransmitting, with a reset, so that the peer learns at once
    /// (a FIN would wait behind the unacknowledged data). The caller tells the core the link is down.
    pub(super) fn reset_if_stalled(&mut self, peer: NodeKey, evidence: &str) -> bool {
        if !self.links.get(&peer).is_some_and(|l| tcp_stalled(l.fd)) {
            return false;
        }
        let conn = self.links.conn(&peer);
        let Some(l) = self.links.remove(&peer) else { return false };
        tracing::info!(peer = %peer, conn, "link stuck retransmitting while {evidence}: reconnecting");
        count("chatmesh_links_stalled_total", 1);
        reset_on_close(l.fd);
        l.close();
        true
    }

    pub(super) fn input(&mut self, input: Input, outputs: &mut Vec<Output>) {
        self.node.handle_input(Instant::now(), input);
        self.drain(outputs);
    }

    pub(super) fn drain(&mut self, outputs: &mut Vec<Output>) {
        while let Some(o) = self.node.poll_output() {
            outputs.push(o);
        }
    }

    /// A chat message to write (`reply`: the `POST` or typed line waiting for it). The core refuses it at
    /// once (`SendRefused`, among the outputs of this input) or writes it and shows it as `Sent` when the
    /// round's own messages are signed, by the round's end (`answer_sends`); either carries the send's token.
    pub(super) fn send(&mut self, text: String, reply: Option<SendReply>, outputs: &mut Vec<Output>) {
        self.next_token += 1;
        let token = self.next_token;
        let before = outputs.len();
        self.input(Input::Command(Command::Send { text, token }), outputs);
        let refused = outputs[before..].iter().find_map(|o| match o {
            Output::Event(Event::SendRefused { reason, token: t }) if *t == token => Some(reason.to_string()),
            _ => None,
        });
        match (refused, reply) {
            (Some(reason), Some(reply)) => self.replies.push((reply, Err(SendError::Refused(reason)))),
            (None, Some(reply)) => {
                self.sending.insert(token, reply);
            }
            (_, None) => {}
        }
    }

    /// Answers the round's sends with their messages, by token. A send the core neither refused nor wrote
    /// by the round's end found the node stopped.
    pub(super) fn answer_sends(&mut self, outputs: &[Output]) {
        for o in outputs {
            let Output::Event(Event::Sent { message, token }) = o else { continue };
            if *token == 0 {
                continue;
            }
            if let Some(reply) = self.sending.remove(token) {
                let view = self.own_message(message);
                self.replies.push((reply, Ok(view)));
            }
        }
        for (_, reply) in std::mem::take(&mut self.sending) {
            self.replies.push((reply, Err(SendError::Stopped)));
        }
    }

    /// Takes one inbox message. Its outputs join this round's.
    pub(super) fn take(&mut self, msg: Inbox, outputs: &mut Vec<Output>) -> Flow {
        match msg {
            Inbox::Input(input) => self.input(input, outputs),
            Inbox::Datagram { from, bytes, direct } => match self.sealer.open(unix_ms(), &bytes) {
                Ok(bytes) => {
                    count("chatmesh_datagrams_in_total", 1);
                    self.drop_stalled_link(&bytes, outputs);
                    self.input(Input::Datagram { from, bytes, direct }, outputs)
                }
                Err(why) => self.dropped_datagram(from, why),
            },
            Inbox::LinkReady { conn, peer, dialer, tx, tasks, fd } => {
                let handle = LinkHandle { tx, tasks, fd };
                match self.links.arrived(Instant::now(), peer, conn, dialer, handle) {
                    Arrival::Up { replaced } => {
                        if let Some(old) = replaced {
                            old.close();
                        }
                        tracing::debug!(peer = %peer, conn, "link up");
                        self.input(Input::LinkUp { peer }, outputs);
                    }
                    Arrival::Refused(new) => new.close(),
                }
            }
            Inbox::LinkFrame { conn, peer, bytes, .. } => {
                count("chatmesh_frames_in_total", 1);
                count("chatmesh_bytes_in_total", bytes.len() as u64);
                trace_frame("in", &peer, &bytes);
                if self.links.carries(&peer, conn) {
                    self.input(Input::Frame { from: peer, bytes }, outputs);
                }
            }
            Inbox::LinkClosed { conn, peer } => {
                if let Some(l) = self.links.closed(&peer, conn) {
                    l.close();
                    tracing::debug!(peer = %peer, conn, "link down");
                    self.input(Input::LinkDown { peer }, outputs);
                }
            }
            Inbox::DialFailed { peer } => {
                self.links.dial_failed(peer);
                self.input(Input::ConnectFailed { peer }, outputs);
            }
            Inbox::Send { text, reply } => self.send(text, Some(reply), outputs),
            Inbox::SendMany(items) => {
                for (text, reply) in items {
                    self.send(text, Some(reply), outputs);
                }
            }
            Inbox::Command(Command::Send { text, .. }) => self.send(text, None, outputs),
            Inbox::Command(c) => self.input(Input::Command(c), outputs),
            Inbox::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Inbox::Delivery(reply) => {
                let _ = reply.send(self.node.delivery());
            }
            Inbox::Metrics(reply) => {
                let rtt = {
                    let names = self.names.read().unwrap_or_else(|p| p.into_inner());
                    self.links.iter().filter_map(|(k, l)| Some((names.label(k), tcp_rtt(l.fd)?))).collect()
                };
                let snap = crate::metrics::Snapshot {
                    stats: self.node.stats().clone(),
                    held_back: self.node.held_back(),
                    link_rtt: rtt,
                };
                let _ = reply.send(snap);
            }
            Inbox::PeerNames(addrs) => {
                self.peers_named = addrs;
            }
            Inbox::Connect(addr) => {
                // A Discover sent straight to that address: a member answers with its coordinator.
                // Once each: `dedup` alone would keep an address given again after another one.
                if !self.peers_udp.contains(&addr) {
                    self.peers_udp.push(addr);
                }
                self.input(Input::Command(Command::RefreshView), outputs);
            }
            Inbox::Shutdown { graceful } => {
                if !graceful || !matches!(self.node.role(), Role::Member | Role::Coordinator) {
                    return Flow::Stop;
                }
                self.stop_at.get_or_insert(Instant::now() + Duration::from_secs(2));
                self.input(Input::Command(Command::Leave), outputs);
            }
        }
        Flow::Continue
    }

    pub(super) fn carry_out_one(&mut self, o: Output) {
        match o {
            Output::Persist(_) | Output::Store { .. } => {}
            Output::Datagram { to, bytes } => self.send_datagram(to, bytes),
            Output::Connect { peer, addr } => match self.links.connect(peer) {
                Dial::Up => self.pending.push_back(Input::LinkUp { peer }),
                Dial::InFlight => {}
                Dial::Start => {
                    tokio::spawn(dial(
                        self.me,
                        peer,
                        addr,
                        self.keys.clone(),
                        self.connect_timeout,
                        self.handshake_timeout,
                        self.inbox_tx.clone(),
                    ));
                }
            },
            Output::Disconnect { peer } => {
                if let Some(l) = self.links.remove(&peer) {
                    l.close();
                }
            }
            Output::Frame { to, bytes } | Output::FrameAhead { to, bytes } => {
                trace_frame("out", &to, &bytes);
                count("chatmesh_frames_out_total", 1);
                count("chatmesh_bytes_out_total", bytes.len() as u64);
                let Some(link) = self.links.get(&to) else { return };
                if let Err(e) = link.tx.try_send(bytes) {
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "the peer is not reading (send queue full)",
                        mpsc::error::TrySendError::Closed(_) => "the link writer stopped",
                    };
                    tracing::warn!(peer = %to, "closing link: {why}");
                    if let Some(l) = self.links.remove(&to) {
                        l.close();
                    }
                    self.pending.push_back(Input::LinkDown { peer: to });
                }
            }
            Output::Load(req) => {
                // The reader thread answers with `Input::Loaded` through the inbox.
                let id = req.id;
                if self.reads.send(ReadRequest::Load(req)).is_err() {
                    self.pending.push_back(Input::Loaded { id, messages: Vec::new(), more: false });
                }
            }
            Output::Event(e) => self.event(e),
        }
    }

    pub(super) fn send_datagram(&mut self, to: Destination, bytes: Vec<u8>) {
        if bytes.len() > MAX_DATAGRAM_LEN {
            tracing::error!(len = bytes.len(), "datagram over the size limit not sent");
            return;
        }
        let targets: Vec<SocketAddr> = match to {
            Destination::Group => {
                let mut t = vec![SocketAddr::V4(self.group)];
                t.extend(self.peers_udp.iter().copied());
                t.extend(self.peers_named.iter().filter(|a| !self.peers_udp.contains(a)).copied());
                t
            }
            Destination::Addr(a) => vec![a],
        };
        let bytes = self.sealer.seal(unix_ms(), &bytes);
        count("chatmesh_datagrams_out_total", targets.len() as u64);
        for t in targets {
            if let Err(e) = self.direct.try_send_to(&bytes, t) {
                tracing::debug!(to = %t, "datagram not sent: {e}");
            }
        }
    }

    /// Counts a dropped datagram; logs a summary at most once per `DROP_LOG_PERIOD`, not once per packet.
    pub(super) fn dropped_datagram(&mut self, from: SocketAddr, why: crate::seal::SealError) {
        self.datagrams_dropped += 1;
        metrics::counter!("chatmesh_datagrams_dropped_total", "reason" => format!("{why:?}")).increment(1);
        let entry = self.drops.entry(why).or_insert((0, from));
        entry.0 += 1;
        entry.1 = from;
        let now = Instant::now();
        if self.drops_logged.is_none_or(|t| now.duration_since(t) >= DROP_LOG_PERIOD) {
            for (why, (n, from)) in std::mem::take(&mut self.drops) {
                tracing::warn!(count = n, last_from = %from, "dropped datagrams: {why}");
            }
            self.drops_logged = Some(now);
        }
    }
}
