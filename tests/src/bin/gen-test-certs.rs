//! `gen-test-certs DIR`: writes a throw-away test PKI for `scripts/test` and the README's TLS example: `ca.pem`
//! (the CA), `server.pem` / `server.key` (127.0.0.1, ::1, localhost) and `client-guest.pem` / `client-guest.key`
//! (CN guest, for EXTERNAL). Never use these for anything but tests: the CA key is not even kept.

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or("usage: gen-test-certs DIR (the directory gets ca.pem, server.pem/.key, client-guest.pem/.key)")?;
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let ca = warren_tests::certs::TestCa::new(&dir, "ca")?;
    ca.server("server")?;
    ca.client("guest", "client-guest")?;
    println!("{}", dir.display());
    Ok(())
}
