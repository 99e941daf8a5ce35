//! Helpers for Sou's end-to-end tests: find the `sou` binary that the
//! workspace built and run it as a real process.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `sou` binary of this build (the same profile as the test binary).
/// `cargo test --workspace` builds it; so does `scripts/test.sh`.
pub fn sou_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/sou
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir.join(format!("sou{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p sou-node` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Runs `sou` with `args` and returns what it did.
pub fn sou(args: &[&str]) -> Output {
    Command::new(sou_bin())
        .args(args)
        .output()
        .expect("running sou")
}

/// Runs `sou`, asserts success and returns its standard output.
pub fn sou_ok(args: &[&str]) -> String {
    let out = sou(args);
    assert!(
        out.status.success(),
        "sou {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `sou`, asserts failure and returns its standard error.
pub fn sou_err(args: &[&str]) -> String {
    let out = sou(args);
    assert!(
        !out.status.success(),
        "sou {args:?} succeeded but should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
