use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = image_builder::cli::Cli::parse();
    support::cli::init_logging(cli.verbose, cli.quiet);
    support::cli::exit_code(image_builder::run(cli))
}
