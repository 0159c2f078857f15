//! `concord`: every operator and trader action.
//!
//! - `concord coordinator init|run` and `concord module init|show|pin|run` set up and run
//!   the services (each its own OS process);
//! - `concord modules|groups|wallets|balances|sign|deposit|withdraw|transfers|jobs …` talk
//!   to the coordinator's REST API; which one is said once for all of them
//!   ([`connect::Connection`]: `--devnet`, `--url`, `--token-file` and their variables).
//!
//! Every command that prints a result takes `--json` (the API's own shape).

mod args;
mod authority;
mod bench;
mod client;
mod connect;
mod demo;
mod demo_exchanges;
mod demo_multisig;
mod demo_operator;
mod devnet;
mod import;
mod output;
mod services;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "concord",
    version,
    about = "Concord: threshold custody for transfers between wallets and exchanges",
    after_help = "Start here:\n  concord devnet demo          a whole local system, every flow and attack\n  \
concord wallets list         then look around: wallets, balances, transfers, jobs\n  \
concord balances\n  concord transfers\n\n\
Which coordinator (before or after any command): --devnet DIR, or --url URL with\n\
--token-file FILE (and, for https, --api-pin SHA256 or --api-ca FILE); or CONCORD_DEVNET,\n\
or CONCORD_URL with CONCORD_TOKEN_FILE or CONCORD_TOKEN (and CONCORD_API_PIN or\n\
CONCORD_API_CA); with none of them, the devnet in the default directory.\n\
Exit codes: 0 done, 1 refused or failed, 2 a usage mistake."
)]
struct Cli {
    #[command(flatten)]
    connection: connect::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up or run the coordinator.
    Coordinator {
        #[command(subcommand)]
        command: services::CoordinatorCommand,
    },
    /// Make and show requester keys (Ed25519, in files): traders, approvers, importers,
    /// admins.
    Keys {
        #[command(subcommand)]
        command: authority::KeysCommand,
    },
    /// Propose, sign (as an admin) and show the policy every module enforces.
    Policy {
        #[command(subcommand)]
        command: authority::PolicyCommand,
    },
    /// Create and list the coordinator's API tokens and their roles.
    Tokens {
        #[command(subcommand)]
        command: authority::TokensCommand,
    },
    /// Set up, inspect or run a secure module.
    Module {
        #[command(subcommand)]
        command: services::ModuleCommand,
    },
    /// Enroll and list modules at the coordinator.
    Modules {
        #[command(subcommand)]
        command: client::ModulesCommand,
    },
    /// Create, list and inspect signer groups.
    Groups {
        #[command(subcommand)]
        command: client::GroupsCommand,
    },
    /// Create, import, list and inspect wallets (addresses, purpose, group).
    Wallets {
        #[command(subcommand)]
        command: client::WalletsCommand,
    },
    /// Chain balances of the wallets, and the exchange account's balances (read through the
    /// modules' read keys).
    #[command(
        after_help = "Examples:\n  concord balances\n  concord balances --wallet 3f2a\n  concord balances --exchange-only --json"
    )]
    Balances(client::BalancesArgs),
    /// Ask a wallet's modules to approve and sign a message.
    #[command(
        after_help = "Examples:\n  concord sign --wallet 3f2a --text 'hello' --key trader.key --wait\n  concord sign --wallet 3f2a --message 0xdeadbeef --rule threshold --key trader.key"
    )]
    Sign(client::SignArgs),
    /// Load tests against a running system.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Deposit from a wallet to an exchange: every module resolves the deposit address itself.
    #[command(
        after_help = "Example:\n  concord deposit --wallet 3f2a --coin eth --amount 0.5 --key trader.key --wait"
    )]
    Deposit(client::TransferArgs),
    /// Withdraw from an exchange to a wallet's own address (or an address-book entry),
    /// signed by the module group.
    #[command(
        after_help = "Examples:\n  concord withdraw --wallet 3f2a --amount 0.2 --key trader.key --wait\n  concord withdraw --to cold-storage --coin CTT --amount 10 --key trader.key --cosign approver.key"
    )]
    Withdraw(client::TransferArgs),
    /// List transfers, or show one (`concord transfers ID`).
    #[command(
        after_help = "Examples:\n  concord transfers\n  concord transfers 5c1e0f3a9b7d4e2f8a6c1d0e9f8b7a6c --wait\n  concord transfers list --json"
    )]
    Transfers(client::TransfersArgs),
    /// List jobs, or show one (`concord jobs ID`): key generations, signatures, approvals.
    #[command(
        after_help = "Examples:\n  concord jobs\n  concord jobs list --kind sign --status failed\n  concord jobs 0f9c2d4e8b1a4c3d9e7f112233445566 --wait"
    )]
    Jobs(client::JobsArgs),
    /// A whole local system: anvil, exchange simulator, coordinator and three modules.
    Devnet {
        #[command(subcommand)]
        command: devnet::DevnetCommand,
    },
    /// Run the exchange simulator (a local Binance wallet-API subset over a local chain).
    #[command(after_help = "Example:\n  concord exchange-sim --config sim.toml")]
    ExchangeSim {
        /// Its configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a shell completion script: `concord completions bash > /etc/bash_completion.d/concord`.
    #[command(
        after_help = "Examples:\n  concord completions bash > ~/.local/share/bash-completion/completions/concord\n  concord completions zsh > ~/.zfunc/_concord\n  concord completions fish > ~/.config/fish/completions/concord.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Sign repeatedly for a while and print latency percentiles and throughput.
    #[command(
        after_help = "Example:\n  concord bench sign --wallet 3f2a --key trader.key --duration 30 --concurrency 4"
    )]
    Sign(bench::BenchArgs),
    /// On a devnet of its own: deposit latency (request → accepted by anvil) and
    /// withdraw-request signing latency, as a table.
    #[command(after_help = "Example:\n  concord bench transfers --count 30")]
    Transfers(bench::TransferBenchArgs),
    /// On a devnet of its own: transfers through coordinator kills and exchange faults,
    /// counted from the chain and the exchange (completed, duplicated, lost, completion
    /// times, failover time), as a table.
    #[command(after_help = "Example:\n  concord bench soak --transfers 40 --kills 2")]
    Soak(bench::SoakArgs),
    /// Signing latency with keys in a SoftHSM token versus in the file vault (secp256k1,
    /// Ed25519, opening a vault), as a table.
    #[command(after_help = "Example:\n  concord bench keys --count 500")]
    Keys(bench::KeyBenchArgs),
    /// Two coordinators of its own on 127.0.0.1, one over HTTPS (pinned) and one over plain
    /// HTTP: an authenticated GET's latency on each, kept-alive and on a new connection per
    /// request, as a table.
    #[command(after_help = "Example:\n  concord bench api --count 2000")]
    Api(bench::ApiBenchArgs),
}

/// Where to find a configuration file when only a directory is given.
pub(crate) fn config_path(dir_or_file: &std::path::Path, name: &str) -> PathBuf {
    if dir_or_file.is_dir() {
        dir_or_file.join(name)
    } else {
        dir_or_file.to_path_buf()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONCORD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let conn = cli.connection;
    let result = runtime.block_on(async move {
        let api = || conn.api();
        match cli.command {
            Command::Coordinator { command } => services::coordinator(command).await,
            Command::Module { command } => services::module(command).await,
            Command::Keys { command } => authority::keys(command),
            Command::Policy {
                command: command @ authority::PolicyCommand::Multisig { .. },
            } => authority::policy_multisig(command),
            Command::Policy { command } => authority::policy(&api()?, command).await,
            Command::Tokens { command } => authority::tokens(&api()?, command).await,
            Command::Modules { command } => client::modules(&api()?, command).await,
            Command::Groups { command } => client::groups(&api()?, command).await,
            Command::Wallets { command } => client::wallets(&api()?, command).await,
            Command::Balances(args) => client::balances(&api()?, args).await,
            Command::Sign(args) => client::sign(&api()?, args).await,
            Command::Deposit(args) => client::deposit(&api()?, args).await,
            Command::Withdraw(args) => client::withdraw(&api()?, args).await,
            Command::Transfers(args) => client::transfers(&api()?, args).await,
            Command::Jobs(args) => client::jobs(&api()?, args).await,
            Command::Devnet { command } => devnet::run(command).await,
            Command::ExchangeSim { config } => services::exchange_sim(&config).await,
            Command::Completions { shell } => {
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "concord", &mut script);
                crate::outln!("{}", String::from_utf8_lossy(&script).trim_end());
                Ok(())
            }
            Command::Bench {
                command: BenchCommand::Sign(args),
            } => bench::sign(api()?, args).await,
            Command::Bench {
                command: BenchCommand::Transfers(args),
            } => bench::transfers(args).await,
            Command::Bench {
                command: BenchCommand::Soak(args),
            } => bench::soak(args).await,
            Command::Bench {
                command: BenchCommand::Keys(args),
            } => bench::keys(args).await,
            Command::Bench {
                command: BenchCommand::Api(args),
            } => bench::api(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<output::UsageError>().is_some() => {
            eprintln!("error: {e:#}");
            eprintln!("(see `concord --help`)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// Every command a user can reach shows an example in its `--help`.
    #[test]
    fn every_command_has_an_example() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            let leaves: Vec<&clap::Command> = cmd
                .get_subcommands()
                .filter(|c| !c.is_hide_set() && c.get_name() != "help")
                .collect();
            let shows = cmd
                .get_after_help()
                .is_some_and(|h| h.to_string().contains("Example"));
            if leaves.is_empty() && !shows {
                missing.push(path.clone());
            }
            for c in leaves {
                walk(c, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no example in: {missing:?}");
    }

    /// Every example in a `--help` is a command line `concord` accepts.
    #[test]
    fn every_example_parses() {
        use clap::{CommandFactory, Parser};
        fn examples(cmd: &clap::Command, out: &mut Vec<String>) {
            if let Some(h) = cmd.get_after_help() {
                for line in h.to_string().lines() {
                    // Two spaces start a comment ("concord devnet demo   what it does").
                    let line = line.trim().split("  ").next().unwrap_or_default();
                    if let Some(rest) = line.strip_prefix("concord ") {
                        out.push(rest.to_owned());
                    }
                }
            }
            for c in cmd.get_subcommands() {
                examples(c, out);
            }
        }
        let mut all = Vec::new();
        examples(&super::Cli::command(), &mut all);
        assert!(all.len() > 40, "{all:?}");
        for line in all {
            // Shell words: single quotes group, a redirection ends the command.
            let mut words = vec!["concord".to_owned()];
            for (i, part) in line.split('\'').enumerate() {
                if i % 2 == 1 {
                    words.push(part.to_owned());
                } else {
                    words.extend(part.split_whitespace().map(str::to_owned));
                }
            }
            if let Some(at) = words.iter().position(|w| w == ">") {
                words.truncate(at);
            }
            if let Err(e) = super::Cli::try_parse_from(&words) {
                panic!("the example `{line}` does not parse: {e}");
            }
        }
    }
}
