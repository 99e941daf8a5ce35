//! A small chain on a temporary RocksDB for tests.

use std::collections::BTreeMap;

use sou_ledger::state::{AssetRoles, StateKey};
use sou_ledger::{
    lthash::LtHash, Applied, ExecutedBlock, GenesisAsset, GenesisState, GenesisValidator, Ledger,
    Params, Receipt, TxStatus,
};
use sou_types::asset::NATIVE;
use sou_types::{
    Address, Amount, ChainId, Keypair, Memo, Payload, SignedTransaction, Symbol, Transaction,
};

pub const FEE: Amount = Amount(100);
pub const USER_USDT: u128 = 1_000_000_000; // 1000 USDT
pub const USER_SOU: u128 = 10_000_000_000_000; // 10000 SOU
pub const VALIDATOR_STAKE: u128 = 1_000_000_000_000; // 1000 SOU

pub fn usdt() -> Symbol {
    Symbol::new("USDT").unwrap()
}

/// A second issued asset, not the fee asset.
pub fn eurc() -> Symbol {
    Symbol::new("EURC").unwrap()
}

pub fn params() -> Params {
    let mut p = Params::dev(usdt());
    p.tx_fee = FEE;
    p.epoch_length_blocks = 5;
    p.unbonding_period_blocks = 3;
    p.max_tx_lifetime_blocks = 1_000;
    p.min_validator_stake = Amount(1_000_000_000);
    p
}

/// The holders of one issued asset's roles, each its own key, so that a
/// test can tell which role a transaction was allowed by.
pub struct RoleKeys {
    /// May seize; receives seized funds.
    pub issuer: Keypair,
    /// May configure and remove minters.
    pub master_minter: Keypair,
    pub pauser: Keypair,
    pub freezer: Keypair,
    /// A minter configured at genesis with [`GENESIS_ALLOWANCE`].
    pub minter: Keypair,
}

impl RoleKeys {
    fn derive(asset: &str) -> RoleKeys {
        let k = |role: &str| Keypair::derive_insecure(42, &format!("{asset} {role}"));
        RoleKeys {
            issuer: k("issuer"),
            master_minter: k("master minter"),
            pauser: k("pauser"),
            freezer: k("freezer"),
            minter: k("minter"),
        }
    }

    /// Every role's key with the role's name, in a fixed order.
    pub fn all(&self) -> [(&'static str, &Keypair); 5] {
        [
            ("issuer", &self.issuer),
            ("master minter", &self.master_minter),
            ("pauser", &self.pauser),
            ("freezer", &self.freezer),
            ("minter", &self.minter),
        ]
    }

    fn roles(&self) -> AssetRoles {
        AssetRoles {
            issuer: Some(self.issuer.address()),
            master_minter: Some(self.master_minter.address()),
            pauser: Some(self.pauser.address()),
            freezer: Some(self.freezer.address()),
        }
    }
}

/// The minting allowance of each asset's genesis minter.
pub const GENESIS_ALLOWANCE: u128 = 1_000_000_000_000;

pub struct Keys {
    /// The roles of USDT (the fee asset).
    pub usdt: RoleKeys,
    /// The roles of EURC, held by other keys than USDT's.
    pub eurc: RoleKeys,
    pub validators: Vec<Keypair>,
    pub users: Vec<Keypair>,
}

pub fn keys(users: usize) -> Keys {
    Keys {
        usdt: RoleKeys::derive("USDT"),
        eurc: RoleKeys::derive("EURC"),
        validators: (0..2)
            .map(|i| Keypair::derive_insecure(42, &format!("val{i}")))
            .collect(),
        users: (0..users)
            .map(|i| Keypair::derive_insecure(42, &format!("user{i}")))
            .collect(),
    }
}

pub fn genesis(keys: &Keys, params: Params) -> GenesisState {
    let mut balances = Vec::new();
    // Role holders pay fees in USDT and hold both issued assets (minters
    // burn their own balance).
    for (_, k) in keys.usdt.all().into_iter().chain(keys.eurc.all()) {
        balances.push((k.address(), usdt(), Amount(USER_USDT)));
        balances.push((k.address(), eurc(), Amount(USER_USDT)));
    }
    for u in keys.users.iter().chain(&keys.validators) {
        balances.push((u.address(), usdt(), Amount(USER_USDT)));
        balances.push((u.address(), NATIVE, Amount(USER_SOU)));
        balances.push((u.address(), eurc(), Amount(USER_USDT)));
    }
    GenesisState {
        chain_id: ChainId::new("sou-test").unwrap(),
        genesis_time_ms: 1_700_000_000_000,
        params,
        assets: vec![
            GenesisAsset {
                symbol: NATIVE,
                name: "Sou".into(),
                decimals: 9,
                roles: AssetRoles::default(),
                minters: vec![],
            },
            GenesisAsset {
                symbol: usdt(),
                name: "Tether USD".into(),
                decimals: 6,
                roles: keys.usdt.roles(),
                minters: vec![(keys.usdt.minter.address(), Amount(GENESIS_ALLOWANCE))],
            },
            GenesisAsset {
                symbol: eurc(),
                name: "Euro Coin".into(),
                decimals: 6,
                roles: keys.eurc.roles(),
                minters: vec![(keys.eurc.minter.address(), Amount(GENESIS_ALLOWANCE))],
            },
        ],
        balances,
        validators: keys
            .validators
            .iter()
            .enumerate()
            .map(|(i, v)| GenesisValidator {
                operator: v.address(),
                consensus_key: consensus_key(i).public(),
                commission_bps: 1_000,
                stake: Amount(VALIDATOR_STAKE),
            })
            .collect(),
    }
}

/// The consensus key of genesis validator `i`.
pub fn consensus_key(i: usize) -> Keypair {
    Keypair::derive_insecure(42, &format!("cons{i}"))
}

pub struct Chain {
    /// Keeps a temporary database alive as long as the chain.
    pub _dir: Option<tempfile::TempDir>,
    pub ledger: Ledger,
    pub keys: Keys,
    pub time_ms: u64,
}

pub fn chain(users: usize) -> Chain {
    chain_with(users, params())
}

pub fn chain_with(users: usize, params: Params) -> Chain {
    chain_from(users, params, |_| {})
}

/// A chain whose test genesis `edit` changes first (stakes, commissions,
/// extra balances).
pub fn chain_from(users: usize, params: Params, edit: impl FnOnce(&mut GenesisState)) -> Chain {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(users);
    let mut g = genesis(&keys, params);
    edit(&mut g);
    let mut c = chain_on(&dir.path().join("db"), keys, &g);
    c._dir = Some(dir);
    c
}

/// A chain on the database at `path`, created with the test genesis if new.
pub fn chain_at(path: &std::path::Path, users: usize, params: Params) -> Chain {
    let keys = keys(users);
    let g = genesis(&keys, params);
    chain_on(path, keys, &g)
}

fn chain_on(path: &std::path::Path, keys: Keys, genesis: &GenesisState) -> Chain {
    let ledger = Ledger::init(path, genesis).unwrap();
    let time_ms = ledger.tip_header().timestamp_ms;
    Chain {
        _dir: None,
        ledger,
        keys,
        time_ms,
    }
}

pub fn no_verified(_: &sou_types::TxHash) -> bool {
    false
}

impl Chain {
    pub fn user(&self, i: usize) -> &Keypair {
        &self.keys.users[i]
    }

    pub fn addr(&self, i: usize) -> Address {
        self.keys.users[i].address()
    }

    /// The role holders of `asset` (USDT or EURC).
    pub fn roles(&self, asset: Symbol) -> &RoleKeys {
        if asset == eurc() {
            &self.keys.eurc
        } else {
            assert_eq!(asset, usdt(), "only USDT and EURC have roles");
            &self.keys.usdt
        }
    }

    /// A transaction from `key` with its next nonce.
    pub fn tx(&self, key: &Keypair, payload: Payload) -> SignedTransaction {
        let nonce = self.ledger.account(&key.address()).unwrap().nonce;
        self.tx_nonce(key, nonce, payload)
    }

    pub fn tx_nonce(&self, key: &Keypair, nonce: u64, payload: Payload) -> SignedTransaction {
        self.tx_expiring(key, nonce, self.ledger.tip().height + 100, payload)
    }

    /// A transaction that may be included up to `expiry_height`.
    pub fn tx_expiring(
        &self,
        key: &Keypair,
        nonce: u64,
        expiry_height: u64,
        payload: Payload,
    ) -> SignedTransaction {
        Transaction {
            chain_id: *self.ledger.chain_id(),
            sender: key.address(),
            nonce,
            max_fee: FEE,
            expiry_height,
            payload,
        }
        .sign(key)
    }

    /// Signs each payload with its key, numbering each sender's nonces on
    /// from its committed next nonce in list order.
    pub fn sign_all(&self, items: Vec<(&Keypair, Payload)>) -> Vec<SignedTransaction> {
        let mut next: BTreeMap<Address, u64> = BTreeMap::new();
        items
            .into_iter()
            .map(|(key, payload)| {
                let a = key.address();
                let n = *next
                    .entry(a)
                    .or_insert_with(|| self.ledger.account(&a).unwrap().nonce);
                next.insert(a, n + 1);
                self.tx_nonce(key, n, payload)
            })
            .collect()
    }

    /// Proposes a block of `txs` and commits it; returns the receipts and
    /// what was left out.
    pub fn block(&mut self, txs: Vec<SignedTransaction>) -> (ExecutedBlock, Applied) {
        self.time_ms += 500;
        let proposer = self.keys.validators[0].address();
        let (executed, applied) = self
            .ledger
            .propose(txs, proposer, self.time_ms, &no_verified)
            .unwrap();
        self.ledger.commit(&executed).unwrap();
        (executed, applied)
    }

    /// Runs one transaction in its own block and returns its receipt; it
    /// must pass the inclusion checks.
    pub fn run(&mut self, key: &Keypair, payload: Payload) -> Receipt {
        let tx = self.tx(key, payload);
        let (executed, applied) = self.block(vec![tx]);
        assert!(
            applied.invalid.is_empty(),
            "left out: {:?}",
            applied.invalid
        );
        executed.receipts[0].clone()
    }

    pub fn empty_blocks(&mut self, n: usize) {
        for _ in 0..n {
            self.block(vec![]);
        }
    }

    pub fn balance(&self, a: &Address, asset: Symbol) -> u128 {
        self.ledger.account(a).unwrap().balance(&asset).0
    }

    pub fn supply(&self, asset: Symbol) -> u128 {
        self.ledger.asset(&asset).unwrap().unwrap().supply.0
    }
}

pub fn transfer(to: Address, amount: u128) -> Payload {
    Payload::Transfer {
        asset: usdt(),
        to,
        amount: Amount(amount),
        memo: Memo::empty(),
    }
}

/// Asserts that a receipt failed, with `needle` in its reason.
pub fn assert_failed(r: &Receipt, needle: &str) {
    match &r.status {
        TxStatus::Failed { reason } => assert!(
            reason.contains(needle),
            "reason {reason:?} lacks {needle:?}"
        ),
        TxStatus::Success => panic!("expected a failure containing {needle:?}, got success"),
    }
    assert_eq!(r.fee, FEE, "a failed transaction is still charged");
}

pub fn assert_ok(r: &Receipt) {
    assert_eq!(r.status, TxStatus::Success, "receipt {r:?}");
}

/// Sum of every account's balance of each asset, read from the whole state.
pub fn balance_sums(ledger: &Ledger) -> BTreeMap<Symbol, u128> {
    let mut sums = BTreeMap::new();
    for (k, v) in ledger.store().state_entries().unwrap() {
        if k[0] == StateKey::Account(Address([0; 32])).encode()[0] {
            let acc: sou_ledger::state::Account = borsh::from_slice(&v).unwrap();
            for (s, a) in acc.balances {
                assert!(!a.is_zero(), "a zero balance is stored");
                *sums.entry(s).or_insert(0u128) += a.0;
            }
        }
    }
    sums
}

/// The state root recomputed from every state entry, from scratch.
pub fn full_state_root(ledger: &Ledger) -> sou_types::Hash {
    let mut h = LtHash::default();
    for (k, v) in ledger.store().state_entries().unwrap() {
        h.add(&k, &v);
    }
    h.root()
}

/// Every asset's supply equals the sum of all balances (so no balance
/// exceeds the supply).
pub fn assert_conserved(ledger: &Ledger) {
    let sums = balance_sums(ledger);
    for asset in [NATIVE, usdt(), eurc()] {
        let supply = ledger.asset(&asset).unwrap().unwrap().supply.0;
        assert_eq!(
            sums.get(&asset).copied().unwrap_or(0),
            supply,
            "{asset} supply is not the sum of balances"
        );
    }
}

/// Keypair is not Clone on purpose (it holds a secret); tests re-derive it.
pub trait CloneKey {
    fn clone_key(&self) -> Keypair;
}

impl CloneKey for Keypair {
    fn clone_key(&self) -> Keypair {
        Keypair::from_secret(self.secret_bytes())
    }
}

impl Chain {
    /// Runs a block in which `f` acts on the executor (slashing, jailing).
    pub fn with_block<T>(
        &mut self,
        f: impl FnOnce(&mut sou_ledger::BlockExecutor<'_, sou_ledger::Store>) -> T,
    ) -> T {
        self.time_ms += 500;
        let proposer = self.keys.validators[0].address();
        let mut exec = self.ledger.begin_block(proposer, self.time_ms).unwrap();
        let out = f(&mut exec);
        let executed = exec.finish().unwrap();
        self.ledger.commit(&executed).unwrap();
        out
    }

    /// Runs empty blocks until the tip is the last block of an epoch, then
    /// returns the epoch that starts next.
    pub fn run_to_epoch_end(&mut self) -> u64 {
        let len = self.ledger.params().epoch_length_blocks;
        while !self.ledger.tip().height.is_multiple_of(len) {
            self.block(vec![]);
        }
        self.ledger.tip().height / len
    }
}
