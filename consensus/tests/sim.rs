//! Seeded multi-validator simulations. Every test prints its seed; the
//! safety checker (no two blocks finalized at one height, no honest
//! validator signing conflicting votes) runs in every one.

use std::collections::BTreeSet;

use sou_consensus::sim::{
    Behaviour, CrashPlan, CrashPoint, Link, Links, SignedKind, Sim, SimConfig,
};

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

/// Runs until every listed validator has finalized `height`, or panics
/// with the seed after `deadline_ms` of simulated time.
fn reach(sim: &mut Sim, nodes: &[usize], height: u64, deadline_ms: u64) {
    let deadline = sim.now() + deadline_ms;
    let ok = sim.run_until(deadline, |s| s.min_height(nodes) >= height);
    sim.assert_safe();
    assert!(
        ok,
        "seed {}: validators {nodes:?} reached heights {:?}, not {height}, by t={}ms",
        sim.seed(),
        nodes
            .iter()
            .map(|&i| sim.finalized_height(i))
            .collect::<Vec<_>>(),
        sim.now()
    );
}

#[test]
fn four_equal_validators_finalize_200_blocks_identically() {
    for seed in [1, 2] {
        let mut sim = Sim::new(SimConfig::new(seed, vec![1; 4]));
        reach(&mut sim, &all(4), 200, 120_000);
        for i in 1..4 {
            let common = sim.chain(0).len().min(sim.chain(i).len());
            let a: Vec<_> = sim.chain(0).iter().take(common).collect();
            let b: Vec<_> = sim.chain(i).iter().take(common).collect();
            assert_eq!(
                a, b,
                "seed {seed}: validators 0 and {i} finalized different blocks"
            );
        }
        assert!(sim.evidence().is_empty());
    }
}

#[test]
fn one_of_four_crashed_for_good_does_not_stop_finality() {
    for seed in [3, 4] {
        let mut sim = Sim::new(SimConfig::new(seed, vec![1; 4]));
        reach(&mut sim, &all(4), 5, 30_000);
        sim.crash(2);
        let h = sim.max_height();
        reach(&mut sim, &[0, 1, 3], h + 50, 120_000);
    }
}

#[test]
fn two_of_four_crashed_halts_safely_then_recovers() {
    for seed in [5, 6] {
        let mut sim = Sim::new(SimConfig::new(seed, vec![1; 4]));
        reach(&mut sim, &all(4), 5, 30_000);
        sim.crash(1);
        sim.crash(3);
        // Let what was in flight land, then nothing more may be finalized.
        sim.run_for(2_000);
        let stalled = sim.max_height();
        sim.run_for(20_000);
        sim.assert_safe();
        assert_eq!(
            sim.max_height(),
            stalled,
            "seed {seed}: finalized without a quorum"
        );
        sim.restart(1);
        sim.restart(3);
        // Recovery is quick: the back-off is capped (1.6 s here) and the
        // live validators keep rebroadcasting what the others need.
        reach(&mut sim, &all(4), stalled + 10, 10_000);
    }
}

#[test]
fn a_two_two_partition_halts_then_heals() {
    for seed in [7, 8] {
        let mut sim = Sim::new(SimConfig::new(seed, vec![1; 4]));
        reach(&mut sim, &all(4), 5, 30_000);
        sim.partition(&[&[0, 1], &[2, 3]]);
        sim.run_for(2_000);
        let stalled = sim.max_height();
        sim.run_for(20_000);
        sim.assert_safe();
        assert_eq!(
            sim.max_height(),
            stalled,
            "seed {seed}: a half finalized alone"
        );
        sim.heal();
        reach(&mut sim, &all(4), stalled + 10, 10_000);
    }
}

#[test]
fn slow_lossy_links_still_make_progress() {
    for seed in [9, 10] {
        let mut cfg = SimConfig::new(seed, vec![1; 4]);
        cfg.links = Links::uniform(Link {
            latency_ms: 200,
            jitter_ms: 150,
            drop_ppm: 500_000,
        });
        cfg.engine.view_timeout_ms = 1_500;
        cfg.engine.max_view_timeout_ms = 6_000;
        let mut sim = Sim::new(cfg);
        reach(&mut sim, &all(4), 10, 600_000);
    }
}

#[test]
fn equivocating_leader_and_double_voter_are_caught_and_change_nothing() {
    // 7 validators tolerate 2 byzantine ones.
    for seed in [11, 12, 13] {
        let mut cfg = SimConfig::new(seed, vec![1; 7]);
        cfg.behaviours[1] = Behaviour::Equivocator;
        cfg.behaviours[2] = Behaviour::DoubleVoter;
        let mut sim = Sim::new(cfg);
        reach(&mut sim, &[0, 3, 4, 5, 6], 30, 120_000);
        let accused = sim.accused();
        assert!(
            accused.contains(&1),
            "seed {seed}: no evidence against the equivocating leader"
        );
        assert!(
            accused.contains(&2),
            "seed {seed}: no evidence against the double voter"
        );
        assert!(
            accused.iter().all(|i| *i == 1 || *i == 2),
            "seed {seed}: honest accused: {accused:?}"
        );
        let set = sim.validator_set().clone();
        for e in sim.evidence() {
            let key = e
                .verify(&set, b"sou-sim")
                .expect("evidence verifies on its own");
            assert!(key == set.validators[1].0 || key == set.validators[2].0);
        }
    }
}

/// Random crashes (3% of inputs), on top of the placed ones below: they
/// land anywhere, including where no vote is in flight.
#[test]
fn random_crashes_never_cause_conflicting_signatures() {
    let mut points = std::collections::BTreeMap::new();
    for seed in 20..26 {
        let mut cfg = SimConfig::new(seed, vec![1; 4]);
        cfg.crash_ppm = 30_000; // 3% of inputs end in a crash part-way
        cfg.restart_after_ms = 150;
        let mut sim = Sim::new(cfg);
        sim.run_for(60_000);
        sim.assert_safe();
        assert!(
            sim.max_height() >= 20,
            "seed {seed}: only {} blocks",
            sim.max_height()
        );
        for (p, n) in &sim.crash_points() {
            *points.entry(*p).or_insert(0) += n;
        }
    }
    // The crashes landed at every kind of point.
    for p in [
        CrashPoint::BeforePersist,
        CrashPoint::AfterPersistBeforeSend,
        CrashPoint::AfterSend,
    ] {
        assert!(
            points.get(&p).copied().unwrap_or(0) > 0,
            "no crash at {p:?}: {points:?}"
        );
    }
}

#[test]
fn a_silent_third_of_stake_halts_finality_just_under_does_not() {
    // 7 validators, total 100. Silent 34 (> 1/3): no quorum is possible.
    let over = vec![17, 17, 11, 11, 11, 11, 22];
    let mut cfg = SimConfig::new(30, over);
    cfg.behaviours[0] = Behaviour::Silent;
    cfg.behaviours[1] = Behaviour::Silent;
    let mut sim = Sim::new(cfg);
    sim.run_for(30_000);
    sim.assert_safe();
    assert_eq!(
        sim.max_height(),
        0,
        "finalized with over a third of stake silent"
    );

    // Silent 33 (< 1/3): the remaining 67 is a quorum.
    let under = vec![17, 16, 11, 11, 11, 12, 22];
    let mut cfg = SimConfig::new(31, under);
    cfg.behaviours[0] = Behaviour::Silent;
    cfg.behaviours[1] = Behaviour::Silent;
    let mut sim = Sim::new(cfg);
    reach(&mut sim, &[2, 3, 4, 5, 6], 20, 120_000);
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [40, 41, 42] {
        let run = |seed| {
            let mut cfg = SimConfig::new(seed, vec![3, 1, 2, 1]);
            cfg.links = Links::uniform(Link {
                latency_ms: 30,
                jitter_ms: 20,
                drop_ppm: 100_000,
            });
            // One validator behind a slower link: overrides draw from the
            // same seed.
            cfg.links.set_node(
                2,
                4,
                Link {
                    latency_ms: 120,
                    jitter_ms: 60,
                    drop_ppm: 200_000,
                },
            );
            cfg.crash_ppm = 10_000;
            let mut sim = Sim::new(cfg);
            sim.run_for(20_000);
            sim.assert_safe();
            (sim.trace_hash(), sim.max_height())
        };
        let (a, ha) = run(seed);
        let (b, hb) = run(seed);
        assert_eq!(a, b, "seed {seed}: two runs diverged");
        assert_eq!(ha, hb);
        assert!(ha > 0, "seed {seed}: nothing finalized");
        let (c, _) = run(seed + 100);
        assert_ne!(a, c, "different seeds gave the same trace");
    }
}

/// Four validators; validator 3's messages take about as long as the
/// view timer (180 ms, give or take 40), so in its views the proposal
/// races the timeout: some validators `nullify` a view that still gets
/// notarized by the others. Those are the views where a validator that
/// forgot its `nullify` across a crash would go on to `finalize`.
fn racing_leader(seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(seed, vec![1; 4]);
    cfg.links.set_outgoing(
        3,
        4,
        Link {
            latency_ms: 180,
            jitter_ms: 40,
            drop_ppm: 0,
        },
    );
    cfg.restart_after_ms = 150;
    cfg
}

/// Runs until every crash plan has fired (or panics after `deadline_ms`).
fn until_planned_crashes_fire(sim: &mut Sim, deadline_ms: u64) {
    let deadline = sim.now() + deadline_ms;
    let fired = sim.run_until(deadline, |s| s.plans_fired().iter().all(|f| *f));
    assert!(
        fired,
        "seed {}: crash plans fired: {:?}, hits {:?}",
        sim.seed(),
        sim.plans_fired(),
        sim.crash_hits()
    );
}

/// Test 7, systematically: for each point around a signed vote (before
/// persisting it, after persisting and before sending, after sending) and
/// each kind of vote the engine signs (a proposal, notarize, nullify,
/// finalize), validators 0, 1 and 2 each crash exactly there at their 2nd
/// and 6th vote of that kind, restart from their durable record and a
/// replay of their log, and: every crash hit where planned, no vote an
/// honest validator released (persisted or sent) conflicts with another
/// over the whole run, restarts included, nothing unsafe was finalized,
/// and every validator, the restarted ones included, finalizes ten more
/// blocks.
#[test]
fn a_crash_at_every_point_of_every_vote_never_causes_conflicting_signatures() {
    let mut covered = BTreeSet::new();
    let mut case = 0u64;
    for point in CrashPoint::AROUND_A_VOTE {
        for kind in SignedKind::ALL {
            let mut cfg = racing_leader(100 + case);
            case += 1;
            for node in 0..3 {
                for occurrence in [2, 6] {
                    cfg.crash_plans.push(CrashPlan::AtVote {
                        node,
                        kind,
                        point,
                        occurrence,
                    });
                }
            }
            let mut sim = Sim::new(cfg);
            until_planned_crashes_fire(&mut sim, 120_000);
            assert_eq!(
                sim.crash_hits().get(&(point, Some(kind))),
                Some(&6),
                "seed {}: {point:?} {kind:?}: {:?}",
                sim.seed(),
                sim.crash_hits()
            );
            assert_eq!(
                sim.crash_hits().values().sum::<u64>(),
                6,
                "seed {}: crashes besides the planned ones",
                sim.seed()
            );
            let h = sim.max_height();
            reach(&mut sim, &all(4), h + 10, 60_000);
            for node in 0..3 {
                assert!(sim.is_up(node), "seed {}: {node} is down", sim.seed());
                assert!(sim.signed_count(node, kind) >= 6);
            }
            covered.insert((point, kind));
        }
    }
    assert_eq!(covered.len(), 12, "{covered:?}");
}

/// A crash during recovery: validator 0 crashes after persisting (not
/// sending) its third `finalize`; on its first restart it crashes again
/// after replaying one logged message, and on its second restart after
/// replaying its whole log, before `Start`. The third restart recovers:
/// no conflicting votes, and finality goes on with it.
#[test]
fn a_crash_while_replaying_the_log_is_recovered_from() {
    for seed in [130, 131] {
        let mut cfg = racing_leader(seed);
        cfg.crash_plans = vec![
            CrashPlan::AtVote {
                node: 0,
                kind: SignedKind::Finalize,
                point: CrashPoint::AfterPersistBeforeSend,
                occurrence: 3,
            },
            CrashPlan::DuringReplay {
                node: 0,
                restart: 1,
                after_messages: 1,
            },
            CrashPlan::DuringReplay {
                node: 0,
                restart: 2,
                after_messages: usize::MAX,
            },
        ];
        let mut sim = Sim::new(cfg);
        until_planned_crashes_fire(&mut sim, 120_000);
        assert_eq!(
            sim.crash_hits().get(&(CrashPoint::DuringReplay, None)),
            Some(&2),
            "seed {seed}: {:?}",
            sim.crash_hits()
        );
        let h = sim.max_height();
        reach(&mut sim, &all(4), h + 10, 60_000);
        assert!(sim.is_up(0));
    }
}

/// Per-link conditions: validator 3 sits behind a slow, lossy link (300 ms
/// each way, 40% loss, both directions) while the others talk over a LAN.
/// The three fast validators hold a quorum and keep finalizing; the slow
/// one follows the same chain; the overrides applied exactly to its links.
#[test]
fn one_slow_lossy_validator_does_not_hold_back_the_others() {
    for seed in [140, 141] {
        let mut cfg = SimConfig::new(seed, vec![1; 4]);
        let slow = Link {
            latency_ms: 300,
            jitter_ms: 100,
            drop_ppm: 400_000,
        };
        cfg.links.set_node(3, 4, slow);
        let mut sim = Sim::new(cfg);
        // About 3 s of simulated time (2 s with every link fast): its
        // views time out, the others' do not.
        reach(&mut sim, &[0, 1, 2], 100, 10_000);
        // The slow validator follows (finalizations reach it, if late).
        reach(&mut sim, &[3], 80, 30_000);
        for other in 0..3 {
            for (from, to) in [(3, other), (other, 3)] {
                let s = sim.link_stats(from, to);
                assert!(
                    s.dropped > s.offered / 5 && s.dropped < s.offered * 3 / 5,
                    "seed {seed}: link {from}->{to} lost {} of {}",
                    s.dropped,
                    s.offered
                );
            }
            for to in (0..3).filter(|t| *t != other) {
                let s = sim.link_stats(other, to);
                assert!(s.offered > 0);
                assert_eq!(
                    s.dropped, 0,
                    "seed {seed}: fast link {other}->{to} lost some"
                );
            }
        }
    }
}

/// Links are directed: validator 3 hears everyone, and nobody hears it.
/// The other three finalize; validator 3 follows the chain; none of its
/// messages arrived anywhere.
#[test]
fn a_validator_nobody_hears_still_follows_the_chain() {
    let mut cfg = SimConfig::new(150, vec![1; 4]);
    let dead = Link {
        latency_ms: 10,
        jitter_ms: 0,
        drop_ppm: 1_000_000,
    };
    cfg.links.set_outgoing(3, 4, dead);
    let mut sim = Sim::new(cfg);
    reach(&mut sim, &[0, 1, 2, 3], 50, 60_000);
    for to in 0..3 {
        let out = sim.link_stats(3, to);
        assert!(out.offered > 0);
        assert_eq!(out.dropped, out.offered, "a message from 3 got through");
        let inc = sim.link_stats(to, 3);
        assert!(inc.offered > 0);
        assert_eq!(inc.dropped, 0);
    }
    let common = sim.chain(3).len().min(sim.chain(0).len());
    assert!(sim
        .chain(3)
        .iter()
        .take(common)
        .eq(sim.chain(0).iter().take(common)));
}

/// The double-sign record and the message log are pruned as finalization
/// advances (`guard::can_forget`): over 300 blocks they stay a handful of
/// entries, where without pruning they grow with the chain; and a
/// validator restarted from the pruned state recovers.
#[test]
fn the_durable_record_and_log_stay_small() {
    for prune in [true, false] {
        let mut cfg = SimConfig::new(160, vec![1; 4]);
        cfg.prune_durable_state = prune;
        let mut sim = Sim::new(cfg);
        reach(&mut sim, &all(4), 300, 120_000);
        let signed: u64 = SignedKind::ALL
            .iter()
            .map(|k| sim.signed_count(0, *k))
            .sum();
        assert!(signed > 500, "signed only {signed}");
        let ((record, max_record), (log, max_log)) = sim.durable_sizes(0);
        if prune {
            assert!(
                max_record <= 8 && max_log <= 64,
                "record peaked at {max_record}, log at {max_log}"
            );
            sim.crash(0);
            sim.run_for(500);
            sim.restart(0);
            let h = sim.max_height();
            reach(&mut sim, &all(4), h + 10, 30_000);
        } else {
            assert_eq!(record as u64, signed, "an unpruned record holds every vote");
            // Only messages that counted are logged (copies and stale ones
            // are dropped before): still several a block.
            assert!(log > 1_000, "the unpruned log holds only {log}");
        }
    }
}

/// An epoch change: epoch 0 (five equal validators) ends at height 30;
/// in epoch 1 validator 4 has left and validator 0 holds 4 of the 7 stake.
/// Everyone moves to epoch 1 on block 30, finality goes on, every epoch-1
/// finalization verifies against the new set only, the validator that
/// left signs nothing in epoch 1 yet follows the chain, and validators 0
/// and 1 alone (5 of 7 now; 2 of 5 before) keep finalizing.
#[test]
fn an_epoch_change_hands_over_to_the_new_validator_set() {
    let mut cfg = SimConfig::new(170, vec![1; 5]);
    cfg.epoch_length_blocks = Some(30);
    cfg.later_stakes = vec![vec![4, 1, 1, 1, 0]];
    let mut sim = Sim::new(cfg);
    reach(&mut sim, &all(5), 50, 60_000);
    for i in 0..5 {
        assert_eq!(sim.epoch_of(i), 1, "validator {i} did not move on");
    }
    let set0 = sim.validator_set().clone();
    let set1 = sim.validator_set_of(1).expect("epoch 1 reached").clone();
    assert_eq!(set1.len(), 4);
    let epoch1: Vec<_> = sim
        .finalization_certificates()
        .range((1, 0)..)
        .map(|(_, c)| c.clone())
        .collect();
    assert!(
        epoch1.len() >= 15,
        "only {} epoch-1 finalizations",
        epoch1.len()
    );
    for c in &epoch1 {
        c.verify(&set1, b"sou-sim")
            .expect("verifies against epoch 1's set");
        assert!(c.verify(&set0, b"sou-sim").is_err());
        let p = c.vote.proposal().expect("a finalization names a proposal");
        assert!(p.height > 30, "epoch 1 finalized height {}", p.height);
    }
    assert_eq!(
        sim.votes_of(4, 1).count(),
        0,
        "validator 4 voted in epoch 1"
    );
    assert!(sim.votes_of(4, 0).count() > 0);

    sim.crash(2);
    sim.crash(3);
    let (crashed_at, h) = (sim.now(), sim.max_height());
    reach(&mut sim, &[0, 1, 4], h + 10, 60_000);
    assert!(!set0.is_quorum(set0.power_of(&[0, 1])));
    let late: Vec<_> = sim
        .finalization_certificates()
        .range((1, 0)..)
        .filter(|(_, c)| c.vote.proposal().is_some_and(|p| p.height > h + 2))
        .map(|(_, c)| c.clone())
        .collect();
    assert!(!late.is_empty(), "nothing finalized after t={crashed_at}");
    for c in late {
        let signers: Vec<u32> = c.signatures.iter().map(|(i, _)| *i).collect();
        assert_eq!(signers, vec![0, 1], "with 2 and 3 down");
        c.verify(&set1, b"sou-sim")
            .expect("5 of 7 is a quorum in epoch 1");
    }
}

/// Many epoch changes in hard conditions: epochs of 3 blocks, the set
/// changing each time (a validator leaves, comes back with double stake,
/// another leaves), every link slow enough to race the view timer (so
/// epochs' last blocks are often notarized in views that are also
/// nullified and become final only through an epoch seal), 5% loss and
/// random crashes. Validators that fall behind an epoch are sent the
/// finalization that ended it. Everyone gets through 15 epochs, safely,
/// and every finalization verifies against its own epoch's set.
#[test]
fn epochs_change_repeatedly_through_seals_loss_and_crashes() {
    for seed in [180, 181] {
        let mut cfg = SimConfig::new(seed, vec![1; 5]);
        cfg.epoch_length_blocks = Some(3);
        cfg.later_stakes = vec![
            vec![1, 1, 1, 1, 0],
            vec![2, 1, 1, 1, 1],
            vec![0, 1, 1, 1, 1],
            vec![1, 1, 1, 1, 1],
        ];
        cfg.links = Links::uniform(Link {
            latency_ms: 150,
            jitter_ms: 60,
            drop_ppm: 50_000,
        });
        cfg.crash_ppm = 5_000;
        cfg.restart_after_ms = 200;
        let mut sim = Sim::new(cfg);
        reach(&mut sim, &all(5), 45, 300_000);
        for i in 0..5 {
            assert!(
                sim.epoch_of(i) >= 15,
                "seed {seed}: {i} in epoch {}",
                sim.epoch_of(i)
            );
        }
        assert!(
            sim.sealed_finalizations() > 0,
            "seed {seed}: no epoch ended through a seal"
        );
        assert!(sim.crash_points().values().sum::<u64>() > 0);
        for ((epoch, _), c) in sim.finalization_certificates() {
            let set = sim.validator_set_of(*epoch).expect("a reached epoch");
            c.verify(set, b"sou-sim")
                .unwrap_or_else(|e| panic!("seed {seed}: epoch {epoch}: {e}"));
        }
    }
}
