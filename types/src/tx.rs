//! Transactions: what a wallet signs and sends.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use borsh::{BorshDeserialize, BorshSerialize};

use crate::codec::{decode_bounded, encode, invalid, read_bounded_len, InlineStr};
use crate::crypto::serde_via_str;
use crate::hash::Domain;
use crate::limits::{MAX_BATCH_RECIPIENTS, MAX_CHAIN_ID_BYTES, MAX_MEMO_BYTES, MAX_TX_BYTES};
use crate::{Address, Amount, Error, Hash, Keypair, PublicKey, Result, Signature, Symbol};

/// Length of an encoded signature.
const SIGNATURE_BYTES: usize = 64;

/// Domain of transaction hashes; the signature is over the hash.
const TX_HASH_CONTEXT: &str = "sou transaction v1";

/// The hash that names a transaction and that its sender signs.
pub type TxHash = Hash;

/// The chain a transaction is meant for, so that it cannot be replayed on
/// another chain: 1 to 32 characters of `a-z`, `0-9` and `-`. Held inline:
/// every transaction carries one, and a heap string cost an allocation for
/// each transaction decoded, copied and dropped on the hot path. Encoded
/// and ordered as the string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainId(InlineStr<MAX_CHAIN_ID_BYTES>);

impl ChainId {
    pub fn new(s: &str) -> Result<ChainId> {
        let valid = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        match InlineStr::new(s) {
            Some(inline) if valid => Ok(ChainId(inline)),
            _ => Err(Error::ChainId {
                input: s.to_string(),
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialOrd for ChainId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ChainId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl BorshSerialize for ChainId {
    fn serialize<W: borsh::io::Write>(&self, w: &mut W) -> borsh::io::Result<()> {
        self.0.serialize(w)
    }
}

impl BorshDeserialize for ChainId {
    fn deserialize_reader<R: borsh::io::Read>(r: &mut R) -> borsh::io::Result<Self> {
        let raw = InlineStr::<MAX_CHAIN_ID_BYTES>::deserialize_reader(r)?;
        ChainId::new(raw.as_str()).map_err(|e| invalid(e.to_string()))
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChainId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ChainId::new(s)
    }
}

serde_via_str!(ChainId);

/// Free-form bytes attached to a transfer (an invoice number, a device id),
/// at most [`MAX_MEMO_BYTES`]. Empty means no memo.
#[derive(Clone, PartialEq, Eq, Default, BorshSerialize)]
pub struct Memo(Vec<u8>);

impl Memo {
    pub fn new(bytes: Vec<u8>) -> Result<Memo> {
        if bytes.len() > MAX_MEMO_BYTES {
            return Err(Error::MemoTooLong {
                len: bytes.len(),
                max: MAX_MEMO_BYTES,
            });
        }
        Ok(Memo(bytes))
    }

    pub fn empty() -> Memo {
        Memo(Vec::new())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl BorshDeserialize for Memo {
    fn deserialize_reader<R: borsh::io::Read>(r: &mut R) -> borsh::io::Result<Self> {
        let len = read_bounded_len(r, MAX_MEMO_BYTES)?;
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf)?;
        Ok(Memo(buf))
    }
}

impl fmt::Debug for Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "0x{}", hex::encode(&self.0)),
        }
    }
}

/// One recipient of a batch transfer.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Payout {
    pub to: Address,
    pub amount: Amount,
}

/// The recipients of a batch transfer: 1 to [`MAX_BATCH_RECIPIENTS`].
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize)]
pub struct Payouts(Vec<Payout>);

impl Payouts {
    pub fn new(payouts: Vec<Payout>) -> Result<Payouts> {
        if payouts.is_empty() || payouts.len() > MAX_BATCH_RECIPIENTS {
            return Err(Error::Decode(format!(
                "a batch transfer has 1 to {MAX_BATCH_RECIPIENTS} recipients, not {}",
                payouts.len()
            )));
        }
        Ok(Payouts(payouts))
    }

    pub fn as_slice(&self) -> &[Payout] {
        &self.0
    }
}

impl BorshDeserialize for Payouts {
    fn deserialize_reader<R: borsh::io::Read>(r: &mut R) -> borsh::io::Result<Self> {
        let len = read_bounded_len(r, MAX_BATCH_RECIPIENTS)?;
        if len == 0 {
            return Err(invalid("a batch transfer has no recipients"));
        }
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            v.push(Payout::deserialize_reader(r)?);
        }
        Ok(Payouts(v))
    }
}

/// What a transaction does. Each kind names the role whose signature it
/// needs; the ledger checks that the sender holds it.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub enum Payload {
    /// Move `amount` of `asset` from the sender to `to`.
    Transfer {
        asset: Symbol,
        to: Address,
        amount: Amount,
        memo: Memo,
    },
    /// Pay many recipients at once (payouts), all or nothing.
    BatchTransfer {
        asset: Symbol,
        payouts: Payouts,
        memo: Memo,
    },
    /// Create `amount` new units for `to`; the sender must be a minter of the
    /// asset with at least that much allowance left.
    Mint {
        asset: Symbol,
        to: Address,
        amount: Amount,
    },
    /// Destroy `amount` of the sender's own balance; the sender must be a minter.
    Burn { asset: Symbol, amount: Amount },
    /// Make `minter` a minter with `allowance` (master minter only).
    ConfigureMinter {
        asset: Symbol,
        minter: Address,
        allowance: Amount,
    },
    /// Take the minter role away (master minter only).
    RemoveMinter { asset: Symbol, minter: Address },
    /// Stop `address` from sending or receiving the asset (freezer only).
    Freeze { asset: Symbol, address: Address },
    /// Lift a freeze (freezer only).
    Unfreeze { asset: Symbol, address: Address },
    /// Move a frozen address's whole balance to the issuer (issuer only).
    Seize { asset: Symbol, address: Address },
    /// Stop every transfer of the asset (pauser only).
    Pause { asset: Symbol },
    /// Allow transfers again (pauser only).
    Unpause { asset: Symbol },
    /// Make the sender a validator candidate with this consensus key and a
    /// commission on its delegators' rewards, in basis points.
    RegisterValidator {
        consensus_key: PublicKey,
        commission_bps: u16,
    },
    /// Bond `amount` of the native token to `validator`.
    Bond { validator: Address, amount: Amount },
    /// Start unbonding `amount` from `validator`; it becomes withdrawable
    /// after the unbonding period and stays slashable until then.
    Unbond { validator: Address, amount: Amount },
    /// Pay out the sender's matured unbonding entries from `validator`.
    Withdraw { validator: Address },
    /// Pay out the sender's accrued fee rewards from `validator`.
    ClaimRewards { validator: Address },
    /// Ask to leave jail once the jail period is over (the validator only).
    Unjail,
}

impl Payload {
    /// Every address this transaction moves funds to or changes, other than
    /// the sender: what an explorer lists it under.
    pub fn counterparties(&self) -> impl Iterator<Item = Address> + '_ {
        // (No allocation: executing and indexing a block ask for every
        // transaction's counterparties.)
        let (one, many): (Option<&Address>, &[Payout]) = match self {
            Payload::Transfer { to, .. } | Payload::Mint { to, .. } => (Some(to), &[]),
            Payload::BatchTransfer { payouts, .. } => (None, payouts.as_slice()),
            Payload::ConfigureMinter { minter, .. } | Payload::RemoveMinter { minter, .. } => {
                (Some(minter), &[])
            }
            Payload::Freeze { address, .. }
            | Payload::Unfreeze { address, .. }
            | Payload::Seize { address, .. } => (Some(address), &[]),
            Payload::Bond { validator, .. }
            | Payload::Unbond { validator, .. }
            | Payload::Withdraw { validator }
            | Payload::ClaimRewards { validator } => (Some(validator), &[]),
            Payload::Burn { .. }
            | Payload::Pause { .. }
            | Payload::Unpause { .. }
            | Payload::RegisterValidator { .. }
            | Payload::Unjail => (None, &[]),
        };
        one.copied().into_iter().chain(many.iter().map(|p| p.to))
    }

    /// A short name of the kind, for receipts, logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Transfer { .. } => "transfer",
            Payload::BatchTransfer { .. } => "batch_transfer",
            Payload::Mint { .. } => "mint",
            Payload::Burn { .. } => "burn",
            Payload::ConfigureMinter { .. } => "configure_minter",
            Payload::RemoveMinter { .. } => "remove_minter",
            Payload::Freeze { .. } => "freeze",
            Payload::Unfreeze { .. } => "unfreeze",
            Payload::Seize { .. } => "seize",
            Payload::Pause { .. } => "pause",
            Payload::Unpause { .. } => "unpause",
            Payload::RegisterValidator { .. } => "register_validator",
            Payload::Bond { .. } => "bond",
            Payload::Unbond { .. } => "unbond",
            Payload::Withdraw { .. } => "withdraw",
            Payload::ClaimRewards { .. } => "claim_rewards",
            Payload::Unjail => "unjail",
        }
    }
}

/// An unsigned transaction.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    pub chain_id: ChainId,
    pub sender: Address,
    /// The sender's next nonce: each account's transactions execute in
    /// nonce order, each nonce once.
    pub nonce: u64,
    /// The most the sender will pay in fees, in base units of the fee asset.
    pub max_fee: Amount,
    /// The last block height at which this transaction may be included.
    pub expiry_height: u64,
    pub payload: Payload,
}

impl Transaction {
    /// The transaction's hash: its name, and the message its sender signs.
    pub fn hash(&self) -> TxHash {
        self.hash_and_len().0
    }

    /// The hash and the length of the signed encoding, from one encoding.
    pub fn hash_and_len(&self) -> (TxHash, usize) {
        static DOMAIN: LazyLock<Domain> = LazyLock::new(|| Domain::new(TX_HASH_CONTEXT));
        let bytes = encode(self);
        (DOMAIN.hash(&bytes), bytes.len() + SIGNATURE_BYTES)
    }

    /// Signs with `key`, which must be the sender's.
    pub fn sign(self, key: &Keypair) -> SignedTransaction {
        let hash = self.hash();
        SignedTransaction {
            signature: key.sign(&hash),
            tx: self,
        }
    }
}

/// A transaction with its sender's signature over [`Transaction::hash`].
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

impl SignedTransaction {
    /// Decodes a signed transaction from untrusted bytes: at most
    /// [`MAX_TX_BYTES`], no trailing bytes, every field within its limit.
    pub fn decode(bytes: &[u8]) -> Result<SignedTransaction> {
        decode_bounded(bytes, MAX_TX_BYTES)
    }

    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    pub fn hash(&self) -> TxHash {
        self.tx.hash()
    }

    /// The hash and the encoded length, computed together.
    pub fn hash_and_len(&self) -> (TxHash, usize) {
        self.tx.hash_and_len()
    }

    /// Checks the signature on its own (the mempool verifies in batches).
    pub fn verify_signature(&self) -> Result<()> {
        self.tx
            .sender
            .public_key()
            .verify(&self.hash(), &self.signature)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::asset::NATIVE;
    use proptest::prelude::*;

    /// Strategies for the wire types, every variant of each; `block`'s
    /// tests use them too.
    pub(crate) mod arb {
        use super::*;
        use crate::limits::MAX_SYMBOL_BYTES;
        use proptest::collection::vec;

        pub fn address() -> impl Strategy<Value = Address> {
            any::<[u8; 32]>().prop_map(Address)
        }

        pub fn hash() -> impl Strategy<Value = Hash> {
            any::<[u8; 32]>().prop_map(Hash)
        }

        pub fn public_key() -> impl Strategy<Value = PublicKey> {
            any::<[u8; 32]>().prop_map(PublicKey)
        }

        pub fn signature() -> impl Strategy<Value = Signature> {
            (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
                let mut s = [0u8; SIGNATURE_BYTES];
                s[..32].copy_from_slice(&a);
                s[32..].copy_from_slice(&b);
                Signature(s)
            })
        }

        pub fn amount() -> impl Strategy<Value = Amount> {
            prop_oneof![any::<u128>(), Just(0), Just(u128::MAX)].prop_map(Amount)
        }

        pub fn symbol() -> impl Strategy<Value = Symbol> {
            let pattern = format!("[A-Z][A-Z0-9]{{0,{}}}", MAX_SYMBOL_BYTES - 1);
            proptest::string::string_regex(&pattern)
                .unwrap()
                .prop_map(|s| Symbol::new(&s).unwrap())
        }

        pub fn chain_id() -> impl Strategy<Value = ChainId> {
            let pattern = format!("[a-z0-9-]{{1,{MAX_CHAIN_ID_BYTES}}}");
            proptest::string::string_regex(&pattern)
                .unwrap()
                .prop_map(|s| ChainId::new(&s).unwrap())
        }

        pub fn memo() -> impl Strategy<Value = Memo> {
            vec(any::<u8>(), 0..=MAX_MEMO_BYTES).prop_map(|b| Memo::new(b).unwrap())
        }

        /// 1 to 8 recipients, sometimes the most the wire format allows.
        pub fn payouts() -> impl Strategy<Value = Payouts> {
            let len = prop_oneof![9 => 1usize..=8, 1 => Just(MAX_BATCH_RECIPIENTS)];
            len.prop_flat_map(|n| vec((address(), amount()), n))
                .prop_map(|v| {
                    Payouts::new(
                        v.into_iter()
                            .map(|(to, amount)| Payout { to, amount })
                            .collect(),
                    )
                    .unwrap()
                })
        }

        pub fn payload() -> impl Strategy<Value = Payload> {
            prop_oneof![
                (symbol(), address(), amount(), memo()).prop_map(|(asset, to, amount, memo)| {
                    Payload::Transfer {
                        asset,
                        to,
                        amount,
                        memo,
                    }
                }),
                (symbol(), payouts(), memo()).prop_map(|(asset, payouts, memo)| {
                    Payload::BatchTransfer {
                        asset,
                        payouts,
                        memo,
                    }
                }),
                (symbol(), address(), amount()).prop_map(|(asset, to, amount)| Payload::Mint {
                    asset,
                    to,
                    amount
                }),
                (symbol(), amount()).prop_map(|(asset, amount)| Payload::Burn { asset, amount }),
                (symbol(), address(), amount()).prop_map(|(asset, minter, allowance)| {
                    Payload::ConfigureMinter {
                        asset,
                        minter,
                        allowance,
                    }
                }),
                (symbol(), address())
                    .prop_map(|(asset, minter)| Payload::RemoveMinter { asset, minter }),
                (symbol(), address())
                    .prop_map(|(asset, address)| Payload::Freeze { asset, address }),
                (symbol(), address())
                    .prop_map(|(asset, address)| Payload::Unfreeze { asset, address }),
                (symbol(), address())
                    .prop_map(|(asset, address)| Payload::Seize { asset, address }),
                symbol().prop_map(|asset| Payload::Pause { asset }),
                symbol().prop_map(|asset| Payload::Unpause { asset }),
                (public_key(), any::<u16>()).prop_map(|(consensus_key, commission_bps)| {
                    Payload::RegisterValidator {
                        consensus_key,
                        commission_bps,
                    }
                }),
                (address(), amount())
                    .prop_map(|(validator, amount)| Payload::Bond { validator, amount }),
                (address(), amount())
                    .prop_map(|(validator, amount)| Payload::Unbond { validator, amount }),
                address().prop_map(|validator| Payload::Withdraw { validator }),
                address().prop_map(|validator| Payload::ClaimRewards { validator }),
                Just(Payload::Unjail),
            ]
        }

        pub fn transaction() -> impl Strategy<Value = Transaction> {
            (
                chain_id(),
                address(),
                any::<u64>(),
                amount(),
                any::<u64>(),
                payload(),
            )
                .prop_map(
                    |(chain_id, sender, nonce, max_fee, expiry_height, payload)| Transaction {
                        chain_id,
                        sender,
                        nonce,
                        max_fee,
                        expiry_height,
                        payload,
                    },
                )
        }

        /// A transaction with an arbitrary (not a valid) signature.
        pub fn signed() -> impl Strategy<Value = SignedTransaction> {
            (transaction(), signature())
                .prop_map(|(tx, signature)| SignedTransaction { tx, signature })
        }
    }

    /// The position of `p`'s variant. Exhaustive on purpose: a new variant
    /// does not compile here until it is counted, and then
    /// `the_payload_strategy_makes_every_variant` fails until
    /// [`arb::payload`] makes it.
    fn variant(p: &Payload) -> usize {
        match p {
            Payload::Transfer { .. } => 0,
            Payload::BatchTransfer { .. } => 1,
            Payload::Mint { .. } => 2,
            Payload::Burn { .. } => 3,
            Payload::ConfigureMinter { .. } => 4,
            Payload::RemoveMinter { .. } => 5,
            Payload::Freeze { .. } => 6,
            Payload::Unfreeze { .. } => 7,
            Payload::Seize { .. } => 8,
            Payload::Pause { .. } => 9,
            Payload::Unpause { .. } => 10,
            Payload::RegisterValidator { .. } => 11,
            Payload::Bond { .. } => 12,
            Payload::Unbond { .. } => 13,
            Payload::Withdraw { .. } => 14,
            Payload::ClaimRewards { .. } => 15,
            Payload::Unjail => 16,
        }
    }
    const VARIANTS: usize = 17;

    #[test]
    fn the_payload_strategy_makes_every_variant() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = arb::payload();
        let mut seen = [false; VARIANTS];
        for _ in 0..2_000 {
            let p = strategy.new_tree(&mut runner).unwrap().current();
            seen[variant(&p)] = true;
        }
        let missing: Vec<usize> = (0..VARIANTS).filter(|&i| !seen[i]).collect();
        assert!(missing.is_empty(), "variants never made: {missing:?}");
    }

    #[test]
    fn hashes_are_pinned() {
        // The transaction hash is what wallets sign and what names a
        // transaction everywhere: it may change only with a new version of
        // the encoding (and its hash context). Update these only then.
        let s = sample(1, b"inv-42".to_vec());
        assert_eq!(
            s.hash().to_string(),
            "0xfe6c5bcfe3d7d9d4d22913e5dabc27158a479574b76737b73d9129a1fb0bd45a"
        );
        assert_eq!(s.encode().len(), 207);
    }

    fn sample(nonce: u64, memo: Vec<u8>) -> SignedTransaction {
        let k = Keypair::derive_insecure(9, "sender");
        Transaction {
            chain_id: ChainId::new("sou-test").unwrap(),
            sender: k.address(),
            nonce,
            max_fee: Amount(10),
            expiry_height: 100,
            payload: Payload::Transfer {
                asset: Symbol::new("USDT").unwrap(),
                to: Keypair::derive_insecure(9, "to").address(),
                amount: Amount(5),
                memo: Memo::new(memo).unwrap(),
            },
        }
        .sign(&k)
    }

    #[test]
    fn signed_round_trip_and_verify() {
        let s = sample(1, b"inv-42".to_vec());
        let bytes = s.encode();
        let back = SignedTransaction::decode(&bytes).unwrap();
        assert_eq!(back, s);
        back.verify_signature().unwrap();
        assert_eq!(back.hash_and_len(), (back.hash(), bytes.len()));
        let mut tampered = back;
        tampered.tx.nonce = 2;
        assert!(tampered.verify_signature().is_err());
    }

    #[test]
    fn size_limit_checked_before_decoding() {
        let big = vec![0u8; MAX_TX_BYTES + 1];
        assert_eq!(
            SignedTransaction::decode(&big),
            Err(Error::TooLarge {
                len: MAX_TX_BYTES + 1,
                max: MAX_TX_BYTES
            })
        );
    }

    #[test]
    fn trailing_bytes_and_long_memo_refused() {
        let mut bytes = sample(1, vec![]).encode();
        bytes.push(0);
        assert!(SignedTransaction::decode(&bytes).is_err());
        assert!(Memo::new(vec![0; 33]).is_err());
        // A memo over the limit smuggled into the encoding is refused too.
        let mut raw = sample(1, vec![7; 32]).encode();
        let pos = raw
            .windows(4)
            .position(|w| w == 32u32.to_le_bytes())
            .unwrap();
        raw[pos] = 33;
        raw.insert(pos + 4, 7);
        assert!(SignedTransaction::decode(&raw).is_err());
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // A batch transfer claiming u32::MAX recipients is refused at the length.
        let k = Keypair::derive_insecure(9, "sender");
        let tx = Transaction {
            chain_id: ChainId::new("c").unwrap(),
            sender: k.address(),
            nonce: 0,
            max_fee: Amount(1),
            expiry_height: 1,
            payload: Payload::BatchTransfer {
                asset: NATIVE,
                payouts: Payouts::new(vec![Payout {
                    to: k.address(),
                    amount: Amount(1),
                }])
                .unwrap(),
                memo: Memo::empty(),
            },
        }
        .sign(&k);
        let mut raw = tx.encode();
        let pos = raw
            .windows(4)
            .position(|w| w == 1u32.to_le_bytes())
            .unwrap();
        raw[pos..pos + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(SignedTransaction::decode(&raw).is_err());
    }

    /// Applies `edits` to `raw`: (position, byte, kind), where kind 0
    /// overwrites a byte, 1 inserts one, 2 deletes one and 3 truncates.
    pub(crate) fn mutate(mut raw: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
        for &(pos, byte, kind) in edits {
            let i = pos % (raw.len() + 1);
            match kind {
                0 if i < raw.len() => raw[i] = byte,
                1 => raw.insert(i, byte),
                2 if i < raw.len() => {
                    raw.remove(i);
                }
                3 => raw.truncate(i),
                _ => {}
            }
        }
        raw
    }

    #[test]
    fn chain_id_rules() {
        assert!(ChainId::new("sou-devnet-1").is_ok());
        for bad in ["", "Sou", "a b", &"x".repeat(33)] {
            assert!(ChainId::new(bad).is_err(), "{bad:?}");
        }
        let longest = "z".repeat(32);
        assert_eq!(ChainId::new(&longest).unwrap().as_str(), longest);
    }

    #[test]
    fn a_chain_id_is_encoded_and_ordered_as_its_string() {
        for s in ["a", "sou-devnet-1", &"9".repeat(32)] {
            let id = ChainId::new(s).unwrap();
            assert_eq!(
                borsh::to_vec(&id).unwrap(),
                borsh::to_vec(&s.to_string()).unwrap()
            );
            assert_eq!(
                borsh::from_slice::<ChainId>(&borsh::to_vec(&id).unwrap()).unwrap(),
                id
            );
        }
        // Shorter is not smaller: "b" sorts after "ab", as strings do.
        assert!(ChainId::new("b").unwrap() > ChainId::new("ab").unwrap());
        // A length over the limit is refused before anything is read.
        let mut long = borsh::to_vec(&"x".repeat(33)).unwrap();
        long.truncate(4);
        assert!(borsh::from_slice::<ChainId>(&long).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SignedTransaction::decode(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(nonce: u64, flip in 0usize..400, val: u8) {
            let mut raw = sample(nonce, b"m".to_vec()).encode();
            let i = flip % raw.len();
            raw[i] = val;
            if let Ok(tx) = SignedTransaction::decode(&raw) {
                // Whatever decodes must re-encode to the same bytes.
                prop_assert_eq!(tx.encode(), raw);
            }
        }

        #[test]
        fn every_payload_round_trips_with_a_stable_hash(tx in arb::signed()) {
            let bytes = tx.encode();
            let back = SignedTransaction::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &tx);
            prop_assert_eq!(&back.encode(), &bytes);
            prop_assert_eq!(back.hash(), tx.hash());
            prop_assert_eq!(back.hash_and_len(), (tx.hash(), bytes.len()));
            // The payload alone round-trips too.
            let payload = encode(&tx.tx.payload);
            prop_assert_eq!(&decode_bounded::<Payload>(&payload, MAX_TX_BYTES).unwrap(), &tx.tx.payload);
            // The hash covers the signed fields: another nonce, another hash.
            let mut other = tx.tx.clone();
            other.nonce = other.nonce.wrapping_add(1);
            prop_assert_ne!(other.hash(), tx.hash());
        }

        #[test]
        fn a_signature_verifies_only_its_own_transaction(tx in arb::transaction(), seed: u64) {
            let key = Keypair::derive_insecure(seed, "arb");
            let mut tx = tx;
            tx.sender = key.address();
            let signed = tx.sign(&key);
            let back = SignedTransaction::decode(&signed.encode()).unwrap();
            prop_assert!(back.verify_signature().is_ok());
            let mut tampered = back;
            tampered.tx.expiry_height = tampered.tx.expiry_height.wrapping_add(1);
            prop_assert!(tampered.verify_signature().is_err());
        }

        #[test]
        fn mutated_payloads_never_panic(tx in arb::signed(), edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..4)) {
            let raw = mutate(tx.encode(), &edits);
            if let Ok(back) = SignedTransaction::decode(&raw) {
                prop_assert_eq!(back.encode(), raw);
            }
        }

        #[test]
        fn encode_decode_round_trip(nonce: u64, fee: u128, expiry: u64, amount: u128,
                                    memo in proptest::collection::vec(any::<u8>(), 0..=32)) {
            let k = Keypair::derive_insecure(1, "p");
            let tx = Transaction {
                chain_id: ChainId::new("sou-prop").unwrap(),
                sender: k.address(),
                nonce,
                max_fee: Amount(fee),
                expiry_height: expiry,
                payload: Payload::Transfer {
                    asset: NATIVE,
                    to: k.address(),
                    amount: Amount(amount),
                    memo: Memo::new(memo).unwrap(),
                },
            }.sign(&k);
            prop_assert_eq!(SignedTransaction::decode(&tx.encode()).unwrap(), tx);
        }
    }
}
