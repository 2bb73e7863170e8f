//! The `retain` binary: parse, run, map the result to a documented exit code.

use clap::Parser;

fn main() {
    let cli = retain::cli::Cli::parse();
    let code = match retain::app::execute(cli) {
        Ok(()) => retain::error::ExitCode::Ok,
        Err(err) => {
            tracing::error!(error = %err, "retain failed");
            eprintln!("error: {err}");
            if let Some(hint) = err.hint() {
                eprintln!("hint: {hint}");
            }
            err.exit_code()
        }
    };
    std::process::exit(code.code());
}
