//! The `retain` binary: parse, run, map the result to a documented exit code.

use clap::Parser;

/// jemalloc rather than glibc's allocator: measured on a 100k-user night (BENCHMARKS.md),
/// the same outputs with half the peak memory (glibc kept freed memory resident and
/// fragmented) for 3% more CPU; mimalloc saved less memory for more CPU.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        // LightGBM's OpenMP threads spin while waiting by default; measured here, that
        // quadrupled CPU time on a 2-core machine. Set before any thread exists.
        // SAFETY: nothing else runs yet, so no thread can read the environment concurrently.
        unsafe { std::env::set_var("OMP_WAIT_POLICY", "passive") };
    }
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
