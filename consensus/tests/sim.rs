//! Seeded multi-validator simulations. Every test prints its seed; the
//! safety checker (no two blocks finalized at one height, no honest
//! validator signing conflicting votes) runs in every one.

use sou_consensus::sim::{Behaviour, CrashPoint, Link, Sim, SimConfig};

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
        cfg.link = Link {
            latency_ms: 200,
            jitter_ms: 150,
            drop_ppm: 500_000,
        };
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

#[test]
fn crashes_at_every_point_never_cause_conflicting_signatures() {
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
        for (p, n) in sim.crash_points() {
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
            cfg.link = Link {
                latency_ms: 30,
                jitter_ms: 20,
                drop_ppm: 100_000,
            };
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
