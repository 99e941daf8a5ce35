//! Blocks: a header that links to its parent by hash and commits to its
//! transactions and to the state after executing them.

use std::sync::LazyLock;

use borsh::{BorshDeserialize, BorshSerialize};

use crate::codec::{decode_bounded, encode};
use crate::hash::{merkle_root, Domain};
use crate::limits::MAX_BLOCK_BYTES;
use crate::{Address, ChainId, Hash, PublicKey, Result, SignedTransaction, TxHash};

/// Domain of block hashes.
const BLOCK_HASH_CONTEXT: &str = "sou block header v1";

/// The hash of a block's header, which names the block.
pub type BlockHash = Hash;

#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct BlockHeader {
    pub chain_id: ChainId,
    /// Genesis is height 0; the first block is height 1.
    pub height: u64,
    /// Hash of the block at `height - 1` (the genesis hash for height 1).
    pub parent: BlockHash,
    /// The validator (operator address) that proposed the block.
    pub proposer: Address,
    /// Milliseconds since the Unix epoch, set by the proposer.
    pub timestamp_ms: u64,
    /// Merkle root of the transaction hashes, in block order.
    pub tx_root: Hash,
    /// Merkle root of the evidence hashes, in block order.
    pub evidence_root: Hash,
    /// The state root after executing this block.
    pub state_root: Hash,
}

impl BlockHeader {
    pub fn hash(&self) -> BlockHash {
        static DOMAIN: LazyLock<Domain> = LazyLock::new(|| Domain::new(BLOCK_HASH_CONTEXT));
        DOMAIN.hash(&encode(self))
    }
}

#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub transactions: Vec<SignedTransaction>,
    /// Proofs of validator misbehaviour, for the ledger to slash.
    pub evidence: Vec<Misbehaviour>,
}

/// A block as proposers gossip it: the header and the transactions'
/// hashes, which peers fill from their mempools (they already received the
/// transactions themselves through gossip), fetching the whole block only
/// when some are missing.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct CompactBlock {
    pub header: BlockHeader,
    pub tx_hashes: Vec<TxHash>,
    pub evidence: Vec<Misbehaviour>,
}

impl CompactBlock {
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    /// Decodes from untrusted bytes, at most [`MAX_BLOCK_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<CompactBlock> {
        decode_bounded(bytes, MAX_BLOCK_BYTES)
    }

    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Whether the hashes and evidence are those the header commits to.
    pub fn roots_match(&self) -> bool {
        tx_root(&self.tx_hashes) == self.header.tx_root
            && evidence_root(&self.evidence) == self.header.evidence_root
    }

    /// The whole block, with transactions from `lookup`; or the hashes it
    /// could not find. Transactions are copied only when all are found.
    pub fn fill<'a>(
        &self,
        lookup: impl Fn(&TxHash) -> Option<&'a SignedTransaction>,
    ) -> std::result::Result<Block, Vec<TxHash>> {
        let mut found = Vec::with_capacity(self.tx_hashes.len());
        let mut missing = Vec::new();
        for h in &self.tx_hashes {
            match lookup(h) {
                Some(tx) => found.push(tx),
                None => missing.push(*h),
            }
        }
        if !missing.is_empty() {
            return Err(missing);
        }
        Ok(Block {
            header: self.header.clone(),
            transactions: found.into_iter().cloned().collect(),
            evidence: self.evidence.clone(),
        })
    }
}

/// Proof that a validator misbehaved (signed two conflicting consensus
/// votes), carried in a block so that the ledger slashes the offender.
///
/// The ledger does not read consensus messages: the node checks `proof`
/// with the consensus rules and the validator set of `epoch`, and the
/// ledger slashes the validator whose consensus key is `offender`.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Misbehaviour {
    /// The epoch whose validator set the offender signed in.
    pub epoch: u64,
    /// The offender's consensus key.
    pub offender: PublicKey,
    /// The evidence's stable id (what the ledger records to slash once).
    pub id: Hash,
    /// The evidence as consensus encodes it.
    pub proof: Vec<u8>,
}

impl Misbehaviour {
    pub fn hash(&self) -> Hash {
        Hash::domain("sou misbehaviour v1", &encode(self))
    }
}

/// The evidence root of a block with this evidence.
pub fn evidence_root(evidence: &[Misbehaviour]) -> Hash {
    let hashes: Vec<Hash> = evidence.iter().map(Misbehaviour::hash).collect();
    merkle_root(&hashes)
}

impl Block {
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    pub fn height(&self) -> u64 {
        self.header.height
    }

    /// Decodes a block from untrusted bytes, at most [`MAX_BLOCK_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Block> {
        decode_bounded(bytes, MAX_BLOCK_BYTES)
    }

    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// The block as proposers gossip it (see [`CompactBlock`]).
    pub fn compact(&self) -> CompactBlock {
        CompactBlock {
            header: self.header.clone(),
            tx_hashes: self.tx_hashes(),
            evidence: self.evidence.clone(),
        }
    }

    /// The transaction hashes in block order.
    pub fn tx_hashes(&self) -> Vec<TxHash> {
        self.transactions
            .iter()
            .map(SignedTransaction::hash)
            .collect()
    }
}

/// The transactions root of a block with these transaction hashes.
pub fn tx_root(hashes: &[TxHash]) -> Hash {
    merkle_root(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::tests::{arb, mutate};
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn misbehaviour() -> impl Strategy<Value = Misbehaviour> {
        (
            any::<u64>(),
            arb::public_key(),
            arb::hash(),
            vec(any::<u8>(), 0..64),
        )
            .prop_map(|(epoch, offender, id, proof)| Misbehaviour {
                epoch,
                offender,
                id,
                proof,
            })
    }

    fn block_header() -> impl Strategy<Value = BlockHeader> {
        (
            arb::chain_id(),
            any::<u64>(),
            arb::hash(),
            arb::address(),
            any::<u64>(),
            (arb::hash(), arb::hash(), arb::hash()),
        )
            .prop_map(
                |(chain_id, height, parent, proposer, timestamp_ms, roots)| BlockHeader {
                    chain_id,
                    height,
                    parent,
                    proposer,
                    timestamp_ms,
                    tx_root: roots.0,
                    evidence_root: roots.1,
                    state_root: roots.2,
                },
            )
    }

    /// A block whose header commits to its transactions and evidence.
    fn block() -> impl Strategy<Value = Block> {
        (
            block_header(),
            vec(arb::signed(), 0..4),
            vec(misbehaviour(), 0..3),
        )
            .prop_map(|(mut header, transactions, evidence)| {
                let hashes: Vec<TxHash> =
                    transactions.iter().map(SignedTransaction::hash).collect();
                header.tx_root = tx_root(&hashes);
                header.evidence_root = evidence_root(&evidence);
                Block {
                    header,
                    transactions,
                    evidence,
                }
            })
    }

    /// Where each edit of [`mutate`] applies, how, and with which byte.
    fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
        vec((any::<usize>(), any::<u8>(), 0u8..4), 1..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn blocks_round_trip_with_stable_hashes(b in block()) {
            let bytes = b.encode();
            let back = Block::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &b);
            prop_assert_eq!(back.encode(), bytes);
            prop_assert_eq!(back.hash(), b.hash());
            prop_assert_eq!(back.hash(), b.header.hash());
            prop_assert_eq!(back.tx_hashes(), b.tx_hashes());
            for (m, n) in back.evidence.iter().zip(&b.evidence) {
                prop_assert_eq!(m.hash(), n.hash());
            }
        }

        #[test]
        fn compact_blocks_round_trip_and_fill_back_to_the_block(b in block()) {
            let compact = b.compact();
            let bytes = compact.encode();
            let back = CompactBlock::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &compact);
            prop_assert_eq!(back.encode(), bytes);
            prop_assert_eq!(back.hash(), b.hash());
            prop_assert!(back.roots_match());
            let pool: std::collections::HashMap<TxHash, SignedTransaction> =
                b.transactions.iter().map(|t| (t.hash(), t.clone())).collect();
            prop_assert_eq!(back.fill(|h| pool.get(h)).unwrap(), b);
        }

        #[test]
        fn headers_and_evidence_round_trip(h in block_header(), m in misbehaviour()) {
            let back: BlockHeader = decode_bounded(&encode(&h), MAX_BLOCK_BYTES).unwrap();
            prop_assert_eq!(back.hash(), h.hash());
            prop_assert_eq!(back, h);
            let back: Misbehaviour = decode_bounded(&encode(&m), MAX_BLOCK_BYTES).unwrap();
            prop_assert_eq!(back.hash(), m.hash());
            prop_assert_eq!(back, m);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..2_000)) {
            // Whatever decodes must be the one encoding of what it decoded to.
            if let Ok(b) = Block::decode(&bytes) {
                prop_assert_eq!(b.encode(), bytes.clone());
            }
            if let Ok(c) = CompactBlock::decode(&bytes) {
                prop_assert_eq!(c.encode(), bytes.clone());
            }
            if let Ok(h) = decode_bounded::<BlockHeader>(&bytes, MAX_BLOCK_BYTES) {
                prop_assert_eq!(encode(&h), bytes.clone());
            }
            if let Ok(m) = decode_bounded::<Misbehaviour>(&bytes, MAX_BLOCK_BYTES) {
                prop_assert_eq!(encode(&m), bytes);
            }
        }

        #[test]
        fn mutated_blocks_never_panic(b in block(), edits in edits()) {
            let raw = mutate(b.encode(), &edits);
            if let Ok(back) = Block::decode(&raw) {
                prop_assert_eq!(back.encode(), raw);
            }
        }

        #[test]
        fn mutated_compact_blocks_never_panic(b in block(), edits in edits()) {
            let raw = mutate(b.compact().encode(), &edits);
            if let Ok(back) = CompactBlock::decode(&raw) {
                prop_assert_eq!(back.encode(), raw);
            }
        }
    }

    #[test]
    fn huge_declared_lengths_fail_without_allocating() {
        // A block claiming u32::MAX transactions, and one whose evidence
        // claims a proof of u32::MAX bytes: both end long before that.
        let b = Block {
            header: header(1),
            transactions: vec![],
            evidence: vec![],
        };
        let mut raw = b.encode();
        let n = raw.len();
        // The encoding ends with the two vectors' lengths, both 0.
        assert_eq!(raw[n - 8..], [0; 8]);
        raw[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Block::decode(&raw), Err(crate::Error::Decode(_))));
        assert!(matches!(
            CompactBlock::decode(&raw),
            Err(crate::Error::Decode(_))
        ));

        let m = Misbehaviour {
            epoch: 0,
            offender: PublicKey([1; 32]),
            id: Hash::ZERO,
            proof: vec![],
        };
        let b = Block {
            header: header(1),
            transactions: vec![],
            evidence: vec![m],
        };
        let mut raw = b.encode();
        let n = raw.len();
        raw[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Block::decode(&raw), Err(crate::Error::Decode(_))));
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let big = vec![0u8; MAX_BLOCK_BYTES + 1];
        let too_large = crate::Error::TooLarge {
            len: MAX_BLOCK_BYTES + 1,
            max: MAX_BLOCK_BYTES,
        };
        assert_eq!(Block::decode(&big).unwrap_err(), too_large);
        assert_eq!(CompactBlock::decode(&big).unwrap_err(), too_large);
    }

    #[test]
    fn header_hash_is_pinned() {
        // A block's hash names it on every node and in every certificate:
        // it may change only with a new version of the header encoding.
        assert_eq!(
            header(1).hash().to_string(),
            "0xe2da665f9973cc5a39c90817504c840cda484dcc7830c7a796fb297e66f07d5f"
        );
    }

    fn header(height: u64) -> BlockHeader {
        BlockHeader {
            chain_id: ChainId::new("sou-test").unwrap(),
            height,
            parent: Hash::ZERO,
            proposer: Address([1; 32]),
            timestamp_ms: 1_700_000_000_000,
            tx_root: tx_root(&[]),
            evidence_root: evidence_root(&[]),
            state_root: Hash::ZERO,
        }
    }

    #[test]
    fn hash_covers_every_field() {
        let h = header(1);
        let mut other = h.clone();
        other.timestamp_ms += 1;
        assert_ne!(h.hash(), other.hash());
        let mut other = h.clone();
        other.parent = Hash([9; 32]);
        assert_ne!(h.hash(), other.hash());
    }

    #[test]
    fn a_compact_block_fills_from_a_pool_or_names_what_is_missing() {
        use crate::{Keypair, Transaction};
        let key = Keypair::derive_insecure(1, "compact");
        let txs: Vec<SignedTransaction> = (0..3)
            .map(|n| {
                Transaction {
                    chain_id: ChainId::new("sou-test").unwrap(),
                    sender: key.address(),
                    nonce: n,
                    max_fee: crate::Amount(1),
                    expiry_height: 10,
                    payload: crate::Payload::Unjail,
                }
                .sign(&key)
            })
            .collect();
        let mut h = header(2);
        h.tx_root = tx_root(&txs.iter().map(SignedTransaction::hash).collect::<Vec<_>>());
        let b = Block {
            header: h,
            transactions: txs.clone(),
            evidence: vec![],
        };
        let c = CompactBlock::decode(&b.compact().encode()).unwrap();
        assert!(c.roots_match());
        assert_eq!(c.hash(), b.hash());
        let pool: std::collections::HashMap<TxHash, SignedTransaction> =
            txs.iter().map(|t| (t.hash(), t.clone())).collect();
        assert_eq!(c.fill(|h| pool.get(h)).unwrap(), b);
        let missing = c
            .fill(|h| (*h != txs[1].hash()).then(|| pool.get(h)).flatten())
            .unwrap_err();
        assert_eq!(missing, vec![txs[1].hash()]);
        let mut forged = c;
        forged.tx_hashes.swap(0, 2);
        assert!(!forged.roots_match());
    }

    #[test]
    fn round_trip() {
        let b = Block {
            header: header(3),
            transactions: vec![],
            evidence: vec![],
        };
        assert_eq!(Block::decode(&b.encode()).unwrap(), b);
        assert!(Block::decode(&[1, 2, 3]).is_err());
    }
}
