//! Contexts on the command line (issue 15, item 7) against a real broker: the XDG config file and `--config`, the
//! current context and `--context`, password commands, flags over the context, read-only contexts refusing writes,
//! and bad files as one line with exit 2.

mod common;

use common::{run_in, Setup};

/// Writes `text` as `$XDG_CONFIG_HOME/warren/console.toml`.
fn write_config(s: &Setup, text: &str) -> std::path::PathBuf {
    let dir = s.config_home.path().join("warren");
    std::fs::create_dir_all(&dir).expect("config dir");
    let path = dir.join("console.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

fn config(s: &Setup) -> String {
    let url = s.broker.admin_url();
    format!(
        r#"
current = "local"

[contexts.local]
url = "{url}"
user = "guest"
password_command = "echo guest"

[contexts.prod]
url = "{url}"
password = "guest"
color = "red"
read_only = true

[contexts.broken]
url = "{url}"
password_command = "echo 'no such entry' >&2; exit 4"

[contexts.stranger]
url = "{url}"
user = "nobody"
"#
    )
}

#[test]
fn the_current_context_is_used_without_flags() {
    let s = Setup::new();
    s.declare("orders", "{}");
    write_config(&s, &config(&s));
    let home = s.config_home.path();
    let json = run_in(home, &["queues", "--json"], None).ok_json();
    assert_eq!(json[0]["name"], "orders", "local's url and password command were used");
    let json = run_in(home, &["--context", "prod", "queues", "--json"], None).ok_json();
    assert_eq!(json[0]["name"], "orders");
}

#[test]
fn a_read_only_context_refuses_writes_with_2() {
    let s = Setup::new();
    s.declare("orders", "{}");
    s.publish("orders", "keep me", "");
    write_config(&s, &config(&s));
    let home = s.config_home.path();
    for args in [
        &["purge", "orders", "--yes"][..],
        &["publish", "orders", "--body", "x"],
        &["pause", "orders"],
        &["undo", "1", "--yes"],
    ] {
        let mut all = vec!["--context", "prod"];
        all.extend_from_slice(args);
        let run = run_in(home, &all, None);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(
            run.stderr.starts_with("error: context 'prod' is read-only: "),
            "{run:?}"
        );
    }
    assert_eq!(s.ready("orders"), 1);
    // Reads work; --read-only makes any context read-only.
    assert_eq!(run_in(home, &["--context", "prod", "undo"], None).code, 0);
    let run = run_in(home, &["purge", "orders", "--yes", "--read-only"], None);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (2, "error: --read-only is set: purge is refused\n")
    );
}

#[test]
fn flags_win_over_the_context() {
    let s = Setup::new();
    write_config(&s, &config(&s));
    let home = s.config_home.path();
    let refused = run_in(home, &["--context", "stranger", "queues"], None);
    assert_eq!(refused.code, 1, "the context's user is refused: {refused:?}");
    assert!(refused.stderr.contains("(401)"), "{refused:?}");
    let run = run_in(home, &["--context", "stranger", "queues", "--user", "guest"], None);
    assert_eq!(run.code, 0, "{run:?}");
    // A --url that goes nowhere wins over the context's good one.
    let run = run_in(home, &["queues", "--url", "http://127.0.0.1:9"], None);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("cannot connect"), "{run:?}");
}

#[test]
fn bad_contexts_and_files_are_one_line_and_exit_2() {
    let s = Setup::new();
    let path = write_config(&s, &config(&s));
    let home = s.config_home.path();
    let run = run_in(home, &["--context", "broken", "queues"], None);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            2,
            "error: context 'broken': the password command failed (exit code 4): no such entry\n"
        )
    );
    let run = run_in(home, &["--context", "qa", "queues"], None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.ends_with("(it has: broken, local, prod, stranger)\n"),
        "{run:?}"
    );

    std::fs::write(&path, "[contexts.a]\nurl = \"http://x\"\ncolor = \"blurple\"\n").expect("write");
    let run = run_in(home, &["queues"], None);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        format!(
            "error: {} line 3: unknown colour 'blurple' (use a name like red or lightblue, #rrggbb, or 0-255)\n",
            path.display()
        )
    );
    // The TUI reads the same file first, and fails the same way (before it needs a terminal).
    let run = run_in(home, &[], None);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("line 3: unknown colour 'blurple'"), "{run:?}");

    // --config names another file, which must exist.
    let other = s.config_home.path().join("other.toml");
    std::fs::write(&other, config(&s)).expect("write");
    let other = other.to_string_lossy().to_string();
    assert_eq!(run_in(home, &["--config", &other, "queues"], None).code, 0);
    let run = run_in(home, &["--config", "/nonexistent.toml", "queues"], None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with("error: cannot read /nonexistent.toml: "),
        "{run:?}"
    );
}

#[test]
fn without_a_config_file_context_is_an_error_and_flags_work_as_before() {
    let s = Setup::new();
    let run = s.run(&["queues", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = s.run(&["--context", "prod", "queues"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with("error: --context prod: there is no config file"),
        "{run:?}"
    );
}
