//! Dropout masks that are redrawn from a seed instead of stored.
//!
//! Burn's dropout draws one ChaCha-based sample per element through the backend's random
//! generator, which took about 9 % of a MiniLM training step on the CPU (profiled with `perf`).
//! Here each dropout call takes one seed keyed by the step and its module, and element `i` of its mask is
//! kept when a counter-based hash of `i` and the seed (two rounds of the PCG hash of Jarzynski and
//! Olano 2020, [`device_mask_keeps`]) falls below `keep·2³²`; kept elements are `1/(1−p)`. The
//! CPU ([`apply_mask_block`], in fixed blocks of [`MASK_BLOCK`] elements filled in parallel and 16
//! lanes wide with AVX-512) and the wgpu kernel `shaders/dropout.wgsl` compute the same hash, so
//! both backends draw the same mask for the same seed, and the mask does not depend on the thread
//! count. [`crate::kernels::dropout`] multiplies by the mask in the same pass and regenerates it
//! from the seed for the backward instead of storing it; elsewhere (and with `--no-kernels` on
//! wgpu) Burn's device-side random tensors. Each dropout module's seed is a function of the
//! training step's seed ([`seed_dropout`]) and the module's name ([`call_seed`], [`module_key`]),
//! so a resumed run draws the same masks and adding a dropout changes no other module's masks. (Until issue 18 the CPU drew each
//! block from its own Xoshiro256++ stream: a serial generator that took 6 % of a LoRA step.)

use std::sync::atomic::{AtomicU64, Ordering};

/// The seed of the current training step, which every dropout's mask seed is keyed by
/// ([`seed_dropout`], [`call_seed`]).
static STEP_SEED: AtomicU64 = AtomicU64::new(0);

/// Sets the step seed the dropout masks are keyed by (call with the step seed before each
/// training step).
pub fn seed_dropout(seed: u64) {
    STEP_SEED.store(seed, Ordering::Relaxed);
}

/// A dropout module's key: the 64-bit FNV-1a hash of its Hugging Face module name
/// (`encoder.layer.3.attention.self.dropout`, `...query.lora_dropout`, `heads.dropout`).
pub fn module_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64's finaliser (Steele, Lea and Flood 2014): a bijective 64-bit mix.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The mask seed of the dropout module keyed `key` ([`module_key`]) in the current step: a
/// function of the step seed and the module only, so the masks do not depend on the order the
/// modules run in, and adding a dropout changes no other module's mask. (Each module runs once
/// per step: a step is one batch of one task, and a bi-encoded pair batch is one encoder call.)
pub(crate) fn call_seed(key: u64) -> u64 {
    splitmix64(STEP_SEED.load(Ordering::Relaxed) ^ splitmix64(key))
}

/// Elements per independently seeded block of a host mask.
pub const MASK_BLOCK: usize = 1 << 14;

/// The dropout mask of `seed` over block `block` of a tensor (elements `block·MASK_BLOCK + j`,
/// `j` from 0): `1/keep` where [`device_mask_keeps`] keeps the element, else 0. An iterator of
/// plain arithmetic, so loops zipping it with slices vectorise.
#[inline(always)]
fn block_scales(seed: u64, block: usize, keep: f64, len: usize) -> impl Iterator<Item = f32> {
    let key = mask_key(seed);
    let mix = key.wrapping_mul(2_654_435_769);
    let threshold = device_mask_threshold(keep);
    let scale = (1.0 / keep) as f32;
    let first = (block * MASK_BLOCK) as u32;
    (0..len as u32).map(move |j| {
        let h = pcg(pcg(first.wrapping_add(j) ^ key) ^ mix);
        if h < threshold { scale } else { 0.0 }
    })
}

/// Multiplies `out`, block `block` of a tensor (elements `block·MASK_BLOCK + j`), in place by the
/// dropout mask of `seed`: each element times `1/keep` where [`device_mask_keeps`] keeps it, else
/// times 0.
#[inline(always)]
pub fn apply_mask_block(seed: u64, block: usize, keep: f64, out: &mut [f32]) {
    let scales = block_scales(seed, block, keep, out.len());
    for (o, s) in out.iter_mut().zip(scales) {
        *o *= s;
    }
}

/// [`apply_mask_block`] out of place: `out[j] = x[j]·mask[j]` for block `block`, writing every
/// element of `out` (`x` and `out` of equal length).
#[inline(always)]
pub fn mask_block_into(
    seed: u64,
    block: usize,
    keep: f64,
    x: &[f32],
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    let scales = block_scales(seed, block, keep, out.len());
    for ((o, x), s) in out.iter_mut().zip(x).zip(scales) {
        o.write(x * s);
    }
}

#[inline(always)]
fn mask_key(seed: u64) -> u32 {
    pcg((seed as u32) ^ pcg((seed >> 32) as u32))
}

/// The PCG hash (Jarzynski and Olano, "Hash Functions for GPU Rendering", JCGT 2020), as in
/// `shaders/dropout.wgsl`.
#[inline(always)]
fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The threshold of `shaders/dropout.wgsl`: a 32-bit hash is below it with probability `keep`.
pub fn device_mask_threshold(keep: f64) -> u32 {
    (keep * 4294967296.0).clamp(0.0, u32::MAX as f64) as u32
}

/// Whether element `index` is kept by the wgpu dropout kernel (`shaders/dropout.wgsl`) for
/// `seed` and `keep`: the kernel's counter-based mask, computed on the host (for tests).
pub fn device_mask_keeps(seed: u64, index: u32, keep: f64) -> bool {
    let key = mask_key(seed);
    let h = pcg(pcg(index ^ key) ^ key.wrapping_mul(2_654_435_769));
    h < device_mask_threshold(keep)
}

/// The whole dropout mask of `seed` for `n` elements (blocks of [`MASK_BLOCK`]), `[n]`.
pub fn mask(seed: u64, n: usize, keep: f64) -> Vec<f32> {
    let mut out = vec![1f32; n];
    for (b, o) in out.chunks_mut(MASK_BLOCK).enumerate() {
        apply_mask_block(seed, b, keep, o);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_expected_fraction_and_scales() {
        let m = mask(7, 100_001, 0.9);
        assert_eq!(m.len(), 100_001);
        let kept = m.iter().filter(|&&v| v > 0.0).count() as f64 / m.len() as f64;
        assert!((kept - 0.9).abs() < 0.005, "{kept}");
        assert!(m.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
        assert_eq!(mask(7, 100_001, 0.9), m, "same seed, same mask");
        assert_ne!(mask(8, 100_001, 0.9), m, "another seed, another mask");
        // Blocks differ from each other (each has its own stream).
        assert_ne!(m[..MASK_BLOCK], m[MASK_BLOCK..2 * MASK_BLOCK]);
        // The CPU mask is the wgpu kernel's: element by element, across block boundaries.
        for (i, v) in m.iter().enumerate() {
            assert_eq!(*v > 0.0, device_mask_keeps(7, i as u32, 0.9), "element {i}");
        }
        seed_dropout(3);
        let (a, b) = (
            call_seed(module_key("x.dropout")),
            call_seed(module_key("y.dropout")),
        );
        assert_ne!(a, b, "modules draw their own masks");
        seed_dropout(4);
        assert_ne!(
            call_seed(module_key("x.dropout")),
            a,
            "steps draw their own masks"
        );
        seed_dropout(3);
        assert_eq!(
            call_seed(module_key("y.dropout")),
            b,
            "keyed by step and module, in any order"
        );
        assert_eq!(call_seed(module_key("x.dropout")), a);
    }
}
