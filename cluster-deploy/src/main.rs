use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cluster_deploy::cli::Cli::parse();
    support::cli::init_logging(cli.verbose, cli.quiet);
    support::cli::exit_code(cluster_deploy::run(cli))
}
