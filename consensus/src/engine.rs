//! The Simplex state machine (Benjamin Y. Chan and Rafael Pass, "Simplex
//! Consensus: A Simple and Fast Consensus Protocol", TCC 2023; IACR ePrint
//! 2023/463), in the form the commonware `simplex` module documents:
//! distinct `notarize`, `nullify` and `finalize` votes, a view timer,
//! rebroadcast on timeouts, and parents referenced by view so that
//! certificates need not travel inside proposals.
//!
//! # The paper's steps
//!
//! The paper runs iterations `h = 1, 2, ...` (our views). Comments `[S1]`
//! to `[S5]` cite the five steps of its protocol for iteration `h`, in the
//! order the paper states them:
//! - **S1, entering iteration `h`**: start a timer `T_h` that fires after
//!   `3Δ`; the leader `L_h` proposes a block extending a notarized
//!   blockchain of length `h - 1`.
//! - **S2, voting**: upon the first proposal from `L_h` that extends a
//!   notarized blockchain of length `h - 1`, vote for it.
//! - **S3, timeout**: if `T_h` fires while still in iteration `h`, vote for
//!   the dummy block `⊥_h` (our `nullify`).
//! - **S4, moving on**: upon seeing a notarized blockchain of length `h` (a
//!   notarized block, or dummy block, for `h`), enter `h + 1`; if `T_h` has
//!   not fired, send `⟨finalize, h⟩`.
//! - **S5, finalizing**: upon `2n/3` `⟨finalize, h⟩` messages, the notarized
//!   blockchain up to `h` is final.
//!
//! # Departures from the paper
//!
//! Each is marked `DEPARTURE (Dn)` next to the code that makes it. Safety
//! rests on two rules that no departure touches, and that the
//! [`Guard`](crate::Guard) enforces across crashes: at most one `notarize`
//! per view, and never both `nullify` and `finalize` in one view.
//! - **D1, votes name what they are about.** `nullify(v)` replaces the vote
//!   for the dummy block, and `finalize` names the proposal (the paper's
//!   `⟨finalize, h⟩` names only the iteration), so that a finalization
//!   certificate alone proves which block is final.
//! - **D2, parents by view.** A proposal names its parent's view and digest
//!   instead of carrying the notarized chain; a validator votes once it
//!   holds the parent's notarization and a nullification for every view in
//!   between (S2's "extends a notarized blockchain of length `h - 1`").
//! - **D3, the leader's `notarize` is its proposal** (S1 and S2 in one
//!   message).
//! - **D4, an invalid proposal is answered with `nullify` at once.** S2 only
//!   votes for a valid proposal and otherwise waits for `T_h`; nullifying at
//!   once ends a bad leader's view after one hop instead of a timeout. It
//!   is safe because a `nullify` only rules out our own `finalize` for the
//!   view.
//! - **D5, "`finalize` unless we nullified the view"**, for every notarized
//!   view above the last finalized one, instead of S4's "if `T_h` has not
//!   fired", on the move to `h + 1` only. In the paper the timer is the only
//!   way to vote for the dummy block, so the two conditions agree; here
//!   `nullify` also comes from D4 and D7, and what safety needs is exactly
//!   "no `finalize` after our `nullify`". A notarization that arrives after
//!   a nullification moved us past the view still earns our `finalize`,
//!   which the paper would never send.
//! - **D6, back-off.** The timer starts at `view_timeout_ms` and doubles
//!   after each view that ended in a nullification, up to
//!   `max_view_timeout_ms`, instead of a fixed `3Δ`: `Δ` is not known.
//! - **D7, inactive leaders are skipped.** A leader with no vote seen in
//!   `skip_inactive_leader_views` views gets a 0 ms timer (commonware's
//!   "skip timeout").
//! - **D8, retransmission.** The paper assumes that after GST every message
//!   reaches every honest player within `Δ`. On a lossy network the engine
//!   relays the leader's proposal once, and on every timeout resends its
//!   votes, the certificates since the last finalization and the latest
//!   finalization.
//! - **D9, stake.** Quorums are more than two thirds of the stake (the
//!   paper: `2n/3` of `n` players), and leaders are drawn with probability
//!   proportional to stake from a hash of epoch and view (the paper:
//!   `H*(h) mod n`).
//!
//! The engine is pure: [`Engine::handle`] takes one [`Input`] and returns
//! the [`Action`]s the node must perform, in order. It reads no clock (timers
//! are requested as actions), does no I/O, and calls the [`Application`]
//! synchronously to build and check blocks.

use std::collections::{BTreeMap, BTreeSet};

use sou_types::{Hash, Keypair, Signature};

use crate::guard::{Guard, Permit};
use crate::types::{
    Certificate, Digest, Epoch, Evidence, Message, Proposal, SignedVote, ValidatorIndex,
    ValidatorSet, View, Vote, VoteKind,
};

/// The application's answer about a proposed block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    /// Cannot tell yet (the block, or its parent's state, has not arrived):
    /// ask again later; the node sends [`Input::Wake`] when something changed.
    Later,
}

impl From<bool> for Verdict {
    fn from(valid: bool) -> Verdict {
        if valid {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }
}

/// The application decides what a valid block is; consensus only orders
/// digests.
pub trait Application {
    /// Builds a block on `parent` (at `parent_height`) for `view`; returns its
    /// digest, or `None` if it cannot now (the view will then time out).
    fn propose(&mut self, view: View, parent: Digest, parent_height: u64) -> Option<Digest>;
    /// Checks a proposed block: parent, height, proposer, timestamp,
    /// transactions, state root. Called again after [`Verdict::Later`];
    /// otherwise at most once per proposal.
    fn verify(&mut self, proposal: &Proposal) -> Verdict;
}

/// Parameters of the engine. Times are in milliseconds of the node's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The chain's namespace in every vote signature (the chain id).
    pub namespace: Vec<u8>,
    /// How long to wait in a view for a notarization before nullifying it.
    pub view_timeout_ms: u64,
    /// Cap of the back-off: the timeout doubles after each view that ended
    /// in a nullification, up to this.
    pub max_view_timeout_ms: u64,
    /// How long a leader waits after entering its view before proposing
    /// (0: at once; a single-validator chain uses it as its block interval).
    pub propose_delay_ms: u64,
    /// When the application has no block ready, ask again after this long
    /// (until the view ends).
    pub propose_retry_ms: u64,
    /// A leader with no vote seen in this many views is presumed down: its
    /// view is nullified at once instead of after a timeout.
    pub skip_inactive_leader_views: u64,
    /// Messages for views further ahead of ours than this are ignored.
    pub max_future_views: u64,
}

impl Config {
    pub fn new(namespace: impl Into<Vec<u8>>) -> Config {
        Config {
            namespace: namespace.into(),
            view_timeout_ms: 1_000,
            max_view_timeout_ms: 8_000,
            propose_delay_ms: 0,
            propose_retry_ms: 10,
            skip_inactive_leader_views: 20,
            max_future_views: 10_000,
        }
    }
}

/// Most certificates sent again on one timeout.
const MAX_REBROADCAST_CERTIFICATES: usize = 256;

/// Most views whose votes of ours one catch-up answer carries (a peer
/// further behind needs certificates, not votes).
const MAX_CATCH_UP_VOTE_VIEWS: usize = 8;

/// Which timer fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// The leader's moment to propose.
    Propose,
    /// The view has lasted too long (and, after nullifying, every retry).
    View,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Begin (or resume after a restart and a replay of the message log).
    Start,
    /// A message from a peer (or replayed from the log).
    Message(Message),
    /// A message from a peer whose signatures [`Engine::verify`] checked:
    /// handled as [`Input::Message`] without checking them again.
    Verified(Verified),
    /// A timer requested by [`Action::ScheduleTimer`] fired.
    Timer { view: View, timer: Timer },
    /// Something the application was waiting for arrived (a block body, a
    /// committed parent): retry what waited on it.
    Wake,
}

/// A message whose signatures were checked against an engine's validator
/// set and namespace ([`Engine::verify`]); only the engine makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    message: Message,
}

impl Verified {
    pub fn message(&self) -> &Message {
        &self.message
    }
}

/// What [`Engine::screen`] made of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Screened {
    /// Of another epoch: not checked (the engine takes only its own
    /// epoch's messages).
    OtherEpoch(Message),
    /// Could change nothing (counted already, or outside the window): not
    /// checked.
    Stale,
    /// New, and its signatures (or a certificate's quorum) fail.
    Invalid,
    /// New, and checked.
    Verified(Verified),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Persist this vote durably before performing any later action.
    Persist(SignedVote),
    /// Send to every peer.
    Broadcast(Message),
    /// Call back with [`Input::Timer`] after this long.
    ScheduleTimer {
        view: View,
        timer: Timer,
        after_ms: u64,
    },
    /// A proposal was notarized (the application may prepare its successor).
    Notarized(Certificate),
    /// A proposal was finalized, with its ancestors back to the previous
    /// finalization (the application follows parent links).
    Finalized(Certificate),
    /// A validator signed two conflicting votes.
    Evidence(Evidence),
}

/// What is known of one view.
#[derive(Debug, Default)]
struct Round {
    /// The leader's proposal, the first seen.
    proposal: Option<Proposal>,
    /// The application's verdict on it.
    verified: Option<bool>,
    notarizes: BTreeMap<Hash, (Proposal, BTreeMap<ValidatorIndex, Signature>)>,
    nullifies: BTreeMap<ValidatorIndex, Signature>,
    finalizes: BTreeMap<Hash, (Proposal, BTreeMap<ValidatorIndex, Signature>)>,
    /// Every signer's votes in this view, to catch equivocation.
    seen: BTreeMap<ValidatorIndex, Vec<SignedVote>>,
    /// The notarized proposal (from a notarization or a finalization).
    notarized: Option<Proposal>,
    notarization: Option<Certificate>,
    nullification: Option<Certificate>,
    finalization: Option<Certificate>,
    relayed_proposal: bool,
    /// Signers already reported for equivocating in this view.
    reported: BTreeSet<ValidatorIndex>,
}

/// One validator's (or observer's) consensus state for one epoch.
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    key: Keypair,
    me: Option<ValidatorIndex>,
    set: ValidatorSet,
    genesis: Digest,
    genesis_height: u64,
    view: View,
    started: bool,
    last_finalized: View,
    last_finalized_proposal: Option<Proposal>,
    latest_finalization: Option<Certificate>,
    /// Views in a row that ended in a nullification (for the back-off).
    nullified_streak: u32,
    rounds: BTreeMap<View, Round>,
    guard: Guard,
    last_active: BTreeMap<ValidatorIndex, View>,
    /// The view moved on and its start (timers, proposal) is still to do.
    pending_enter: bool,
    out: Vec<Action>,
}

/// What the node hands a restarting engine.
///
/// The persisted votes and the message log need not grow without bound:
/// once a finalization is durable, entries of earlier epochs and of views
/// at or below the finalized one may be dropped (see
/// [`crate::guard::can_forget`] and the `guard` module's "Pruning").
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// Every vote this validator persisted (the double-sign record), less
    /// what the pruning rule allowed to drop.
    pub signed: Vec<SignedVote>,
    /// The latest finalization the node stored.
    pub finalization: Option<Certificate>,
}

impl Engine {
    /// An engine for `set`'s epoch, building on the block `genesis` (at
    /// `genesis_height`; view 0). After a restart, pass what was persisted
    /// in `recovered`, replay the message log as [`Input::Message`]s, then
    /// send [`Input::Start`]. A finalization that the recovered votes
    /// complete is reported by the first call to [`Engine::handle`].
    pub fn new(
        cfg: Config,
        key: Keypair,
        set: ValidatorSet,
        genesis: Digest,
        genesis_height: u64,
        recovered: Recovered,
    ) -> Engine {
        let me = set.index_of(&key.public());
        let mut e = Engine {
            cfg,
            key,
            me,
            set,
            genesis,
            genesis_height,
            view: 1,
            started: false,
            last_finalized: 0,
            last_finalized_proposal: None,
            latest_finalization: None,
            nullified_streak: 0,
            rounds: BTreeMap::new(),
            guard: Guard::default(),
            last_active: BTreeMap::new(),
            pending_enter: false,
            out: Vec::new(),
        };
        let epoch = e.set.epoch;
        if let Some(f) = recovered.finalization.filter(|f| f.vote.epoch() == epoch) {
            e.on_finalization(f);
        }
        // Our own persisted votes count as received (they may never have
        // been sent; Start sends them again). Other epochs' are not ours here.
        e.guard = Guard::from_votes(
            recovered
                .signed
                .iter()
                .filter(|v| v.vote.epoch() == epoch)
                .cloned(),
        );
        for v in recovered.signed.iter().filter(|v| v.vote.epoch() == epoch) {
            if v.vote.view() > e.last_finalized {
                e.on_vote(v, false);
            }
        }
        // Actions found while recovering (a finalization formed by our own
        // persisted votes, evidence) are returned by the first `handle`.
        e.out
            .retain(|a| matches!(a, Action::Finalized(_) | Action::Evidence(_)));
        e
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn epoch(&self) -> Epoch {
        self.set.epoch
    }

    pub fn last_finalized(&self) -> View {
        self.last_finalized
    }

    pub fn validator_set(&self) -> &ValidatorSet {
        &self.set
    }

    /// Our index in the set, if we are a validator (else an observer).
    pub fn me(&self) -> Option<ValidatorIndex> {
        self.me
    }

    /// Handles one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input, app: &mut dyn Application) -> Vec<Action> {
        match input {
            Input::Start => {
                if !self.started {
                    self.started = true;
                    // Votes persisted before a restart may never have been
                    // sent: send them all (those of the current view are
                    // sent by enter_view).
                    let view = self.view;
                    let earlier: Vec<SignedVote> = self
                        .guard
                        .all()
                        .filter(|v| v.vote.view() > self.last_finalized && v.vote.view() < view)
                        .cloned()
                        .collect();
                    for v in earlier {
                        self.out.push(Action::Broadcast(Message::Vote(v)));
                    }
                    self.enter_view(app);
                    self.progress(app);
                }
            }
            Input::Message(m) => {
                if let Screened::Verified(v) = self.screen(m) {
                    self.on_message(v.message, app);
                }
            }
            Input::Verified(v) => {
                // Checked against this very set: an epoch's set never
                // changes, so a message of this epoch stays checked.
                if v.message.epoch() == self.set.epoch && self.is_new(&v.message) {
                    self.on_message(v.message, app);
                }
            }
            Input::Timer { view, timer } => self.on_timer(view, timer, app),
            Input::Wake => self.progress(app),
        }
        std::mem::take(&mut self.out)
    }

    /// Checks `m`'s signatures (and a certificate's quorum) against this
    /// engine's validator set and namespace.
    pub fn verify(&self, m: Message) -> crate::Result<Verified> {
        match &m {
            Message::Vote(v) => v.verify(&self.set, &self.cfg.namespace)?,
            Message::Certificate(c) => c.verify(&self.set, &self.cfg.namespace)?,
        }
        Ok(Verified { message: m })
    }

    /// What a peer's message is to this engine, before anything is done
    /// with it: only a new message of this epoch has its signatures
    /// checked. The node judges gossip with it (what to log and relay).
    pub fn screen(&self, m: Message) -> Screened {
        if m.epoch() != self.set.epoch {
            return Screened::OtherEpoch(m);
        }
        if !self.is_new(&m) {
            return Screened::Stale;
        }
        match self.verify(m) {
            Ok(v) => Screened::Verified(v),
            Err(_) => Screened::Invalid,
        }
    }

    /// A new message whose signatures are checked.
    fn on_message(&mut self, m: Message, app: &mut dyn Application) {
        match m {
            Message::Vote(v) => self.on_vote(&v, true),
            Message::Certificate(c) => self.on_certificate(c),
        }
        self.progress(app);
    }

    /// Whether `m` could change anything here: a vote in the window not
    /// counted yet, or a certificate in the window we lack. Cheap (no
    /// signature is checked), for skipping what a peer relays again.
    pub fn is_new(&self, m: &Message) -> bool {
        match m {
            Message::Vote(v) => self.accept_view(v.vote.view()) && !self.already_counted(v),
            Message::Certificate(c) => self.certificate_is_new(c),
        }
    }

    fn certificate_is_new(&self, c: &Certificate) -> bool {
        let in_window = self.accept_view(c.view())
            || (c.kind() == VoteKind::Finalize && c.view() > self.last_finalized);
        in_window && !self.has_certificate(c)
    }

    fn accept_view(&self, view: View) -> bool {
        view > self.last_finalized && view <= self.view.saturating_add(self.cfg.max_future_views)
    }

    /// Whether this very signed vote (signer, vote and signature) was
    /// verified and counted already: copies relayed by other validators
    /// change nothing and need no second signature check.
    fn already_counted(&self, v: &SignedVote) -> bool {
        self.rounds
            .get(&v.vote.view())
            .and_then(|r| r.seen.get(&v.signer))
            .is_some_and(|seen| seen.contains(v))
    }

    fn has_certificate(&self, c: &Certificate) -> bool {
        let Some(r) = self.rounds.get(&c.view()) else {
            return false;
        };
        match c.kind() {
            VoteKind::Notarize => r.notarization.is_some(),
            VoteKind::Nullify => r.nullification.is_some(),
            VoteKind::Finalize => r.finalization.is_some(),
        }
    }

    /// Records a verified vote: equivocation check, then the tally.
    fn on_vote(&mut self, sv: &SignedVote, relay: bool) {
        let view = sv.vote.view();
        let signer = sv.signer;
        let leader = self.set.leader(view);
        let active = self.last_active.entry(signer).or_insert(0);
        *active = (*active).max(view);
        let round = self.rounds.entry(view).or_default();
        let earlier = round.seen.entry(signer).or_default();
        if earlier.iter().any(|e| e.vote == sv.vote) {
            return;
        }
        // One vote of each kind per signer and view is counted; a second,
        // different one is equivocation: reported once, then dropped, so a
        // byzantine signer cannot make us store unbounded votes.
        if let Some(first) = earlier.iter().find(|e| e.vote.conflicts_with(&sv.vote)) {
            if round.reported.insert(signer) {
                self.out.push(Action::Evidence(Evidence {
                    first: first.clone(),
                    second: sv.clone(),
                }));
            }
            return;
        }
        if earlier.iter().any(|e| e.vote.kind() == sv.vote.kind()) {
            return;
        }
        earlier.push(sv.clone());
        match &sv.vote {
            Vote::Notarize(p) => {
                // [S2] The leader's own notarize vote is its proposal
                // (DEPARTURE (D3): proposal and vote are one message).
                if signer == leader && round.proposal.is_none() {
                    round.proposal = Some(p.clone());
                    if relay && self.started && !round.relayed_proposal && Some(signer) != self.me {
                        // DEPARTURE (D8): pass the proposal on once, for
                        // lossy links (the paper assumes delivery in Δ).
                        round.relayed_proposal = true;
                        self.out.push(Action::Broadcast(Message::Vote(sv.clone())));
                    }
                }
                let entry = round
                    .notarizes
                    .entry(p.id())
                    .or_insert_with(|| (p.clone(), BTreeMap::new()));
                entry.1.insert(signer, sv.signature);
            }
            Vote::Nullify { .. } => {
                round.nullifies.insert(signer, sv.signature);
            }
            Vote::Finalize(p) => {
                let entry = round
                    .finalizes
                    .entry(p.id())
                    .or_insert_with(|| (p.clone(), BTreeMap::new()));
                entry.1.insert(signer, sv.signature);
            }
        }
        self.check_quorums(view);
    }

    /// Forms certificates from tallies that reached a quorum.
    fn check_quorums(&mut self, view: View) {
        let Some(round) = self.rounds.get(&view) else {
            return;
        };
        let mut formed = Vec::new();
        if round.notarization.is_none() {
            for (p, sigs) in round.notarizes.values() {
                if self.set.is_quorum(self.set.power_of(sigs.keys())) {
                    formed.push(Certificate::from_votes(Vote::Notarize(p.clone()), sigs));
                    break;
                }
            }
        }
        if round.nullification.is_none()
            && self
                .set
                .is_quorum(self.set.power_of(round.nullifies.keys()))
        {
            let vote = Vote::Nullify {
                epoch: self.set.epoch,
                view,
            };
            formed.push(Certificate::from_votes(vote, &round.nullifies));
        }
        if round.finalization.is_none() {
            for (p, sigs) in round.finalizes.values() {
                if self.set.is_quorum(self.set.power_of(sigs.keys())) {
                    formed.push(Certificate::from_votes(Vote::Finalize(p.clone()), sigs));
                    break;
                }
            }
        }
        for c in formed {
            self.on_certificate(c);
        }
    }

    fn on_certificate(&mut self, c: Certificate) {
        match c.kind() {
            VoteKind::Notarize => self.on_notarization(c),
            VoteKind::Nullify => self.on_nullification(c),
            VoteKind::Finalize => self.on_finalization(c),
        }
    }

    /// [S4] A notarized block for view v: move to v+1. The `finalize` it
    /// earns is sent by [`Engine::finalize_notarized`] (DEPARTURE (D5)).
    fn on_notarization(&mut self, c: Certificate) {
        let view = c.view();
        let Some(p) = c.vote.proposal().cloned() else {
            return;
        };
        let round = self.rounds.entry(view).or_default();
        if round.notarization.is_some() {
            return;
        }
        round.notarization = Some(c.clone());
        round.notarized.get_or_insert(p);
        if self.started {
            self.out.push(Action::Notarized(c.clone()));
            self.out.push(Action::Broadcast(Message::Certificate(c)));
        }
        if view >= self.view {
            self.nullified_streak = 0;
            self.view = view + 1;
            self.pending_enter = true;
        }
    }

    /// [S4] A notarized dummy block (nullification) for view v: move to v+1.
    fn on_nullification(&mut self, c: Certificate) {
        let view = c.view();
        let round = self.rounds.entry(view).or_default();
        if round.nullification.is_some() {
            return;
        }
        round.nullification = Some(c.clone());
        if self.started {
            self.out.push(Action::Broadcast(Message::Certificate(c)));
        }
        if view >= self.view {
            self.nullified_streak = self.nullified_streak.saturating_add(1);
            self.view = view + 1;
            self.pending_enter = true;
        }
    }

    /// [S5] A finalized block: it and its ancestors are final.
    fn on_finalization(&mut self, c: Certificate) {
        let view = c.view();
        let Some(p) = c.vote.proposal().cloned() else {
            return;
        };
        let round = self.rounds.entry(view).or_default();
        if round.finalization.is_some() {
            return;
        }
        round.finalization = Some(c.clone());
        round.notarized.get_or_insert(p.clone());
        if view > self.last_finalized {
            self.last_finalized = view;
            self.last_finalized_proposal = Some(p);
            self.latest_finalization = Some(c.clone());
            self.out.push(Action::Finalized(c.clone()));
            if self.started {
                self.out.push(Action::Broadcast(Message::Certificate(c)));
            }
            // Nothing at or below a finalized view can matter again.
            self.rounds = self.rounds.split_off(&view);
            self.guard.prune_below(view);
        }
        if view >= self.view {
            self.nullified_streak = 0;
            self.view = view + 1;
            self.pending_enter = true;
        }
    }
}

impl Engine {
    /// After any change: sign what is now due and start a new view if we
    /// moved, until nothing more follows.
    fn progress(&mut self, app: &mut dyn Application) {
        if !self.started {
            self.pending_enter = false;
            return;
        }
        for _ in 0..64 {
            let mut changed = self.finalize_notarized();
            if self.pending_enter {
                self.enter_view(app);
                changed = true;
            }
            changed |= self.try_vote(app);
            if !changed {
                break;
            }
        }
    }

    /// [S4] Sends `finalize` for every notarized view after the last
    /// finalized one that we did not nullify and have not finalized yet.
    ///
    /// DEPARTURE (D5): S4 says "if `T_h` has not fired", and only on the
    /// move from `h` to `h + 1`. Our `nullify` has more causes than the
    /// timer (an invalid proposal, D4; a skipped leader, D7), and safety
    /// needs exactly "never `finalize` a view we nullified" (the guard
    /// refuses it too), so that is the condition. A view notarized after we
    /// left it (its notarization came late, after a nullification) is
    /// finalized too if we did not nullify it: the paper never sends that
    /// `finalize`, and it is what lets such a block become final.
    fn finalize_notarized(&mut self) -> bool {
        if self.me.is_none() {
            return false;
        }
        let due: Vec<Proposal> = self
            .rounds
            .iter()
            .filter(|(v, _)| **v > self.last_finalized)
            .filter_map(|(v, r)| {
                let p = r.notarized.clone()?;
                let nullified = self.guard.has(*v, |x| matches!(x, Vote::Nullify { .. }));
                let finalized = self.guard.has(*v, |x| matches!(x, Vote::Finalize(_)));
                (!nullified && !finalized).then_some(p)
            })
            .collect();
        let any = !due.is_empty();
        for p in due {
            self.sign_and_send(Vote::Finalize(p));
        }
        any
    }

    /// [S1] Entering a view: arm its timer; the leader arms its proposal.
    fn enter_view(&mut self, _app: &mut dyn Application) {
        self.pending_enter = false;
        let view = self.view;
        let leader = self.set.leader(view);
        // Our own votes signed before a restart are sent again.
        for v in self.guard.votes_in(view).to_vec() {
            self.out.push(Action::Broadcast(Message::Vote(v)));
        }
        // DEPARTURE (D7): a leader not heard from in many views is presumed
        // down, and its view is nullified at once (a 0 ms timer).
        let presumed_down = Some(leader) != self.me && {
            let last = self.last_active.get(&leader).copied().unwrap_or(0);
            view > self.cfg.skip_inactive_leader_views
                && last + self.cfg.skip_inactive_leader_views < view
        };
        let after_ms = if presumed_down { 0 } else { self.timeout_ms() };
        self.out.push(Action::ScheduleTimer {
            view,
            timer: Timer::View,
            after_ms,
        });
        if Some(leader) == self.me {
            self.out.push(Action::ScheduleTimer {
                view,
                timer: Timer::Propose,
                after_ms: self.cfg.propose_delay_ms,
            });
        }
    }

    /// The view timeout, doubled for each nullified view in a row, capped.
    /// DEPARTURE (D6): S1's timer is a fixed `3Δ`; `Δ` is unknown here.
    fn timeout_ms(&self) -> u64 {
        let base = self.cfg.view_timeout_ms.max(1);
        let factor = 1u64 << self.nullified_streak.min(16);
        base.saturating_mul(factor)
            .min(self.cfg.max_view_timeout_ms.max(base))
    }

    fn on_timer(&mut self, view: View, timer: Timer, app: &mut dyn Application) {
        if !self.started || view != self.view {
            return;
        }
        match timer {
            Timer::Propose => self.propose(app),
            Timer::View => {
                // DEPARTURE (D8): rebroadcast what lets others catch up:
                // our earlier votes in this view, the certificates since
                // the last finalization, and the latest finalization.
                let earlier = self.guard.votes_in(view).to_vec();
                // [S3] The timer fired: nullify the view (unless we already
                // finalized it, which cannot happen in the current view).
                if self.me.is_some() {
                    self.sign_and_send(Vote::Nullify {
                        epoch: self.set.epoch,
                        view,
                    });
                }
                for v in earlier {
                    self.out.push(Action::Broadcast(Message::Vote(v)));
                }
                // Every certificate since the last finalization, newest
                // first: a peer that lost one cannot check proposals whose
                // ancestry runs through it.
                for c in self.recent_certificates(view) {
                    self.out.push(Action::Broadcast(Message::Certificate(c)));
                }
                if let Some(f) = self.latest_finalization.clone() {
                    self.out.push(Action::Broadcast(Message::Certificate(f)));
                }
                self.out.push(Action::ScheduleTimer {
                    view,
                    timer: Timer::View,
                    after_ms: self.timeout_ms(),
                });
            }
        }
        self.progress(app);
    }

    /// The notarization (or else nullification) of every view after the
    /// last finalized one and before `below`, newest first, at most
    /// [`MAX_REBROADCAST_CERTIFICATES`].
    fn recent_certificates(&self, below: View) -> Vec<Certificate> {
        let from = self.last_finalized + 1;
        if below <= from {
            return Vec::new();
        }
        self.rounds
            .range(from..below)
            .rev()
            .filter_map(|(_, r)| r.notarization.clone().or_else(|| r.nullification.clone()))
            .take(MAX_REBROADCAST_CERTIFICATES)
            .collect()
    }

    /// What a peer at `view` needs from us to get where we are: our latest
    /// finalization, the certificates of the views since it (newest first,
    /// bounded), and our own votes of `view` and later. Served on request
    /// (the node's block sync), so a validator that lost gossip messages
    /// catches up over a direct request instead of waiting for gossip to
    /// deliver a rebroadcast; votes and certificates carry their own
    /// signatures, so it does not matter who relays them.
    pub fn catch_up(&self, view: View) -> Vec<Message> {
        let mut out: Vec<Message> = self
            .latest_finalization
            .iter()
            .cloned()
            .map(Message::Certificate)
            .collect();
        out.extend(
            self.recent_certificates(self.view.saturating_add(1))
                .into_iter()
                .map(Message::Certificate),
        );
        let from = view.max(self.last_finalized + 1);
        if from <= self.view {
            for v in (from..=self.view).rev().take(MAX_CATCH_UP_VOTE_VIEWS) {
                out.extend(self.guard.votes_in(v).iter().cloned().map(Message::Vote));
            }
        }
        out
    }

    /// The block a proposal in `view` must extend: the latest notarized
    /// view before it such that every view in between is nullified, or the
    /// last finalized view. `None` if a view in between is undecided for us.
    /// This is S1's "notarized blockchain of length `h - 1`", with the
    /// nullified views as its dummy blocks (DEPARTURE (D2): only the
    /// parent's view and digest go into the proposal).
    fn parent_for(&self, view: View) -> Option<(View, Digest, u64)> {
        let mut v = view - 1;
        while v > self.last_finalized {
            let r = self.rounds.get(&v)?;
            if let Some(p) = &r.notarized {
                return Some((v, p.payload, p.height));
            }
            r.nullification.as_ref()?;
            v -= 1;
        }
        Some(self.finalized_tip())
    }

    /// The last finalized block as (view, digest, height).
    fn finalized_tip(&self) -> (View, Digest, u64) {
        match &self.last_finalized_proposal {
            Some(p) => (p.view, p.payload, p.height),
            None => (0, self.genesis, self.genesis_height),
        }
    }

    /// [S1] The leader proposes a block on the notarized chain; the
    /// proposal is its `notarize` vote (DEPARTURE (D3)).
    fn propose(&mut self, app: &mut dyn Application) {
        let view = self.view;
        if self.me.is_none() || Some(self.set.leader(view)) != self.me {
            return;
        }
        if self.guard.has(view, |v| {
            matches!(v, Vote::Notarize(_) | Vote::Nullify { .. })
        }) {
            return; // proposed (or gave up) before a restart; Start resent it
        }
        let Some((parent_view, parent, parent_height)) = self.parent_for(view) else {
            // A certificate on the way to the parent is missing: try again.
            self.out.push(Action::ScheduleTimer {
                view,
                timer: Timer::Propose,
                after_ms: self.cfg.propose_retry_ms.max(1),
            });
            return;
        };
        let Some(payload) = app.propose(view, parent, parent_height) else {
            self.out.push(Action::ScheduleTimer {
                view,
                timer: Timer::Propose,
                after_ms: self.cfg.propose_retry_ms.max(1),
            });
            return;
        };
        let p = Proposal {
            epoch: self.set.epoch,
            view,
            parent_view,
            parent,
            height: parent_height + 1,
            payload,
        };
        let round = self.rounds.entry(view).or_default();
        round.verified = Some(true);
        self.sign_and_send(Vote::Notarize(p));
    }

    /// [S2] Votes for the leader's proposal in the current view once its
    /// ancestry is known: its parent notarized (or the last finalized
    /// block) and every view in between nullified (DEPARTURE (D2): the
    /// certificates are gathered, not carried by the proposal). An invalid
    /// proposal is answered with `nullify` (DEPARTURE (D4)). Returns
    /// whether it signed anything.
    fn try_vote(&mut self, app: &mut dyn Application) -> bool {
        let view = self.view;
        if self.me.is_none()
            || self.guard.has(view, |v| {
                matches!(v, Vote::Notarize(_) | Vote::Nullify { .. })
            })
        {
            return false;
        }
        let Some(round) = self.rounds.get(&view) else {
            return false;
        };
        let Some(p) = round.proposal.clone() else {
            return false;
        };
        if round.verified == Some(false) {
            return false;
        }
        let valid = match self.ancestry(&p) {
            Ancestry::Unknown => return false,
            Ancestry::Invalid => false,
            Ancestry::Valid => match round.verified {
                Some(v) => v,
                None => match app.verify(&p) {
                    Verdict::Valid => true,
                    Verdict::Invalid => false,
                    Verdict::Later => return false,
                },
            },
        };
        if let Some(r) = self.rounds.get_mut(&view) {
            r.verified = Some(valid);
        }
        if valid {
            self.sign_and_send(Vote::Notarize(p));
        } else {
            // DEPARTURE (D4): S2 would ignore an invalid proposal and wait
            // for `T_h`; with our vote the view cannot be notarized anyway,
            // so nullify now and let the view end one hop later instead of
            // after a timeout. Safe: a nullify only rules out our own
            // finalize of this view, and the guard enforces that.
            self.sign_and_send(Vote::Nullify {
                epoch: self.set.epoch,
                view,
            });
        }
        true
    }

    fn ancestry(&self, p: &Proposal) -> Ancestry {
        if p.epoch != self.set.epoch
            || p.parent_view >= p.view
            || p.parent_view < self.last_finalized
        {
            return Ancestry::Invalid;
        }
        let (f_view, f_digest, f_height) = self.finalized_tip();
        let (parent_digest, parent_height) = if p.parent_view == f_view {
            (f_digest, f_height)
        } else {
            match self
                .rounds
                .get(&p.parent_view)
                .and_then(|r| r.notarized.as_ref())
            {
                Some(n) => (n.payload, n.height),
                None => return Ancestry::Unknown,
            }
        };
        if parent_digest != p.parent || parent_height.checked_add(1) != Some(p.height) {
            return Ancestry::Invalid;
        }
        for v in p.parent_view + 1..p.view {
            match self.rounds.get(&v) {
                Some(r) if r.nullification.is_some() => {}
                _ => return Ancestry::Unknown,
            }
        }
        Ancestry::Valid
    }

    /// Signs `vote` if the guard permits, persisting before sending.
    fn sign_and_send(&mut self, vote: Vote) {
        let Some(me) = self.me else {
            return;
        };
        let signed = match self.guard.permit(&vote) {
            Permit::Conflicts(_) => return,
            Permit::AlreadySigned(sv) => {
                self.out.push(Action::Broadcast(Message::Vote(sv)));
                return;
            }
            Permit::Fresh => SignedVote {
                signature: self.key.sign(&vote.signing_digest(&self.cfg.namespace)),
                vote,
                signer: me,
            },
        };
        self.guard.record(signed.clone());
        self.out.push(Action::Persist(signed.clone()));
        self.out
            .push(Action::Broadcast(Message::Vote(signed.clone())));
        self.on_vote(&signed, false);
    }
}

enum Ancestry {
    Valid,
    Invalid,
    /// A certificate it depends on has not reached us yet.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Idle;

    impl Application for Idle {
        fn propose(&mut self, _: View, _: Digest, _: u64) -> Option<Digest> {
            None
        }
        fn verify(&mut self, _: &Proposal) -> Verdict {
            Verdict::Later
        }
    }

    fn key(i: u32) -> Keypair {
        Keypair::derive_insecure(7, &format!("validator-{i}"))
    }

    /// Validator 0's engine in a set of four equal validators of `epoch`.
    fn engine(epoch: Epoch) -> Engine {
        let set = ValidatorSet::new(epoch, (0..4).map(|i| (key(i).public(), 1)).collect());
        let cfg = Config::new(b"test-chain".to_vec());
        Engine::new(cfg, key(0), set, Hash::ZERO, 0, Recovered::default())
    }

    fn nullify(epoch: Epoch, signer: u32, namespace: &[u8]) -> Message {
        let vote = Vote::Nullify { epoch, view: 1 };
        Message::Vote(SignedVote {
            signature: key(signer).sign(&vote.signing_digest(namespace)),
            vote,
            signer: signer as ValidatorIndex,
        })
    }

    fn nullified(actions: &[Action]) -> bool {
        actions.iter().any(|a| {
            matches!(a, Action::Broadcast(Message::Certificate(c))
                if c.kind() == VoteKind::Nullify && c.view() == 1)
        })
    }

    #[test]
    fn only_a_validly_signed_message_is_verified() {
        let e = engine(0);
        assert!(e.verify(nullify(0, 1, b"test-chain")).is_ok());
        // Signed for another chain, by another validator than it names, or
        // for another epoch than the engine's.
        assert!(e.verify(nullify(0, 1, b"other-chain")).is_err());
        let Message::Vote(mut v) = nullify(0, 1, b"test-chain") else {
            unreachable!()
        };
        v.signer = 2;
        assert!(e.verify(Message::Vote(v)).is_err());
        assert!(e.verify(nullify(1, 1, b"test-chain")).is_err());
    }

    #[test]
    fn screening_checks_only_new_messages_of_the_engines_epoch() {
        let mut e = engine(0);
        e.handle(Input::Start, &mut Idle);
        let vote = nullify(0, 1, b"test-chain");
        let Screened::Verified(v) = e.screen(vote.clone()) else {
            panic!("a new, validly signed vote is verified")
        };
        e.handle(Input::Verified(v), &mut Idle);
        assert_eq!(e.screen(vote), Screened::Stale, "counted already");
        let other = nullify(1, 2, b"test-chain");
        assert_eq!(e.screen(other.clone()), Screened::OtherEpoch(other));
        assert_eq!(e.screen(nullify(0, 2, b"other-chain")), Screened::Invalid);
    }

    /// Validators 1 to 3's nullify votes of `epoch` (view 1), as
    /// `verifier` checked them.
    fn verified_nullifies(verifier: &Engine, epoch: Epoch) -> Vec<Verified> {
        (1..4)
            .map(|signer| {
                verifier
                    .verify(nullify(epoch, signer, b"test-chain"))
                    .unwrap()
            })
            .collect()
    }

    /// Starts `e` and hands it `votes` as verified; returns what it did.
    fn start_and_feed(e: &mut Engine, votes: Vec<Verified>) -> Vec<Action> {
        let mut actions = e.handle(Input::Start, &mut Idle);
        for v in votes {
            actions.extend(e.handle(Input::Verified(v), &mut Idle));
        }
        actions
    }

    #[test]
    fn verified_messages_count_as_messages_do() {
        let mut e = engine(0);
        let votes = verified_nullifies(&e, 0);
        let actions = start_and_feed(&mut e, votes);
        assert!(
            nullified(&actions),
            "three verified nullify votes: {actions:?}"
        );
    }

    #[test]
    fn a_message_verified_for_another_epoch_is_not_taken_as_verified() {
        // Engine 1 (epoch 1) vouches for epoch-1 votes; engine 0 is in epoch
        // 0 and must not count them.
        let votes = verified_nullifies(&engine(1), 1);
        let mut e = engine(0);
        let actions = start_and_feed(&mut e, votes);
        assert!(!nullified(&actions), "{actions:?}");
        assert_eq!(e.rounds.get(&1).map_or(0, |r| r.seen.len()), 0);
    }
}
