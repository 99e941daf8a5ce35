//! Crash durability: a child process commits blocks in a loop and is killed
//! with SIGKILL at an arbitrary moment; the reopened database must hold
//! exactly the last committed block and the state it left, with nothing
//! half-written.
//!
//! The child is this same test binary, started with `--exact
//! crash::child_commits_blocks_until_killed --ignored` and an environment
//! variable naming its database.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sou_ledger::store::INDEX_CHUNK_BLOCKS;
use sou_types::SignedTransaction;

use crate::support::*;

const USERS: usize = 40;
const CHILD_ENV: &str = "SOU_CRASH_CHILD_DB";
/// Blocks the chunk child commits after the one that closes a chunk.
const EXTRA_ENV: &str = "SOU_CRASH_CHILD_EXTRA_BLOCKS";
/// The child stops by itself after this long, should the parent die.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

/// The block the child commits at the tip: deterministic, so the parent can
/// rebuild the same chain and compare.
fn next_block(c: &Chain) -> Vec<SignedTransaction> {
    let h = c.ledger.tip().height as u128;
    (0..USERS)
        .map(|i| c.tx(c.user(i), transfer(c.addr((i + 1) % USERS), h + 1)))
        .collect()
}

#[test]
#[ignore = "run by killed_mid_commit_reopens_at_the_last_committed_block as a child process"]
fn child_commits_blocks_until_killed() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut c = chain_at(std::path::Path::new(&path), USERS, params());
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    while start.elapsed() < CHILD_LIFETIME {
        let txs = next_block(&c);
        let (executed, _) = c.block(txs);
        // Printed only after the commit returned.
        writeln!(
            out,
            "committed {} {}",
            executed.block.height(),
            executed.state_root()
        )
        .unwrap();
        out.flush().unwrap();
    }
}

/// Commits blocks up to the first that closes a chunk after genesis, plus
/// the number in `EXTRA_ENV`, then kills itself (SIGKILL: no destructor, no
/// flush at shutdown).
#[test]
#[ignore = "run by a_chunk_lost_before_its_flush_is_rebuilt as a child process"]
fn child_closes_a_chunk_then_dies() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let extra: u64 = std::env::var(EXTRA_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut c = chain_at(std::path::Path::new(&path), USERS, params());
    while c.ledger.tip().height < INDEX_CHUNK_BLOCKS + extra {
        let txs = next_block(&c);
        c.block(txs);
    }
    let _ = Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::thread::sleep(CHILD_LIFETIME);
}

/// A chunk's index entries and state go to RocksDB without the WAL, and
/// `meta` records them only after their flush. A process that dies between
/// the two loses the chunk from RocksDB; reopening rebuilds it from the
/// blocks, which the block batches made durable (the state by executing
/// them again from the marker of the last chunk that reached disk).
#[test]
fn a_chunk_lost_before_its_flush_is_rebuilt() {
    let exe = std::env::current_exe().unwrap();
    let mut lost = 0;
    // Dying right after the block that closes the chunk, and after the
    // next block (whose batch records the chunk in `meta` if its flush
    // finished by then).
    for (attempt, extra) in [0u64, 1, 0, 1].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let status = Command::new(&exe)
            .args([
                "--exact",
                "crash::child_closes_a_chunk_then_dies",
                "--ignored",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &db)
            .env(EXTRA_ENV, extra.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child was not killed");
        let c = chain_at(&db, USERS, params());
        assert_eq!(c.ledger.tip().height, INDEX_CHUNK_BLOCKS + extra);
        // Read before anything is written again: whether `meta` recorded
        // the chunk (its flush finished and a later batch said so).
        let (indexed_to, state_to) = c.ledger.store().chunk_marks().unwrap();
        assert_eq!(indexed_to, state_to);
        assert!(indexed_to == 0 || indexed_to == INDEX_CHUNK_BLOCKS);
        if indexed_to == 0 {
            lost += 1;
        }
        assert_recovered(&c, &format!("attempt {attempt}"));
    }
    // The case this test is for happened at least once.
    assert!(
        lost > 0,
        "every chunk was flushed and recorded before the kill"
    );
}

#[test]
fn killed_mid_commit_reopens_at_the_last_committed_block() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let exe = std::env::current_exe().unwrap();
    // Several crashes on the same database, each after a different number
    // of blocks and a different delay, so the kill lands at varied points.
    let mut base = 0;
    for round in 0..6u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::child_commits_blocks_until_killed",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut last: Option<(u64, String)> = None;
        let mut read_line = |last: &mut Option<(u64, String)>| -> bool {
            let Some(Ok(line)) = lines.next() else {
                return false;
            };
            if let Some(rest) = line.strip_prefix("committed ") {
                let mut parts = rest.split_whitespace();
                if let (Some(h), Some(root)) = (parts.next(), parts.next()) {
                    *last = Some((h.parse().unwrap(), root.to_string()));
                }
            }
            true
        };
        let target = base + 3 + round * 4;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && last.as_ref().is_none_or(|(h, _)| *h < target) {
            if !read_line(&mut last) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(round * 7));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // What the child printed before it died is still in the pipe.
        while read_line(&mut last) {}
        let (printed, printed_root) =
            last.expect("the child committed nothing before the deadline");

        let c = chain_at(&db, USERS, params());
        let tip = c.ledger.tip();
        // Committed and printed, or committed and killed before printing.
        assert!(
            tip.height == printed || tip.height == printed + 1,
            "round {round}: reopened at {}, last printed {printed}",
            tip.height
        );
        if tip.height == printed {
            assert_eq!(c.ledger.state_root().to_string(), printed_root);
        }
        assert_recovered(&c, &format!("round {round}"));
        base = tip.height;
        drop(c);
    }
}

/// The reopened store holds exactly its tip's state (its root recomputed
/// from every entry matches the header, supply adds up), the same chain as
/// a fresh database fed the same blocks, and the same indexes.
fn assert_recovered(c: &Chain, when: &str) {
    let tip = c.ledger.tip();
    // The stored state is exactly the tip's: its root recomputed from
    // every entry matches the header, and supply adds up.
    assert_eq!(full_state_root(&c.ledger), c.ledger.state_root(), "{when}");
    assert_conserved(&c.ledger);
    // And it is the state that the same blocks give on a fresh database.
    let mut replica = chain(USERS);
    while replica.ledger.tip().height < tip.height {
        let txs = next_block(&replica);
        replica.block(txs);
    }
    assert_eq!(
        replica.ledger.tip(),
        tip,
        "{when}: a different chain was recovered"
    );
    // The indexes too: the entries held in memory when the child died
    // are rebuilt from the blocks.
    let (store, fresh) = (c.ledger.store(), replica.ledger.store());
    for height in 1..=tip.height {
        let block = fresh.block(height).unwrap().unwrap();
        for (i, tx) in block.transactions.iter().enumerate() {
            let r = store.receipt(&tx.hash()).unwrap();
            assert_eq!(
                r.map(|r| (r.height, r.index)),
                Some((height, i as u32)),
                "{when}"
            );
        }
    }
    for user in 0..USERS {
        let who = c.addr(user);
        assert_eq!(
            c.ledger.account(&who).unwrap(),
            replica.ledger.account(&who).unwrap(),
            "{when}"
        );
    }
    for user in [0, USERS - 1] {
        let who = c.addr(user);
        assert_eq!(
            store.history(&who, None, 100_000).unwrap(),
            fresh.history(&who, None, 100_000).unwrap(),
            "{when}"
        );
    }
}
