//! Well-formed but arbitrary frames and datagrams, from strangers and from member keys, injected into a
//! running mesh: the state machine never panics, whatever the fields say (huge terms and IDs included).
//! Decoding-level garbage is covered by `bad_input.rs` and the wire property tests.

use chatmesh_core::*;
use chatmesh_sim::{history_problems, settle, Sim, SimOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::SocketAddr;
use std::time::Duration;

struct Gen {
    rng: ChaCha8Rng,
    keys: Vec<NodeKey>,
}

impl Gen {
    fn num(&mut self) -> u64 {
        match self.rng.gen_range(0..4) {
            0 => 0,
            1 => u64::MAX - self.rng.gen_range(0..3),
            2 => self.rng.gen_range(0..20),
            _ => self.rng.gen(),
        }
    }

    fn id(&mut self) -> NodeId {
        NodeId(match self.rng.gen_range(0..3) {
            0 => u32::MAX,
            1 => self.rng.gen_range(0..10),
            _ => self.rng.gen(),
        })
    }

    fn key(&mut self) -> NodeKey {
        if self.rng.gen_bool(0.7) {
            self.keys[self.rng.gen_range(0..self.keys.len())]
        } else {
            NodeKey(self.rng.gen())
        }
    }

    fn addr(&mut self) -> SocketAddr {
        SocketAddr::from((self.rng.gen::<[u8; 4]>(), self.rng.gen::<u16>()))
    }

    fn contact(&mut self) -> Contact {
        Contact { id: self.id(), key: self.key(), addr: self.addr() }
    }

    fn view(&mut self, coordinator: NodeKey) -> View {
        let mut members: Vec<Member> = (0..self.rng.gen_range(0..6))
            .map(|_| {
                let state = [MemberState::Alive, MemberState::Failed, MemberState::Left][self.rng.gen_range(0..3)];
                Member { id: self.id(), key: self.key(), name: "x".into(), addr: self.addr(), state }
            })
            .collect();
        if self.rng.gen_bool(0.8) {
            members.push(Member {
                id: self.id(),
                key: coordinator,
                name: "c".into(),
                addr: self.addr(),
                state: MemberState::Alive,
            });
        }
        if self.rng.gen_bool(0.8) {
            members.sort_by_key(|m| m.id);
            members.dedup_by_key(|m| m.id);
            members.dedup_by_key(|m| m.key);
        }
        let next_id = if self.rng.gen_bool(0.8) {
            members.iter().map(|m| m.id.next()).max().unwrap_or(NodeId(1))
        } else {
            self.id()
        };
        View { term: self.num(), version: self.num(), coordinator, next_id, members }
    }

    fn message(&mut self) -> Message {
        // Signed by a key of our own (so never by a member): the signature check must refuse it, or, if
        // the author field is left alone, it is a well-formed message of a stranger with odd fields.
        let secret: [u8; 32] = self.rng.gen();
        let mut m = Message::sign(
            &SigningKey::from_bytes(&secret),
            self.num().max(1),
            self.num().max(1),
            vec![],
            self.num(),
            Body::Text("fuzz".into()),
        );
        if self.rng.gen_bool(0.5) {
            m.author = self.key();
        }
        m
    }

    fn frontier(&mut self) -> Vec<(NodeKey, u64)> {
        (0..self.rng.gen_range(0..5)).map(|_| (self.key(), self.num())).collect()
    }

    fn frame(&mut self, from: NodeKey) -> Frame {
        let coordinator = if self.rng.gen_bool(0.8) { from } else { self.key() };
        match self.rng.gen_range(0..17) {
            12 => Frame::Messages { messages: vec![self.message()] },
            13 => Frame::Ack { acks: self.frontier() },
            14 => Frame::Frontier { frontier: self.frontier(), reply: self.rng.gen(), clock: self.num() },
            15 => Frame::SyncRequest {
                frontier: self.frontier(),
                after: None,
                limit: self.rng.gen(),
                sync: self.rng.gen(),
            },
            16 => Frame::SyncPage { messages: vec![self.message()], more: self.rng.gen(), sync: self.rng.gen() },
            0 => Frame::Join(Join {
                mesh: "sim".into(),
                name: "f".into(),
                addr: self.addr(),
                id_hint: Some(self.id()),
                next_id_seen: self.id(),
            }),
            1 => Frame::Welcome { view: self.view(coordinator) },
            2 => Frame::View { view: self.view(coordinator) },
            3 => Frame::ViewRequest { term: self.num() },
            4 => Frame::Heartbeat { term: self.num(), version: self.num() },
            5 => Frame::HeartbeatAck {
                term: self.num(),
                version: self.num(),
                coordinator: self.key(),
                next_id_seen: self.id(),
            },
            6 => Frame::Leave { term: self.num() },
            7 => Frame::Election { term: self.num(), suspect: Some(self.key()) },
            8 => Frame::Answer { term: self.num() },
            9 => Frame::NotCoordinator { term: self.num(), coordinator: Some(self.contact()) },
            10 => Frame::MergeRequest { view: self.view(coordinator) },
            _ => Frame::Ping { term: self.num() },
        }
    }

    fn datagram(&mut self) -> Datagram {
        let body = match self.rng.gen_range(0..3) {
            0 => DatagramBody::Discover {
                nonce: self.num(),
                key: self.key(),
                addr: self.addr(),
                id_hint: Some(self.id()),
            },
            1 => DatagramBody::Offer { nonce: self.num(), coordinator: self.contact(), term: self.num() },
            _ => {
                DatagramBody::Beacon { coordinator: self.contact(), term: self.num(), version: self.num(), members: 3 }
            }
        };
        Datagram { mesh: "sim".into(), body }
    }
}

#[test]
fn arbitrary_well_formed_input_never_panics_a_running_mesh() {
    let seeds: Vec<u64> = match std::env::var("FUZZ_SEED") {
        Ok(s) => vec![s.parse().expect("FUZZ_SEED is a number")],
        Err(_) => (0..40).collect(),
    };
    for seed in seeds {
        let mut sim = Sim::new(SimOptions::quiet(seed), Timing::default());
        for _ in 0..4 {
            sim.add_node(Duration::ZERO);
        }
        settle(&mut sim, Duration::from_secs(30)).expect("settles before the fuzzing");
        let keys = sim.nodes.iter().map(|n| n.key).collect();
        let mut g = Gen { rng: ChaCha8Rng::seed_from_u64(seed), keys };
        for _ in 0..300 {
            let target = g.rng.gen_range(0..4);
            let input = if g.rng.gen_bool(0.8) {
                let from = g.key();
                Input::Frame { from, bytes: g.frame(from).encode().expect("small frames encode") }
            } else {
                Input::Datagram {
                    from: g.addr(),
                    bytes: g.datagram().encode().expect("small datagrams encode"),
                    direct: false,
                }
            };
            sim.inject(target, input);
            let step = Duration::from_millis(g.rng.gen_range(0..50));
            sim.run_for(step);
        }
        // An authenticated peer is trusted with membership, so the frames may move coordinators and terms;
        // but nothing invalid is ever persisted, no forged message is stored, and the mesh settles again.
        assert!(sim.obs.violations.is_empty(), "seed {seed}: {:?}", sim.obs.violations);
        if let Err(p) = settle(&mut sim, Duration::from_secs(60)) {
            for n in &sim.nodes {
                let ids: Vec<String> = n.store.ids().map(|id| id.to_string()).collect();
                eprintln!("{} holds {ids:?} held-back {:?}", n.name, n.core.as_ref().map(|c| c.history().count));
            }
            panic!("seed {seed}: {p:?}");
        }
        assert!(history_problems(&sim).is_empty(), "seed {seed}: {:?}", history_problems(&sim));
    }
}
