//! Property tests over random blocks holding every kind of transaction,
//! valid and not (wrong signer for the role, bad nonce, wrong chain, bad
//! signature, expired, fee cap too low, replays, overflowing amounts, both
//! issued assets, the native token and an unknown asset), with evidence
//! that slashes validators, and validators jailed for downtime that ask to
//! return. After every block:
//!
//! - each asset's supply is what genesis, the block's successful mints and
//!   burns and (for the native token) its slashing made it, computed here
//!   from the pre-block state, and equals the sum of all balances;
//! - the bonded pool holds exactly the validators' tokens and the pending
//!   unbonding entries (plus whatever was sent to it);
//! - every transaction with a fault is left out for that fault's reason,
//!   every role-gated action by a key that does not hold the role fails for
//!   that reason, every included transaction paid the fee and used one nonce;
//! - the evidence the block holds is exactly the evidence the rules accept;
//! - the incremental state root equals a full recompute, and a second,
//!   fresh database fed the same block reaches the same root.
//!
//! At the end, every included transaction is replayed and refused.
//!
//! `PROPTEST_CASES` sets the number of cases (default [`DEFAULT_CASES`]).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sou_ledger::staking::epoch_of;
use sou_ledger::state::{bonded_pool, fee_collector, rewards_pool};
use sou_ledger::{Checks, InvalidTx, Params, TxStatus};
use sou_types::asset::NATIVE;
use sou_types::tx::Payouts;
use sou_types::{
    Address, Amount, ChainId, Hash, Keypair, Memo, Misbehaviour, Payload, Payout, PublicKey,
    SignedTransaction, Symbol, Transaction,
};

use crate::support::*;

const USERS: usize = 8;
/// Cases when `PROPTEST_CASES` is not set: about 10 s in the dev profile
/// on two idle cores, well under a minute on busy ones.
const DEFAULT_CASES: u32 = 96;
/// Keys that sign: the users, USDT's five role holders, EURC's five, the
/// two genesis validators, and a stranger with no balance at all.
const KEYS: usize = USERS + 5 + 5 + 2 + 1;
/// Positions in the keys of USDT's and EURC's genesis minters and of the
/// first genesis validator's operator.
const USDT_MINTER_KEY: usize = USERS + 4;
const EURC_MINTER_KEY: usize = USERS + 9;
const VALIDATOR_KEY: usize = USERS + 10;
/// Addresses that receive: every key's, and the three module accounts.
const TARGETS: usize = KEYS + 3;
/// Validators bonded to: the two genesis validators, then the users (who
/// may have registered), then the stranger (never registered).
const VALIDATOR_PICKS: usize = 2 + USERS + 1;
/// Most recipients of a batch here, so that the generator can exceed it.
const MAX_BATCH: u32 = 3;
/// A slashing fraction that does not divide evenly, so rounding is exercised.
const SLASH_PPM: u32 = 123_457;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn prop_params() -> Params {
    let mut p = params();
    p.max_batch_recipients = MAX_BATCH;
    p.max_validators = 4;
    p.slash_double_sign_ppm = SLASH_PPM;
    // Validators that do not propose are jailed for downtime (often: the
    // window is one proposal's worth of blocks) for two blocks, then may
    // unjail. Downtime slashes after the block's transactions, so its
    // amount cannot be computed from the pre-block state: it slashes
    // nothing here, and evidence is the slashing this test accounts for.
    p.downtime_missed_proposals = 1;
    p.slash_downtime_ppm = 0;
    p.downtime_jail_blocks = 2;
    // Short, so that unbonded stake is often withdrawn within a case.
    p.unbonding_period_blocks = 2;
    p
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AssetPick {
    Usdt,
    Eurc,
    Native,
    Unknown,
}

impl AssetPick {
    fn symbol(self) -> Symbol {
        match self {
            AssetPick::Usdt => usdt(),
            AssetPick::Eurc => eurc(),
            AssetPick::Native => NATIVE,
            AssetPick::Unknown => Symbol::new("XAU").unwrap(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Issuer,
    MasterMinter,
    Pauser,
    Freezer,
    Minter,
}

impl Role {
    /// The role's name in the ledger's error messages (`None`: minters,
    /// which are a list, not one holder).
    fn name(self) -> Option<&'static str> {
        match self {
            Role::Issuer => Some("issuer"),
            Role::MasterMinter => Some("master minter"),
            Role::Pauser => Some("pauser"),
            Role::Freezer => Some("freezer"),
            Role::Minter => None,
        }
    }

    fn holder(self, roles: &RoleKeys) -> &Keypair {
        match self {
            Role::Issuer => &roles.issuer,
            Role::MasterMinter => &roles.master_minter,
            Role::Pauser => &roles.pauser,
            Role::Freezer => &roles.freezer,
            Role::Minter => &roles.minter,
        }
    }
}

/// Who signs a role-gated action.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// The holder of the role (for the native token and the unknown asset,
    /// which have none, USDT's holder).
    Holder,
    /// Any key, the holder or not.
    Key(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: usize,
        asset: AssetPick,
        to: usize,
        amount: u128,
    },
    Batch {
        from: usize,
        asset: AssetPick,
        payouts: Vec<(usize, u128)>,
    },
    Mint {
        by: Who,
        asset: AssetPick,
        to: usize,
        amount: u128,
    },
    Burn {
        by: Who,
        asset: AssetPick,
        amount: u128,
    },
    ConfigureMinter {
        by: Who,
        asset: AssetPick,
        minter: usize,
        allowance: u128,
    },
    RemoveMinter {
        by: Who,
        asset: AssetPick,
        minter: usize,
    },
    Freeze {
        by: Who,
        asset: AssetPick,
        target: usize,
        /// `None`: the opposite of the committed state (unfreeze if frozen).
        on: Option<bool>,
    },
    Seize {
        by: Who,
        asset: AssetPick,
        target: usize,
    },
    Pause {
        by: Who,
        asset: AssetPick,
        /// `None`: the opposite of the committed state.
        on: Option<bool>,
    },
    Register {
        by: usize,
        /// 0..4: a fresh key; 4: genesis validator 0's key; 5: not a key.
        consensus: u8,
        commission_bps: u16,
    },
    Bond {
        by: usize,
        validator: usize,
        amount: u128,
    },
    Unbond {
        by: usize,
        validator: usize,
        amount: u128,
    },
    Withdraw {
        by: usize,
        validator: usize,
    },
    Claim {
        by: usize,
        validator: usize,
    },
    Unjail {
        by: usize,
    },
}

/// What is wrong with a transaction's envelope, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// A nonce far ahead of the next one.
    NonceGap,
    /// A nonce already used (or, for an account that has used none, one far
    /// ahead).
    NonceUsed,
    WrongChain,
    /// A signature with one bit flipped.
    BadSignature,
    /// Signed by another key than the sender's.
    WrongSigner,
    /// An expiry height below the block's height.
    Expired,
    /// A max fee below the fee.
    FeeTooLow,
    /// A transaction included in an earlier block, sent again.
    Replay(usize),
}

#[derive(Clone, Debug)]
struct BlockPlan {
    /// Which genesis validator proposes.
    proposer: usize,
    txs: Vec<(Op, Fault)>,
    /// (set member, evidence id, epoch offset from the block's epoch).
    evidence: Vec<(usize, u8, i8)>,
}

fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![
        3 => 0u128..1_000,
        3 => 0u128..=USER_USDT * 2,
        2 => 0u128..=USER_SOU * 2,
        1 => Just(u128::MAX),
        1 => (u128::MAX - 1_000)..=u128::MAX,
        1 => Just(1u128 << 127),
    ]
}

fn asset() -> impl Strategy<Value = AssetPick> {
    prop_oneof![
        4 => Just(AssetPick::Usdt),
        4 => Just(AssetPick::Eurc),
        2 => Just(AssetPick::Native),
        1 => Just(AssetPick::Unknown),
    ]
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![3 => Just(Who::Holder), 1 => (0..KEYS).prop_map(Who::Key)]
}

/// A sender: mostly a user, sometimes any key.
fn sender() -> impl Strategy<Value = usize> {
    prop_oneof![5 => 0..USERS, 1 => 0..KEYS]
}

fn target() -> impl Strategy<Value = usize> {
    prop_oneof![5 => 0..USERS, 2 => 0..TARGETS]
}

/// Whom a freeze, unfreeze or seize names: mostly user 0, so that the
/// same address is frozen, unfrozen and seized from.
fn suspect() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0), 1 => target()]
}

/// A minter to configure or remove: mostly user 0 or a genesis minter.
fn minter() -> impl Strategy<Value = usize> {
    let usual = prop_oneof![Just(0), Just(USDT_MINTER_KEY), Just(EURC_MINTER_KEY)];
    prop_oneof![2 => usual, 1 => target()]
}

/// A staker and the validator it stakes with: mostly one of four pairs
/// (users 0 and 1 with the genesis validators, and those validators'
/// operators with their own), so that bonds are later unbonded, withdrawn
/// and claimed from; otherwise any key with any validator.
fn stake_pair() -> impl Strategy<Value = (usize, usize)> {
    const PAIRS: [(usize, usize); 4] = [(0, 0), (1, 1), (VALIDATOR_KEY, 0), (VALIDATOR_KEY + 1, 1)];
    let anyone = prop_oneof![3 => 0..USERS, 1 => 0..KEYS];
    let validator =
        prop_oneof![3 => 0..2usize, 2 => 2..(2 + USERS), 1 => Just(VALIDATOR_PICKS - 1)];
    prop_oneof![3 => (0..PAIRS.len()).prop_map(|i| PAIRS[i]), 1 => (anyone, validator)]
}

/// An amount of stake: mostly below a genesis validator's self-bond.
fn stake() -> impl Strategy<Value = u128> {
    prop_oneof![2 => 0u128..1_000, 3 => 0u128..=VALIDATOR_STAKE, 1 => amount()]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (sender(), asset(), target(), amount())
            .prop_map(|(from, asset, to, amount)| Op::Transfer { from, asset, to, amount }),
        2 => (sender(), asset(), prop::collection::vec((target(), amount()), 1..=MAX_BATCH as usize + 1))
            .prop_map(|(from, asset, payouts)| Op::Batch { from, asset, payouts }),
        2 => (who(), asset(), target(), amount())
            .prop_map(|(by, asset, to, amount)| Op::Mint { by, asset, to, amount }),
        1 => (who(), asset(), amount()).prop_map(|(by, asset, amount)| Op::Burn { by, asset, amount }),
        1 => (who(), asset(), minter(), amount())
            .prop_map(|(by, asset, minter, allowance)| Op::ConfigureMinter { by, asset, minter, allowance }),
        1 => (who(), asset(), minter())
            .prop_map(|(by, asset, minter)| Op::RemoveMinter { by, asset, minter }),
        3 => (who(), asset(), suspect(), toggle())
            .prop_map(|(by, asset, target, on)| Op::Freeze { by, asset, target, on }),
        1 => (who(), asset(), suspect()).prop_map(|(by, asset, target)| Op::Seize { by, asset, target }),
        2 => (who(), asset(), toggle()).prop_map(|(by, asset, on)| Op::Pause { by, asset, on }),
        1 => (sender(), 0u8..6, prop_oneof![0u16..=10_000, Just(10_001u16)])
            .prop_map(|(by, consensus, commission_bps)| Op::Register { by, consensus, commission_bps }),
        3 => (stake_pair(), stake())
            .prop_map(|((by, validator), amount)| Op::Bond { by, validator, amount }),
        3 => (stake_pair(), stake())
            .prop_map(|((by, validator), amount)| Op::Unbond { by, validator, amount }),
        2 => stake_pair().prop_map(|(by, validator)| Op::Withdraw { by, validator }),
        2 => stake_pair().prop_map(|(by, validator)| Op::Claim { by, validator }),
        1 => prop_oneof![VALIDATOR_KEY..VALIDATOR_KEY + 2, 0..KEYS].prop_map(|by| Op::Unjail { by }),
    ]
}

/// Switch on, off, or (mostly) to the opposite of what it is.
fn toggle() -> impl Strategy<Value = Option<bool>> {
    prop_oneof![2 => Just(None), 1 => any::<bool>().prop_map(Some)]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        16 => Just(Fault::None),
        1 => Just(Fault::NonceGap),
        1 => Just(Fault::NonceUsed),
        1 => Just(Fault::WrongChain),
        1 => Just(Fault::BadSignature),
        1 => Just(Fault::WrongSigner),
        1 => Just(Fault::Expired),
        1 => Just(Fault::FeeTooLow),
        1 => any::<usize>().prop_map(Fault::Replay),
    ]
}

fn block_plan() -> impl Strategy<Value = BlockPlan> {
    (
        0..2usize,
        prop::collection::vec((op(), fault()), 0..12),
        prop::collection::vec((0usize..6, 0u8..6, -1i8..=1), 0..3),
    )
        .prop_map(|(proposer, txs, evidence)| BlockPlan {
            proposer,
            txs,
            evidence,
        })
}

/// A left-out transaction's reason, as a predicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    BadSignature,
    WrongChain,
    Expired,
    FeeTooLow,
    TooManyRecipients,
    NonceUsed,
    NonceNotNext,
}

impl Refusal {
    fn matches(self, e: &InvalidTx) -> bool {
        matches!(
            (self, e),
            (Refusal::BadSignature, InvalidTx::BadSignature)
                | (Refusal::WrongChain, InvalidTx::WrongChain { .. })
                | (Refusal::Expired, InvalidTx::Expired { .. })
                | (Refusal::FeeTooLow, InvalidTx::FeeTooLow { .. })
                | (
                    Refusal::TooManyRecipients,
                    InvalidTx::TooManyRecipients { .. }
                )
                | (Refusal::NonceUsed, InvalidTx::NonceUsed { .. })
                | (Refusal::NonceNotNext, InvalidTx::NonceNotNext { .. })
        )
    }
}

/// A transaction of the block with what this test expects of it.
struct Planned {
    tx: SignedTransaction,
    /// `Some`: it must be left out for this reason.
    refusal: Option<Refusal>,
    /// It must fail in execution if included, with this in its reason
    /// (empty: for any reason).
    must_fail: Option<String>,
}

/// The two databases and what the test knows of their history.
struct Run {
    a: Chain,
    b: Chain,
    keys: Vec<Keypair>,
    targets: Vec<Address>,
    /// Every asset's supply as genesis, mints, burns and slashing made it.
    supply: BTreeMap<Symbol, u128>,
    /// Native tokens sent to the bonded pool by transfers.
    sent_to_pool: u128,
    used_evidence: BTreeSet<Hash>,
    included: Vec<SignedTransaction>,
}

impl Run {
    fn new() -> Run {
        let a = chain_with(USERS, prop_params());
        let b = chain_with(USERS, prop_params());
        let k = &a.keys;
        let mut keys: Vec<Keypair> = k.users.iter().map(CloneKey::clone_key).collect();
        for roles in [&k.usdt, &k.eurc] {
            keys.extend(roles.all().iter().map(|(_, key)| key.clone_key()));
        }
        keys.extend(k.validators.iter().map(CloneKey::clone_key));
        keys.push(Keypair::derive_insecure(42, "stranger"));
        assert_eq!(keys.len(), KEYS);
        assert_eq!(keys[USDT_MINTER_KEY].address(), k.usdt.minter.address());
        assert_eq!(keys[EURC_MINTER_KEY].address(), k.eurc.minter.address());
        assert_eq!(keys[VALIDATOR_KEY].address(), k.validators[0].address());
        let mut targets: Vec<Address> = keys.iter().map(Keypair::address).collect();
        targets.extend([fee_collector(), bonded_pool(), rewards_pool()]);
        let supply = [NATIVE, usdt(), eurc()]
            .into_iter()
            .map(|s| (s, a.supply(s)))
            .collect();
        Run {
            a,
            b,
            keys,
            targets,
            supply,
            sent_to_pool: 0,
            used_evidence: BTreeSet::new(),
            included: Vec::new(),
        }
    }

    fn validator(&self, pick: usize) -> Address {
        match pick {
            0 | 1 => self.a.keys.validators[pick].address(),
            p if p < 2 + USERS => self.a.addr(p - 2),
            _ => self.keys[KEYS - 1].address(),
        }
    }

    /// The key that signs a role-gated action on `asset`, and the failure
    /// the action must end in if it is included.
    fn role_signer(&self, who: Who, asset: AssetPick, role: Role) -> (&Keypair, Option<String>) {
        let roles = match asset {
            AssetPick::Eurc => &self.a.keys.eurc,
            _ => &self.a.keys.usdt,
        };
        let key = match who {
            Who::Holder => role.holder(roles),
            Who::Key(k) => &self.keys[k],
        };
        let symbol = asset.symbol();
        let must_fail = match (asset, role.name()) {
            (AssetPick::Unknown, _) => Some(String::new()),
            // The native token has no role holders and no minters.
            (AssetPick::Native, None) => Some(String::new()),
            (AssetPick::Native, Some(name)) => Some(format!("is not the {name} of {symbol}")),
            (_, Some(name)) if key.address() != role.holder(roles).address() => {
                Some(format!("is not the {name} of {symbol}"))
            }
            _ => None,
        };
        (key, must_fail)
    }

    /// The signer and payload of `op`, whether it is a batch over the
    /// limit, and the failure it must end in if included.
    fn payload(&self, op: &Op) -> (&Keypair, Payload, bool, Option<String>) {
        let t = |i: usize| self.targets[i];
        let unknown = |a: AssetPick| (a == AssetPick::Unknown).then(String::new);
        match op {
            Op::Transfer {
                from,
                asset,
                to,
                amount,
            } => (
                &self.keys[*from],
                Payload::Transfer {
                    asset: asset.symbol(),
                    to: t(*to),
                    amount: Amount(*amount),
                    memo: Memo::empty(),
                },
                false,
                unknown(*asset),
            ),
            Op::Batch {
                from,
                asset,
                payouts,
            } => (
                &self.keys[*from],
                Payload::BatchTransfer {
                    asset: asset.symbol(),
                    payouts: Payouts::new(
                        payouts
                            .iter()
                            .map(|(to, a)| Payout {
                                to: t(*to),
                                amount: Amount(*a),
                            })
                            .collect(),
                    )
                    .unwrap(),
                    memo: Memo::new(b"batch".to_vec()).unwrap(),
                },
                payouts.len() > MAX_BATCH as usize,
                unknown(*asset),
            ),
            Op::Mint {
                by,
                asset,
                to,
                amount,
            } => {
                let (key, must_fail) = self.role_signer(*by, *asset, Role::Minter);
                let payload = Payload::Mint {
                    asset: asset.symbol(),
                    to: t(*to),
                    amount: Amount(*amount),
                };
                (key, payload, false, must_fail)
            }
            Op::Burn { by, asset, amount } => {
                let (key, must_fail) = self.role_signer(*by, *asset, Role::Minter);
                let payload = Payload::Burn {
                    asset: asset.symbol(),
                    amount: Amount(*amount),
                };
                (key, payload, false, must_fail)
            }
            Op::ConfigureMinter {
                by,
                asset,
                minter,
                allowance,
            } => {
                let (key, must_fail) = self.role_signer(*by, *asset, Role::MasterMinter);
                let payload = Payload::ConfigureMinter {
                    asset: asset.symbol(),
                    minter: t(*minter),
                    allowance: Amount(*allowance),
                };
                (key, payload, false, must_fail)
            }
            Op::RemoveMinter { by, asset, minter } => {
                let (key, must_fail) = self.role_signer(*by, *asset, Role::MasterMinter);
                let payload = Payload::RemoveMinter {
                    asset: asset.symbol(),
                    minter: t(*minter),
                };
                (key, payload, false, must_fail)
            }
            Op::Freeze {
                by,
                asset,
                target,
                on,
            } => {
                let (key, must_fail) = self.role_signer(*by, *asset, Role::Freezer);
                let (asset, address) = (asset.symbol(), t(*target));
                let frozen = || self.a.ledger.account(&address).unwrap().is_frozen(&asset);
                let payload = if on.unwrap_or_else(|| !frozen()) {
                    Payload::Freeze { asset, address }
                } else {
                    Payload::Unfreeze { asset, address }
                };
                (key, payload, false, must_fail)
            }
            Op::Seize { by, asset, target } => {
                let (key, must_fail) = self.role_signer(*by, *asset, Role::Issuer);
                let payload = Payload::Seize {
                    asset: asset.symbol(),
                    address: t(*target),
                };
                (key, payload, false, must_fail)
            }
            Op::Pause { by, asset, on } => {
                let (key, must_fail) = self.role_signer(*by, *asset, Role::Pauser);
                let asset = asset.symbol();
                let paused = || {
                    self.a
                        .ledger
                        .asset(&asset)
                        .unwrap()
                        .is_some_and(|a| a.paused)
                };
                let payload = if on.unwrap_or_else(|| !paused()) {
                    Payload::Pause { asset }
                } else {
                    Payload::Unpause { asset }
                };
                (key, payload, false, must_fail)
            }
            Op::Register {
                by,
                consensus,
                commission_bps,
            } => {
                let consensus_key = match consensus {
                    0..=3 => {
                        Keypair::derive_insecure(7, &format!("prop cons {consensus}")).public()
                    }
                    4 => consensus_key(0).public(),
                    _ => PublicKey([0; 32]),
                };
                let must_fail = (*consensus >= 4 || *commission_bps > 10_000).then(String::new);
                let payload = Payload::RegisterValidator {
                    consensus_key,
                    commission_bps: *commission_bps,
                };
                (&self.keys[*by], payload, false, must_fail)
            }
            Op::Bond {
                by,
                validator,
                amount,
            } => (
                &self.keys[*by],
                Payload::Bond {
                    validator: self.validator(*validator),
                    amount: Amount(*amount),
                },
                false,
                None,
            ),
            Op::Unbond {
                by,
                validator,
                amount,
            } => (
                &self.keys[*by],
                Payload::Unbond {
                    validator: self.validator(*validator),
                    amount: Amount(*amount),
                },
                false,
                None,
            ),
            Op::Withdraw { by, validator } => (
                &self.keys[*by],
                Payload::Withdraw {
                    validator: self.validator(*validator),
                },
                false,
                None,
            ),
            Op::Claim { by, validator } => (
                &self.keys[*by],
                Payload::ClaimRewards {
                    validator: self.validator(*validator),
                },
                false,
                None,
            ),
            Op::Unjail { by } => (&self.keys[*by], Payload::Unjail, false, None),
        }
    }

    /// Signs the block's transactions, each valid one with its sender's
    /// next nonce, each faulty one with its fault.
    fn sign(&self, plan: &BlockPlan, height: u64) -> Vec<Planned> {
        let ledger = &self.a.ledger;
        let mut next: BTreeMap<Address, u64> = BTreeMap::new();
        let mut out = Vec::new();
        for (i, (op, fault)) in plan.txs.iter().enumerate() {
            if let Fault::Replay(n) = fault {
                if !self.included.is_empty() {
                    out.push(Planned {
                        tx: self.included[n % self.included.len()].clone(),
                        refusal: Some(Refusal::NonceUsed),
                        must_fail: None,
                    });
                    continue;
                }
            }
            let (key, payload, over_limit, must_fail) = self.payload(op);
            let sender = key.address();
            let committed = ledger.account(&sender).unwrap().nonce;
            let nonce = *next.entry(sender).or_insert(committed);
            let mut tx = Transaction {
                chain_id: *ledger.chain_id(),
                sender,
                nonce,
                max_fee: FEE,
                expiry_height: height + 100,
                payload,
            };
            // A replay with nothing to replay yet is sent as a valid one.
            let faulty = !matches!(fault, Fault::None | Fault::Replay(_));
            // A faulty transaction offers one more unit of fee than a valid
            // one, so that it never has the same hash as a valid one.
            if faulty {
                tx.max_fee = Amount(FEE.0 + 1);
            }
            let mut signer = key;
            let mut flip = false;
            let refusal = match fault {
                Fault::None | Fault::Replay(_) => over_limit.then_some(Refusal::TooManyRecipients),
                Fault::BadSignature => {
                    flip = true;
                    Some(Refusal::BadSignature)
                }
                Fault::WrongSigner => {
                    signer = &self.keys[(i + 1 + usize::from(sender.0[0])) % KEYS];
                    if signer.address() == sender {
                        signer = &self.keys[(i + 2 + usize::from(sender.0[0])) % KEYS];
                    }
                    Some(Refusal::BadSignature)
                }
                Fault::WrongChain => {
                    tx.chain_id = ChainId::new("sou-other").unwrap();
                    Some(Refusal::WrongChain)
                }
                Fault::Expired => {
                    tx.expiry_height = height - 1;
                    Some(Refusal::Expired)
                }
                Fault::FeeTooLow => {
                    tx.max_fee = Amount(FEE.0 - 1);
                    Some(Refusal::FeeTooLow)
                }
                // The static checks (batch size) come before the nonce.
                _ if over_limit => Some(Refusal::TooManyRecipients),
                Fault::NonceGap => {
                    tx.nonce = nonce + 1_000;
                    Some(Refusal::NonceNotNext)
                }
                Fault::NonceUsed if committed > 0 => {
                    tx.nonce = committed - 1;
                    Some(Refusal::NonceUsed)
                }
                Fault::NonceUsed => {
                    tx.nonce = u64::MAX;
                    Some(Refusal::NonceNotNext)
                }
            };
            let mut signed = tx.sign(signer);
            if flip {
                signed.signature.0[7] ^= 0x10;
            }
            if !faulty && !over_limit {
                next.insert(sender, nonce + 1);
            }
            out.push(Planned {
                tx: signed,
                refusal,
                must_fail,
            });
        }
        out
    }

    /// The block's evidence, and the ids and offenders (operators) of the
    /// pieces the rules accept: a validator of the epoch named, evidence not
    /// used before (in this block or an earlier one), an offender not
    /// already jailed for good.
    fn evidence(&self, plan: &BlockPlan, height: u64) -> (Vec<Misbehaviour>, Vec<(Hash, Address)>) {
        let ledger = &self.a.ledger;
        let epoch = epoch_of(height, ledger.params().epoch_length_blocks);
        let stranger = Keypair::derive_insecure(7, "not a validator").public();
        let mut offered = Vec::new();
        let mut accepted = Vec::new();
        let mut jailed_in_block = BTreeSet::new();
        for (member, id, offset) in &plan.evidence {
            let e = epoch.saturating_add_signed(i64::from(*offset));
            let set = ledger.validator_set(e).unwrap();
            let found = set
                .as_ref()
                .and_then(|s| s.validators.get(member % (s.validators.len() + 1)));
            let offender = found.map_or(stranger, |v| v.consensus_key);
            let m = Misbehaviour {
                epoch: e,
                offender,
                id: Hash::domain("sou prop evidence v1", &[*id]),
                proof: vec![*id],
            };
            if let Some(v) = found {
                let jailed_for_good = ledger
                    .validator(&v.operator)
                    .unwrap()
                    .is_some_and(|v| v.jailed_until == Some(u64::MAX));
                let ok = !accepted.iter().any(|(id, _)| *id == m.id)
                    && !self.used_evidence.contains(&m.id)
                    && !jailed_for_good
                    && !jailed_in_block.contains(&v.operator);
                if ok {
                    accepted.push((m.id, v.operator));
                    jailed_in_block.insert(v.operator);
                }
            }
            offered.push(m);
        }
        (offered, accepted)
    }

    /// The native tokens that slashing `operator` by [`SLASH_PPM`] at
    /// `height` burns: that fraction, rounded down, of its bonded tokens and
    /// of each unbonding entry not yet withdrawable.
    fn slash_burn(&self, operator: &Address, height: u64) -> u128 {
        let ledger = &self.a.ledger;
        let cut = |x: u128| x * u128::from(SLASH_PPM) / 1_000_000;
        let v = ledger.validator(operator).unwrap().unwrap();
        let entries: u128 = ledger
            .unbonding(operator)
            .unwrap()
            .iter()
            .filter(|e| e.complete_height > height)
            .map(|e| cut(e.amount.0))
            .sum();
        cut(v.tokens.0) + entries
    }

    fn bonded_total(&self) -> u128 {
        let ledger = &self.a.ledger;
        ledger
            .candidates()
            .unwrap()
            .iter()
            .map(|op| {
                let tokens = ledger.validator(op).unwrap().unwrap().tokens.0;
                let unbonding: u128 = ledger
                    .unbonding(op)
                    .unwrap()
                    .iter()
                    .map(|e| e.amount.0)
                    .sum();
                tokens + unbonding
            })
            .sum()
    }

    fn block(&mut self, plan: &BlockPlan) -> Result<(), TestCaseError> {
        let height = self.a.ledger.tip().height + 1;
        let planned = self.sign(plan, height);
        let (evidence, accepted) = self.evidence(plan, height);
        let nonces_before: Vec<u64> = self
            .keys
            .iter()
            .map(|k| self.a.ledger.account(&k.address()).unwrap().nonce)
            .collect();
        // Slashing comes first in a block, on the committed state.
        let mut burned = 0u128;
        for (_, operator) in &accepted {
            burned += self.slash_burn(operator, height);
        }

        let all_hold = |_: &Misbehaviour| true;
        let checks = Checks {
            verified: &|_, _| false,
            evidence: &all_hold,
        };
        self.a.time_ms += 500;
        let proposer = self.a.keys.validators[plan.proposer].address();
        let txs: Vec<SignedTransaction> = planned.iter().map(|p| p.tx.clone()).collect();
        let (executed, applied) = self
            .a
            .ledger
            .propose_on(&[], txs, evidence, proposer, self.a.time_ms, &checks)
            .unwrap();
        self.a.ledger.commit(&executed).unwrap();
        // A fresh database fed the same block reaches the same root.
        let again = self
            .b
            .ledger
            .execute_on(&[], executed.block.clone(), &checks)
            .unwrap();
        prop_assert_eq!(again.state_root(), executed.state_root());
        self.b.ledger.commit(&again).unwrap();

        // Exactly the evidence the rules accept.
        let held: Vec<Hash> = executed.block.evidence.iter().map(|m| m.id).collect();
        let expected: Vec<Hash> = accepted.iter().map(|(id, _)| *id).collect();
        prop_assert_eq!(held, expected);
        for (id, operator) in &accepted {
            self.used_evidence.insert(*id);
            let v = self.a.ledger.validator(operator).unwrap().unwrap();
            prop_assert_eq!(v.jailed_until, Some(u64::MAX));
        }
        *self.supply.get_mut(&NATIVE).unwrap() -= burned;

        // Walk the plan: each transaction is either the next receipt or the
        // next left out, in order.
        prop_assert_eq!(applied.not_included, 0);
        let (mut k, mut j) = (0, 0);
        let mut left_out_senders = BTreeSet::new();
        let mut sent: BTreeMap<Address, u64> = BTreeMap::new();
        for p in &planned {
            let hash = p.tx.hash();
            let sender = p.tx.tx.sender;
            if applied.invalid.get(j).is_some_and(|(h, _)| *h == hash) {
                let reason = &applied.invalid[j].1;
                j += 1;
                match p.refusal {
                    Some(r) => {
                        prop_assert!(r.matches(reason), "expected {:?}, got {:?}", r, reason);
                    }
                    None => {
                        // A valid transaction may still be refused for the
                        // state it meets: its sender frozen in the fee asset
                        // or short of the fee, or an earlier transaction of
                        // its sender refused (a nonce gap).
                        let ok = match reason {
                            InvalidTx::SenderFrozen(s) => *s == usdt(),
                            InvalidTx::InsufficientBalance { asset, need, .. } => {
                                *asset == usdt() && *need == FEE
                            }
                            InvalidTx::NonceNotNext { .. } => left_out_senders.contains(&sender),
                            _ => false,
                        };
                        prop_assert!(ok, "a valid transaction was refused: {:?}", reason);
                    }
                }
                left_out_senders.insert(sender);
                continue;
            }
            prop_assert!(
                p.refusal.is_none(),
                "included despite {:?}: {:?}",
                p.refusal,
                p.tx.tx
            );
            let r = executed.receipts.get(k);
            prop_assert!(
                r.is_some_and(|r| r.tx_hash == hash),
                "receipt {} is not {:?}",
                k,
                p.tx.tx
            );
            let r = &executed.receipts[k];
            k += 1;
            prop_assert_eq!(r.fee, FEE);
            *sent.entry(sender).or_default() += 1;
            self.included.push(p.tx.clone());
            if let Some(needle) = &p.must_fail {
                match &r.status {
                    TxStatus::Failed { reason } => {
                        prop_assert!(
                            reason.contains(needle.as_str()),
                            "{:?} lacks {:?}",
                            reason,
                            needle
                        );
                    }
                    TxStatus::Success => {
                        prop_assert!(false, "must fail ({:?}): {:?}", needle, p.tx.tx.payload);
                    }
                }
            }
            if r.succeeded() {
                self.account_success(&p.tx.tx.payload);
            }
        }
        prop_assert_eq!(j, applied.invalid.len());
        prop_assert_eq!(k, executed.receipts.len());
        prop_assert_eq!(executed.block.transactions.len(), k);

        // Each included transaction used one nonce of its sender.
        for (key, before) in self.keys.iter().zip(nonces_before) {
            let a = key.address();
            let after = self.a.ledger.account(&a).unwrap().nonce;
            prop_assert_eq!(after, before + sent.get(&a).copied().unwrap_or(0));
        }

        // Supply moves only by mint, burn and slashing, and is the sum of
        // all balances.
        assert_conserved(&self.a.ledger);
        for (asset, supply) in &self.supply {
            prop_assert_eq!(self.a.supply(*asset), *supply, "{} supply", asset);
        }
        // The bonded pool holds the stake, bonded and unbonding.
        prop_assert_eq!(
            self.a.balance(&bonded_pool(), NATIVE),
            self.bonded_total() + self.sent_to_pool
        );
        // The incremental root is the root of the whole state.
        prop_assert_eq!(full_state_root(&self.a.ledger), self.a.ledger.state_root());
        Ok(())
    }

    /// Updates what the test expects after a payload succeeded.
    fn account_success(&mut self, payload: &Payload) {
        match payload {
            Payload::Mint { asset, amount, .. } => {
                *self.supply.get_mut(asset).unwrap() += amount.0;
            }
            Payload::Burn { asset, amount } => {
                *self.supply.get_mut(asset).unwrap() -= amount.0;
            }
            Payload::Transfer {
                asset, to, amount, ..
            } if *asset == NATIVE && *to == bonded_pool() => {
                self.sent_to_pool += amount.0;
            }
            Payload::BatchTransfer { asset, payouts, .. } if *asset == NATIVE => {
                for p in payouts.as_slice() {
                    if p.to == bonded_pool() {
                        self.sent_to_pool += p.amount.0;
                    }
                }
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_blocks_keep_every_invariant(blocks in prop::collection::vec(block_plan(), 1..12)) {
        let mut run = Run::new();
        for plan in &blocks {
            run.block(plan)?;
        }
        // Nothing already included can be replayed.
        let all = run.included.clone();
        let (replayed, applied) = run.a.block(all.clone());
        prop_assert!(replayed.receipts.is_empty());
        let all_used = applied.invalid.iter().all(|(_, r)| matches!(r, InvalidTx::NonceUsed { .. }));
        prop_assert!(all_used, "replays refused for other reasons: {:?}", applied.invalid);
        prop_assert_eq!(applied.invalid.len(), all.len());
    }
}
