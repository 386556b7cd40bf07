//! The one routing decision: which code runs an op, chosen from the tensor's device and dtype
//! (and whether the kernels are enabled) in [`Route::of`], and nowhere else.
//!
//! | device | kernels | dtype | route | products (`matmul`, `linear`) | row ops (softmax, dropout, LayerNorm, GELU) | LoRA linear | DoRA norm and scale | dropout masks |
//! |---|---|---|---|---|---|---|---|---|
//! | flex (CPU), native build | on | f32 | `Route::Cpu` | `gemm` (`kernels::gemm`) through the fused op | fused loops (`kernels::fused`) | one fused op (base and low-rank term accumulated together) | fused loops (`kernels::dora`) | seeded, host |
//! | flex (CPU), wasm build | on | f32 | `Route::Cpu` | Burn's `matmul` | fused loops | composition of products | fused loops | seeded, host |
//! | flex with the kernels off or data other than f32; ndarray | any | any | `Route::Host` | Burn's `matmul` | tensor-op references | composition | references | seeded, host |
//! | wgpu (Vulkan, Metal, WebGPU) | on | f32, f16 | `Route::Wgsl` | `shaders/matmul*.wgsl` | Cube ops and `shaders/*.wgsl` | composition of the WGSL products | `shaders/dora_norm.wgsl` (rank ≤ `kernels::MAX_KERNEL_RANK`), `shaders/dora_scale.wgsl` | seeded, `shaders/dropout.wgsl` |
//! | wgpu with `--no-kernels`, CUDA and other devices | any | any | `Route::Reference` | Burn's `matmul` | references | composition | references | Burn's device generator |
//!
//! "Seeded" masks are the counter-based hash of a per-call seed ([`super::mask`]), redrawn for
//! the backward; the references are the tensor-op functions `*_reference` beside each op in
//! [`super`], which the parity tests compare the routes against.

use burn::tensor::{DType, Device, Tensor};

use super::kernels_enabled;

/// Which code runs an op (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Burn's tensor ops and device generator: the references.
    Reference,
    /// The references on a CPU backend, with dropout masks drawn on the host from seeds.
    Host,
    /// The CPU's fused loops with hand-written backwards (flex, f32, kernels on).
    Cpu,
    /// The WGSL kernels and Cube ops (wgpu, f32 or f16, kernels on).
    Wgsl,
}

impl Route {
    /// The route of data of `dtype` on `device` (plain or autodiff).
    pub fn of(device: &Device, dtype: DType) -> Route {
        let on = kernels_enabled();
        if super::is_wgpu(device) {
            return if on { Route::Wgsl } else { Route::Reference };
        }
        if super::fused::is_flex(device) {
            return if on && dtype == DType::F32 {
                Route::Cpu
            } else {
                Route::Host
            };
        }
        if is_ndarray(device) {
            return Route::Host;
        }
        Route::Reference
    }

    /// The route of tensor `x`.
    pub fn of_tensor<const D: usize>(x: &Tensor<D>) -> Route {
        Route::of(&x.device(), x.dtype())
    }

    /// Whether matrix products go through lorabert's differentiable product op: the WGSL
    /// kernels, or `gemm` on the CPU in native builds.
    pub fn products(self) -> bool {
        match self {
            Route::Wgsl => true,
            Route::Cpu => cfg!(not(target_family = "wasm")),
            Route::Reference | Route::Host => false,
        }
    }

    /// Whether the row ops (attention softmax, dropout, LayerNorm, GELU) and DoRA's norm and
    /// scale run as fused ops with hand-written backwards.
    pub fn fused(self) -> bool {
        matches!(self, Route::Cpu | Route::Wgsl)
    }

    /// Whether a LoRA linear layer without adapter dropout runs as one fused op (the CPU with
    /// its `gemm` products).
    pub fn fused_lora_linear(self) -> bool {
        self == Route::Cpu && self.products()
    }

    /// Whether dropout masks are drawn from a per-call seed and redrawn for the backward
    /// (rather than from Burn's device generator).
    pub fn seeded_masks(self) -> bool {
        self != Route::Reference
    }

    /// Whether the WGSL kernels run.
    pub fn wgsl(self) -> bool {
        self == Route::Wgsl
    }
}

/// Whether `device` is Burn's ndarray backend (a CPU backend, in builds with it).
fn is_ndarray(device: &Device) -> bool {
    #[cfg(feature = "ndarray")]
    if device.clone().without_autodiff() == Device::ndarray() {
        return true;
    }
    let _ = device;
    false
}
