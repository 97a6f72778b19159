//! The command line, as clap sees it: the broker options every mode shares (flags, their `WARREN_*` variables, the
//! config file and `--context`), the TUI's own options, and one subcommand per action of the scriptable twin.
//!
//! Invariants: every broker flag is an `Option` with no default here, so that a flag wins over the context and the
//! context over the built-in defaults (`config::resolve`); destructive subcommands carry `--yes`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};

use crate::config::Overrides;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  the broker refused or failed the action (its reason is on stderr), could not be reached, or a question was
     answered no
  2  usage: bad arguments, a bad config file or context, a destructive action without --yes while stdin is not a
     terminal, or an action on a read-only context

With no subcommand, warren-console opens the terminal console (the TUI).";

/// A k9s-style terminal console for the Warren broker: watch queues live, redrive dead letters, change priorities.
/// Every action is also a subcommand, for scripts.
#[derive(Parser, Debug)]
#[command(name = "warren-console", version, after_help = EXIT_CODES)]
pub struct Args {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub tui: TuiArgs,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// Which broker, and how to reach it: a flag wins over the context, which wins over the defaults.
#[derive(ClapArgs, Debug, Clone)]
pub struct BrokerArgs {
    /// The broker's admin API [default: the context's, else http://127.0.0.1:15672].
    #[arg(long, env = "WARREN_URL", global = true)]
    pub url: Option<String>,
    /// Admin API user [default: the context's, else guest].
    #[arg(long, env = "WARREN_USER", global = true)]
    pub user: Option<String>,
    /// Admin API password [default: the context's password or password_command, else guest].
    #[arg(long, env = "WARREN_PASSWORD", hide_env_values = true, global = true)]
    pub password: Option<String>,
    /// Hide and refuse every action (purge, redrive, delete, priority, publish, close): for every context.
    #[arg(long, env = "WARREN_READ_ONLY", value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub read_only: bool,
    /// Trust the CA certificates in this PEM file for an https --url, besides the built-in roots.
    #[arg(long, env = "WARREN_CA", value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,
    /// Do not verify the broker's certificate (https): anyone on the path can read the password. Tests only.
    #[arg(long, env = "WARREN_INSECURE", value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub insecure: bool,
    /// The contexts file [default: $XDG_CONFIG_HOME/warren/console.toml, else ~/.config/warren/console.toml].
    #[arg(long, env = "WARREN_CONSOLE_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Start on this context of the config file [default: its `current`].
    #[arg(long, env = "WARREN_CONTEXT", value_name = "NAME", global = true)]
    pub context: Option<String>,
}

impl BrokerArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            url: self.url.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            ca: self.ca.clone(),
            insecure: self.insecure,
            read_only: self.read_only,
        }
    }
}

/// The TUI's own options.
#[derive(ClapArgs, Debug, Clone)]
pub struct TuiArgs {
    /// How often the broker sends a snapshot, e.g. 1s or 500ms.
    #[arg(long, env = "WARREN_REFRESH", default_value = "1s", value_parser = parse_duration)]
    pub refresh: Duration,
    /// Frames drawn per second.
    #[arg(long, env = "WARREN_FPS", default_value_t = 15)]
    pub fps: u32,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 1s or 500ms"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return Err(format!("unknown unit '{unit}' (use ms, s or m)")),
    };
    if !(100.0..=3_600_000.0).contains(&ms) {
        return Err("refresh must be between 100ms and 1h".into());
    }
    Ok(Duration::from_millis(ms as u64))
}

/// `--vhost`.
#[derive(ClapArgs, Debug, Clone)]
pub struct Vhost {
    /// The virtual host.
    #[arg(long, env = "WARREN_VHOST", default_value = "/")]
    pub vhost: String,
}

/// `--json`.
#[derive(ClapArgs, Debug, Clone, Copy)]
pub struct Output {
    /// Print JSON (the broker's answer) instead of a table or a sentence.
    #[arg(long)]
    pub json: bool,
}

/// `--yes`.
#[derive(ClapArgs, Debug, Clone, Copy)]
pub struct Yes {
    /// Do it without asking. Required when stdin is not a terminal; on a terminal, warren-console asks y/N.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Which messages: the console's `/` filter syntax.
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct Filter {
    /// Only messages that match: `h:NAME=VALUE` (or `h:NAME`) for a header, `p:NAME=VALUE` for a property
    /// (message_id, content_type, ...), any other word is text the body must contain.
    #[arg(long, value_name = "FILTER")]
    pub filter: Option<String>,
}

/// Which messages an action takes: ids, a filter, or (neither) all that are ready.
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct Selection {
    /// Only these message ids (as peek shows them); repeat or separate with commas.
    #[arg(long = "id", value_name = "ID", value_delimiter = ',')]
    pub ids: Vec<u64>,
    #[command(flatten)]
    pub filter: Filter,
}

/// One subcommand per action of the console.
#[derive(Subcommand, Debug, Clone)]
pub enum Cmd {
    /// List queues (every vhost the user sees, or --vhost's).
    Queues {
        /// Only this vhost's queues.
        #[arg(long)]
        vhost: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Show ready messages without consuming them.
    Peek {
        queue: String,
        #[command(flatten)]
        filter: Filter,
        /// Skip this many (matching) messages from the head.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many messages (1-1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
        count: u64,
        #[command(flatten)]
        vhost: Vhost,
        #[command(flatten)]
        out: Output,
    },
    /// Delete every ready message of a queue (undoable while the broker's undo window lasts).
    Purge {
        queue: String,
        #[command(flatten)]
        vhost: Vhost,
        #[command(flatten)]
        yes: Yes,
        #[command(flatten)]
        out: Output,
    },
    /// Move dead letters back to the queue each one died in (from its x-death), as the console's redrive.
    Redrive {
        /// The dead-letter queue.
        queue: String,
        #[command(flatten)]
        selection: Selection,
        /// At most this many messages from the head (default: those ready when the move starts).
        #[arg(long)]
        limit: Option<u64>,
        /// At most this many messages per second.
        #[arg(long)]
        rate: Option<u32>,
        #[command(flatten)]
        vhost: Vhost,
        #[command(flatten)]
        yes: Yes,
        #[command(flatten)]
        out: Output,
    },
    /// Move ready messages to another queue.
    Move {
        queue: String,
        /// The destination queue (same vhost).
        #[arg(long, value_name = "QUEUE")]
        to: String,
        #[command(flatten)]
        selection: Selection,
        /// At most this many messages from the head (default: those ready when the move starts).
        #[arg(long)]
        limit: Option<u64>,
        /// At most this many messages per second.
        #[arg(long)]
        rate: Option<u32>,
        #[command(flatten)]
        vhost: Vhost,
        #[command(flatten)]
        yes: Yes,
        #[command(flatten)]
        out: Output,
    },
    /// Change the priority of messages in a priority queue (by --id or --filter), as the console's `p`.
    #[command(group(clap::ArgGroup::new("change").required(true).args(["set", "step"])))]
    #[command(group(clap::ArgGroup::new("which").required(true).args(["ids", "filter"]).multiple(true)))]
    Priority {
        queue: String,
        /// Set this priority (capped at the queue's x-max-priority).
        #[arg(long)]
        set: Option<u8>,
        /// Move by this many levels, e.g. 2 or -1.
        #[arg(long, allow_negative_numbers = true)]
        step: Option<i16>,
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        vhost: Vhost,
        #[command(flatten)]
        yes: Yes,
        #[command(flatten)]
        out: Output,
    },
    /// Publish one message: to a queue (through the default exchange), or through --exchange.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["queue", "exchange"])))]
    Publish {
        /// The queue to publish to.
        queue: Option<String>,
        /// Publish through this exchange instead (with --routing-key).
        #[arg(long, conflicts_with = "queue")]
        exchange: Option<String>,
        /// The routing key (with --exchange).
        #[arg(long, default_value = "", requires = "exchange")]
        routing_key: String,
        /// The body; `-` reads it from stdin.
        #[arg(long, default_value = "")]
        body: String,
        /// A header, NAME=VALUE (repeat for more).
        #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        #[arg(long)]
        message_id: Option<String>,
        #[arg(long)]
        content_type: Option<String>,
        #[arg(long)]
        priority: Option<u8>,
        /// Delivery mode 2 (stored on disk in a durable queue).
        #[arg(long)]
        persistent: bool,
        #[command(flatten)]
        vhost: Vhost,
        #[command(flatten)]
        out: Output,
    },
    /// Pause a queue: its consumers stay subscribed, nothing is delivered until it is resumed.
    Pause {
        queue: String,
        #[command(flatten)]
        vhost: Vhost,
        #[command(flatten)]
        out: Output,
    },
    /// Resume a paused queue.
    Resume {
        queue: String,
        #[command(flatten)]
        vhost: Vhost,
        #[command(flatten)]
        out: Output,
    },
    /// Without ID: list the purges and deletes that can still be undone. With ID: put those messages back.
    Undo {
        id: Option<u64>,
        #[command(flatten)]
        yes: Yes,
        #[command(flatten)]
        out: Output,
    },
    /// Write a queue's ready messages as JSON lines (peek: nothing is consumed), the format import reads.
    Export {
        queue: String,
        #[command(flatten)]
        filter: Filter,
        /// At most this many messages (default: every ready message).
        #[arg(long)]
        count: Option<u64>,
        /// Write to this file instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        vhost: Vhost,
    },
    /// Publish JSON lines (export's format) to a queue, or through --exchange with each line's routing key.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["queue", "exchange"])))]
    Import {
        queue: Option<String>,
        #[arg(long, conflicts_with = "queue")]
        exchange: Option<String>,
        /// Read this file instead of stdin.
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        vhost: Vhost,
        #[command(flatten)]
        out: Output,
    },
    /// Show a message's journey (by message_id, or the broker's id): GET /api/trace/{vhost}/{id}.
    Trace {
        id: String,
        #[command(flatten)]
        vhost: Vhost,
        #[command(flatten)]
        out: Output,
    },
    /// Print shell completions: `warren-console completions bash > /etc/bash_completion.d/warren-console`.
    Completions { shell: clap_complete::Shell },
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not NAME=VALUE")),
    }
}

impl Cmd {
    /// Whether the subcommand changes the broker (refused on a read-only context).
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            Cmd::Queues { .. }
                | Cmd::Peek { .. }
                | Cmd::Export { .. }
                | Cmd::Trace { .. }
                | Cmd::Completions { .. }
                | Cmd::Undo { id: None, .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Cmd::Queues { .. } => "queues",
            Cmd::Peek { .. } => "peek",
            Cmd::Purge { .. } => "purge",
            Cmd::Redrive { .. } => "redrive",
            Cmd::Move { .. } => "move",
            Cmd::Priority { .. } => "priority",
            Cmd::Publish { .. } => "publish",
            Cmd::Pause { .. } => "pause",
            Cmd::Resume { .. } => "resume",
            Cmd::Undo { .. } => "undo",
            Cmd::Export { .. } => "export",
            Cmd::Import { .. } => "import",
            Cmd::Trace { .. } => "trace",
            Cmd::Completions { .. } => "completions",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag also reads its `WARREN_*` variable (issue 13: the console's `--url` had none); a flag wins.
    #[test]
    fn flags_read_their_environment_variables() {
        std::env::set_var("WARREN_URL", "https://broker.example:15671");
        std::env::set_var("WARREN_READ_ONLY", "1");
        std::env::set_var("WARREN_REFRESH", "500ms");
        let args = Args::try_parse_from(["warren-console"]).expect("parse");
        assert_eq!(args.broker.url.as_deref(), Some("https://broker.example:15671"));
        assert!(args.broker.read_only);
        assert_eq!(args.tui.refresh, Duration::from_millis(500));
        let args = Args::try_parse_from(["warren-console", "--url", "http://other:15672"]).expect("parse");
        assert_eq!(args.broker.url.as_deref(), Some("http://other:15672"));
        std::env::set_var("WARREN_READ_ONLY", "no");
        assert!(
            !Args::try_parse_from(["warren-console"])
                .expect("parse")
                .broker
                .read_only
        );
        std::env::remove_var("WARREN_URL");
        std::env::remove_var("WARREN_READ_ONLY");
        std::env::remove_var("WARREN_REFRESH");
    }

    #[test]
    fn subcommands_parse_and_check_their_arguments() {
        let parse = |v: &[&str]| Args::try_parse_from(v.iter().copied());
        let args = parse(&[
            "warren-console",
            "priority",
            "q",
            "--step",
            "-2",
            "--id",
            "1,2",
            "--id",
            "5",
        ])
        .expect("parse");
        match args.command {
            Some(Cmd::Priority { step, selection, .. }) => {
                assert_eq!(step, Some(-2));
                assert_eq!(selection.ids, [1, 2, 5]);
            }
            other => panic!("{other:?}"),
        }
        // Global broker flags go after the subcommand too.
        let args = parse(&["warren-console", "queues", "--url", "http://x:1", "--json"]).expect("parse");
        assert_eq!(args.broker.url.as_deref(), Some("http://x:1"));
        for bad in [
            &["warren-console", "priority", "q", "--set", "1"][..],
            &["warren-console", "priority", "q", "--id", "1"],
            &["warren-console", "move", "q"],
            &["warren-console", "publish"],
            &["warren-console", "publish", "q", "--exchange", "x"],
            &["warren-console", "peek", "q", "--count", "0"],
            &["warren-console", "frobnicate"],
        ] {
            let e = parse(bad).expect_err("refused");
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }
}
