//! [`FusedBackend`] on the flex CPU backend: each op one pass over contiguous f32 data, split
//! over the rayon pool, with branch-free `exp` and `erf` so the loops vectorise; other dtypes
//! and strided views take the tensor-op compositions of [`super::ops`].

use burn::backend::flex::FlexTensor;
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::{DType, TensorData};

use super::FusedBackend;
use super::cpu::*;
use super::ops::*;

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
    if is_owned_f32(&t) {
        return Ok(t);
    }
    let Some(values) = f32_values(&t).map(<[f32]>::to_vec) else {
        return Err(t);
    };
    Ok(FlexTensor::from_data(TensorData::new(values, t.shape())))
}

/// Whether `t` is a contiguous f32 tensor that owns its whole buffer alone (which
/// [`owned_f32`] returns as it is).
fn is_owned_f32(t: &FlexTensor) -> bool {
    let n = t.shape().num_elements();
    t.dtype() == DType::F32
        && t.layout().contiguous_offsets() == Some((0, n))
        && t.storage::<f32>().len() == n
        && t.is_unique()
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
        use crate::kernels::mask::{MASK_BLOCK, apply_mask_block, mask_block_into};
        // An input something else holds (the softmax output its backward keeps, a gradient
        // shared by both sides of a residual add) is read once into a new buffer, in parallel
        // blocks, rather than copied first and masked in place.
        if !is_owned_f32(&x)
            && let Some(v) = f32_values(&x)
        {
            let out = map_blocks_new(
                v,
                MASK_BLOCK,
                #[inline(always)]
                |b, x, o| mask_block_into(seed, b, keep, x, o),
            );
            return FlexTensor::from_data(TensorData::new(out, x.shape()));
        }
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
        let shape = x.shape();
        let h = shape[shape.num_dims() - 1];
        let (Some(v), Some(g), Some(b)) = (f32_values(&x), f32_values(&gamma), f32_values(&beta))
        else {
            return Self::layer_norm(x, gamma, Some(beta), eps);
        };
        if h == 0 || g.len() != h || b.len() != h {
            return Self::layer_norm(x, gamma, Some(beta), eps);
        }
        let out = map_blocks_new(
            v,
            h * rows_per_task(h),
            #[inline(always)]
            |_, x, o| {
                for (x, o) in x.chunks(h).zip(o.chunks_mut(h)) {
                    layer_norm_row(x, (g, b), eps as f32, o);
                }
            },
        );
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn add_layer_norm(
        y: FlexTensor,
        r: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        eps: f64,
    ) -> (FlexTensor, FlexTensor) {
        let shape = y.shape();
        let h = shape[shape.num_dims() - 1];
        let y = match (f32_values(&r), f32_values(&gamma), f32_values(&beta)) {
            (Some(rv), Some(g), Some(b))
                if h > 0
                    && r.shape() == shape
                    && rv.len() == shape.num_elements()
                    && g.len() == h
                    && b.len() == h =>
            {
                match owned_f32(y) {
                    Ok(mut z) => {
                        // Per row: z = y + r in place, then LayerNorm(z) into the new buffer.
                        let out = rows_pair_new(
                            values_mut(&mut z),
                            rv,
                            h,
                            #[inline(always)]
                            |z, r, o| {
                                for (z, r) in z.iter_mut().zip(r) {
                                    *z += r;
                                }
                                for (z, o) in z.chunks(h).zip(o.chunks_mut(h)) {
                                    layer_norm_row(z, (g, b), eps as f32, o);
                                }
                            },
                        );
                        return (z, FlexTensor::from_data(TensorData::new(out, shape)));
                    }
                    Err(y) => y,
                }
            }
            _ => y,
        };
        let z = Self::float_add(y, r);
        (z.clone(), Self::layer_norm_last(z, gamma, beta, eps))
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
fn f32_slices<const N: usize>(ts: [&FlexTensor; N]) -> [&[f32]; N] {
    ts.map(|t| t.as_slice::<f32>().unwrap_or_default())
}

/// The DoRA ops on flex: the scale as one fused pass each way over the rayon pool (four
/// element-wise passes forward and three backward as tensor ops), and the row norm as one pass
/// over `W`.
impl crate::kernels::dora::DoraBackend for Flex {
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
                return crate::kernels::dora::dora_scale_backward_ops::<Self>(
                    grad, y, m, norm, bias,
                );
            }
        };
        let Some(yv) = f32_values(&y) else {
            return crate::kernels::dora::dora_scale_backward_ops::<Self>(gx, y, m, norm, bias);
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

#[cfg(test)]
mod tests {
    use super::*;

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

        // Dropout over three mask blocks: a held input is read into a new buffer block by block,
        // a unique one masked in place; both equal the input times the host mask of the seed.
        use crate::kernels::mask::{MASK_BLOCK, mask as host_mask};
        let n = 2 * MASK_BLOCK + 5;
        let v: Vec<f32> = (0..n).map(|i| (i % 97) as f32 - 48.0).collect();
        let want: Vec<f32> = v
            .iter()
            .zip(host_mask(5, n, 0.9))
            .map(|(v, m)| v * m)
            .collect();
        let held = t(v.clone(), [1, n]);
        let out = Flex::dropout_mask(held.clone(), 5, 0.9);
        assert_eq!(held.as_slice::<f32>(), Some(&v[..]), "held input modified");
        assert_ne!(
            out.storage::<f32>().as_ptr(),
            held.storage::<f32>().as_ptr()
        );
        assert_eq!(out.as_slice::<f32>(), Some(&want[..]));
        let own = t(v.clone(), [1, n]);
        let buffer = own.storage::<f32>().as_ptr();
        let out = Flex::dropout_mask(own, 5, 0.9);
        assert_eq!(
            out.storage::<f32>().as_ptr(),
            buffer,
            "a unique input is reused"
        );
        assert_eq!(out.as_slice::<f32>(), Some(&want[..]));
    }
}
