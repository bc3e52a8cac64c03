use std::process::ExitCode;

use support::cli::Parsed;

fn main() -> ExitCode {
    let cli = match support::cli::parse::<cluster_deploy::cli::Cli>() {
        Parsed::Run(cli) => cli,
        Parsed::Done(code) => return code,
    };
    support::cli::init_logging(cli.verbose, cli.quiet);
    support::cli::exit_code(cluster_deploy::run(cli))
}
