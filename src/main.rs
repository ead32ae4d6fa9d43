//! The `hookflow` binary: parse the command line, run the command, print the error chain once.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: +35% webhooks per second in the ingest bench, for about
/// 1 MiB more resident memory at idle (docs/decisions/011-allocator.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(target_os = "linux")]
unsafe extern "C" {
    /// mimalloc's `mi_option_set`, in the library the `mimalloc` crate links.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_arena_eager_commit` in mimalloc.h (the same place in its v2 and v3 headers).
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

/// By default mimalloc commits its arenas eagerly on Linux, which kept 16 MiB more resident
/// at idle (21 MiB of heap where 5 are used). Committing on demand costs no measurable
/// throughput in the ingest bench.
#[cfg(target_os = "linux")]
extern "C" fn commit_memory_on_demand() {
    // SAFETY: setting an option is a plain store into mimalloc's option table, allowed at any
    // time; the option only steers how arenas made later commit memory.
    unsafe { mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

/// The option must be set before the first allocation makes the first arena, and Rust's
/// runtime allocates before `main`: so it is set by a constructor (an ELF `.init_array` entry),
/// which runs before both. Elsewhere mimalloc keeps its default.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_MEMORY_ON_DEMAND: extern "C" fn() = commit_memory_on_demand;

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
            eprintln!("error: {}", chain(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each once: a message that already ends with its cause's text (a
/// store error shows the database's) is not followed by that cause again.
fn chain(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
