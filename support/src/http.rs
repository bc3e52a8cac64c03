//! The blocking HTTP client every tool builds, and the small HTTP facts they all need:
//! `Retry-After`, which URLs count as loopback, and how much of an error body to show.

use std::io::Read;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, RETRY_AFTER};
pub use reqwest::Url;

/// Sent on every request so mirror and ARM logs can tell our tools apart.
pub const USER_AGENT: &str = concat!("nomad-azure-tools/", env!("CARGO_PKG_VERSION"));

/// How much of an error response body an error message keeps.
pub const ERROR_BODY_LIMIT: usize = 2048;

/// Settings for [`client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Longest wait for each step: the response headers, then each read of the body. reqwest's
    /// blocking client applies it per wait, not to the whole transfer, so a large download is
    /// not cut off while a stalled one is.
    pub timeout: Duration,
    /// Ignore `HTTP_PROXY`/`HTTPS_PROXY`. Required for Azure IMDS, which must never be reached
    /// through a proxy.
    pub no_proxy: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            no_proxy: false,
        }
    }
}

/// Builds the blocking client (rustls, our user agent, the given timeouts).
pub fn client(options: &ClientOptions) -> Result<Client, reqwest::Error> {
    let mut builder = Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(options.connect_timeout)
        .timeout(options.timeout);
    if options.no_proxy {
        builder = builder.no_proxy();
    }
    builder.build()
}

/// Parses `Retry-After` (delta-seconds or an HTTP-date). A date in the past means "now".
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// True when the URL's host is a loopback address or `localhost`: the only hosts for which a
/// tool accepts plain `http://` to a mirror or an API, and the only hosts tests may use.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The longest an error body's excerpt is waited for. An excerpt is worth a few seconds, never
/// a slow server's whim: a body trickling a byte a second would otherwise hold the caller for
/// [`ERROR_BODY_LIMIT`] seconds, past every deadline it has.
pub const ERROR_BODY_WAIT: Duration = Duration::from_secs(5);

/// Reads at most [`ERROR_BODY_LIMIT`] bytes of an error response's body, for at most
/// [`ERROR_BODY_WAIT`], and returns its excerpt. A server answering an error with a huge,
/// endless or trickling body must not make us read it all into memory or wait for it; the rest
/// is dropped with the connection.
pub fn error_body(response: reqwest::blocking::Response) -> String {
    error_body_until(response, Instant::now() + ERROR_BODY_WAIT)
}

/// [`error_body`], stopping at `deadline` if that comes before [`ERROR_BODY_WAIT`] does (the
/// caller's own deadline for the whole request).
pub fn error_body_until(response: reqwest::blocking::Response, deadline: Instant) -> String {
    let declared = response.content_length();
    let deadline = deadline.min(Instant::now() + ERROR_BODY_WAIT);
    error_excerpt(UntilDeadline::new(response, deadline), declared)
}

/// The excerpt of an error body read from `body` (see [`error_body`]); `declared` is its
/// `Content-Length`, if any.
pub fn error_excerpt(body: impl Read, declared: Option<u64>) -> String {
    let mut prefix = Vec::with_capacity(ERROR_BODY_LIMIT + 1);
    let read = body
        .take(ERROR_BODY_LIMIT as u64 + 1)
        .read_to_end(&mut prefix);
    let cut = prefix.len() > ERROR_BODY_LIMIT;
    prefix.truncate(ERROR_BODY_LIMIT);
    let mut text = String::from_utf8_lossy(&prefix).trim().to_string();
    if cut {
        match declared {
            Some(n) => text.push_str(&format!("... ({n} bytes in all)")),
            None => text.push_str("... (cut)"),
        }
    } else if let Err(e) = read {
        text.push_str(&format!(" (body unreadable: {e})"));
    }
    text
}

/// A body that ends with a `TimedOut` error once `deadline` has passed. The check is made
/// before each read, and each read waits at most the client's own (per-read) timeout, so the
/// whole body takes at most the deadline plus one read timeout.
pub struct UntilDeadline<R> {
    inner: R,
    deadline: Instant,
}

impl<R> UntilDeadline<R> {
    pub fn new(inner: R, deadline: Instant) -> Self {
        Self { inner, deadline }
    }
}

impl<R: Read> Read for UntilDeadline<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the body was still arriving when the time for it ran out",
            ));
        }
        self.inner.read(buf)
    }
}

/// Why [`read_body`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the body failed: {0}")]
    Read(#[from] std::io::Error),
}

/// A whole (successful) response body, refused past `limit` bytes or once `deadline` passes:
/// answers that are small by nature (a token, a secret, a resource) are never read without
/// bound.
pub fn read_body(
    response: reqwest::blocking::Response,
    limit: u64,
    deadline: Instant,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    read_limited(UntilDeadline::new(response, deadline), limit)
}

/// The most a small answer (a token, a secret, one resource) may hold: well past Key Vault's
/// 25 KiB secret limit and any single ARM resource, far short of hurting memory.
pub const SMALL_ANSWER_LIMIT: u64 = 1 << 20;
/// The longest a small answer's body may take to arrive, once its head has.
pub const SMALL_ANSWER_WAIT: Duration = Duration::from_secs(60);

/// [`read_body`] with [`SMALL_ANSWER_LIMIT`] and [`SMALL_ANSWER_WAIT`].
pub fn read_small_answer(response: reqwest::blocking::Response) -> Result<Vec<u8>, BodyError> {
    read_body(
        response,
        SMALL_ANSWER_LIMIT,
        Instant::now() + SMALL_ANSWER_WAIT,
    )
}

/// All of `body`, refused past `limit` bytes (at most `limit + 1` are ever read).
pub fn read_limited(body: impl Read, limit: u64) -> Result<Vec<u8>, BodyError> {
    let mut bytes = Vec::new();
    body.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(bytes)
}

/// The start of a response body for an error message, on one line per original line, cut at
/// [`ERROR_BODY_LIMIT`] bytes.
pub fn body_excerpt(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.len() <= ERROR_BODY_LIMIT {
        return trimmed.to_string();
    }
    let mut end = ERROR_BODY_LIMIT;
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &trimmed[..end], trimmed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(retry_after(&headers("7")), Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_date_in_the_past_is_now() {
        assert_eq!(
            retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_date_in_the_future() {
        let when = SystemTime::now() + Duration::from_secs(120);
        let got = retry_after(&headers(&httpdate::fmt_http_date(when))).unwrap();
        assert!(
            got > Duration::from_secs(100) && got <= Duration::from_secs(120),
            "{got:?}"
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn loopback_hosts() {
        for u in [
            "http://127.0.0.1:8080/x",
            "http://localhost/",
            "http://[::1]:9/",
            "http://127.1.2.3/",
        ] {
            assert!(is_loopback(&Url::parse(u).unwrap()), "{u}");
        }
        for u in [
            "http://169.254.169.254/",
            "https://releases.hashicorp.com/",
            "http://10.0.0.1/",
            "file:///tmp/x",
        ] {
            assert!(!is_loopback(&Url::parse(u).unwrap()), "{u}");
        }
    }

    #[test]
    fn error_body_reads_only_a_prefix_of_a_huge_body() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A server that declares 1 GB and keeps sending until the client goes away.
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let mut stream = stream;
            let _ = stream.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000000000\r\n\r\n",
            );
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0usize;
            while stream.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            sent
        });
        let response = client(&ClientOptions::default())
            .unwrap()
            .get(format!("http://{addr}/"))
            .send()
            .unwrap();
        let text = error_body(response);
        assert!(text.starts_with("xxxx"), "{text}");
        assert!(text.ends_with("... (1000000000 bytes in all)"), "{text}");
        let sent = server.join().unwrap();
        assert!(
            sent < 100_000_000,
            "the client read {sent} bytes of the error body"
        );
    }

    /// A server answering 503 with a declared 100 kB body it sends a byte every 50 ms (an hour
    /// and a half in all). The excerpt stops at the caller's deadline, not at the body's end.
    #[test]
    fn a_trickling_error_body_is_given_up_at_the_deadline() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let mut stream = stream;
            let _ = stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100000\r\n\r\n");
            let mut sent = 0usize;
            while sent < 100_000 && stream.write_all(b"z").and_then(|()| stream.flush()).is_ok() {
                sent += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            sent
        });
        let response = client(&ClientOptions::default())
            .unwrap()
            .get(format!("http://{addr}/"))
            .send()
            .unwrap();
        let text = error_body_until(response, Instant::now() + Duration::from_millis(600));
        assert!(text.starts_with('z'), "{text}");
        assert!(
            text.ends_with(
                "(body unreadable: the body was still arriving when the time for it ran out)"
            ),
            "{text}"
        );
        let sent = server.join().unwrap();
        assert!(sent < 100_000, "the whole trickle was read");
    }

    #[test]
    fn a_body_past_its_limit_is_refused() {
        let body = vec![b'a'; 100];
        let err = read_limited(&body[..], 99).unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 99 }), "{err}");
        assert_eq!(read_limited(&body[..], 100).unwrap(), body);
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = "é".repeat(ERROR_BODY_LIMIT);
        let excerpt = body_excerpt(&body);
        assert!(excerpt.len() < body.len());
        assert!(excerpt.ends_with(&format!("({} bytes in all)", body.len())));
    }
}
