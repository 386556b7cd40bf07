//! Subnormal f32 values flushed to zero on the CPU's compute threads (native builds).
//!
//! A multiply-add with a subnormal operand (magnitude below `f32::MIN_POSITIVE`, 1.18e-38) takes
//! a microcode assist of about a hundred cycles on x86-64 cores, and an AVX-512 FMA that meets
//! one in any lane pays it for the whole vector. A MiniLM training step produces some (in the
//! activations and gradients of the pair tasks especially), and they slowed its matrix products
//! up to ten-fold: `lorabert train --task para` ran at 5.2 examples/s with them and 51.1 without
//! (2 cores, same losses to the printed digits; `perf` showed 84 % of the time in the `gemm`
//! crate's microkernel). WGSL lets GPUs flush f32 subnormals too, and TensorFlow's CPU thread
//! pools set the same two flags; values this small are far below every tolerance of the
//! parity tests.
//!
//! x86-64: MXCSR's FTZ (bit 15, results flushed) and DAZ (bit 6, inputs read as zero).
//! AArch64: FPCR's FZ (bit 24). Elsewhere nothing changes.

/// Sets flush-to-zero (and denormals-are-zero where the CPU has it) on the calling thread and on
/// every thread of the current rayon pool: the global one (built with its default size if it
/// does not exist yet, so size it first) unless called inside `ThreadPool::install`. Idempotent;
/// the flags stay set for the threads' lifetime.
pub fn flush_denormals() {
    set_on_this_thread();
    rayon::broadcast(|_| set_on_this_thread());
}

/// Whether the calling thread flushes subnormal results to zero (see [`flush_denormals`]).
pub fn flushing() -> bool {
    let tiny = std::hint::black_box(f32::MIN_POSITIVE);
    std::hint::black_box(tiny * 0.5) == 0.0
}

#[cfg(target_arch = "x86_64")]
fn set_on_this_thread() {
    let mut csr: u32 = 0;
    // SAFETY: `stmxcsr`/`ldmxcsr` read and write the SSE control register of this thread only
    // (SSE is part of x86-64); the bits set are the documented FTZ and DAZ flags.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        csr |= (1 << 15) | (1 << 6);
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
    }
}

#[cfg(target_arch = "aarch64")]
fn set_on_this_thread() {
    // SAFETY: reads and writes this thread's floating-point control register; bit 24 is FZ.
    unsafe {
        let mut fpcr: u64;
        std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack));
        fpcr |= 1 << 24;
        std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack));
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn set_on_this_thread() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn subnormals_flush_on_the_caller_and_the_pool() {
        // A fresh thread and a private pool, so the harness's other tests keep IEEE subnormals.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("thread pool");
        std::thread::spawn(move || {
            assert!(!flushing(), "a fresh thread keeps IEEE subnormals");
            let before: Vec<bool> = pool.broadcast(|_| flushing());
            assert!(
                before.iter().all(|&f| !f),
                "pool threads start IEEE: {before:?}"
            );
            pool.install(flush_denormals);
            let after: Vec<bool> = pool.broadcast(|_| flushing());
            assert!(
                after.iter().all(|&f| f),
                "every pool thread flushes: {after:?}"
            );
            assert!(!flushing(), "install ran on a pool thread, not here");
            set_on_this_thread();
            assert!(flushing(), "the calling thread flushes");
        })
        .join()
        .expect("test thread");
    }
}
