//! Staking: registration, bonding, unbonding and withdrawal, rewards,
//! slashing, jailing, and the validator set at epoch boundaries.

use sou_ledger::state::{bonded_pool, fee_collector, rewards_pool};
use sou_ledger::Error;
use sou_types::asset::NATIVE;
use sou_types::{Amount, Hash, Keypair, Payload};

use crate::support::*;

const SOU: u128 = 1_000_000_000;

fn register(c: &mut Chain, who: &Keypair, label: &str, commission_bps: u16) -> sou_ledger::Receipt {
    let consensus_key = Keypair::derive_insecure(7, label).public();
    c.run(
        who,
        Payload::RegisterValidator {
            consensus_key,
            commission_bps,
        },
    )
}

#[test]
fn a_bonded_candidate_joins_the_set_at_the_next_epoch_and_leaves_when_unbonded() {
    let mut c = chain(2);
    let user = c.user(0).clone_key();
    let op = user.address();
    assert_ok(&register(&mut c, &user, "new", 500));
    assert_ok(&c.run(
        &user,
        Payload::Bond {
            validator: op,
            amount: Amount(2_000 * SOU),
        },
    ));
    assert_eq!(c.balance(&op, NATIVE), USER_SOU - 2_000 * SOU);
    // Not in the current epoch's set.
    let epoch_now = sou_ledger::staking::epoch_of(c.ledger.tip().height, 5);
    let current = c.ledger.validator_set(epoch_now).unwrap().unwrap();
    assert!(current.validators.iter().all(|v| v.operator != op));
    // In the next one, at the top by stake.
    let next = c.run_to_epoch_end();
    let set = c.ledger.validator_set(next).unwrap().unwrap();
    assert_eq!(set.validators[0].operator, op);
    assert_eq!(set.validators[0].power, Amount(2_000 * SOU));
    assert_eq!(set.validators.len(), 3);

    // Unbonding everything takes it out at the following epoch.
    assert_ok(&c.run(
        &user,
        Payload::Unbond {
            validator: op,
            amount: Amount(2_000 * SOU),
        },
    ));
    let next = c.run_to_epoch_end();
    let set = c.ledger.validator_set(next).unwrap().unwrap();
    assert!(set.validators.iter().all(|v| v.operator != op));
    assert_eq!(set.validators.len(), 2);
    assert_conserved(&c.ledger);
}

#[test]
fn registration_and_bonding_failures() {
    let mut c = chain(2);
    let user = c.user(0).clone_key();
    let other = c.user(1).clone_key();
    assert_failed(&register(&mut c, &user, "k", 10_001), "10001 basis points");
    assert_ok(&register(&mut c, &user, "k", 0));
    assert_failed(&register(&mut c, &user, "k2", 0), "already a validator");
    assert_failed(
        &register(&mut c, &other, "k", 0),
        "already used by validator",
    );
    let r = c.run(
        &other,
        Payload::RegisterValidator {
            consensus_key: sou_types::PublicKey([0; 32]),
            commission_bps: 0,
        },
    );
    assert_failed(&r, "invalid consensus key");
    let r = c.run(
        &other,
        Payload::Bond {
            validator: other.address(),
            amount: Amount(1),
        },
    );
    assert_failed(&r, "is not a validator");
    let r = c.run(
        &other,
        Payload::Bond {
            validator: user.address(),
            amount: Amount(USER_SOU + 1),
        },
    );
    assert_failed(&r, "insufficient SOU balance");
    assert_failed(
        &c.run(
            &other,
            Payload::Bond {
                validator: user.address(),
                amount: Amount(0),
            },
        ),
        "greater than zero",
    );
    assert_conserved(&c.ledger);
}

#[test]
fn unbonding_waits_for_the_period_then_withdraws() {
    let mut c = chain(1);
    let user = c.user(0).clone_key();
    let val = c.keys.validators[0].address();
    assert_ok(&c.run(
        &user,
        Payload::Bond {
            validator: val,
            amount: Amount(100 * SOU),
        },
    ));
    let r = c.run(
        &user,
        Payload::Unbond {
            validator: val,
            amount: Amount(101 * SOU),
        },
    );
    assert_failed(&r, "less than");
    assert_ok(&c.run(
        &user,
        Payload::Unbond {
            validator: val,
            amount: Amount(40 * SOU),
        },
    ));
    let unbonded_at = c.ledger.tip().height;
    assert_failed(
        &c.run(&user, Payload::Withdraw { validator: val }),
        "nothing to withdraw",
    );
    while c.ledger.tip().height + 1 < unbonded_at + 3 {
        c.block(vec![]);
    }
    let before = c.balance(&user.address(), NATIVE);
    assert_ok(&c.run(&user, Payload::Withdraw { validator: val }));
    assert_eq!(c.balance(&user.address(), NATIVE), before + 40 * SOU);
    assert_failed(
        &c.run(&user, Payload::Withdraw { validator: val }),
        "nothing to withdraw",
    );
    // The rest is still bonded.
    let v = c.ledger.validator(&val).unwrap().unwrap();
    assert_eq!(v.tokens, Amount(VALIDATOR_STAKE + 60 * SOU));
    assert_conserved(&c.ledger);
}

#[test]
fn unbonding_entries_are_limited() {
    let mut p = params();
    p.max_unbonding_entries = 2;
    let mut c = chain_with(1, p);
    let user = c.user(0).clone_key();
    let val = c.keys.validators[0].address();
    assert_ok(&c.run(
        &user,
        Payload::Bond {
            validator: val,
            amount: Amount(10 * SOU),
        },
    ));
    assert_ok(&c.run(
        &user,
        Payload::Unbond {
            validator: val,
            amount: Amount(SOU),
        },
    ));
    assert_ok(&c.run(
        &user,
        Payload::Unbond {
            validator: val,
            amount: Amount(SOU),
        },
    ));
    assert_failed(
        &c.run(
            &user,
            Payload::Unbond {
                validator: val,
                amount: Amount(SOU),
            },
        ),
        "already 2 unbonding entries",
    );
}

#[test]
fn fees_go_to_validators_by_stake_with_commission() {
    let mut c = chain(2);
    let user = c.user(0).clone_key();
    let val0 = c.keys.validators[0].address();
    let val1 = c.keys.validators[1].address();
    // user0 delegates as much as each validator's own stake to validator 0.
    assert_ok(&c.run(
        &user,
        Payload::Bond {
            validator: val0,
            amount: Amount(VALIDATOR_STAKE),
        },
    ));
    let op0_before = c.balance(&val0, usdt());
    let op1_before = c.balance(&val1, usdt());
    // A block with ten fee-paying transfers.
    let payer = c.user(1).clone_key();
    let txs: Vec<_> = (0..10)
        .map(|n| c.tx_nonce(&payer, n, transfer(user.address(), 1)))
        .collect();
    let (executed, _) = c.block(txs);
    assert_eq!(executed.receipts.len(), 10);
    let fees = 10 * FEE.0;
    assert_eq!(c.balance(&fee_collector(), usdt()), 0);
    // Equal power in epoch 0 (the bond counts from the next epoch): half each.
    let half = fees / 2;
    let commission = half / 10; // 1000 bps
    assert_eq!(c.balance(&val1, usdt()) - op1_before, commission);
    assert_eq!(c.balance(&val0, usdt()) - op0_before, commission);
    // Validator 0's delegators (its operator and user0, equal shares) split
    // the rest; user0 claims its part.
    let before = c.balance(&user.address(), usdt());
    assert_ok(&c.run(&user, Payload::ClaimRewards { validator: val0 }));
    let claimed = c.balance(&user.address(), usdt()) + FEE.0 - before;
    // Its shares count from the bond's own block on (that block's fees are
    // shared out after its transactions), so it earns from both blocks.
    let per_block = |fees: u128| (fees / 2 - fees / 2 / 10) / 2;
    let expected = per_block(fees) + per_block(FEE.0);
    assert!(
        claimed.abs_diff(expected) <= 2,
        "claimed {claimed}, expected about {expected}"
    );
    // Nothing is owed by a validator it never delegated to.
    assert_failed(
        &c.run(&user, Payload::ClaimRewards { validator: val1 }),
        "no rewards",
    );
    assert_conserved(&c.ledger);
}

#[test]
fn slashing_burns_bonded_and_unbonding_stake_once_per_evidence() {
    let mut c = chain(1);
    let user = c.user(0).clone_key();
    let val = c.keys.validators[0].address();
    assert_ok(&c.run(
        &user,
        Payload::Bond {
            validator: val,
            amount: Amount(100 * SOU),
        },
    ));
    assert_ok(&c.run(
        &user,
        Payload::Unbond {
            validator: val,
            amount: Amount(20 * SOU),
        },
    ));
    let supply = c.supply(NATIVE);
    let pool = c.balance(&bonded_pool(), NATIVE);
    let evidence = Hash::domain("sou test evidence v1", b"double sign");
    // 10%: the bonded tokens and the pending unbonding entry both lose 10%.
    let burned = c.with_block(|e| e.slash(val, 100_000, evidence)).unwrap();
    let bonded = VALIDATOR_STAKE + 80 * SOU;
    assert_eq!(burned, Amount(bonded / 10 + 2 * SOU));
    let v = c.ledger.validator(&val).unwrap().unwrap();
    assert_eq!(v.tokens, Amount(bonded - bonded / 10));
    assert_eq!(c.supply(NATIVE), supply - burned.0);
    assert_eq!(c.balance(&bonded_pool(), NATIVE), pool - burned.0);
    // The same evidence cannot slash twice.
    let again = c.with_block(|e| e.slash(val, 100_000, evidence));
    assert!(
        matches!(
            again,
            Err(Error::Rejected(sou_ledger::TxError::EvidenceUsed(_)))
        ),
        "{again:?}"
    );
    assert!(c
        .with_block(|e| e.slash(val, 1_000_001, Hash::ZERO))
        .is_err());
    // The delegator's unbonding entry pays out 18 SOU, not 20.
    c.empty_blocks(3);
    let before = c.balance(&user.address(), NATIVE);
    assert_ok(&c.run(&user, Payload::Withdraw { validator: val }));
    assert_eq!(c.balance(&user.address(), NATIVE), before + 18 * SOU);
    assert_conserved(&c.ledger);
}

#[test]
fn jailed_validators_leave_the_set_and_may_return() {
    let mut c = chain(0);
    let val1 = c.keys.validators[1].clone_key();
    let op = val1.address();
    let until = c.ledger.tip().height + 8;
    c.with_block(|e| e.jail(op, until)).unwrap();
    let next = c.run_to_epoch_end();
    let set = c.ledger.validator_set(next).unwrap().unwrap();
    assert_eq!(set.validators.len(), 1);
    assert!(set.validators.iter().all(|v| v.operator != op));
    if c.ledger.tip().height + 1 < until {
        assert_failed(&c.run(&val1, Payload::Unjail), "jailed until height");
    }
    while c.ledger.tip().height + 1 < until {
        c.block(vec![]);
    }
    assert_ok(&c.run(&val1, Payload::Unjail));
    assert_failed(&c.run(&val1, Payload::Unjail), "is not jailed");
    let next = c.run_to_epoch_end();
    assert_eq!(
        c.ledger
            .validator_set(next)
            .unwrap()
            .unwrap()
            .validators
            .len(),
        2
    );

    // Jailed for good: no return.
    c.with_block(|e| e.jail(op, u64::MAX)).unwrap();
    assert_failed(&c.run(&val1, Payload::Unjail), "for good");
}

#[test]
fn the_set_is_never_left_empty() {
    let mut c = chain(0);
    let ops: Vec<_> = c.keys.validators.iter().map(|k| k.address()).collect();
    for op in ops {
        c.with_block(|e| e.jail(op, u64::MAX)).unwrap();
    }
    let next = c.run_to_epoch_end();
    assert_eq!(
        c.ledger
            .validator_set(next)
            .unwrap()
            .unwrap()
            .validators
            .len(),
        2
    );
}

fn misbehaviour(offender: sou_types::PublicKey, tag: &[u8]) -> sou_types::Misbehaviour {
    sou_types::Misbehaviour {
        epoch: 0,
        offender,
        id: Hash::domain("sou test evidence v1", tag),
        proof: tag.to_vec(),
    }
}

#[test]
fn evidence_in_a_block_slashes_and_jails_for_good_once() {
    let mut c = chain(0);
    let op = c.keys.validators[1].address();
    let key = Keypair::derive_insecure(42, "cons1").public();
    let before = c.ledger.validator(&op).unwrap().unwrap().tokens;
    let supply = c.supply(NATIVE);
    // What the node's consensus check accepts: proofs starting with "ok".
    let check = |m: &sou_types::Misbehaviour| m.proof.starts_with(b"ok");
    let checks = sou_ledger::Checks {
        verified: &|_, _| false,
        evidence: &check,
    };
    let proposer = c.keys.validators[0].address();
    let ts = c.ledger.tip_header().timestamp_ms + 1;
    let stranger = Keypair::derive_insecure(9, "nobody").public();
    let offered = vec![
        misbehaviour(key, b"bad proof"),
        misbehaviour(stranger, b"ok: not a validator"),
        misbehaviour(key, b"ok: first"),
        misbehaviour(key, b"ok: first"),
        misbehaviour(key, b"ok: second"),
    ];
    let (executed, _) = c
        .ledger
        .propose_on::<sou_ledger::Candidate>(&[], vec![], offered, proposer, ts, &checks)
        .unwrap();
    // Only the first piece that holds up is kept: the offender is then
    // jailed for good and further evidence against it is pointless.
    assert_eq!(executed.block.evidence.len(), 1);
    assert_eq!(executed.block.evidence[0].proof, b"ok: first");
    // Another node executes the block to the same state.
    let other = chain(0);
    let again = other
        .ledger
        .execute_on(&[], executed.block.clone(), &checks)
        .unwrap();
    assert_eq!(again.state_root(), executed.state_root());
    // A block whose evidence does not hold up, or was used, is invalid.
    let strict = sou_ledger::Checks {
        verified: &|_, _| false,
        evidence: &|_| false,
    };
    assert!(matches!(
        other
            .ledger
            .execute_on(&[], executed.block.clone(), &strict),
        Err(Error::InvalidBlock { .. })
    ));
    c.ledger.commit(&executed).unwrap();
    let v = c.ledger.validator(&op).unwrap().unwrap();
    let fraction = u128::from(c.ledger.params().slash_double_sign_ppm);
    assert_eq!(v.tokens.0, before.0 - before.0 * fraction / 1_000_000);
    assert_eq!(v.jailed_until, Some(u64::MAX));
    assert_eq!(c.supply(NATIVE), supply - (before.0 - v.tokens.0));
    let mut replay = executed.block.clone();
    replay.header.height += 1;
    replay.header.parent = executed.block.hash();
    assert!(c.ledger.execute_on(&[], replay, &checks).is_err());
    // The jailed validator leaves the set at the epoch's end.
    let next = c.run_to_epoch_end();
    let set = c.ledger.validator_set(next).unwrap().unwrap();
    assert!(set.validators.iter().all(|v| v.operator != op));
    assert_conserved(&c.ledger);
}

#[test]
fn a_validator_that_proposes_nothing_for_its_window_is_jailed_for_downtime() {
    let mut p = params();
    p.downtime_missed_proposals = 3;
    p.epoch_length_blocks = 1_000;
    let mut c = chain_with(0, p);
    // Two validators of equal power; every block here is proposed by the
    // first, so the second misses its share: 3 proposals = 6 blocks.
    let idle = c.keys.validators[1].address();
    let busy = c.keys.validators[0].address();
    let before = c.ledger.validator(&idle).unwrap().unwrap().tokens;
    for _ in 0..6 {
        c.block(vec![]);
    }
    assert_eq!(
        c.ledger.validator(&idle).unwrap().unwrap().jailed_until,
        None
    );
    c.block(vec![]);
    let v = c.ledger.validator(&idle).unwrap().unwrap();
    let height = c.ledger.tip().height;
    let p = c.ledger.params().clone();
    assert_eq!(v.jailed_until, Some(height + p.downtime_jail_blocks));
    let fraction = u128::from(p.slash_downtime_ppm);
    assert_eq!(v.tokens.0, before.0 - before.0 * fraction / 1_000_000);
    // The one that proposes is never jailed; the jailed one is not
    // jailed again while it serves its time.
    for _ in 0..10 {
        c.block(vec![]);
    }
    let b = c.ledger.validator(&busy).unwrap().unwrap();
    assert_eq!(b.jailed_until, None);
    assert_eq!(b.last_proposed_height, c.ledger.tip().height);
    assert_eq!(
        c.ledger.validator(&idle).unwrap().unwrap().jailed_until,
        Some(height + p.downtime_jail_blocks)
    );
    assert_conserved(&c.ledger);
}

/// The fee-asset balance of each of `who`.
fn usdt_of(c: &Chain, who: &[sou_types::Address]) -> Vec<u128> {
    who.iter().map(|a| c.balance(a, usdt())).collect()
}

#[test]
fn fees_are_shared_by_stake_then_split_by_commission_rounding_down() {
    // Validator 0: 1000 SOU at 10% commission; validator 1: 3000 SOU at 25%.
    // The shares in the comments follow `distribute_fees` and the reward
    // per share accumulator: every division rounds down.
    let mut c = chain_from(3, params(), |g| {
        g.validators[0].stake = Amount(VALIDATOR_STAKE);
        g.validators[0].commission_bps = 1_000;
        g.validators[1].stake = Amount(3 * VALIDATOR_STAKE);
        g.validators[1].commission_bps = 2_500;
    });
    let op0 = c.keys.validators[0].clone_key();
    let op1 = c.keys.validators[1].clone_key();
    let delegator = c.user(0).clone_key();
    let payer = c.user(1).clone_key();
    let who = [
        op0.address(),
        op1.address(),
        delegator.address(),
        rewards_pool(),
    ];
    let set = c.ledger.validator_set(0).unwrap().unwrap();
    assert_eq!(
        set.validators.iter().map(|v| v.power).collect::<Vec<_>>(),
        vec![Amount(3 * VALIDATOR_STAKE), Amount(VALIDATOR_STAKE)]
    );

    // Block 1: the delegator bonds 1000 SOU to validator 1. Its shares count
    // at once (4000 SOU of shares), its power only from the next epoch (the
    // set keeps 3:1). The bond's fee of 100:
    //   validator 1: 75, commission 18 (18.75), 57 to delegators;
    //   validator 0: 25, commission 2 (2.5), 23 to delegators.
    let before = usdt_of(&c, &who);
    assert_ok(&c.run(
        &delegator,
        Payload::Bond {
            validator: op1.address(),
            amount: Amount(VALIDATOR_STAKE),
        },
    ));
    let after = usdt_of(&c, &who);
    assert_eq!(after[0] - before[0], 2);
    assert_eq!(after[1] - before[1], 18);
    assert_eq!(after[3] - before[3], 57 + 23);
    assert_eq!(c.balance(&fee_collector(), usdt()), 0);

    // Block 2: forty transfers by a third party, 4000 in fees:
    //   validator 1: 3000, commission 750, 2250 to delegators;
    //   validator 0: 1000, commission 100, 900 to delegators.
    let to = c.addr(2);
    let txs = (0..40)
        .map(|n| c.tx_nonce(&payer, n, transfer(to, 1)))
        .collect();
    let (executed, _) = c.block(txs);
    assert_eq!(executed.receipts.len(), 40);
    let before = after;
    let after = usdt_of(&c, &who);
    assert_eq!(after[0] - before[0], 100);
    assert_eq!(after[1] - before[1], 750);
    assert_eq!(after[3] - before[3], 2250 + 900);
    assert_eq!(c.balance(&fee_collector(), usdt()), 0);
    // Per share (scaled by 10^18): validator 1 gained 57/4000 SOU of
    // shares then 2250/4000, validator 0 23/1000 then 900/1000.
    let per_share = |op: &Keypair| {
        c.ledger
            .validator(&op.address())
            .unwrap()
            .unwrap()
            .reward_per_share
    };
    assert_eq!(per_share(&op1), 14_250_000 + 562_500_000);
    assert_eq!(per_share(&op0), 23_000_000 + 900_000_000);

    // Block 3: everyone claims. Owed, rounded down once at the claim:
    //   delegator: 1000 SOU of shares x 576.75 per 1000 SOU = 576;
    //   operator 1: 3000 SOU x 576.75 per 1000 SOU = 1730 (1730.25);
    //   operator 0: 1000 SOU x 923 per 1000 SOU = 923.
    // Each pays a fee of 100, and the block's 300 in fees are shared out
    // after the claims: validator 1 225 (commission 56, 169 to delegators),
    // validator 0 75 (commission 7, 68 to delegators).
    let txs = c.sign_all(vec![
        (
            &delegator,
            Payload::ClaimRewards {
                validator: op1.address(),
            },
        ),
        (
            &op1,
            Payload::ClaimRewards {
                validator: op1.address(),
            },
        ),
        (
            &op0,
            Payload::ClaimRewards {
                validator: op0.address(),
            },
        ),
    ]);
    let (executed, _) = c.block(txs);
    executed.receipts.iter().for_each(assert_ok);
    let before = after;
    let after = usdt_of(&c, &who);
    assert_eq!(after[2] - before[2], 576 - 100);
    assert_eq!(after[1] - before[1], 1730 - 100 + 56);
    assert_eq!(after[0] - before[0], 923 - 100 + 7);
    // Validator 1's delegators were owed 57 + 2250 = 2307 in all and were
    // paid 576 + 1730 = 2306: the unit lost to rounding stays in the pool,
    // with block 3's 169 + 68 not yet claimed.
    assert_eq!(after[3], 80 + 3150 - (576 + 1730 + 923) + 169 + 68);
    assert_eq!(c.balance(&fee_collector(), usdt()), 0);
    assert_conserved(&c.ledger);
}

#[test]
fn what_rounds_away_from_the_fee_shares_waits_in_the_collector() {
    // Stakes 1:2, no commission: a fee of 100 splits 33 + 66, and the unit
    // left over stays in the fee collector for the next block's share-out.
    let mut c = chain_from(2, params(), |g| {
        g.validators[0].commission_bps = 0;
        g.validators[1].commission_bps = 0;
        g.validators[1].stake = Amount(2 * VALIDATOR_STAKE);
    });
    let payer = c.user(0).clone_key();
    let to = c.addr(1);
    let pool = c.balance(&rewards_pool(), usdt());
    assert_ok(&c.run(&payer, transfer(to, 1)));
    assert_eq!(c.balance(&fee_collector(), usdt()), 1);
    assert_eq!(c.balance(&rewards_pool(), usdt()), pool + 33 + 66);
    // Next block: 101 to share, 33 (33.67) + 67 (67.33), one unit left.
    assert_ok(&c.run(&payer, transfer(to, 1)));
    assert_eq!(c.balance(&fee_collector(), usdt()), 1);
    assert_eq!(c.balance(&rewards_pool(), usdt()), pool + 99 + 100);
    // An empty block shares the unit out again: 0 + 0, it stays.
    c.block(vec![]);
    assert_eq!(c.balance(&fee_collector(), usdt()), 1);
    // With no commission every unit goes to the delegators (here each
    // validator's operator alone): 33 + 33 and 66 + 67.
    let owed = |c: &Chain, i: usize| {
        let op = c.keys.validators[i].address();
        let v = c.ledger.validator(&op).unwrap().unwrap();
        let d = c.ledger.delegation(&op, &op).unwrap();
        d.shares * v.reward_per_share / sou_ledger::state::REWARD_SCALE - d.reward_debt
    };
    assert_eq!(owed(&c, 0), 66);
    assert_eq!(owed(&c, 1), 133);
    assert_conserved(&c.ledger);
}

#[test]
fn a_frozen_operators_commission_stays_in_the_collector() {
    // Equal stakes at 10% commission; validator 1's operator is frozen in
    // the fee asset by the block's one transaction.
    let mut c = chain(1);
    let op0 = c.keys.validators[0].address();
    let op1 = c.keys.validators[1].address();
    let freezer = c.roles(usdt()).freezer.clone_key();
    let before = usdt_of(&c, &[op0, op1, rewards_pool()]);
    assert_ok(&c.run(
        &freezer,
        Payload::Freeze {
            asset: usdt(),
            address: op1,
        },
    ));
    // 100: 50 each, commission 5 each; validator 1's 5 is not paid.
    let after = usdt_of(&c, &[op0, op1, rewards_pool()]);
    assert_eq!(after[0] - before[0], 5);
    assert_eq!(after[1], before[1]);
    assert_eq!(after[2] - before[2], 45 + 45);
    assert_eq!(c.balance(&fee_collector(), usdt()), 5);
    // Next block, 105 to share: 52 each (52.5), commission 5 (5.2) each,
    // validator 1's kept again, and one unit of rounding: 6 stay.
    let user = c.user(0).clone_key();
    assert_ok(&c.run(&user, transfer(op0, 1)));
    let later = usdt_of(&c, &[op0, op1, rewards_pool()]);
    assert_eq!(later[0] - after[0], 1 + 5);
    assert_eq!(later[1], before[1]);
    assert_eq!(later[2] - after[2], 47 + 47);
    assert_eq!(c.balance(&fee_collector(), usdt()), 6);
    assert_conserved(&c.ledger);
}

/// Registers `key` as a validator and bonds `stake` to it, as two
/// transactions.
fn candidate(key: &Keypair, label: &str, stake: u128) -> [(Keypair, Payload); 2] {
    [
        (
            key.clone_key(),
            Payload::RegisterValidator {
                consensus_key: Keypair::derive_insecure(7, label).public(),
                commission_bps: 0,
            },
        ),
        (
            key.clone_key(),
            Payload::Bond {
                validator: key.address(),
                amount: Amount(stake),
            },
        ),
    ]
}

#[test]
fn the_set_is_the_top_n_by_stake_above_the_minimum_ties_by_address() {
    let mut p = params();
    p.max_validators = 4;
    p.min_validator_stake = Amount(500 * SOU);
    let mut c = chain_with(5, p);
    let keys: Vec<Keypair> = (0..5).map(|i| c.user(i).clone_key()).collect();
    let stakes = [
        2_000 * SOU,
        1_000 * SOU,
        1_000 * SOU,
        500 * SOU,     // exactly the minimum
        500 * SOU - 1, // one base unit below it
    ];
    let mut txs = Vec::new();
    for (i, (k, s)) in keys.iter().zip(stakes).enumerate() {
        txs.extend(candidate(k, &format!("cand{i}"), s));
    }
    let signed = c.sign_all(txs.iter().map(|(k, p)| (k, p.clone())).collect());
    let (executed, _) = c.block(signed);
    executed.receipts.iter().for_each(assert_ok);

    // Every candidate and its stake; the genesis validators have 1000 SOU.
    let mut all: Vec<(sou_types::Address, u128)> = keys
        .iter()
        .zip(stakes)
        .map(|(k, s)| (k.address(), s))
        .collect();
    for v in &c.keys.validators {
        all.push((v.address(), VALIDATOR_STAKE));
    }
    // The rule, stated independently: at least the minimum, by stake
    // descending, ties by address ascending, the first four.
    let expected = |all: &[(sou_types::Address, u128)]| {
        let mut e: Vec<_> = all
            .iter()
            .filter(|(_, s)| *s >= 500 * SOU)
            .copied()
            .collect();
        e.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        e.truncate(4);
        e
    };
    let members = |c: &Chain, epoch: u64| {
        c.ledger
            .validator_set(epoch)
            .unwrap()
            .unwrap()
            .validators
            .iter()
            .map(|v| (v.operator, v.power.0))
            .collect::<Vec<_>>()
    };

    // Epoch 1: the 2000 SOU candidate, then three of the four at 1000 SOU
    // (a tie cut by address); the one at the minimum is eligible but cut by
    // the top 4, the one below it is not eligible.
    let epoch = c.run_to_epoch_end();
    let set = members(&c, epoch);
    assert_eq!(set, expected(&all));
    assert_eq!(set[0], (keys[0].address(), 2_000 * SOU));
    let mut tied: Vec<_> = all
        .iter()
        .filter(|(_, s)| *s == 1_000 * SOU)
        .map(|(a, _)| *a)
        .collect();
    tied.sort();
    assert_eq!(
        set[1..].iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        tied[..3]
    );
    assert!(set.iter().all(|(a, _)| *a != keys[3].address()));

    // Three candidates unbond everything: with room in the set, the one at
    // exactly the minimum joins and the one a unit below stays out.
    let unbond: Vec<(&Keypair, Payload)> = (0..3)
        .map(|i| {
            (
                &keys[i],
                Payload::Unbond {
                    validator: keys[i].address(),
                    amount: Amount(stakes[i]),
                },
            )
        })
        .collect();
    let signed = c.sign_all(unbond);
    let (executed, _) = c.block(signed);
    executed.receipts.iter().for_each(assert_ok);
    for entry in all.iter_mut().take(3) {
        entry.1 = 0;
    }
    let epoch = c.run_to_epoch_end();
    let set = members(&c, epoch);
    assert_eq!(set, expected(&all));
    assert_eq!(set.len(), 3);
    assert_eq!(set[2], (keys[3].address(), 500 * SOU));
    assert!(set.iter().all(|(a, _)| *a != keys[4].address()));
    // The consensus keys are the registered ones.
    let full = c.ledger.validator_set(epoch).unwrap().unwrap();
    assert_eq!(
        full.validators[2].consensus_key,
        Keypair::derive_insecure(7, "cand3").public()
    );
    assert_conserved(&c.ledger);
}

#[test]
fn a_candidate_without_stake_never_joins_even_with_no_minimum() {
    let mut p = params();
    p.min_validator_stake = Amount(0);
    let mut c = chain_with(1, p);
    let user = c.user(0).clone_key();
    assert_ok(&register(&mut c, &user, "unbonded", 0));
    let epoch = c.run_to_epoch_end();
    let set = c.ledger.validator_set(epoch).unwrap().unwrap();
    assert_eq!(set.validators.len(), 2);
    assert!(set.validators.iter().all(|v| v.operator != user.address()));
}
