//! Each transaction kind: its effect, and every way it must fail. A failed
//! payload changes nothing but the nonce and the fee.

use sou_ledger::state::fee_collector;
use sou_types::asset::NATIVE;
use sou_types::{Amount, Memo, Payload, Payout, Symbol};

use crate::support::*;

#[test]
fn transfer_moves_funds_and_charges_the_fee() {
    let mut c = chain(2);
    let (a, b) = (c.addr(0), c.addr(1));
    let key = c.user(0).clone_key();
    let r = c.run(
        &key,
        Payload::Transfer {
            asset: usdt(),
            to: b,
            amount: Amount(1_250_000),
            memo: Memo::new(b"invoice-7".to_vec()).unwrap(),
        },
    );
    assert_ok(&r);
    assert_eq!(r.fee, FEE);
    assert_eq!(c.balance(&a, usdt()), USER_USDT - 1_250_000 - FEE.0);
    assert_eq!(c.balance(&b, usdt()), USER_USDT + 1_250_000);
    assert_eq!(c.ledger.account(&a).unwrap().nonce, 1);
    // The fee was shared out among validators at the end of the block.
    assert_eq!(c.balance(&fee_collector(), usdt()), 0);
    assert_conserved(&c.ledger);
}

#[test]
fn transfer_failures_change_nothing_but_nonce_and_fee() {
    let mut c = chain(3);
    let (a, b) = (c.addr(0), c.addr(1));
    let user = c.user(0).clone_key();
    let freezer = c.roles(usdt()).freezer.clone_key();
    let pauser = c.roles(usdt()).pauser.clone_key();

    let before = c.balance(&a, usdt());
    let r = c.run(&user, transfer(b, USER_USDT + 1));
    assert_failed(&r, "insufficient USDT balance");
    assert_eq!(c.balance(&a, usdt()), before - FEE.0);
    assert_eq!(c.balance(&b, usdt()), USER_USDT);
    assert_eq!(c.ledger.account(&a).unwrap().nonce, 1);

    assert_failed(&c.run(&user, transfer(b, 0)), "greater than zero");
    let r = c.run(
        &user,
        Payload::Transfer {
            asset: Symbol::new("EUR").unwrap(),
            to: b,
            amount: Amount(1),
            memo: Memo::empty(),
        },
    );
    assert_failed(&r, "unknown asset EUR");

    // Frozen recipient.
    assert_ok(&c.run(
        &freezer,
        Payload::Freeze {
            asset: usdt(),
            address: b,
        },
    ));
    assert_failed(&c.run(&user, transfer(b, 10)), "is frozen in USDT");
    assert_ok(&c.run(
        &freezer,
        Payload::Unfreeze {
            asset: usdt(),
            address: b,
        },
    ));
    assert_ok(&c.run(&user, transfer(b, 10)));

    // Paused asset: nobody can transfer, the native token is unaffected.
    assert_ok(&c.run(&pauser, Payload::Pause { asset: usdt() }));
    assert_failed(&c.run(&user, transfer(b, 10)), "USDT is paused");
    let r = c.run(
        &user,
        Payload::Transfer {
            asset: NATIVE,
            to: b,
            amount: Amount(5),
            memo: Memo::empty(),
        },
    );
    assert_ok(&r);
    assert_ok(&c.run(&pauser, Payload::Unpause { asset: usdt() }));
    assert_ok(&c.run(&user, transfer(b, 10)));
    assert_conserved(&c.ledger);
}

#[test]
fn frozen_sender_is_refused_inclusion() {
    // A sender frozen in the fee asset cannot pay fees: its transactions
    // may not be included at all.
    let mut c = chain(2);
    let (a, b) = (c.addr(0), c.addr(1));
    let freezer = c.roles(usdt()).freezer.clone_key();
    assert_ok(&c.run(
        &freezer,
        Payload::Freeze {
            asset: usdt(),
            address: a,
        },
    ));
    let tx = c.tx(c.user(0), transfer(b, 10));
    let (executed, applied) = c.block(vec![tx]);
    assert!(executed.receipts.is_empty());
    assert!(applied.invalid[0]
        .1
        .to_string()
        .contains("frozen in the fee asset"));
    // The native token has no freezer: nobody can freeze stake.
    let r = c.run(
        &freezer,
        Payload::Freeze {
            asset: NATIVE,
            address: b,
        },
    );
    assert_failed(&r, "not the freezer of SOU");
}

#[test]
fn a_sender_frozen_in_an_asset_cannot_send_it_but_can_pay_fees() {
    let mut c = chain(2);
    let (a, b) = (c.addr(0), c.addr(1));
    let user = c.user(0).clone_key();
    let freezer = c.roles(eurc()).freezer.clone_key();
    assert_ok(&c.run(
        &freezer,
        Payload::Freeze {
            asset: eurc(),
            address: a,
        },
    ));
    let eur = |amount| Payload::Transfer {
        asset: eurc(),
        to: b,
        amount: Amount(amount),
        memo: Memo::empty(),
    };
    let r = c.run(&user, eur(5));
    assert_failed(&r, "is frozen in EURC");
    assert_eq!(c.balance(&a, eurc()), USER_USDT);
    assert_eq!(c.balance(&b, eurc()), USER_USDT);
    // Other assets still move.
    assert_ok(&c.run(&user, transfer(b, 5)));
    // Nor can it receive the asset.
    let other = c.user(1).clone_key();
    let r = c.run(
        &other,
        Payload::Transfer {
            asset: eurc(),
            to: a,
            amount: Amount(1),
            memo: Memo::empty(),
        },
    );
    assert_failed(&r, "is frozen in EURC");
    assert_ok(&c.run(
        &freezer,
        Payload::Unfreeze {
            asset: eurc(),
            address: a,
        },
    ));
    assert_ok(&c.run(&user, eur(5)));
    assert_conserved(&c.ledger);
}

#[test]
fn batch_transfer_is_all_or_nothing() {
    let mut c = chain(4);
    let user = c.user(0).clone_key();
    let freezer = c.roles(usdt()).freezer.clone_key();
    let payouts = |c: &Chain| Payload::BatchTransfer {
        asset: usdt(),
        payouts: sou_types::tx::Payouts::new(
            (1..4)
                .map(|i| Payout {
                    to: c.addr(i),
                    amount: Amount(1_000),
                })
                .collect(),
        )
        .unwrap(),
        memo: Memo::empty(),
    };
    assert_ok(&c.run(&user, payouts(&c)));
    for i in 1..4 {
        assert_eq!(c.balance(&c.addr(i), usdt()), USER_USDT + 1_000);
    }
    let a3 = c.addr(3);
    assert_ok(&c.run(
        &freezer,
        Payload::Freeze {
            asset: usdt(),
            address: a3,
        },
    ));
    let before: Vec<u128> = (0..4).map(|i| c.balance(&c.addr(i), usdt())).collect();
    assert_failed(&c.run(&user, payouts(&c)), "frozen");
    for (i, was) in before.iter().enumerate().skip(1) {
        assert_eq!(
            c.balance(&c.addr(i), usdt()),
            *was,
            "recipient {i} was paid by a failed batch"
        );
    }
    assert_eq!(c.balance(&c.addr(0), usdt()), before[0] - FEE.0);
    assert_conserved(&c.ledger);
}

#[test]
fn batch_transfer_over_the_recipient_limit_is_refused() {
    let mut p = params();
    p.max_batch_recipients = 2;
    let mut c = chain_with(4, p);
    let payload = Payload::BatchTransfer {
        asset: usdt(),
        payouts: sou_types::tx::Payouts::new(
            (1..4)
                .map(|i| Payout {
                    to: c.addr(i),
                    amount: Amount(1),
                })
                .collect(),
        )
        .unwrap(),
        memo: Memo::empty(),
    };
    let tx = c.tx(c.user(0), payload);
    let (_, applied) = c.block(vec![tx]);
    assert!(applied.invalid[0]
        .1
        .to_string()
        .contains("3 recipients, over the limit of 2"));
}

#[test]
fn mint_and_burn_by_minters_within_allowance() {
    let mut c = chain(2);
    let roles = c.roles(usdt());
    let (master, freezer, pauser) = (
        roles.master_minter.clone_key(),
        roles.freezer.clone_key(),
        roles.pauser.clone_key(),
    );
    let minter = c.user(0).clone_key();
    let outsider = c.user(1).clone_key();
    let m = minter.address();
    let supply = c.supply(usdt());

    // Only the master minter configures minters.
    let r = c.run(
        &outsider,
        Payload::ConfigureMinter {
            asset: usdt(),
            minter: m,
            allowance: Amount(500),
        },
    );
    assert_failed(&r, "not the master minter of USDT");
    assert_ok(&c.run(
        &master,
        Payload::ConfigureMinter {
            asset: usdt(),
            minter: m,
            allowance: Amount(500),
        },
    ));

    // Mint within the allowance, then over it.
    let to = outsider.address();
    assert_ok(&c.run(
        &minter,
        Payload::Mint {
            asset: usdt(),
            to,
            amount: Amount(300),
        },
    ));
    assert_eq!(c.supply(usdt()), supply + 300);
    // The outsider paid one fee for its refused configure-minter.
    assert_eq!(c.balance(&to, usdt()), USER_USDT - FEE.0 + 300);
    let r = c.run(
        &minter,
        Payload::Mint {
            asset: usdt(),
            to,
            amount: Amount(201),
        },
    );
    assert_failed(&r, "exceeds the minter's remaining allowance of 200");
    assert_eq!(c.supply(usdt()), supply + 300);

    // Not a minter.
    let r = c.run(
        &outsider,
        Payload::Mint {
            asset: usdt(),
            to,
            amount: Amount(1),
        },
    );
    assert_failed(&r, "is not a minter of USDT");
    assert_failed(
        &c.run(
            &outsider,
            Payload::Burn {
                asset: usdt(),
                amount: Amount(1),
            },
        ),
        "not a minter",
    );

    // Burn own balance; more than held fails.
    assert_ok(&c.run(
        &minter,
        Payload::Burn {
            asset: usdt(),
            amount: Amount(100),
        },
    ));
    assert_eq!(c.supply(usdt()), supply + 200);
    let r = c.run(
        &minter,
        Payload::Burn {
            asset: usdt(),
            amount: Amount(USER_USDT * 10),
        },
    );
    assert_failed(&r, "insufficient USDT balance");

    // Mint to a frozen address, or while paused, fails.
    assert_ok(&c.run(
        &freezer,
        Payload::Freeze {
            asset: usdt(),
            address: to,
        },
    ));
    assert_failed(
        &c.run(
            &minter,
            Payload::Mint {
                asset: usdt(),
                to,
                amount: Amount(1),
            },
        ),
        "is frozen",
    );
    assert_ok(&c.run(
        &freezer,
        Payload::Unfreeze {
            asset: usdt(),
            address: to,
        },
    ));
    assert_ok(&c.run(&pauser, Payload::Pause { asset: usdt() }));
    assert_failed(
        &c.run(
            &minter,
            Payload::Mint {
                asset: usdt(),
                to,
                amount: Amount(1),
            },
        ),
        "paused",
    );
    assert_ok(&c.run(&pauser, Payload::Unpause { asset: usdt() }));

    // Removing the minter ends its powers; removing a non-minter fails.
    assert_failed(
        &c.run(
            &outsider,
            Payload::RemoveMinter {
                asset: usdt(),
                minter: m,
            },
        ),
        "not the master minter",
    );
    assert_ok(&c.run(
        &master,
        Payload::RemoveMinter {
            asset: usdt(),
            minter: m,
        },
    ));
    assert_failed(
        &c.run(
            &minter,
            Payload::Mint {
                asset: usdt(),
                to,
                amount: Amount(1),
            },
        ),
        "not a minter",
    );
    assert_failed(
        &c.run(
            &master,
            Payload::RemoveMinter {
                asset: usdt(),
                minter: m,
            },
        ),
        "not a minter",
    );
    assert_conserved(&c.ledger);
}

#[test]
fn mint_that_would_overflow_supply_fails() {
    let mut c = chain(1);
    let master = c.roles(usdt()).master_minter.clone_key();
    let minter = c.roles(usdt()).minter.clone_key();
    let to = c.addr(0);
    let huge = Amount(u128::MAX);
    assert_ok(&c.run(
        &master,
        Payload::ConfigureMinter {
            asset: usdt(),
            minter: minter.address(),
            allowance: huge,
        },
    ));
    let r = c.run(
        &minter,
        Payload::Mint {
            asset: usdt(),
            to,
            amount: huge,
        },
    );
    assert_failed(&r, "overflows");
    let left = u128::MAX - c.supply(usdt());
    assert_ok(&c.run(
        &minter,
        Payload::Mint {
            asset: usdt(),
            to,
            amount: Amount(left),
        },
    ));
    assert_eq!(c.supply(usdt()), u128::MAX);
    assert_failed(
        &c.run(
            &minter,
            Payload::Mint {
                asset: usdt(),
                to,
                amount: Amount(1),
            },
        ),
        "overflows",
    );
    assert_conserved(&c.ledger);
}

#[test]
fn freeze_seize_and_pause_need_their_roles() {
    let mut c = chain(2);
    let roles = c.roles(usdt());
    let (issuer, freezer, pauser) = (
        roles.issuer.clone_key(),
        roles.freezer.clone_key(),
        roles.pauser.clone_key(),
    );
    let outsider = c.user(0).clone_key();
    let victim = c.addr(1);

    assert_failed(
        &c.run(
            &outsider,
            Payload::Freeze {
                asset: usdt(),
                address: victim,
            },
        ),
        "not the freezer of USDT",
    );
    assert_failed(
        &c.run(&outsider, Payload::Pause { asset: usdt() }),
        "not the pauser of USDT",
    );
    assert_failed(
        &c.run(&pauser, Payload::Unpause { asset: usdt() }),
        "not paused",
    );
    assert_failed(
        &c.run(
            &freezer,
            Payload::Unfreeze {
                asset: usdt(),
                address: victim,
            },
        ),
        "is not frozen",
    );

    // Seizing needs a frozen address and the issuer.
    assert_failed(
        &c.run(
            &issuer,
            Payload::Seize {
                asset: usdt(),
                address: victim,
            },
        ),
        "is not frozen",
    );
    assert_ok(&c.run(
        &freezer,
        Payload::Freeze {
            asset: usdt(),
            address: victim,
        },
    ));
    assert_failed(
        &c.run(
            &freezer,
            Payload::Freeze {
                asset: usdt(),
                address: victim,
            },
        ),
        "is frozen",
    );
    assert_failed(
        &c.run(
            &outsider,
            Payload::Seize {
                asset: usdt(),
                address: victim,
            },
        ),
        "not the issuer of USDT",
    );
    let issuer_before = c.balance(&issuer.address(), usdt());
    let seized = c.balance(&victim, usdt());
    assert_ok(&c.run(
        &issuer,
        Payload::Seize {
            asset: usdt(),
            address: victim,
        },
    ));
    assert_eq!(c.balance(&victim, usdt()), 0);
    assert_eq!(
        c.balance(&issuer.address(), usdt()),
        issuer_before + seized - FEE.0
    );
    // The frozen address kept its native tokens: freezing is per asset.
    assert_eq!(c.balance(&victim, NATIVE), USER_SOU);
    assert_conserved(&c.ledger);
}
