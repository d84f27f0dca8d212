//! `daftka`: runs a node, or talks to one over HTTP.
//!
//! `daftka --node-name a` runs a node (args -> Config -> tracing -> `daftka_node::run`);
//! `daftka topic|produce|consume|group ...` are client commands against `--url`.
//!
//! Configuration precedence: built-in defaults < `--config FILE` < `DAFTKA_*` environment <
//! command-line flags.

mod client;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use daftka_core::config::Config;

/// Daftka: a Kafka-inspired replicated queue-log.
///
/// Without a subcommand, runs a node. Configuration precedence: built-in defaults < --config FILE
/// < DAFTKA_* environment (any key as DAFTKA_<SECTION>__<KEY>, e.g. DAFTKA_LIMITS__BODY_BYTES_MAX=1MiB)
/// < command-line flags.
#[derive(Parser, Debug)]
#[command(name = "daftka", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    client: client::ClientOpts,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// TOML configuration file (every key: config/daftka.toml).
    #[arg(long, env = "DAFTKA_CONFIG")]
    config: Option<PathBuf>,
    /// The node's name, unique in the cluster [default: a].
    #[arg(long, env = "DAFTKA_NODE_NAME")]
    node_name: Option<String>,
    /// Seed nodes host[:port] to join, comma-separated; none: a one-node cluster.
    #[arg(long, env = "DAFTKA_SEEDS", value_delimiter = ',')]
    seeds: Option<Vec<String>>,
    /// Data directory [default: ./data/<node-name>].
    #[arg(long, env = "DAFTKA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP API address [default: 127.0.0.1:4001].
    #[arg(long, env = "DAFTKA_HTTP_ADDR")]
    http_addr: Option<String>,
    /// Prometheus metrics address [default: 127.0.0.1:9568].
    #[arg(long, env = "DAFTKA_METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// Cluster address for other nodes [default: 127.0.0.1:7000].
    #[arg(long, env = "DAFTKA_CLUSTER_ADDR")]
    cluster_addr: Option<String>,
    /// Shared cluster secret; required with --seeds.
    #[arg(long, env = "DAFTKA_COOKIE", hide_env_values = true)]
    cookie: Option<String>,
    /// Log format: human or json [default: human].
    #[arg(long, env = "DAFTKA_LOG_FORMAT")]
    log_format: Option<String>,
    /// Log filter, e.g. info or daftka_node=debug [default: info]; RUST_LOG overrides.
    #[arg(long, env = "DAFTKA_LOG_LEVEL")]
    log_level: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Client(client::ClientCommand),
}

/// Builds the configuration: defaults, then the file, then `DAFTKA_<SECTION>__<KEY>` environment
/// variables, then the flags (each flag also reads its own `DAFTKA_*` variable; clap lets the flag win).
fn load_config(args: &NodeArgs) -> Result<Config, String> {
    let text = match &args.config {
        Some(path) => Some((
            std::fs::read_to_string(path)
                .map_err(|e| format!("config file {}: {e}", path.display()))?,
            path.display().to_string(),
        )),
        None => None,
    };
    let mut config = Config::load(
        text.as_ref().map(|(t, p)| (t.as_str(), p.as_str())),
        std::env::vars(),
    )
    .map_err(|e| e.to_string())?;
    let n = &mut config.node;
    if let Some(v) = &args.node_name {
        n.name = v.clone();
    }
    if let Some(v) = &args.seeds {
        n.seeds = v.iter().filter(|s| !s.is_empty()).cloned().collect();
    }
    if let Some(v) = &args.data_dir {
        n.data_dir = v.clone();
    }
    if let Some(v) = &args.http_addr {
        n.http_addr = v.clone();
    }
    if let Some(v) = &args.metrics_addr {
        n.metrics_addr = v.clone();
    }
    if let Some(v) = &args.cluster_addr {
        n.cluster_addr = v.clone();
    }
    if let Some(v) = &args.cookie {
        n.cookie = v.clone();
    }
    if let Some(v) = &args.log_format {
        config.log.format = v.clone();
    }
    if let Some(v) = &args.log_level {
        config.log.level = v.clone();
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Client(cmd)) = cli.command {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let opts = cli.client;
        return runtime.block_on(async move {
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            // Ctrl-C or SIGTERM ends a group member cleanly (it leaves its group); the handlers
            // are installed only by the commands that poll this future.
            let stop = shutdown_signal();
            match client::run_until(opts, cmd, stdin, tokio::io::stdout(), stop).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => e.report(),
            }
        });
    }
    let config = match load_config(&cli.node) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = config.node.runtime_threads_resolved(cores);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(runtime_threads = threads, cores, "starting the node");
    runtime.block_on(async move {
        match daftka_node::run(config, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "node stopped");
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
