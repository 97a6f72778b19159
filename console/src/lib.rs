//! `warren-console`: a k9s-style terminal console for the Warren broker, built on its admin API only.
//!
//! The loop in [`run`]: input (a thread reading the terminal), the live feed and command results (tokio tasks in
//! [`client`]) all arrive as [`event::Event`]s on one channel; [`app::update`] applies each to the [`app::App`] and
//! returns commands for the client; a fixed-rate tick draws the screen with [`views::render`], which only reads the
//! `App`. The terminal is restored on every way out: normal return, error, and panic (ratatui's hook restores it
//! before color-eyre reports).

pub mod app;
pub mod client;
pub mod editor;
pub mod event;
#[cfg(test)]
mod fixtures;
pub mod format;
pub mod views;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratatui::crossterm::event as term;
use tokio::sync::mpsc;

use app::{update, App, Settings};
use event::{Command, Event};

/// What `main` hands over from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub user: String,
    pub password: String,
    pub read_only: bool,
    /// How often the broker sends a snapshot and listings are re-read.
    pub refresh: Duration,
    /// Frames per second.
    pub fps: u32,
    /// How https URLs are verified (`--ca`, `--insecure`).
    pub tls: client::TlsOptions,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Restores the terminal when dropped, whatever way `run` is left.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Reads the terminal in a thread of its own (crossterm's read blocks) until `stop` is set. If reading fails, the
/// thread says so with [`Event::InputFailed`] before it ends: in raw mode a dead keyboard means no way out (not even
/// ctrl-c), so the app must quit rather than run on.
fn spawn_input(tx: mpsc::UnboundedSender<Event>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let event = match term::poll(Duration::from_millis(50)) {
                Ok(false) => continue,
                Ok(true) => match term::read() {
                    Ok(term::Event::Key(k)) => Event::Key(k),
                    Ok(term::Event::Resize(w, h)) => Event::Resize(w, h),
                    Ok(_) => continue,
                    Err(e) => Event::InputFailed(e.to_string()),
                },
                Err(e) => Event::InputFailed(e.to_string()),
            };
            let failed = matches!(event, Event::InputFailed(_));
            // A send fails only when the app is gone.
            if tx.send(event).is_err() || failed {
                return;
            }
        }
    })
}

/// Runs the console until the operator quits.
pub fn run(options: Options) -> color_eyre::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(options))
}

async fn run_async(options: Options) -> color_eyre::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let client = client::Client::with_tls(&options.url, &options.user, &options.password, &options.tls, tx.clone())?;
    let refresh_ms = options.refresh.as_millis().max(100) as u64;
    tokio::spawn(client.clone().stream(refresh_ms));

    let settings = Settings {
        url: options.url.clone(),
        read_only: options.read_only,
        utc_offset_s: chrono::Local::now().offset().local_minus_utc(),
        refresh_ms: refresh_ms.max(1000),
    };
    let mut app = App::new(settings, now_ms());

    // ratatui::init panics without a terminal (run from a pipe, a cron job, CI): say so on one line instead.
    let mut terminal = ratatui::try_init()
        .map_err(|e| color_eyre::eyre::eyre!("warren-console needs a terminal (stdin and stdout on a tty): {e}"))?;
    let _guard = TerminalGuard;
    let size = terminal.size()?;
    app.size = (size.width, size.height);
    let mut stop = Arc::new(AtomicBool::new(false));
    let mut input = spawn_input(tx.clone(), stop.clone());

    let mut frames = tokio::time::interval(Duration::from_millis(1000 / options.fps.clamp(1, 60) as u64));
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let result = loop {
        tokio::select! {
            _ = frames.tick() => {
                for c in update(&mut app, Event::Tick { now_ms: now_ms() }) {
                    client.execute(c);
                }
                if let Err(e) = terminal.draw(|f| views::render(f, &app)) {
                    break Err(e.into());
                }
            }
            Some(event) = rx.recv() => {
                let mut commands: std::collections::VecDeque<Command> = update(&mut app, event).into();
                while let Some(c) = commands.pop_front() {
                    match c {
                        Command::Quit => {}
                        Command::OpenEditor { queue, id, text } => {
                            // The editor gets the terminal: no input thread reading it, no raw mode, no alternate
                            // screen; then all of them back.
                            stop.store(true, Ordering::Relaxed);
                            let _ = input.join();
                            ratatui::restore();
                            let after = tokio::task::block_in_place(|| editor::run_editor(&text));
                            terminal = ratatui::try_init()?;
                            terminal.clear()?;
                            stop = Arc::new(AtomicBool::new(false));
                            input = spawn_input(tx.clone(), stop.clone());
                            let edited = Event::Edited { queue, id, before: text, after };
                            commands.extend(update(&mut app, edited));
                        }
                        c => client.execute(c),
                    }
                }
                if app.quit {
                    break match app.fatal.take() {
                        Some(error) => Err(color_eyre::eyre::eyre!(error)),
                        None => Ok(()),
                    };
                }
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    result
}
