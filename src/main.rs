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
    // A reader that stops early (`lorabert search ... --json | head -3`) ends the program as it
    // ends other Unix tools, by SIGPIPE, instead of a panic in `println!` with a backtrace (Rust
    // programs start with SIGPIPE ignored).
    // SAFETY: sets a signal disposition before any threads are started.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL)
    };
    match lorabert::cli::main() {
        Ok(lorabert::cli::Outcome::Finished) => std::process::ExitCode::SUCCESS,
        Ok(lorabert::cli::Outcome::Stopped) => std::process::ExitCode::from(130),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(target_family = "wasm")]
unsafe extern "C" {
    /// wasm-ld's synthetic function that runs the static constructors (here: the `inventory`
    /// registrations of cubecl's IR types).
    fn __wasm_call_ctors();
}

/// In the browser the same binary target is the page's entry point.
///
/// It runs the static constructors itself, once. Without an explicit call, wasm-ld links the
/// binary as a "command" and wraps *every* export in a call to `__wasm_call_ctors` (exports
/// named `*.command_export`), and wasm-bindgen's glue calls exports such as
/// `__externref_table_alloc` for each JavaScript object handed to Rust: a CPU profile of the page
/// training (Chromium, CDP) had 36 % of the main thread's time in re-run constructors. An
/// explicit call turns that wrapping off (LLVM D81689).
#[cfg(target_family = "wasm")]
fn main() {
    // SAFETY: the first thing the module runs, and the only call: nothing has used a registry
    // the constructors fill yet.
    unsafe { __wasm_call_ctors() };
    lorabert::web::start();
}
