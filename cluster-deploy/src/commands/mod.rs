//! The commands (and [`preflight`], the checks before any write; [`vault`], the Key Vault side;
//! [`bootstrap`], the ACL bootstrap after apply). Each reads the cluster file, talks to ARM (or
//! not, for an offline plan) and prints text or, with `--json`, one JSON document on stdout
//! (`roll`: one JSON event per line as it goes). Progress and notes that are not the answer go
//! to the log (stderr). No secret value reaches either: only `env` writes them, to 0600 files.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::auth::Env;
use crate::cli::{Cli, Command};
use crate::config::{self, ClusterFile};
use crate::model::Cluster;
use crate::template;

mod apply;
mod bootstrap;
mod connect;
mod destroy;
mod env;
mod existing;
mod outputs;
mod plan;
mod preflight;
mod records;
mod roll;
mod rotate;
mod status;
mod vault;

use apply::apply;
use connect::connect_required;
use destroy::destroy;
use outputs::{outputs, print_outputs};
use plan::plan;
pub use roll::{Clock, Hooks, WallClock};
use status::status;

/// Runs a parsed command line, printing to `out`. `roll` waits on the wall clock and stops at
/// a safe point on SIGINT or SIGTERM.
pub fn run(cli: Cli, env: &Env, out: &mut dyn Write, input: &mut dyn BufRead) -> Result<()> {
    let hooks = match &cli.command {
        Command::Roll(_) => Hooks::for_process()
            .map_err(|e| anyhow::anyhow!("installing the SIGINT/SIGTERM handlers: {e}"))?,
        _ => Hooks::wall_clock(),
    };
    run_with_hooks(cli, env, out, input, hooks)
}

/// [`run`] with the clock, interruption flag and `NOMAD_*` variables `roll` uses given (tests
/// pass a simulated cluster's virtual clock).
pub fn run_with_hooks(
    cli: Cli,
    env: &Env,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
    hooks: Hooks,
) -> Result<()> {
    let loaded = Loaded::read(&cli.config)?;
    match &cli.command {
        Command::Plan { out: path, offline } => {
            plan(&cli, env, &loaded, path.as_deref(), *offline, out)
        }
        Command::Apply { yes, vault } => apply(&cli, env, &loaded, *yes, vault, out, input),
        Command::Outputs => {
            let arm = connect_required(&cli.azure, env)?;
            let outputs = outputs(&arm, &loaded.cluster)?.with_local_ca(env, &loaded.cluster);
            print_outputs(cli.json, &outputs, out)
        }
        Command::Status { nomad } => status(&cli, env, &loaded, nomad, out),
        Command::Roll(args) => roll::roll(&cli, env, &loaded, args, out, input, hooks),
        Command::Destroy { yes, purge_vault } => {
            destroy(&cli, env, &loaded, *yes, *purge_vault, out, input)
        }
        Command::Env {
            token,
            nomad_address,
        } => env::env(&cli, env, &loaded, *token, nomad_address.as_deref(), out),
        Command::Rotate {
            certificates,
            ca,
            gossip_key,
            all,
            skip_roll_check,
        } => rotate::rotate(
            &cli,
            env,
            &loaded,
            crate::secrets::reconcile::Rotation {
                certificates: *certificates || *all,
                gossip_key: *gossip_key || *all,
            },
            rotate::CaRequest {
                step: ca.map(Into::into),
                skip_roll_check: *skip_roll_check,
            },
            &*hooks.clock,
            out,
        ),
    }
}

/// The cluster file, its model and its template.
pub(super) struct Loaded {
    pub(super) path: PathBuf,
    pub(super) file: ClusterFile,
    pub(super) cluster: Cluster,
    pub(super) template: Value,
}

impl Loaded {
    fn read(path: &Path) -> Result<Self> {
        let file = config::load(path)?;
        let cluster = Cluster::from_file(&file);
        if let Err(problem) = crate::custom_data::check_fits(&cluster) {
            bail!("cluster file {}: {problem}", path.display());
        }
        let template = template::render(&cluster);
        Ok(Self {
            path: path.to_path_buf(),
            file,
            cluster,
            template,
        })
    }
}

pub(super) fn write_json(out: &mut dyn Write, value: &Value) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}
