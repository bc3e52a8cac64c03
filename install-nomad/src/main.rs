use std::process::ExitCode;

use support::cli::Parsed;

fn main() -> ExitCode {
    let cli = match support::cli::parse::<install_nomad::cli::Cli>() {
        Parsed::Run(cli) => cli,
        Parsed::Done(code) => return code,
    };
    support::cli::init_logging(cli.verbose, cli.quiet);
    support::cli::exit_code(install_nomad::run(cli))
}
