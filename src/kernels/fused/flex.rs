//! [`FusedBackend`] on the flex CPU backend: each op one pass over contiguous f32 data, split
//! over the rayon pool, with branch-free `exp` and `erf` so the loops vectorise; other dtypes
//! and strided views take the tensor-op compositions of [`super::ops`].

use burn::backend::flex::FlexTensor;
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::{DType, TensorData};

use super::FusedBackend;
use super::ops::*;

/// `eˣ` for f32 without branches or library calls, so loops over it vectorise: Cephes' `expf`
/// (range reduction by `ln 2` in two parts, degree-6 polynomial, exponent bits), within 2 ulp;
/// inputs are clamped to [-87, 88] (the result is then 1.6e-38 or 1.7e38 instead of 0 or ∞).
/// The integer `n` of `2ⁿ` is read from the bits of the rounded float (`1.5·2²³ + n` has `n` in
/// its low mantissa bits) rather than converted with `as i32`, whose saturating conversion
/// LLVM does not vectorise (it split the loops into one scalar conversion per lane).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
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
fn erf_and_exp_f32(x: f32) -> (f32, f32) {
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
fn erf_f32(x: f32) -> f32 {
    erf_and_exp_f32(x).0
}

#[inline(always)]
fn gelu_f32(x: f32) -> f32 {
    x * 0.5 * (1.0 + erf_f32(x * FRAC_1_SQRT_2 as f32))
}

/// `GELU'(x) = Φ(x) + x·φ(x)`, with `φ(x) = e^(−x²/2)/√(2π)` the exponential that `erf(x/√2)`
/// already computes.
#[inline(always)]
fn gelu_grad_f32(x: f32) -> f32 {
    let (erf, e) = erf_and_exp_f32(x * FRAC_1_SQRT_2 as f32);
    0.5 * (1.0 + erf) + x * e * FRAC_1_SQRT_2PI as f32
}

/// Lanes of the partial sums in [`sum16`], [`dot16`] and [`max16`]: one AVX-512 register of f32.
const LANES: usize = 16;

/// `Σ v` with [`LANES`] partial sums (element `i` into lane `i % 16`, the tail apart), added in
/// a fixed order at the end: the loop vectorises where a single running f32 sum does not (Rust
/// keeps f32 additions in program order), and the result is the same on every run.
#[inline(always)]
fn sum16(v: &[f32]) -> f32 {
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
fn dot16(a: &[f32], b: &[f32]) -> f32 {
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
fn max16(v: &[f32]) -> f32 {
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

/// Contiguous f32 values of a flex tensor, or `None` (other dtypes, strided views).
fn f32_values(t: &FlexTensor) -> Option<&[f32]> {
    if t.dtype() == DType::F32 && t.is_contiguous() {
        t.as_slice::<f32>()
    } else {
        None
    }
}

/// `t` as a contiguous f32 tensor that owns its buffer alone, to be overwritten in place: `t`
/// itself when it already is one (an op's input that nothing else holds, such as a gradient or
/// a product consumed by the op: no allocation, no zeroing, no copy), else a copy of its values.
/// `Err(t)`, untouched, for other dtypes and strided views (the caller's tensor-op fallback).
fn owned_f32(t: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    let n = t.shape().num_elements();
    let whole = t.dtype() == DType::F32
        && t.layout().contiguous_offsets() == Some((0, n))
        && t.storage::<f32>().len() == n;
    if whole && t.is_unique() {
        return Ok(t);
    }
    let Some(values) = f32_values(&t).map(<[f32]>::to_vec) else {
        return Err(t);
    };
    Ok(FlexTensor::from_data(TensorData::new(values, t.shape())))
}

/// `[f(v[0]), f(v[1]), ...]` as a new vector whose elements are written once each, in chunks
/// over the rayon pool (sequential on wasm): no zeroing of the new allocation first.
fn map_new(v: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    let mut out: Vec<f32> = Vec::with_capacity(v.len());
    let dst = &mut out.spare_capacity_mut()[..v.len()];
    let chunk = |(o, x): (&mut [std::mem::MaybeUninit<f32>], &[f32])| {
        simd(
            #[inline(always)]
            || {
                for (o, x) in o.iter_mut().zip(x) {
                    o.write(f(*x));
                }
            },
        )
    };
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        dst.par_chunks_mut(CHUNK)
            .zip(v.par_chunks(CHUNK))
            .for_each(chunk);
    }
    #[cfg(target_family = "wasm")]
    dst.chunks_mut(CHUNK).zip(v.chunks(CHUNK)).for_each(chunk);
    // SAFETY: `dst` is the first `v.len()` elements of the spare capacity, and the loops above
    // wrote each of them: chunks of `dst` and of `v` of the same size pair up one to one.
    unsafe { out.set_len(v.len()) };
    out
}

/// The values of a tensor made by [`owned_f32`], to overwrite.
fn values_mut(t: &mut FlexTensor) -> &mut [f32] {
    // `owned_f32` made it f32 and unshared, so this neither copies nor fails.
    t.storage_mut::<f32>()
}

impl FusedBackend for Flex {
    fn gelu_exact(x: FlexTensor) -> FlexTensor {
        let Some(v) = f32_values(&x) else {
            return gelu_ops::<Self>(x);
        };
        let out = map_new(v, gelu_f32);
        FlexTensor::from_data(TensorData::new(out, x.shape()))
    }

    fn gelu_exact_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        const CHUNK: usize = 1 << 14;
        let mut out = match owned_f32(grad) {
            Ok(out) => out,
            Err(grad) => return gelu_backward_ops::<Self>(x, grad),
        };
        let Some(v) = f32_values(&x) else {
            return gelu_backward_ops::<Self>(x, out);
        };
        rows_mut(
            values_mut(&mut out),
            CHUNK,
            #[inline(always)]
            |c, o| {
                for (o, x) in o.iter_mut().zip(&v[c * CHUNK..]) {
                    *o *= gelu_grad_f32(*x);
                }
            },
        );
        out
    }

    fn attention_softmax(scores: FlexTensor, mask: FlexTensor, scale: f64) -> FlexTensor {
        let mut out = match owned_f32(scores) {
            Ok(out) => out,
            Err(scores) => return attention_softmax_ops::<Self>(scores, mask, scale),
        };
        let Some(m) = f32_values(&mask) else {
            return attention_softmax_ops::<Self>(out, mask, scale);
        };
        let shape = out.shape();
        let [_, h, q, n] = [shape[0], shape[1], shape[2], shape[3]];
        let scale = scale as f32;
        rows_mut(
            values_mut(&mut out),
            n,
            #[inline(always)]
            |i, o| {
                let m = &m[(i / (h * q)) * n..][..n];
                for (o, m) in o.iter_mut().zip(m) {
                    *o = *o * scale + m;
                }
                let max = max16(o);
                for o in o.iter_mut() {
                    *o = exp_f32(*o - max);
                }
                let inv = 1.0 / sum16(o);
                o.iter_mut().for_each(|o| *o *= inv);
            },
        );
        out
    }

    fn attention_softmax_backward(y: FlexTensor, grad: FlexTensor, scale: f64) -> FlexTensor {
        let mut out = match owned_f32(grad) {
            Ok(out) => out,
            Err(grad) => return softmax_backward_ops::<Self>(y, grad, scale),
        };
        let Some(yv) = f32_values(&y) else {
            return softmax_backward_ops::<Self>(y, out, scale);
        };
        let shape = y.shape();
        let n = shape[shape.num_dims() - 1];
        let scale = scale as f32;
        rows_mut(
            values_mut(&mut out),
            n,
            #[inline(always)]
            |i, o| {
                let y = &yv[i * n..(i + 1) * n];
                let dot = dot16(y, o);
                for (o, y) in o.iter_mut().zip(y) {
                    *o = scale * y * (*o - dot);
                }
            },
        );
        out
    }

    fn dropout_mask(x: FlexTensor, seed: u64, keep: f64) -> FlexTensor {
        use crate::kernels::mask::{MASK_BLOCK, apply_mask_block};
        let mut out = match owned_f32(x) {
            Ok(out) => out,
            Err(x) => return dropout_ops::<Self>(x, seed, keep),
        };
        rows_mut(
            values_mut(&mut out),
            MASK_BLOCK,
            #[inline(always)]
            |b, o| apply_mask_block(seed, b, keep, o),
        );
        out
    }

    fn matmul(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        #[cfg(not(target_family = "wasm"))]
        if let Some(y) = crate::kernels::gemm::matmul_f32(&a, &b) {
            return y;
        }
        Self::float_matmul(a, b)
    }

    fn matmul_add(c: FlexTensor, a: FlexTensor, b: FlexTensor) -> FlexTensor {
        #[cfg(not(target_family = "wasm"))]
        let c = if a.dtype() == DType::F32 && b.dtype() == DType::F32 {
            match owned_f32(c) {
                Ok(mut c) => {
                    if crate::kernels::gemm::matmul_add_f32(values_mut(&mut c), &a, &b) {
                        return c;
                    }
                    c
                }
                Err(c) => c,
            }
        } else {
            c
        };
        Self::float_add(c, Self::matmul(a, b))
    }

    fn lora_linear(
        x: FlexTensor,
        w: FlexTensor,
        bias: FlexTensor,
        a: FlexTensor,
        b: FlexTensor,
    ) -> FlexTensor {
        lora_linear_parts::<Self>(x, w, bias, a, b).0
    }

    fn gelu_matmul(u: FlexTensor, w: FlexTensor) -> FlexTensor {
        Self::matmul(Self::gelu_exact(u), w)
    }

    fn dropout_matmul(p: FlexTensor, v: FlexTensor, seed: u64, keep: f64) -> FlexTensor {
        Self::matmul(Self::dropout_mask(p, seed, keep), v)
    }

    fn layer_norm_last(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, eps: f64) -> FlexTensor {
        Self::layer_norm(x, gamma, Some(beta), eps)
    }

    fn layer_norm_last_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        grad: FlexTensor,
        eps: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        // ∂x overwrites the gradient in place, row by row (each row's `g` is read before its
        // `∂x` is written).
        let mut dx = match owned_f32(grad) {
            Ok(dx) => dx,
            Err(grad) => return layer_norm_backward_ops::<Self>(x, gamma, grad, eps),
        };
        let (Some(xv), Some(gm)) = (f32_values(&x), f32_values(&gamma)) else {
            return layer_norm_backward_ops::<Self>(x, gamma, dx, eps);
        };
        let shape = x.shape();
        let h = shape[shape.num_dims() - 1];
        // Per row (PyTorch's native_layer_norm_backward): x̂ = (x − μ)/σ, d = g⊙γ,
        // ∂x = (d − mean(d) − x̂·mean(d⊙x̂))/σ; ∂γ = Σ_rows g⊙x̂ and ∂β = Σ_rows g, summed per
        // chunk of rows and then across chunks. The row sums run in 16 lanes ([`sum16`]).
        let partial = |i0: usize, chunk: &mut [f32]| {
            let mut dg = vec![0f32; h];
            let mut db = vec![0f32; h];
            let mut xhat = vec![0f32; h];
            let mut d = vec![0f32; h];
            for (k, o) in chunk.chunks_mut(h).enumerate() {
                let x = &xv[(i0 + k) * h..][..h];
                let mean = sum16(x) / h as f32;
                for (xh, x) in xhat.iter_mut().zip(x) {
                    *xh = x - mean;
                }
                let var = dot16(&xhat, &xhat) / h as f32;
                let rstd = 1.0 / (var + eps as f32).sqrt();
                for (((((xh, d), g), gm), dg), db) in xhat
                    .iter_mut()
                    .zip(d.iter_mut())
                    .zip(o.iter())
                    .zip(gm)
                    .zip(dg.iter_mut())
                    .zip(db.iter_mut())
                {
                    *xh *= rstd;
                    *d = g * gm;
                    *dg += g * *xh;
                    *db += g;
                }
                let (a, b) = (sum16(&d) / h as f32, dot16(&d, &xhat) / h as f32);
                for ((o, d), xh) in o.iter_mut().zip(&d).zip(&xhat) {
                    *o = (d - a - xh * b) * rstd;
                }
            }
            (dg, db)
        };
        let (dg, db) = rows_chunked(values_mut(&mut dx), h, partial);
        (
            dx,
            FlexTensor::from_data(TensorData::new(dg, [h])),
            FlexTensor::from_data(TensorData::new(db, [h])),
        )
    }

    fn layer_norm_last_backward_x(
        x: FlexTensor,
        gamma: FlexTensor,
        grad: FlexTensor,
        eps: f64,
    ) -> FlexTensor {
        Self::layer_norm_last_backward(x, gamma, grad, eps).0
    }
}

/// A flex tensor as contiguous f32 (a copy only for other dtypes or strided views).
#[cfg(any(feature = "wgpu", feature = "web"))]
fn f32_contiguous(t: FlexTensor) -> FlexTensor {
    let t = if t.dtype() == DType::F32 {
        t
    } else {
        Flex::float_cast(t, burn::tensor::FloatDType::F32)
    };
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of tensors made contiguous f32 by [`f32_contiguous`].
#[cfg(any(feature = "wgpu", feature = "web"))]
fn f32_slices<const N: usize>(ts: [&FlexTensor; N]) -> [&[f32]; N] {
    ts.map(|t| t.as_slice::<f32>().unwrap_or_default())
}

/// The DoRA ops on flex: the scale as one fused pass each way over the rayon pool (four
/// element-wise passes forward and three backward as tensor ops), and the row norm as one pass
/// over `W`.
#[cfg(any(feature = "wgpu", feature = "web"))]
impl crate::kernels::wgpu::KernelBackend for Flex {
    /// `‖W_j + s·B_j·A‖` by definition (`Σ_i (w_ij + s·Σ_k a_ik·b_kj)²`, clamped below by
    /// [`crate::kernels::DORA_NORM_EPS_SQ`]), rows of `w` `[in, out]` summed per fixed chunk and
    /// then in chunk order; `gram` is not used.
    fn dora_row_norm(
        w: FlexTensor,
        a: FlexTensor,
        b: FlexTensor,
        _gram: FlexTensor,
        scaling: f32,
    ) -> FlexTensor {
        let (w, a, b) = (f32_contiguous(w), f32_contiguous(a), f32_contiguous(b));
        let (n_in, n_out) = (w.shape()[0], w.shape()[1]);
        let r = a.shape()[1];
        let [wv, av, bv] = f32_slices([&w, &a, &b]);
        let partial = |rows: std::ops::Range<usize>| {
            let mut acc = vec![0f32; n_out];
            let mut delta = vec![0f32; n_out];
            for i in rows {
                delta.iter_mut().for_each(|d| *d = 0.0);
                for k in 0..r {
                    let aik = av[i * r + k] * scaling;
                    for (d, bkj) in delta.iter_mut().zip(&bv[k * n_out..(k + 1) * n_out]) {
                        *d += aik * bkj;
                    }
                }
                for ((s, w), d) in acc
                    .iter_mut()
                    .zip(&wv[i * n_out..(i + 1) * n_out])
                    .zip(&delta)
                {
                    let v = w + d;
                    *s += v * v;
                }
            }
            acc
        };
        let n2 = row_chunk_sums(n_in, n_out, partial);
        let eps = crate::kernels::DORA_NORM_EPS_SQ as f32;
        let norm: Vec<f32> = n2.into_iter().map(|v| v.max(eps).sqrt()).collect();
        FlexTensor::from_data(TensorData::new(norm, [n_out]))
    }

    /// `(base + s·lora) ⊙ (m/n) + bias` in one pass over the rows (`lora` unread when `s` = 0).
    fn dora_scale(
        base: FlexTensor,
        lora: FlexTensor,
        m: FlexTensor,
        norm: FlexTensor,
        bias: FlexTensor,
        scaling: f32,
    ) -> FlexTensor {
        let (m, norm, bias) = (
            f32_contiguous(m),
            f32_contiguous(norm),
            f32_contiguous(bias),
        );
        // The output overwrites `base` in place (the product this op consumes); `f32_contiguous`
        // already made it contiguous f32, so `owned_f32` copies at most.
        let mut out = owned_f32(f32_contiguous(base)).unwrap_or_else(|t| t.to_contiguous());
        let n_out = m.shape()[0];
        let [mv, nv, biasv] = f32_slices([&m, &norm, &bias]);
        let scale: Vec<f32> = mv.iter().zip(nv).map(|(m, n)| m / n).collect();
        if scaling == 0.0 {
            // No low-rank term (already in `base`, `crate::kernels::lora_linear`): `lora` is
            // not read at all (it may be a broadcast view).
            rows_mut(
                values_mut(&mut out),
                n_out,
                #[inline(always)]
                |_, o| {
                    for ((o, c), bias) in o.iter_mut().zip(&scale).zip(biasv) {
                        *o = *o * c + bias;
                    }
                },
            );
            return out;
        }
        let lora = f32_contiguous(lora);
        let [lv] = f32_slices([&lora]);
        rows_mut(
            values_mut(&mut out),
            n_out,
            #[inline(always)]
            |i, o| {
                let l = &lv[i * n_out..][..n_out];
                for (((o, l), c), bias) in o.iter_mut().zip(l).zip(&scale).zip(biasv) {
                    *o = (*o + scaling * l) * c + bias;
                }
            },
        );
        out
    }

    /// `∂base = g ⊙ (m/n)` written and `Σ_rows g ⊙ (y − bias)` summed in the same pass (per fixed
    /// chunk of rows, then in chunk order), divided by `m` at the end.
    fn dora_scale_backward(
        grad: FlexTensor,
        y: FlexTensor,
        m: FlexTensor,
        norm: FlexTensor,
        bias: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        // `∂base` overwrites the gradient in place (each element read before it is written).
        let mut gx = match owned_f32(grad) {
            Ok(gx) => gx,
            Err(grad) => {
                return crate::kernels::wgpu::dora_scale_backward_ops::<Self>(
                    grad, y, m, norm, bias,
                );
            }
        };
        let Some(yv) = f32_values(&y) else {
            return crate::kernels::wgpu::dora_scale_backward_ops::<Self>(gx, y, m, norm, bias);
        };
        let (m, norm, bias) = (
            f32_contiguous(m),
            f32_contiguous(norm),
            f32_contiguous(bias),
        );
        let n_out = m.shape()[0];
        let [mv, nv, biasv] = f32_slices([&m, &norm, &bias]);
        let scale: Vec<f32> = mv.iter().zip(nv).map(|(m, n)| m / n).collect();
        let partial = |i0: usize, chunk: &mut [f32]| {
            let mut gm = vec![0f32; n_out];
            for (k, o) in chunk.chunks_mut(n_out).enumerate() {
                let y = &yv[(i0 + k) * n_out..][..n_out];
                for ((((o, y), c), b), s) in o
                    .iter_mut()
                    .zip(y)
                    .zip(&scale)
                    .zip(biasv)
                    .zip(gm.iter_mut())
                {
                    let g = *o;
                    *o = g * c;
                    *s += g * (y - b);
                }
            }
            (gm, Vec::new())
        };
        let (gm, _) = rows_chunked(values_mut(&mut gx), n_out, partial);
        let gm: Vec<f32> = gm
            .into_iter()
            .zip(mv)
            .map(|(s, &m)| s / if m == 0.0 { 1e-30 } else { m })
            .collect();
        (gx, FlexTensor::from_data(TensorData::new(gm, [n_out])))
    }
}

/// `Σ` of `f(rows)` over fixed chunks of `0..rows` (about four per thread) on the rayon pool,
/// each an `[n]` partial sum, added in chunk order (deterministic for a given thread count).
#[cfg(any(feature = "wgpu", feature = "web"))]
fn row_chunk_sums(
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
fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// On wasm, `f` as it is (the build's own `simd128` setting applies).
#[cfg(target_family = "wasm")]
#[inline(always)]
fn simd<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Elements per rayon task of [`rows_mut`] (whole rows): short rows (the attention softmax's 64
/// keys) go several to a task instead of one task each.
const ROWS_TASK: usize = 1 << 14;

/// Calls `f(row_index, row)` for every row (or fixed block) of length `n` of `out`, rows grouped
/// into tasks of about [`ROWS_TASK`] elements over the rayon pool (sequential on wasm), each task
/// compiled for this CPU's vector width ([`simd`]).
fn rows_mut(out: &mut [f32], n: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let n = n.max(1);
    let per = (ROWS_TASK / n).max(1);
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
fn rows_chunked(
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
    fn in_place_ops_leave_shared_inputs_untouched() {
        // An input that something else still holds (a clone) is copied, not overwritten; a
        // unique one is overwritten, with the same result either way.
        let t = |v: Vec<f32>, shape: [usize; 2]| FlexTensor::from_data(TensorData::new(v, shape));
        let x: Vec<f32> = (0..512).map(|i| (i as f32 - 256.0) / 64.0).collect();
        let g: Vec<f32> = (0..512)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0)
            .collect();
        let held = t(g.clone(), [8, 64]);
        let shared = Flex::gelu_exact_backward(t(x.clone(), [8, 64]), held.clone());
        assert_eq!(held.as_slice::<f32>(), Some(&g[..]), "shared grad modified");
        let own = t(g.clone(), [8, 64]);
        let buffer = own.storage::<f32>().as_ptr();
        let unique = Flex::gelu_exact_backward(t(x.clone(), [8, 64]), own);
        assert_eq!(
            unique.storage::<f32>().as_ptr(),
            buffer,
            "a unique grad is reused"
        );
        assert_eq!(shared.as_slice::<f32>(), unique.as_slice::<f32>());
        let want: Vec<f32> = x
            .iter()
            .zip(&g)
            .map(|(x, g)| g * gelu_grad_f32(*x))
            .collect();
        assert_eq!(unique.as_slice::<f32>(), Some(&want[..]));

        let scores = FlexTensor::from_data(TensorData::new(x.clone(), [1, 2, 4, 64]));
        let mask = t(vec![0.0; 64], [1, 64]);
        let y = Flex::attention_softmax(scores.clone(), mask, 0.5);
        assert_eq!(
            scores.as_slice::<f32>(),
            Some(&x[..]),
            "shared scores modified"
        );
        for row in y.as_slice::<f32>().unwrap_or_default().chunks(64) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
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
