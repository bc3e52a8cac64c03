use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = install_nomad::cli::Cli::parse();
    support::cli::init_logging(cli.verbose, cli.quiet);
    support::cli::exit_code(install_nomad::run(cli))
}
