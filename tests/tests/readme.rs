//! The README's Rust snippet is `tests/examples/hello_lapin.rs`, verbatim; this runs it against a test broker.

#[allow(dead_code)] // its `main` is for `cargo run --example`
#[path = "../examples/hello_lapin.rs"]
mod hello_lapin;

#[tokio::test]
async fn readme_lapin_snippet_works() {
    let broker = warren_tests::TestBroker::start();
    let got = hello_lapin::hello(&broker.url()).await.expect("snippet runs");
    assert_eq!(got, "hello, warren");
}

#[test]
fn readme_shows_the_snippet_verbatim() {
    let readme = include_str!("../../README.md");
    let snippet = include_str!("../examples/hello_lapin.rs");
    let body: String = snippet.lines().skip(1).collect::<Vec<_>>().join("\n"); // minus the //! line
    assert!(
        readme.contains(body.trim()),
        "README.md must contain tests/examples/hello_lapin.rs (after its first line)"
    );
}
