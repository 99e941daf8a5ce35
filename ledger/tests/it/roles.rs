//! Asset roles: each role (issuer, master minter, pauser, freezer, minter)
//! is held by its own key, and every role-gated action is refused when
//! signed by any other role's key, by the same role of another asset, or by
//! a stranger, and changes nothing. Then the controls' interplay: what a
//! pause and a freeze stop.

use sou_ledger::state::AssetInfo;
use sou_ledger::InvalidTx;
use sou_types::asset::NATIVE;
use sou_types::tx::Payouts;
use sou_types::{Address, Amount, Keypair, Memo, Payload, Payout, Symbol};

use crate::support::*;

/// The failure of an action gated by `role` signed by someone else.
fn refusal(role: &str, asset: Symbol) -> String {
    if role == "minter" {
        format!("is not a minter of {asset}")
    } else {
        format!("is not the {role} of {asset}")
    }
}

fn asset_info(c: &Chain, asset: Symbol) -> AssetInfo {
    c.ledger.asset(&asset).unwrap().unwrap()
}

/// Signs every action with every key but its role's holder, runs them all
/// in one block, and checks that each failed for want of the role and that
/// the asset and `victim` are as they were.
fn refuse_to_all_but_the_holder(
    c: &mut Chain,
    asset: Symbol,
    actions: &[(&'static str, Payload)],
    victim: Address,
) {
    let other = if asset == usdt() { eurc() } else { usdt() };
    let stranger = c.user(1).clone_key();
    let mut signers: Vec<(String, Keypair)> = vec![("a stranger".into(), stranger)];
    for (name, key) in c.roles(asset).all() {
        signers.push((format!("the {name} of {asset}"), key.clone_key()));
    }
    for (name, key) in c.roles(other).all() {
        signers.push((format!("the {name} of {other}"), key.clone_key()));
    }
    let mut items = Vec::new();
    let mut expected = Vec::new();
    for (role, payload) in actions {
        let holder = c
            .roles(asset)
            .all()
            .into_iter()
            .find(|(name, _)| name == role)
            .map(|(_, k)| k.address())
            .unwrap();
        for (who, key) in &signers {
            if key.address() != holder {
                items.push((key, payload.clone()));
                expected.push((who.clone(), *role, payload.kind()));
            }
        }
    }
    let info = asset_info(c, asset);
    let victim_before = c.ledger.account(&victim).unwrap();
    let txs = c.sign_all(items);
    let (executed, applied) = c.block(txs);
    assert!(
        applied.invalid.is_empty(),
        "left out: {:?}",
        applied.invalid
    );
    assert_eq!(executed.receipts.len(), expected.len());
    for (r, (who, role, kind)) in executed.receipts.iter().zip(&expected) {
        match &r.status {
            sou_ledger::TxStatus::Failed { reason } => assert!(
                reason.contains(&refusal(role, asset)),
                "{kind} by {who}: {reason:?}"
            ),
            sou_ledger::TxStatus::Success => panic!("{kind} by {who} succeeded"),
        }
    }
    assert_eq!(asset_info(c, asset), info, "{asset} changed");
    let victim_after = c.ledger.account(&victim).unwrap();
    assert_eq!(victim_after.balance(&asset), victim_before.balance(&asset));
    assert_eq!(victim_after.frozen, victim_before.frozen);
}

/// Runs each payload signed by its key in one block; all must succeed.
fn all_succeed(c: &mut Chain, items: Vec<(&Keypair, Payload)>) {
    let kinds: Vec<&str> = items.iter().map(|(_, p)| p.kind()).collect();
    let txs = c.sign_all(items);
    let (executed, applied) = c.block(txs);
    assert!(
        applied.invalid.is_empty(),
        "left out: {:?}",
        applied.invalid
    );
    for (r, kind) in executed.receipts.iter().zip(kinds) {
        assert_eq!(r.status, sou_ledger::TxStatus::Success, "{kind}");
    }
}

fn role_matrix(asset: Symbol) {
    let mut c = chain(3);
    let victim = c.addr(0);
    let helper = c.addr(2);
    let roles = c.roles(asset);
    let (issuer, master, pauser, freezer, minter) = (
        roles.issuer.clone_key(),
        roles.master_minter.clone_key(),
        roles.pauser.clone_key(),
        roles.freezer.clone_key(),
        roles.minter.clone_key(),
    );

    // The asset live and the victim not frozen: every action but the
    // inverse ones (unfreeze, unpause, seize) could succeed.
    let live = [
        (
            "minter",
            Payload::Mint {
                asset,
                to: victim,
                amount: Amount(5),
            },
        ),
        (
            "minter",
            Payload::Burn {
                asset,
                amount: Amount(5),
            },
        ),
        (
            "master minter",
            Payload::ConfigureMinter {
                asset,
                minter: helper,
                allowance: Amount(10),
            },
        ),
        (
            "master minter",
            Payload::RemoveMinter {
                asset,
                minter: minter.address(),
            },
        ),
        (
            "freezer",
            Payload::Freeze {
                asset,
                address: victim,
            },
        ),
        ("pauser", Payload::Pause { asset }),
    ];
    refuse_to_all_but_the_holder(&mut c, asset, &live, victim);
    // Each holder can do what the others could not.
    let supply = c.supply(asset);
    all_succeed(
        &mut c,
        vec![
            (
                &minter,
                Payload::Mint {
                    asset,
                    to: victim,
                    amount: Amount(5),
                },
            ),
            (
                &minter,
                Payload::Burn {
                    asset,
                    amount: Amount(3),
                },
            ),
            (
                &master,
                Payload::ConfigureMinter {
                    asset,
                    minter: helper,
                    allowance: Amount(10),
                },
            ),
            (
                &master,
                Payload::RemoveMinter {
                    asset,
                    minter: helper,
                },
            ),
            (
                &freezer,
                Payload::Freeze {
                    asset,
                    address: victim,
                },
            ),
            (&pauser, Payload::Pause { asset }),
        ],
    );
    assert_eq!(c.supply(asset), supply + 5 - 3);
    let info = asset_info(&c, asset);
    assert!(info.paused);
    assert_eq!(info.allowance(&helper), None);
    assert!(c.ledger.account(&victim).unwrap().is_frozen(&asset));

    // Frozen and paused: the inverse actions, and a seize.
    let held = [
        (
            "freezer",
            Payload::Unfreeze {
                asset,
                address: victim,
            },
        ),
        (
            "issuer",
            Payload::Seize {
                asset,
                address: victim,
            },
        ),
        ("pauser", Payload::Unpause { asset }),
    ];
    refuse_to_all_but_the_holder(&mut c, asset, &held, victim);
    let seized = c.balance(&victim, asset);
    let issuer_before = c.balance(&issuer.address(), asset);
    // A seize is not a transfer: a pause does not stop it.
    all_succeed(
        &mut c,
        vec![
            (
                &issuer,
                Payload::Seize {
                    asset,
                    address: victim,
                },
            ),
            (
                &freezer,
                Payload::Unfreeze {
                    asset,
                    address: victim,
                },
            ),
            (&pauser, Payload::Unpause { asset }),
        ],
    );
    let fee = if asset == usdt() { FEE.0 } else { 0 };
    assert_eq!(c.balance(&victim, asset), 0);
    assert_eq!(
        c.balance(&issuer.address(), asset),
        issuer_before + seized - fee
    );
    assert!(!asset_info(&c, asset).paused);
    assert!(!c.ledger.account(&victim).unwrap().is_frozen(&asset));
    assert_conserved(&c.ledger);
}

#[test]
fn usdt_role_actions_are_refused_to_every_other_signer() {
    role_matrix(usdt());
}

#[test]
fn eurc_role_actions_are_refused_to_every_other_signer() {
    role_matrix(eurc());
}

#[test]
fn the_native_token_has_no_role_holders() {
    let mut c = chain(1);
    let victim = c.addr(0);
    let supply = c.supply(NATIVE);
    let mut items = Vec::new();
    let roles: Vec<(&str, Keypair)> = c
        .roles(usdt())
        .all()
        .iter()
        .map(|(n, k)| (*n, k.clone_key()))
        .collect();
    let actions = [
        (
            "minter",
            Payload::Mint {
                asset: NATIVE,
                to: victim,
                amount: Amount(1),
            },
        ),
        (
            "minter",
            Payload::Burn {
                asset: NATIVE,
                amount: Amount(1),
            },
        ),
        (
            "master minter",
            Payload::ConfigureMinter {
                asset: NATIVE,
                minter: victim,
                allowance: Amount(1),
            },
        ),
        (
            "freezer",
            Payload::Freeze {
                asset: NATIVE,
                address: victim,
            },
        ),
        (
            "issuer",
            Payload::Seize {
                asset: NATIVE,
                address: victim,
            },
        ),
        ("pauser", Payload::Pause { asset: NATIVE }),
    ];
    let mut expected = Vec::new();
    for (role, payload) in &actions {
        for (_, key) in &roles {
            items.push((key, payload.clone()));
            expected.push(refusal(role, NATIVE));
        }
    }
    let txs = c.sign_all(items);
    let (executed, _) = c.block(txs);
    assert_eq!(executed.receipts.len(), expected.len());
    for (r, needle) in executed.receipts.iter().zip(&expected) {
        assert_failed(r, needle);
    }
    assert_eq!(c.supply(NATIVE), supply);
    assert!(!c.ledger.account(&victim).unwrap().is_frozen(&NATIVE));
}

fn batch(asset: Symbol, to: &[Address], amount: u128) -> Payload {
    Payload::BatchTransfer {
        asset,
        payouts: Payouts::new(
            to.iter()
                .map(|a| Payout {
                    to: *a,
                    amount: Amount(amount),
                })
                .collect(),
        )
        .unwrap(),
        memo: Memo::empty(),
    }
}

#[test]
fn batch_transfer_and_burn_are_refused_while_paused() {
    let mut c = chain(3);
    let user = c.user(0).clone_key();
    let to = [c.addr(1), c.addr(2)];
    let pauser = c.roles(eurc()).pauser.clone_key();
    let minter = c.roles(eurc()).minter.clone_key();
    assert_ok(&c.run(&pauser, Payload::Pause { asset: eurc() }));
    let supply = c.supply(eurc());
    let r = c.run(&user, batch(eurc(), &to, 7));
    assert_failed(&r, "asset EURC is paused");
    let r = c.run(
        &minter,
        Payload::Burn {
            asset: eurc(),
            amount: Amount(7),
        },
    );
    assert_failed(&r, "asset EURC is paused");
    assert_eq!(c.supply(eurc()), supply);
    assert_eq!(c.balance(&user.address(), eurc()), USER_USDT);
    assert_eq!(c.balance(&minter.address(), eurc()), USER_USDT);
    for a in &to {
        assert_eq!(c.balance(a, eurc()), USER_USDT);
    }
    // A pause is per asset: USDT still moves in a batch.
    assert_ok(&c.run(&user, batch(usdt(), &to, 7)));
    assert_ok(&c.run(&pauser, Payload::Unpause { asset: eurc() }));
    assert_ok(&c.run(&user, batch(eurc(), &to, 7)));
    assert_ok(&c.run(
        &minter,
        Payload::Burn {
            asset: eurc(),
            amount: Amount(7),
        },
    ));
    assert_eq!(c.supply(eurc()), supply - 7);
    assert_conserved(&c.ledger);
}

#[test]
fn a_frozen_minter_can_neither_mint_nor_burn() {
    // The rule (ledger/src/assets.rs `mint`, `burn`): a minter frozen in the
    // asset is refused like any frozen sender, whoever the recipient is,
    // and its allowance is untouched.
    let mut c = chain(2);
    let freezer = c.roles(eurc()).freezer.clone_key();
    let minter = c.roles(eurc()).minter.clone_key();
    let to = c.addr(1);
    assert_ok(&c.run(
        &freezer,
        Payload::Freeze {
            asset: eurc(),
            address: minter.address(),
        },
    ));
    let info = asset_info(&c, eurc());
    let r = c.run(
        &minter,
        Payload::Mint {
            asset: eurc(),
            to,
            amount: Amount(10),
        },
    );
    assert_failed(&r, &format!("{} is frozen in EURC", minter.address()));
    let r = c.run(
        &minter,
        Payload::Burn {
            asset: eurc(),
            amount: Amount(10),
        },
    );
    assert_failed(&r, &format!("{} is frozen in EURC", minter.address()));
    assert_eq!(asset_info(&c, eurc()), info, "supply or allowance moved");
    assert_eq!(c.balance(&to, eurc()), USER_USDT);
    assert_ok(&c.run(
        &freezer,
        Payload::Unfreeze {
            asset: eurc(),
            address: minter.address(),
        },
    ));
    assert_ok(&c.run(
        &minter,
        Payload::Mint {
            asset: eurc(),
            to,
            amount: Amount(10),
        },
    ));
    assert_eq!(
        asset_info(&c, eurc()).allowance(&minter.address()),
        Some(Amount(GENESIS_ALLOWANCE - 10))
    );

    // Frozen in the fee asset, a minter cannot even pay the fee: its mint is
    // left out of the block.
    let usdt_minter = c.roles(usdt()).minter.clone_key();
    let usdt_freezer = c.roles(usdt()).freezer.clone_key();
    assert_ok(&c.run(
        &usdt_freezer,
        Payload::Freeze {
            asset: usdt(),
            address: usdt_minter.address(),
        },
    ));
    let supply = c.supply(usdt());
    let tx = c.tx(
        &usdt_minter,
        Payload::Mint {
            asset: usdt(),
            to,
            amount: Amount(10),
        },
    );
    let (executed, applied) = c.block(vec![tx]);
    assert!(executed.receipts.is_empty());
    assert_eq!(applied.invalid[0].1, InvalidTx::SenderFrozen(usdt()));
    assert_eq!(c.supply(usdt()), supply);
    assert_conserved(&c.ledger);
}

#[test]
fn a_batch_transfer_with_a_frozen_recipient_pays_no_one() {
    let mut c = chain(4);
    let user = c.user(0).clone_key();
    let freezer = c.roles(eurc()).freezer.clone_key();
    let to = [c.addr(1), c.addr(2), c.addr(3)];
    // The frozen recipient is in the middle: the first was already paid
    // when the batch failed, and must be paid back.
    assert_ok(&c.run(
        &freezer,
        Payload::Freeze {
            asset: eurc(),
            address: to[1],
        },
    ));
    let r = c.run(&user, batch(eurc(), &to, 1_000));
    assert_failed(&r, &format!("{} is frozen in EURC", to[1]));
    assert_eq!(c.balance(&user.address(), eurc()), USER_USDT);
    for a in &to {
        assert_eq!(c.balance(a, eurc()), USER_USDT, "{a} was paid");
    }
    // Frozen in EURC only: the same batch in USDT pays everyone.
    assert_ok(&c.run(&user, batch(usdt(), &to, 1_000)));
    for a in &to {
        assert_eq!(c.balance(a, usdt()), USER_USDT + 1_000);
    }
    assert_conserved(&c.ledger);
}
