//! A minimal HTTP/1.1 client for the admin API tests (one request per connection, basic auth, JSON).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Sends one request and returns the status and the body parsed as JSON (or as a JSON string if it is not JSON).
pub fn request(addr: SocketAddr, method: &str, path: &str, auth: &str, body: &str) -> (u16, serde_json::Value) {
    try_request(addr, method, path, auth, body).expect("connect to the admin API")
}

/// [`request`], or `None` when the connection is refused or cut (a server restarting or handing over its port).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    body: &str,
) -> Option<(u16, serde_json::Value)> {
    let token = base64_encode(auth.as_bytes());
    let mut s = TcpStream::connect(addr).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    let json = serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload));
    Some((status, json))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn base64_encode(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A plain-text answer: status, `Content-Type`, body.
pub struct TextResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// Sends one `GET` (basic auth when `auth` is given, an `Accept` header when `accept` is) and returns the answer
/// as text: what the Prometheus tests read.
pub fn get_text(addr: SocketAddr, path: &str, auth: Option<&str>, accept: Option<&str>) -> TextResponse {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(auth) = auth {
        req.push_str(&format!("Authorization: Basic {}\r\n", base64_encode(auth.as_bytes())));
    }
    if let Some(accept) = accept {
        req.push_str(&format!("Accept: {accept}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let text = String::from_utf8_lossy(&resp);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let body = if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    TextResponse {
        status,
        content_type: header("content-type"),
        body,
    }
}
