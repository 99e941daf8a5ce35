//! The cost of consensus: a simulation with instant links (zero latency,
//! no loss), so the run is bound only by work: the engines' (signing and
//! verifying votes, tallies, certificates) and the simulator's (encoding,
//! decoding and queueing every message for every peer, the safety checks).
//!
//! For 4 and for 100 validators it prints views per second and the CPU
//! time per finalized block, for the whole process and for the time spent
//! inside engine calls (the rest is the simulator). CPU time is the
//! process's (`CLOCK_PROCESS_CPUTIME_ID`); time inside engines is summed
//! per call with the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`): the
//! simulator runs every validator on this one thread.
//!
//! ```sh
//! cargo bench -p sou-consensus --bench sim
//! ```

use std::time::Instant;

use nix::time::{clock_gettime, ClockId};
use sou_consensus::sim::{Link, Links, Sim, SimConfig};

/// Nanoseconds on a CPU-time clock (0 if the clock cannot be read).
fn cpu_ns(clock: ClockId) -> u64 {
    clock_gettime(clock).map_or(0, |t| {
        let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
        let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
        secs * 1_000_000_000 + nanos
    })
}

fn process_cpu_ns() -> u64 {
    cpu_ns(ClockId::CLOCK_PROCESS_CPUTIME_ID)
}

fn thread_cpu_ns() -> u64 {
    cpu_ns(ClockId::CLOCK_THREAD_CPUTIME_ID)
}

fn measure(validators: usize, blocks: u64) {
    let mut cfg = SimConfig::new(1, vec![1; validators]);
    cfg.links = Links::uniform(Link::INSTANT);
    let mut sim = Sim::new(cfg);
    sim.time_engines_with(thread_cpu_ns);
    let all: Vec<usize> = (0..validators).collect();
    let (wall, cpu) = (Instant::now(), process_cpu_ns());
    let reached = sim.run_until(u64::MAX, |s| s.min_height(&all) >= blocks);
    let cpu_s = process_cpu_ns().saturating_sub(cpu) as f64 / 1e9;
    let wall_s = wall.elapsed().as_secs_f64();
    assert!(reached, "did not reach {blocks} blocks");
    sim.assert_safe();
    let (engine_ns, calls) = sim.engine_time();
    let engine_s = engine_ns as f64 / 1e9;
    let views = sim.view_of(0).unwrap_or(0);
    let us_per_block = |s: f64| s * 1e6 / blocks as f64;
    println!(
        "{validators:>4} validators: {blocks} blocks in {views} views; {wall_s:.2} s wall, {cpu_s:.2} s CPU"
    );
    println!(
        "       {:>10.1} views/s (wall)   {:>10.1} views/s (CPU)",
        views as f64 / wall_s,
        views as f64 / cpu_s
    );
    println!(
        "       {:>10.0} us CPU per finalized block, all validators together ({:.0} per validator)",
        us_per_block(cpu_s),
        us_per_block(cpu_s) / validators as f64
    );
    println!(
        "       {:>10.0} us of it inside engines ({:.0}%; {calls} calls, {:.2} us each), {:.0} us in the simulator",
        us_per_block(engine_s),
        100.0 * engine_s / cpu_s,
        engine_s * 1e6 / calls.max(1) as f64,
        us_per_block(cpu_s - engine_s)
    );
}

fn main() {
    println!("sou-consensus simulation: zero latency, no loss, every validator on one thread");
    measure(4, 2_000);
    measure(100, 25);
}
