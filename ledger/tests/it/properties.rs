//! Property tests over random sequences of transactions: supply is
//! conserved, the incremental state root equals a full recompute, a second
//! database fed the same blocks reaches the same roots, and no transaction
//! can be replayed.

use proptest::prelude::*;
use sou_types::asset::NATIVE;
use sou_types::{Amount, Memo, Payload, Payout, SignedTransaction};

use crate::support::*;

const USERS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        amount: u128,
        native: bool,
    },
    Batch {
        from: usize,
        amounts: Vec<(usize, u128)>,
    },
    Mint {
        to: usize,
        amount: u128,
    },
    Burn {
        amount: u128,
    },
    Freeze {
        who: usize,
        on: bool,
    },
    Pause {
        on: bool,
    },
    Seize {
        who: usize,
    },
    Bond {
        from: usize,
        amount: u128,
    },
    Unbond {
        from: usize,
        amount: u128,
    },
}

fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![0u128..1_000, 0u128..=USER_USDT * 2, Just(u128::MAX)]
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    prop_oneof![
        4 => (u.clone(), u.clone(), amount(), any::<bool>()).prop_map(|(from, to, amount, native)| Op::Transfer { from, to, amount, native }),
        1 => (u.clone(), prop::collection::vec((0..USERS, amount()), 1..4)).prop_map(|(from, amounts)| Op::Batch { from, amounts }),
        1 => (u.clone(), amount()).prop_map(|(to, amount)| Op::Mint { to, amount }),
        1 => amount().prop_map(|amount| Op::Burn { amount }),
        1 => (u.clone(), any::<bool>()).prop_map(|(who, on)| Op::Freeze { who, on }),
        1 => any::<bool>().prop_map(|on| Op::Pause { on }),
        1 => u.clone().prop_map(|who| Op::Seize { who }),
        1 => (u.clone(), amount()).prop_map(|(from, amount)| Op::Bond { from, amount }),
        1 => (u, amount()).prop_map(|(from, amount)| Op::Unbond { from, amount }),
    ]
}

/// Turns ops into signed transactions with the right nonces.
fn sign_block(c: &Chain, ops: &[Op]) -> Vec<SignedTransaction> {
    let mut nonces = std::collections::HashMap::new();
    let issuer = c.issuer().clone_key();
    let val = c.keys.validators[0].address();
    ops.iter()
        .map(|op| {
            let (key, payload) = match op {
                Op::Transfer {
                    from,
                    to,
                    amount,
                    native,
                } => (
                    c.user(*from).clone_key(),
                    Payload::Transfer {
                        asset: if *native { NATIVE } else { usdt() },
                        to: c.addr(*to),
                        amount: Amount(*amount),
                        memo: Memo::empty(),
                    },
                ),
                Op::Batch { from, amounts } => (
                    c.user(*from).clone_key(),
                    Payload::BatchTransfer {
                        asset: usdt(),
                        payouts: sou_types::tx::Payouts::new(
                            amounts
                                .iter()
                                .map(|(to, a)| Payout {
                                    to: c.addr(*to),
                                    amount: Amount(*a),
                                })
                                .collect(),
                        )
                        .unwrap(),
                        memo: Memo::empty(),
                    },
                ),
                Op::Mint { to, amount } => (
                    issuer.clone_key(),
                    Payload::Mint {
                        asset: usdt(),
                        to: c.addr(*to),
                        amount: Amount(*amount),
                    },
                ),
                Op::Burn { amount } => (
                    issuer.clone_key(),
                    Payload::Burn {
                        asset: usdt(),
                        amount: Amount(*amount),
                    },
                ),
                Op::Freeze { who, on: true } => (
                    issuer.clone_key(),
                    Payload::Freeze {
                        asset: usdt(),
                        address: c.addr(*who),
                    },
                ),
                Op::Freeze { who, on: false } => (
                    issuer.clone_key(),
                    Payload::Unfreeze {
                        asset: usdt(),
                        address: c.addr(*who),
                    },
                ),
                Op::Pause { on: true } => (issuer.clone_key(), Payload::Pause { asset: usdt() }),
                Op::Pause { on: false } => (issuer.clone_key(), Payload::Unpause { asset: usdt() }),
                Op::Seize { who } => (
                    issuer.clone_key(),
                    Payload::Seize {
                        asset: usdt(),
                        address: c.addr(*who),
                    },
                ),
                Op::Bond { from, amount } => (
                    c.user(*from).clone_key(),
                    Payload::Bond {
                        validator: val,
                        amount: Amount(*amount),
                    },
                ),
                Op::Unbond { from, amount } => (
                    c.user(*from).clone_key(),
                    Payload::Unbond {
                        validator: val,
                        amount: Amount(*amount),
                    },
                ),
            };
            let base = c.ledger.account(&key.address()).unwrap().nonce;
            let n = nonces.entry(key.address()).or_insert(base);
            let tx = c.tx_nonce(&key, *n, payload);
            *n += 1;
            tx
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_blocks_conserve_supply_and_agree_on_roots(blocks in prop::collection::vec(prop::collection::vec(op(), 0..8), 1..7)) {
        let mut a = chain(USERS);
        let b = chain(USERS);
        let mut all = Vec::new();
        for ops in &blocks {
            let txs = sign_block(&a, ops);
            let (executed, _) = a.block(txs);
            all.extend(executed.block.transactions.iter().cloned());
            // Supply conserved, no zero balances stored (checked inside).
            assert_conserved(&a.ledger);
            // The incremental root is the root of the whole state.
            prop_assert_eq!(full_state_root(&a.ledger), a.ledger.state_root());
            // A fresh database fed the same block reaches the same root.
            let again = b.ledger.execute(executed.block.clone(), &no_verified).unwrap();
            prop_assert_eq!(again.state_root(), executed.state_root());
            b.ledger.commit(&again).unwrap();
        }
        // Nothing already executed can be replayed.
        let (replayed, applied) = a.block(all.clone());
        prop_assert!(replayed.receipts.is_empty());
        let all_used = applied.invalid.iter().all(|(_, r)| matches!(r, sou_ledger::InvalidTx::NonceUsed { .. }));
        prop_assert!(all_used, "replays refused for other reasons: {:?}", applied.invalid);
        prop_assert_eq!(applied.invalid.len(), all.len());
    }
}
