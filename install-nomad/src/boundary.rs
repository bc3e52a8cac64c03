//! The edge between our code and rPGP (`pgp`), which parses bytes a mirror sends: whatever the
//! library does with garbage, the user sees one clean sentence, never a Rust panic message or a
//! backtrace.
//!
//! Two things leak from rPGP 0.21 otherwise:
//! - Its `InvalidPacketContent` error formats the inner error with `{:?}`, which prints the
//!   snafu `backtrace` field: a garbage signature packet showed a whole Rust backtrace when
//!   `RUST_BACKTRACE` was set, and `backtrace: None` noise when not. [`pgp_error_text`] formats
//!   that variant (and any nesting of it) with `Display` instead.
//! - A panic inside the parser (none is known, but it parses hostile input) would abort the run
//!   with the panic message. [`catch_panic`] turns it into an error and keeps the default panic
//!   hook quiet for panics it catches, on this thread only.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while [`catch_panic`] runs a closure on this thread.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once per process) a panic hook that stays silent for panics [`catch_panic`] is
/// about to catch and defers to the previous hook for every other panic.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into `Err(<panic message>)`.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    let was = CATCHING.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string())
    })
}

/// An rPGP error as one line of text, without the debug dump (and backtrace) its
/// `InvalidPacketContent` variant carries.
pub fn pgp_error_text(error: &pgp::errors::Error) -> String {
    let text = match error {
        pgp::errors::Error::InvalidPacketContent { source } => {
            format!("invalid packet content: {}", pgp_error_text(source))
        }
        other => other.to_string(),
    };
    one_line_without_backtrace(&text)
}

/// Joins the lines of a message and cuts it where a debug-printed backtrace would start, for any
/// other variant that might format a field with `{:?}`.
fn one_line_without_backtrace(text: &str) -> String {
    let cut = ["backtrace:", "Backtrace ["]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min()
        .unwrap_or(text.len());
    let kept = text[..cut].trim_end_matches([' ', ',', '{', '(']);
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        let err = catch_panic(|| -> u8 { panic!("index out of bounds: {}", 3) }).unwrap_err();
        assert_eq!(err, "index out of bounds: 3");
        let err = catch_panic(|| -> u8 { std::panic::panic_any(5u32) }).unwrap_err();
        assert_eq!(err, "unknown panic");
        // The flag is reset, so later panics reach the normal hook again.
        assert!(!CATCHING.with(Cell::get));
    }

    #[test]
    fn debug_dumps_are_cut() {
        assert_eq!(
            one_line_without_backtrace(
                "Invalid Packet Content Message { message: \"x\", backtrace: Some(Backtrace [{ fn: \"a\" }]) }"
            ),
            "Invalid Packet Content Message { message: \"x\""
        );
        assert_eq!(one_line_without_backtrace("plain\nerror"), "plain error");
    }

    #[test]
    fn nested_invalid_content_is_displayed_not_debugged() {
        let inner = pgp::errors::Error::from("Illegal salt length 0 found for Sha256".to_string());
        let outer = pgp::errors::Error::InvalidPacketContent {
            source: Box::new(inner),
        };
        assert_eq!(
            pgp_error_text(&outer),
            "invalid packet content: Illegal salt length 0 found for Sha256"
        );
    }
}
