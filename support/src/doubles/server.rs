//! The loopback HTTP/1.1 server every double runs on, so each double is only its API's logic.
//!
//! ```no_run
//! use support::doubles::server::{Reply, Server};
//!
//! let server = Server::start(|request| match request.path.as_str() {
//!     "/ok" => Reply::json(200, &serde_json::json!({ "ok": true })),
//!     "/cut" => Reply::text(200, "0123456789").cut_after(5), // Content-Length: 10, 5 bytes sent
//!     _ => Reply::no_answer(),                                // the connection just closes
//! });
//! let base = server.url(); // "http://127.0.0.1:PORT"
//! ```
//!
//! - It listens on 127.0.0.1 with an ephemeral port and stops when dropped.
//! - Each connection gets its own thread and carries one request: the answer says
//!   `Connection: close` and always a `Content-Length`.
//! - The handler sees a [`RecordedRequest`]: method, percent-decoded path, query pairs, headers
//!   with lower-cased names, body (read by `Content-Length`). It answers with a [`Reply`]: a whole
//!   response, one whose body is cut short while `Content-Length` announces all of it (a
//!   connection dropped mid-body), or no response at all.
//! - A `HEAD` request gets the head of the reply (the `Content-Length` of its body), no body.
//! - [`Server::start_tls`] serves the same over HTTPS with a rustls configuration (see
//!   [`super::tls`] for test certificates; a configuration that requires client certificates
//!   makes it a mutual-TLS server). A client that fails the handshake gets no answer.
//!
//! std only, on purpose: a ready-made server (tiny_http) would answer a dropped request with a
//! 500 of its own and keep connections alive, so it cannot drop a connection mid-body or
//! without an answer, which the mirror and ARM doubles need.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

/// A request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The path without the query, percent-decoded, e.g. `/metadata/instance`.
    pub path: String,
    /// Query pairs in the order given, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Header names lower-cased, values as sent (surrounding white space trimmed).
    pub headers: Vec<(String, String)>,
    /// The body (UTF-8, lossily), empty when there is none.
    pub body: String,
}

impl RecordedRequest {
    /// The value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of a query parameter (the first, if given twice).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server sends back for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delivery: Delivery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Head and whole body.
    Whole,
    /// Head (announcing the whole body), the first N bytes of the body, then the connection
    /// is closed.
    CutAfter(usize),
    /// The connection is closed without a byte of answer.
    NoAnswer,
    /// Head (announcing the whole body), then the body one byte at a time with this pause
    /// between bytes: a trickling server. It stops when the client goes away.
    Trickle(Duration),
    /// Head without `Content-Length`, then the body over and over until the client goes away:
    /// an endless body, delimited only by the connection's end.
    Endless,
}

impl Reply {
    /// A response with this status, no headers yet and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delivery: Delivery::Whole,
        }
    }

    /// `application/json; charset=utf-8` with `body` serialized; `Value::Null` sends no body
    /// (for 202 and 204 answers).
    pub fn json(status: u16, body: &Value) -> Self {
        let reply = Self::new(status).header("Content-Type", "application/json; charset=utf-8");
        if body.is_null() {
            reply
        } else {
            reply.body(body.to_string())
        }
    }

    /// `text/plain; charset=utf-8` with `body`.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// The connection is closed without an answer, as when a server or proxy drops it.
    pub fn no_answer() -> Self {
        Self {
            delivery: Delivery::NoAnswer,
            ..Self::new(0)
        }
    }

    /// Adds a header (sent in the order added, before `Content-Length` and `Connection`).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status sent (0 for [`Reply::no_answer`]).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// `Content-Length` still announces the whole body, but only its first `bytes` are sent
    /// before the connection is closed.
    pub fn cut_after(mut self, bytes: usize) -> Self {
        self.delivery = Delivery::CutAfter(bytes);
        self
    }

    /// `Content-Length` announces the whole body, which is then sent one byte at a time with
    /// `pause` between bytes, until it is all sent or the client goes away.
    pub fn trickle(mut self, pause: Duration) -> Self {
        self.delivery = Delivery::Trickle(pause);
        self
    }

    /// No `Content-Length`: the body is sent over and over until the client goes away (a
    /// HEAD request gets the head only).
    pub fn endless(mut self) -> Self {
        self.delivery = Delivery::Endless;
        self
    }
}

type Handler = dyn Fn(&RecordedRequest) -> Reply + Send + Sync;

/// A running server; dropping it stops the accept loop.
pub struct Server {
    addr: SocketAddr,
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("url", &self.url).finish()
    }
}

impl Server {
    /// Starts serving `handler` on 127.0.0.1 with an ephemeral port. Panics when it cannot bind
    /// (this is test set-up).
    pub fn start<H>(handler: H) -> Self
    where
        H: Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    {
        Self::start_with_url(|_| handler)
    }

    /// Like [`Server::start`], for a handler that needs the server's own URL (e.g. to write
    /// `Location` links): `make` gets `http://127.0.0.1:PORT` and returns the handler.
    pub fn start_with_url<F, H>(make: F) -> Self
    where
        F: FnOnce(&str) -> H,
        H: Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    {
        Self::start_inner(None, make)
    }

    /// Like [`Server::start_with_url`] over HTTPS: the URL is `https://127.0.0.1:PORT`.
    pub fn start_tls<F, H>(tls: Arc<rustls::ServerConfig>, make: F) -> Self
    where
        F: FnOnce(&str) -> H,
        H: Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    {
        Self::start_inner(Some(tls), make)
    }

    fn start_inner<F, H>(tls: Option<Arc<rustls::ServerConfig>>, make: F) -> Self
    where
        F: FnOnce(&str) -> H,
        H: Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("the listener's address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{addr}");
        let handler: Arc<Handler> = Arc::new(make(&url));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let handler = handler.clone();
                    let tls = tls.clone();
                    std::thread::spawn(move || {
                        let _ = match tls {
                            None => serve_one(stream, &*handler),
                            Some(config) => serve_one_tls(stream, config, &*handler),
                        };
                    });
                }
            })
        };
        Self {
            addr,
            url,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request from the connection, asks the handler, writes its reply.
fn serve_one(stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let Some(request) = read_request(stream.try_clone()?)? else {
        return Ok(());
    };
    let reply = handler(&request);
    write_reply(stream, &reply, request.method == "HEAD")
}

/// [`serve_one`] inside a TLS session: the handshake happens on the first read, so a client
/// without an acceptable certificate fails there and gets no HTTP answer.
fn serve_one_tls(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    handler: &Handler,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let Some(request) = read_request(&mut tls)? else {
        return Ok(());
    };
    let reply = handler(&request);
    if reply.delivery == Delivery::NoAnswer {
        let _ = tls.sock.shutdown(Shutdown::Both);
        return Ok(());
    }
    let head_only = request.method == "HEAD";
    tls.write_all(&reply_head(&reply))?;
    if let (Delivery::CutAfter(bytes), false) = (reply.delivery, head_only) {
        tls.write_all(&reply.body[..bytes.min(reply.body.len())])?;
        tls.flush()?;
        std::thread::sleep(Duration::from_millis(50));
        // No close_notify: the connection is cut, as a crashed server's would be.
        let _ = tls.sock.shutdown(Shutdown::Both);
        return Ok(());
    }
    if !head_only {
        tls.write_all(&reply.body)?;
    }
    tls.conn.send_close_notify();
    tls.flush()?;
    let _ = tls.sock.shutdown(Shutdown::Write);
    Ok(())
}

fn read_request(stream: impl Read) -> std::io::Result<Option<RecordedRequest>> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(RecordedRequest {
        method: method.to_string(),
        path: percent_decode(raw_path),
        query: url::form_urlencoded::parse(raw_query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

fn write_reply(mut stream: TcpStream, reply: &Reply, head_only: bool) -> std::io::Result<()> {
    if reply.delivery == Delivery::NoAnswer {
        let _ = stream.shutdown(Shutdown::Both);
        return Ok(());
    }
    if !head_only && matches!(reply.delivery, Delivery::Trickle(_) | Delivery::Endless) {
        return write_paced(stream, reply);
    }
    stream.write_all(&reply_head(reply))?;
    if let (Delivery::CutAfter(bytes), false) = (reply.delivery, head_only) {
        stream.write_all(&reply.body[..bytes.min(reply.body.len())])?;
        stream.flush()?;
        // Give the client time to read what was sent, then cut the connection.
        std::thread::sleep(Duration::from_millis(50));
        let _ = stream.shutdown(Shutdown::Both);
        return Ok(());
    }
    if !head_only {
        stream.write_all(&reply.body)?;
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// The status line and headers of a reply, `Content-Length` (none for an endless body) and
/// `Connection: close` last.
fn reply_head(reply: &Reply) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        reply.status,
        reason_phrase(reply.status)
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !matches!(reply.delivery, Delivery::Endless) {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

/// The two deliveries that keep a connection busy: a trickled body and an endless one. Either
/// ends when a write fails because the client went away.
fn write_paced(mut stream: TcpStream, reply: &Reply) -> std::io::Result<()> {
    stream.write_all(&reply_head(reply))?;
    match reply.delivery {
        Delivery::Trickle(pause) => {
            for byte in &reply.body {
                stream.write_all(std::slice::from_ref(byte))?;
                stream.flush()?;
                std::thread::sleep(pause);
            }
        }
        _ if reply.body.is_empty() => {}
        _ => loop {
            stream.write_all(&reply.body)?;
        },
    }
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// A path's `%XX` escapes decoded; `+` stays a plus (it means a space only in a query).
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The reason phrase of RFC 9110 for the statuses the doubles send (`Status` for others).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// The client the doubles' own unit tests use: no proxy, since they talk to 127.0.0.1.
#[cfg(test)]
pub(crate) fn test_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .expect("a reqwest client")
}

#[cfg(test)]
mod tests {
    use super::test_client as client;
    use super::*;
    use serde_json::json;

    #[test]
    fn the_handler_sees_the_decoded_request() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = {
            let seen = seen.clone();
            Server::start(move |request| {
                seen.lock().unwrap().push(request.clone());
                Reply::json(201, &json!({ "ok": true })).header("X-Answer", "yes")
            })
        };
        let response = client()
            .post(format!("{}/a%20b/1.10.6+ent?x=1&y=a%2Fb&x=2", server.url()))
            .header("X-Mixed-Case", " value ")
            .body("payload")
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        assert_eq!(response.headers()["x-answer"], "yes");
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        assert_eq!(response.text().unwrap(), r#"{"ok":true}"#);
        let request = seen.lock().unwrap()[0].clone();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/a b/1.10.6+ent");
        assert_eq!(request.query_param("x"), Some("1"));
        assert_eq!(request.query_param("y"), Some("a/b"));
        assert_eq!(request.query.len(), 3);
        assert_eq!(request.header("x-mixed-case"), Some("value"));
        assert_eq!(request.header("X-MIXED-CASE"), Some("value"));
        assert_eq!(request.body, "payload");
    }

    #[test]
    fn head_gets_the_length_without_the_body() {
        let server = Server::start(|_| Reply::text(200, "0123456789"));
        let response = client().head(server.url()).send().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-length"], "10");
        assert_eq!(response.bytes().unwrap().len(), 0);
    }

    #[test]
    fn null_json_sends_no_body() {
        let server = Server::start(|_| Reply::json(204, &Value::Null));
        let response = client().get(server.url()).send().unwrap();
        assert_eq!(response.status().as_u16(), 204);
        assert!(response.bytes().unwrap().is_empty());
    }

    #[test]
    fn a_cut_body_and_no_answer_are_errors_for_the_client() {
        let server = Server::start(|request| match request.path.as_str() {
            "/cut" => Reply::text(200, "0123456789").cut_after(5),
            _ => Reply::no_answer(),
        });
        let cut = client()
            .get(format!("{}/cut", server.url()))
            .send()
            .unwrap();
        assert_eq!(cut.headers()["content-length"], "10");
        assert!(cut.bytes().is_err());
        assert!(client()
            .get(format!("{}/nothing", server.url()))
            .send()
            .is_err());
    }

    #[test]
    fn trickled_and_endless_bodies() {
        let server = Server::start(|request| match request.path.as_str() {
            "/trickle" => Reply::text(200, "abc").trickle(Duration::from_millis(20)),
            _ => Reply::text(500, "x").endless(),
        });
        let started = std::time::Instant::now();
        let trickled = client()
            .get(format!("{}/trickle", server.url()))
            .send()
            .unwrap();
        assert_eq!(trickled.headers()["content-length"], "3");
        assert_eq!(trickled.text().unwrap(), "abc");
        assert!(started.elapsed() >= Duration::from_millis(40));
        let endless = client()
            .get(format!("{}/endless", server.url()))
            .send()
            .unwrap();
        assert_eq!(endless.status().as_u16(), 500);
        assert!(endless.headers().get("content-length").is_none());
        let mut prefix = Vec::new();
        endless.take(100_000).read_to_end(&mut prefix).unwrap();
        assert_eq!(prefix.len(), 100_000);
        assert!(prefix.iter().all(|b| *b == b'x'));
    }

    #[test]
    fn dropping_the_server_stops_it() {
        let server = Server::start(|_| Reply::new(200));
        let addr = server.addr();
        drop(server);
        assert!(TcpStream::connect(addr).is_err());
    }
}
