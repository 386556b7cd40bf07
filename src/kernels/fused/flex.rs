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
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding then subtracting 1.5·2²³ rounds to the nearest integer (no `floor` call).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `erf(x)` for f32 from Abramowitz and Stegun 7.1.26 (1.5e-7 absolute in exact arithmetic,
/// under 5e-7 in f32, tested), the form PyTorch's vectorised CPU `erf` uses, branch-free so
/// loops over it vectorise.
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_7) * t - 0.284_496_72) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp_f32(-a * a)).copysign(x)
}

#[inline(always)]
fn gelu_f32(x: f32) -> f32 {
    x * 0.5 * (1.0 + erf_f32(x * FRAC_1_SQRT_2 as f32))
}

#[inline(always)]
fn gelu_grad_f32(x: f32) -> f32 {
    let phi = 0.5 * (1.0 + erf_f32(x * FRAC_1_SQRT_2 as f32));
    phi + x * exp_f32(-0.5 * x * x) * FRAC_1_SQRT_2PI as f32
}

/// Contiguous f32 values of a flex tensor, or `None` (other dtypes, strided views).
fn f32_values(t: &FlexTensor) -> Option<&[f32]> {
    if t.dtype() == DType::F32 && t.is_contiguous() {
        t.as_slice::<f32>()
    } else {
        None
    }
}

/// `out[i] = f(a[i], b[i])` over the rayon pool (sequential on wasm).
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    let mut out = vec![0f32; a.len()];
    rows_mut(
        &mut out,
        CHUNK,
        #[inline(always)]
        |c, o| {
            let (a, b) = (&a[c * CHUNK..], &b[c * CHUNK..]);
            for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                *o = f(*a, *b);
            }
        },
    );
    out
}

impl FusedBackend for Flex {
    fn gelu_exact(x: FlexTensor) -> FlexTensor {
        let Some(v) = f32_values(&x) else {
            return gelu_ops::<Self>(x);
        };
        let out = zip_map(v, v, |a, _| gelu_f32(a));
        FlexTensor::from_data(TensorData::new(out, x.shape()))
    }

    fn gelu_exact_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (Some(v), Some(g)) = (f32_values(&x), f32_values(&grad)) else {
            return gelu_backward_ops::<Self>(x, grad);
        };
        let out = zip_map(v, g, |a, g| g * gelu_grad_f32(a));
        FlexTensor::from_data(TensorData::new(out, x.shape()))
    }

    fn attention_softmax(scores: FlexTensor, mask: FlexTensor, scale: f64) -> FlexTensor {
        let (Some(x), Some(m)) = (f32_values(&scores), f32_values(&mask)) else {
            return attention_softmax_ops::<Self>(scores, mask, scale);
        };
        let shape = scores.shape();
        let [_, h, q, n] = [shape[0], shape[1], shape[2], shape[3]];
        let scale = scale as f32;
        let mut out = vec![0f32; x.len()];
        rows_mut(
            &mut out,
            n,
            #[inline(always)]
            |i, o| {
                let (x, m) = (&x[i * n..(i + 1) * n], &m[(i / (h * q)) * n..][..n]);
                let mut max = f32::NEG_INFINITY;
                for ((o, x), m) in o.iter_mut().zip(x).zip(m) {
                    *o = x * scale + m;
                    max = max.max(*o);
                }
                let mut sum = 0f32;
                for o in o.iter_mut() {
                    *o = exp_f32(*o - max);
                    sum += *o;
                }
                let inv = 1.0 / sum;
                o.iter_mut().for_each(|o| *o *= inv);
            },
        );
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn attention_softmax_backward(y: FlexTensor, grad: FlexTensor, scale: f64) -> FlexTensor {
        let (Some(yv), Some(g)) = (f32_values(&y), f32_values(&grad)) else {
            return softmax_backward_ops::<Self>(y, grad, scale);
        };
        let shape = y.shape();
        let n = shape[shape.num_dims() - 1];
        let scale = scale as f32;
        let mut out = vec![0f32; yv.len()];
        rows_mut(
            &mut out,
            n,
            #[inline(always)]
            |i, o| {
                let (y, g) = (&yv[i * n..(i + 1) * n], &g[i * n..(i + 1) * n]);
                let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                for ((o, y), g) in o.iter_mut().zip(y).zip(g) {
                    *o = scale * y * (g - dot);
                }
            },
        );
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn dropout_mask(x: FlexTensor, seed: u64, keep: f64) -> FlexTensor {
        use crate::kernels::mask::{MASK_BLOCK, fill_mask_block};
        let Some(v) = f32_values(&x) else {
            return dropout_ops::<Self>(x, seed, keep);
        };
        let mut out = vec![0f32; v.len()];
        rows_mut(
            &mut out,
            MASK_BLOCK,
            #[inline(always)]
            |b, o| {
                fill_mask_block(seed, b, keep, o);
                for (o, x) in o.iter_mut().zip(&v[b * MASK_BLOCK..]) {
                    *o *= x;
                }
            },
        );
        FlexTensor::from_data(TensorData::new(out, x.shape()))
    }

    fn matmul(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        #[cfg(not(target_family = "wasm"))]
        if let Some(y) = crate::kernels::gemm::matmul_f32(&a, &b) {
            return y;
        }
        Self::float_matmul(a, b)
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
        let (Some(xv), Some(gm), Some(g)) = (f32_values(&x), f32_values(&gamma), f32_values(&grad))
        else {
            return layer_norm_backward_ops::<Self>(x, gamma, grad, eps);
        };
        let shape = x.shape();
        let h = shape[shape.num_dims() - 1];
        let mut dx = vec![0f32; xv.len()];
        // Per row (PyTorch's native_layer_norm_backward): x̂ = (x − μ)/σ, d = g⊙γ,
        // ∂x = (d − mean(d) − x̂·mean(d⊙x̂))/σ; ∂γ = Σ_rows g⊙x̂ and ∂β = Σ_rows g, summed per
        // chunk of rows and then across chunks.
        let partial = |i0: usize, chunk: &mut [f32]| {
            let mut dg = vec![0f32; h];
            let mut db = vec![0f32; h];
            let mut xhat = vec![0f32; h];
            for (k, o) in chunk.chunks_mut(h).enumerate() {
                let i = i0 + k;
                let (x, g) = (&xv[i * h..(i + 1) * h], &g[i * h..(i + 1) * h]);
                let mean = x.iter().sum::<f32>() / h as f32;
                let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
                let rstd = 1.0 / (var + eps as f32).sqrt();
                let (mut a, mut b) = (0f32, 0f32);
                for j in 0..h {
                    xhat[j] = (x[j] - mean) * rstd;
                    let d = g[j] * gm[j];
                    a += d;
                    b += d * xhat[j];
                    dg[j] += g[j] * xhat[j];
                    db[j] += g[j];
                }
                let (a, b) = (a / h as f32, b / h as f32);
                for j in 0..h {
                    o[j] = (g[j] * gm[j] - a - xhat[j] * b) * rstd;
                }
            }
            (dg, db)
        };
        let (dg, db) = rows_chunked(&mut dx, h, partial);
        (
            FlexTensor::from_data(TensorData::new(dx, shape)),
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

    /// `(base + s·lora) ⊙ (m/n) + bias` in one pass over the rows.
    fn dora_scale(
        base: FlexTensor,
        lora: FlexTensor,
        m: FlexTensor,
        norm: FlexTensor,
        bias: FlexTensor,
        scaling: f32,
    ) -> FlexTensor {
        let shape = base.shape();
        let (base, lora) = (f32_contiguous(base), f32_contiguous(lora));
        let (m, norm, bias) = (
            f32_contiguous(m),
            f32_contiguous(norm),
            f32_contiguous(bias),
        );
        let n_out = m.shape()[0];
        let [bv, lv, mv, nv, biasv] = f32_slices([&base, &lora, &m, &norm, &bias]);
        let scale: Vec<f32> = mv.iter().zip(nv).map(|(m, n)| m / n).collect();
        let mut out = vec![0f32; bv.len()];
        rows_mut(
            &mut out,
            n_out,
            #[inline(always)]
            |i, o| {
                let (b, l) = (&bv[i * n_out..][..n_out], &lv[i * n_out..][..n_out]);
                for ((((o, b), l), c), bias) in o.iter_mut().zip(b).zip(l).zip(&scale).zip(biasv) {
                    *o = (b + scaling * l) * c + bias;
                }
            },
        );
        FlexTensor::from_data(TensorData::new(out, shape))
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
        let (Some(g), Some(yv)) = (f32_values(&grad), f32_values(&y)) else {
            return crate::kernels::wgpu::dora_scale_backward_ops::<Self>(grad, y, m, norm, bias);
        };
        let shape = grad.shape();
        let (m, norm, bias) = (
            f32_contiguous(m),
            f32_contiguous(norm),
            f32_contiguous(bias),
        );
        let n_out = m.shape()[0];
        let [mv, nv, biasv] = f32_slices([&m, &norm, &bias]);
        let scale: Vec<f32> = mv.iter().zip(nv).map(|(m, n)| m / n).collect();
        let mut gx = vec![0f32; g.len()];
        let partial = |i0: usize, chunk: &mut [f32]| {
            let mut gm = vec![0f32; n_out];
            for (k, o) in chunk.chunks_mut(n_out).enumerate() {
                let at = (i0 + k) * n_out;
                let (g, y) = (&g[at..at + n_out], &yv[at..at + n_out]);
                for (((((o, g), y), c), b), s) in o
                    .iter_mut()
                    .zip(g)
                    .zip(y)
                    .zip(&scale)
                    .zip(biasv)
                    .zip(gm.iter_mut())
                {
                    *o = g * c;
                    *s += g * (y - b);
                }
            }
            (gm, Vec::new())
        };
        let (gm, _) = rows_chunked(&mut gx, n_out, partial);
        let gm: Vec<f32> = gm
            .into_iter()
            .zip(mv)
            .map(|(s, &m)| s / if m == 0.0 { 1e-30 } else { m })
            .collect();
        (
            FlexTensor::from_data(TensorData::new(gx, shape)),
            FlexTensor::from_data(TensorData::new(gm, [n_out])),
        )
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
/// into an FMA nor reorders f32 sums, at any vector width. Native builds only.
#[cfg(not(target_family = "wasm"))]
#[inline(always)]
fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// Calls `f(row_index, row)` for every row (or fixed block) of length `n` of `out`, split over the
/// rayon pool (sequential on wasm), each call compiled for this CPU's vector width ([`simd`]).
fn rows_mut(out: &mut [f32], n: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let n = n.max(1);
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(n).enumerate().for_each(|(i, o)| {
            simd(
                #[inline(always)]
                || f(i, o),
            )
        });
    }
    #[cfg(target_family = "wasm")]
    for (i, o) in out.chunks_mut(n).enumerate() {
        f(i, o);
    }
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
