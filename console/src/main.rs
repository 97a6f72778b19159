//! `warren-console`: the command line (clap; every flag also reads its `WARREN_*` variable) and error reports (one
//! line, or color-eyre's report with `RUST_BACKTRACE`); everything else is in the library.

use std::time::Duration;

use clap::Parser;

/// A k9s-style terminal console for the Warren broker: watch queues live, redrive dead letters, change priorities.
#[derive(Parser, Debug)]
#[command(name = "warren-console", version)]
struct Args {
    /// The broker's admin API.
    #[arg(long, env = "WARREN_URL", default_value = "http://127.0.0.1:15672")]
    url: String,
    /// Admin API user.
    #[arg(long, env = "WARREN_USER", default_value = "guest")]
    user: String,
    /// Admin API password.
    #[arg(long, env = "WARREN_PASSWORD", default_value = "guest", hide_env_values = true)]
    password: String,
    /// Hide and disable every action (purge, redrive, delete, priority, publish, close).
    #[arg(long, env = "WARREN_READ_ONLY", value_parser = clap::builder::BoolishValueParser::new())]
    read_only: bool,
    /// How often the broker sends a snapshot, e.g. 1s or 500ms.
    #[arg(long, env = "WARREN_REFRESH", default_value = "1s", value_parser = parse_duration)]
    refresh: Duration,
    /// Frames drawn per second.
    #[arg(long, env = "WARREN_FPS", default_value_t = 15)]
    fps: u32,
    /// Trust the CA certificates in this PEM file for an https --url, besides the built-in roots.
    #[arg(long, env = "WARREN_CA", value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// Do not verify the broker's certificate (https): anyone on the path can read the password. Tests only.
    #[arg(long, env = "WARREN_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    insecure: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
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

fn main() -> std::process::ExitCode {
    warren_shared::cli::exit(run())
}

fn run() -> color_eyre::Result<()> {
    color_eyre::install()?;
    let args = Args::parse();
    if args.insecure {
        eprintln!("warning: --insecure: the broker's certificate is not verified; the password may be read by anyone in between");
    }
    warren_console::run(warren_console::Options {
        url: args.url,
        user: args.user,
        password: args.password,
        read_only: args.read_only,
        refresh: args.refresh,
        fps: args.fps,
        tls: warren_console::client::TlsOptions {
            ca: args.ca,
            insecure: args.insecure,
        },
    })
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
        assert_eq!(args.url, "https://broker.example:15671");
        assert!(args.read_only);
        assert_eq!(args.refresh, Duration::from_millis(500));
        let args = Args::try_parse_from(["warren-console", "--url", "http://other:15672"]).expect("parse");
        assert_eq!(args.url, "http://other:15672");
        std::env::set_var("WARREN_READ_ONLY", "no");
        assert!(!Args::try_parse_from(["warren-console"]).expect("parse").read_only);
    }
}
