//! Contexts: the console's config file of named brokers (`console.toml`), and how a context, the command line and the
//! defaults combine into the broker the console talks to ([`Target`]).
//!
//! The file is found at `--config FILE` / `WARREN_CONSOLE_CONFIG` (which must exist), else at
//! `$XDG_CONFIG_HOME/warren/console.toml`, else `~/.config/warren/console.toml` (which may be missing: then there are
//! no contexts and the flags work as they always did).
//!
//! Invariants: a bad file is one [`ConfigError`] line that names the file, the line and what is wrong, never a
//! panic; a password command runs only when its context is used, through `sh -c`, and its first line of output is
//! the password; nothing here prints a password or puts one in an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::Color;
use serde::Deserialize;
use toml::Spanned;

use crate::client::TlsOptions;
use crate::event::ContextInfo;

/// The admin API's defaults, when neither a flag nor a context says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:15672";
pub const DEFAULT_USER: &str = "guest";
pub const DEFAULT_PASSWORD: &str = "guest";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: String },
    #[error("{path} line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no context named '{name}' in {path} (it has: {known})")]
    UnknownContext { name: String, path: PathBuf, known: String },
    #[error("--context {name}: there is no config file ({path} does not exist)")]
    NoConfig { name: String, path: PathBuf },
    #[error("context '{context}': the password command {message}")]
    PasswordCommand { context: String, message: String },
}

/// A header colour: a name (`red`, `lightblue`, `dark-gray`), `#rrggbb`, or a 256-colour index.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct HeaderColor(pub Color);

impl TryFrom<String> for HeaderColor {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Color::from_str(s.trim())
            .map(HeaderColor)
            .map_err(|_| format!("unknown colour '{s}' (use a name like red or lightblue, #rrggbb, or 0-255)"))
    }
}

/// An admin API URL: http or https.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Url(pub String);

impl TryFrom<String> for Url {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s.starts_with("http://") || s.starts_with("https://") {
            Ok(Url(s))
        } else {
            Err(format!("url '{s}' must start with http:// or https://"))
        }
    }
}

/// One context as the file gives it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub url: Option<Url>,
    pub user: Option<String>,
    /// The password itself (a password command is the better habit).
    pub password: Option<String>,
    /// Run through `sh -c`; the first line it prints is the password (`pass show warren/prod`).
    pub password_command: Option<String>,
    /// A PEM file of CA certificates for an https url (`~/` is the home directory; a relative path is relative to
    /// the config file).
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
    /// The header's colour while on this context.
    #[serde(alias = "colour")]
    pub color: Option<HeaderColor>,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    current: Option<Spanned<String>>,
    #[serde(default)]
    contexts: BTreeMap<String, Spanned<Context>>,
}

/// The parsed file: its contexts by name, and the one to start on.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleConfig {
    pub path: PathBuf,
    pub current: Option<String>,
    pub contexts: BTreeMap<String, Context>,
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl ConsoleConfig {
    /// Parses a config file's text (`path` is for the messages).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let invalid = |offset: usize, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of(text, offset),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            // toml's message can run over lines (the valid keys); one line for the operator.
            invalid(offset, e.message().trim().replace('\n', " "))
        })?;
        for (name, c) in &file.contexts {
            let at = c.span().start;
            let c = c.get_ref();
            if c.password.is_some() && c.password_command.is_some() {
                return Err(invalid(
                    at,
                    format!("context '{name}' has both password and password_command: keep one"),
                ));
            }
            if c.url.is_none() {
                return Err(invalid(at, format!("context '{name}' has no url")));
            }
        }
        let current = match file.current {
            Some(c) if !file.contexts.contains_key(c.get_ref()) => {
                return Err(invalid(
                    c.span().start,
                    format!(
                        "current = '{}' names no context (there are: {})",
                        c.get_ref(),
                        known(file.contexts.keys())
                    ),
                ))
            }
            c => c.map(Spanned::into_inner),
        };
        Ok(ConsoleConfig {
            path: path.to_path_buf(),
            current,
            contexts: file.contexts.into_iter().map(|(k, v)| (k, v.into_inner())).collect(),
        })
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// The file to read: `explicit` (`--config`, which must exist), else the XDG default, if it exists. The second
    /// value is the path looked at, for messages.
    pub fn load(explicit: Option<&Path>) -> Result<(Option<Self>, PathBuf), ConfigError> {
        if let Some(path) = explicit {
            return Ok((Some(Self::read(path)?), path.to_path_buf()));
        }
        let path = default_path();
        if !path.exists() {
            return Ok((None, path));
        }
        Ok((Some(Self::read(&path)?), path))
    }

    /// The contexts as the console's picker lists them (by name).
    pub fn infos(&self) -> Vec<ContextInfo> {
        self.contexts.iter().map(|(name, c)| info(name, c, false)).collect()
    }

    fn get(&self, name: &str) -> Result<&Context, ConfigError> {
        self.contexts.get(name).ok_or_else(|| ConfigError::UnknownContext {
            name: name.to_string(),
            path: self.path.clone(),
            known: known(self.contexts.keys()),
        })
    }

    /// The broker of context `name`, with nothing overridden but `read_only` (a switch at runtime: `--read-only`
    /// given at start holds for every context). Runs its password command.
    pub fn target(&self, name: &str, read_only: bool) -> Result<Target, ConfigError> {
        resolve(
            Some(self),
            Some(name),
            &Overrides {
                read_only,
                ..Overrides::default()
            },
        )
    }
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn info(name: &str, c: &Context, read_only: bool) -> ContextInfo {
    ContextInfo {
        name: name.to_string(),
        url: c.url.as_ref().map_or(DEFAULT_URL, |u| u.0.as_str()).to_string(),
        color: c.color.map(|c| c.0),
        read_only: c.read_only || read_only,
    }
}

/// `$XDG_CONFIG_HOME/warren/console.toml`, else `~/.config/warren/console.toml` (XDG's rule: a relative
/// `XDG_CONFIG_HOME` is ignored).
pub fn default_path() -> PathBuf {
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.unwrap_or_else(|| home().join(".config"));
    base.join("warren").join("console.toml")
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default()
}

/// A path from the file: `~/x` in the home directory, a relative one next to the file (as it was written there, not
/// wherever the console happens to be started).
fn expand(p: &Path, file: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => home().join(rest),
        Err(_) if p.is_relative() => file.parent().unwrap_or(Path::new("")).join(p),
        Err(_) => p.to_path_buf(),
    }
}

/// What the command line gave (flags and their `WARREN_*` variables): each wins over the context's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub url: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub ca: Option<PathBuf>,
    /// `--insecure` (only ever turns verification off).
    pub insecure: bool,
    /// `--read-only` (only ever makes the console safer).
    pub read_only: bool,
}

/// The broker to talk to, with everything resolved.
#[derive(Clone, PartialEq)]
pub struct Target {
    /// The context it came from (none: flags and defaults only).
    pub context: Option<ContextInfo>,
    pub url: String,
    pub user: String,
    pub password: String,
    pub tls: TlsOptions,
    pub read_only: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("context", &self.context)
            .field("url", &self.url)
            .field("user", &self.user)
            .field("tls", &self.tls)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// Picks the context (`pick`, else the file's `current`, else none) and lays the flags over it.
pub fn resolve(config: Option<&ConsoleConfig>, pick: Option<&str>, flags: &Overrides) -> Result<Target, ConfigError> {
    let chosen = match (config, pick) {
        (None, Some(name)) => {
            return Err(ConfigError::NoConfig {
                name: name.to_string(),
                path: default_path(),
            })
        }
        (Some(c), Some(name)) => Some((name.to_string(), c.get(name)?)),
        (Some(c), None) => match &c.current {
            Some(name) => Some((name.clone(), c.get(name)?)),
            None => None,
        },
        (None, None) => None,
    };
    let empty = Context::default();
    let (name, ctx) = match &chosen {
        Some((n, c)) => (Some(n.as_str()), *c),
        None => (None, &empty),
    };
    let password = match (&flags.password, &ctx.password, &ctx.password_command) {
        (Some(p), _, _) => p.clone(),
        (None, Some(p), _) => p.clone(),
        (None, None, Some(cmd)) => run_password_command(cmd).map_err(|message| ConfigError::PasswordCommand {
            context: name.unwrap_or_default().to_string(),
            message,
        })?,
        (None, None, None) => DEFAULT_PASSWORD.to_string(),
    };
    let url = flags
        .url
        .clone()
        .or_else(|| ctx.url.as_ref().map(|u| u.0.clone()))
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let read_only = flags.read_only || ctx.read_only;
    Ok(Target {
        context: name.map(|n| ContextInfo {
            url: url.clone(),
            ..info(n, ctx, read_only)
        }),
        user: flags
            .user
            .clone()
            .or_else(|| ctx.user.clone())
            .unwrap_or_else(|| DEFAULT_USER.to_string()),
        password,
        tls: TlsOptions {
            ca: flags
                .ca
                .clone()
                .or_else(|| Some(expand(ctx.ca.as_deref()?, &config?.path))),
            insecure: flags.insecure || ctx.insecure,
        },
        url,
        read_only,
    })
}

/// Runs `command` with `sh -c`; its first line of output is the password. The error says what went wrong in words
/// (never the output itself, which may be a secret).
pub fn run_password_command(command: &str) -> Result<String, String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("could not be run: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr.lines().next().unwrap_or("").trim();
        return Err(match (out.status.code(), why.is_empty()) {
            (Some(code), true) => format!("failed (exit code {code})"),
            (Some(code), false) => format!("failed (exit code {code}): {why}"),
            (None, _) => "was killed by a signal".to_string(),
        });
    }
    let stdout = String::from_utf8(out.stdout).map_err(|_| "printed something that is not UTF-8".to_string())?;
    match stdout.lines().next().map(|l| l.trim_end_matches('\r')) {
        Some(line) if !line.is_empty() => Ok(line.to_string()),
        _ => Err("printed nothing (its first line is the password)".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r##"
current = "local"

[contexts.local]
url = "http://127.0.0.1:15672"

[contexts.prod]
url = "https://warren.prod.example:15671"
user = "ops"
password_command = "printf 's3cret\nsecond line\n'"
ca = "~/pki/prod-ca.pem"
color = "red"
read_only = true

[contexts.staging]
url = "https://warren.staging.example:15671"
password = "hunter2"
colour = "#ffaa00"
insecure = true
"##;

    fn parse(text: &str) -> Result<ConsoleConfig, ConfigError> {
        ConsoleConfig::parse(Path::new("console.toml"), text)
    }

    fn message(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("parsed: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_good_file_parses() {
        let c = parse(GOOD).expect("parses");
        assert_eq!(c.current.as_deref(), Some("local"));
        assert_eq!(c.contexts.keys().collect::<Vec<_>>(), ["local", "prod", "staging"]);
        let prod = &c.contexts["prod"];
        assert_eq!(prod.color, Some(HeaderColor(Color::Red)));
        assert!(prod.read_only);
        assert_eq!(prod.user.as_deref(), Some("ops"));
        assert_eq!(
            c.contexts["staging"].color,
            Some(HeaderColor(Color::Rgb(0xff, 0xaa, 0x00)))
        );
        let infos = c.infos();
        assert_eq!(infos[1].name, "prod");
        assert_eq!(infos[1].url, "https://warren.prod.example:15671");
        assert!(infos[1].read_only);
        assert_eq!(infos[0].color, None);
    }

    #[test]
    fn an_empty_file_has_no_contexts() {
        let c = parse("").expect("parses");
        assert!(c.contexts.is_empty());
        assert_eq!(c.current, None);
    }

    #[test]
    fn bad_files_say_the_line_and_what_is_wrong() {
        assert_eq!(
            message("[contexts.a]\nurl = \"http://x\"\ncolor = \"blurple\"\n"),
            "console.toml line 3: unknown colour 'blurple' (use a name like red or lightblue, #rrggbb, or 0-255)"
        );
        assert_eq!(
            message("[contexts.a]\nurl = \"ftp://x\"\n"),
            "console.toml line 2: url 'ftp://x' must start with http:// or https://"
        );
        let typo = message("[contexts.a]\nurl = \"http://x\"\npasword = \"x\"\n");
        assert!(
            typo.starts_with("console.toml line 3: unknown field `pasword`"),
            "{typo}"
        );
        assert!(!typo.contains('\n'));
        assert_eq!(
            message("\n\ncurrent = \"prod\"\n[contexts.a]\nurl = \"http://x\"\n"),
            "console.toml line 3: current = 'prod' names no context (there are: a)"
        );
        assert_eq!(
            message("[contexts.a]\nurl = \"http://x\"\npassword = \"p\"\npassword_command = \"echo p\"\n"),
            "console.toml line 1: context 'a' has both password and password_command: keep one"
        );
        assert_eq!(
            message("[contexts.a]\nuser = \"x\"\n"),
            "console.toml line 1: context 'a' has no url"
        );
        let syntax = message("[contexts.a\nurl = 1\n");
        assert!(syntax.starts_with("console.toml line 1: "), "{syntax}");
        assert!(message("[contexts.a]\nurl = \"http://x\"\nread_only = \"yes\"\n").starts_with("console.toml line 3: "));
    }

    #[test]
    fn a_missing_explicit_file_is_an_error_and_a_missing_default_is_not() {
        let e = ConsoleConfig::load(Some(Path::new("/nonexistent/console.toml"))).expect_err("missing");
        assert!(
            e.to_string().starts_with("cannot read /nonexistent/console.toml: "),
            "{e}"
        );
    }

    #[test]
    fn the_password_command_gives_its_first_line() {
        assert_eq!(run_password_command("printf 'pw1\\nother\\n'"), Ok("pw1".to_string()));
        assert_eq!(run_password_command("echo pw2"), Ok("pw2".to_string()));
        assert_eq!(
            run_password_command("echo 'no such entry' >&2; exit 3"),
            Err("failed (exit code 3): no such entry".to_string())
        );
        assert_eq!(
            run_password_command("true"),
            Err("printed nothing (its first line is the password)".to_string())
        );
    }

    #[test]
    fn flags_win_over_the_context_and_the_context_over_defaults() {
        let c = parse(GOOD).expect("parses");
        // No pick: the file's current.
        let t = resolve(Some(&c), None, &Overrides::default()).expect("resolves");
        assert_eq!(t.context.as_ref().map(|c| c.name.as_str()), Some("local"));
        assert_eq!((t.user.as_str(), t.password.as_str()), ("guest", "guest"));
        // A pick runs its password command and takes its settings.
        let t = resolve(Some(&c), Some("prod"), &Overrides::default()).expect("resolves");
        assert_eq!(t.url, "https://warren.prod.example:15671");
        assert_eq!((t.user.as_str(), t.password.as_str()), ("ops", "s3cret"));
        assert!(t.read_only);
        assert_eq!(t.tls.ca, Some(home().join("pki/prod-ca.pem")));
        let relative = ConsoleConfig::parse(
            Path::new("/etc/warren/console.toml"),
            "[contexts.a]\nurl = \"https://x\"\nca = \"ca.pem\"\n[contexts.b]\nurl = \"https://y\"\nca = \"/pki/ca.pem\"\n",
        )
        .expect("parses");
        let ca = |name| relative.target(name, false).map(|t| t.tls.ca);
        assert_eq!(
            ca("a"),
            Ok(Some(PathBuf::from("/etc/warren/ca.pem"))),
            "next to the file"
        );
        assert_eq!(ca("b"), Ok(Some(PathBuf::from("/pki/ca.pem"))));
        assert_eq!(t.context.as_ref().and_then(|c| c.color), Some(Color::Red));
        // Flags win.
        let flags = Overrides {
            url: Some("http://127.0.0.1:1".into()),
            password: Some("flag".into()),
            ..Overrides::default()
        };
        let t = resolve(Some(&c), Some("prod"), &flags).expect("resolves");
        assert_eq!((t.url.as_str(), t.password.as_str()), ("http://127.0.0.1:1", "flag"));
        assert_eq!(t.context.as_ref().map(|c| c.url.as_str()), Some("http://127.0.0.1:1"));
        let t = resolve(Some(&c), Some("staging"), &Overrides::default()).expect("resolves");
        assert_eq!(t.password, "hunter2");
        assert!(t.tls.insecure);
        // No file: the flags and the defaults, as before contexts.
        let t = resolve(None, None, &Overrides::default()).expect("resolves");
        assert_eq!((t.url.as_str(), t.context.is_none()), (DEFAULT_URL, true));
        assert!(format!("{t:?}").contains("guest") && !format!("{t:?}").contains("password"));
    }

    #[test]
    fn unknown_contexts_and_failing_commands_are_one_line() {
        let c = parse(GOOD).expect("parses");
        assert_eq!(
            resolve(Some(&c), Some("qa"), &Overrides::default()).map(|_| ()),
            Err(ConfigError::UnknownContext {
                name: "qa".into(),
                path: "console.toml".into(),
                known: "local, prod, staging".into()
            })
        );
        assert_eq!(
            resolve(None, Some("qa"), &Overrides::default())
                .map(|_| ())
                .map_err(|e| e.to_string().starts_with("--context qa: there is no config file")),
            Err(true)
        );
        let bad = parse("[contexts.x]\nurl = \"http://x\"\npassword_command = \"exit 7\"\n").expect("parses");
        assert_eq!(
            bad.target("x", false).map(|_| ()).map_err(|e| e.to_string()),
            Err("context 'x': the password command failed (exit code 7)".to_string())
        );
    }
}
