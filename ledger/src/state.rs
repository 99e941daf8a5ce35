//! What the ledger stores in its state: the records, and the keys they live
//! under. Every record is borsh-encoded; the key's tag says which record it is.
//!
//! Records are kept canonical (sorted lists, no zero balances, an empty
//! account is no record at all), so that the same state always has the same
//! bytes and so the same state root.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;
use smallvec::SmallVec;
use sou_types::{Address, Amount, Hash, PublicKey, Symbol};

use crate::params::Params;

/// Module account that collects each block's fees before they are shared out.
pub fn fee_collector() -> Address {
    Address::module("fee_collector")
}

/// Module account that holds bonded and unbonding stake.
pub fn bonded_pool() -> Address {
    Address::module("bonded_pool")
}

/// Module account that holds delegators' fee rewards until they claim them.
pub fn rewards_pool() -> Address {
    Address::module("rewards_pool")
}

/// A key in the state column family.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum StateKey {
    Params,
    Account(Address),
    Asset(Symbol),
    Validator(Address),
    /// (delegator, validator)
    Delegation(Address, Address),
    /// A validator's queue of unbonding entries.
    Unbonding(Address),
    /// The validator set of an epoch.
    ValidatorSet(u64),
    /// The list of registered validator operators.
    Candidates,
    /// Evidence already used to slash, by its hash.
    Evidence(Hash),
    /// Every asset's symbol, sorted.
    AssetList,
}

/// Every encoded state key is at least this long (short ones are padded with
/// zeros), so that the storage can bucket keys by a fixed-length prefix.
pub const STATE_KEY_MIN_BYTES: usize = 9;

impl StateKey {
    pub fn encode(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(65);
        self.encode_into(&mut k);
        k
    }

    /// An account's encoded key, without allocating.
    pub fn account(a: &Address) -> [u8; 33] {
        let mut k = [1u8; 33];
        k[1..].copy_from_slice(&a.0);
        k
    }

    /// Appends the encoded key to `k` (many keys can share one buffer).
    pub fn encode_into(&self, k: &mut Vec<u8>) {
        let start = k.len();
        match self {
            StateKey::Params => k.push(0),
            StateKey::Account(a) => k.extend_from_slice(&StateKey::account(a)),
            StateKey::Asset(s) => {
                k.push(2);
                k.extend_from_slice(s.as_str().as_bytes());
            }
            StateKey::Validator(a) => {
                k.push(3);
                k.extend_from_slice(&a.0);
            }
            StateKey::Delegation(d, v) => {
                k.push(4);
                k.extend_from_slice(&d.0);
                k.extend_from_slice(&v.0);
            }
            StateKey::Unbonding(v) => {
                k.push(5);
                k.extend_from_slice(&v.0);
            }
            StateKey::ValidatorSet(e) => {
                k.push(6);
                k.extend_from_slice(&e.to_be_bytes());
            }
            StateKey::Candidates => k.push(7),
            StateKey::Evidence(h) => {
                k.push(8);
                k.extend_from_slice(&h.0);
            }
            StateKey::AssetList => k.push(9),
        }
        if k.len() - start < STATE_KEY_MIN_BYTES {
            k.resize(start + STATE_KEY_MIN_BYTES, 0);
        }
    }
}

/// An account: its nonce, its balance of each asset, the assets it is frozen in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub nonce: u64,
    /// Sorted by symbol; no zero entries.
    pub balances: Balances,
    /// Sorted; the assets this address can neither send nor receive.
    pub frozen: Vec<Symbol>,
}

/// An account's balances. Nearly every account holds one asset (its
/// stablecoin), kept inline: a block reads and writes about 10,000
/// accounts, and a heap allocation for each one's balances cost an
/// allocation, a free and a pointer chase apiece.
pub type Balances = SmallVec<[(Symbol, Amount); 1]>;

// Encoded as if `balances` were a Vec (a u32 count, then the entries), so the
// records, and the state root, are what they were.
impl BorshSerialize for Account {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.nonce, w)?;
        let n = u32::try_from(self.balances.len())
            .map_err(|_| std::io::Error::other("more than 2^32 balances"))?;
        BorshSerialize::serialize(&n, w)?;
        for b in &self.balances {
            BorshSerialize::serialize(b, w)?;
        }
        BorshSerialize::serialize(&self.frozen, w)
    }
}

impl BorshDeserialize for Account {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        let nonce = u64::deserialize_reader(r)?;
        let n = u32::deserialize_reader(r)?;
        // Grows as entries are read: a corrupt count ends at the input's end
        // rather than reserving memory for it.
        let mut balances = Balances::new();
        for _ in 0..n {
            balances.push(<(Symbol, Amount)>::deserialize_reader(r)?);
        }
        let frozen = Vec::<Symbol>::deserialize_reader(r)?;
        Ok(Account {
            nonce,
            balances,
            frozen,
        })
    }
}

impl Account {
    pub fn balance(&self, asset: &Symbol) -> Amount {
        match self.balances.binary_search_by(|(s, _)| s.cmp(asset)) {
            Ok(i) => self.balances[i].1,
            Err(_) => Amount::ZERO,
        }
    }

    pub fn set_balance(&mut self, asset: Symbol, amount: Amount) {
        match self.balances.binary_search_by(|(s, _)| s.cmp(&asset)) {
            Ok(i) if amount.is_zero() => {
                self.balances.remove(i);
            }
            Ok(i) => self.balances[i].1 = amount,
            Err(_) if amount.is_zero() => {}
            Err(i) => self.balances.insert(i, (asset, amount)),
        }
    }

    pub fn is_frozen(&self, asset: &Symbol) -> bool {
        self.frozen.binary_search(asset).is_ok()
    }

    pub fn set_frozen(&mut self, asset: Symbol, frozen: bool) {
        match (self.frozen.binary_search(&asset), frozen) {
            (Err(i), true) => self.frozen.insert(i, asset),
            (Ok(i), false) => {
                self.frozen.remove(i);
            }
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nonce == 0 && self.balances.is_empty() && self.frozen.is_empty()
    }
}

/// An asset and its roles. The native token has no roles: nobody can mint,
/// freeze or pause it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetInfo {
    pub symbol: Symbol,
    pub name: String,
    pub decimals: u8,
    pub supply: Amount,
    pub paused: bool,
    pub roles: AssetRoles,
    /// Minters and their remaining allowances, sorted by address.
    pub minters: Vec<(Address, Amount)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetRoles {
    /// Receives seized funds; may seize.
    pub issuer: Option<Address>,
    /// May configure and remove minters.
    pub master_minter: Option<Address>,
    /// May pause and unpause.
    pub pauser: Option<Address>,
    /// May freeze and unfreeze addresses.
    pub freezer: Option<Address>,
}

impl AssetInfo {
    pub fn allowance(&self, minter: &Address) -> Option<Amount> {
        self.minters
            .binary_search_by(|(m, _)| m.cmp(minter))
            .ok()
            .map(|i| self.minters[i].1)
    }

    pub fn set_minter(&mut self, minter: Address, allowance: Option<Amount>) {
        match (
            self.minters.binary_search_by(|(m, _)| m.cmp(&minter)),
            allowance,
        ) {
            (Ok(i), Some(a)) => self.minters[i].1 = a,
            (Ok(i), None) => {
                self.minters.remove(i);
            }
            (Err(i), Some(a)) => self.minters.insert(i, (minter, a)),
            (Err(_), None) => {}
        }
    }
}

/// A validator candidate (in the active set or not).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Validator {
    pub operator: Address,
    pub consensus_key: PublicKey,
    pub commission_bps: u16,
    /// Bonded native tokens, its own and its delegators'.
    pub tokens: Amount,
    /// Delegation shares outstanding; a delegation of `s` shares owns
    /// `tokens * s / shares`, so slashing `tokens` slashes every delegator
    /// in proportion.
    pub shares: u128,
    /// Fee rewards per share, scaled by [`REWARD_SCALE`], accumulated since
    /// the validator registered.
    pub reward_per_share: u128,
    /// Jailed validators leave the set at the next epoch; `Some(u64::MAX)`
    /// is jailed for good (double signing).
    pub jailed_until: Option<u64>,
    /// The last block this validator proposed (0: none).
    pub last_proposed_height: u64,
}

/// Fixed-point scale of [`Validator::reward_per_share`].
pub const REWARD_SCALE: u128 = 1_000_000_000_000_000_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Delegation {
    pub shares: u128,
    /// `shares * reward_per_share / REWARD_SCALE` when last settled: rewards
    /// accrued before that are not owed again.
    pub reward_debt: u128,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct UnbondingEntry {
    pub delegator: Address,
    pub amount: Amount,
    /// First height at which the entry may be withdrawn.
    pub complete_height: u64,
}

/// One member of an epoch's validator set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidatorInfo {
    pub operator: Address,
    pub consensus_key: PublicKey,
    /// Voting power: bonded stake in base units of the native token.
    pub power: Amount,
}

/// The validators of one epoch, sorted by power (descending), then operator.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidatorSet {
    pub epoch: u64,
    pub validators: Vec<ValidatorInfo>,
}

impl ValidatorSet {
    pub fn total_power(&self) -> u128 {
        self.validators.iter().map(|v| v.power.0).sum()
    }
}

/// A state record, decoded. The large, rarely touched records are boxed, so
/// that the value is the size of an account (64 bytes rather than 208): a
/// block holds one per account it touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateValue {
    Params(Box<Params>),
    Account(Account),
    Asset(Box<AssetInfo>),
    Validator(Box<Validator>),
    Delegation(Delegation),
    Unbonding(Vec<UnbondingEntry>),
    ValidatorSet(ValidatorSet),
    Candidates(Vec<Address>),
    Evidence(u64),
    AssetList(Vec<Symbol>),
}

impl StateValue {
    pub fn encode(&self) -> Vec<u8> {
        // Room for an account with a few balances: `borsh::to_vec` reserves
        // a kilobyte for every value, and a block encodes one per account.
        let mut out = Vec::with_capacity(96);
        self.encode_into(&mut out);
        out
    }

    /// Appends the record's encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let r = match self {
            StateValue::Params(v) => BorshSerialize::serialize(v, out),
            StateValue::Account(v) => BorshSerialize::serialize(v, out),
            StateValue::Asset(v) => BorshSerialize::serialize(v, out),
            StateValue::Validator(v) => BorshSerialize::serialize(v, out),
            StateValue::Delegation(v) => BorshSerialize::serialize(v, out),
            StateValue::Unbonding(v) => BorshSerialize::serialize(v, out),
            StateValue::ValidatorSet(v) => BorshSerialize::serialize(v, out),
            StateValue::Candidates(v) => BorshSerialize::serialize(v, out),
            StateValue::Evidence(v) => BorshSerialize::serialize(v, out),
            StateValue::AssetList(v) => BorshSerialize::serialize(v, out),
        };
        r.unwrap_or_else(|e| unreachable!("borsh encoding into a Vec failed: {e}"));
    }

    /// Decodes the record stored under `key`.
    pub fn decode(key: &StateKey, bytes: &[u8]) -> std::io::Result<StateValue> {
        Ok(match key {
            StateKey::Params => StateValue::Params(borsh::from_slice(bytes)?),
            StateKey::Account(_) => StateValue::Account(borsh::from_slice(bytes)?),
            StateKey::Asset(_) => StateValue::Asset(borsh::from_slice(bytes)?),
            StateKey::Validator(_) => StateValue::Validator(borsh::from_slice(bytes)?),
            StateKey::Delegation(..) => StateValue::Delegation(borsh::from_slice(bytes)?),
            StateKey::Unbonding(_) => StateValue::Unbonding(borsh::from_slice(bytes)?),
            StateKey::ValidatorSet(_) => StateValue::ValidatorSet(borsh::from_slice(bytes)?),
            StateKey::Candidates => StateValue::Candidates(borsh::from_slice(bytes)?),
            StateKey::Evidence(_) => StateValue::Evidence(borsh::from_slice(bytes)?),
            StateKey::AssetList => StateValue::AssetList(borsh::from_slice(bytes)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The account as it was declared before its balances were inline.
    #[derive(BorshSerialize, BorshDeserialize, PartialEq, Debug)]
    struct VecAccount {
        nonce: u64,
        balances: Vec<(Symbol, Amount)>,
        frozen: Vec<Symbol>,
    }

    fn symbol() -> impl Strategy<Value = Symbol> {
        "[A-Z]{1,8}".prop_map(|s| Symbol::new(&s).unwrap())
    }

    proptest! {
        /// Inline balances encode and decode exactly as a Vec of them did,
        /// whatever their number (inline or spilled).
        #[test]
        fn accounts_encode_as_before(
            nonce in any::<u64>(),
            balances in proptest::collection::vec((symbol(), any::<u128>()), 0..4),
            frozen in proptest::collection::vec(symbol(), 0..3),
        ) {
            let balances: Vec<(Symbol, Amount)> =
                balances.into_iter().map(|(s, a)| (s, Amount(a))).collect();
            let old = VecAccount { nonce, balances: balances.clone(), frozen: frozen.clone() };
            let new = Account { nonce, balances: balances.into_iter().collect(), frozen };
            let bytes = borsh::to_vec(&old).unwrap();
            prop_assert_eq!(&borsh::to_vec(&new).unwrap(), &bytes);
            prop_assert_eq!(borsh::from_slice::<Account>(&bytes).unwrap(), new);
        }

        /// Any bytes decode to an account or to an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = borsh::from_slice::<Account>(&bytes);
        }
    }

    #[test]
    fn a_huge_balance_count_is_an_error() {
        let mut bytes = 7u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(borsh::from_slice::<Account>(&bytes).is_err());
    }
}
