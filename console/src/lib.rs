//! `warren-console`: a k9s-style terminal console for the Warren broker, built on its admin API only, and its
//! scriptable twin ([`cli`]: the same actions as subcommands, without the TUI).
//!
//! The loop in [`run`]: input (a thread reading the terminal), the live feed and command results (tokio tasks in
//! [`client`]) all arrive as [`event::Event`]s; [`app::update`] applies each to the [`app::App`] and returns commands
//! for the client; a fixed-rate tick draws the screen with [`views::render`], which only reads the `App`. The
//! terminal is restored on every way out: normal return, error, and panic (ratatui's hook restores it before
//! color-eyre reports).
//!
//! Contexts ([`config`]): the broker's answers come on a channel of their own, one per broker. `:ctx` resolves the
//! new context off the loop, starts a feed against it, and only then drops the old feed and its channel, so nothing
//! the old broker says can reach the app after the switch.

pub mod app;
pub mod cli;
pub mod client;
pub mod config;
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
    /// The broker to start on (a context with the flags laid over it, or the flags alone).
    pub target: config::Target,
    /// The config file's contexts, for `:ctx` (none: no config file).
    pub config: Option<config::ConsoleConfig>,
    /// `--read-only` on the command line: holds for every context switched to.
    pub read_only_flag: bool,
    /// How often the broker sends a snapshot and listings are re-read.
    pub refresh: Duration,
    /// Frames per second.
    pub fps: u32,
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

/// The live feed of one broker: its client, the channel its answers come on, and the feed's task.
struct Feed {
    client: client::Client,
    events: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    fn start(target: &config::Target, refresh_ms: u64) -> Result<Self, client::ClientError> {
        let (tx, events) = mpsc::unbounded_channel();
        let api = client::Api::new(&target.url, &target.user, &target.password, &target.tls)?;
        let client = client::Client::of(api, tx);
        let task = tokio::spawn(client.clone().stream(refresh_ms));
        Ok(Feed { client, events, task })
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // Its channel closes with it: commands still running against this broker report to no one.
        self.task.abort();
    }
}

/// The outcome of resolving a context for `:ctx`, tagged with the switch it answers (only the latest counts).
struct Switch {
    seq: u64,
    name: String,
    target: Result<config::Target, String>,
}

async fn run_async(options: Options) -> color_eyre::Result<()> {
    let refresh_ms = options.refresh.as_millis().max(100) as u64;
    let mut feed = Feed::start(&options.target, refresh_ms)?;
    let (input_tx, mut input_rx) = mpsc::unbounded_channel();
    let (switch_tx, mut switch_rx) = mpsc::unbounded_channel::<Switch>();
    let mut switch_seq = 0u64;

    let settings = Settings {
        url: options.target.url.clone(),
        read_only: options.target.read_only,
        utc_offset_s: chrono::Local::now().offset().local_minus_utc(),
        refresh_ms: refresh_ms.max(1000),
        context: options.target.context.clone(),
    };
    let mut app = App::new(settings, now_ms());
    app.contexts = options.config.as_ref().map(|c| c.infos()).unwrap_or_default();
    let config = options.config.map(std::sync::Arc::new);

    // ratatui::init panics without a terminal (run from a pipe, a cron job, CI): say so on one line instead.
    let mut terminal = ratatui::try_init()
        .map_err(|e| color_eyre::eyre::eyre!("warren-console needs a terminal (stdin and stdout on a tty): {e}"))?;
    let _guard = TerminalGuard;
    let size = terminal.size()?;
    app.size = (size.width, size.height);
    let mut stop = Arc::new(AtomicBool::new(false));
    let mut input = spawn_input(input_tx.clone(), stop.clone());

    // Runs `update` and hands its commands out: to the current broker's client, or (a switch) to a resolver task;
    // what needs the terminal (the editor) comes back, for the loop to run.
    let apply = |app: &mut App, feed: &Feed, event: Event, switch_seq: &mut u64| -> Vec<Command> {
        let mut terminal_work = Vec::new();
        for c in update(app, event) {
            match c {
                Command::Quit => {}
                c @ Command::OpenEditor { .. } => terminal_work.push(c),
                Command::SwitchContext(name) => {
                    let Some(config) = config.clone() else { continue };
                    *switch_seq += 1;
                    let (seq, tx, read_only) = (*switch_seq, switch_tx.clone(), options.read_only_flag);
                    // A password command may take its time: never on the loop.
                    tokio::task::spawn_blocking(move || {
                        let target = config.target(&name, read_only).map_err(|e| e.to_string());
                        let _ = tx.send(Switch { seq, name, target });
                    });
                }
                c => feed.client.execute(c),
            }
        }
        terminal_work
    };

    let mut frames = tokio::time::interval(Duration::from_millis(1000 / options.fps.clamp(1, 60) as u64));
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let result = loop {
        let mut terminal_work = tokio::select! {
            _ = frames.tick() => {
                let work = apply(&mut app, &feed, Event::Tick { now_ms: now_ms() }, &mut switch_seq);
                if let Err(e) = terminal.draw(|f| views::render(f, &app)) {
                    break Err(e.into());
                }
                work
            }
            Some(event) = input_rx.recv() => apply(&mut app, &feed, event, &mut switch_seq),
            Some(event) = feed.events.recv() => apply(&mut app, &feed, event, &mut switch_seq),
            Some(switch) = switch_rx.recv() => {
                if switch.seq != switch_seq {
                    continue;
                }
                let event = match switch.target {
                    Ok(target) => match Feed::start(&target, refresh_ms) {
                        Ok(new) => {
                            feed = new;
                            match target.context {
                                Some(info) => Event::ContextSwitched(info),
                                None => continue,
                            }
                        }
                        Err(e) => Event::ContextFailed { name: switch.name, error: e.to_string() },
                    },
                    Err(error) => Event::ContextFailed { name: switch.name, error },
                };
                apply(&mut app, &feed, event, &mut switch_seq)
            }
        };
        while let Some(Command::OpenEditor { queue, id, text }) = terminal_work.pop() {
            // The editor gets the terminal: no input thread reading it, no raw mode, no alternate screen; then all
            // of them back.
            stop.store(true, Ordering::Relaxed);
            let _ = input.join();
            ratatui::restore();
            let after = tokio::task::block_in_place(|| editor::run_editor(&text));
            terminal = ratatui::try_init()?;
            terminal.clear()?;
            stop = Arc::new(AtomicBool::new(false));
            input = spawn_input(input_tx.clone(), stop.clone());
            let edited = Event::Edited {
                queue,
                id,
                before: text,
                after,
            };
            terminal_work.extend(apply(&mut app, &feed, edited, &mut switch_seq));
        }
        if app.quit {
            break match app.fatal.take() {
                Some(error) => Err(color_eyre::eyre::eyre!(error)),
                None => Ok(()),
            };
        }
    };
    stop.store(true, Ordering::Relaxed);
    result
}
