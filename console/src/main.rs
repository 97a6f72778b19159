//! `warren-console`: the command line (clap; every flag also reads its `WARREN_*` variable; usage errors exit 2) and
//! error reports (one line, or color-eyre's report with `RUST_BACKTRACE`); everything else is in the library
//! (`cli::main`: contexts, then the TUI or a subcommand).

use clap::Parser;

fn main() -> std::process::ExitCode {
    if let Err(e) = color_eyre::install() {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    warren_console::cli::main(warren_console::cli::Args::parse())
}
