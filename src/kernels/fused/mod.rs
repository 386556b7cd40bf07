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
//! | dropout `x⊙mask(seed)` | nothing (the mask is redrawn from its seed) | mask blocks (a counter-based hash of the element index) drawn in parallel while multiplying | WGSL kernel `shaders/dropout.wgsl`, the same hash: the same mask as flex's for the same seed |
//! | `gelu(u)·w`, `output.dense`'s first LoRA projection from the pre-activation | `u` (kept by GELU anyway) and `w`: `gelu(u)` is recomputed for `∂w` | GELU pass then flex's matmul | GELU tensor ops then the product kernel |
//! | attention context `dropout(p)·v` | `p` (the softmax output, kept by the softmax anyway) and `v`: the dropped probabilities are redrawn from the seed, not kept | dropout pass then flex's matmul | dropout kernel then the product kernel |
//! | `a·b` over the last two axes | `a` and `b` (handles) | the `gemm` crate ([`super::gemm`]) | WGSL kernels `shaders/matmul_vec4.wgsl` and `shaders/matmul.wgsl` (`kernels::wgpu_matmul::matmul`), Burn's matmul where they do not apply |
//! | `c + a·b` (2-D) | composed under autodiff (add and product) | the product accumulated into `c`'s buffer in the `gemm` call when nothing else holds `c` ([`super::gemm::matmul_add_f32`]) | product kernel then an add |
//! | LoRA linear `x·w + bias + (x·a)·b`, frozen `w`, `bias` | `x`, `w`, `a`, `b` (handles) and `x·a` `[rows, r]` | `x·w`, then `[x·a \| 1]·[b ; bias]` accumulated into it; backward `∂x = g·wᵀ` with `(g·bᵀ)·aᵀ` accumulated into it, `∂a = xᵀ·(g·bᵀ)`, `∂b = (x·a)ᵀ·g` | the same composition (used by `crate::kernels::lora_linear` on flex only) |
//! | LayerNorm over the last axis | `x` (mean and `1/σ` recomputed) | one pass per row over the rayon pool; backward one pass per row, `∂γ`, `∂β` summed per fixed chunk in order | WGSL kernels `shaders/layer_norm.wgsl` and `layer_norm_backward.wgsl` (one workgroup per row, f32 or f16 rows, f32 statistics; `∂x` alone when `γ`, `β` are frozen), tensor ops in f32 for `∂γ`, `∂β` when they are trained and with `--no-kernels` |
//! | residual LayerNorm `LayerNorm(y + r)` | the sum `z` (as LayerNorm keeps its input) | the add and the LayerNorm in one pass per row, the sum into `y`'s buffer; backward the LayerNorm's, its `∂z` given to `y` and `r` alike | an add then the LayerNorm kernels |
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

mod autodiff;
mod cpu;
#[cfg(any(feature = "wgpu", feature = "web"))]
mod cube;
mod flex;
mod ops;

pub(crate) use super::prim::cast_to;

use burn::backend::{Backend, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;

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

    /// `x ⊙ mask` with the dropout mask of `seed` ([`super::mask::mask`]); also its
    /// own gradient (the backward multiplies the gradient by the same mask).
    fn dropout_mask(x: FloatTensor<Self>, seed: u64, keep: f64) -> FloatTensor<Self>;

    /// `a · b` over the last two axes: `a` `[.., m, k]`, `b` `[.., k, n]` with the same leading
    /// axes → `[.., m, n]`. On flex (f32, native builds) one call of the `gemm` crate per matrix
    /// into an output it allocates once ([`super::gemm`]); on wgpu (f32 or f16, the kernels on)
    /// `shaders/matmul_vec4.wgsl` or `shaders/matmul.wgsl` (`kernels::wgpu_matmul::matmul`); elsewhere
    /// Burn's `float_matmul`. Its backward is `∂a = g·bᵀ`, `∂b = aᵀ·g` through the same op.
    fn matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `c + a·b` for `c` `[m, n]`, `a` `[m, k]`, `b` `[k, n]`: on flex (f32, native builds) the
    /// product accumulates into `c`'s buffer in the `gemm` call (when nothing else holds `c`)
    /// instead of a new product and an add pass ([`super::gemm::matmul_add_f32`]); elsewhere
    /// [`FusedBackend::matmul`] and an add. Under autodiff, the composition of those two.
    fn matmul_add(
        c: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// A LoRA linear layer without adapter dropout, `y = x·w + bias + (x·a)·b` (PEFT's
    /// `lora.Linear.forward`, with `b` the scaled `s·Bᵀ`): `x` `[rows, in]`, frozen `w`
    /// `[in, out]` and `bias` `[out]`, `a` = `Aᵀ` `[in, r]`, `b` `[r, out]` → `[rows, out]`.
    /// Two products and one accumulation: `y = x·w`, then `y += [x·a | 1]·[b ; bias]` in place
    /// ([`FusedBackend::matmul_add`]). Its backward keeps `x`, `w`, `a`, `b` (handles) and the
    /// `[rows, r]` product `x·a`: `∂b = (x·a)ᵀ·g`, `∂a = xᵀ·(g·bᵀ)`,
    /// `∂x = g·wᵀ + (g·bᵀ)·aᵀ` (the second product accumulated into the first); `w` and `bias`
    /// get no gradients.
    fn lora_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

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

    /// `LayerNorm(y + r)` over the last axis, the residual block's tail (`BertSelfOutput`,
    /// `BertOutput`): `y`, `r` `[.., h]` of one shape and dtype, `gamma`, `beta` `[h]` →
    /// `(z, out)`, the sum `z = y + r` (kept for the backward, untracked) and the normalised
    /// `out` `[.., h]`. On flex (f32) one pass per row over the rayon pool, the sum written into
    /// `y`'s buffer when nothing else holds it; elsewhere an add then
    /// [`FusedBackend::layer_norm_last`]. Under autodiff its backward keeps `z` and `γ`, and gives
    /// `y` and `r` the same `∂z` (the LayerNorm backward at `z`).
    fn add_layer_norm(
        y: FloatTensor<Self>,
        r: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

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

/// [`crate::kernels::matmul`] through the extension.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedBackend>::matmul(
        a.into_dispatch(),
        b.into_dispatch(),
    ))
}

/// [`crate::kernels::lora_linear`] through the extension: `x` `[rows, in]` → `[rows, out]`.
pub fn lora_linear(
    x: Tensor<2>,
    w: Tensor<2>,
    bias: Tensor<1>,
    a: Tensor<2>,
    b: Tensor<2>,
) -> Tensor<2> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedBackend>::lora_linear(
        x.into_dispatch(),
        w.into_dispatch(),
        bias.into_dispatch(),
        a.into_dispatch(),
        b.into_dispatch(),
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

/// [`crate::kernels::add_layer_norm`] through the extension: `LayerNorm(y + r)`.
pub fn add_layer_norm<const D: usize>(
    y: Tensor<D>,
    r: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(
        <burn::backend::Dispatch as FusedBackend>::add_layer_norm(
            y.into_dispatch(),
            r.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            eps,
        )
        .1,
    )
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
