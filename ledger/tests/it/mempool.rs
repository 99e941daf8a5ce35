//! Mempool admission rules and selection.

use sou_ledger::{AdmitError, InvalidTx, Mempool, MempoolConfig, RecentlyVerified};
use sou_types::{Amount, ChainId, Memo, Payload, Payout, Transaction};

use crate::support::*;

fn pool() -> Mempool {
    Mempool::new(MempoolConfig {
        max_txs: 100,
        max_bytes: 1 << 20,
        max_txs_per_sender: 4,
        nonce_window: 8,
    })
}

/// One transaction as `precheck` takes it: with its hash and length.
fn hashed(
    tx: sou_types::SignedTransaction,
) -> Vec<(sou_types::SignedTransaction, sou_types::TxHash, usize)> {
    let (hash, len) = tx.hash_and_len();
    vec![(tx, hash, len)]
}

#[test]
fn admits_valid_transactions_and_names_each_refusal() {
    let mut p = params();
    p.max_tx_bytes = 600;
    let c = chain_with(3, p);
    let user = c.user(0).clone_key();
    let b = c.addr(1);
    let mut m = pool();

    let good0 = c.tx_nonce(&user, 0, transfer(b, 1));
    let good1 = c.tx_nonce(&user, 1, transfer(b, 1));
    let mut bad_sig = c.tx_nonce(&user, 2, transfer(b, 1));
    bad_sig.signature.0[3] ^= 1;
    let sign = |nonce: u64, mutate: &dyn Fn(&mut Transaction)| {
        let mut t = c.tx_nonce(&user, nonce, transfer(b, 1)).tx;
        mutate(&mut t);
        t.sign(&user)
    };
    let wrong_chain = sign(3, &|t| t.chain_id = ChainId::new("elsewhere").unwrap());
    let expired = sign(3, &|t| t.expiry_height = 0);
    let too_far = sign(3, &|t| t.expiry_height = 10_000);
    let low_fee = sign(3, &|t| t.max_fee = Amount(1));
    let gap = sign(8, &|_| {});
    let big = sign(3, &|t| {
        t.payload = Payload::BatchTransfer {
            asset: usdt(),
            payouts: sou_types::tx::Payouts::new(vec![
                Payout {
                    to: b,
                    amount: Amount(1)
                };
                20
            ])
            .unwrap(),
            memo: Memo::empty(),
        }
    });
    let taken = c.tx_nonce(&user, 1, transfer(b, 2)); // nonce 1 is pending already
    let results = m.admit(
        vec![
            good0.clone(),
            good1,
            bad_sig,
            wrong_chain,
            expired,
            too_far,
            low_fee,
            gap,
            big,
            good0.clone(),
            taken,
        ],
        &c.ledger,
    );
    assert_eq!(results[0], Ok(good0.hash()));
    assert!(results[1].is_ok());
    assert_eq!(
        results[2],
        Err(AdmitError::Invalid(InvalidTx::BadSignature))
    );
    assert!(matches!(
        results[3],
        Err(AdmitError::Invalid(InvalidTx::WrongChain { .. }))
    ));
    assert!(matches!(
        results[4],
        Err(AdmitError::Invalid(InvalidTx::Expired { .. }))
    ));
    assert!(matches!(
        results[5],
        Err(AdmitError::Invalid(InvalidTx::ExpiryTooFar { .. }))
    ));
    assert!(matches!(
        results[6],
        Err(AdmitError::Invalid(InvalidTx::FeeTooLow { .. }))
    ));
    assert!(
        matches!(
            results[7],
            Err(AdmitError::Invalid(InvalidTx::NonceTooFar { got: 8, .. }))
        ),
        "{:?}",
        results[7]
    );
    assert!(matches!(
        results[8],
        Err(AdmitError::Invalid(InvalidTx::TooLarge { .. }))
    ));
    assert_eq!(results[9], Err(AdmitError::Duplicate(good0.hash())));
    assert_eq!(results[10], Err(AdmitError::NonceTaken(1)));
    assert_eq!(m.len(), 2);
    assert!(m.contains(&good0.hash()));

    // Sent again later: still a duplicate. A used nonce is refused.
    assert_eq!(
        m.admit(vec![good0.clone()], &c.ledger)[0],
        Err(AdmitError::Duplicate(good0.hash()))
    );
    // Errors say what was wrong.
    let msg = AdmitError::Invalid(InvalidTx::NonceTooFar {
        got: 8,
        expected: 0,
        window: 8,
    })
    .to_string();
    assert!(
        msg.contains("nonce 8") && msg.contains("next nonce 0"),
        "{msg}"
    );
}

#[test]
fn pending_spend_counts_against_the_balance() {
    let c = chain(2);
    let user = c.user(0).clone_key();
    let b = c.addr(1);
    let mut m = pool();
    let half = USER_USDT / 2;
    let r = m.admit(
        vec![
            c.tx_nonce(&user, 0, transfer(b, half)),
            c.tx_nonce(&user, 1, transfer(b, half)),
        ],
        &c.ledger,
    );
    assert!(r[0].is_ok());
    assert!(
        matches!(
            r[1],
            Err(AdmitError::Invalid(InvalidTx::InsufficientBalance { .. }))
        ),
        "{:?}",
        r[1]
    );
    // The same in a later batch.
    let r = m.admit(vec![c.tx_nonce(&user, 1, transfer(b, half))], &c.ledger);
    assert!(matches!(
        r[0],
        Err(AdmitError::Invalid(InvalidTx::InsufficientBalance { .. }))
    ));
    // What is left fits.
    let r = m.admit(
        vec![c.tx_nonce(&user, 1, transfer(b, half - 2 * FEE.0))],
        &c.ledger,
    );
    assert!(r[0].is_ok(), "{r:?}");
    let fits = r[0].clone().unwrap();
    // A transaction that leaves the pool gives its spend back: another
    // one for nonce 1 fits once the first is removed, and not before.
    let other = c.tx_nonce(&user, 1, transfer(b, half - 2 * FEE.0 - 1));
    let r = m.admit(vec![other.clone()], &c.ledger);
    assert!(r[0].is_err(), "{r:?}");
    m.remove(&[fits]);
    let r = m.admit(vec![other], &c.ledger);
    assert!(r[0].is_ok(), "{r:?}");
}

/// A transaction past its expiry height leaves the pool when a block is
/// committed, and gives its sender's spend back.
#[test]
fn expired_transactions_leave_and_give_their_spend_back() {
    let mut c = chain(2);
    let user = c.user(0).clone_key();
    let b = c.addr(1);
    let mut m = pool();
    let tip = c.ledger.tip().height;
    let short = Transaction {
        chain_id: *c.ledger.chain_id(),
        sender: user.address(),
        nonce: 0,
        max_fee: FEE,
        expiry_height: tip + 2,
        payload: transfer(b, USER_USDT - FEE.0),
    }
    .sign(&user);
    assert!(m.admit(vec![short], &c.ledger)[0].is_ok());
    // Everything is spoken for until it expires.
    let next = c.tx_nonce(&user, 1, transfer(b, 1));
    assert!(m.admit(vec![next.clone()], &c.ledger)[0].is_err());
    // A block that does not include it: it may still be in the next one.
    c.block(vec![]);
    m.update(&[], &c.ledger).unwrap();
    assert_eq!(m.len(), 1);
    // Past its expiry height now.
    c.block(vec![]);
    m.update(&[], &c.ledger).unwrap();
    assert_eq!(m.len(), 0);
    assert_eq!(m.bytes(), 0);
    let first = c.tx_nonce(&user, 0, transfer(b, 1));
    let r = m.admit(vec![first, next], &c.ledger);
    assert!(r.iter().all(Result::is_ok), "{r:?}");
}

/// Transactions sharing an expiry height leave together once it passes,
/// but for one included before; one expiring later stays.
#[test]
fn transactions_sharing_an_expiry_height_expire_together() {
    let mut c = chain(3);
    let a = c.user(0).clone_key();
    let b = c.user(1).clone_key();
    let to = c.addr(2);
    let tip = c.ledger.tip().height;
    let tx = |key: &sou_types::Keypair, nonce: u64, expiry_height: u64| {
        c.tx_expiring(key, nonce, expiry_height, transfer(to, 1))
    };
    let included = tx(&a, 0, tip + 2);
    let same = [tx(&a, 1, tip + 2), tx(&b, 0, tip + 2)];
    let later = tx(&b, 1, tip + 5);
    let mut m = pool();
    let all = vec![
        included.clone(),
        same[0].clone(),
        same[1].clone(),
        later.clone(),
    ];
    let r = m.admit(all, &c.ledger);
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    c.block(vec![included.clone()]);
    m.update(&[included.hash()], &c.ledger).unwrap();
    // The next height is the last the two may be included at.
    assert_eq!(m.len(), 3);
    // Past it: both leave; the later one stays.
    c.block(vec![]);
    m.update(&[], &c.ledger).unwrap();
    assert_eq!(m.len(), 1);
    assert!(m.get(&later.hash()).is_some());
    assert!(same.iter().all(|t| m.get(&t.hash()).is_none()));
}

#[test]
fn per_sender_and_total_limits() {
    let c = chain(2);
    let user = c.user(0).clone_key();
    let mut m = pool();
    let txs: Vec<_> = (0..5)
        .map(|n| c.tx_nonce(&user, n, transfer(c.addr(1), 1)))
        .collect();
    let r = m.admit(txs, &c.ledger);
    assert!(r[..4].iter().all(Result::is_ok));
    assert_eq!(r[4], Err(AdmitError::SenderFull { max: 4 }));

    let mut small = Mempool::new(MempoolConfig {
        max_txs: 2,
        ..MempoolConfig::default()
    });
    let txs: Vec<_> = (0..3)
        .map(|n| c.tx_nonce(&user, n, transfer(c.addr(1), 1)))
        .collect();
    let r = small.admit(txs, &c.ledger);
    assert!(matches!(r[2], Err(AdmitError::Full { max_txs: 2, .. })));
}

#[test]
fn a_frozen_sender_is_refused() {
    let mut c = chain(2);
    let freezer = c.roles(usdt()).freezer.clone_key();
    let a = c.addr(0);
    assert_ok(&c.run(
        &freezer,
        Payload::Freeze {
            asset: usdt(),
            address: a,
        },
    ));
    let mut m = pool();
    let r = m.admit(vec![c.tx(c.user(0), transfer(c.addr(1), 1))], &c.ledger);
    assert!(matches!(
        r[0],
        Err(AdmitError::Invalid(InvalidTx::SenderFrozen(_)))
    ));
}

#[test]
fn selection_takes_nonce_runs_fairly_and_update_prunes() {
    let mut c = chain(3);
    let mut m = pool();
    let (u0, u1) = (c.user(0).clone_key(), c.user(1).clone_key());
    let to = c.addr(2);
    // Admitted out of order; u1 has a gap after nonce 0.
    let txs = vec![
        c.tx_nonce(&u0, 2, transfer(to, 1)),
        c.tx_nonce(&u0, 0, transfer(to, 1)),
        c.tx_nonce(&u1, 0, transfer(to, 1)),
        c.tx_nonce(&u0, 1, transfer(to, 1)),
        c.tx_nonce(&u1, 2, transfer(to, 1)),
    ];
    assert!(m.admit(txs, &c.ledger).iter().all(Result::is_ok));
    let picked = m.select(100, 1 << 20);
    let order: Vec<(String, u64)> = picked
        .iter()
        .map(|t| {
            (
                if t.tx.sender == u0.address() {
                    "u0"
                } else {
                    "u1"
                }
                .to_string(),
                t.tx.nonce,
            )
        })
        .collect();
    let expect = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect::<Vec<_>>()
    };
    // Senders take turns, each in nonce order; u1's nonce 2 waits for 1.
    assert_eq!(order, expect(&[("u0", 0), ("u1", 0), ("u0", 1), ("u0", 2)]));
    assert_eq!(m.select(2, 1 << 20).len(), 2);

    let (executed, _) = c.block(picked);
    assert_eq!(executed.receipts.len(), 4);
    let included: Vec<_> = executed.receipts.iter().map(|r| r.tx_hash).collect();
    m.update(&included, &c.ledger).unwrap();
    assert_eq!(m.len(), 1, "only u1's nonce 2 is left");
    assert!(
        m.select(100, 1 << 20).is_empty(),
        "u1's nonce 1 is still missing"
    );
    let r = m.admit(vec![c.tx_nonce(&u1, 1, transfer(to, 1))], &c.ledger);
    assert!(r[0].is_ok());
    assert_eq!(m.select(100, 1 << 20).len(), 2);
}

/// Admission in two steps, as the node runs it: `precheck` (signatures,
/// without the pool) and `admit_verified` (the pool's rules). Two batches
/// prechecked apart still cannot both take a nonce, a bad signature never
/// reaches the pool, and a replay of a committed transaction is refused
/// before its signature is looked at.
#[test]
fn admission_in_two_steps_keeps_every_rule() {
    let mut c = chain(2);
    let user = c.user(0).clone_key();
    let b = c.addr(1);
    let mut m = pool();
    let first = sou_ledger::precheck(
        hashed(c.tx_nonce(&user, 0, transfer(b, 1))),
        &c.ledger,
        &|_, _| false,
    );
    let second = sou_ledger::precheck(
        hashed(c.tx_nonce(&user, 0, transfer(b, 2))),
        &c.ledger,
        &|_, _| false,
    );
    assert!(m.admit_verified(first, &c.ledger)[0].is_ok());
    assert_eq!(
        m.admit_verified(second, &c.ledger)[0],
        Err(AdmitError::NonceTaken(0))
    );

    let mut forged = c.tx_nonce(&user, 1, transfer(b, 1));
    forged.signature.0[0] ^= 1;
    let pre = sou_ledger::precheck(hashed(forged), &c.ledger, &|_, _| false);
    assert_eq!(
        m.admit_verified(pre, &c.ledger)[0],
        Err(AdmitError::Invalid(InvalidTx::BadSignature))
    );
    assert_eq!(m.len(), 1);

    // Committed, then replayed with its signature broken: the used nonce
    // is what refuses it.
    let tx = c.tx_nonce(&user, 0, transfer(b, 1));
    let (executed, _) = c.block(vec![tx.clone()]);
    assert!(executed.receipts[0].succeeded());
    let mut replay = tx;
    replay.signature.0[0] ^= 1;
    let pre = sou_ledger::precheck(hashed(replay), &c.ledger, &|_, _| false);
    assert!(matches!(
        m.admit_verified(pre, &c.ledger)[0],
        Err(AdmitError::Invalid(InvalidTx::NonceUsed { .. }))
    ));
}

/// The accounts `precheck` read are not trusted across a commit: a
/// transaction prechecked before a block used its nonce is refused by
/// `admit_verified`, which reads the account again.
#[test]
fn admission_reads_accounts_again_after_a_commit() {
    let mut c = chain(2);
    let user = c.user(0).clone_key();
    let b = c.addr(1);
    let mut m = pool();
    let late = c.tx_nonce(&user, 0, transfer(b, 2));
    let pre = sou_ledger::precheck(hashed(late), &c.ledger, &|_, _| false);
    let first = c.tx_nonce(&user, 0, transfer(b, 1));
    let (executed, _) = c.block(vec![first]);
    assert!(executed.receipts[0].succeeded());
    assert!(matches!(
        m.admit_verified(pre, &c.ledger)[0],
        Err(AdmitError::Invalid(InvalidTx::NonceUsed {
            got: 0,
            expected: 1
        }))
    ));
    assert_eq!(m.len(), 0);
    // With no commit between the two steps, the next nonce is admitted.
    let next = c.tx_nonce(&user, 1, transfer(b, 2));
    let pre = sou_ledger::precheck(hashed(next), &c.ledger, &|_, _| false);
    assert!(m.admit_verified(pre, &c.ledger)[0].is_ok());
}

/// Signatures recorded as verified (executing a block) are not verified
/// again on admission: the check is asked per (hash, signature), so a copy
/// whose signature differs from the recorded one is still verified.
#[test]
fn precheck_skips_signatures_verified_before() {
    let c = chain(2);
    let user = c.user(0).clone_key();
    let b = c.addr(1);
    let good = c.tx_nonce(&user, 0, transfer(b, 1));
    let mut forged = good.clone();
    forged.signature.0[0] ^= 1;
    let hash = good.hash();

    let mut recent = RecentlyVerified::new(4);
    recent.insert(hash, good.signature);
    let known = |h: &sou_types::TxHash, s: &sou_types::Signature| recent.contains(h, s);
    let asked = std::cell::Cell::new(0);
    let counting = |h: &sou_types::TxHash, s: &sou_types::Signature| {
        asked.set(asked.get() + 1);
        known(h, s)
    };

    // Recorded: let through without a check.
    let mut m = pool();
    let pre = sou_ledger::precheck(hashed(good), &c.ledger, &counting);
    assert_eq!(asked.get(), 1);
    assert_eq!(m.admit_verified(pre, &c.ledger)[0], Ok(hash));

    // Same hash, another signature: verified, and refused.
    let mut m = pool();
    let pre = sou_ledger::precheck(hashed(forged.clone()), &c.ledger, &known);
    assert_eq!(
        m.admit_verified(pre, &c.ledger)[0],
        Err(AdmitError::Invalid(InvalidTx::BadSignature))
    );

    // What precheck is told it verified is trusted: a forged signature
    // claimed as verified passes (which is why only the node's own checks
    // may be recorded).
    let pre = sou_ledger::precheck(hashed(forged), &c.ledger, &|_, _| true);
    assert_eq!(m.admit_verified(pre, &c.ledger)[0], Ok(hash));
}

/// The record of verified signatures is bounded: two generations of at
/// most `capacity` entries, the older dropped when the newer fills.
#[test]
fn recently_verified_is_bounded_and_matches_signatures() {
    let c = chain(2);
    let user = c.user(0).clone_key();
    let b = c.addr(1);
    let txs: Vec<_> = (0..7)
        .map(|n| c.tx_nonce(&user, n, transfer(b, 1)))
        .collect();
    let mut recent = RecentlyVerified::new(3);
    assert!(recent.is_empty());
    for tx in &txs {
        recent.insert(tx.hash(), tx.signature);
        assert!(recent.contains(&tx.hash(), &tx.signature));
        assert!(recent.len() <= 6);
    }
    // 7 inserts into generations of 3: the first three are gone (the
    // generation that held them was dropped), the last four remain.
    for (i, tx) in txs.iter().enumerate() {
        assert_eq!(recent.contains(&tx.hash(), &tx.signature), i >= 3, "tx {i}");
    }
    let mut other = txs[6].signature;
    other.0[5] ^= 1;
    assert!(!recent.contains(&txs[6].hash(), &other));
}

/// One step of [`the_pool_accounts_for_what_it_holds`].
#[derive(Clone, Debug)]
enum Step {
    /// Transactions from (user, nonce ahead of the committed one, blocks
    /// to expiry, native asset rather than USDT, amount).
    Admit(Vec<(usize, u64, u64, bool, u128)>),
    /// A block of at most this many of the pool's transactions.
    Block(usize),
    /// Drops the pool's n-th transaction (in admission order).
    Remove(usize),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let tx = (
        0..3usize,
        0..4u64,
        1..4u64,
        any::<bool>(),
        prop_oneof![1..1_000u128, Just(USER_USDT / 3)],
    );
    prop_oneof![
        prop::collection::vec(tx, 1..6).prop_map(Step::Admit),
        (0..6usize).prop_map(Step::Block),
        (0..8usize).prop_map(Step::Remove),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Through any run of admissions, blocks (with their updates) and
    /// removals, the pool's counts and bytes match what it holds, nothing
    /// stale or expired stays after an update, a selection is each
    /// sender's run of nonces from its account's, a sender's pending spend
    /// is exactly what its held transactions could spend, and once
    /// everything has left, every sender can spend its whole balance again.
    #[test]
    fn the_pool_accounts_for_what_it_holds(steps in proptest::collection::vec(step(), 1..24)) {
        let mut c = chain(4);
        let users: Vec<_> = (0..3).map(|i| c.user(i).clone_key()).collect();
        let to = c.addr(3);
        let mut m = Mempool::new(MempoolConfig {
            max_txs: 12,
            max_bytes: 1 << 20,
            max_txs_per_sender: 3,
            nonce_window: 8,
        });
        let mut admitted: Vec<(sou_types::TxHash, usize)> = Vec::new();
        for step in steps {
            match step {
                Step::Admit(plan) => {
                    let tip = c.ledger.tip().height;
                    let txs: Vec<_> = plan
                        .into_iter()
                        .map(|(u, ahead, expiry, native, amount)| {
                            let key = &users[u];
                            let nonce = c.ledger.account(&key.address()).unwrap().nonce + ahead;
                            let payload = if native {
                                Payload::Transfer {
                                    asset: sou_types::asset::NATIVE,
                                    to,
                                    amount: Amount(amount),
                                    memo: Memo::empty(),
                                }
                            } else {
                                transfer(to, amount)
                            };
                            c.tx_expiring(key, nonce, tip + expiry, payload)
                        })
                        .collect();
                    let lens: Vec<_> = txs.iter().map(|t| t.hash_and_len()).collect();
                    for (r, (hash, len)) in m.admit(txs, &c.ledger).into_iter().zip(lens) {
                        // A transaction removed and sent again is the same one.
                        if r.is_ok() && !admitted.contains(&(hash, len)) {
                            admitted.push((hash, len));
                        }
                    }
                }
                Step::Block(n) => {
                    let picked = m.select(n, 1 << 20);
                    let (executed, applied) = c.block(picked);
                    proptest::prop_assert!(applied.invalid.is_empty(), "{:?}", applied.invalid);
                    let included: Vec<_> = executed.receipts.iter().map(|r| r.tx_hash).collect();
                    m.update(&included, &c.ledger).unwrap();
                    let next = c.ledger.tip().height + 1;
                    for (h, _) in &admitted {
                        if let Some(tx) = m.get(h) {
                            let nonce = c.ledger.account(&tx.tx.sender).unwrap().nonce;
                            proptest::prop_assert!(tx.tx.expiry_height >= next, "expired, still held");
                            proptest::prop_assert!(tx.tx.nonce >= nonce, "nonce used, still held");
                        }
                    }
                }
                Step::Remove(n) => {
                    let held: Vec<_> = admitted.iter().filter(|(h, _)| m.contains(h)).collect();
                    if let Some((h, _)) = held.get(n) {
                        m.remove(&[*h]);
                        proptest::prop_assert!(!m.contains(h));
                    }
                }
            }
            let held: Vec<_> = admitted.iter().filter(|(h, _)| m.contains(h)).collect();
            proptest::prop_assert_eq!(m.len(), held.len());
            proptest::prop_assert_eq!(m.bytes(), held.iter().map(|(_, l)| l).sum::<usize>());
            let mut next: std::collections::HashMap<_, u64> = std::collections::HashMap::new();
            for t in m.select(usize::MAX, usize::MAX) {
                let expected = next
                    .entry(t.tx.sender)
                    .or_insert_with(|| c.ledger.account(&t.tx.sender).unwrap().nonce);
                proptest::prop_assert_eq!(t.tx.nonce, *expected, "a run of nonces");
                *expected += 1;
            }
            // A sender still holding transactions has exactly their spend
            // pending: the rest of its USDT can go in one more transfer, and
            // a unit more cannot (probed, then taken out again).
            for key in &users {
                let addr = key.address();
                let mine: Vec<_> = held
                    .iter()
                    .filter_map(|(h, _)| m.get(h))
                    .filter(|t| t.tx.sender == addr)
                    .cloned()
                    .collect();
                if mine.is_empty() || mine.len() >= 3 || m.len() >= 12 {
                    continue;
                }
                let spent: u128 = mine
                    .iter()
                    .map(|t| match &t.tx.payload {
                        Payload::Transfer { asset, amount, .. } if *asset == usdt() => {
                            FEE.0 + amount.0
                        }
                        _ => FEE.0,
                    })
                    .sum();
                let account = c.ledger.account(&addr).unwrap();
                let free = account.balance(&usdt()).0.saturating_sub(spent + FEE.0);
                let taken: Vec<u64> = mine.iter().map(|t| t.tx.nonce).collect();
                let nonce = (account.nonce..).find(|n| !taken.contains(n)).unwrap();
                if free == 0 {
                    continue;
                }
                let tip = c.ledger.tip().height;
                let over = c.tx_expiring(key, nonce, tip + 1, transfer(to, free + 1));
                let r = m.admit(vec![over], &c.ledger);
                proptest::prop_assert!(
                    matches!(r[0], Err(AdmitError::Invalid(InvalidTx::InsufficientBalance { .. }))),
                    "{:?}",
                    r
                );
                let exact = c.tx_expiring(key, nonce, tip + 1, transfer(to, free));
                let r = m.admit(vec![exact.clone()], &c.ledger);
                proptest::prop_assert!(r[0].is_ok(), "{:?}", r);
                m.remove(&[exact.hash()]);
            }
        }
        // Past every expiry: the pool empties and forgets every spend.
        for _ in 0..4 {
            c.block(vec![]);
            m.update(&[], &c.ledger).unwrap();
        }
        proptest::prop_assert_eq!(m.len(), 0);
        proptest::prop_assert_eq!(m.bytes(), 0);
        let whole: Vec<_> = users
            .iter()
            .map(|k| {
                let usdt = c.balance(&k.address(), usdt());
                c.tx(k, transfer(to, usdt - FEE.0))
            })
            .collect();
        let r = m.admit(whole, &c.ledger);
        proptest::prop_assert!(r.iter().all(Result::is_ok), "{:?}", r);
    }
}

/// The expiry lists are kept lazily and rebuilt once they list more than
/// twice the pool: a transaction admitted before a rebuild, and one
/// after, still leave exactly when their heights pass.
#[test]
fn expiry_survives_the_lists_being_rebuilt() {
    let mut c = chain(21);
    let users: Vec<_> = (0..20).map(|i| c.user(i).clone_key()).collect();
    let to = c.addr(20);
    let mut m = Mempool::new(MempoolConfig {
        max_txs: 1_000,
        ..MempoolConfig::default()
    });
    let pay = transfer(to, 1);
    // Waits in the pool (its sender's nonce 0 is never sent) until height 80.
    let waiting = c.tx_expiring(&users[0], 1, 80, pay.clone());
    assert!(m.admit(vec![waiting.clone()], &c.ledger)[0].is_ok());
    // 60 blocks of 19 included transfers: 1,140 listed hashes, all but one
    // of them stale, well past the rebuild threshold.
    for round in 0..60u64 {
        let tip = c.ledger.tip().height;
        let batch: Vec<_> = users[1..]
            .iter()
            .map(|k| c.tx_expiring(k, round, tip + 90, pay.clone()))
            .collect();
        assert!(m.admit(batch, &c.ledger).iter().all(Result::is_ok));
        let picked = m.select(100, 1 << 20);
        assert_eq!(picked.len(), 19);
        let (executed, _) = c.block(picked);
        let included: Vec<_> = executed.receipts.iter().map(|r| r.tx_hash).collect();
        m.update(&included, &c.ledger).unwrap();
        assert_eq!(m.len(), 1);
    }
    let tip = c.ledger.tip().height;
    assert!(tip < 79, "{tip}");
    let later = c.tx_expiring(&users[1], 60, tip + 5, pay);
    assert!(m.admit(vec![later.clone()], &c.ledger)[0].is_ok());
    while c.ledger.tip().height < tip + 5 {
        c.block(vec![]);
        m.update(&[], &c.ledger).unwrap();
    }
    assert!(!m.contains(&later.hash()), "expired at {}", tip + 5);
    assert!(m.contains(&waiting.hash()));
    while c.ledger.tip().height < 80 {
        c.block(vec![]);
        m.update(&[], &c.ledger).unwrap();
    }
    assert!(!m.contains(&waiting.hash()));
    assert!(m.is_empty());
}
