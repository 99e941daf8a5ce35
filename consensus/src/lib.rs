//! Sou's consensus: Simplex (Chan and Pass, TCC 2023) as a pure state
//! machine. Messages, timer firings and the application's answers go in;
//! actions (persist this vote, broadcast that, schedule a timer, this block
//! is final, this validator equivocated) come out. It orders block digests
//! and never sees transactions.
//!
//! It must stay pure: no async runtime, no sockets, no database, no clock.
//! The node runs it and performs its actions in order; [`sim`] runs many of
//! them in one process on a simulated network, reproducibly from a seed.
//!
//! See `README.md` for the choice of protocol and the safety argument.

pub mod engine;
pub mod guard;
pub mod sim;
pub mod types;

pub use engine::{
    Action, Application, Config, Engine, Input, Recovered, Screened, Timer, Verdict, Verified,
};
pub use guard::{Guard, Permit};
pub use types::{
    Certificate, Digest, Epoch, Evidence, Message, Proposal, SignedVote, ValidatorIndex,
    ValidatorSet, View, Vote, VoteKind,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("message for epoch {got}, this set is epoch {expected}")]
    WrongEpoch { got: Epoch, expected: Epoch },
    #[error("no validator with index {0}")]
    UnknownSigner(ValidatorIndex),
    #[error("bad signature by validator {0}")]
    BadSignature(ValidatorIndex),
    #[error("signers hold {power} of {total} power: not a quorum")]
    NoQuorum { power: u128, total: u128 },
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    #[error("malformed evidence: {0}")]
    MalformedEvidence(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
