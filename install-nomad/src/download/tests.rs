use super::*;

#[test]
fn retryable_statuses() {
    for code in [408, 429, 500, 502, 503, 504] {
        assert!(is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
    }
    for code in [400, 401, 403, 404, 410, 416] {
        assert!(!is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
    }
}

#[test]
fn content_range() {
    assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
    assert_eq!(parse_content_range_start("bytes */200"), None);
    assert_eq!(parse_content_range_start("items 1-2/3"), None);
}

fn urls(list: &[&str]) -> Vec<Url> {
    list.iter().map(|u| Url::parse(u).unwrap()).collect()
}

#[test]
fn every_redirect_hop_is_held_to_the_scheme_rule() {
    let allowed: &[(&[&str], &str)] = &[
        (
            &["https://releases.hashicorp.com/x"],
            "https://cdn.example/x",
        ),
        (&["http://127.0.0.1:1/x"], "http://localhost:2/x"),
        (&["http://127.0.0.1:1/x"], "https://cdn.example/x"),
        (&["http://[::1]:1/x"], "http://127.0.0.2:3/x"),
    ];
    for (previous, next) in allowed {
        let refusal = redirect_refusal(&urls(previous), &Url::parse(next).unwrap());
        assert_eq!(refusal, None, "{previous:?} -> {next}");
    }
    let refused: &[(&[&str], &str, &str)] = &[
        (
            &["http://127.0.0.1:1/x"],
            "http://10.0.0.5/x",
            "plain http is only allowed to a loopback host",
        ),
        (
            &["http://127.0.0.1:1/x"],
            "http://0.0.0.0:1/x",
            "plain http is only allowed to a loopback host",
        ),
        (
            &["https://releases.hashicorp.com/x"],
            "http://cdn.example/x",
            "downgrades https to plain http",
        ),
        // Loopback does not excuse a downgrade once the chain was on https.
        (
            &["http://127.0.0.1:1/x", "https://cdn.example/x"],
            "http://127.0.0.1:1/y",
            "downgrades https to plain http",
        ),
        (
            &["https://releases.hashicorp.com/x"],
            "ftp://mirror.example/x",
            "scheme ftp is not allowed",
        ),
    ];
    for (previous, next, why) in refused {
        let refusal = redirect_refusal(&urls(previous), &Url::parse(next).unwrap())
            .unwrap_or_else(|| panic!("{previous:?} -> {next} was allowed"));
        assert!(refusal.contains(why), "{refusal}");
        assert!(refusal.contains(next), "{refusal}");
        assert!(refusal.contains(previous.last().unwrap()), "{refusal}");
    }
    let eleven = vec!["https://a.example/x"; 10];
    assert!(
        redirect_refusal(&urls(&eleven), &Url::parse("https://a.example/y").unwrap())
            .unwrap()
            .contains("more than 10 redirects")
    );
}

/// A server answering every request with `head` and then an endless body, returning how
/// many body bytes it managed to send before the client went away.
fn endless_server(head: &'static str) -> (Url, std::thread::JoinHandle<usize>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!("http://{}/sums", listener.local_addr().unwrap())).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let mut stream = stream;
        let _ = stream.write_all(head.as_bytes());
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0usize;
        while stream.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    });
    (url, server)
}

#[test]
fn only_a_prefix_of_an_error_body_is_read() {
    for head in [
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 10000000000\r\n\r\n",
        "HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n",
    ] {
        let (url, server) = endless_server(head);
        let downloader = Downloader::new(&Options {
            attempts: 1,
            progress_bar: false,
            no_proxy: true,
            limits: Limits::default(),
        })
        .unwrap();
        let started = Instant::now();
        let err = downloader.fetch_bytes(&url, 1 << 20).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{head}");
        let text = err.to_string();
        assert!(text.starts_with(&format!("{url} answered HTTP ")), "{text}");
        assert!(text.contains("xxxx"), "{text}");
        assert!(text.len() < 3000, "{} bytes of error", text.len());
        drop(downloader);
        let sent = server.join().unwrap();
        assert!(
            sent < 64 << 20,
            "the client read {sent} bytes of an error body"
        );
    }
}

#[test]
fn local_files_are_fetched_and_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, b"abc").unwrap();
    let url = Url::from_file_path(&src).unwrap();
    let downloader = Downloader::new(&Options {
        attempts: 1,
        progress_bar: false,
        no_proxy: true,
        limits: Limits::default(),
    })
    .unwrap();
    let dest = dir.path().join("dest.partial");
    let fetched = downloader.fetch_to_file(&url, &dest).unwrap();
    assert_eq!(
        fetched.sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
    assert_eq!(downloader.fetch_bytes(&url, 3).unwrap(), b"abc");
    assert!(matches!(
        downloader.fetch_bytes(&url, 2),
        Err(FetchError::TooLarge { .. })
    ));
    let missing = Url::from_file_path(dir.path().join("nope")).unwrap();
    let err = downloader.fetch_bytes(&missing, 10).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
}
