//! The broker binary, built inside the tests crate so that crash tests can spawn (and SIGKILL) it as a child
//! process through `CARGO_BIN_EXE_warren-test-broker`. Same flags as `warren-broker`.

use clap::Parser;
use warren_broker::config::{Cli, Config};

/// Errors are printed as `warren-broker` prints them: one line (`warren_shared::cli`).
fn main() -> std::process::ExitCode {
    warren_shared::cli::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Tests run several brokers at once: MQTT and STOMP on free ports unless a test names them (1883 and 61613
    // would clash).
    for (var, flag) in [
        ("WARREN_MQTT_LISTEN", "--mqtt-listen"),
        ("WARREN_STOMP_LISTEN", "--stomp-listen"),
    ] {
        if std::env::var_os(var).is_none() && !std::env::args().any(|a| a.starts_with(flag)) {
            std::env::set_var(var, "127.0.0.1:0");
        }
    }
    let cli = Cli::parse();
    if let Some(warren_broker::config::Command::HashPassword) = cli.command {
        println!("{}", warren_broker::auth::password::hash_line(std::io::stdin().lock())?);
        return Ok(());
    }
    let config = Config::load(cli)?;
    warren_broker::init_logs(&config)?;
    warren_broker::launch(config)?;
    Ok(())
}
