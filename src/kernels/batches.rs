//! Independent batches side by side for inference (no autodiff, nothing shared between
//! batches): on the CPU (flex) with more than one rayon thread, each worker thread takes the next
//! batch and runs it whole on a pool of its own with one thread, so the batch's products and row
//! ops run unsplit ([`super::gemm`] and the fused loops split only when the pool has more than
//! one thread), instead of one batch at a time with every op split over the threads and joined
//! after it. On this 2-core machine MiniLM's `[1024, 384]·[384, 384]` product runs at 62 GFLOP/s
//! on one thread and 107 on two (`lorabert bench --gemm`), so two batches on one thread each do
//! more work per second than one batch on two, and the element-wise passes (flex's run on one
//! thread) stop leaving a core idle. Elsewhere (wgpu, one thread, one batch) the batches run one
//! after another. Native builds only (the browser has no threads here).
//!
//! Each batch's arithmetic is the same either way: the products split by rows or columns, never
//! along the summed axis, so results are bit-identical to the one-at-a-time order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use burn::tensor::Device;

use crate::error::{Error, Result};

/// Stack size of the worker pools' threads (the CLI's own pool uses the same).
const STACK_BYTES: usize = 16 << 20;

/// Whether [`map_batches`] runs `n` batches on `device` side by side: the CPU (flex), more than
/// one rayon thread in the caller's pool, at least two batches.
pub fn side_by_side(device: &Device, n: usize) -> bool {
    super::fused::is_flex(device) && rayon::current_num_threads() > 1 && n > 1
}

/// `f(0)`, …, `f(n - 1)` in index order, run side by side on one-thread pools (one per rayon
/// thread of the caller, at most `n`) when `device` is the CPU (flex) and the caller's rayon
/// pool has more than one thread; in order on the calling thread otherwise. The workers take
/// batches in index order (give the largest first for balance).
///
/// # Errors
/// The first error of `f` (by index among those that ran; no batch starts after one failed);
/// [`Error::Invalid`] when a worker pool cannot be built.
pub fn map_batches<T: Send>(
    device: &Device,
    n: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    if !side_by_side(device, n) {
        return (0..n).map(f).collect();
    }
    let workers = rayon::current_num_threads().min(n);
    let pools = pools(workers)?;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<T>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for pool in pools.iter().take(workers) {
            let (next, failed, slots, f) = (&next, &failed, &slots, &f);
            scope.spawn(move || {
                pool.install(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let r = f(i);
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        if let Ok(mut slot) = slots[i].lock() {
                            *slot = Some(r);
                        }
                    }
                })
            });
        }
    });
    let mut out = Vec::with_capacity(n);
    for slot in slots {
        match slot.into_inner().ok().flatten() {
            Some(r) => out.push(r?),
            None => {
                return Err(Error::Invalid(
                    "a batch did not run (another one failed first)".into(),
                ));
            }
        }
    }
    Ok(out)
}

/// At least `workers` one-thread pools, built once and kept for the process.
fn pools(workers: usize) -> Result<std::sync::MutexGuard<'static, Vec<rayon::ThreadPool>>> {
    static POOLS: OnceLock<Mutex<Vec<rayon::ThreadPool>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .map_err(|_| Error::Invalid("the inference worker pools are poisoned".into()))?;
    while pools.len() < workers {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .stack_size(STACK_BYTES)
            .thread_name(|i| format!("lorabert-batch-{i}"))
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start an inference worker: {e}")))?;
        pools.push(pool);
    }
    Ok(pools)
}
