//! From core events to what people see: `Notice`s for the interfaces, names learnt from views, delivery
//! status of own messages, and the status snapshot.

use super::*;

/// Own messages whose delivery progress is followed (the latest ones): a mesh where someone never
/// acknowledges must not grow the table forever.
pub(super) const DELIVERIES_FOLLOWED: u64 = 10_000;

impl Core {
    pub(super) fn learn_view(&mut self) {
        if let Some(v) = self.node.view() {
            self.names.write().unwrap_or_else(|p| p.into_inner()).learn_view(v);
        }
    }

    pub(super) fn event(&mut self, e: Event) {
        let seen = self.node.view().map(|v| (v.term, v.version, v.coordinator));
        if seen != self.learned {
            self.learned = seen;
            self.learn_view();
        }
        match &e {
            Event::Acked { .. } => {
                self.delivery_notices();
                return;
            }
            Event::Sent { message, .. } if matches!(message.body, Body::Text(_)) => {
                let st = self.node.delivery_status(message.seq);
                self.acks.insert(message.seq, (st.acked, st.members));
            }
            // A member (re)joining the view, typically when a partition heals and the parts merge: our old
            // connection to it may be stuck in retransmission backoff.
            Event::MemberJoined { key, .. } if self.reset_if_stalled(*key, "the member rejoins the view") => {
                self.pending.push_back(Input::LinkDown { peer: *key });
            }
            _ => {}
        }
        // Other members: the statuses of own messages still pending change with them.
        let members_changed = matches!(
            e,
            Event::Founded { .. }
                | Event::Joined { .. }
                | Event::MemberJoined { .. }
                | Event::MemberLeft { .. }
                | Event::MemberFailed { .. }
        );
        let mut renamed = None;
        if let Event::Sent { message, .. } | Event::Delivered { message } = &e {
            // Only membership events name anyone: chat does not take the lock.
            if matches!(message.body, Body::Membership(_)) {
                self.names.write().unwrap_or_else(|p| p.into_inner()).learn(message);
            }
            if let Body::Membership(MembershipEvent::Renamed { id, key, old, new }) = &message.body {
                tracing::info!(%id, %old, %new, "member renamed");
                renamed = Some(Notice::MemberRenamed {
                    id: id.0,
                    key: hex::encode(key.0),
                    old: old.clone(),
                    new: new.clone(),
                });
            }
        }
        let guard = self.names.read().unwrap_or_else(|p| p.into_inner());
        let names = &*guard;
        let notice = match e {
            Event::Founded { id, term } => {
                tracing::info!(%id, term, "founded the mesh: coordinator");
                Notice::Founded { id: id.0, term }
            }
            Event::Joined { id, term, coordinator } => {
                tracing::info!(%id, term, coordinator = %names.label(&coordinator), "joined the mesh");
                Notice::Joined { id: id.0, term, coordinator: hex::encode(coordinator.0) }
            }
            Event::CoordinatorChanged { term, coordinator, id } => {
                tracing::info!(term, coordinator = %names.label(&coordinator), "coordinator changed");
                Notice::Coordinator {
                    term,
                    id: id.0,
                    key: hex::encode(coordinator.0),
                    name: names.name(&coordinator).map(|(_, n)| n.to_owned()),
                    me: coordinator == self.me,
                }
            }
            Event::MemberJoined { id, key, name } => {
                tracing::info!(%id, %name, "member joined");
                Notice::MemberJoined { id: id.0, key: hex::encode(key.0), name }
            }
            Event::MemberLeft { id, key, name } => {
                tracing::info!(%id, %name, "member left");
                Notice::MemberLeft { id: id.0, key: hex::encode(key.0), name }
            }
            Event::MemberFailed { id, key, name } => {
                tracing::warn!(%id, %name, "member failed");
                Notice::MemberFailed { id: id.0, key: hex::encode(key.0), name }
            }
            Event::IdReassigned { key, old, new } => {
                tracing::info!(key = %key, %old, %new, "ID reassigned");
                Notice::IdReassigned { key: hex::encode(key.0), old: old.0, new: new.0 }
            }
            Event::ElectionStarted { term } => {
                tracing::info!(term, "election started");
                Notice::ElectionStarted { term }
            }
            Event::Sent { message, .. } => {
                tracing::debug!(seq = message.seq, "sent");
                count("chatmesh_messages_sent_total", 1);
                Notice::Message(own_message(names, &self.node, &message))
            }
            Event::Delivered { message } => {
                tracing::debug!(author = %message.author, seq = message.seq, "delivered");
                count("chatmesh_messages_delivered_total", 1);
                Notice::Message(names.message(&message, &self.me))
            }
            Event::Acked { .. } => return,
            Event::SendRefused { reason, .. } => Notice::SendRefused { reason: reason.to_string() },
            Event::Rejected { reason } => {
                tracing::debug!(%reason, "input rejected");
                Notice::Rejected { reason: reason.to_string() }
            }
            Event::Stopped => {
                tracing::info!("left the mesh");
                return;
            }
        };
        drop(guard);
        let _ = self.events.send(notice);
        if let Some(notice) = renamed {
            let _ = self.events.send(notice);
        }
        if members_changed {
            self.delivery_notices();
        }
    }

    /// Delivery progress of own messages still waiting for some acknowledgement: a notice for each whose
    /// status changed (more acknowledgements, or other members: after a view change).
    pub(super) fn delivery_notices(&mut self) {
        let delivery = self.node.delivery();
        let mut done = Vec::new();
        for (seq, shown) in self.acks.iter_mut() {
            let st = delivery.status(*seq);
            if (st.acked, st.members) != *shown {
                *shown = (st.acked, st.members);
                let _ = self.events.send(Notice::Delivery { seq: *seq, acked: st.acked, members: st.members });
            }
            if st.acked >= st.members {
                done.push(*seq);
            }
        }
        for s in done {
            self.acks.remove(&s);
        }
        while self.acks.len() as u64 > DELIVERIES_FOLLOWED {
            self.acks.pop_first();
        }
    }

    /// Our own message as the UIs show it, with its delivery status now.
    pub(super) fn own_message(&self, message: &Message) -> MessageView {
        own_message(&self.names.read().unwrap_or_else(|p| p.into_inner()), &self.node, message)
    }

    pub(super) fn status(&self) -> StatusView {
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let view = self.node.view();
        let coordinator = self.node.coordinator().map(|k| CoordinatorView {
            id: view.and_then(|v| v.get(&k)).map_or(0, |m| m.id.0),
            key: hex::encode(k.0),
            name: names.name(&k).map(|(_, n)| n.to_owned()),
        });
        let members = view
            .map(|v| {
                v.members
                    .iter()
                    .map(|m| MemberView {
                        id: m.id.0,
                        name: names.name(&m.key).map_or_else(|| m.name.clone(), |(_, n)| n.to_owned()),
                        key: hex::encode(m.key.0),
                        addr: m.addr.to_string(),
                        state: state_name(m.state),
                        coordinator: m.key == v.coordinator,
                        linked: self.links.contains(&m.key),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let h = self.node.history();
        StatusView {
            id: self.node.my_id().map(|i| i.0),
            name: self.node.config().name.clone(),
            key: hex::encode(self.me.0),
            mesh: self.node.config().mesh.clone(),
            addr: self.node.config().addr.to_string(),
            role: match self.node.role() {
                Role::Discovering => "discovering",
                Role::Joining => "joining",
                Role::Member => "member",
                Role::Coordinator => "coordinator",
                Role::Stopped => "stopped",
            },
            term: self.node.term(),
            coordinator,
            election_running: self.node.election_running(),
            members,
            history: HistorySummary { count: h.count, digest: hex::encode(h.digest.0) },
            pending_acks: self.node.pending_acks(),
            links: self.links.len(),
            rejected: self.node.stats().rejected_total(),
            datagrams_dropped: self.datagrams_dropped + self.rate_limited.load(Ordering::Relaxed),
            uptime_ms: self.started.elapsed().as_millis() as u64,
        }
    }
}

/// Our own message `m` as the UIs show it, with its delivery status now.
pub(super) fn own_message(names: &Names, node: &Node, m: &Message) -> MessageView {
    let mut view = names.message(m, &node.key());
    view.delivery = Some(DeliveryView::of(node.delivery_status(m.seq)));
    view
}

/// The own messages still waiting for some member's acknowledgement (the latest `DELIVERIES_FOLLOWED`),
/// each with its status: followed from the start, so that a restarted node shows their progress too.
pub(super) fn pending_deliveries(delivery: &Delivery) -> BTreeMap<u64, (usize, usize)> {
    let first = (delivery.mine - delivery.pending() + 1).max(delivery.mine.saturating_sub(DELIVERIES_FOLLOWED) + 1);
    (first..=delivery.mine)
        .map(|seq| {
            let st = delivery.status(seq);
            (seq, (st.acked, st.members))
        })
        .collect()
}
