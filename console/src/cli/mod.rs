//! The scriptable twin: every action of the console as a subcommand (`warren-console purge orders.dlq --yes`), with
//! a table or a sentence for people, `--json` for scripts, and exit codes ([`args::EXIT_CODES`]): 0 done, 1 the broker
//! refused or failed (its reason on stderr), 2 usage. No subcommand opens the TUI.
//!
//! Both faces share the broker options and contexts ([`crate::config`]) and the admin API client
//! ([`crate::client::Api`]); nothing here builds a request by hand. One file per concern: `args` (clap), `queues`
//! (listing, purge, pause), `messages` (peek, publish, export, import), `moves` (redrive, move, priority), `undo`
//! (undo, trace), `table` (the human output).
//!
//! Invariants: a destructive subcommand (purge, redrive, move, priority, undo ID) acts only after `--yes`, or a "y"
//! typed on a terminal; with stdin not a terminal and no `--yes` it exits 2 before any request. A read-only context
//! (or `--read-only`) refuses every subcommand that writes, also with 2.

pub mod args;
mod messages;
mod moves;
mod queues;
pub mod table;
mod undo;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::CommandFactory;

use crate::client::{Api, ApiFailure};
use crate::config::{ConsoleConfig, Target};
pub use args::{Args, Cmd};

/// Why a subcommand did not do its job, and so its exit code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// Exit 2: the command could not be run as given.
    #[error("{0}")]
    Usage(String),
    /// Exit 1: the broker refused or failed it, could not be reached, or the operator said no.
    #[error("{0}")]
    Failed(String),
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Failed(_) => 1,
        }
    }
}

/// A broker failure, with what was being done: `purge orders: no queue 'orders' in vhost '/' (404)`.
pub fn failed(what: impl std::fmt::Display) -> impl FnOnce(ApiFailure) -> Failure {
    move |e| Failure::Failed(format!("{what}: {e}"))
}

pub type Outcome = Result<(), Failure>;

/// Prints `value` as JSON (pretty: one value per run), or says why it cannot.
pub fn print_json<T: serde::Serialize>(value: &T) -> Outcome {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Failed(format!("cannot print JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Asks before a destructive action: `--yes` goes ahead; on a terminal the operator types y; anything else is a
/// refusal (exit 2 without a terminal, 1 for a "no").
pub fn confirm(yes: bool, command: &str, question: &str) -> Outcome {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::Usage(format!(
            "{command} needs --yes when stdin is not a terminal ({question})"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::Failed(format!("cannot read the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::Failed("not confirmed: nothing was done".into())),
    }
}

/// The whole program after clap: completions, then the config and the broker, then the TUI or a subcommand.
pub fn main(args: Args) -> ExitCode {
    if let Some(Cmd::Completions { shell }) = &args.command {
        let mut command = Args::command();
        clap_complete::generate(*shell, &mut command, "warren-console", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let setup = ConsoleConfig::load(args.broker.config.as_deref()).and_then(|(config, _)| {
        let target = crate::config::resolve(
            config.as_ref(),
            args.broker.context.as_deref(),
            &args.broker.overrides(),
        )?;
        Ok((config, target))
    });
    let (config, target) = match setup {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if target.tls.insecure {
        eprintln!(
            "warning: --insecure: the broker's certificate is not verified; the password may be read by anyone in \
             between"
        );
    }
    let Some(command) = args.command else {
        return warren_shared::cli::exit(crate::run(crate::Options {
            target,
            config,
            read_only_flag: args.broker.read_only,
            refresh: args.tui.refresh,
            fps: args.tui.fps,
        }));
    };
    match run(command, &target, args.broker.read_only) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {f}");
            ExitCode::from(f.code())
        }
    }
}

/// Runs one subcommand against `target` (`read_only_flag`: `--read-only` was given, for the message).
pub fn run(command: Cmd, target: &Target, read_only_flag: bool) -> Outcome {
    if command.writes() && target.read_only {
        let whose = match &target.context {
            Some(c) if !read_only_flag => format!("context '{}' is read-only", c.name),
            _ => "--read-only is set".to_string(),
        };
        return Err(Failure::Usage(format!("{whose}: {} is refused", command.name())));
    }
    let api = Api::new(&target.url, &target.user, &target.password, &target.tls)
        .map_err(|e| Failure::Usage(warren_shared::cli::error_line(&e)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Failed(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(dispatch(command, &api))
}

async fn dispatch(command: Cmd, api: &Api) -> Outcome {
    match command {
        Cmd::Queues { vhost, out } => queues::list(api, vhost.as_deref(), out).await,
        Cmd::Purge { queue, vhost, yes, out } => queues::purge(api, &vhost.key(&queue), yes, out).await,
        Cmd::Pause { queue, vhost, out } => queues::pause(api, &vhost.key(&queue), true, out).await,
        Cmd::Resume { queue, vhost, out } => queues::pause(api, &vhost.key(&queue), false, out).await,
        Cmd::Peek {
            queue,
            filter,
            from,
            count,
            vhost,
            out,
        } => messages::peek(api, &vhost.key(&queue), &filter, from, count, out).await,
        Cmd::Export {
            queue,
            filter,
            count,
            output,
            vhost,
        } => messages::export(api, &vhost.key(&queue), &filter, count, output.as_deref()).await,
        Cmd::Import {
            queue,
            exchange,
            file,
            vhost,
            out,
        } => messages::import(api, &vhost.vhost, queue, exchange, file.as_deref(), out).await,
        c @ Cmd::Publish { .. } => messages::publish(api, c).await,
        c @ (Cmd::Redrive { .. } | Cmd::Move { .. } | Cmd::Priority { .. }) => moves::run(api, c).await,
        Cmd::Undo { id, yes, out } => undo::undo(api, id, yes, out).await,
        Cmd::Trace { id, vhost, out } => undo::trace(api, &vhost.vhost, &id, out).await,
        Cmd::Completions { .. } => Ok(()),
    }
}

impl args::Vhost {
    fn key(&self, queue: &str) -> crate::event::QueueKey {
        crate::event::QueueKey::new(&self.vhost, queue)
    }
}
