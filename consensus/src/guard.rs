//! The double-sign guard: the rules that keep a validator from ever signing
//! two conflicting votes, even across crashes.
//!
//! The engine asks the guard before it signs anything. Every vote it signs
//! is first handed to the node as [`crate::Action::Persist`], which the node
//! must write durably (fsync) **before** it performs any later action, in
//! particular before the vote is broadcast. On restart the node gives the
//! engine every persisted vote, so the guard remembers what was signed even
//! if the crash came between signing and sending.
//!
//! Conflicts (an honest validator never signs both, for one view):
//! - two notarizes of different proposals,
//! - two finalizes of different proposals,
//! - a nullify and a finalize.
//!
//! # Pruning the durable record and the message log
//!
//! Neither needs to grow without bound. Once the node holds a finalization
//! for view `F` of epoch `e` **durably** (it is what [`crate::Recovered`]'s
//! `finalization` will hold after a crash), it may drop, from both the
//! persisted votes and the message log, every entry that [`can_forget`]
//! accepts:
//!
//! - entries of an epoch before the node's current one: that epoch's engine
//!   is never started again, and a later epoch's engine ignores them;
//! - entries of epoch `e` for views `<= F`: an engine recovered with that
//!   finalization starts at view `F + 1`, never signs anything for a view
//!   `<= F` (every vote it signs is for its current view or a notarized
//!   view above the last finalized one), and ignores messages for those
//!   views.
//!
//! The order matters: first make the finalization durable, then drop. A
//! vote for a view above `F` must be kept even if it looks stale: it is
//! what stops a restarted engine from signing a conflicting one.

use std::collections::BTreeMap;

use crate::types::{Epoch, SignedVote, View, Vote};

/// Whether a persisted vote or a logged message of (`epoch`, `view`) may be
/// dropped by a node now in `current_epoch` whose latest durable
/// finalization is `finalized` (its epoch and view). See the module
/// documentation for why this is safe.
pub fn can_forget(
    epoch: Epoch,
    view: View,
    current_epoch: Epoch,
    finalized: Option<(Epoch, View)>,
) -> bool {
    epoch < current_epoch || finalized.is_some_and(|(e, v)| e == epoch && view <= v)
}

/// What the guard says about a vote the engine wants to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Never signed, conflicts with nothing: sign it.
    Fresh,
    /// Signed already: send this copy again instead of signing anew.
    AlreadySigned(SignedVote),
    /// Would conflict with a signed vote: refuse.
    Conflicts(SignedVote),
}

/// This validator's signed votes, by view (only views not yet finalized
/// matter; older ones are pruned).
#[derive(Clone, Debug, Default)]
pub struct Guard {
    signed: BTreeMap<View, Vec<SignedVote>>,
}

impl Guard {
    /// A guard that remembers the given (persisted) votes.
    pub fn from_votes(votes: impl IntoIterator<Item = SignedVote>) -> Guard {
        let mut g = Guard::default();
        for v in votes {
            g.record(v);
        }
        g
    }

    pub fn permit(&self, vote: &Vote) -> Permit {
        for signed in self.signed.get(&vote.view()).into_iter().flatten() {
            if &signed.vote == vote {
                return Permit::AlreadySigned(signed.clone());
            }
            if signed.vote.conflicts_with(vote) {
                return Permit::Conflicts(signed.clone());
            }
        }
        Permit::Fresh
    }

    pub fn record(&mut self, vote: SignedVote) {
        let votes = self.signed.entry(vote.vote.view()).or_default();
        if !votes.iter().any(|v| v.vote == vote.vote) {
            votes.push(vote);
        }
    }

    /// Every recorded vote, by view.
    pub fn all(&self) -> impl Iterator<Item = &SignedVote> {
        self.signed.values().flatten()
    }

    pub fn votes_in(&self, view: View) -> &[SignedVote] {
        self.signed.get(&view).map_or(&[], Vec::as_slice)
    }

    pub fn has(&self, view: View, pred: impl Fn(&Vote) -> bool) -> bool {
        self.votes_in(view).iter().any(|v| pred(&v.vote))
    }

    /// The highest view this validator signed anything in.
    pub fn last_view(&self) -> Option<View> {
        self.signed.keys().next_back().copied()
    }

    /// Forgets views below `view` (they are finalized: nothing in them can
    /// be signed again).
    pub fn prune_below(&mut self, view: View) {
        self.signed = self.signed.split_off(&view);
    }
}
