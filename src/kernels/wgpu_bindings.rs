//! WebGPU's rule on storage bindings, checked at every launch of lorabert's WGSL kernels
//! ([`super::wgpu::launch`]): within one dispatch, a buffer range bound writable may not overlap
//! any other binding of the same dispatch (the WebGPU specification's "writable storage buffer
//! binding aliasing", which Dawn, the WebGPU of Chrome and Edge, enforces and wgpu does not).
//! Native wgpu runs such a dispatch; Chrome rejects the command buffer and the device is lost.
//! The check runs natively too (every build, every launch), so the parity tests on lavapipe
//! catch the class without a browser.
//!
//! The kernels declare every binding `var<storage, read_write>`, as cubecl's own kernels do:
//! wgpu tracks usage per buffer, and cubecl's pools place many tensors in one buffer, so a
//! `read` binding beside a `read_write` one of the same buffer is refused by wgpu even where
//! their ranges are disjoint. So no launch may bind overlapping ranges at all; the writable
//! bindings are still read from each kernel's WGSL, so a kernel with read-only inputs would be
//! checked by the same rule. A launch that would bind one allocation twice (the Gram product
//! `Aᵀ·A` of the DoRA row norm) binds a copy instead
//! (`wgpu_elementwise::copy_new`, in `wgpu_matmul::matmul`).

use burn::backend::wgpu::{CubeTensor, KernelSource};
use cubecl::prelude::KernelId;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Where one binding of a dispatch lies: the allocation it belongs to (cubecl's memory id,
/// unique while the allocation lives) and its byte range `[start, end)` within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingSpan {
    /// The allocation's id.
    pub allocation: usize,
    /// First byte of the range, inclusive.
    pub start: u64,
    /// Last byte of the range, exclusive.
    pub end: u64,
}

impl BindingSpan {
    /// The span `t` is bound with (its handle's allocation, offsets and size).
    pub fn of(t: &CubeTensor) -> Self {
        let b = t.handle.clone().binding();
        BindingSpan {
            allocation: b.memory.id().value,
            start: b.offset_start.unwrap_or(0),
            end: b.size.saturating_sub(b.offset_end.unwrap_or(0)),
        }
    }

    /// Whether the two spans share a byte of one allocation.
    pub fn overlaps(&self, other: &BindingSpan) -> bool {
        self.allocation == other.allocation && self.start < other.end && other.start < self.end
    }
}

/// Which bindings of group 0 a WGSL source declares writable: entry `i` is `true` when
/// `@binding(i)` is `var<storage, read_write>`. Bindings it does not declare are `false`.
pub fn writable_bindings(wgsl: &str) -> Vec<bool> {
    let mut writable = Vec::new();
    for line in wgsl.lines() {
        let Some(at) = line.find("@binding(") else {
            continue;
        };
        let rest = &line[at + "@binding(".len()..];
        let Some(index) = rest
            .find(')')
            .and_then(|close| rest[..close].trim().parse::<usize>().ok())
        else {
            continue;
        };
        if writable.len() <= index {
            writable.resize(index + 1, false);
        }
        writable[index] = rest.contains("read_write");
    }
    writable
}

/// The first pair `(writable, other)` of bindings that break the rule: binding `writable` is
/// declared writable and its range overlaps binding `other`'s. `spans[i]` is binding `i`.
pub fn aliased_binding(writable: &[bool], spans: &[BindingSpan]) -> Option<(usize, usize)> {
    for (i, a) in spans.iter().enumerate() {
        if !writable.get(i).copied().unwrap_or(false) {
            continue;
        }
        for (j, b) in spans.iter().enumerate() {
            if i != j && a.overlaps(b) {
                return Some((i, j));
            }
        }
    }
    None
}

/// The writable bindings of `kernel`'s WGSL, computed once per kernel id.
fn kernel_writable<K: KernelSource>(kernel: &K) -> Vec<bool> {
    static CACHE: OnceLock<Mutex<HashMap<KernelId, Vec<bool>>>> = OnceLock::new();
    let id = kernel.id();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    map.entry(id)
        .or_insert_with(|| writable_bindings(&kernel.source().complete()))
        .clone()
}

/// Checks a launch of `kernel` with `tensors` bound as bindings `0..n` (the parameters' fresh
/// buffer, bound after them, cannot alias).
///
/// # Panics
/// When a binding the kernel declares writable overlaps another binding of the launch, naming
/// the kernel and both bindings: WebGPU (Dawn) would reject the dispatch and lose the device.
pub fn check_launch<K: KernelSource + std::fmt::Debug>(kernel: &K, tensors: &[&CubeTensor]) {
    let spans: Vec<BindingSpan> = tensors.iter().map(|t| BindingSpan::of(t)).collect();
    // Nearly every launch binds distinct allocations: then nothing can overlap, and the kernel's
    // writable bindings (a lock and a table look-up) are not needed on this per-launch path.
    let shared = spans
        .iter()
        .enumerate()
        .any(|(i, a)| spans[i + 1..].iter().any(|b| a.allocation == b.allocation));
    if !shared {
        return;
    }
    if let Some((w, other)) = aliased_binding(&kernel_writable(kernel), &spans) {
        panic!(
            "kernel {kernel:?} binds one buffer range to binding {w} (read_write) and binding \
             {other}: WebGPU refuses writable storage binding aliasing (bytes {}..{} and {}..{} \
             of allocation {})",
            spans[w].start, spans[w].end, spans[other].start, spans[other].end, spans[w].allocation
        );
    }
}
