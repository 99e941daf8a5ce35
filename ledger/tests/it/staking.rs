//! Staking: registration, bonding, unbonding and withdrawal, rewards,
//! slashing, jailing, and the validator set at epoch boundaries.

use sou_ledger::state::{bonded_pool, fee_collector};
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
        verified: &no_verified,
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
        .propose_on(&[], vec![], offered, proposer, ts, &checks)
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
        verified: &no_verified,
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
