//! The broker binary, built inside the tests crate so that crash tests can spawn (and SIGKILL) it as a child
//! process through `CARGO_BIN_EXE_warren-test-broker`. Same flags as `warren-broker`.

use clap::Parser;
use warren_broker::config::{Cli, Config};

/// Errors are printed on one line with their message (as `warren-broker`'s color-eyre report starts), not Debug.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    if let Some(warren_broker::config::Command::HashPassword) = cli.command {
        println!("{}", warren_broker::auth::password::hash_line(std::io::stdin().lock())?);
        return Ok(());
    }
    let config = Config::load(cli)?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log)?)
        .init();
    warren_broker::launch(config)?;
    Ok(())
}
