//! Helpers for Sou's end-to-end tests: find the `sou` binary that the
//! workspace built and run it as a real process.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `sou` binary of this build (the same profile as the test binary).
///
/// Cargo builds a package's binaries only for that package's own tests, so
/// the first call runs `cargo build -p sou-node` into this target directory
/// (a no-op when it is up to date): a test never runs a stale `sou`.
pub fn sou_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_sou).clone()
}

fn build_sou() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/sou
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let target_dir = profile_dir.parent().expect("the target directory");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "sou-node", "--bin", "sou"])
            .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build -p sou-node");
        assert!(status.success(), "cargo build -p sou-node failed");
    }
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
