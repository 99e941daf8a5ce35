//! Block rules: inclusion checks, the failed-but-included rule, checking
//! someone else's block, replays, limits, and what the store returns after.

use sou_ledger::{Error, HistoryCursor, InvalidTx, TxStatus};
use sou_types::{Address, Amount, ChainId, Hash, Memo, Payload, Payout, Transaction};

use crate::support::*;

#[test]
fn a_transaction_that_fails_in_execution_uses_its_nonce_and_pays_its_fee() {
    // Valid when proposed (the pool saw enough balance for each), but the
    // first transfer spends what the second needed.
    let mut c = chain(2);
    let user = c.user(0).clone_key();
    let b = c.addr(1);
    let tx1 = c.tx_nonce(&user, 0, transfer(b, USER_USDT - 2 * FEE.0));
    let tx2 = c.tx_nonce(&user, 1, transfer(b, 1));
    let (executed, applied) = c.block(vec![tx1, tx2]);
    assert!(applied.invalid.is_empty());
    assert_eq!(executed.receipts[0].status, TxStatus::Success);
    match &executed.receipts[1].status {
        TxStatus::Failed { reason } => {
            assert!(reason.contains("insufficient USDT balance"), "{reason}");
        }
        s => panic!("second transfer: {s:?}"),
    }
    assert_eq!(executed.receipts[1].fee, FEE);
    let acc = c.ledger.account(&user.address()).unwrap();
    assert_eq!(acc.nonce, 2, "both nonces are used");
    assert_eq!(acc.balance(&usdt()), Amount(0), "both fees are paid");
    assert_eq!(c.balance(&b, usdt()), USER_USDT * 2 - 2 * FEE.0);
    assert_conserved(&c.ledger);
}

#[test]
fn inclusion_failures_are_left_out_of_proposals() {
    let mut p = params();
    p.max_tx_bytes = 600;
    let mut c = chain_with(3, p);
    let user = c.user(0).clone_key();
    let b = c.addr(1);
    let good = c.tx_nonce(&user, 0, transfer(b, 1));
    let used = c.tx_nonce(&user, 0, transfer(b, 2)); // same nonce as `good`
    let gap = c.tx_nonce(&user, 5, transfer(b, 1));
    let mut bad_sig = c.tx_nonce(&user, 1, transfer(b, 1));
    bad_sig.signature.0[10] ^= 0xff;
    let sign = |mutate: &dyn Fn(&mut Transaction)| {
        let mut t = c.tx_nonce(&user, 1, transfer(b, 1)).tx;
        mutate(&mut t);
        t.sign(&user)
    };
    let wrong_chain = sign(&|t| t.chain_id = ChainId::new("other-chain").unwrap());
    let expired = sign(&|t| t.expiry_height = 0);
    let low_fee = sign(&|t| t.max_fee = Amount(FEE.0 - 1));
    let big = sign(&|t| {
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
    // An account with no stablecoin cannot pay the fee.
    let pauper = sou_types::Keypair::derive_insecure(1, "pauper");
    let broke = c.tx_nonce(&pauper, 0, transfer(b, 1));

    let (executed, applied) = c.block(vec![
        good,
        used,
        gap,
        bad_sig,
        wrong_chain,
        expired,
        low_fee,
        big,
        broke,
    ]);
    assert_eq!(executed.receipts.len(), 1);
    let reasons: Vec<InvalidTx> = applied.invalid.iter().map(|(_, r)| r.clone()).collect();
    assert!(
        matches!(
            reasons[0],
            InvalidTx::NonceUsed {
                got: 0,
                expected: 1
            }
        ),
        "{:?}",
        reasons[0]
    );
    assert!(matches!(
        reasons[1],
        InvalidTx::NonceNotNext {
            got: 5,
            expected: 1
        }
    ));
    assert_eq!(reasons[2], InvalidTx::BadSignature);
    assert!(matches!(reasons[3], InvalidTx::WrongChain { .. }));
    assert!(matches!(reasons[4], InvalidTx::Expired { .. }));
    assert!(matches!(reasons[5], InvalidTx::FeeTooLow { .. }));
    assert!(
        matches!(reasons[6], InvalidTx::TooLarge { max: 600, .. }),
        "{:?}",
        reasons[6]
    );
    assert!(matches!(reasons[7], InvalidTx::InsufficientBalance { .. }));
    assert_eq!(c.ledger.account(&user.address()).unwrap().nonce, 1);
    assert_conserved(&c.ledger);
}

#[test]
fn block_limits_leave_the_rest_for_later() {
    let mut p = params();
    p.max_block_txs = 3;
    let mut c = chain_with(2, p);
    let user = c.user(0).clone_key();
    let txs: Vec<_> = (0..5)
        .map(|n| c.tx_nonce(&user, n, transfer(c.addr(1), 1)))
        .collect();
    let (executed, applied) = c.block(txs);
    assert_eq!(executed.receipts.len(), 3);
    assert_eq!(applied.not_included, 2);
}

/// Each of three users sends the next one `base + round`, at nonce `round`.
fn ring_transfers(c: &Chain, round: u64, base: u128) -> Vec<sou_types::SignedTransaction> {
    (0..3)
        .map(|i| {
            c.tx_nonce(
                c.user(i),
                round,
                transfer(c.addr((i + 1) % 3), base + u128::from(round)),
            )
        })
        .collect()
}

#[test]
fn another_node_executes_the_block_to_the_same_state_root() {
    let mut a = chain(3);
    let b = chain(3);
    for round in 0..3u64 {
        let txs = ring_transfers(&a, round, 10);
        let (executed, _) = a.block(txs);
        let again = b
            .ledger
            .execute(executed.block.clone(), &no_verified)
            .unwrap();
        assert_eq!(again.state_root(), executed.state_root());
        assert_eq!(again.receipts, executed.receipts);
        b.ledger.commit(&again).unwrap();
    }
    assert_eq!(a.ledger.tip(), b.ledger.tip());
    assert_eq!(
        full_state_root(&a.ledger),
        a.ledger.state_root(),
        "incremental root drifted from a full recompute"
    );
}

#[test]
fn tampered_blocks_are_rejected_and_change_nothing() {
    let mut a = chain(2);
    let b = chain(2);
    let tx = a.tx(a.user(0), transfer(a.addr(1), 5));
    let (executed, _) = a.block(vec![tx]);
    let block = executed.block;
    let tip = b.ledger.tip();

    let mut bad = block.clone();
    bad.header.state_root = Hash([1; 32]);
    assert!(matches!(
        b.ledger.execute(bad, &no_verified),
        Err(Error::InvalidBlock { .. })
    ));

    let mut bad = block.clone();
    bad.header.tx_root = Hash([1; 32]);
    assert!(matches!(
        b.ledger.execute(bad, &no_verified),
        Err(Error::InvalidBlock { .. })
    ));

    let mut bad = block.clone();
    bad.transactions[0].signature.0[0] ^= 1;
    let r = b.ledger.execute(bad, &no_verified);
    assert!(
        matches!(
            r,
            Err(Error::InvalidTxInBlock {
                reason: InvalidTx::BadSignature,
                ..
            })
        ),
        "{r:?}"
    );

    let mut bad = block.clone();
    bad.transactions.push(bad.transactions[0].clone()); // a replay within the block
    let r = b.ledger.execute(bad, &no_verified);
    assert!(
        matches!(
            r,
            Err(Error::InvalidTxInBlock {
                reason: InvalidTx::NonceUsed { .. },
                ..
            })
        ),
        "{r:?}"
    );

    let mut bad = block.clone();
    bad.header.parent = Hash([2; 32]);
    assert!(matches!(
        b.ledger.execute(bad, &no_verified),
        Err(Error::InvalidBlock { .. })
    ));

    let mut bad = block.clone();
    bad.header.timestamp_ms = 0;
    assert!(matches!(
        b.ledger.execute(bad, &no_verified),
        Err(Error::InvalidBlock { .. })
    ));

    assert_eq!(b.ledger.tip(), tip);
    b.ledger.execute(block, &no_verified).unwrap();
}

#[test]
fn a_replayed_transaction_is_refused_in_a_later_block() {
    let mut c = chain(2);
    let tx = c.tx(c.user(0), transfer(c.addr(1), 5));
    let (first, _) = c.block(vec![tx.clone()]);
    assert_eq!(first.receipts.len(), 1);
    let (second, applied) = c.block(vec![tx]);
    assert!(second.receipts.is_empty());
    assert!(matches!(applied.invalid[0].1, InvalidTx::NonceUsed { .. }));
    assert_eq!(c.balance(&c.addr(1), usdt()), USER_USDT + 5);
}

#[test]
fn blocks_transactions_receipts_and_history_are_stored() {
    let mut c = chain(3);
    let (a, b) = (c.addr(0), c.addr(1));
    let mut hashes = Vec::new();
    for round in 0..4u64 {
        let tx = c.tx_nonce(c.user(0), round, transfer(b, 1));
        hashes.push(tx.hash());
        let other = c.tx_nonce(c.user(2), round, transfer(c.addr(2), 1));
        c.block(vec![other, tx]);
    }
    let store = c.ledger.store();
    let tip = c.ledger.tip();
    let block = store.block(tip.height).unwrap().unwrap();
    assert_eq!(block.hash(), tip.hash);
    assert_eq!(store.height_of(&tip.hash).unwrap(), Some(tip.height));
    assert_eq!(block.transactions.len(), 2);
    assert_eq!(store.block(0).unwrap().unwrap().header.height, 0);
    let record = store.transaction(&hashes[3]).unwrap().unwrap();
    assert_eq!(
        (record.receipt.height, record.receipt.index),
        (tip.height, 1)
    );
    assert!(store.receipt(&hashes[0]).unwrap().unwrap().succeeded());
    assert!(store.receipt(&Hash([9; 32])).unwrap().is_none());

    // Newest first, for the sender and for the recipient, paged by cursor.
    let page = store.history(&a, None, 3).unwrap();
    let got: Vec<Hash> = page.iter().map(|(_, h)| *h).collect();
    assert_eq!(got, vec![hashes[3], hashes[2], hashes[1]]);
    let rest = store.history(&a, Some(page[2].0), 10).unwrap();
    assert_eq!(
        rest.iter().map(|(_, h)| *h).collect::<Vec<_>>(),
        vec![hashes[0]]
    );
    assert_eq!(store.history(&b, None, 10).unwrap().len(), 4);
    assert!(store
        .history(
            &a,
            Some(HistoryCursor {
                height: 0,
                index: 0
            }),
            10
        )
        .unwrap()
        .is_empty());
    // The third user transferred to itself: listed once per transaction.
    assert_eq!(store.history(&c.addr(2), None, 10).unwrap().len(), 4);

    // The same answers once everything is in SST files rather than memtables.
    let before_flush = store.history(&a, None, 10).unwrap();
    store.flush().unwrap();
    assert_eq!(store.history(&a, None, 10).unwrap(), before_flush);
    assert_eq!(store.history(&a, Some(page[2].0), 10).unwrap(), rest);
    assert!(store.receipt(&hashes[0]).unwrap().unwrap().succeeded());
    assert_eq!(store.block(tip.height).unwrap().unwrap().hash(), tip.hash);
    assert_eq!(full_state_root(&c.ledger), c.ledger.state_root());
}

/// An address with several transactions in one block has one history entry
/// for that block; pages can end and resume in the middle of it.
#[test]
fn history_pages_within_and_across_blocks() {
    let mut c = chain(2);
    let (a, b) = (c.addr(0), c.addr(1));
    let mut hashes = Vec::new();
    let mut nonce = 0;
    for per_block in [3u64, 2, 4] {
        let mut txs = Vec::new();
        for _ in 0..per_block {
            let tx = c.tx_nonce(c.user(0), nonce, transfer(b, 1));
            nonce += 1;
            hashes.push(tx.hash());
            txs.push(tx);
        }
        c.block(txs);
    }
    let newest_first: Vec<Hash> = hashes.iter().rev().copied().collect();
    let store = c.ledger.store();
    for who in [a, b] {
        let all = store.history(&who, None, 100).unwrap();
        assert_eq!(
            all.iter().map(|(_, h)| *h).collect::<Vec<_>>(),
            newest_first
        );
        // Cursors strictly decrease: (height, index) newest first.
        assert!(all
            .windows(2)
            .all(|w| (w[0].0.height, w[0].0.index) > (w[1].0.height, w[1].0.index)));
        // Every page size walks the same list without gaps or repeats.
        for limit in 1..=4 {
            let mut walked = Vec::new();
            let mut cursor = None;
            for _ in 0..20 {
                let page = store.history(&who, cursor, limit).unwrap();
                assert!(page.len() <= limit);
                let Some(last) = page.last() else { break };
                cursor = Some(last.0);
                walked.extend(page.iter().map(|(_, h)| *h));
            }
            assert_eq!(walked, newest_first, "page size {limit}");
        }
    }
}

/// Index entries and state writes are held in memory and written to
/// RocksDB a chunk of blocks at a time: lookups, history pages and state
/// read the same on both sides of the boundary, after the store reopens
/// (the held entries rebuilt from the blocks, the state by executing them
/// again) and after a flush.
#[test]
fn indexes_and_state_read_the_same_across_chunks_and_after_reopening() {
    let blocks = 2 * sou_ledger::store::INDEX_CHUNK_BLOCKS + 8;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut c = chain_at(&path, 3, params());
    let payee = c.addr(1);
    let payee_start = c.balance(&payee, usdt());
    let mut positions = Vec::new();
    for round in 0..blocks {
        let txs = vec![
            c.tx_nonce(c.user(0), round, transfer(payee, 1)),
            c.tx_nonce(c.user(2), round, transfer(payee, 2)),
        ];
        let hashes: Vec<Hash> = txs.iter().map(|t| t.hash()).collect();
        let (executed, _) = c.block(txs);
        for (i, h) in hashes.into_iter().enumerate() {
            positions.push((h, executed.block.height(), i as u32));
        }
        // Whatever part of the state is held in memory, the whole of it
        // is the one the header commits to.
        assert_eq!(full_state_root(&c.ledger), c.ledger.state_root());
        assert_eq!(
            c.balance(&payee, usdt()),
            payee_start + 3 * u128::from(round + 1)
        );
    }
    let newest_first: Vec<Hash> = positions.iter().rev().map(|(h, ..)| *h).collect();
    let check = |c: &Chain, when: &str| {
        assert_eq!(full_state_root(&c.ledger), c.ledger.state_root(), "{when}");
        assert_conserved(&c.ledger);
        assert_eq!(
            c.balance(&payee, usdt()),
            payee_start + 3 * u128::from(blocks),
            "{when}"
        );
        for user in [0, 2] {
            let account = c.ledger.account(&c.addr(user)).unwrap();
            assert_eq!(account.nonce, blocks, "{when}");
        }
        let store = c.ledger.store();
        for (hash, height, index) in &positions {
            let r = store.receipt(hash).unwrap().unwrap();
            assert_eq!((r.height, r.index), (*height, *index), "{when}");
        }
        assert!(store.receipt(&Hash([9; 32])).unwrap().is_none(), "{when}");
        let all = store.history(&payee, None, 1_000).unwrap();
        let got: Vec<Hash> = all.iter().map(|(_, h)| *h).collect();
        assert_eq!(got, newest_first, "{when}");
        // Pages of every size walk the whole list, across the boundary.
        for limit in [1, 3, 5] {
            let mut walked = Vec::new();
            let mut cursor = None;
            for _ in 0..=newest_first.len() {
                let page = store.history(&payee, cursor, limit).unwrap();
                let Some(last) = page.last() else { break };
                cursor = Some(last.0);
                walked.extend(page.iter().map(|(_, h)| *h));
            }
            assert_eq!(walked, newest_first, "{when}, page size {limit}");
        }
        let sender = store.history(&c.addr(0), None, 1_000).unwrap();
        assert_eq!(sender.len() as u64, blocks, "{when}");
    };
    check(&c, "as committed");
    drop(c);
    let c = chain_at(&path, 3, params());
    check(&c, "reopened");
    c.ledger.store().flush().unwrap();
    check(&c, "flushed");
    drop(c);
    let c = chain_at(&path, 3, params());
    check(&c, "reopened after the flush");
}

/// Readers running while commits close chunks always find a committed
/// transaction where it is, never see a history entry twice or out of
/// order (the chunk's write and its memtable switch are one step to them),
/// and never read a balance older than one they read before or than the
/// last commit that returned.
#[test]
fn indexes_and_state_read_consistently_while_chunks_are_written() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    let blocks = 3 * sou_ledger::store::INDEX_CHUNK_BLOCKS + 5;
    let c = chain(3);
    let payee = c.addr(1);
    let payee_start = c.balance(&payee, usdt());
    // Signed ahead, so each expires well after the last block.
    let expiry = c.ledger.tip().height + blocks + 10;
    let signed = |user: usize, nonce: u64, amount: u128| {
        c.tx_expiring(c.user(user), nonce, expiry, transfer(payee, amount))
    };
    let batches: Vec<Vec<_>> = (0..blocks)
        .map(|round| vec![signed(0, round, 1), signed(2, round, 2)])
        .collect();
    // (hash, height, index) of every committed transaction, appended once
    // its commit has returned.
    let committed: Mutex<Vec<(Hash, u64, u32)>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(120);
    let ledger = &c.ledger;
    let proposer = c.keys.validators[0].address();
    let mut time_ms = c.time_ms;
    let reads =
        std::thread::scope(|scope| {
            let readers: Vec<_> =
                (0..2)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut reads = 0u64;
                            let mut last_balance = 0;
                            while !done.load(Ordering::Acquire) && Instant::now() < deadline {
                                let known = committed.lock().unwrap().clone();
                                // Each committed block paid the payee 3.
                                let balance = ledger.account(&payee).unwrap().balance(&usdt()).0;
                                assert!(balance >= payee_start + 3 * known.len() as u128 / 2);
                                assert!(balance >= last_balance, "a balance went back");
                                last_balance = balance;
                                let store = ledger.store();
                                for (hash, height, index) in known.iter().rev().take(64) {
                                    let r = store.receipt(hash).unwrap().expect("a committed tx");
                                    assert_eq!((r.height, r.index), (*height, *index));
                                    reads += 1;
                                }
                                // The newest page (a whole history costs a read of
                                // every record, and the readers would crowd out
                                // the commits).
                                let page = store.history(&payee, None, 64).unwrap();
                                assert!(page.len() >= known.len().min(64));
                                assert!(page.windows(2).all(|w| (w[0].0.height, w[0].0.index)
                                    > (w[1].0.height, w[1].0.index)));
                                reads += 1;
                            }
                            reads
                        })
                    })
                    .collect();
            for txs in batches {
                let hashes: Vec<Hash> = txs.iter().map(|t| t.hash()).collect();
                time_ms += 500;
                let (executed, applied) = ledger
                    .propose(txs, proposer, time_ms, &no_verified)
                    .unwrap();
                assert!(applied.invalid.is_empty(), "{:?}", applied.invalid);
                ledger.commit(&executed).unwrap();
                let height = executed.block.height();
                let mut list = committed.lock().unwrap();
                for (i, h) in hashes.into_iter().enumerate() {
                    list.push((h, height, i as u32));
                }
            }
            done.store(true, Ordering::Release);
            readers.into_iter().map(|r| r.join().unwrap()).sum::<u64>()
        });
    assert!(reads > 0, "the readers read nothing");
    let all = c.ledger.store().history(&payee, None, 10_000).unwrap();
    assert_eq!(all.len() as u64, 2 * blocks);
}

/// No transaction verified beforehand, no evidence holds up.
const CHECKS: sou_ledger::Checks<'static> = sou_ledger::Checks {
    verified: &|_, _| false,
    evidence: &|_| false,
};

#[test]
fn blocks_built_on_an_uncommitted_chain_match_blocks_built_after_each_commit() {
    let a = chain(3);
    let b = chain(3);
    let ts = a.ledger.tip_header().timestamp_ms + 1;
    // Three blocks on top of one another, none committed; the second
    // spends what the first credited.
    let mut pending: Vec<sou_ledger::ExecutedBlock> = Vec::new();
    for round in 0..3u64 {
        let txs = ring_transfers(&a, round, 1_000);
        let ancestors: Vec<&sou_ledger::ExecutedBlock> = pending.iter().collect();
        let (executed, applied) = a
            .ledger
            .propose_on(&ancestors, txs, vec![], a.addr(0), ts, &CHECKS)
            .unwrap();
        assert!(applied.invalid.is_empty(), "{:?}", applied.invalid);
        assert_eq!(executed.receipts.len(), 3);
        // Another node checks it on the same uncommitted chain.
        let again = b
            .ledger
            .execute_on(&ancestors, executed.block.clone(), &CHECKS)
            .unwrap();
        assert_eq!(again.state_root(), executed.state_root());
        pending.push(executed);
    }
    // A block that does not extend the given chain is refused.
    let stray = pending[2].block.clone();
    let first: Vec<&sou_ledger::ExecutedBlock> = pending.iter().take(1).collect();
    assert!(b.ledger.execute_on(&first, stray, &CHECKS).is_err());
    // A transaction already in an ancestor is not included again.
    let dup = a.tx_nonce(a.user(0), 0, transfer(a.addr(1), 1_000));
    let all: Vec<&sou_ledger::ExecutedBlock> = pending.iter().collect();
    let (e, applied) = a
        .ledger
        .propose_on(&all, vec![dup], vec![], a.addr(0), ts, &CHECKS)
        .unwrap();
    assert!(e.receipts.is_empty());
    assert_eq!(applied.invalid.len() + applied.not_included, 1);
    // Committed in order, they give the state of a chain that committed
    // each block before building the next.
    for e in &pending {
        a.ledger.commit(e).unwrap();
    }
    let c = chain(3);
    for round in 0..3u64 {
        let txs = ring_transfers(&c, round, 1_000);
        let (executed, _) = c.ledger.propose(txs, c.addr(0), ts, &no_verified).unwrap();
        c.ledger.commit(&executed).unwrap();
    }
    assert_eq!(a.ledger.state_root(), c.ledger.state_root());
    assert_eq!(full_state_root(&a.ledger), a.ledger.state_root());
    assert_eq!(a.ledger.tip().height, c.ledger.tip().height);
}

/// A state reader that counts the records execution asks for.
struct CountingReader<'a> {
    store: &'a sou_ledger::Store,
    records: std::cell::Cell<usize>,
}

impl sou_ledger::StateReader for CountingReader<'_> {
    fn get_state(&self, key: &[u8]) -> sou_ledger::Result<Option<Vec<u8>>> {
        self.records.set(self.records.get() + 1);
        self.store.get_state(key)
    }

    fn multi_get_state(&self, keys: &[&[u8]]) -> sou_ledger::Result<Vec<Option<Vec<u8>>>> {
        self.records.set(self.records.get() + keys.len());
        self.store.multi_get_state(keys)
    }
}

/// Executes one transfer from user 0 to user 1 on `c`'s tip; returns the
/// executed block and how many state records execution read.
fn one_transfer(c: &Chain) -> (sou_ledger::ExecutedBlock, usize) {
    let reader = CountingReader {
        store: c.ledger.store(),
        records: std::cell::Cell::new(0),
    };
    let tip = c.ledger.tip();
    let ctx = sou_ledger::BlockContext {
        chain_id: *c.ledger.chain_id(),
        height: tip.height + 1,
        parent: tip.hash,
        proposer: c.keys.validators[0].address(),
        timestamp_ms: c.ledger.tip_header().timestamp_ms + 500,
    };
    let base = c.ledger.store().lthash().unwrap();
    let mut exec = sou_ledger::BlockExecutor::new(&reader, base, ctx).unwrap();
    let tx = c.tx(c.user(0), transfer(c.addr(1), 1_000));
    exec.apply(
        vec![tx.into()],
        &|h, _| no_verified(h),
        sou_ledger::OnInvalid::Reject,
    )
    .unwrap();
    let executed = exec.finish().unwrap();
    (executed, reader.records.get())
}

#[test]
fn the_state_roots_cost_follows_the_block_not_the_state() {
    // The state root is an LtHash: `StateCache::diff` expands each record
    // the block changed once for its old value and once for its new one,
    // and nothing else, so a block costs at most 2 x writes.len() expansions
    // plus the records it reads. Neither may depend on how big the state
    // is: the same transfer on a state with 10,000 more accounts reads the
    // same records and writes the same bytes.
    let small = chain(2);
    let big = chain_from(2, params(), |g| {
        for i in 0..10_000 {
            let filler = Address::module(&format!("filler account {i}"));
            g.balances.push((filler, usdt(), Amount(1)));
        }
    });
    let entries = |c: &Chain| c.ledger.store().state_entries().unwrap().len();
    assert!(entries(&big) >= entries(&small) + 10_000);

    let (a, read_a) = one_transfer(&small);
    let (b, read_b) = one_transfer(&big);
    assert_eq!(a.receipts[0].status, TxStatus::Success);
    assert_eq!(read_a, read_b, "records read");
    assert_eq!(a.writes, b.writes, "records written");
    // The transfer's two accounts, the validators and operators that share
    // the fee, and the rewards pool: a handful, not the state.
    assert!(a.writes.len() <= 8, "{} writes", a.writes.len());
    assert_ne!(a.state_root(), b.state_root());

    // And the incremental root over the big state is the full recompute.
    big.ledger.commit(&b).unwrap();
    assert_eq!(full_state_root(&big.ledger), big.ledger.state_root());
}
