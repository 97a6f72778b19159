//! `warren-broker`: parse configuration, set up logging, bind, and hand over to the library.

use clap::Parser;
use color_eyre::eyre::{Context, Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use warren_broker::config::{Cli, Config};

fn main() -> Result<()> {
    color_eyre::install()?;
    let config = Config::load(Cli::parse())?;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).wrap_err_with(|| format!("invalid --log '{}'", config.log))?)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .wrap_err_with(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .wrap_err_with(|| format!("cannot listen on {} (is another broker running?)", config.listen))?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), data_dir = %config.data_dir.display(), "starting Warren");
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    warren_broker::run(listener, config, shutdown).await?;
    tracing::info!("Warren stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn signal_shutdown(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
