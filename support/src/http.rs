//! The blocking HTTP client every tool builds, and the small HTTP facts they all need:
//! `Retry-After`, which URLs count as loopback, and how much of an error body to show.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

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

/// Reads at most [`ERROR_BODY_LIMIT`] bytes of an error response's body and returns its
/// excerpt. A server answering an error with a huge (or endless) body must not make us read it
/// all into memory; the rest is dropped with the connection.
pub fn error_body(response: reqwest::blocking::Response) -> String {
    use std::io::Read;
    let declared = response.content_length();
    let mut prefix = Vec::with_capacity(ERROR_BODY_LIMIT + 1);
    let read = response
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

    #[test]
    fn long_bodies_are_cut() {
        let body = "é".repeat(ERROR_BODY_LIMIT);
        let excerpt = body_excerpt(&body);
        assert!(excerpt.len() < body.len());
        assert!(excerpt.ends_with(&format!("({} bytes in all)", body.len())));
    }
}
