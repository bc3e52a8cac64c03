//! Fetching release files over HTTP(S) or from a `file://` mirror.
//!
//! - Retries connection errors, 408, 429 and 5xx under an explicit [`Policy`] (exponential
//!   backoff with jitter, `Retry-After` honoured up to `support::retry::MAX_RETRY_AFTER`), as
//!   hc-install does (it retries up to 4 times with 1-30 s waits).
//! - A download into a file resumes with `Range: bytes=N-` after a dropped connection; a server
//!   that answers 200 instead of 206 (no range support) restarts it cleanly from byte 0.
//! - The SHA-256 is computed in the same pass that writes the file, so the archive is read once.
//! - Progress: an indicatif bar when stderr is a terminal, otherwise a log line every few
//!   seconds.
//! - Redirects are followed (GitHub's CNI downloads redirect), and every hop must pass the rule
//!   the first URL passed: https, or plain http only to a loopback host; and once on https,
//!   never plain http again ([`redirect_refusal`]).
//! - Time: an overall deadline per file and stall detection ([`crate::limits`]); a stalled
//!   attempt is retried (and resumed) like a dropped connection, the deadline ends the file.
//! - An error answer's body is read only up to a small prefix (`support::http::error_body`): a
//!   mirror answering 500 with an endless body cannot fill memory or hang the run.
//! - Every error names the URL.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use support::files::human_size;
use support::http::BodyError;
use support::retry::{Attempt, AttemptInfo, Policy, RetryError};
use url::Url;

use crate::limits::{cut_of, Cut, Limits, Watched};

/// How much of the body is gathered before it is hashed and written: large enough to keep
/// syscalls, hand-overs and hashing calls few, small enough to keep memory flat.
const BUFFER: usize = 1 << 20;

/// How often a plain log line reports progress when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// A failed fetch; every variant names the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url} does not exist (HTTP 404)")]
    NotFound { url: String },
    #[error("{url} answered HTTP {status}{body}")]
    Status {
        url: String,
        status: u16,
        /// `": <excerpt>"` or empty.
        body: String,
    },
    #[error("could not download {url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url} is larger than the {limit} bytes allowed for it")]
    TooLarge { url: String, limit: u64 },
    #[error("could not read {url}: {source}")]
    Local {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("could not write {path} while downloading {url}: {source}")]
    Write {
        url: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("gave up on {url} after {attempts} attempts in {secs:.1}s: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        secs: f64,
        last: Box<FetchError>,
    },
    /// A stall or the deadline ended the transfer.
    #[error("downloading {url} was cut off: {cut}")]
    Cut { url: String, cut: Cut },
    #[error("gave up on {url} after {attempts} attempt(s): no time is left of the {secs:.0}s --download-timeout; the last attempt failed with: {last}")]
    OutOfTime {
        url: String,
        attempts: u32,
        secs: f64,
        last: Box<FetchError>,
    },
}

impl FetchError {
    /// True when the file does not exist on the mirror (HTTP 404/410, or a missing local file).
    pub fn is_not_found(&self) -> bool {
        match self {
            FetchError::NotFound { .. } => true,
            FetchError::GaveUp { last, .. } | FetchError::OutOfTime { last, .. } => {
                last.is_not_found()
            }
            _ => false,
        }
    }

    /// The local I/O error behind a failed write into the destination file, if that is what
    /// failed (a full disk, most often).
    pub fn write_error(&self) -> Option<(&Path, &io::Error)> {
        match self {
            FetchError::Write { path, source, .. } => Some((path, source)),
            _ => None,
        }
    }
}

/// A file written by [`Downloader::fetch_to_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub sha256: String,
    pub size: u64,
}

/// Download settings from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Attempts per file, the first included.
    pub attempts: u32,
    /// Draw a progress bar (stderr is a terminal and the user did not ask for quiet).
    pub progress_bar: bool,
    /// Ignore `HTTP(S)_PROXY`: set when every mirror is on this machine, which a proxy could
    /// only get wrong.
    pub no_proxy: bool,
    /// `--download-timeout`, `--stall-timeout`, `--stall-min-speed`.
    pub limits: Limits,
}

/// Fetches files with retries, resumption and progress reporting.
#[derive(Debug, Clone)]
pub struct Downloader {
    client: Client,
    policy: Policy,
    progress_bar: bool,
    limits: Limits,
}

impl Downloader {
    pub fn new(options: &Options) -> anyhow::Result<Downloader> {
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            match redirect_refusal(attempt.previous(), attempt.url()) {
                Some(reason) => attempt.error(reason),
                None => attempt.follow(),
            }
        });
        let mut builder = Client::builder();
        if options.no_proxy {
            builder = builder.no_proxy();
        }
        let client = builder
            .user_agent(support::http::USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            // reqwest's blocking client applies this per wait (the head, then each body read):
            // one stall window without a byte ends the wait. Slow trickles are the
            // [`Watched`] body's job.
            .timeout(options.limits.stall_window)
            .redirect(redirects)
            .build()?;
        Ok(Downloader {
            client,
            policy: Policy {
                what: "download",
                max_attempts: options.attempts.max(1),
                initial_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(30),
                deadline: Some(options.limits.timeout),
            },
            progress_bar: options.progress_bar,
            limits: options.limits,
        })
    }

    /// A small file (index, sums, signature) into memory, refusing more than `limit` bytes.
    pub fn fetch_bytes(&self, url: &Url, limit: u64) -> Result<Vec<u8>, FetchError> {
        tracing::debug!("fetching {url}");
        if url.scheme() == "file" {
            let path = local_path(url)?;
            let file = File::open(&path).map_err(|e| local_error(url, e))?;
            return support::http::read_limited(file, limit).map_err(|e| match e {
                BodyError::TooLarge { limit } => FetchError::TooLarge {
                    url: url.to_string(),
                    limit,
                },
                BodyError::Read(e) => local_error(url, e),
            });
        }
        let deadline = Instant::now() + self.limits.timeout;
        self.with_retries(url, |info| {
            let response = self.get(url, None, info)?;
            if response.content_length().is_some_and(|len| len > limit) {
                return Err(Attempt::Fail(FetchError::TooLarge {
                    url: url.to_string(),
                    limit,
                }));
            }
            support::http::read_limited(Watched::new(response, &self.limits, deadline), limit)
                .map_err(|e| match e {
                    BodyError::TooLarge { limit } => Attempt::Fail(FetchError::TooLarge {
                        url: url.to_string(),
                        limit,
                    }),
                    BodyError::Read(e) => read_failure(url, &e),
                })
        })
    }

    /// A file of any size into `dest` (created or truncated), hashing it on the way.
    pub fn fetch_to_file(&self, url: &Url, dest: &Path) -> Result<Fetched, FetchError> {
        let write_error = |source| FetchError::Write {
            url: url.to_string(),
            path: dest.to_path_buf(),
            source,
        };
        let mut file = File::create(dest).map_err(write_error)?;
        let mut sink = Sink {
            file: &mut file,
            hasher: Sha256::new(),
            written: 0,
            url,
            dest,
        };
        let started = Instant::now();
        if url.scheme() == "file" {
            let path = local_path(url)?;
            let mut source = File::open(&path).map_err(|e| local_error(url, e))?;
            let total = source.metadata().map(|m| m.len()).ok();
            let mut progress = Progress::start(url, total, self.progress_bar);
            copy_body(&mut source, &mut sink, &mut progress)
                .map_err(|e| e.into_fetch_error(url))?;
            progress.finish(sink.written, started);
        } else {
            let mut progress: Option<Progress> = None;
            let deadline = started + self.limits.timeout;
            self.with_retries(url, |info| {
                let resume_from = sink.written;
                let response = self.get(url, (resume_from > 0).then_some(resume_from), info)?;
                let resumed = response.status() == StatusCode::PARTIAL_CONTENT
                    && content_range_start(&response) == Some(resume_from);
                if resume_from > 0 && !resumed {
                    tracing::warn!(
                        "{url}: the server did not resume at byte {resume_from} (HTTP {}); starting over",
                        response.status().as_u16()
                    );
                    sink.restart().map_err(|e| Attempt::Fail(write_error(e)))?;
                } else if resumed {
                    tracing::info!("{url}: resuming at byte {resume_from} (attempt {})", info.number);
                }
                let total = response.content_length().map(|len| len + sink.written);
                let progress = progress.get_or_insert_with(|| Progress::start(url, total, self.progress_bar));
                let mut body = Watched::new(response, &self.limits, deadline);
                match copy_body(&mut body, &mut sink, progress) {
                    Ok(()) => {}
                    Err(CopyError::Read(e)) => return Err(read_failure(url, &e)),
                    Err(CopyError::Write(e)) => return Err(Attempt::Fail(write_error(e))),
                }
                if let Some(total) = total {
                    if sink.written != total {
                        return Err(Attempt::retry(FetchError::Transport {
                            url: url.to_string(),
                            message: format!(
                                "the body ended after {} of {total} bytes",
                                sink.written
                            ),
                        }));
                    }
                }
                Ok(())
            })?;
            if let Some(progress) = progress {
                progress.finish(sink.written, started);
            }
        }
        let written = sink.written;
        let sha256 = support::hash::hex(&sink.hasher.finalize());
        file.flush().map_err(write_error)?;
        Ok(Fetched {
            sha256,
            size: written,
        })
    }

    /// Sends a GET (with a Range header when resuming) and sorts the answer: a body to read,
    /// a failure to retry, or a permanent failure.
    ///
    /// Each wait (the head, then each read of the body) lasts at most one stall window: the
    /// client's timeout. A per-request timeout would not do: reqwest applies that one to the
    /// whole transfer, body included, so it would cut off every large download. The file's
    /// deadline can therefore be overrun by at most one stall window.
    fn get(
        &self,
        url: &Url,
        range_from: Option<u64>,
        info: AttemptInfo,
    ) -> Result<Response, Attempt<FetchError>> {
        if info.remaining.is_some_and(|left| left.is_zero()) {
            return Err(Attempt::Fail(FetchError::Cut {
                url: url.to_string(),
                cut: Cut::Deadline {
                    timeout: self.limits.timeout,
                },
            }));
        }
        let mut request = self.client.get(url.clone());
        if let Some(from) = range_from {
            request = request.header(RANGE, format!("bytes={from}-"));
        }
        let response = request.send().map_err(|e| {
            let error = transport(url, &e);
            if e.is_builder() || e.is_redirect() {
                Attempt::Fail(error)
            } else {
                Attempt::retry(error)
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(Attempt::Fail(FetchError::NotFound {
                url: url.to_string(),
            }));
        }
        let after = support::http::retry_after(response.headers());
        // A bounded prefix, on one line: it goes into a log line or an error.
        // Waited for no longer than the file's deadline allows (and a few seconds at most).
        let excerpt_deadline = Instant::now() + info.remaining.unwrap_or(self.limits.timeout);
        let body = support::http::error_body_until(response, excerpt_deadline)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let error = FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            body: if body.is_empty() {
                String::new()
            } else {
                format!(": {body}")
            },
        };
        if is_retryable(status) {
            Err(Attempt::Retry { error, after })
        } else {
            Err(Attempt::Fail(error))
        }
    }

    fn with_retries<T>(
        &self,
        url: &Url,
        op: impl FnMut(AttemptInfo) -> Result<T, Attempt<FetchError>>,
    ) -> Result<T, FetchError> {
        let max_attempts = self.policy.max_attempts;
        self.policy.run(op).map_err(|e| match e {
            RetryError::Fatal(e) => e,
            // Attempts were left, so the deadline is what ran out.
            RetryError::Exhausted { attempts, last, .. } if attempts < max_attempts => {
                FetchError::OutOfTime {
                    url: url.to_string(),
                    attempts,
                    secs: self.limits.timeout.as_secs_f64(),
                    last: Box::new(last),
                }
            }
            RetryError::Exhausted {
                attempts: 1, last, ..
            } => last,
            RetryError::Exhausted {
                attempts,
                elapsed,
                last,
            } => FetchError::GaveUp {
                url: url.to_string(),
                attempts,
                secs: elapsed.as_secs_f64(),
                last: Box::new(last),
            },
        })
    }
}

/// Why a redirect from the chain `previous` (the requested URL first) to `next` is refused, if
/// it is. Every hop is held to the rule the first URL was: https, or plain http only to a
/// loopback host (so a loopback mirror cannot send us to plain http elsewhere); once the chain
/// has been on https, plain http is refused even to loopback (a downgrade); and at most 10 hops.
pub fn redirect_refusal(previous: &[Url], next: &Url) -> Option<String> {
    let from = previous
        .last()
        .map(Url::as_str)
        .unwrap_or("the requested URL");
    if previous.len() >= 10 {
        return Some(format!(
            "refusing more than 10 redirects (the last to {next})"
        ));
    }
    match next.scheme() {
        "https" => None,
        "http" if previous.iter().any(|u| u.scheme() == "https") => Some(format!(
            "refusing the redirect from {from} to {next}: it downgrades https to plain http"
        )),
        "http" if support::http::is_loopback(next) => None,
        "http" => Some(format!(
            "refusing the redirect from {from} to {next}: plain http is only allowed to a loopback host"
        )),
        other => Some(format!(
            "refusing the redirect from {from} to {next}: scheme {other} is not allowed"
        )),
    }
}

/// A failed body read, sorted: a stall or a dropped connection is worth another attempt, the
/// file's deadline is not.
fn read_failure(url: &Url, error: &io::Error) -> Attempt<FetchError> {
    match cut_of(error) {
        Some(cut @ Cut::Deadline { .. }) => Attempt::Fail(FetchError::Cut {
            url: url.to_string(),
            cut: cut.clone(),
        }),
        Some(cut) => Attempt::retry(FetchError::Cut {
            url: url.to_string(),
            cut: cut.clone(),
        }),
        None => Attempt::retry(transport(url, error)),
    }
}

/// The statuses worth another attempt: request timeout, throttling, and server-side errors.
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// The first byte position of a `Content-Range: bytes N-M/T` header.
fn content_range_start(response: &Response) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    parse_content_range_start(value)
}

fn parse_content_range_start(value: &str) -> Option<u64> {
    let spec = value.trim().strip_prefix("bytes ")?;
    let (range, _total) = spec.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    start.trim().parse().ok()
}

fn local_path(url: &Url) -> Result<PathBuf, FetchError> {
    url.to_file_path().map_err(|()| FetchError::Local {
        url: url.to_string(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "not a local path"),
    })
}

fn local_error(url: &Url, e: io::Error) -> FetchError {
    if e.kind() == io::ErrorKind::NotFound {
        FetchError::NotFound {
            url: url.to_string(),
        }
    } else {
        FetchError::Local {
            url: url.to_string(),
            source: e,
        }
    }
}

/// A transport error with its whole cause chain on one line (reqwest's own message only says
/// "error sending request").
fn transport(url: &Url, error: &(dyn std::error::Error + 'static)) -> FetchError {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    FetchError::Transport {
        url: url.to_string(),
        message,
    }
}

/// Where downloaded bytes go: the file and the running hash, kept in step so a resumed
/// download continues both from the same byte.
struct Sink<'a> {
    file: &'a mut File,
    hasher: Sha256,
    written: u64,
    url: &'a Url,
    dest: &'a Path,
}

impl Sink<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Throws away what was written, for a server that cannot resume.
    fn restart(&mut self) -> io::Result<()> {
        tracing::debug!("{}: truncating {}", self.url, self.dest.display());
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl CopyError {
    fn into_fetch_error(self, url: &Url) -> FetchError {
        match self {
            CopyError::Read(e) => local_error(url, e),
            CopyError::Write(e) => FetchError::Local {
                url: url.to_string(),
                source: e,
            },
        }
    }
}

/// Blocks in flight between the reading thread and the one hashing and writing.
const BLOCKS: usize = 4;

/// Copies a body into the sink in large blocks, on two threads: this one reads from the
/// network (gathering each block from as many reads as it takes), a second hashes and writes,
/// so SHA-256 no longer waits for the socket nor the socket for SHA-256. Memory stays at
/// [`BLOCKS`] blocks whatever the file's size. Whatever arrived before a read error is still
/// written, so a resumed download does not fetch it again.
fn copy_body(
    body: &mut dyn Read,
    sink: &mut Sink<'_>,
    progress: &mut Progress,
) -> Result<(), CopyError> {
    let (full, full_blocks) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(BLOCKS);
    let (empty, empty_blocks) = std::sync::mpsc::sync_channel::<Vec<u8>>(BLOCKS);
    for _ in 0..BLOCKS {
        empty
            .send(vec![0u8; BUFFER])
            .expect("the receiver is alive");
    }
    let start = sink.written;
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> io::Result<()> {
            for (block, len) in full_blocks {
                sink.write(&block[..len])?;
                // The reader may have stopped; then the block is simply dropped.
                let _ = empty.send(block);
            }
            Ok(())
        });
        let mut read = 0u64;
        let read_result = loop {
            // No block back means the writer stopped on an error, reported below.
            let Ok(mut block) = empty_blocks.recv() else {
                break Ok(());
            };
            let mut filled = 0;
            let mut outcome = None;
            while filled < BUFFER {
                match body.read(&mut block[filled..]) {
                    Ok(0) => {
                        outcome = Some(Ok(()));
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        outcome = Some(Err(e));
                        break;
                    }
                }
            }
            read += filled as u64;
            progress.update(start + read);
            if full.send((block, filled)).is_err() {
                break Ok(());
            }
            if let Some(outcome) = outcome {
                break outcome;
            }
        };
        drop(full);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (written, read_result) {
            (Err(e), _) => Err(CopyError::Write(e)),
            (Ok(()), Err(e)) => Err(CopyError::Read(e)),
            (Ok(()), Ok(())) => Ok(()),
        }
    })
}

/// Progress of one download: a bar on a terminal, or a log line every [`LOG_EVERY`].
struct Progress {
    url: String,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    last_log: Instant,
}

impl Progress {
    fn start(url: &Url, total: Option<u64>, bar: bool) -> Progress {
        let name = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or("download")
            .to_string();
        let bar = bar.then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            let template = if total.is_some() {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            } else {
                "{msg} {spinner} {bytes} {bytes_per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(name);
            bar
        });
        match total {
            Some(total) => tracing::info!("downloading {url} ({})", human_size(total)),
            None => tracing::info!("downloading {url}"),
        }
        Progress {
            url: url.to_string(),
            total,
            bar,
            last_log: Instant::now(),
        }
    }

    fn update(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            match self.total {
                Some(total) if total > 0 => tracing::info!(
                    "{}: {}% ({} of {})",
                    self.url,
                    done * 100 / total,
                    human_size(done),
                    human_size(total)
                ),
                _ => tracing::info!("{}: {}", self.url, human_size(done)),
            }
        }
    }

    fn finish(self, done: u64, started: Instant) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        tracing::info!(
            "downloaded {} ({}) in {secs:.1}s ({}/s)",
            self.url,
            human_size(done),
            human_size(rate as u64)
        );
    }
}

#[cfg(test)]
mod tests;
