//! Helpers for Sou's end-to-end tests: find the `sou` binary that the
//! workspace built and run it as a real process.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `sou` binary of this build (the same profile as the test binary).
///
/// Cargo builds a package's binaries only for that package's own tests, so
/// the first call runs `cargo build --workspace --bin sou` into this target directory
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
        // `--workspace`: the features `cargo build --workspace` resolved
        // (scripts/test.sh runs it first), so this is a no-op there.
        cmd.args(["build", "--workspace", "--bin", "sou"])
            .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("running cargo build --workspace --bin sou");
        assert!(status.success(), "cargo build --workspace --bin sou failed");
    }
    let bin = profile_dir.join(format!("sou{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --workspace --bin sou` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Runs `sou` with `args` and returns what it did.
pub fn sou(args: &[&str]) -> Output {
    sou_env(args, &[])
}

/// Runs `sou` with `args` and the environment variables `env` set (and
/// `SOU_RPC` unset unless `env` sets it).
pub fn sou_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(sou_bin());
    cmd.args(args).env_remove("SOU_RPC");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running sou")
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

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A single-validator node in a temporary home, run as a real process.
#[derive(Debug)]
pub struct TestNode {
    pub home: PathBuf,
    /// `host:port` of JSON-RPC.
    pub rpc: String,
    /// `host:port` of the metrics endpoint.
    pub metrics: String,
    child: Option<std::process::Child>,
    _dir: Option<tempfile::TempDir>,
}

impl TestNode {
    /// `sou init` with `accounts` dev accounts, then the config edited by
    /// `configure` (a TOML table), on free ports.
    pub fn init(accounts: usize, configure: impl FnOnce(&mut toml::Table)) -> TestNode {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let home = dir.path().join("node");
        let home_s = home.to_str().expect("utf-8 path");
        sou_ok(&[
            "init",
            "--home",
            home_s,
            "--accounts",
            &accounts.to_string(),
        ]);
        let cfg_path = home.join("config.toml");
        let mut cfg: toml::Table = std::fs::read_to_string(&cfg_path)
            .expect("config.toml")
            .parse()
            .expect("config.toml parses");
        let rpc = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let table = |cfg: &mut toml::Table, name: &str| -> toml::Table {
            cfg.get(name)
                .and_then(|v| v.as_table())
                .cloned()
                .unwrap_or_default()
        };
        let mut rpc_t = table(&mut cfg, "rpc");
        rpc_t.insert("listen".into(), rpc.clone().into());
        cfg.insert("rpc".into(), rpc_t.into());
        let mut m_t = table(&mut cfg, "metrics");
        m_t.insert("listen".into(), metrics.clone().into());
        cfg.insert("metrics".into(), m_t.into());
        let mut b_t = table(&mut cfg, "block");
        b_t.insert("empty_block_interval_ms".into(), 200.into());
        cfg.insert("block".into(), b_t.into());
        configure(&mut cfg);
        std::fs::write(&cfg_path, toml::to_string(&cfg).expect("config serialises"))
            .expect("write config");
        TestNode {
            home,
            rpc,
            metrics,
            child: None,
            _dir: Some(dir),
        }
    }

    /// A node in an existing home (its config names its addresses).
    pub fn from_home(home: PathBuf) -> TestNode {
        let cfg: toml::Table = std::fs::read_to_string(home.join("config.toml"))
            .expect("config.toml")
            .parse()
            .expect("config.toml parses");
        let addr = |section: &str| cfg[section]["listen"].as_str().expect("listen").to_string();
        TestNode {
            rpc: addr("rpc"),
            metrics: addr("metrics"),
            home,
            child: None,
            _dir: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends a signal to the running node (SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// The node's Prometheus metrics, as served on `/metrics`.
    pub fn metrics_text(&self) -> String {
        use std::io::{Read, Write};
        let mut out = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect(&self.metrics) {
            let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            let _ = s.read_to_string(&mut out);
        }
        out
    }

    /// The finalized height, if the node answers.
    pub fn height(&self) -> Option<u64> {
        self.call("node_status", serde_json::json!([]))
            .ok()
            .and_then(|s| s["finalizedHeight"].as_u64())
    }

    /// Starts `sou start` and waits (up to 60 s) until RPC answers.
    pub fn start(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Starts `sou start` without waiting.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("node.log"))
            .expect("node.log");
        let child = Command::new(sou_bin())
            .args(["start", "--home", self.home.to_str().expect("utf-8 path")])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting sou");
        self.child = Some(child);
    }

    /// Waits (up to 60 s) until RPC answers.
    pub fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if self.call("node_status", serde_json::json!([])).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the node did not answer within 60 s; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("node.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait (up to 20 s) for a clean exit; returns the status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// A JSON-RPC call over HTTP: the result, or (code, message).
    pub fn call(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, (i64, String)> {
        rpc_call(&self.rpc, method, params)
    }

    /// The value of a metric series (a name with its labels, as served),
    /// or 0 if the node does not serve it.
    pub fn metric(&self, series: &str) -> f64 {
        metric(&self.metrics_text(), series)
    }

    /// A call that must succeed.
    pub fn ok(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.call(method, params)
            .unwrap_or_else(|e| panic!("{method} failed: {e:?}"))
    }

    /// Waits (up to `secs`) until the finalized height reaches `height`.
    pub fn wait_height(&self, height: u64, secs: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Ok(s) = self.call("node_status", serde_json::json!([])) {
                if s["finalizedHeight"].as_u64().unwrap_or(0) >= height {
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("height {height} not reached within {secs} s");
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of `series` (a metric name with its labels, exactly as
/// served) in Prometheus text, or 0 if it is absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            // The whole series name: `x 1` but not `x_total 1` for `x`.
            rest.starts_with(' ')
                .then(|| rest.trim().parse::<f64>().ok())?
        })
        .unwrap_or(0.0)
}

/// A JSON-RPC call over HTTP to `addr` (`host:port`): the result, or
/// (code, message); code 0 when there was no JSON-RPC answer at all.
pub fn rpc_call(
    addr: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, (i64, String)> {
    let mut body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method});
    body["params"] = params;
    let (status, text) = http_post(addr, body.to_string().as_bytes()).map_err(|e| (0, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| (i64::from(status), format!("bad response {text:?}: {e}")))?;
    if let Some(err) = v.get("error") {
        return Err((
            err["code"].as_i64().unwrap_or(0),
            err["message"].as_str().unwrap_or("").to_string(),
        ));
    }
    Ok(v["result"].clone())
}

/// An HTTP response: status, header lines (names lower-cased), body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The value of the header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A blocking HTTP/1.1 request for `path` on `addr`, with extra `headers`
/// (a POST gets a JSON content type and the body's length).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    // A server may answer (413) before reading a huge body: ignore write errors.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, payload) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// A blocking HTTP/1.1 POST of a JSON body; returns the status and body.
pub fn http_post(addr: &str, body: &[u8]) -> Result<(u16, String), String> {
    http_request(addr, "POST", "/", &[], body).map(|r| (r.status, r.body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Several validators on this machine, each a real `sou start` process,
/// created by `sou testnet --init-only`.
#[derive(Debug)]
pub struct TestNet {
    pub nodes: Vec<TestNode>,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// A base port such that `base..base + n` are all free now.
fn free_range(n: usize, avoid: &[u16]) -> u16 {
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    for attempt in 0..1000u64 {
        let base = 20_000 + ((seed + attempt * 104_729) % 40_000) as u16;
        let ports = base..base + n as u16;
        let clash = ports
            .clone()
            .any(|p| avoid.iter().any(|a| a.abs_diff(p) < 16));
        if !clash
            && ports
                .clone()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return base;
        }
    }
    panic!("no free port range");
}

impl TestNet {
    /// Creates `n` validator homes; `configure` edits each node's config.
    pub fn new(n: usize, configure: impl Fn(&mut toml::Table)) -> TestNet {
        Self::with_args(n, &[], configure)
    }

    /// [`TestNet::new`] with more `sou testnet` arguments (for example
    /// `--epoch-length`).
    pub fn with_args(n: usize, args: &[&str], configure: impl Fn(&mut toml::Table)) -> TestNet {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dir = tmp.path().join("net");
        let rpc = free_range(n, &[]);
        let metrics = free_range(n, &[rpc]);
        let p2p = free_range(n, &[rpc, metrics]);
        let (n_s, rpc_s, metrics_s, p2p_s) = (
            n.to_string(),
            rpc.to_string(),
            metrics.to_string(),
            p2p.to_string(),
        );
        let mut all = vec![
            "testnet",
            "--init-only",
            "--validators",
            &n_s,
            "--accounts",
            "4",
            "--dir",
            dir.to_str().expect("utf-8 path"),
            "--rpc-port",
            &rpc_s,
            "--metrics-port",
            &metrics_s,
            "--p2p-port",
            &p2p_s,
        ];
        all.extend_from_slice(args);
        sou_ok(&all);
        let nodes = (0..n)
            .map(|i| {
                let home = dir.join(format!("node{i}"));
                let path = home.join("config.toml");
                let mut cfg: toml::Table = std::fs::read_to_string(&path)
                    .expect("config.toml")
                    .parse()
                    .expect("config.toml parses");
                configure(&mut cfg);
                std::fs::write(&path, toml::to_string(&cfg).expect("serialises"))
                    .expect("write config");
                TestNode::from_home(home)
            })
            .collect();
        TestNet {
            nodes,
            dir,
            _tmp: tmp,
        }
    }

    pub fn start_all(&mut self) {
        // Spawn all first, so that they find each other while starting.
        for n in &mut self.nodes {
            n.spawn();
        }
        for n in &self.nodes {
            n.wait_ready();
        }
    }

    /// Waits until every running node has finalized `height`.
    pub fn wait_all(&self, height: u64, secs: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let heights: Vec<Option<u64>> = self
                .nodes
                .iter()
                .map(|n| if n.is_running() { n.height() } else { None })
                .collect();
            if self
                .nodes
                .iter()
                .zip(&heights)
                .all(|(n, h)| !n.is_running() || h.is_some_and(|h| h >= height))
            {
                return;
            }
            if std::time::Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| {
                        let log = n.log();
                        let lines = std::env::var("SOU_TEST_LOG_LINES")
                            .ok()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(8);
                        // Timeouts repeat: count them, show the other lines.
                        let timeouts = log.matches("view timed out").count();
                        let mut tail: Vec<&str> = log
                            .lines()
                            .rev()
                            .filter(|l| !l.contains("view timed out"))
                            .take(lines)
                            .collect();
                        let note = format!("({timeouts} view timeouts in the log)");
                        tail.insert(0, &note);
                        let metrics: Vec<String> = n
                            .metrics_text()
                            .lines()
                            .filter(|l| l.starts_with("sou_") && !l.contains("_bucket"))
                            .map(str::to_string)
                            .collect();
                        format!(
                            "--- {}:\n{}\n{}",
                            n.home.display(),
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                            metrics.join(" ")
                        )
                    })
                    .collect();
                panic!(
                    "height {height} not reached in {secs} s: {heights:?}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The highest finalized height among running nodes.
    pub fn max_height(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .filter_map(TestNode::height)
            .max()
            .unwrap_or(0)
    }
}
