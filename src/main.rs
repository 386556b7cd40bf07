//! The `lorabert` command-line program.

/// mimalloc keeps freed tensor buffers for reuse instead of returning them to the kernel and
/// faulting fresh pages in at every step (page faults and zeroing took about 8 % of a CPU
/// training step with the system allocator).
#[cfg(not(target_family = "wasm"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(target_family = "wasm"))]
fn main() -> std::process::ExitCode {
    match lorabert::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// In the browser the same binary target is the page's entry point.
#[cfg(target_family = "wasm")]
fn main() {
    lorabert::web::start();
}
