//! The `hookflow` binary: parse the command line, run the command, print the error chain once.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: +35% webhooks per second in the ingest bench, for about
/// 2 MiB more resident memory at idle (docs/decisions/011-allocator.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = hookflow::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(hookflow::cli::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
