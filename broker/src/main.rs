//! `warren-broker`: parse configuration, set up logging and error reports, and hand over to the library.
//!
//! A failed start prints one line (`error: …: cause`) and exits 1; with `RUST_BACKTRACE` set it prints color-eyre's
//! full report instead (`warren_shared::cli`).

use std::process::ExitCode;

use clap::Parser;
use color_eyre::eyre::{bail, Result};
use warren_broker::config::{Cli, Command, Config};

/// jemalloc with a background thread gives freed memory back to the system on its own clock, even when the broker
/// is idle: with glibc's malloc a flood's 555 MB stayed after the queue was purged, which held the memory alarm on
/// with nothing queued (`scripts/flood`). The decay times are set in `.cargo/config.toml`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    warren_shared::cli::exit(run())
}

fn run() -> Result<()> {
    color_eyre::install()?;
    let cli = Cli::parse();
    if let Some(Command::HashPassword) = cli.command {
        return hash_password();
    }
    let config = Config::load(cli)?;
    warren_broker::init_logs(&config)?;
    warren_broker::launch(config)?;
    Ok(())
}

/// `warren-broker hash-password`: one line from stdin to an argon2id hash on stdout.
fn hash_password() -> Result<()> {
    match warren_broker::auth::password::hash_line(std::io::stdin().lock()) {
        Ok(hash) => {
            println!("{hash}");
            Ok(())
        }
        Err(e) => bail!("{e}"),
    }
}
