//! A deterministic simulation of many validators in one process.
//!
//! One `u64` seed drives everything: link latencies and jitter, message
//! loss, crash points and restart delays. Events are processed in (time,
//! sequence) order, so the same seed always gives the same run, and
//! [`Sim::trace_hash`] lets a test check exactly that.
//!
//! Each validator runs a real [`Engine`]. Its node is modelled as the real
//! node will be: every received message is appended to a message log (the
//! WAL) before it is handled, every [`Action::Persist`] goes to a durable
//! record before the next action, and a crash loses everything else. A
//! restarted validator is rebuilt from its record and a replay of its log.
//!
//! A safety checker runs on every finalization: no two different blocks
//! finalized at one height, by anyone, ever. Votes that leave honest
//! validators are checked for equivocation too.

use std::collections::{BTreeMap, BTreeSet};

use sou_types::{Hash, Keypair};

use crate::engine::{Action, Application, Config, Engine, Input, Recovered, Timer, Verdict};
use crate::types::{
    Certificate, Digest, Evidence, Message, Proposal, SignedVote, ValidatorSet, View, Vote,
};

/// A small, fast, seedable generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `ppm` parts per million.
    pub fn chance(&mut self, ppm: u32) -> bool {
        self.below(1_000_000) < u64::from(ppm)
    }
}

/// A link's behaviour (every link between two validators alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub latency_ms: u64,
    /// Latency varies uniformly by up to this much either way.
    pub jitter_ms: u64,
    /// Share of messages lost, in parts per million.
    pub drop_ppm: u32,
}

impl Link {
    pub const INSTANT: Link = Link {
        latency_ms: 0,
        jitter_ms: 0,
        drop_ppm: 0,
    };

    pub fn lan() -> Link {
        Link {
            latency_ms: 10,
            jitter_ms: 3,
            drop_ppm: 0,
        }
    }
}

/// How a simulated validator behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Receives and sends nothing, ever.
    Silent,
    /// As leader, proposes two different blocks, each to half the peers.
    Equivocator,
    /// Also signs a notarize for a made-up proposal whenever it notarizes.
    DoubleVoter,
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub stakes: Vec<u64>,
    pub link: Link,
    pub engine: Config,
    pub behaviours: Vec<Behaviour>,
    /// Chance, per handled input, that the validator crashes part-way
    /// through performing the resulting actions (parts per million).
    pub crash_ppm: u32,
    /// A crashed validator restarts after this long (plus up to as much again).
    pub restart_after_ms: u64,
}

impl SimConfig {
    pub fn new(seed: u64, stakes: Vec<u64>) -> SimConfig {
        let n = stakes.len();
        let mut engine = Config::new(b"sou-sim".to_vec());
        engine.view_timeout_ms = 200;
        engine.max_view_timeout_ms = 1_600;
        SimConfig {
            seed,
            stakes,
            link: Link::lan(),
            engine,
            behaviours: vec![Behaviour::Honest; n],
            crash_ppm: 0,
            restart_after_ms: 300,
        }
    }
}

/// Where a crash landed among the actions of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CrashPoint {
    /// A vote was signed but not yet persisted.
    BeforePersist,
    /// Persisted, not yet sent.
    AfterPersistBeforeSend,
    /// Sent, and the rest of the actions lost.
    AfterSend,
    /// Crashed with no vote in flight.
    Elsewhere,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Deliver {
        to: usize,
        msg: Vec<u8>,
    },
    Timer {
        node: usize,
        incarnation: u64,
        view: View,
        timer: Timer,
    },
    Restart {
        node: usize,
    },
}

/// The blocks every simulated application knows about: block dissemination
/// is not consensus's job, so the simulation shares them.
#[derive(Debug, Default)]
pub struct BlockTree {
    /// digest -> (parent, height)
    pub blocks: BTreeMap<Digest, (Digest, u64)>,
}

struct SimApp<'a> {
    tree: &'a mut BlockTree,
    node: usize,
}

impl Application for SimApp<'_> {
    fn propose(&mut self, view: View, parent: Digest, parent_height: u64) -> Option<Digest> {
        let mut h = Hash::hasher("sou sim block v1");
        h.update(&parent.0);
        h.update(&view.to_le_bytes());
        h.update(&(self.node as u64).to_le_bytes());
        let digest = Hash::from_hasher(&h);
        self.tree.blocks.insert(digest, (parent, parent_height + 1));
        Some(digest)
    }

    fn verify(&mut self, p: &Proposal) -> Verdict {
        (self.tree.blocks.get(&p.payload) == Some(&(p.parent, p.height))).into()
    }
}

struct Node {
    key: Keypair,
    behaviour: Behaviour,
    engine: Option<Engine>,
    incarnation: u64,
    /// Durable: every vote persisted.
    record: Vec<SignedVote>,
    /// Durable: every message received (the WAL).
    log: Vec<Message>,
    /// Durable: the latest finalization.
    finalization: Option<Certificate>,
    /// The finalized chain as this validator knows it: height -> block.
    chain: BTreeMap<u64, Digest>,
}

/// The simulation.
pub struct Sim {
    cfg: SimConfig,
    set: ValidatorSet,
    genesis: Digest,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    rng: SimRng,
    nodes: Vec<Node>,
    /// Partition group per node; messages cross only within a group.
    groups: Option<Vec<usize>>,
    tree: BlockTree,
    trace: blake3::Hasher,
    /// height -> the block finalized there (by anyone).
    finalized: BTreeMap<u64, Digest>,
    safety_violations: Vec<String>,
    /// (signer, view) -> every vote that left that validator.
    sent: BTreeMap<(u32, View), Vec<Vote>>,
    double_signs: Vec<(usize, Vote, Vote)>,
    evidence: Vec<Evidence>,
    crash_points: BTreeMap<CrashPoint, u64>,
    views_entered: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sim(seed {}, t={}ms)", self.cfg.seed, self.now)
    }
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        println!("sim seed {} ({} validators)", cfg.seed, cfg.stakes.len());
        let keys: Vec<Keypair> = (0..cfg.stakes.len())
            .map(|i| Keypair::derive_insecure(cfg.seed, &format!("sim-validator-{i}")))
            .collect();
        let set = ValidatorSet::new(
            0,
            keys.iter()
                .zip(&cfg.stakes)
                .map(|(k, s)| (k.public(), *s))
                .collect(),
        );
        let genesis = Hash::domain("sou sim genesis v1", &cfg.seed.to_le_bytes());
        let mut tree = BlockTree::default();
        tree.blocks.insert(genesis, (Hash::ZERO, 0));
        let nodes = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| Node {
                key,
                behaviour: cfg.behaviours.get(i).copied().unwrap_or(Behaviour::Honest),
                engine: None,
                incarnation: 0,
                record: Vec::new(),
                log: Vec::new(),
                finalization: None,
                chain: BTreeMap::new(),
            })
            .collect();
        let mut sim = Sim {
            rng: SimRng::new(cfg.seed),
            cfg,
            set,
            genesis,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            groups: None,
            tree,
            trace: blake3::Hasher::new(),
            finalized: BTreeMap::new(),
            safety_violations: Vec::new(),
            sent: BTreeMap::new(),
            double_signs: Vec::new(),
            evidence: Vec::new(),
            crash_points: BTreeMap::new(),
            views_entered: 0,
        };
        for i in 0..sim.nodes.len() {
            if sim.nodes[i].behaviour != Behaviour::Silent {
                sim.boot(i);
            }
        }
        sim
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }

    pub fn validator_set(&self) -> &ValidatorSet {
        &self.set
    }

    /// Starts (or restarts) a validator from its durable record and log.
    fn boot(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        let recovered = Recovered {
            signed: node.record.clone(),
            finalization: node.finalization.clone(),
        };
        let engine = Engine::new(
            self.cfg.engine.clone(),
            Keypair::from_secret(node.key.secret_bytes()),
            self.set.clone(),
            self.genesis,
            0,
            recovered,
        );
        node.engine = Some(engine);
        let log = node.log.clone();
        for msg in log {
            self.feed(i, Input::Message(msg), false);
        }
        self.feed(i, Input::Start, false);
    }

    /// Stops a validator: everything not durable is lost.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].engine = None;
    }

    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].engine.is_none() && self.nodes[i].behaviour != Behaviour::Silent {
            self.boot(i);
        }
    }

    /// Validator `i`'s current view (`None` while it is down).
    pub fn view_of(&self, i: usize) -> Option<View> {
        self.nodes[i].engine.as_ref().map(Engine::view)
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].engine.is_some()
    }

    /// Splits the validators into groups that cannot reach each other.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let mut g = vec![usize::MAX; self.nodes.len()];
        for (gi, members) in groups.iter().enumerate() {
            for &m in *members {
                g[m] = gi;
            }
        }
        self.groups = Some(g);
    }

    pub fn heal(&mut self) {
        self.groups = None;
    }

    pub fn set_link(&mut self, link: Link) {
        self.cfg.link = link;
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    /// Hands an input to validator `i` and performs the resulting actions,
    /// possibly crashing part-way (when `may_crash`).
    fn feed(&mut self, i: usize, input: Input, may_crash: bool) {
        let Some(engine) = self.nodes[i].engine.as_mut() else {
            return;
        };
        let before_view = engine.view();
        let mut app = SimApp {
            tree: &mut self.tree,
            node: i,
        };
        let actions = engine.handle(input, &mut app);
        if engine.view() != before_view {
            self.views_entered += 1;
        }
        let crash_at = if may_crash && !actions.is_empty() && self.rng.chance(self.cfg.crash_ppm) {
            Some(self.rng.below(actions.len() as u64 + 1) as usize)
        } else {
            None
        };
        for (k, action) in actions.iter().enumerate() {
            if crash_at == Some(k) {
                self.crash_now(i, &actions[k..]);
                return;
            }
            self.perform(i, action.clone());
        }
        if crash_at == Some(actions.len()) {
            self.crash_now(i, &[]);
        }
    }

    fn crash_now(&mut self, i: usize, lost: &[Action]) {
        let point = match lost.first() {
            Some(Action::Persist(_)) => CrashPoint::BeforePersist,
            Some(Action::Broadcast(Message::Vote(v))) if self.nodes[i].record.last() == Some(v) => {
                CrashPoint::AfterPersistBeforeSend
            }
            _ if lost.is_empty() => CrashPoint::AfterSend,
            _ => CrashPoint::Elsewhere,
        };
        *self.crash_points.entry(point).or_insert(0) += 1;
        self.crash(i);
        let delay = self.cfg.restart_after_ms + self.rng.below(self.cfg.restart_after_ms + 1);
        self.schedule(self.now + delay, Event::Restart { node: i });
    }

    fn perform(&mut self, i: usize, action: Action) {
        match action {
            Action::Persist(v) => self.nodes[i].record.push(v),
            Action::Broadcast(msg) => self.broadcast(i, &msg),
            Action::ScheduleTimer {
                view,
                timer,
                after_ms,
            } => {
                let incarnation = self.nodes[i].incarnation;
                self.schedule(
                    self.now + after_ms,
                    Event::Timer {
                        node: i,
                        incarnation,
                        view,
                        timer,
                    },
                );
            }
            Action::Notarized(_) => {}
            Action::Finalized(cert) => self.on_finalized(i, cert),
            Action::Evidence(e) => {
                if e.verify(&self.set, &self.cfg.engine.namespace).is_ok()
                    && !self.evidence.contains(&e)
                {
                    self.evidence.push(e);
                }
            }
        }
    }

    fn broadcast(&mut self, from: usize, msg: &Message) {
        let behaviour = self.nodes[from].behaviour;
        if let Message::Vote(v) = msg {
            if v.signer as usize == from {
                self.note_sent(from, &v.vote);
            }
            if v.signer as usize == from {
                if let Some(extra) = self.misbehave(from, behaviour, v) {
                    return self.send_split(from, msg, extra);
                }
            }
        }
        let bytes = borsh::to_vec(msg).unwrap_or_default();
        for to in 0..self.nodes.len() {
            if to != from {
                self.send(from, to, bytes.clone());
            }
        }
    }

    /// A byzantine validator's extra vote, if it misbehaves on this one.
    /// Returns (the second vote, whether to split peers between the two).
    fn misbehave(
        &mut self,
        from: usize,
        behaviour: Behaviour,
        v: &SignedVote,
    ) -> Option<(SignedVote, bool)> {
        let Vote::Notarize(p) = &v.vote else {
            return None;
        };
        let is_leader = self.set.leader(p.view) as usize == from;
        let split = match behaviour {
            Behaviour::Equivocator if is_leader => true,
            Behaviour::DoubleVoter if !is_leader => false,
            _ => return None,
        };
        let mut twin = p.clone();
        twin.payload = Hash::domain("sou sim twin block v1", &p.payload.0);
        self.tree
            .blocks
            .insert(twin.payload, (twin.parent, twin.height));
        let vote = Vote::Notarize(twin);
        let signature = self.nodes[from]
            .key
            .sign(&vote.signing_digest(&self.cfg.engine.namespace));
        self.note_sent(from, &vote);
        Some((
            SignedVote {
                vote,
                signer: v.signer,
                signature,
            },
            split,
        ))
    }

    fn send_split(&mut self, from: usize, original: &Message, (twin, split): (SignedVote, bool)) {
        let a = borsh::to_vec(original).unwrap_or_default();
        let b = borsh::to_vec(&Message::Vote(twin)).unwrap_or_default();
        for to in 0..self.nodes.len() {
            if to == from {
                continue;
            }
            if !split || to % 2 == 0 {
                self.send(from, to, a.clone());
            }
            if !split || to % 2 == 1 {
                self.send(from, to, b.clone());
            }
        }
    }

    fn note_sent(&mut self, from: usize, vote: &Vote) {
        let sent = self.sent.entry((from as u32, vote.view())).or_default();
        if sent.contains(vote) {
            return;
        }
        if self.nodes[from].behaviour == Behaviour::Honest {
            if let Some(prev) = sent.iter().find(|p| p.conflicts_with(vote)) {
                self.double_signs.push((from, prev.clone(), vote.clone()));
            }
        }
        sent.push(vote.clone());
    }

    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        if let Some(g) = &self.groups {
            if g[from] != g[to] {
                return;
            }
        }
        let link = self.cfg.link;
        if self.rng.chance(link.drop_ppm) {
            return;
        }
        let jitter = if link.jitter_ms == 0 {
            0i64
        } else {
            self.rng.below(2 * link.jitter_ms + 1) as i64 - link.jitter_ms as i64
        };
        let delay = (link.latency_ms as i64 + jitter).max(0) as u64;
        self.schedule(self.now + delay, Event::Deliver { to, msg: bytes });
    }

    fn on_finalized(&mut self, i: usize, cert: Certificate) {
        let Some(p) = cert.vote.proposal().cloned() else {
            return;
        };
        self.trace.update(b"final");
        self.trace.update(&(i as u64).to_le_bytes());
        self.trace.update(&p.payload.0);
        let node = &mut self.nodes[i];
        if node
            .finalization
            .as_ref()
            .is_none_or(|f| f.view() < cert.view())
        {
            node.finalization = Some(cert);
        }
        // Walk back from the finalized block to what this node had final.
        let mut digest = p.payload;
        let mut newly = Vec::new();
        loop {
            let Some(&(parent, height)) = self.tree.blocks.get(&digest) else {
                self.safety_violations
                    .push(format!("node {i} finalized unknown block {digest}"));
                return;
            };
            if height == 0 {
                break;
            }
            match node.chain.get(&height) {
                Some(d) if *d == digest => break,
                Some(d) => {
                    self.safety_violations.push(format!(
                        "node {i}: height {height} finalized as {d} and then {digest}"
                    ));
                    return;
                }
                None => newly.push((height, digest)),
            }
            digest = parent;
        }
        for (height, digest) in newly {
            node.chain.insert(height, digest);
            match self.finalized.get(&height) {
                Some(d) if *d != digest => self.safety_violations.push(format!(
                    "seed {}: conflicting finalization at height {height}: {d} and {digest} (node {i})",
                    self.cfg.seed
                )),
                Some(_) => {}
                None => {
                    self.finalized.insert(height, digest);
                }
            }
        }
    }

    /// Processes events until `until_ms` of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.now + ms;
        self.run_until(until, |_| false);
    }

    /// Processes events until `done` holds (true) or `deadline_ms` passes
    /// (false).
    pub fn run_until(&mut self, deadline_ms: u64, done: impl Fn(&Sim) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let Some((&(at, seq), _)) = self.queue.iter().next() else {
                self.now = deadline_ms;
                return done(self);
            };
            if at > deadline_ms {
                self.now = deadline_ms;
                return done(self);
            }
            let Some(event) = self.queue.remove(&(at, seq)) else {
                continue;
            };
            self.now = at;
            self.process(event);
        }
    }

    fn process(&mut self, event: Event) {
        self.trace.update(&self.now.to_le_bytes());
        match event {
            Event::Deliver { to, msg } => {
                self.trace.update(b"deliver");
                self.trace.update(&(to as u64).to_le_bytes());
                self.trace.update(blake3::hash(&msg).as_bytes());
                if self.nodes[to].engine.is_none() {
                    return;
                }
                let Ok(m) = borsh::from_slice::<Message>(&msg) else {
                    return;
                };
                // Logged (durably) before it is handled.
                self.nodes[to].log.push(m.clone());
                self.feed(to, Input::Message(m), true);
            }
            Event::Timer {
                node,
                incarnation,
                view,
                timer,
            } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                self.trace.update(b"timer");
                self.trace.update(&(node as u64).to_le_bytes());
                self.trace.update(&view.to_le_bytes());
                self.feed(node, Input::Timer { view, timer }, true);
            }
            Event::Restart { node } => {
                self.trace.update(b"restart");
                self.restart(node);
            }
        }
    }

    // Observations.

    /// The height validator `i` has finalized up to (0: none).
    pub fn finalized_height(&self, i: usize) -> u64 {
        self.nodes[i].chain.keys().next_back().copied().unwrap_or(0)
    }

    /// The lowest finalized height among the given validators.
    pub fn min_height(&self, nodes: &[usize]) -> u64 {
        nodes
            .iter()
            .map(|&i| self.finalized_height(i))
            .min()
            .unwrap_or(0)
    }

    /// The highest height finalized by anyone.
    pub fn max_height(&self) -> u64 {
        self.finalized.keys().next_back().copied().unwrap_or(0)
    }

    pub fn chain(&self, i: usize) -> &BTreeMap<u64, Digest> {
        &self.nodes[i].chain
    }

    pub fn safety_violations(&self) -> &[String] {
        &self.safety_violations
    }

    /// Conflicting votes that left an honest validator (must stay empty).
    pub fn double_signs(&self) -> &[(usize, Vote, Vote)] {
        &self.double_signs
    }

    pub fn evidence(&self) -> &[Evidence] {
        &self.evidence
    }

    /// The validators named by the evidence gathered so far.
    pub fn accused(&self) -> BTreeSet<usize> {
        self.evidence
            .iter()
            .map(|e| e.first.signer as usize)
            .collect()
    }

    pub fn crash_points(&self) -> &BTreeMap<CrashPoint, u64> {
        &self.crash_points
    }

    /// Views entered by all validators together.
    pub fn views_entered(&self) -> u64 {
        self.views_entered
    }

    /// A hash of every event processed and every finalization, in order.
    pub fn trace_hash(&self) -> Hash {
        Hash(*self.trace.finalize().as_bytes())
    }

    /// Panics with the seed if safety was ever violated.
    pub fn assert_safe(&self) {
        assert!(
            self.safety_violations.is_empty(),
            "seed {}: safety violated: {:?}",
            self.cfg.seed,
            self.safety_violations
        );
        assert!(
            self.double_signs.is_empty(),
            "seed {}: an honest validator signed conflicting votes: {:?}",
            self.cfg.seed,
            self.double_signs
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(payload: Digest, parent: Digest, view: View) -> Certificate {
        Certificate {
            vote: Vote::Finalize(Proposal {
                epoch: 0,
                view,
                parent_view: 0,
                parent,
                height: 1,
                payload,
            }),
            signatures: vec![],
        }
    }

    #[test]
    fn the_safety_checker_catches_conflicting_finalizations() {
        let mut sim = Sim::new(SimConfig::new(1, vec![1; 4]));
        let g = sim.genesis;
        let (a, b) = (Hash([1; 32]), Hash([2; 32]));
        sim.tree.blocks.insert(a, (g, 1));
        sim.tree.blocks.insert(b, (g, 1));
        sim.on_finalized(0, cert_for(a, g, 1));
        assert!(sim.safety_violations().is_empty());
        sim.on_finalized(1, cert_for(b, g, 1));
        assert_eq!(
            sim.safety_violations().len(),
            1,
            "{:?}",
            sim.safety_violations()
        );
    }

    #[test]
    fn the_double_sign_detector_catches_an_honest_equivocation() {
        let mut sim = Sim::new(SimConfig::new(1, vec![1; 4]));
        let p = |d| Proposal {
            epoch: 0,
            view: 9,
            parent_view: 0,
            parent: Hash::ZERO,
            height: 1,
            payload: Hash([d; 32]),
        };
        sim.note_sent(0, &Vote::Notarize(p(1)));
        sim.note_sent(0, &Vote::Notarize(p(1)));
        assert!(sim.double_signs().is_empty());
        sim.note_sent(0, &Vote::Notarize(p(2)));
        assert_eq!(sim.double_signs().len(), 1);
    }
}
