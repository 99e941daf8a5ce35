//! The CPU cost of consensus: a simulation with instant links, so the run
//! is bound only by the engines' work (signing and verifying votes,
//! tallies, certificates). All validators run on one thread, so wall time is
//! CPU time.
//!
//! ```sh
//! cargo bench -p sou-consensus --bench sim
//! ```

use std::time::Instant;

use sou_consensus::sim::{Link, Sim, SimConfig};

fn measure(validators: usize, blocks: u64) {
    let mut cfg = SimConfig::new(1, vec![1; validators]);
    cfg.link = Link::INSTANT;
    let mut sim = Sim::new(cfg);
    let all: Vec<usize> = (0..validators).collect();
    let start = Instant::now();
    let reached = sim.run_until(u64::MAX, |s| s.min_height(&all) >= blocks);
    let secs = start.elapsed().as_secs_f64();
    assert!(reached, "did not reach {blocks} blocks");
    sim.assert_safe();
    let views = sim.view_of(0).unwrap_or(0);
    let per_block_us = secs * 1e6 / blocks as f64;
    println!(
        "  {validators:>4} validators: {blocks:>5} blocks, {views:>5} views in {secs:>7.3} s CPU | {:>9.1} views/s | \
         {:>10.1} us CPU per finalized block (all validators) | {:>8.1} us per validator",
        views as f64 / secs,
        per_block_us,
        per_block_us / validators as f64
    );
}

fn main() {
    println!("sou-consensus simulation, zero latency, one thread:");
    measure(4, 2_000);
    measure(100, 10);
}
