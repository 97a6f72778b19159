//! What the binaries (`warren-broker`, `warren-console`) share on the command line: how a fatal error is printed.
//!
//! A user sees one line, `error: what failed: why`; a developer who sets `RUST_BACKTRACE` gets the full report
//! (color-eyre's, with its backtrace) instead.

use std::error::Error;
use std::process::ExitCode;

/// An error and its causes on one line, each cause once: many messages already end with their source's text.
pub fn error_line(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    line
}

/// The process's exit for `result`: success, or the error on stderr (one line, or `full` with `RUST_BACKTRACE`)
/// and exit code 1.
pub fn exit<E: AsRef<dyn Error + Send + Sync + 'static> + std::fmt::Debug>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
                eprintln!("{e:?}");
            } else {
                eprintln!("error: {}", error_line(e.as_ref()));
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read config file x.toml: {0}")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("invalid --log")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn one_line_names_each_cause_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert_eq!(error_line(&Outer(io())), "cannot read config file x.toml: no such file");
        assert_eq!(error_line(&Wrapper(io())), "invalid --log: no such file");
    }
}
