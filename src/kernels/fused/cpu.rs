//! The building blocks of the flex ops' loops ([`super::flex`]): branch-free f32 math that
//! vectorises (`exp`, `erf`, GELU and its derivative), reductions in 16 lanes added in a fixed
//! order, and the splits of a buffer over the rayon pool, each task compiled for the CPU's vector
//! width ([`simd`]).

use super::ops::{FRAC_1_SQRT_2, FRAC_1_SQRT_2PI};

/// `eˣ` for f32 without branches or library calls, so loops over it vectorise: Cephes' `expf`
/// (range reduction by `ln 2` in two parts, degree-6 polynomial, exponent bits), within 2 ulp;
/// inputs are clamped to [-87, 88] (the result is then 1.6e-38 or 1.7e38 instead of 0 or ∞).
/// The integer `n` of `2ⁿ` is read from the bits of the rounded float (`1.5·2²³ + n` has `n` in
/// its low mantissa bits) rather than converted with `as i32`, whose saturating conversion
/// LLVM does not vectorise (it split the loops into one scalar conversion per lane).
#[inline(always)]
pub(super) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding then subtracting 1.5·2²³ rounds to the nearest integer (no `floor` call).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // `t` lies in [2²³, 2²⁴) where the float spacing is 1, so its bits are ROUND's plus `n`.
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    y * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `(erf(x), e^(−x²))` for f32 from Abramowitz and Stegun 7.1.26 (1.5e-7 absolute in exact
/// arithmetic, under 5e-7 in f32, tested), the form PyTorch's vectorised CPU `erf` uses,
/// branch-free so loops over it vectorise; the exponential is returned for GELU's derivative.
#[inline(always)]
pub(super) fn erf_and_exp_f32(x: f32) -> (f32, f32) {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_7) * t - 0.284_496_72) * t
        + 0.254_829_6)
        * t;
    let e = exp_f32(-a * a);
    ((1.0 - poly * e).copysign(x), e)
}

/// `erf(x)` for f32 (see [`erf_and_exp_f32`]).
#[inline(always)]
pub(super) fn erf_f32(x: f32) -> f32 {
    erf_and_exp_f32(x).0
}

#[inline(always)]
pub(super) fn gelu_f32(x: f32) -> f32 {
    x * 0.5 * (1.0 + erf_f32(x * FRAC_1_SQRT_2 as f32))
}

/// `GELU'(x) = Φ(x) + x·φ(x)`, with `φ(x) = e^(−x²/2)/√(2π)` the exponential that `erf(x/√2)`
/// already computes.
#[inline(always)]
pub(super) fn gelu_grad_f32(x: f32) -> f32 {
    let (erf, e) = erf_and_exp_f32(x * FRAC_1_SQRT_2 as f32);
    0.5 * (1.0 + erf) + x * e * FRAC_1_SQRT_2PI as f32
}

/// Lanes of the partial sums in [`sum16`], [`dot16`] and [`max16`]: one AVX-512 register of f32.
const LANES: usize = 16;

/// `Σ v` with [`LANES`] partial sums (element `i` into lane `i % 16`, the tail apart), added in
/// a fixed order at the end: the loop vectorises where a single running f32 sum does not (Rust
/// keeps f32 additions in program order), and the result is the same on every run.
#[inline(always)]
pub(super) fn sum16(v: &[f32]) -> f32 {
    let chunks = v.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    let mut acc = [0f32; LANES];
    for c in chunks {
        for (a, c) in acc.iter_mut().zip(c) {
            *a += c;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a⊙b` in the lane order of [`sum16`].
#[inline(always)]
pub(super) fn dot16(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(a, b)| a * b)
        .sum();
    let mut acc = [0f32; LANES];
    for (ca, cb) in ca.zip(cb) {
        for ((s, a), b) in acc.iter_mut().zip(ca).zip(cb) {
            *s += a * b;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `max v` (`-∞` for an empty slice) over [`LANES`] partial maxima.
#[inline(always)]
pub(super) fn max16(v: &[f32]) -> f32 {
    let chunks = v.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let mut acc = [f32::NEG_INFINITY; LANES];
    for c in chunks {
        for (a, c) in acc.iter_mut().zip(c) {
            *a = a.max(*c);
        }
    }
    acc.iter().fold(tail, |m, v| m.max(*v))
}

/// `[f(v[0]), f(v[1]), ...]` as a new vector whose elements are written once each, in chunks
/// over the rayon pool (sequential on wasm): no zeroing of the new allocation first.
pub(super) fn map_new(v: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    map_blocks_new(
        v,
        1 << 14,
        #[inline(always)]
        |_, x, o| {
            for (o, x) in o.iter_mut().zip(x) {
                o.write(f(*x));
            }
        },
    )
}

/// A new vector of `v.len()` elements filled block by block: `f(b, x, out)` for block `b` of
/// `block` elements (the last one shorter), `x` that block of `v`, `out` the same block of the
/// new vector, which `f` must write in full. Blocks run over the rayon pool (sequential on wasm),
/// each compiled for this CPU's vector width ([`simd`]); no zeroing of the allocation first.
pub(super) fn map_blocks_new(
    v: &[f32],
    block: usize,
    f: impl Fn(usize, &[f32], &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let block = block.max(1);
    let mut out: Vec<f32> = Vec::with_capacity(v.len());
    let dst = &mut out.spare_capacity_mut()[..v.len()];
    let task = |(b, (o, x)): (usize, (&mut [std::mem::MaybeUninit<f32>], &[f32]))| {
        simd(
            #[inline(always)]
            || f(b, x, o),
        )
    };
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        dst.par_chunks_mut(block)
            .zip(v.par_chunks(block))
            .enumerate()
            .for_each(task);
    }
    #[cfg(target_family = "wasm")]
    dst.chunks_mut(block)
        .zip(v.chunks(block))
        .enumerate()
        .for_each(task);
    // SAFETY: `dst` is the first `v.len()` elements of the spare capacity, its blocks pair one to
    // one with `v`'s, and `f` writes each block in full (its contract).
    unsafe { out.set_len(v.len()) };
    out
}

/// `Σ` of `f(rows)` over fixed chunks of `0..rows` (about four per thread) on the rayon pool,
/// each an `[n]` partial sum, added in chunk order (deterministic for a given thread count).
pub(super) fn row_chunk_sums(
    rows: usize,
    n: usize,
    f: impl Fn(std::ops::Range<usize>) -> Vec<f32> + Sync,
) -> Vec<f32> {
    let add = |mut a: Vec<f32>, b: Vec<f32>| {
        a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        a
    };
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        let per = rows
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(1);
        let parts: Vec<_> = (0..rows.div_ceil(per))
            .into_par_iter()
            .map(|c| {
                simd(
                    #[inline(always)]
                    || f(c * per..((c + 1) * per).min(rows)),
                )
            })
            .collect();
        parts.into_iter().fold(vec![0f32; n], add)
    }
    #[cfg(target_family = "wasm")]
    add(vec![0f32; n], f(0..rows))
}

/// Runs `f` compiled for the widest vector instructions of this CPU (AVX-512 or AVX2 with FMA on
/// x86-64, picked at run time by `pulp`), so the loops inside it vectorise 8 or 16 lanes wide
/// instead of the 4 of the x86-64 baseline. The same values: Rust neither contracts `a·b + c`
/// into an FMA nor reorders f32 sums, at any vector width.
#[cfg(not(target_family = "wasm"))]
#[inline(always)]
pub(super) fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// On wasm, `f` as it is (the build's own `simd128` setting applies).
#[cfg(target_family = "wasm")]
#[inline(always)]
pub(super) fn simd<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// LayerNorm of one row `x` `[h]` into `out`, every element written:
/// `out = (x − μ)·γ/√(var + eps) + β`, with the mean `μ` and the biased variance `var` from two
/// passes in 16 lanes ([`sum16`]), as PyTorch's `native_layer_norm` computes them.
#[inline(always)]
pub(super) fn layer_norm_row(
    x: &[f32],
    (gamma, beta): (&[f32], &[f32]),
    eps: f32,
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    let h = x.len() as f32;
    let mean = sum16(x) / h;
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|x| (x - mean) * (x - mean))
        .sum();
    let mut acc = [0f32; LANES];
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += (x - mean) * (x - mean);
        }
    }
    let var = (acc.iter().sum::<f32>() + tail) / h;
    let rstd = 1.0 / (var + eps).sqrt();
    for (((o, x), g), b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
        o.write((x - mean) * rstd * g + b);
    }
}

/// Rows of `n` elements per task, about [`ROWS_TASK`] elements (whole rows).
pub(super) fn rows_per_task(n: usize) -> usize {
    (ROWS_TASK / n.max(1)).max(1)
}

/// `f(a_rows, b_rows, out_rows)` over whole rows (length `n`) of `a` (to overwrite), `b` (read,
/// as long as `a`) and a new vector as long as `a`, which `f` must write in full; tasks of about
/// [`ROWS_TASK`] elements over the rayon pool (sequential on wasm), each compiled for this CPU's
/// vector width ([`simd`]). No zeroing of the new allocation first.
pub(super) fn rows_pair_new(
    a: &mut [f32],
    b: &[f32],
    n: usize,
    f: impl Fn(&mut [f32], &[f32], &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let len = a.len().min(b.len());
    let step = rows_per_task(n) * n.max(1);
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = &mut out.spare_capacity_mut()[..len];
    type Uninit = std::mem::MaybeUninit<f32>;
    let task = |((a, b), o): ((&mut [f32], &[f32]), &mut [Uninit])| {
        simd(
            #[inline(always)]
            || f(a, b, o),
        )
    };
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        a[..len]
            .par_chunks_mut(step)
            .zip(b[..len].par_chunks(step))
            .zip(dst.par_chunks_mut(step))
            .for_each(task);
    }
    #[cfg(target_family = "wasm")]
    a[..len]
        .chunks_mut(step)
        .zip(b[..len].chunks(step))
        .zip(dst.chunks_mut(step))
        .for_each(task);
    // SAFETY: `dst` is the first `len` elements of the spare capacity, split into the same
    // chunks as `a` and `b`, and `f` writes each of its chunks in full (its contract).
    unsafe { out.set_len(len) };
    out
}

/// Elements per rayon task of [`rows_mut`] (whole rows): short rows (the attention softmax's 64
/// keys) go several to a task instead of one task each.
const ROWS_TASK: usize = 1 << 14;

/// Calls `f(row_index, row)` for every row (or fixed block) of length `n` of `out`, rows grouped
/// into tasks of about [`ROWS_TASK`] elements over the rayon pool (sequential on wasm), each task
/// compiled for this CPU's vector width ([`simd`]).
pub(super) fn rows_mut(out: &mut [f32], n: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let n = n.max(1);
    let per = rows_per_task(n);
    let task = |(t, rows): (usize, &mut [f32])| {
        simd(
            #[inline(always)]
            || {
                for (k, o) in rows.chunks_mut(n).enumerate() {
                    f(t * per + k, o);
                }
            },
        )
    };
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(per * n).enumerate().for_each(task);
    }
    #[cfg(target_family = "wasm")]
    out.chunks_mut(per * n).enumerate().for_each(task);
}

/// Splits the rows (length `n`) of `out` into fixed chunks (about four per thread), calls
/// `f(first_row, chunk)` on each over the rayon pool, and adds up the per-chunk `(∂γ, ∂β)`
/// partial sums in chunk order (deterministic for a given thread count).
pub(super) fn rows_chunked(
    out: &mut [f32],
    n: usize,
    f: impl Fn(usize, &mut [f32]) -> (Vec<f32>, Vec<f32>) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let n = n.max(1);
    let rows = out.len() / n;
    let add = |(mut a, mut b): (Vec<f32>, Vec<f32>), (c, d): (Vec<f32>, Vec<f32>)| {
        a.iter_mut().zip(c).for_each(|(a, c)| *a += c);
        b.iter_mut().zip(d).for_each(|(b, d)| *b += d);
        (a, b)
    };
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        let per = rows
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(1);
        // Fixed chunks, partial sums added in chunk order: the same bits on every run.
        let parts: Vec<_> = out
            .par_chunks_mut(per * n)
            .enumerate()
            .map(|(c, chunk)| {
                simd(
                    #[inline(always)]
                    || f(c * per, chunk),
                )
            })
            .collect();
        parts.into_iter().fold((vec![0f32; n], vec![0f32; n]), add)
    }
    #[cfg(target_family = "wasm")]
    {
        let _ = (rows, add);
        f(0, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_is_within_2e_7_relative_of_f64_exp() {
        let mut worst = 0f64;
        for i in 0..=35_000 {
            let x = -87.0 + i as f32 * 0.005;
            let want = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64) - want).abs() / want);
        }
        assert!(worst < 2.5e-7, "{worst}");
    }

    #[test]
    fn exp_exponent_from_bits_equals_the_integer_conversion() {
        // The bit trick of `exp_f32` gives the same `n` as `as i32` over the whole clamped range.
        const ROUND: f32 = 12_582_912.0;
        for i in 0..=35_000 {
            let x = (-87.0 + i as f32 * 0.005) * std::f32::consts::LOG2_E;
            let t = x + ROUND;
            let bits = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
            assert_eq!(bits, (t - ROUND) as i32, "x = {x}");
        }
    }

    #[test]
    fn lane_reductions_match_f64_sums() {
        // Lengths below, at and above one 16-lane chunk, with a tail.
        for n in [0, 1, 15, 16, 17, 64, 384, 1000] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 5.0)
                .collect();
            let sum: f64 = a.iter().map(|&v| v as f64).sum();
            let dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!(
                (sum16(&a) as f64 - sum).abs() < 1e-4 * (1.0 + sum.abs()),
                "n {n}"
            );
            assert!(
                (dot16(&a, &b) as f64 - dot).abs() < 1e-4 * (1.0 + dot.abs()),
                "n {n}"
            );
            let max = a.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            assert_eq!(max16(&a), max, "n {n}");
        }
    }

    #[test]
    fn erf_f32_is_within_5e_7_of_erf() {
        // A&S bound 1.5e-7 plus f32 rounding. erf(x) against the series x·2/√π·Σ (−x²)ⁿ/(n!(2n+1)) in f64 on [-3, 3], odd symmetry,
        // and saturation to ±1.
        let erf64 = |x: f64| {
            let (mut term, mut sum) = (x, x);
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        for i in 0..=6000 {
            let x = -3.0 + i as f64 * 0.001;
            let err = (erf_f32(x as f32) as f64 - erf64(x)).abs();
            assert!(err < 5e-7, "erf({x}): {err}");
        }
        assert_eq!(erf_f32(-1.25), -erf_f32(1.25));
        assert_eq!((erf_f32(9.0), erf_f32(-9.0)), (1.0, -1.0));
    }
}
