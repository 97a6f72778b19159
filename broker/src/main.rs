//! `warren-broker`: parse configuration, set up logging and error reports, and hand over to the library.

use clap::Parser;
use color_eyre::eyre::{Context, Result};
use tracing_subscriber::EnvFilter;
use warren_broker::config::{Cli, Config};

/// jemalloc with a background thread gives freed memory back to the system on its own clock, even when the broker
/// is idle: with glibc's malloc a flood's 555 MB stayed after the queue was purged, which held the memory alarm on
/// with nothing queued (`scripts/flood`). The decay times are set in `.cargo/config.toml`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> Result<()> {
    color_eyre::install()?;
    let config = Config::load(Cli::parse())?;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).wrap_err_with(|| format!("invalid --log '{}'", config.log))?)
        .init();
    warren_broker::launch(config)?;
    Ok(())
}
