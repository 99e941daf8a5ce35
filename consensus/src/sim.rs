//! A deterministic simulation of many validators in one process.
//!
//! One `u64` seed drives everything: link latencies and jitter, message
//! loss, random crash points and restart delays. Events are processed in
//! (time, sequence) order, so the same seed always gives the same run, and
//! [`Sim::trace_hash`] lets a test check exactly that.
//!
//! Each validator runs a real [`Engine`]. Its node is modelled as the real
//! node will be: every received message is appended to a message log (the
//! WAL) before it is handled, every [`Action::Persist`] goes to a durable
//! record before the next action, and a crash loses everything else. A
//! restarted validator is rebuilt from its record and a replay of its log.
//! Both are pruned by the rule of [`crate::guard::can_forget`] once a
//! finalization is durable (unless [`SimConfig::prune_durable_state`] is
//! off), so they stay small however long the run.
//!
//! The network is a set of directed links ([`Links`]): a default [`Link`]
//! and overrides per (from, to) pair, so one validator can sit behind a
//! slow or lossy connection, or be heard by nobody while hearing everyone.
//!
//! Crashes come two ways: at random ([`SimConfig::crash_ppm`]), or placed
//! exactly by a [`CrashPlan`] ("crash validator 2 after persisting, before
//! sending, its third `finalize`"; "crash it again while it replays its
//! log"), and every crash is counted by where it hit.
//!
//! Epochs: with [`SimConfig::epoch_length_blocks`] set, epoch `e` holds the
//! heights `e*L+1 ..= (e+1)*L`. Past its last block an epoch's leaders
//! propose *seals* (digests with no block that extend the last block, as
//! the node does), so that a last block which was notarized but not
//! finalized is finalized through a descendant. A validator that has the
//! last block final starts the next epoch's engine, with that epoch's
//! validator set ([`SimConfig::later_stakes`]) and the last block as its
//! genesis, and replays the messages of the new epoch it had logged.
//!
//! A safety checker runs on every finalization: no two different blocks
//! finalized at one height, by anyone, ever. Every vote an honest validator
//! releases, to its durable record or to the network, across all its
//! restarts, is checked for equivocation. A vote signed and then lost in a
//! crash before it was persisted never left the process: it is counted
//! apart ([`Sim::unreleased_conflicts`]), since signing a conflicting vote
//! after the restart is no equivocation anyone could prove.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use sou_types::{Hash, Keypair};

use crate::engine::{
    Action, Application, Config, Engine, Input, Recovered, Screened, Timer, Verdict,
};
use crate::guard::can_forget;
use crate::types::{
    Certificate, Digest, Epoch, Evidence, Message, Proposal, SignedVote, ValidatorIndex,
    ValidatorSet, View, Vote,
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

/// How one directed link (from one validator to another) behaves.
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

/// The network's links: `default` for every directed pair, except the
/// pairs in `overrides`, keyed by (from, to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Links {
    pub default: Link,
    pub overrides: BTreeMap<(usize, usize), Link>,
}

impl Links {
    /// Every link alike.
    pub fn uniform(link: Link) -> Links {
        Links {
            default: link,
            overrides: BTreeMap::new(),
        }
    }

    /// The link from `from` to `to`.
    pub fn get(&self, from: usize, to: usize) -> Link {
        self.overrides
            .get(&(from, to))
            .copied()
            .unwrap_or(self.default)
    }

    /// Sets the one directed link from `from` to `to`.
    pub fn set(&mut self, from: usize, to: usize, link: Link) {
        self.overrides.insert((from, to), link);
    }

    /// Sets every link out of `node` to the other `n - 1` validators.
    pub fn set_outgoing(&mut self, node: usize, n: usize, link: Link) {
        for to in (0..n).filter(|to| *to != node) {
            self.set(node, to, link);
        }
    }

    /// Sets every link into `node` from the other `n - 1` validators.
    pub fn set_incoming(&mut self, node: usize, n: usize, link: Link) {
        for from in (0..n).filter(|from| *from != node) {
            self.set(from, node, link);
        }
    }

    /// Sets every link to and from `node`.
    pub fn set_node(&mut self, node: usize, n: usize, link: Link) {
        self.set_outgoing(node, n, link);
        self.set_incoming(node, n, link);
    }
}

/// What happened on one directed link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Messages put on the link.
    pub offered: u64,
    /// Of those, lost (to the link's drop rate or a partition).
    pub dropped: u64,
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

/// The kinds of vote the engine signs; a leader's `notarize` of its own
/// proposal is the proposal, and counts as [`SignedKind::Propose`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SignedKind {
    Propose,
    Notarize,
    Nullify,
    Finalize,
}

impl SignedKind {
    pub const ALL: [SignedKind; 4] = [
        SignedKind::Propose,
        SignedKind::Notarize,
        SignedKind::Nullify,
        SignedKind::Finalize,
    ];

    /// The kind of `vote`, signed by `signer`, in a view led by `leader`.
    pub fn of(vote: &Vote, signer: ValidatorIndex, leader: ValidatorIndex) -> SignedKind {
        match vote {
            Vote::Notarize(_) if signer == leader => SignedKind::Propose,
            Vote::Notarize(_) => SignedKind::Notarize,
            Vote::Nullify { .. } => SignedKind::Nullify,
            Vote::Finalize(_) => SignedKind::Finalize,
        }
    }
}

/// Where a crash landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CrashPoint {
    /// A vote was signed but not yet persisted.
    BeforePersist,
    /// Persisted, not yet sent.
    AfterPersistBeforeSend,
    /// Sent, and the rest of the actions lost.
    AfterSend,
    /// While restarting: part of the message log replayed, `Start` not yet
    /// handled.
    DuringReplay,
    /// Crashed with no vote in flight.
    Elsewhere,
}

impl CrashPoint {
    /// The three points around one signed vote.
    pub const AROUND_A_VOTE: [CrashPoint; 3] = [
        CrashPoint::BeforePersist,
        CrashPoint::AfterPersistBeforeSend,
        CrashPoint::AfterSend,
    ];
}

/// A crash placed exactly (each fires at most once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPlan {
    /// Crash `node` at `point` (one of [`CrashPoint::AROUND_A_VOTE`]) of the
    /// `occurrence`-th vote (from 1) of `kind` that it signs, counted over
    /// the whole run, restarts included.
    AtVote {
        node: usize,
        kind: SignedKind,
        point: CrashPoint,
        occurrence: u64,
    },
    /// Crash `node` during its `restart`-th restart (from 1), after it
    /// replayed `after_messages` messages of its log (or all of them, if
    /// the log is shorter), before it handles `Start`.
    DuringReplay {
        node: usize,
        restart: u64,
        after_messages: usize,
    },
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Epoch 0's stake per validator; a validator with stake 0 is not in
    /// the set (it follows the chain as an observer).
    pub stakes: Vec<u64>,
    pub links: Links,
    pub engine: Config,
    pub behaviours: Vec<Behaviour>,
    /// Chance, per handled input, that the validator crashes part-way
    /// through performing the resulting actions (parts per million).
    pub crash_ppm: u32,
    /// Crashes placed exactly.
    pub crash_plans: Vec<CrashPlan>,
    /// A crashed validator restarts after this long (plus up to as much again).
    pub restart_after_ms: u64,
    /// Blocks per epoch; `None`: one epoch for ever.
    pub epoch_length_blocks: Option<u64>,
    /// Stakes of epochs 1, 2, ... (the last repeats; empty: `stakes`).
    pub later_stakes: Vec<Vec<u64>>,
    /// Drop settled entries of the durable record and log (see
    /// [`crate::guard::can_forget`]).
    pub prune_durable_state: bool,
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
            links: Links::uniform(Link::lan()),
            engine,
            behaviours: vec![Behaviour::Honest; n],
            crash_ppm: 0,
            crash_plans: Vec::new(),
            restart_after_ms: 300,
            epoch_length_blocks: None,
            later_stakes: Vec::new(),
            prune_durable_state: true,
        }
    }

    /// How many simulated validators (nodes) there are, over all epochs.
    pub fn nodes(&self) -> usize {
        self.later_stakes
            .iter()
            .map(Vec::len)
            .chain([self.stakes.len(), self.behaviours.len()])
            .max()
            .unwrap_or(0)
    }

    /// The stakes of `epoch`.
    pub fn stakes_of(&self, epoch: Epoch) -> &[u64] {
        if epoch == 0 || self.later_stakes.is_empty() {
            return &self.stakes;
        }
        let i = usize::try_from(epoch - 1)
            .unwrap_or(usize::MAX)
            .min(self.later_stakes.len() - 1);
        &self.later_stakes[i]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Deliver {
        from: usize,
        to: usize,
        msg: Rc<[u8]>,
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
    /// Epoch seals: seal digest -> the epoch's last block it stands for.
    pub seals: BTreeMap<Digest, Digest>,
}

/// The digest standing for "the epoch ends with block `end`" at `height`.
fn seal_digest(end: &Digest, height: u64) -> Digest {
    let mut h = Hash::hasher("sou sim epoch seal v1");
    h.update(&end.0);
    h.update(&height.to_le_bytes());
    Hash::from_hasher(&h)
}

struct SimApp<'a> {
    tree: &'a mut BlockTree,
    node: usize,
    epoch: Epoch,
    /// The height of the epoch's last block, if epochs end.
    end_height: Option<u64>,
}

impl SimApp<'_> {
    /// The epoch's last block that a block on `parent` (at `parent_height`,
    /// at or past the end) extends.
    fn end_block(&self, parent: Digest, parent_height: u64, end: u64) -> Option<Digest> {
        if parent_height == end {
            let (_, h) = self.tree.blocks.get(&parent)?;
            (*h == end).then_some(parent)
        } else {
            self.tree.seals.get(&parent).copied()
        }
    }
}

impl Application for SimApp<'_> {
    fn propose(&mut self, view: View, parent: Digest, parent_height: u64) -> Option<Digest> {
        if let Some(end) = self.end_height.filter(|end| parent_height >= *end) {
            let last = self.end_block(parent, parent_height, end)?;
            let seal = seal_digest(&last, parent_height + 1);
            self.tree.seals.insert(seal, last);
            return Some(seal);
        }
        let mut h = Hash::hasher("sou sim block v1");
        h.update(&parent.0);
        h.update(&self.epoch.to_le_bytes());
        h.update(&view.to_le_bytes());
        h.update(&(self.node as u64).to_le_bytes());
        let digest = Hash::from_hasher(&h);
        self.tree.blocks.insert(digest, (parent, parent_height + 1));
        Some(digest)
    }

    fn verify(&mut self, p: &Proposal) -> Verdict {
        if let Some(end) = self.end_height.filter(|end| p.height > *end) {
            let valid = self
                .end_block(p.parent, p.height - 1, end)
                .is_some_and(|last| p.payload == seal_digest(&last, p.height));
            return valid.into();
        }
        (self.tree.blocks.get(&p.payload) == Some(&(p.parent, p.height))).into()
    }
}

struct Node {
    key: Keypair,
    behaviour: Behaviour,
    engine: Option<Engine>,
    /// Bumped whenever a new engine is built: timers of an old one are stale.
    incarnation: u64,
    /// Restarts after a crash.
    restarts: u64,
    /// Durable: every vote persisted (pruned when settled).
    record: Vec<SignedVote>,
    /// Durable: every message received (the WAL; pruned when settled).
    log: Vec<Message>,
    /// Durable: the latest finalization.
    finalization: Option<Certificate>,
    /// Durable: the finalized chain as this validator knows it: height -> block.
    chain: BTreeMap<u64, Digest>,
    /// Durable: the epoch this validator is in, and that epoch's genesis
    /// (the previous epoch's last block and its height).
    epoch: Epoch,
    epoch_genesis: (Digest, u64),
    /// Durable: the finalization that made each past epoch's last block
    /// final (stored with the block).
    epoch_proofs: BTreeMap<Epoch, Certificate>,
    /// The epoch moved on while an engine was handling an input: start the
    /// next epoch's engine once its actions are performed.
    needs_new_engine: bool,
    /// The most entries the record and the log ever held.
    max_record: usize,
    max_log: usize,
}

/// One epoch's validators, and which node each index is.
struct EpochSet {
    set: ValidatorSet,
    members: Vec<usize>,
}

/// The simulation.
pub struct Sim {
    cfg: SimConfig,
    genesis: Digest,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    rng: SimRng,
    nodes: Vec<Node>,
    sets: BTreeMap<Epoch, EpochSet>,
    /// Partition group per node; messages cross only within a group.
    groups: Option<Vec<usize>>,
    link_stats: Vec<LinkStats>,
    tree: BlockTree,
    trace: blake3::Hasher,
    /// height -> the block finalized there (by anyone).
    finalized: BTreeMap<u64, Digest>,
    /// Every finalization certificate seen, by (epoch, view).
    certificates: BTreeMap<(Epoch, View), Certificate>,
    /// How many of them finalized an epoch seal (not a block).
    sealed_finalizations: u64,
    safety_violations: Vec<String>,
    /// (node, epoch, view) -> every vote that validator released:
    /// persisted, or sent.
    votes: BTreeMap<(usize, Epoch, View), Vec<Vote>>,
    /// (node, epoch, view) -> votes signed and lost in a crash before they
    /// were persisted.
    lost_votes: BTreeMap<(usize, Epoch, View), Vec<Vote>>,
    double_signs: Vec<(usize, Vote, Vote)>,
    /// (node, lost vote, released vote) that conflict (harmless).
    unreleased_conflicts: Vec<(usize, Vote, Vote)>,
    evidence: Vec<Evidence>,
    /// Crashes by where they hit and, around a vote, its kind.
    crash_hits: BTreeMap<(CrashPoint, Option<SignedKind>), u64>,
    /// Which of `cfg.crash_plans` have fired.
    plans_fired: Vec<bool>,
    /// (node, kind) -> votes of that kind the node signed.
    signed_counts: BTreeMap<(usize, SignedKind), u64>,
    views_entered: u64,
    /// A clock (ns) to time calls into engines with; the simulator itself
    /// reads none.
    engine_clock: Option<fn() -> u64>,
    engine_ns: u64,
    engine_calls: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sim(seed {}, t={}ms)", self.cfg.seed, self.now)
    }
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let n = cfg.nodes();
        println!("sim seed {} ({n} validators)", cfg.seed);
        let genesis = Hash::domain("sou sim genesis v1", &cfg.seed.to_le_bytes());
        let mut tree = BlockTree::default();
        tree.blocks.insert(genesis, (Hash::ZERO, 0));
        let nodes = (0..n)
            .map(|i| Node {
                key: Keypair::derive_insecure(cfg.seed, &format!("sim-validator-{i}")),
                behaviour: cfg.behaviours.get(i).copied().unwrap_or(Behaviour::Honest),
                engine: None,
                incarnation: 0,
                restarts: 0,
                record: Vec::new(),
                log: Vec::new(),
                finalization: None,
                chain: BTreeMap::new(),
                epoch: 0,
                epoch_genesis: (genesis, 0),
                epoch_proofs: BTreeMap::new(),
                needs_new_engine: false,
                max_record: 0,
                max_log: 0,
            })
            .collect();
        let mut sim = Sim {
            rng: SimRng::new(cfg.seed),
            plans_fired: vec![false; cfg.crash_plans.len()],
            cfg,
            genesis,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            sets: BTreeMap::new(),
            groups: None,
            link_stats: vec![LinkStats::default(); n * n],
            tree,
            trace: blake3::Hasher::new(),
            finalized: BTreeMap::new(),
            certificates: BTreeMap::new(),
            sealed_finalizations: 0,
            safety_violations: Vec::new(),
            votes: BTreeMap::new(),
            lost_votes: BTreeMap::new(),
            double_signs: Vec::new(),
            unreleased_conflicts: Vec::new(),
            evidence: Vec::new(),
            crash_hits: BTreeMap::new(),
            signed_counts: BTreeMap::new(),
            views_entered: 0,
            engine_clock: None,
            engine_ns: 0,
            engine_calls: 0,
        };
        sim.ensure_epoch(0);
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

    /// The block epoch 0 builds on.
    pub fn genesis(&self) -> Digest {
        self.genesis
    }

    /// Epoch 0's validator set.
    pub fn validator_set(&self) -> &ValidatorSet {
        &self.sets[&0].set
    }

    /// The validator set of `epoch`, once some validator has reached it.
    pub fn validator_set_of(&self, epoch: Epoch) -> Option<&ValidatorSet> {
        self.sets.get(&epoch).map(|s| &s.set)
    }

    /// Builds `epoch`'s validator set from the configured stakes.
    fn ensure_epoch(&mut self, epoch: Epoch) {
        if self.sets.contains_key(&epoch) {
            return;
        }
        let stakes = self.cfg.stakes_of(epoch);
        let members: Vec<usize> = (0..self.nodes.len())
            .filter(|i| stakes.get(*i).copied().unwrap_or(0) > 0)
            .collect();
        let set = ValidatorSet::new(
            epoch,
            members
                .iter()
                .map(|i| (self.nodes[*i].key.public(), stakes[*i]))
                .collect(),
        );
        self.sets.insert(epoch, EpochSet { set, members });
    }

    /// The node that is validator `signer` in `epoch`.
    fn node_of(&self, epoch: Epoch, signer: ValidatorIndex) -> Option<usize> {
        self.sets
            .get(&epoch)
            .and_then(|s| s.members.get(signer as usize).copied())
    }

    /// The height of `epoch`'s last block, if epochs end.
    fn epoch_end(&self, epoch: Epoch) -> Option<u64> {
        self.cfg
            .epoch_length_blocks
            .map(|len| epoch.saturating_add(1).saturating_mul(len.max(1)))
    }

    /// Times every call into an engine with `clock` (nanoseconds), so that
    /// a benchmark can tell the engines' cost from the simulator's. The
    /// simulator itself reads no clock.
    pub fn time_engines_with(&mut self, clock: fn() -> u64) {
        self.engine_clock = Some(clock);
    }

    /// Nanoseconds spent inside engines (by the clock given to
    /// [`Sim::time_engines_with`]), and the number of calls.
    pub fn engine_time(&self) -> (u64, u64) {
        (self.engine_ns, self.engine_calls)
    }

    /// Starts (or restarts, or moves to its new epoch) a validator from its
    /// durable record and log.
    fn boot(&mut self, i: usize) {
        let epoch = self.nodes[i].epoch;
        self.ensure_epoch(epoch);
        let set = self.sets[&epoch].set.clone();
        let clock = self.engine_clock;
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.needs_new_engine = false;
        let incarnation = node.incarnation;
        let recovered = Recovered {
            signed: node.record.clone(),
            finalization: node.finalization.clone(),
        };
        let started = clock.map(|c| c());
        let engine = Engine::new(
            self.cfg.engine.clone(),
            Keypair::from_secret(node.key.secret_bytes()),
            set,
            node.epoch_genesis.0,
            node.epoch_genesis.1,
            recovered,
        );
        if let (Some(c), Some(s)) = (clock, started) {
            self.engine_ns += c().saturating_sub(s);
        }
        node.engine = Some(engine);
        let log: Vec<Message> = node
            .log
            .iter()
            .filter(|m| m.epoch() == epoch)
            .cloned()
            .collect();
        let restart = node.restarts;
        let replay_crash = self
            .cfg
            .crash_plans
            .iter()
            .enumerate()
            .find_map(|(k, p)| match *p {
                CrashPlan::DuringReplay {
                    node,
                    restart: r,
                    after_messages,
                } if node == i && r == restart && restart > 0 && !self.plans_fired[k] => {
                    Some((k, after_messages.min(log.len())))
                }
                _ => None,
            });
        let alive = |s: &Sim| s.nodes[i].incarnation == incarnation && s.nodes[i].engine.is_some();
        for (k, msg) in log.into_iter().enumerate() {
            if let Some((plan, after)) = replay_crash {
                if k == after {
                    self.plans_fired[plan] = true;
                    return self.crash_now(i, CrashPoint::DuringReplay, None);
                }
            }
            if !alive(self) {
                return;
            }
            self.feed(i, Input::Message(msg), false);
        }
        // The whole log replayed (the plan asked for at least as much).
        if let Some((plan, _)) = replay_crash {
            if !self.plans_fired[plan] && alive(self) {
                self.plans_fired[plan] = true;
                return self.crash_now(i, CrashPoint::DuringReplay, None);
            }
        }
        if alive(self) {
            self.feed(i, Input::Start, false);
        }
    }

    /// Stops a validator: everything not durable is lost.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].engine = None;
    }

    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].engine.is_none() && self.nodes[i].behaviour != Behaviour::Silent {
            self.nodes[i].restarts += 1;
            self.boot(i);
        }
    }

    /// Validator `i`'s current view (`None` while it is down).
    pub fn view_of(&self, i: usize) -> Option<View> {
        self.nodes[i].engine.as_ref().map(Engine::view)
    }

    /// The epoch validator `i` is in (durable: also while it is down).
    pub fn epoch_of(&self, i: usize) -> Epoch {
        self.nodes[i].epoch
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

    /// Sets the default link (overrides stay).
    pub fn set_link(&mut self, link: Link) {
        self.cfg.links.default = link;
    }

    /// Sets the directed link from `from` to `to`.
    pub fn set_link_between(&mut self, from: usize, to: usize, link: Link) {
        self.cfg.links.set(from, to, link);
    }

    /// Sets every link to and from `node`.
    pub fn set_links_of(&mut self, node: usize, link: Link) {
        let n = self.nodes.len();
        self.cfg.links.set_node(node, n, link);
    }

    /// Removes every per-link override.
    pub fn clear_link_overrides(&mut self) {
        self.cfg.links.overrides.clear();
    }

    /// What happened on the link from `from` to `to`.
    pub fn link_stats(&self, from: usize, to: usize) -> LinkStats {
        self.link_stats[from * self.nodes.len() + to]
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    /// The kind of a vote signed by validator `signer` of `epoch`.
    fn kind_of(&self, sv: &SignedVote) -> SignedKind {
        let leader = self
            .sets
            .get(&sv.vote.epoch())
            .map_or(ValidatorIndex::MAX, |s| s.set.leader(sv.vote.view()));
        SignedKind::of(&sv.vote, sv.signer, leader)
    }

    /// Consumes the plan that crashes `node` at `point` of its `n`-th vote
    /// of `kind`, if there is one.
    fn take_plan(&mut self, node: usize, kind: SignedKind, point: CrashPoint, n: u64) -> bool {
        let found = self.cfg.crash_plans.iter().enumerate().position(|(k, p)| {
            !self.plans_fired[k]
                && *p
                    == CrashPlan::AtVote {
                        node,
                        kind,
                        point,
                        occurrence: n,
                    }
        });
        if let Some(k) = found {
            self.plans_fired[k] = true;
        }
        found.is_some()
    }

    /// Hands an input to validator `i` and performs the resulting actions,
    /// in order, possibly crashing part-way: at random (when
    /// `random_crash`), or where a [`CrashPlan`] says.
    fn feed(&mut self, i: usize, input: Input, random_crash: bool) {
        let epoch = self.nodes[i].epoch;
        let end_height = self.epoch_end(epoch);
        let clock = self.engine_clock;
        let Some(engine) = self.nodes[i].engine.as_mut() else {
            return;
        };
        let before_view = engine.view();
        let mut app = SimApp {
            tree: &mut self.tree,
            node: i,
            epoch,
            end_height,
        };
        let started = clock.map(|c| c());
        let actions = engine.handle(input, &mut app);
        if let (Some(c), Some(s)) = (clock, started) {
            self.engine_ns += c().saturating_sub(s);
        }
        self.engine_calls += 1;
        if engine.view() != before_view {
            self.views_entered += 1;
        }
        let random_at = if random_crash
            && self.cfg.crash_ppm > 0
            && !actions.is_empty()
            && self.rng.chance(self.cfg.crash_ppm)
        {
            Some(self.rng.below(actions.len() as u64 + 1) as usize)
        } else {
            None
        };
        // The vote signed last in this list: persisted, not yet sent.
        let mut in_flight: Option<(SignedKind, u64, SignedVote)> = None;
        for (k, action) in actions.iter().enumerate() {
            if random_at == Some(k) {
                let (point, kind) = match action {
                    Action::Persist(sv) => (CrashPoint::BeforePersist, Some(self.kind_of(sv))),
                    Action::Broadcast(Message::Vote(v))
                        if in_flight.as_ref().is_some_and(|f| f.2 == *v) =>
                    {
                        (
                            CrashPoint::AfterPersistBeforeSend,
                            in_flight.as_ref().map(|f| f.0),
                        )
                    }
                    _ => (CrashPoint::Elsewhere, None),
                };
                if let Action::Persist(sv) = action {
                    self.note_lost(i, &sv.vote);
                }
                return self.crash_now(i, point, kind);
            }
            match action {
                Action::Persist(sv) => {
                    let kind = self.kind_of(sv);
                    let count = self.signed_counts.entry((i, kind)).or_insert(0);
                    *count += 1;
                    let n = *count;
                    if self.take_plan(i, kind, CrashPoint::BeforePersist, n) {
                        self.note_lost(i, &sv.vote);
                        return self.crash_now(i, CrashPoint::BeforePersist, Some(kind));
                    }
                    self.perform(i, action.clone());
                    self.note_vote(i, &sv.vote);
                    if self.take_plan(i, kind, CrashPoint::AfterPersistBeforeSend, n) {
                        return self.crash_now(i, CrashPoint::AfterPersistBeforeSend, Some(kind));
                    }
                    in_flight = Some((kind, n, sv.clone()));
                }
                Action::Broadcast(Message::Vote(v))
                    if in_flight.as_ref().is_some_and(|f| f.2 == *v) =>
                {
                    let Some((kind, n, _)) = in_flight.take() else {
                        continue;
                    };
                    self.perform(i, action.clone());
                    if self.take_plan(i, kind, CrashPoint::AfterSend, n) {
                        return self.crash_now(i, CrashPoint::AfterSend, Some(kind));
                    }
                }
                _ => self.perform(i, action.clone()),
            }
        }
        if random_at == Some(actions.len()) {
            let kind = actions.iter().rev().find_map(|a| match a {
                Action::Persist(sv) => Some(self.kind_of(sv)),
                _ => None,
            });
            let point = if kind.is_some() {
                CrashPoint::AfterSend
            } else {
                CrashPoint::Elsewhere
            };
            return self.crash_now(i, point, kind);
        }
        if self.nodes[i].needs_new_engine && self.nodes[i].engine.is_some() {
            // The epoch's last block is final: the next epoch's engine.
            self.boot(i);
        }
    }

    fn crash_now(&mut self, i: usize, point: CrashPoint, kind: Option<SignedKind>) {
        *self.crash_hits.entry((point, kind)).or_insert(0) += 1;
        self.trace.update(b"crash");
        self.trace.update(&(i as u64).to_le_bytes());
        self.crash(i);
        let delay = self.cfg.restart_after_ms + self.rng.below(self.cfg.restart_after_ms + 1);
        self.schedule(self.now + delay, Event::Restart { node: i });
    }

    fn perform(&mut self, i: usize, action: Action) {
        match action {
            Action::Persist(v) => {
                let node = &mut self.nodes[i];
                node.record.push(v);
                node.max_record = node.max_record.max(node.record.len());
            }
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
            Action::Finalized(cert) => self.on_finalized(i, &cert),
            Action::Evidence(e) => {
                let valid = self
                    .sets
                    .get(&e.first.vote.epoch())
                    .is_some_and(|s| e.verify(&s.set, &self.cfg.engine.namespace).is_ok());
                if valid && !self.evidence.contains(&e) {
                    self.evidence.push(e);
                }
            }
        }
    }

    fn broadcast(&mut self, from: usize, msg: &Message) {
        let behaviour = self.nodes[from].behaviour;
        if let Message::Vote(v) = msg {
            if self.node_of(v.vote.epoch(), v.signer) == Some(from) {
                self.note_vote(from, &v.vote);
                if let Some(extra) = self.misbehave(from, behaviour, v) {
                    return self.send_split(from, msg, extra);
                }
            }
        }
        let bytes: Rc<[u8]> = borsh::to_vec(msg).unwrap_or_default().into();
        for to in 0..self.nodes.len() {
            if to != from {
                self.send(from, to, Rc::clone(&bytes));
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
        let is_leader = self
            .sets
            .get(&p.epoch)
            .is_some_and(|s| s.set.leader(p.view) == v.signer);
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
        self.note_vote(from, &vote);
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
        let a: Rc<[u8]> = borsh::to_vec(original).unwrap_or_default().into();
        let b: Rc<[u8]> = borsh::to_vec(&Message::Vote(twin))
            .unwrap_or_default()
            .into();
        for to in 0..self.nodes.len() {
            if to == from {
                continue;
            }
            if !split || to % 2 == 0 {
                self.send(from, to, Rc::clone(&a));
            }
            if !split || to % 2 == 1 {
                self.send(from, to, Rc::clone(&b));
            }
        }
    }

    /// Records a vote that validator `node` released (persisted or sent),
    /// and any honest equivocation it makes.
    fn note_vote(&mut self, node: usize, vote: &Vote) {
        let key = (node, vote.epoch(), vote.view());
        let honest = self.nodes[node].behaviour == Behaviour::Honest;
        let votes = self.votes.entry(key).or_default();
        if votes.contains(vote) {
            return;
        }
        if honest {
            if let Some(prev) = votes.iter().find(|p| p.conflicts_with(vote)) {
                self.double_signs.push((node, prev.clone(), vote.clone()));
            }
        }
        votes.push(vote.clone());
        if let Some(lost) = self
            .lost_votes
            .get(&key)
            .and_then(|l| l.iter().find(|l| l.conflicts_with(vote)))
        {
            self.unreleased_conflicts
                .push((node, lost.clone(), vote.clone()));
        }
    }

    /// Records a vote that validator `node` signed and lost in a crash
    /// before persisting it: it never left the process, so nobody can hold
    /// it, and a conflicting vote signed after the restart is no
    /// equivocation. Such pairs are kept apart, for tests to look at.
    fn note_lost(&mut self, node: usize, vote: &Vote) {
        let key = (node, vote.epoch(), vote.view());
        if let Some(released) = self
            .votes
            .get(&key)
            .and_then(|v| v.iter().find(|r| r.conflicts_with(vote)))
        {
            self.unreleased_conflicts
                .push((node, vote.clone(), released.clone()));
        }
        self.lost_votes.entry(key).or_default().push(vote.clone());
    }

    fn send(&mut self, from: usize, to: usize, bytes: Rc<[u8]>) {
        let stats = from * self.nodes.len() + to;
        self.link_stats[stats].offered += 1;
        if self.groups.as_ref().is_some_and(|g| g[from] != g[to]) {
            self.link_stats[stats].dropped += 1;
            return;
        }
        let link = self.cfg.links.get(from, to);
        if self.rng.chance(link.drop_ppm) {
            self.link_stats[stats].dropped += 1;
            return;
        }
        let jitter = if link.jitter_ms == 0 {
            0i64
        } else {
            self.rng.below(2 * link.jitter_ms + 1) as i64 - link.jitter_ms as i64
        };
        let delay = (link.latency_ms as i64 + jitter).max(0) as u64;
        self.schedule(
            self.now + delay,
            Event::Deliver {
                from,
                to,
                msg: bytes,
            },
        );
    }

    fn on_finalized(&mut self, i: usize, cert: &Certificate) {
        let Some(p) = cert.vote.proposal().cloned() else {
            return;
        };
        self.trace.update(b"final");
        self.trace.update(&(i as u64).to_le_bytes());
        self.trace.update(&p.payload.0);
        if let std::collections::btree_map::Entry::Vacant(e) =
            self.certificates.entry((p.epoch, p.view))
        {
            e.insert(cert.clone());
            if self.tree.seals.contains_key(&p.payload) {
                self.sealed_finalizations += 1;
            }
        }
        let node = &mut self.nodes[i];
        if node
            .finalization
            .as_ref()
            .is_none_or(|f| (f.vote.epoch(), f.view()) < (p.epoch, p.view))
        {
            node.finalization = Some(cert.clone());
        }
        // A seal finalizes the epoch's last block it stands for.
        let mut digest = self
            .tree
            .seals
            .get(&p.payload)
            .copied()
            .unwrap_or(p.payload);
        // Walk back from the finalized block to what this node had final.
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
        // The epoch's last block is final: the node moves to the next epoch.
        if let Some(len) = self.cfg.epoch_length_blocks.map(|l| l.max(1)) {
            while let Some(last) = node.chain.get(&((node.epoch + 1) * len)).copied() {
                node.epoch_proofs.insert(node.epoch, cert.clone());
                node.epoch += 1;
                node.epoch_genesis = (last, node.epoch * len);
                node.needs_new_engine = true;
            }
        }
        self.prune(i);
    }

    /// Drops what the node no longer needs from its record and log, by the
    /// rule of [`can_forget`] (its finalization is durable already).
    fn prune(&mut self, i: usize) {
        if !self.cfg.prune_durable_state {
            return;
        }
        let node = &mut self.nodes[i];
        let current = node.epoch;
        let finalized = node
            .finalization
            .as_ref()
            .map(|f| (f.vote.epoch(), f.view()));
        node.record
            .retain(|v| !can_forget(v.vote.epoch(), v.vote.view(), current, finalized));
        node.log
            .retain(|m| !can_forget(m.epoch(), m.view(), current, finalized));
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
            Event::Deliver { from, to, msg } => {
                self.trace.update(b"deliver");
                self.trace.update(&(to as u64).to_le_bytes());
                self.trace.update(blake3::hash(&msg).as_bytes());
                if self.nodes[to].engine.is_none() {
                    return;
                }
                let Ok(m) = borsh::from_slice::<Message>(&msg) else {
                    return;
                };
                let node = &mut self.nodes[to];
                if let Some(proof) = node.epoch_proofs.get(&m.epoch()) {
                    // The sender is stuck in an epoch that is over: send it
                    // the finalization that ended it.
                    let reply = borsh::to_vec(&Message::Certificate(proof.clone()));
                    self.send(to, from, reply.unwrap_or_default().into());
                    return;
                }
                if m.epoch() > node.epoch.saturating_add(1) {
                    // Two epochs ahead: useless until the next one is over,
                    // and stale by then.
                    return;
                }
                let finalized = node
                    .finalization
                    .as_ref()
                    .map(|f| (f.vote.epoch(), f.view()));
                let settled = can_forget(m.epoch(), m.view(), node.epoch, finalized);
                // As the node takes gossip: a message of the engine's epoch
                // that could change nothing is dropped unchecked; one that
                // could is checked once, logged, and handed over as checked.
                let input = match node.engine.as_ref().map(|e| e.screen(m.clone())) {
                    Some(Screened::Stale | Screened::Invalid) => return,
                    Some(Screened::Verified(v)) => Input::Verified(v),
                    Some(Screened::OtherEpoch(_)) | None => Input::Message(m.clone()),
                };
                if !(self.cfg.prune_durable_state && settled) {
                    // Logged (durably) before it is handled.
                    node.log.push(m);
                    node.max_log = node.max_log.max(node.log.len());
                }
                self.feed(to, input, true);
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

    /// Every finalization certificate any validator produced or accepted,
    /// by (epoch, view).
    pub fn finalization_certificates(&self) -> &BTreeMap<(Epoch, View), Certificate> {
        &self.certificates
    }

    /// How many finalizations were of epoch seals: an epoch's last block
    /// made final through a descendant.
    pub fn sealed_finalizations(&self) -> u64 {
        self.sealed_finalizations
    }

    /// The durable record and log of validator `i`: (entries now, the most
    /// they ever held) for each.
    pub fn durable_sizes(&self, i: usize) -> ((usize, usize), (usize, usize)) {
        let n = &self.nodes[i];
        ((n.record.len(), n.max_record), (n.log.len(), n.max_log))
    }

    /// Votes of each kind that validator `i` signed.
    pub fn signed_count(&self, i: usize, kind: SignedKind) -> u64 {
        self.signed_counts.get(&(i, kind)).copied().unwrap_or(0)
    }

    /// Every vote validator `i` signed or sent in `epoch`, by view.
    pub fn votes_of(&self, i: usize, epoch: Epoch) -> impl Iterator<Item = (View, &Vote)> {
        self.votes
            .range((i, epoch, 0)..=(i, epoch, View::MAX))
            .flat_map(|((_, _, view), votes)| votes.iter().map(move |v| (*view, v)))
    }

    pub fn safety_violations(&self) -> &[String] {
        &self.safety_violations
    }

    /// Conflicting votes released (persisted or sent) by an honest
    /// validator (must stay empty).
    pub fn double_signs(&self) -> &[(usize, Vote, Vote)] {
        &self.double_signs
    }

    /// (validator, vote it signed and lost in a crash before persisting
    /// it, a conflicting vote it released after restarting). Allowed: the
    /// first never left the crashed process.
    pub fn unreleased_conflicts(&self) -> &[(usize, Vote, Vote)] {
        &self.unreleased_conflicts
    }

    /// Votes signed and lost in a crash before they were persisted.
    pub fn lost_votes(&self) -> usize {
        self.lost_votes.values().map(Vec::len).sum()
    }

    pub fn evidence(&self) -> &[Evidence] {
        &self.evidence
    }

    /// The validators named by the evidence gathered so far.
    pub fn accused(&self) -> BTreeSet<usize> {
        self.evidence
            .iter()
            .filter_map(|e| self.node_of(e.first.vote.epoch(), e.first.signer))
            .collect()
    }

    /// Crashes by point.
    pub fn crash_points(&self) -> BTreeMap<CrashPoint, u64> {
        let mut by_point = BTreeMap::new();
        for ((p, _), n) in &self.crash_hits {
            *by_point.entry(*p).or_insert(0) += n;
        }
        by_point
    }

    /// Crashes by point and, for those around a vote, the vote's kind.
    pub fn crash_hits(&self) -> &BTreeMap<(CrashPoint, Option<SignedKind>), u64> {
        &self.crash_hits
    }

    /// Whether each of the configured [`CrashPlan`]s fired.
    pub fn plans_fired(&self) -> &[bool] {
        &self.plans_fired
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
        sim.on_finalized(0, &cert_for(a, g, 1));
        assert!(sim.safety_violations().is_empty());
        sim.on_finalized(1, &cert_for(b, g, 1));
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
        sim.note_vote(0, &Vote::Notarize(p(1)));
        sim.note_vote(0, &Vote::Notarize(p(1)));
        assert!(sim.double_signs().is_empty());
        sim.note_vote(0, &Vote::Notarize(p(2)));
        assert_eq!(sim.double_signs().len(), 1);
        // A nullify and a finalize of one view conflict too.
        sim.note_vote(1, &Vote::Nullify { epoch: 0, view: 9 });
        sim.note_vote(1, &Vote::Finalize(p(1)));
        assert_eq!(sim.double_signs().len(), 2);
    }

    #[test]
    fn links_default_and_override_per_direction() {
        let mut links = Links::uniform(Link::lan());
        let slow = Link {
            latency_ms: 500,
            jitter_ms: 0,
            drop_ppm: 0,
        };
        links.set(1, 2, slow);
        assert_eq!(links.get(1, 2), slow);
        assert_eq!(links.get(2, 1), Link::lan(), "links are directed");
        links.set_node(3, 4, Link::INSTANT);
        for other in 0..3 {
            assert_eq!(links.get(3, other), Link::INSTANT);
            assert_eq!(links.get(other, 3), Link::INSTANT);
        }
        assert_eq!(links.get(0, 1), Link::lan());
    }
}
