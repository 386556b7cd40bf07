//! Differentiable fused ops (one backend extension, [`FusedBackend`]) for the element-wise and
//! row-wise parts of the encoder, each with a hand-written backward that keeps one tensor.
//!
//! Built from tensor ops, autodiff keeps every intermediate and runs each piece as its own
//! element-wise pass, which on the flex CPU backend is single-threaded. Here:
//!
//! | op | saved for backward | flex | Cube (wgpu) |
//! |---|---|---|---|
//! | exact GELU `x·Φ(x)` | `x` (instead of `x`, `x/√2`, `Φ(x)`) | one fused pass each way over the rayon pool | tensor ops |
//! | attention softmax `softmax(s·x + mask)` | the output `y` | scale, mask and softmax in one pass per row; backward `s·y⊙(g − Σ g⊙y)` one pass per row | tensor ops, in the dtype of `x` |
//! | dropout `x⊙mask(seed)` | nothing (the mask is redrawn from its seed) | mask blocks drawn in parallel while multiplying | WGSL kernel `shaders/dropout.wgsl`, a counter-based hash mask (a different mask from flex's for the same seed) |
//! | `gelu(u)·w`, `output.dense`'s first LoRA projection from the pre-activation | `u` (kept by GELU anyway) and `w`: `gelu(u)` is recomputed for `∂w` | GELU pass then flex's matmul | GELU tensor ops then Burn's matmul |
//! | attention context `dropout(p)·v` | `p` (the softmax output, kept by the softmax anyway) and `v`: the dropped probabilities are redrawn from the seed, not kept | dropout pass then flex's matmul | dropout kernel then Burn's matmul |
//! | LayerNorm over the last axis | `x` (mean and `1/σ` recomputed) | flex's fused row LayerNorm; backward one pass per row, `∂γ`, `∂β` summed per fixed chunk in order | WGSL kernels `shaders/layer_norm.wgsl` and `layer_norm_backward.wgsl` (one workgroup per row, f32 or f16 rows, f32 statistics; `∂x` alone when `γ`, `β` are frozen), tensor ops in f32 for `∂γ`, `∂β` when they are trained and with `--no-kernels` |
//!
//! `crate::kernels` routes these here on flex (f32) and wgpu (f32 and f16) devices.
//! On lavapipe, MiniLM LoRA r = 8, batch 8 × 128, the softmax and LayerNorm ops cut the
//! activations autodiff keeps after the forward from 308 to 272 MiB in f32 and from 164 to
//! 136 MiB in f16 (the f16 LayerNorm had kept its centred and normalised rows in f32); the
//! LayerNorm kernels also drop the `[rows, h]` f32 temporaries of the tensor-op version.
//!
//! The backward formulas are PyTorch's (`gelu_backward`, `_softmax_backward_data`,
//! `native_layer_norm_backward`); `tests/parity.rs` checks them against PyTorch (GELU) and
//! against Burn's autodiff of the tensor-op references.

#[cfg(any(feature = "wgpu", feature = "web"))]
use burn::backend::Cube;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::{
    AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension, tensor::FloatTensor,
};
use burn::tensor::{DType, Tensor, TensorData};

const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// `1/√(2π)`, the standard normal density at 0.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Fused ops with hand-written backwards (see the module table).
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "web")))]
pub trait FusedBackend: Backend {
    /// `x·Φ(x)`, any shape, same dtype.
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `grad·(Φ(x) + x·φ(x))`, the gradient of [`FusedBackend::gelu_exact`] at `x`.
    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `softmax(scale·scores + mask)` over the last axis: `scores` `[b, h, q, k]`, `mask`
    /// `[b, k]` (additive, per batch row and key) → `[b, h, q, k]`.
    fn attention_softmax(
        scores: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;

    /// `scale·y⊙(grad − Σ_last grad⊙y)`, the gradient of [`FusedBackend::attention_softmax`]
    /// with respect to `scores`, from its output `y`.
    fn attention_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;

    /// `x ⊙ mask` with the dropout mask of `seed` ([`crate::model::dropout::mask`]); also its
    /// own gradient (the backward multiplies the gradient by the same mask).
    fn dropout_mask(x: FloatTensor<Self>, seed: u64, keep: f64) -> FloatTensor<Self>;

    /// `gelu(u) · w`, the first LoRA projection of `output.dense` from the pre-activation:
    /// `u` `[rows, in]`, `w` `[in, r]` → `[rows, r]`. Its backward keeps `u` (which GELU keeps
    /// anyway) and `w`, and recomputes `gelu(u)` for `∂w`, instead of keeping the `[rows, in]`
    /// activation as a matmul after GELU would.
    fn gelu_matmul(u: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `dropout(p) · v`, the attention context from the probabilities: `p` `[.., m, k]`, `v`
    /// `[.., k, n]` → `[.., m, n]`, the dropout of [`FusedBackend::dropout_mask`] with `seed`.
    /// Its backward keeps `p` (which the softmax keeps anyway) and `v`, and redraws the dropped
    /// probabilities, instead of keeping them as a matmul after a dropout would.
    fn dropout_matmul(
        p: FloatTensor<Self>,
        v: FloatTensor<Self>,
        seed: u64,
        keep: f64,
    ) -> FloatTensor<Self>;

    /// LayerNorm over the last axis: `x` `[.., h]`, `gamma`, `beta` `[h]`.
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;

    /// Gradients of [`FusedBackend::layer_norm_last`] at `x`: `(∂x [.., h], ∂γ [h], ∂β [h])`.
    fn layer_norm_last_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `∂x` alone of [`FusedBackend::layer_norm_last`] (frozen `γ`, `β`, as with adapters).
    fn layer_norm_last_backward_x(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
}

/// Whether `device` (plain or autodiff) runs the op: flex, and wgpu in builds with wgpu.
pub fn runs_on(device: &burn::tensor::Device) -> bool {
    use burn::backend::DispatchDevice;
    match device.clone().inner().as_dispatch() {
        DispatchDevice::Flex(_) => true,
        #[cfg(any(feature = "wgpu", feature = "web"))]
        DispatchDevice::Cube(_) => super::is_wgpu(device),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Whether `device` is a flex (CPU) device.
pub fn is_flex(device: &burn::tensor::Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        burn::backend::DispatchDevice::Flex(_)
    )
}

/// [`crate::kernels::gelu`] through the extension.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedBackend>::gelu_exact(
        x.into_dispatch(),
    ))
}

/// [`crate::kernels::attention_softmax`] through the extension.
pub fn attention_softmax(scores: Tensor<4>, mask: Tensor<2>, scale: f64) -> Tensor<4> {
    Tensor::from_dispatch(
        <burn::backend::Dispatch as FusedBackend>::attention_softmax(
            scores.into_dispatch(),
            mask.into_dispatch(),
            scale,
        ),
    )
}

/// [`crate::kernels::dropout`] through the extension.
pub fn dropout<const D: usize>(x: Tensor<D>, seed: u64, keep: f64) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedBackend>::dropout_mask(
        x.into_dispatch(),
        seed,
        keep,
    ))
}

/// [`crate::kernels::gelu_matmul`] through the extension.
pub fn gelu_matmul(u: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedBackend>::gelu_matmul(
        u.into_dispatch(),
        w.into_dispatch(),
    ))
}

/// [`crate::kernels::dropout_matmul`] through the extension.
pub fn dropout_matmul<const D: usize>(
    p: Tensor<D>,
    v: Tensor<D>,
    seed: u64,
    keep: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedBackend>::dropout_matmul(
        p.into_dispatch(),
        v.into_dispatch(),
        seed,
        keep,
    ))
}

/// [`crate::kernels::layer_norm`] through the extension.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedBackend>::layer_norm_last(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps,
    ))
}

/// `Φ(x)` from tensor ops of backend `B`.
fn phi_ops<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let e = B::float_erf(B::float_mul_scalar(x, FRAC_1_SQRT_2.into()));
    B::float_add_scalar(B::float_mul_scalar(e, 0.5.into()), 0.5.into())
}

fn gelu_ops<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul(x.clone(), phi_ops::<B>(x))
}

fn gelu_backward_ops<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    // φ(x) = exp(-x²/2)/√(2π)
    let density = B::float_mul_scalar(
        B::float_exp(B::float_mul_scalar(
            B::float_mul(x.clone(), x.clone()),
            (-0.5).into(),
        )),
        FRAC_1_SQRT_2PI.into(),
    );
    let d = B::float_add(phi_ops::<B>(x.clone()), B::float_mul(x, density));
    B::float_mul(grad, d)
}

fn attention_softmax_ops<B: Backend>(
    scores: FloatTensor<B>,
    mask: FloatTensor<B>,
    scale: f64,
) -> FloatTensor<B> {
    let [b, k] = [mask.shape()[0], mask.shape()[1]];
    let mask = B::float_reshape(mask, [b, 1, 1, k].into());
    let mask = cast_to::<B>(mask, scores.dtype());
    B::softmax(
        B::float_add(B::float_mul_scalar(scores, scale.into()), mask),
        3,
    )
}

/// `x ⊙ mask(seed)` with the mask built on the host and uploaded (any backend, any dtype).
fn dropout_ops<B: Backend>(x: FloatTensor<B>, seed: u64, keep: f64) -> FloatTensor<B> {
    let shape = x.shape();
    let mask = crate::model::dropout::mask(seed, shape.num_elements(), keep);
    let mask = B::float_from_data(TensorData::new(mask, shape), &x.device());
    let mask = cast_to::<B>(mask, x.dtype());
    B::float_mul(x, mask)
}

/// `t` cast to `dtype` (a no-op when it already has it).
pub(crate) fn cast_to<B: Backend>(t: FloatTensor<B>, dtype: DType) -> FloatTensor<B> {
    if t.dtype() == dtype {
        t
    } else {
        B::float_cast(t, dtype.into())
    }
}

fn softmax_backward_ops<B: Backend>(
    y: FloatTensor<B>,
    grad: FloatTensor<B>,
    scale: f64,
) -> FloatTensor<B> {
    let last = y.shape().num_dims() - 1;
    let dot = B::float_sum_dim(B::float_mul(grad.clone(), y.clone()), last);
    B::float_mul_scalar(B::float_mul(y, B::float_sub(grad, dot)), scale.into())
}

/// `x` reshaped to `[rows, h]` and the shape to restore.
fn rows_of<B: Backend>(x: FloatTensor<B>) -> (FloatTensor<B>, burn::tensor::Shape) {
    let shape = x.shape();
    let h = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / h.max(1);
    (B::float_reshape(x, [rows, h].into()), shape)
}

fn layer_norm_backward_ops<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
    eps: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let (x, shape) = rows_of::<B>(x);
    let (g, _) = rows_of::<B>(grad);
    let h = shape[shape.num_dims() - 1];
    let mean = B::float_mean_dim(x.clone(), 1);
    let centered = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), 1);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, eps.into())));
    let xhat = B::float_mul(centered, rstd.clone());
    let gamma = B::float_reshape(gamma, [1, h].into());
    let dbeta = B::float_reshape(B::float_sum_dim(g.clone(), 0), [h].into());
    let dgamma = B::float_reshape(
        B::float_sum_dim(B::float_mul(g.clone(), xhat.clone()), 0),
        [h].into(),
    );
    let dxhat = B::float_mul(g, gamma);
    let a = B::float_mean_dim(dxhat.clone(), 1);
    let b = B::float_mean_dim(B::float_mul(dxhat.clone(), xhat.clone()), 1);
    let dx = B::float_mul(
        B::float_sub(B::float_sub(dxhat, a), B::float_mul(xhat, b)),
        rstd,
    );
    (B::float_reshape(dx, shape), dgamma, dbeta)
}

#[cfg(any(feature = "wgpu", feature = "web"))]
impl FusedBackend for Cube {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_ops::<Self>(x)
    }

    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_backward_ops::<Self>(x, grad)
    }

    fn attention_softmax(
        scores: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        attention_softmax_ops::<Self>(scores, mask, scale)
    }

    fn attention_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        softmax_backward_ops::<Self>(y, grad, scale)
    }

    fn dropout_mask(x: FloatTensor<Self>, seed: u64, keep: f64) -> FloatTensor<Self> {
        if use_wgsl(&x) {
            return super::wgpu::dropout_hashed(x, seed, keep);
        }
        dropout_ops::<Self>(x, seed, keep)
    }

    fn gelu_matmul(u: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(Self::gelu_exact(u), w)
    }

    fn dropout_matmul(
        p: FloatTensor<Self>,
        v: FloatTensor<Self>,
        seed: u64,
        keep: f64,
    ) -> FloatTensor<Self> {
        Self::float_matmul(Self::dropout_mask(p, seed, keep), v)
    }

    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        if use_wgsl(&x) {
            return super::wgpu::layer_norm_rows(x, gamma, beta, eps);
        }
        // f16 rows are normalised in f32 (their squares can overflow f16), as autocast.
        let dtype = x.dtype();
        let x = cast_to::<Self>(x, DType::F32);
        cast_to::<Self>(Self::layer_norm(x, gamma, Some(beta), eps), dtype)
    }

    fn layer_norm_last_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let dtype = x.dtype();
        let x = cast_to::<Self>(x, DType::F32);
        let grad = cast_to::<Self>(grad, DType::F32);
        let (dx, dgamma, dbeta) = layer_norm_backward_ops::<Self>(x, gamma, grad, eps);
        (cast_to::<Self>(dx, dtype), dgamma, dbeta)
    }

    fn layer_norm_last_backward_x(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        if use_wgsl(&x) {
            return super::wgpu::layer_norm_rows_backward(x, gamma, grad, eps);
        }
        Self::layer_norm_last_backward(x, gamma, grad, eps).0
    }
}

/// Whether the Cube ops run their WGSL kernels on `x`: a wgpu tensor in f32 or f16, the
/// kernels on (`--no-kernels` keeps the tensor-op compositions).
#[cfg(any(feature = "wgpu", feature = "web"))]
fn use_wgsl(x: &FloatTensor<Cube>) -> bool {
    super::kernels_enabled()
        && super::wgpu::is_wgpu_tensor(x)
        && matches!(x.dtype(), DType::F32 | DType::F16)
}

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
    rows_mut(&mut out, CHUNK, |c, o| {
        let (a, b) = (&a[c * CHUNK..], &b[c * CHUNK..]);
        for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
            *o = f(*a, *b);
        }
    });
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
        rows_mut(&mut out, n, |i, o| {
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
        });
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
        rows_mut(&mut out, n, |i, o| {
            let (y, g) = (&yv[i * n..(i + 1) * n], &g[i * n..(i + 1) * n]);
            let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
            for ((o, y), g) in o.iter_mut().zip(y).zip(g) {
                *o = scale * y * (g - dot);
            }
        });
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn dropout_mask(x: FlexTensor, seed: u64, keep: f64) -> FlexTensor {
        use crate::model::dropout::{MASK_BLOCK, fill_mask_block};
        let Some(v) = f32_values(&x) else {
            return dropout_ops::<Self>(x, seed, keep);
        };
        let mut out = vec![0f32; v.len()];
        rows_mut(&mut out, MASK_BLOCK, |b, o| {
            fill_mask_block(seed, b, keep, o);
            for (o, x) in o.iter_mut().zip(&v[b * MASK_BLOCK..]) {
                *o *= x;
            }
        });
        FlexTensor::from_data(TensorData::new(out, x.shape()))
    }

    fn gelu_matmul(u: FlexTensor, w: FlexTensor) -> FlexTensor {
        Self::float_matmul(Self::gelu_exact(u), w)
    }

    fn dropout_matmul(p: FlexTensor, v: FlexTensor, seed: u64, keep: f64) -> FlexTensor {
        Self::float_matmul(Self::dropout_mask(p, seed, keep), v)
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

/// Calls `f(row_index, row)` for every row (or fixed block) of length `n` of `out`, split over the
/// rayon pool (sequential on wasm).
fn rows_mut(out: &mut [f32], n: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let n = n.max(1);
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(n).enumerate().for_each(|(i, o)| f(i, o));
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
            .map(|(c, chunk)| f(c * per, chunk))
            .collect();
        parts.into_iter().fold((vec![0f32; n], vec![0f32; n]), add)
    }
    #[cfg(target_family = "wasm")]
    {
        let _ = (rows, add);
        f(0, out)
    }
}

/// The backward of a one-input op: `∂x = f(state, g)` (GELU, attention softmax, dropout).
struct UnaryBackward<B: Backend, S> {
    f: fn(S, B::FloatTensorPrimitive) -> B::FloatTensorPrimitive,
}

impl<B: Backend, S> std::fmt::Debug for UnaryBackward<B, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnaryBackward")
    }
}

impl<B: Backend, S: Clone + Send + std::fmt::Debug + 'static> Backward<B, 1>
    for UnaryBackward<B, S>
{
    type State = S;

    fn backward(self, ops: Ops<S, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [n_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = n_x {
            grads.register::<B>(node.id, (self.f)(ops.state, grad));
        }
    }
}

/// The backward of `y = f(a)·b` (matmul over the last two axes) that keeps `a` and `b` and
/// recomputes `f(a)` instead of keeping it: `∂b = f(a)ᵀ·g`, `∂a = df(a, g·bᵀ)` with `df` the
/// vector-Jacobian product of `f` (the attention context `dropout(p)·v`, `gelu(u)·A`).
struct MapMatmulBackward<B: Backend, S> {
    f: fn(&S, B::FloatTensorPrimitive) -> B::FloatTensorPrimitive,
    df: fn(&S, B::FloatTensorPrimitive, B::FloatTensorPrimitive) -> B::FloatTensorPrimitive,
}

impl<B: Backend, S> std::fmt::Debug for MapMatmulBackward<B, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MapMatmulBackward")
    }
}

impl<B: Backend, S: Clone + Send + std::fmt::Debug + 'static> Backward<B, 2>
    for MapMatmulBackward<B, S>
{
    type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive, S);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [n_a, n_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (a, b, s) = ops.state;
        let last = a.shape().num_dims() - 1;
        let grad = cast_to::<B>(grad, a.dtype());
        if let Some(node) = n_b {
            let fa_t = B::float_swap_dims((self.f)(&s, a.clone()), last - 1, last);
            grads.register::<B>(node.id, B::float_matmul(fa_t, grad.clone()));
        }
        if let Some(node) = n_a {
            let dfa = B::float_matmul(grad, B::float_swap_dims(b, last - 1, last));
            grads.register::<B>(node.id, (self.df)(&s, a, dfa));
        }
    }
}

/// `forward(a, b, s)` = `f(a)·b` on the inner backend, recorded with `backward`, which keeps `a`
/// and `b` (handles, no copies) and `s`.
fn map_matmul<B: FusedBackend, C: CheckpointStrategy, S>(
    a: FloatTensor<Autodiff<B, C>>,
    b: FloatTensor<Autodiff<B, C>>,
    s: S,
    backward: MapMatmulBackward<B, S>,
    forward: fn(B::FloatTensorPrimitive, B::FloatTensorPrimitive, &S) -> B::FloatTensorPrimitive,
) -> FloatTensor<Autodiff<B, C>>
where
    S: Clone + Send + std::fmt::Debug + 'static,
{
    match backward
        .prepare::<C>([a.node(), b.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (a, b) = (a.into_primitive(), b.into_primitive());
            let y = forward(a.clone(), b.clone(), &s);
            prep.finish((a, b, s), y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(a.into_primitive(), b.into_primitive(), &s))
        }
    }
}

impl<B: FusedBackend, C: CheckpointStrategy> FusedBackend for Autodiff<B, C> {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // Keeps `x` (shared with the forward's input, no copy) for `∂x = g·(Φ(x) + x·φ(x))`.
        let backward = UnaryBackward::<B, B::FloatTensorPrimitive> {
            f: |x, g| B::gelu_exact_backward(x, g),
        };
        match backward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let y = B::gelu_exact(x.clone());
                prep.finish(x, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_exact(x.into_primitive())),
        }
    }

    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        // Not differentiated again (no double backward in training).
        Self::from_inner(B::gelu_exact_backward(
            x.into_primitive(),
            grad.into_primitive(),
        ))
    }

    fn attention_softmax(
        scores: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        // Keeps the output `y` for `∂scores = s·y⊙(g − Σ g⊙y)`; the mask is a constant.
        let backward = UnaryBackward::<B, (B::FloatTensorPrimitive, f64)> {
            f: |(y, scale), g| B::attention_softmax_backward(y, g, scale),
        };
        let mask = mask.into_primitive();
        match backward
            .prepare::<C>([scores.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::attention_softmax(scores.into_primitive(), mask, scale);
                prep.finish((y.clone(), scale), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::attention_softmax(scores.into_primitive(), mask, scale))
            }
        }
    }

    fn attention_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::attention_softmax_backward(
            y.into_primitive(),
            grad.into_primitive(),
            scale,
        ))
    }

    fn dropout_mask(x: FloatTensor<Self>, seed: u64, keep: f64) -> FloatTensor<Self> {
        // Keeps only the seed: `∂x = g ⊙ mask(seed)`, the mask redrawn.
        let backward = UnaryBackward::<B, (u64, f64)> {
            f: |(seed, keep), g| B::dropout_mask(g, seed, keep),
        };
        match backward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(
                (seed, keep),
                B::dropout_mask(x.into_primitive(), seed, keep),
            ),
            OpsKind::UnTracked(prep) => {
                prep.finish(B::dropout_mask(x.into_primitive(), seed, keep))
            }
        }
    }

    fn gelu_matmul(u: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        // Keeps `u` and `w`: `∂w = gelu(u)ᵀ·g` with `gelu(u)` recomputed,
        // `∂u = gelu'(u) ⊙ (g·wᵀ)`.
        let backward = MapMatmulBackward::<B, ()> {
            f: |_, u| B::gelu_exact(u),
            df: |_, u, g| B::gelu_exact_backward(u, g),
        };
        map_matmul::<B, C, ()>(u, w, (), backward, |u, w, _| B::gelu_matmul(u, w))
    }

    fn dropout_matmul(
        p: FloatTensor<Self>,
        v: FloatTensor<Self>,
        seed: u64,
        keep: f64,
    ) -> FloatTensor<Self> {
        // Keeps `p`, `v` and the seed: `∂v = dropout(p)ᵀ·g` with the dropped probabilities
        // redrawn, `∂p = dropout(g·vᵀ)` (the mask's gradient is the same mask).
        let backward = MapMatmulBackward::<B, (u64, f64)> {
            f: |&(seed, keep), p| B::dropout_mask(p, seed, keep),
            df: |&(seed, keep), _, g| B::dropout_mask(g, seed, keep),
        };
        map_matmul::<B, C, _>(p, v, (seed, keep), backward, |p, v, &(seed, keep)| {
            B::dropout_matmul(p, v, seed, keep)
        })
    }

    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        /// Keeps `x` and `γ`; the backward recomputes the row statistics (one extra pass)
        /// instead of keeping the centred input, the normalised output and `1/σ`.
        #[derive(Debug)]
        struct LayerNormBackward;

        impl<B: FusedBackend> Backward<B, 3> for LayerNormBackward {
            type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [n_x, n_gamma, n_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, gamma, eps) = ops.state;
                if n_gamma.is_none() && n_beta.is_none() {
                    // Frozen LayerNorm (adapters): only `∂x`.
                    if let Some(node) = n_x {
                        let dx = B::layer_norm_last_backward_x(x, gamma, grad, eps);
                        grads.register::<B>(node.id, dx);
                    }
                    return;
                }
                let (dx, dgamma, dbeta) = B::layer_norm_last_backward(x, gamma, grad, eps);
                if let Some(node) = n_x {
                    grads.register::<B>(node.id, dx);
                }
                if let Some(node) = n_gamma {
                    grads.register::<B>(node.id, dgamma);
                }
                if let Some(node) = n_beta {
                    grads.register::<B>(node.id, dbeta);
                }
            }
        }

        match LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
                let y = B::layer_norm_last(x.clone(), gamma.clone(), beta.into_primitive(), eps);
                prep.finish((x, gamma, eps), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::layer_norm_last(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                eps,
            )),
        }
    }

    fn layer_norm_last_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dg, db) = B::layer_norm_last_backward(
            x.into_primitive(),
            gamma.into_primitive(),
            grad.into_primitive(),
            eps,
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dg),
            Self::from_inner(db),
        )
    }

    fn layer_norm_last_backward_x(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::layer_norm_last_backward_x(
            x.into_primitive(),
            gamma.into_primitive(),
            grad.into_primitive(),
            eps,
        ))
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
