//! The `lorabert` command-line program.

/// mimalloc keeps freed tensor buffers for reuse instead of returning them to the kernel and
/// faulting fresh pages in at every step (page faults and zeroing took about 8 % of a CPU
/// training step with the system allocator).
#[cfg(not(target_family = "wasm"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(target_family = "wasm"))]
unsafe extern "C" {
    /// mimalloc's `mi_option_set(mi_option_t, long)`, from the C library the `mimalloc` crate links.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in `mi_option_e` of mimalloc v3 (libmimalloc-sys 0.1.49, pinned by
/// Cargo.lock).
#[cfg(not(target_family = "wasm"))]
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

#[cfg(not(target_family = "wasm"))]
fn main() -> std::process::ExitCode {
    // Never purge freed pages back to the kernel (default: after 10 ms): a training step frees
    // and reallocates the same large buffers, and re-faulting them as fresh zeroed huge pages
    // took 15 % of a CPU step (perf: clear_page_erms). Costs 15-35 MiB of peak RSS.
    // SAFETY: sets a documented mimalloc option before any threads are started.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
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
