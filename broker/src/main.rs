//! `warren-broker`: parse configuration, set up logging and error reports, and hand over to the library.

use clap::Parser;
use color_eyre::eyre::{Context, Result};
use tracing_subscriber::EnvFilter;
use warren_broker::config::{Cli, Config};

fn main() -> Result<()> {
    color_eyre::install()?;
    let config = Config::load(Cli::parse())?;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).wrap_err_with(|| format!("invalid --log '{}'", config.log))?)
        .init();
    warren_broker::launch(config)?;
    Ok(())
}
