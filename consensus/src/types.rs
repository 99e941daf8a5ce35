//! Consensus messages: proposals, votes, certificates and equivocation
//! evidence, with their signing rules, and the validator set they are
//! checked against.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use sou_types::codec::encode;
use sou_types::{Hash, PublicKey, Signature};

use crate::{Error, Result};

/// A consensus view (a Simplex iteration). View 0 is the genesis.
pub type View = u64;
/// An epoch: one validator set.
pub type Epoch = u64;
/// The digest of a block: consensus orders digests and never sees contents.
pub type Digest = Hash;

/// Domain of vote signatures.
const VOTE_CONTEXT: &str = "sou consensus vote v1";

/// A validator's place in its epoch's set.
pub type ValidatorIndex = u32;

/// The validators of an epoch, ordered; votes name validators by index.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ValidatorSet {
    pub epoch: Epoch,
    pub validators: Vec<(PublicKey, u64)>,
}

impl ValidatorSet {
    pub fn new(epoch: Epoch, validators: Vec<(PublicKey, u64)>) -> ValidatorSet {
        ValidatorSet { epoch, validators }
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    pub fn total_power(&self) -> u128 {
        self.validators.iter().map(|(_, p)| u128::from(*p)).sum()
    }

    pub fn key(&self, index: ValidatorIndex) -> Option<&PublicKey> {
        self.validators.get(index as usize).map(|(k, _)| k)
    }

    pub fn power(&self, index: ValidatorIndex) -> u64 {
        self.validators.get(index as usize).map_or(0, |(_, p)| *p)
    }

    pub fn index_of(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.validators
            .iter()
            .position(|(k, _)| k == key)
            .map(|i| i as ValidatorIndex)
    }

    /// Whether `power` is a quorum: strictly more than two thirds of the
    /// total (Simplex counts `2n/3` of `n` equal players; departure D9 of
    /// `engine`). Any two quorums then share more than a third of the
    /// stake, hence an honest validator while byzantine stake is below a
    /// third.
    pub fn is_quorum(&self, power: u128) -> bool {
        power * 3 > self.total_power() * 2
    }

    /// The power of a set of validator indexes (each counted once).
    pub fn power_of<'a>(&self, signers: impl IntoIterator<Item = &'a ValidatorIndex>) -> u128 {
        signers
            .into_iter()
            .map(|i| u128::from(self.power(*i)))
            .sum()
    }

    /// The leader of `view`: drawn with probability proportional to stake,
    /// from a hash of the epoch and view, so that every validator computes
    /// the same leader and the order cannot be steered. (Simplex draws
    /// `H*(h) mod n` among equal players; weighting by stake is departure
    /// D9 of `engine`.)
    pub fn leader(&self, view: View) -> ValidatorIndex {
        let total = self.total_power();
        if total == 0 {
            return 0;
        }
        let mut h = Hash::hasher("sou consensus leader v1");
        h.update(&self.epoch.to_le_bytes());
        h.update(&view.to_le_bytes());
        let bytes = h.finalize();
        let mut wide = [0u8; 16];
        wide.copy_from_slice(&bytes.as_bytes()[..16]);
        let mut point = u128::from_le_bytes(wide) % total;
        for (i, (_, p)) in self.validators.iter().enumerate() {
            let p = u128::from(*p);
            if point < p {
                return i as ValidatorIndex;
            }
            point -= p;
        }
        0
    }
}

/// A block proposed in a view, on a parent notarized in an earlier view;
/// every view between them must have been nullified.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub epoch: Epoch,
    pub view: View,
    pub parent_view: View,
    pub parent: Digest,
    /// The block's height, for the application's checks.
    pub height: u64,
    pub payload: Digest,
}

impl Proposal {
    /// Names the proposal: votes for the same proposal count together.
    pub fn id(&self) -> Hash {
        Hash::domain("sou consensus proposal v1", &encode(self))
    }
}

/// What a validator signs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum Vote {
    /// "This proposal is valid and the first I saw from the leader of its view."
    Notarize(Proposal),
    /// "Nothing will be notarized in this view as far as I am concerned" (a timeout).
    Nullify { epoch: Epoch, view: View },
    /// "This proposal was notarized and I did not nullify its view." (The
    /// paper's `⟨finalize, h⟩` names only the iteration; naming the proposal
    /// makes a finalization certificate a proof of the block on its own:
    /// departure D1 of `engine`.)
    Finalize(Proposal),
}

impl Vote {
    pub fn view(&self) -> View {
        match self {
            Vote::Notarize(p) | Vote::Finalize(p) => p.view,
            Vote::Nullify { view, .. } => *view,
        }
    }

    pub fn epoch(&self) -> Epoch {
        match self {
            Vote::Notarize(p) | Vote::Finalize(p) => p.epoch,
            Vote::Nullify { epoch, .. } => *epoch,
        }
    }

    pub fn proposal(&self) -> Option<&Proposal> {
        match self {
            Vote::Notarize(p) | Vote::Finalize(p) => Some(p),
            Vote::Nullify { .. } => None,
        }
    }

    pub fn kind(&self) -> VoteKind {
        match self {
            Vote::Notarize(_) => VoteKind::Notarize,
            Vote::Nullify { .. } => VoteKind::Nullify,
            Vote::Finalize(_) => VoteKind::Finalize,
        }
    }

    /// The message that is signed: the vote in its own domain, under the
    /// chain's namespace, so a vote can never be replayed on another chain
    /// or as another kind of signature.
    pub fn signing_digest(&self, namespace: &[u8]) -> Hash {
        let mut h = Hash::hasher(VOTE_CONTEXT);
        h.update(&(namespace.len() as u32).to_le_bytes());
        h.update(namespace);
        h.update(&encode(self));
        Hash::from_hasher(&h)
    }

    /// Whether signing both `self` and `other` (same view) is equivocation.
    pub fn conflicts_with(&self, other: &Vote) -> bool {
        if self.view() != other.view() || self.epoch() != other.epoch() {
            return false;
        }
        match (self, other) {
            (Vote::Notarize(a), Vote::Notarize(b)) | (Vote::Finalize(a), Vote::Finalize(b)) => {
                a != b
            }
            (Vote::Nullify { .. }, Vote::Finalize(_))
            | (Vote::Finalize(_), Vote::Nullify { .. }) => true,
            _ => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum VoteKind {
    Notarize,
    Nullify,
    Finalize,
}

/// A vote with its signer and signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedVote {
    pub vote: Vote,
    pub signer: ValidatorIndex,
    pub signature: Signature,
}

impl SignedVote {
    pub fn verify(&self, set: &ValidatorSet, namespace: &[u8]) -> Result<()> {
        if self.vote.epoch() != set.epoch {
            return Err(Error::WrongEpoch {
                got: self.vote.epoch(),
                expected: set.epoch,
            });
        }
        let key = set
            .key(self.signer)
            .ok_or(Error::UnknownSigner(self.signer))?;
        key.verify(&self.vote.signing_digest(namespace), &self.signature)
            .map_err(|_| Error::BadSignature(self.signer))
    }
}

/// A quorum of signatures over one vote: a notarization, nullification or
/// finalization. Anyone holding the validator set can check it on its own.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Certificate {
    pub vote: Vote,
    /// Signatures by validator index, ascending, no repeats.
    pub signatures: Vec<(ValidatorIndex, Signature)>,
}

impl Certificate {
    pub fn view(&self) -> View {
        self.vote.view()
    }

    pub fn kind(&self) -> VoteKind {
        self.vote.kind()
    }

    pub(crate) fn from_votes(
        vote: Vote,
        sigs: &BTreeMap<ValidatorIndex, Signature>,
    ) -> Certificate {
        Certificate {
            vote,
            signatures: sigs.iter().map(|(i, s)| (*i, *s)).collect(),
        }
    }

    /// Checks that the signers are distinct members holding a quorum of the
    /// set's power and that every signature is valid.
    pub fn verify(&self, set: &ValidatorSet, namespace: &[u8]) -> Result<()> {
        if self.vote.epoch() != set.epoch {
            return Err(Error::WrongEpoch {
                got: self.vote.epoch(),
                expected: set.epoch,
            });
        }
        let mut last: Option<ValidatorIndex> = None;
        for (i, _) in &self.signatures {
            if last.is_some_and(|l| *i <= l) {
                return Err(Error::MalformedCertificate("signers not ascending".into()));
            }
            if set.key(*i).is_none() {
                return Err(Error::UnknownSigner(*i));
            }
            last = Some(*i);
        }
        let power = set.power_of(self.signatures.iter().map(|(i, _)| i));
        if !set.is_quorum(power) {
            return Err(Error::NoQuorum {
                power,
                total: set.total_power(),
            });
        }
        let digest = self.vote.signing_digest(namespace);
        let items: Vec<_> = self
            .signatures
            .iter()
            .filter_map(|(i, s)| set.key(*i).map(|k| (*k, digest, *s)))
            .collect();
        let ok = sou_types::crypto::verify_batch(&items);
        if let Some(pos) = ok.iter().position(|v| !v) {
            return Err(Error::BadSignature(self.signatures[pos].0));
        }
        Ok(())
    }
}

/// Two signed votes by one validator for one view that an honest validator
/// never signs together: the proof that slashes it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Evidence {
    pub first: SignedVote,
    pub second: SignedVote,
}

impl Evidence {
    /// The offender's consensus key, if the evidence holds up.
    pub fn verify(&self, set: &ValidatorSet, namespace: &[u8]) -> Result<PublicKey> {
        if self.first.signer != self.second.signer {
            return Err(Error::MalformedEvidence(
                "votes by different validators".into(),
            ));
        }
        if !self.first.vote.conflicts_with(&self.second.vote) {
            return Err(Error::MalformedEvidence("the votes do not conflict".into()));
        }
        self.first.verify(set, namespace)?;
        self.second.verify(set, namespace)?;
        set.key(self.first.signer)
            .copied()
            .ok_or(Error::UnknownSigner(self.first.signer))
    }

    /// A stable name for the evidence (what the ledger records to slash once).
    pub fn id(&self) -> Hash {
        // Order-independent: the same pair found by two nodes in either order.
        let (a, b) = (encode(&self.first), encode(&self.second));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut h = Hash::hasher("sou consensus evidence v1");
        h.update(&lo);
        h.update(&hi);
        Hash::from_hasher(&h)
    }
}

/// What validators send each other.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Message {
    Vote(SignedVote),
    Certificate(Certificate),
}

impl Message {
    /// The epoch the message belongs to.
    pub fn epoch(&self) -> Epoch {
        match self {
            Message::Vote(v) => v.vote.epoch(),
            Message::Certificate(c) => c.vote.epoch(),
        }
    }

    /// The view the message is about.
    pub fn view(&self) -> View {
        match self {
            Message::Vote(v) => v.vote.view(),
            Message::Certificate(c) => c.view(),
        }
    }
}
