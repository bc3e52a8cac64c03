use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = run_nomad::cli::Cli::parse();
    support::cli::init_logging(cli.verbose, cli.quiet);
    support::cli::exit_code(run_nomad::run(cli))
}
