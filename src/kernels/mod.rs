//! Custom GPU kernels for the adapters, each beside its plain tensor-op reference.
//!
//! Which code runs each op is decided once, by [`Route::of`] (device, dtype, kernels on or off;
//! the table is in [`route`]), and the ops below ask it; the adapted linear layers' forwards
//! ([`lora_layer`], [`dora_layer`]) pick their fused path the same way, so model code never asks.
//! The WGSL sources live in `shaders/`; [`wgpu`] launches them through Burn's backend-extension
//! mechanism on wgpu devices (Vulkan, Metal, DX12, lavapipe natively; WebGPU in the page); the two
//! DoRA ops ([`dora`]) also have fused loops on the flex CPU backend, in every build. Other
//! devices (CUDA) run the reference, which is also what the parity tests (`tests/kernels.rs`,
//! `tests/parity.rs`) compare the kernels against.
//!
//! | function | kernel | reference |
//! |---|---|---|
//! | [`dora_weight_norm`] | `shaders/dora_norm.wgsl`; on flex one pass over `W` by the definition | [`dora_weight_norm_reference`] |
//! | [`dora_scale`] | `shaders/dora_scale.wgsl`; on flex one fused pass each way (`∂base` and `∂m` together) | [`dora_scale_reference`] |
//! | [`gelu`] | [`fused`]: one CPU pass each way on flex, tensor ops on wgpu; backward keeps only `x` | [`gelu_reference`] |
//! | [`attention_softmax`] | [`fused`] (flex): scale, mask, softmax in one pass; backward from the output | [`attention_softmax_reference`] |
//! | [`dropout`] | [`fused`] (flex): mask drawn in parallel blocks while multiplying, redrawn for the backward | host mask times `x` |
//! | [`gelu_matmul`] | [`fused`] (wgpu): `gelu(u)·w` whose backward recomputes `gelu(u)` instead of keeping it | the caller's `gelu(u)` times `w` |
//! | [`dropout_matmul`] | [`fused`] (flex, wgpu): `dropout(p)·v` whose backward redraws the dropped probabilities instead of keeping them | [`dropout`] then `matmul` |
//! | [`layer_norm`] | [`fused`] (flex): one pass per row each way over the rayon pool, backward keeps only `x` | Burn's `layer_norm` |
//! | [`add_layer_norm`] | [`fused`] (flex): `LayerNorm(y + r)`, add and LayerNorm in one pass per row, backward keeps the sum | `layer_norm(y + r)` |

#[cfg(not(target_family = "wasm"))]
pub mod batches;
#[cfg(not(target_family = "wasm"))]
pub mod denormals;
pub mod dora;
pub mod fused;
#[cfg(not(target_family = "wasm"))]
pub mod gemm;
pub mod mask;
mod prim;
pub mod route;
#[cfg(any(feature = "wgpu", feature = "web"))]
pub mod wgpu;
#[cfg(any(feature = "wgpu", feature = "web"))]
pub mod wgpu_bindings;
#[cfg(any(feature = "wgpu", feature = "web"))]
mod wgpu_elementwise;
#[cfg(any(feature = "wgpu", feature = "web"))]
mod wgpu_matmul;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{DType, Distribution, Tensor};

pub use route::Route;

/// Lower bound on `||W_j + s·B_j·A||²` before the square root, so an all-zero row gives a finite
/// DoRA scale (`m_j / 1e-6`) instead of `0 / 0`.
pub const DORA_NORM_EPS_SQ: f64 = 1e-12;

/// Largest rank the row-norm kernel takes (its per-row accumulator is `r` floats in
/// registers); larger ranks run the reference.
pub const MAX_KERNEL_RANK: usize = 64;

static KERNELS: AtomicBool = AtomicBool::new(true);

/// Turns the custom kernels on or off for the whole process (on by default). Off, every device
/// runs the tensor-op references (`lorabert bench --no-kernels`, to measure what the kernels gain).
pub fn set_kernels_enabled(on: bool) {
    KERNELS.store(on, Ordering::Relaxed);
}

/// Whether the custom kernels are enabled (see [`set_kernels_enabled`]).
pub fn kernels_enabled() -> bool {
    KERNELS.load(Ordering::Relaxed)
}

/// Whether `device` (plain or autodiff) is a wgpu device, whose compiler takes the WGSL kernels;
/// always `false` in builds without wgpu.
pub fn is_wgpu(device: &burn::tensor::Device) -> bool {
    #[cfg(any(feature = "wgpu", feature = "web"))]
    return wgpu::runs_on(device);
    #[cfg(not(any(feature = "wgpu", feature = "web")))]
    {
        let _ = device;
        false
    }
}

/// `t` `[d0, ..., dk, n]` viewed as rows `[d0·...·dk, n]` (a reshape, no copy for contiguous
/// tensors), for the kernels that work on a batch of rows.
pub fn as_rows<const D: usize>(t: Tensor<D>) -> Tensor<2> {
    let dims = t.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    t.reshape([rows, dims[D - 1]])
}

/// Row norms `||W_j + s·B_j·A||` for every output `j`, `[out]` f32, detached from the graph
/// (Liu et al. 2024, section 4.3; PEFT's `DoraLinearLayer.get_weight_norm` with the norm detached).
///
/// Inputs in Burn layout: `w` = `Wᵀ` `[in, out]` (f32, or f16 storage), `a` = `Aᵀ` `[in, r]`,
/// `b` = `Bᵀ` `[r, out]`. On wgpu devices (and `r ≤` [`MAX_KERNEL_RANK`]) this runs
/// `shaders/dora_norm.wgsl`, on flex one pass over `w` (`Σ_i (w_ij + s·Σ_k a_ik·b_kj)²`, any
/// rank), elsewhere (and with kernels off) [`dora_weight_norm_reference`].
///
/// # Panics
/// When the shapes do not chain (`w` `[in, out]`, `a` `[in, r]`, `b` `[r, out]`).
pub fn dora_weight_norm(w: Tensor<2>, a: Tensor<2>, b: Tensor<2>, scaling: f64) -> Tensor<1> {
    let route = Route::of_tensor(&w);
    if route == Route::Cpu || route.wgsl() && a.dims()[1] <= MAX_KERNEL_RANK {
        return dora::dora_weight_norm(w, a, b, scaling);
    }
    dora_weight_norm_reference(w, a, b, scaling)
}

/// Reference for [`dora_weight_norm`] from tensor ops, in Gram form (no `[in, out]` temporary
/// besides the squares of `W` read once):
/// `||W_j||² + 2s·B_j·(A·W_jᵀ) + s²·B_j·(A·Aᵀ)·B_jᵀ`, clamped below by [`DORA_NORM_EPS_SQ`].
/// PEFT computes the same quantity as `torch.linalg.norm(W + s·B@A, dim=1)`. An f16 `w` is
/// widened to f32 first.
pub fn dora_weight_norm_reference(
    w: Tensor<2>,
    a: Tensor<2>,
    b: Tensor<2>,
    scaling: f64,
) -> Tensor<1> {
    let w = to_f32(w.detach());
    let a = a.detach();
    let b = b.detach();
    let w_sq = w.clone().square().sum_dim(0); // [1, out]
    let at = a.clone().transpose(); // [r, in]
    let p = at.clone().matmul(w); // [r, out] = A·Wᵀ
    let g = at.matmul(a); // [r, r]   = A·Aᵀ
    let cross = (b.clone() * p).sum_dim(0); // [1, out]
    let quad = (g.matmul(b.clone()) * b).sum_dim(0); // [1, out]
    let n2 = w_sq + cross.mul_scalar(2.0 * scaling) + quad.mul_scalar(scaling * scaling);
    n2.clamp_min(DORA_NORM_EPS_SQ).sqrt().squeeze_dim::<1>(0)
}

/// The DoRA output for a batch of rows (Liu et al. 2024, eq. 5, as PEFT's `DoraLinearLayer`
/// without dropout): `(m / norm) ⊙ (base + s·lora) + bias`, `[rows, out]`.
///
/// `base` = `x·Wᵀ` `[rows, out]`, `lora` = `(x·Aᵀ)·Bᵀ` `[rows, out]` (before scaling), `m` and
/// `norm` `[out]` (`norm` is treated as a constant, as in the paper's section 4.3), `bias`
/// `[out]` (f32). `base`, `lora` and the result are f32, or f16 in the f16 mode (computed in f32
/// per element and rounded once). Differentiable in `base`, `lora`, `m` and `bias`. On wgpu
/// devices this runs `shaders/dora_scale.wgsl` (one pass instead of four), on flex (f32) a fused
/// loop, both with a hand-written backward (on flex `∂base` and `∂m` in one pass); elsewhere
/// (and with kernels off) [`dora_scale_reference`].
///
/// # Panics
/// When `base` and `lora` differ in shape or `m`, `norm`, `bias` are not `[out]`.
pub fn dora_scale(
    base: Tensor<2>,
    lora: Tensor<2>,
    m: Tensor<1>,
    norm: Tensor<1>,
    bias: Option<Tensor<1>>,
    scaling: f64,
) -> Tensor<2> {
    if Route::of_tensor(&base).fused()
        && matches!(base.dtype(), DType::F32 | DType::F16)
        && lora.dtype() == base.dtype()
    {
        return dora::dora_scale(base, lora, m, norm, bias, scaling);
    }
    dora_scale_reference(base, lora, m, norm, bias, scaling)
}

/// Reference for [`dora_scale`] from tensor ops.
pub fn dora_scale_reference(
    base: Tensor<2>,
    lora: Tensor<2>,
    m: Tensor<1>,
    norm: Tensor<1>,
    bias: Option<Tensor<1>>,
    scaling: f64,
) -> Tensor<2> {
    let scale = cast_like((m / norm.detach()).unsqueeze::<2>(), &base);
    let lora = if scaling == 1.0 {
        lora
    } else {
        lora.mul_scalar(scaling)
    };
    let out = (base + lora) * scale;
    match bias {
        Some(b) => {
            let b = cast_like(b, &out).unsqueeze::<2>();
            out + b
        }
        None => out,
    }
}

/// Whether `device` can train in the f16 mode (f16 weights and activations, see
/// [`crate::model::Bert::into_f16`]): a wgpu device that offers f16 (`shader-f16` on WebGPU).
/// Elsewhere the drivers fall back to f32 with a notice. (Burn's CPU backend stores f16 but
/// computes it slowly, so it is not offered there.)
pub fn f16_available(device: &burn::tensor::Device) -> bool {
    is_wgpu(device) && device.supports_dtype(DType::F16)
}

/// `x·W + b` for a frozen weight `w` = `Wᵀ` `[in, out]` stored in f32 or f16; `x` `[..., in]` →
/// `[..., out]` in the dtype of `x` (PyTorch's `F.linear` with the weight in Burn's `[in, out]`
/// layout). `bias` (f32) is narrowed to the dtype of `x`.
///
/// With matching dtypes (f32 everywhere, or f16 weights with the f16 activations of the f16 mode)
/// this is one matmul that holds the weight itself for the backward, no copy. An f16 weight
/// meeting f32 activations (the pooler on the f32 output of an f16 encoder) is widened per call.
///
/// # Panics
/// When the last axis of `x` is not `w`'s first, or `bias` is not `[out]`.
pub fn frozen_linear<const D: usize>(
    x: Tensor<D>,
    w: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let bias = bias.map(|b| cast_like(b, &x));
    let w = if w.dtype() == x.dtype() {
        w
    } else {
        w.cast(x.dtype())
    };
    linear(x, w, bias)
}

/// Whether the matrix products of `x` run through lorabert's op ([`fused`]):
/// [`Route::products`].
fn routes_matmul<const D: usize>(x: &Tensor<D>) -> bool {
    Route::of_tensor(x).products()
}

/// `a·b` over the last two axes: `a` `[.., m, k]`, `b` `[.., k, n]` with the same leading axes
/// → `[.., m, n]` (the attention scores `q·kᵀ` and context `p·v`). With the kernels on, one
/// differentiable op whose forward and backward products are [`gemm`]'s (flex f32, native
/// builds) or `shaders/matmul_vec4.wgsl`'s and `shaders/matmul.wgsl`'s (wgpu, f32 or f16,
/// accumulated in f32; at most five compiled kernels per dtype for every shape and layout);
/// elsewhere Burn's `matmul`. On flex the same
/// values either way (the same `gemm` crate); on wgpu the same within f32 rounding (another
/// summation order).
///
/// # Panics
/// When the shapes do not chain.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    if routes_matmul(&a) {
        return fused::matmul(a, b);
    }
    a.matmul(b)
}

/// `x·w + bias` for `x` `[.., in]`, `w` `[in, out]`, `bias` `[out]` → `[.., out]`:
/// `torch.nn.functional.linear` with the weight in Burn's layout, as
/// `burn::tensor::module::linear`. The product runs as [`matmul`] of the rows of `x`.
///
/// # Panics
/// When the last axis of `x` is not `w`'s first, or `bias` is not `[out]`.
pub fn linear<const D: usize>(x: Tensor<D>, w: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<D> {
    if !routes_matmul(&x) || D < 2 {
        return burn::tensor::module::linear(x, w, bias);
    }
    let mut dims = x.dims();
    let y = fused::matmul(as_rows(x), w);
    dims[D - 1] = y.dims()[1];
    let y = y.reshape(dims);
    match bias {
        Some(b) => y + b.unsqueeze(),
        None => y,
    }
}

/// A LoRA linear layer without adapter dropout, `x·w + bias + (x·a)·b` for `x` `[.., in]`, frozen
/// `w` `[in, out]` and `bias` `[out]`, `a` = `Aᵀ` `[in, r]` and `b` = `s·Bᵀ` `[r, out]` →
/// `[.., out]` (PEFT's `lora.Linear.forward` with `lora_dropout = 0`). On flex with f32 data in
/// a native build, one differentiable op ([`fused`]'s `lora_linear`): the base product, then
/// `[x·a | 1]·[b ; bias]` accumulated into it in place, and in the backward `(g·bᵀ)·aᵀ`
/// accumulated into `g·wᵀ`, so neither direction writes the `[rows, out]` or `[rows, in]`
/// low-rank term on its own nor adds it in a separate pass. Elsewhere (other devices, f16,
/// `--no-kernels`, or a `w` or `bias` that takes gradients) the composition of [`linear`]s.
///
/// # Panics
/// When the shapes do not chain (`x`'s last axis `in`, `a` `[in, r]`, `b` `[r, out]`).
pub fn lora_linear<const D: usize>(
    x: Tensor<D>,
    w: Tensor<2>,
    bias: Tensor<1>,
    a: Tensor<2>,
    b: Tensor<2>,
) -> Tensor<D> {
    if !lora_linear_is_fused(&x, &w, &bias) {
        let ax = linear(x.clone(), a, None);
        return linear(x, w, Some(bias)) + linear(ax, b, None);
    }
    let mut dims = x.dims();
    let y = fused::lora_linear(as_rows(x), w, bias, a, b);
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// LoRA's low-rank term `s·B·A·x̃ (+ s·b_B)` for `xd` = `x̃` `[.., in]` (after the adapter's
/// dropout), `a` = `Aᵀ` `[in, r]`, `b` = `s·Bᵀ` `[r, out]` (scaling folded in), `b_bias` =
/// `s·b_B` `[out]` → `[.., out]`. With `pre_gelu = Some(u)` (`xd = gelu(u)`) the `A`
/// projection is [`gelu_matmul`] of `u`.
///
/// # Panics
/// When the shapes do not chain.
pub fn low_rank<const D: usize>(
    xd: Tensor<D>,
    pre_gelu: Option<Tensor<D>>,
    a: Tensor<2>,
    b: Tensor<2>,
    b_bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let ax = match pre_gelu {
        Some(u) => gelu_matmul(u, xd, a),
        None => linear(xd, a, None),
    };
    linear(ax, b, b_bias)
}

/// A LoRA layer (PEFT's `lora.Linear.forward`): `x·w + bias + s·B·A·x̃ (+ s·b_B)` for `x`
/// `[.., in]`, `xd` = `x̃` = `lora_dropout(x)` when the adapter's dropout is active (else
/// `None`), frozen `w` `[in, out]` (f32 or f16) and `bias` `[out]`, and the factors as
/// [`low_rank`] takes them (in the dtype of `x`). Where [`Route::fused_lora_linear`] holds and
/// there is no dropout and no `lora_B` bias, one fused op ([`lora_linear`]); else
/// `frozen_linear(x) + low_rank(x̃)`.
///
/// # Panics
/// When the shapes do not chain.
#[allow(clippy::too_many_arguments)]
pub fn lora_layer<const D: usize>(
    x: Tensor<D>,
    xd: Option<Tensor<D>>,
    pre_gelu: Option<Tensor<D>>,
    w: Tensor<2>,
    bias: Option<Tensor<1>>,
    a: Tensor<2>,
    b: Tensor<2>,
    b_bias: Option<Tensor<1>>,
) -> Tensor<D> {
    if xd.is_none()
        && b_bias.is_none()
        && let Some(bias) = &bias
        && lora_linear_is_fused(&x, &w, bias)
    {
        // From `x` itself even after GELU: the base product and the low-rank term accumulated
        // into it, both ways.
        let bias = cast_like(bias.clone(), &x);
        let w = cast_like(w, &x);
        return lora_linear(x, w, bias, a, b);
    }
    let lora = low_rank(xd.unwrap_or_else(|| x.clone()), pre_gelu, a, b, b_bias);
    frozen_linear(x, w, bias) + lora
}

/// A DoRA layer without adapter dropout (Liu et al. 2024, eq. 5; PEFT's `DoraLinearLayer`):
/// `(m / norm) ⊙ (x·w + s·B·A·x (+ s·b_B)) + bias`, arguments as [`lora_layer`], `m` and `norm`
/// `[out]` (f32; `norm` from [`dora_weight_norm`], a constant of the graph). Where
/// [`Route::fused_lora_linear`] holds (and no `lora_B` bias), `x·w + s·B·A·x` as the fused LoRA
/// op and then [`dora_scale`] in place with no separate low-rank term; else the base product,
/// [`low_rank`] and [`dora_scale`] of both (one WGSL kernel on wgpu).
///
/// # Panics
/// When the shapes do not chain.
#[allow(clippy::too_many_arguments)]
pub fn dora_layer<const D: usize>(
    x: Tensor<D>,
    pre_gelu: Option<Tensor<D>>,
    w: Tensor<2>,
    bias: Option<Tensor<1>>,
    a: Tensor<2>,
    b: Tensor<2>,
    b_bias: Option<Tensor<1>>,
    m: Tensor<1>,
    norm: Tensor<1>,
) -> Tensor<D> {
    let d_out = w.dims()[1];
    // The fused op's bias is a constant zero (never trained): only the route and `w` decide.
    if b_bias.is_none()
        && D >= 2
        && Route::of_tensor(&x).fused_lora_linear()
        && !w.is_require_grad()
    {
        let zero = Tensor::<1>::zeros([d_out], &x.device());
        let y = lora_linear(x, w, zero, a, b);
        let dims = y.dims();
        let rows = as_rows(y);
        let no_lora = Tensor::<2>::zeros([1, d_out], &rows.device()).expand(rows.shape());
        return dora_scale(rows, no_lora, m, norm, bias, 0.0).reshape(dims);
    }
    let lora = low_rank(x.clone(), pre_gelu, a, b, b_bias);
    let base = frozen_linear(x, w, None);
    let dims = base.dims();
    dora_scale(as_rows(base), as_rows(lora), m, norm, bias, 1.0).reshape(dims)
}

/// Whether [`lora_linear`] of these operands runs as the fused op ([`Route::fused_lora_linear`],
/// `w` and `bias` frozen) rather than as the composition of [`linear`]s.
fn lora_linear_is_fused<const D: usize>(x: &Tensor<D>, w: &Tensor<2>, bias: &Tensor<1>) -> bool {
    D >= 2
        && Route::of_tensor(x).fused_lora_linear()
        && !w.is_require_grad()
        && !bias.is_require_grad()
}

/// `t` cast to the dtype of `like` (a no-op when they match); differentiable, the gradient is
/// cast back.
pub fn cast_like<const D: usize, const E: usize>(t: Tensor<D>, like: &Tensor<E>) -> Tensor<D> {
    let dtype = like.dtype();
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}

/// Exact GELU `x·Φ(x) = x·(1 + erf(x/√2))/2`, any shape, PyTorch's `nn.GELU()` (forward and
/// backward `Φ(x) + x·φ(x)`). On flex and wgpu devices one op whose backward keeps only `x`
/// ([`fused`]); elsewhere, or with the kernels off, [`gelu_reference`].
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if routes_fused(&x) {
        return fused::gelu(x);
    }
    gelu_reference(x)
}

/// The attention probabilities `softmax(scale·scores + mask)` over keys: `scores` `[b, h, q, k]`,
/// `mask` `[b, k]` additive (0 or BERT's −10000 for padding keys) → `[b, h, q, k]`, as
/// transformers' eager `BertSelfAttention` (`softmax(q·kᵀ/√d + mask)`), in the dtype of
/// `scores`. One op ([`fused`]) whose backward keeps only the output: on flex (f32 data) scale,
/// mask and softmax in one pass per row; on wgpu (f32 or f16) tensor ops, keeping one
/// `[b, h, q, k]` tensor instead of two. With the kernels off, or on other backends,
/// [`attention_softmax_reference`].
///
/// # Panics
/// When `mask` is not `[b, k]` for `scores` `[b, h, q, k]`.
pub fn attention_softmax(scores: Tensor<4>, mask: Tensor<2>, scale: f64) -> Tensor<4> {
    if routes_fused(&scores) {
        return fused::attention_softmax(scores, mask, scale);
    }
    attention_softmax_reference(scores, mask, scale)
}

/// Reference for [`attention_softmax`] from tensor ops (the mask is narrowed to the dtype of
/// `scores`).
pub fn attention_softmax_reference(scores: Tensor<4>, mask: Tensor<2>, scale: f64) -> Tensor<4> {
    let [b, k] = mask.dims();
    let mask = cast_like(mask.reshape([b, 1, 1, k]), &scores);
    burn::tensor::activation::softmax(scores.mul_scalar(scale) + mask, 3)
}

/// Inverted dropout with the mask of `seed` (elements kept with probability `keep` and scaled
/// by `1/keep`), any shape, in `x`'s dtype. On flex devices with f32 data one op ([`fused`])
/// that draws the host mask ([`mask::mask`]) in parallel blocks while
/// multiplying; on wgpu devices (f32 or f16) one op running `shaders/dropout.wgsl`. Both masks
/// are the same counter-based hash of `seed` and the element index
/// ([`mask::device_mask_keeps`]). Both redraw the mask from `seed` for the
/// backward, so no mask is stored. Elsewhere (ndarray, `--no-kernels`) the host mask is built
/// and multiplied (its gradient is the same product).
pub fn dropout<const D: usize>(x: Tensor<D>, seed: u64, keep: f64) -> Tensor<D> {
    if routes_fused(&x) {
        return fused::dropout(x, seed, keep);
    }
    let shape = x.shape();
    let mask = mask::mask(seed, shape.num_elements(), keep);
    let mask = Tensor::<D>::from_data(burn::tensor::TensorData::new(mask, shape), &x.device());
    let mask = cast_like(mask, &x);
    x * mask
}

/// `gelu(u)·w` for `u` `[.., in]` (a pre-activation), `gelu_u` = [`gelu`]`(u)` (already computed
/// by the caller for the base path) and `w` `[in, r]` → `[.., r]`, in the dtype of `u`: the first
/// LoRA projection `A·gelu(u)` of `output.dense`. On wgpu devices (kernels on) one op
/// ([`fused`]) of `u` whose backward keeps `u` (which [`gelu`] keeps anyway) and recomputes
/// `gelu(u)`, so autodiff does not also keep the `[.., in]` GELU output (for bert-base,
/// `intermediate_size` = 3072 values per token per layer) for this product. Elsewhere (the
/// CPU, where memory is not the constraint and the extra GELU passes would cost time) the
/// product of `gelu_u`: the same values.
///
/// # Panics
/// When `u` and `gelu_u` differ in shape or their last axis is not `w`'s first.
pub fn gelu_matmul<const D: usize>(u: Tensor<D>, gelu_u: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
    if Route::of_tensor(&u).wgsl() {
        let dims = u.dims();
        let y = fused::gelu_matmul(as_rows(u), w);
        let mut out = dims;
        out[D - 1] = y.dims()[1];
        return y.reshape(out);
    }
    linear(gelu_u, w, None)
}

/// Training-time inverted dropout of the module keyed `key` ([`mask::module_key`]), any shape,
/// kept with probability `keep`: [`dropout`] with the module's seed for this step
/// ([`mask::call_seed`]) where the route seeds masks ([`Route::seeded_masks`]); elsewhere
/// (`--no-kernels` on wgpu, CUDA) a Bernoulli mask from Burn's seeded device generator, drawn in
/// call order. `torch.nn.Dropout` in training.
pub fn random_dropout<const D: usize>(x: Tensor<D>, keep: f64, key: u64) -> Tensor<D> {
    if Route::of_tensor(&x).seeded_masks() {
        return dropout(x, mask::call_seed(key), keep);
    }
    let m = x.random_like(Distribution::Bernoulli(keep));
    x * m * (1.0 / keep)
}

/// `random_dropout(p, keep, key)·v` for `p` `[.., m, k]`, `v` `[.., k, n]` → `[.., m, n]`, with
/// the same values, gradients and seeds; where the masks are seeded, one op
/// ([`dropout_matmul`]) that keeps no dropped copy of `p`.
pub fn random_dropout_matmul<const D: usize>(
    p: Tensor<D>,
    v: Tensor<D>,
    keep: f64,
    key: u64,
) -> Tensor<D> {
    if Route::of_tensor(&p).seeded_masks() {
        return dropout_matmul(p, v, mask::call_seed(key), keep);
    }
    matmul(random_dropout(p, keep, key), v)
}

/// The attention context `dropout(p)·v` with the dropout mask of `seed` (as [`dropout`]): `p`
/// `[.., m, k]` (the attention probabilities `[b, heads, q, k]`), `v` `[.., k, n]` → `[.., m, n]`,
/// in the dtype of `p`. Where [`dropout`] runs its fused op (flex f32, wgpu f32/f16) one op
/// ([`fused`]) whose backward keeps `p` and `v` and redraws the dropped probabilities from the
/// seed, so autodiff keeps one `[b, heads, q, k]` tensor per layer (the softmax output, shared)
/// instead of two; the values and gradients are those of [`dropout`] followed by `matmul`, which
/// runs elsewhere.
///
/// # Panics
/// When `p` `[.., m, k]` and `v` `[.., k, n]` do not chain.
pub fn dropout_matmul<const D: usize>(
    p: Tensor<D>,
    v: Tensor<D>,
    seed: u64,
    keep: f64,
) -> Tensor<D> {
    if routes_fused(&p) {
        return fused::dropout_matmul(p, v, seed, keep);
    }
    matmul(dropout(p, seed, keep), v)
}

/// LayerNorm over the last axis (PyTorch's `layer_norm`, biased variance): `x` `[.., h]`,
/// `gamma`, `beta` `[h]` (f32) → `[.., h]` in the dtype of `x`. f16 rows are normalised in f32
/// (their squares can overflow f16) and narrowed again, as PyTorch's autocast runs `layer_norm`
/// in f32. On flex (f32 data) and wgpu (f32 or f16) one op ([`fused`]) whose backward keeps only
/// `x` in its own dtype and recomputes the row statistics, instead of autodiff keeping the
/// centred and normalised rows in f32; on wgpu it runs `shaders/layer_norm.wgsl` forward and
/// `shaders/layer_norm_backward.wgsl` for `∂x`. With the kernels off, or on other backends,
/// Burn's `layer_norm`.
///
/// # Panics
/// When `gamma` or `beta` is not `[h]` for `x` `[.., h]`.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    if routes_fused(&x) {
        return fused::layer_norm(x, gamma, beta, eps);
    }
    let dtype = x.dtype();
    let y = burn::tensor::module::layer_norm(to_f32(x), gamma, Some(beta), eps);
    if dtype == DType::F32 {
        y
    } else {
        y.cast(dtype)
    }
}

/// [`layer_norm`] of `y + r`, the residual block's tail (`BertSelfOutput`, `BertOutput`):
/// `y`, `r` `[.., h]`, `gamma`, `beta` `[h]` → `[.., h]` in the dtype of `y`. Where
/// [`layer_norm`] runs [`fused`] and `y`, `r` have one shape and dtype, one op
/// ([`fused::add_layer_norm`]): on flex the add and the LayerNorm in one pass per row over the
/// rayon pool, instead of a single-threaded add pass then the LayerNorm; its backward keeps the
/// sum, as the LayerNorm alone keeps its input. Otherwise `layer_norm(y + r)`.
///
/// # Panics
/// When the shapes do not broadcast, or `gamma` or `beta` is not `[h]`.
pub fn add_layer_norm<const D: usize>(
    y: Tensor<D>,
    r: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    if routes_fused(&y) && y.dtype() == r.dtype() && y.dims() == r.dims() {
        return fused::add_layer_norm(y, r, gamma, beta, eps);
    }
    layer_norm(y + r, gamma, beta, eps)
}

/// Whether the row-wise ops ([`gelu`], [`attention_softmax`], [`dropout`], [`layer_norm`]) of
/// `x` go through [`fused`]: [`Route::fused`].
fn routes_fused<const D: usize>(x: &Tensor<D>) -> bool {
    Route::of_tensor(x).fused()
}

/// Reference for [`gelu`] from tensor ops: `x · (1 + erf(x / √2)) / 2`, differentiated by
/// autodiff into the exact `Φ(x) + x·φ(x)`.
///
/// Burn's own `gelu` has an erf forward but the backward of the tanh approximation, which
/// evaluates `tanh` of a cubic in `x`; WGSL's `tanh` overflows to NaN for large inputs on
/// SwiftShader (Chromium's software WebGPU), and MiniLM's layer-3 pre-activations are large
/// enough to hit it. This form has no `tanh`.
pub fn gelu_reference<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let phi = x
        .clone()
        .mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .mul_scalar(0.5)
        .add_scalar(0.5);
    x * phi
}

/// Reads a tensor back to host f32 values asynchronously (the only read-back the browser's
/// WebGPU allows), any shape, row-major.
///
/// # Errors
/// [`crate::Error::ReadBack`] when the backend fails to read.
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> crate::Result<Vec<f32>> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| crate::Error::ReadBack(format!("{e:?}")))?;
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| crate::Error::ReadBack(format!("{e:?}")))
}

/// `t` in f32 (a no-op for f32 tensors).
pub fn to_f32<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(DType::F32)
    }
}
