//! Loopback test doubles, each shaped after the published API it stands in for (see
//! `../shared/REFERENCE.md`), never after our own client code. Tests start them on 127.0.0.1 with
//! an ephemeral port and point the tool at them through its endpoint flag.
//!
//! - [`bins`]: paths to the workspace's own binaries, built on demand, for tests that run one
//!   tool from another crate's tests.

pub mod bins;
