//! `warren-broker`: parse configuration, set up logging and error reports, and hand over to the library.

use clap::Parser;
use color_eyre::eyre::{bail, Context, Result};
use tracing_subscriber::EnvFilter;
use warren_broker::config::{Cli, Command, Config};

/// jemalloc with a background thread gives freed memory back to the system on its own clock, even when the broker
/// is idle: with glibc's malloc a flood's 555 MB stayed after the queue was purged, which held the memory alarm on
/// with nothing queued (`scripts/flood`). The decay times are set in `.cargo/config.toml`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> Result<()> {
    color_eyre::install()?;
    let cli = Cli::parse();
    if let Some(Command::HashPassword) = cli.command {
        return hash_password();
    }
    let config = Config::load(cli)?;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).wrap_err_with(|| format!("invalid --log '{}'", config.log))?)
        .init();
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
