//! `sou`: the Sou node's command line. It is the only place that wires the
//! crates together: it creates node homes and manages keys, runs a node
//! (consensus, RPC, networking, metrics), starts a local testnet, sends
//! wallet transactions and runs the benchmark.

mod bench;
mod client;
mod config;
mod metrics;
mod node;
mod testnet;
mod wal;
mod wallet;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use sou_genesis::testnet::{STABLECOIN, STABLECOIN_DECIMALS};
use sou_genesis::{ChainSpec, KeyFile, TestnetOptions};
use sou_ledger::Ledger;
use sou_types::Keypair;

use config::{NodeConfig, CONFIG_FILE};

/// mimalloc rather than glibc's allocator: a validator allocates and frees
/// per transaction on several threads at once (decoding, admission,
/// blocks, gossip), and glibc's malloc, free and realloc were about 5% of
/// a node's CPU under load.
///
/// Built without transparent huge pages (`no_thp`): mimalloc otherwise
/// asks the kernel for them, and a node's first seconds under load then
/// went to zeroing 2 MiB pages as its heap grew (a fifth of the admission
/// thread's time), with resident memory about a fifth higher throughout.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "sou",
    version,
    about = "Sou: a proof-of-stake chain for stablecoin payments between machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a node home: config, chain spec, keys, and the genesis state.
    Init(InitArgs),
    /// Run the node in a home created by `sou init` (until SIGINT or SIGTERM).
    Start {
        #[arg(long)]
        home: PathBuf,
    },
    /// Create and inspect key files.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A wallet that talks to a node over JSON-RPC.
    Wallet {
        /// The node's JSON-RPC address.
        #[arg(
            long,
            env = "SOU_RPC",
            default_value = "http://127.0.0.1:8545",
            global = true
        )]
        rpc: String,
        #[command(subcommand)]
        command: wallet::WalletCommand,
    },
    /// Start a local testnet (validator processes, funded dev accounts).
    Testnet(testnet::TestnetArgs),
    /// Measure finalized transfers per second and latency on a running chain.
    Bench(bench::BenchArgs),
}

#[derive(clap::Args, Debug)]
struct InitArgs {
    /// The node home to create.
    #[arg(long)]
    home: PathBuf,
    /// Join the chain defined by this spec. Without it, a one-validator dev
    /// chain is generated (from --seed) with funded dev accounts.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// With --genesis: this node's consensus key file (default: a new key).
    #[arg(long, requires = "genesis")]
    validator_key: Option<PathBuf>,
    /// Dev chain: the seed its keys are derived from (public knowledge!).
    #[arg(long, default_value_t = 0, conflicts_with = "genesis")]
    seed: u64,
    /// Dev chain: how many funded dev accounts.
    #[arg(long, default_value_t = 10, conflicts_with = "genesis")]
    accounts: usize,
    /// Dev chain: its chain id.
    #[arg(long, default_value = "sou-devnet", conflicts_with = "genesis")]
    chain_id: String,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Generate a new key and write it to a key file.
    New {
        /// Where to write it (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Show the address and public key in a key file.
    Show {
        #[arg(long)]
        key: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SOU_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init(args) => init(&args),
        Command::Start { home } => {
            let cfg = NodeConfig::load(&home)?;
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            if cfg.worker_threads > 0 {
                rt.worker_threads(cfg.worker_threads);
            }
            rt.enable_all().build()?.block_on(node::start(&home, cfg))
        }
        Command::Wallet { rpc, command } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(wallet::run(&rpc, command))
        }
        Command::Bench(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(bench::run(args))
        }
        Command::Testnet(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(testnet::run(args))
        }
        Command::Keys(KeysCommand::New { out }) => {
            let key = Keypair::generate()?;
            KeyFile::write(&out, &key)?;
            println!("address:    {}", key.address());
            println!("public key: {}", key.public());
            println!("key file:   {}", out.display());
            Ok(())
        }
        Command::Keys(KeysCommand::Show { key, json }) => {
            let k = KeyFile::read(&key)?;
            if json {
                let v = serde_json::json!({ "address": k.address(), "public_key": k.public() });
                println!("{v}");
            } else {
                println!("address:    {}", k.address());
                println!("public key: {}", k.public());
            }
            Ok(())
        }
    }
}

fn init(args: &InitArgs) -> Result<()> {
    let home = &args.home;
    if home.join(CONFIG_FILE).exists() {
        bail!(
            "{} is already a node home ({} exists)",
            home.display(),
            CONFIG_FILE
        );
    }
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let config = NodeConfig::default();

    let mut dev_accounts = Vec::new();
    let spec = match &args.genesis {
        Some(path) => {
            let spec = ChainSpec::read(path)?;
            let key = match &args.validator_key {
                Some(file) => KeyFile::read(file)?,
                None => Keypair::generate()?,
            };
            KeyFile::write(&home.join(&config.validator_key_file), &key)?;
            spec
        }
        None => {
            let net = sou_genesis::testnet(&TestnetOptions {
                chain_id: args.chain_id.clone(),
                seed: args.seed,
                validators: 1,
                accounts: args.accounts,
                ..TestnetOptions::default()
            })?;
            let (operator, consensus) = &net.validators[0];
            KeyFile::write(&home.join(&config.validator_key_file), consensus)?;
            KeyFile::write(&home.join("keys/operator.json"), operator)?;
            KeyFile::write(&home.join("keys/issuer.json"), &net.issuer)?;
            for (i, a) in net.accounts.iter().enumerate() {
                let file = home.join(format!("dev-accounts/account-{i}.json"));
                KeyFile::write(&file, a)?;
                dev_accounts.push((a.address(), file));
            }
            net.spec
        }
    };
    KeyFile::write(&home.join(&config.p2p.node_key_file), &Keypair::generate()?)?;
    write_file(&home.join(&config.genesis_file), &spec.to_json())?;
    write_file(&home.join(CONFIG_FILE), &config.to_toml())?;
    let config = NodeConfig::load(home)?;
    let ledger = Ledger::init(&home.join(&config.data_dir), &spec.genesis_state())?;

    println!("Initialised node home {}", home.display());
    println!("  chain id      {}", spec.chain_id);
    println!("  genesis hash  {}", ledger.tip().hash);
    println!("  state root    {}", ledger.state_root());
    println!("  validators    {}", spec.validators.len());
    if !dev_accounts.is_empty() {
        let usdt = sou_types::Symbol::new(STABLECOIN)?;
        println!();
        println!(
            "Dev accounts (keys derived from seed {}: for testing only)",
            args.seed
        );
        for (i, (addr, file)) in dev_accounts.iter().enumerate() {
            let bal = ledger.account(addr)?.balance(&usdt);
            println!(
                "  ({i}) {addr}  {} {STABLECOIN}  key: {}",
                bal.to_decimal(STABLECOIN_DECIMALS),
                file.display()
            );
        }
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
