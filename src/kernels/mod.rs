//! Custom GPU kernels for the adapters, each beside its plain tensor-op reference.
//!
//! The WGSL sources live in `shaders/`; [`wgpu`] launches them through Burn's backend-extension
//! mechanism on wgpu devices (Vulkan, Metal, DX12, lavapipe natively; WebGPU in the page). Every
//! other device (the flex CPU backend, CUDA) runs the reference, which is also what the parity
//! tests (`tests/kernels.rs`) compare the kernels against.
//!
//! | function | kernel | reference |
//! |---|---|---|
//! | [`dora_weight_norm`] | `shaders/dora_norm.wgsl` | [`dora_weight_norm_reference`] |
//! | [`dora_scale`] | `shaders/dora_scale.wgsl` | [`dora_scale_reference`] |
//! | [`frozen_linear`] with f16 weights | matmul on the weight widened per call, backward widens again | `linear` on the widened weight |

#[cfg(any(feature = "wgpu", feature = "web"))]
pub mod wgpu;

use burn::tensor::{DType, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Whether the WGSL kernels run for tensors on `device`: enabled and a wgpu device.
pub fn kernels_active(device: &burn::tensor::Device) -> bool {
    kernels_enabled() && is_wgpu(device)
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
/// `shaders/dora_norm.wgsl`, elsewhere [`dora_weight_norm_reference`].
pub fn dora_weight_norm(w: Tensor<2>, a: Tensor<2>, b: Tensor<2>, scaling: f64) -> Tensor<1> {
    #[cfg(any(feature = "wgpu", feature = "web"))]
    if kernels_active(&w.device()) && a.dims()[1] <= MAX_KERNEL_RANK {
        return wgpu::dora_weight_norm(w, a, b, scaling);
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
/// `[out]`. Differentiable in `base`, `lora`, `m` and `bias`. On wgpu devices this runs
/// `shaders/dora_scale.wgsl` (one pass instead of four) with a hand-written backward; elsewhere
/// [`dora_scale_reference`].
pub fn dora_scale(
    base: Tensor<2>,
    lora: Tensor<2>,
    m: Tensor<1>,
    norm: Tensor<1>,
    bias: Option<Tensor<1>>,
    scaling: f64,
) -> Tensor<2> {
    #[cfg(any(feature = "wgpu", feature = "web"))]
    if kernels_active(&base.device()) {
        return wgpu::dora_scale(base, lora, m, norm, bias, scaling);
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
    let scale = (m / norm.detach()).unsqueeze::<2>();
    let out = (base + lora.mul_scalar(scaling)) * scale;
    match bias {
        Some(b) => out + b.unsqueeze::<2>(),
        None => out,
    }
}

/// Whether `device` can train with f16 storage of the frozen weights: a wgpu device (where
/// [`frozen_linear`] keeps only the f16 copy alive between forward and backward) that offers
/// f16 (`shader-f16` on WebGPU). Elsewhere the drivers fall back to f32 with a notice.
pub fn f16_storage_available(device: &burn::tensor::Device) -> bool {
    is_wgpu(device) && device.supports_dtype(DType::F16)
}

/// `x·W + b` for a frozen weight `w` = `Wᵀ` `[in, out]` stored in f32 or f16; `x` `[..., in]`
/// f32 → `[..., out]` f32 (PyTorch's `F.linear` with the weight in Burn's `[in, out]` layout).
///
/// With an f16 weight on a wgpu device the product is one backend-extension op whose backward
/// widens the f16 weight again for `∂x = g·W` instead of keeping an f32 copy alive from the
/// forward: between forward and backward only the f16 weight exists, which is what halves the
/// frozen weights' memory. Other devices widen the weight with a plain cast.
pub fn frozen_linear<const D: usize>(
    x: Tensor<D>,
    w: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    if w.dtype() == DType::F32 {
        return burn::tensor::module::linear(x, w, bias);
    }
    #[cfg(any(feature = "wgpu", feature = "web"))]
    if is_wgpu(&x.device()) {
        let mut dims = x.dims();
        dims[D - 1] = w.dims()[1];
        let y = wgpu::frozen_matmul(as_rows(x), w);
        let y = match bias {
            Some(b) => y + b.unsqueeze::<2>(),
            None => y,
        };
        return y.reshape(dims);
    }
    burn::tensor::module::linear(x, to_f32(w), bias)
}

/// `t` in f32 (a no-op for f32 tensors).
pub fn to_f32<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(DType::F32)
    }
}
