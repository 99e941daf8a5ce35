//! `sou testnet`: a local network of validator processes with funded dev
//! accounts, an anvil-style banner, `DIR/testnet.json` for scripts, and a
//! clean stop on Ctrl-C.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use sou_genesis::testnet::{STABLECOIN, STABLECOIN_DECIMALS};
use sou_genesis::{testnet, ChainSpec, KeyFile, TestnetOptions};
use sou_types::Amount;

use crate::config::{NodeConfig, CONFIG_FILE};

#[derive(clap::Args, Debug)]
pub struct TestnetArgs {
    /// Number of validators (one process each).
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Number of funded dev accounts.
    #[arg(long, default_value_t = 10)]
    pub accounts: usize,
    /// Where the node homes, keys and testnet.json go.
    #[arg(long, default_value = ".testnet")]
    pub dir: PathBuf,
    /// Delete an existing testnet in --dir and start afresh (otherwise it is resumed).
    #[arg(long)]
    pub reset: bool,
    /// Seed the keys are derived from (public knowledge: test use only).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// RPC port of the first node; node i uses this + i.
    #[arg(long, default_value_t = 8545)]
    pub rpc_port: u16,
    /// Metrics port of the first node; node i uses this + i.
    #[arg(long, default_value_t = 9615)]
    pub metrics_port: u16,
    /// Peer-to-peer port of the first node; node i uses this + i.
    #[arg(long, default_value_t = 26656)]
    pub p2p_port: u16,
    #[arg(long, default_value = "sou-devnet")]
    pub chain_id: String,
    /// Blocks per epoch (the validator set changes at epoch ends).
    #[arg(long)]
    pub epoch_length: Option<u64>,
    /// A validator is jailed for downtime after missing its share of this
    /// many proposals in a row.
    #[arg(long)]
    pub downtime_missed_proposals: Option<u64>,
    /// Only create the homes and keys; start nothing.
    #[arg(long)]
    pub init_only: bool,
}

struct NodeProc {
    name: String,
    home: PathBuf,
    rpc: String,
    metrics: String,
    child: Child,
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Async worker threads for each of `validators` nodes sharing this
/// machine: its cores shared among them, at least one each.
fn worker_threads(validators: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cores / validators.max(1)).max(1)
}

/// Creates the homes and key files of a new testnet in `args.dir`.
fn create(args: &TestnetArgs) -> Result<()> {
    let net = testnet(&TestnetOptions {
        chain_id: args.chain_id.clone(),
        seed: args.seed,
        validators: args.validators,
        accounts: args.accounts,
        epoch_length_blocks: args.epoch_length,
        downtime_missed_proposals: args.downtime_missed_proposals,
        ..TestnetOptions::default()
    })?;
    net.spec.validate()?;
    let spec = net.spec.to_json();
    let p2p_addr = |i: usize| format!("/ip4/127.0.0.1/tcp/{}", args.p2p_port + i as u16);
    let threads = worker_threads(net.validators.len());
    for (i, (operator, consensus)) in net.validators.iter().enumerate() {
        let home = args.dir.join(format!("node{i}"));
        let mut cfg = NodeConfig {
            worker_threads: threads,
            ..NodeConfig::default()
        };
        cfg.rpc.listen = ([127, 0, 0, 1], args.rpc_port + i as u16).into();
        cfg.metrics.listen = ([127, 0, 0, 1], args.metrics_port + i as u16).into();
        cfg.p2p.listen = p2p_addr(i);
        cfg.p2p.peers = (0..net.validators.len())
            .filter(|j| *j != i)
            .map(p2p_addr)
            .collect();
        KeyFile::write(
            &home.join(&cfg.p2p.node_key_file),
            &sou_types::Keypair::derive_insecure(args.seed, &format!("node-{i}")),
        )?;
        write(&home.join(CONFIG_FILE), &cfg.to_toml())?;
        write(&home.join(&cfg.genesis_file), &spec)?;
        KeyFile::write(&home.join(&cfg.validator_key_file), consensus)?;
        KeyFile::write(&home.join("keys/operator.json"), operator)?;
    }
    for (i, a) in net.accounts.iter().enumerate() {
        KeyFile::write(&args.dir.join(format!("accounts/account-{i}.json")), a)?;
    }
    KeyFile::write(&args.dir.join("accounts/issuer.json"), &net.issuer)?;
    Ok(())
}

fn spawn(home: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join("node.log"))
        .with_context(|| format!("opening {}/node.log", home.display()))?;
    let exe = std::env::current_exe()?;
    Command::new(exe)
        .arg("start")
        .arg("--home")
        .arg(home)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting the node in {}", home.display()))
}

fn stop(nodes: &mut [NodeProc]) {
    for n in nodes.iter() {
        let _ = kill(Pid::from_raw(n.child.id() as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in nodes.iter_mut() {
        loop {
            match n.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = n.child.kill();
                    let _ = n.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

async fn wait_ready(rpc: &str, deadline: Instant) -> bool {
    let Ok(client) = jsonrpsee::http_client::HttpClientBuilder::default().build(rpc) else {
        return false;
    };
    while Instant::now() < deadline {
        let r: Result<Value, _> = jsonrpsee::core::client::ClientT::request(
            &client,
            "node_status",
            jsonrpsee::rpc_params![],
        )
        .await;
        if r.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub async fn run(args: TestnetArgs) -> Result<()> {
    if args.validators == 0 {
        bail!("--validators must be at least 1");
    }
    if args.reset && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("removing {}", args.dir.display()))?;
    }
    let resumed = args.dir.join("node0").join(CONFIG_FILE).exists();
    if !resumed {
        create(&args)?;
    }
    if args.init_only {
        println!(
            "created {} node home(s) in {}",
            args.validators,
            args.dir.display()
        );
        return Ok(());
    }
    let mut homes: Vec<PathBuf> = (0..)
        .map(|i| args.dir.join(format!("node{i}")))
        .take_while(|h| h.join(CONFIG_FILE).exists())
        .collect();
    homes.sort();
    // Whatever fails once a node runs (another node's start, the banner,
    // testnet.json) stops the nodes started so far: none is left behind.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut nodes = Vec::new();
    if let Err(e) = start_nodes(&args, &homes, &mut nodes, resumed).await {
        stop(&mut nodes);
        return Err(e);
    }

    // Until Ctrl-C or SIGTERM. A node that dies is reported, and the others
    // go on: stopping a validator is how people test fault tolerance.
    let mut reported = std::collections::HashSet::new();
    let outcome = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for n in nodes.iter_mut() {
                    if let Ok(Some(status)) = n.child.try_wait() {
                        if reported.insert(n.name.clone()) {
                            println!("  {} exited ({status}); see {}/node.log", n.name, n.home.display());
                        }
                    }
                }
                if reported.len() == nodes.len() {
                    break Err(anyhow::anyhow!("every node exited"));
                }
            }
        }
    };
    println!("\nstopping {} node(s)...", nodes.len());
    stop(&mut nodes);
    outcome
}

/// Starts a node in each home (pushed to `nodes` as it starts), waits until
/// each answers, then prints the banner and writes `testnet.json`.
async fn start_nodes(
    args: &TestnetArgs,
    homes: &[PathBuf],
    nodes: &mut Vec<NodeProc>,
    resumed: bool,
) -> Result<()> {
    for (i, home) in homes.iter().enumerate() {
        let cfg = NodeConfig::load(home)?;
        let child = spawn(home)?;
        nodes.push(NodeProc {
            name: format!("node{i}"),
            home: home.clone(),
            rpc: format!("http://{}", cfg.rpc.listen),
            metrics: format!("http://{}/metrics", cfg.metrics.listen),
            child,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in nodes.iter() {
        if !wait_ready(&n.rpc, deadline).await {
            let log = std::fs::read_to_string(n.home.join("node.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            bail!(
                "{} did not answer on {} within 60 s; its log ends:\n{}",
                n.name,
                n.rpc,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    let spec = ChainSpec::read(&homes[0].join("genesis.json"))?;
    banner_and_file(args, &spec, nodes, resumed)
}

fn banner_and_file(
    args: &TestnetArgs,
    spec: &ChainSpec,
    nodes: &[NodeProc],
    resumed: bool,
) -> Result<()> {
    let usdt = sou_types::Symbol::new(STABLECOIN)?;
    let accounts: Vec<(sou_types::Keypair, PathBuf)> = (0..)
        .map(|i| args.dir.join(format!("accounts/account-{i}.json")))
        .take_while(|p| p.exists())
        .map(|p| KeyFile::read(&p).map(|k| (k, p)))
        .collect::<std::result::Result<_, _>>()?;
    let balance = |addr: &sou_types::Address, asset: &sou_types::Symbol| {
        spec.balances
            .iter()
            .find(|b| b.address == *addr && b.asset == *asset)
            .map_or(Amount::ZERO, |b| b.amount)
    };
    let mut b = String::new();
    writeln!(b)?;
    writeln!(
        b,
        "  Sou local testnet {}",
        if resumed { "(resumed)" } else { "" }
    )?;
    writeln!(b, "  =================")?;
    writeln!(b, "  chain id    {}", spec.chain_id)?;
    writeln!(b, "  directory   {}", args.dir.display())?;
    writeln!(b)?;
    writeln!(b, "  Nodes")?;
    for n in nodes {
        writeln!(
            b,
            "    {}  rpc {}  metrics {}  pid {}",
            n.name,
            n.rpc,
            n.metrics,
            n.child.id()
        )?;
    }
    writeln!(b)?;
    writeln!(
        b,
        "  Dev accounts (keys derived from seed {}: for testing only)",
        args.seed
    )?;
    for (i, (k, path)) in accounts.iter().enumerate() {
        writeln!(
            b,
            "    ({i}) {}  {} {STABLECOIN}, {} SOU",
            k.address(),
            balance(&k.address(), &usdt).to_decimal(STABLECOIN_DECIMALS),
            balance(&k.address(), &sou_types::asset::NATIVE).to_decimal(9)
        )?;
        writeln!(
            b,
            "        secret 0x{}  key {}",
            hex::encode(k.secret_bytes()),
            path.display()
        )?;
    }
    if let (Some((_, from)), Some((to, _)), Some(n)) =
        (accounts.first(), accounts.get(1), nodes.first())
    {
        writeln!(b)?;
        writeln!(b, "  Try a transfer:")?;
        writeln!(
            b,
            "    sou wallet --rpc {} transfer --key {} --to {} --amount 1.25",
            n.rpc,
            from.display(),
            to.address()
        )?;
    }
    writeln!(b)?;
    writeln!(b, "  Ctrl-C stops every node.")?;
    // A closed or full stdout is an error (println! would panic).
    let mut out = std::io::stdout().lock();
    out.write_all(b.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the banner to standard output")?;
    drop(out);
    let file = json!({
        "chainId": spec.chain_id,
        "nodes": nodes.iter().map(|n| json!({
            "name": n.name, "rpc": n.rpc, "metrics": n.metrics, "home": n.home, "pid": n.child.id(),
        })).collect::<Vec<_>>(),
        "accounts": accounts.iter().map(|(k, p)| json!({
            "address": k.address(), "key_file": p, "secret_key": format!("0x{}", hex::encode(k.secret_bytes())),
        })).collect::<Vec<_>>(),
        "issuer": {"key_file": args.dir.join("accounts/issuer.json")},
    });
    write(
        &args.dir.join("testnet.json"),
        &serde_json::to_string_pretty(&file)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_on_one_machine_share_its_cores_for_worker_threads() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(worker_threads(1), cores);
        assert_eq!(worker_threads(cores * 4), 1);
        assert_eq!(worker_threads(0), cores);
        if cores >= 4 {
            assert_eq!(worker_threads(2), cores / 2);
        }
    }
}
