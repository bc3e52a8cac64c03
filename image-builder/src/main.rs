use std::process::ExitCode;

use support::cli::Parsed;

fn main() -> ExitCode {
    let cli = match support::cli::parse::<image_builder::cli::Cli>() {
        Parsed::Run(cli) => cli,
        Parsed::Done(code) => return code,
    };
    support::cli::init_logging(cli.verbose, cli.quiet);
    support::cli::exit_code(image_builder::run(cli))
}
