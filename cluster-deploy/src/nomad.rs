//! The Nomad HTTP API client behind `status`, `roll` and the ACL bootstrap: the workspace's
//! one client, [`support::nomad`] (shared with run-nomad's Scheduled Events watcher), with
//! snapshot saving (feature `nomad-snapshot`). Re-exported here so the commands and tests name
//! it `cluster_deploy::nomad`.

pub use support::nomad::*;
