//! The element-wise and per-row WGSL kernels of [`super::wgpu`]: dropout with a counter-based
//! mask, a copy into a new buffer (what a launch binds instead of one allocation twice), and
//! LayerNorm forward and backward, one workgroup per row.

use super::wgpu::{ActKernel, SCALE_WORKGROUP, f32_contiguous, grid, output};
use burn::backend::wgpu::{CubeTensor, into_contiguous};
use burn::tensor::DType;

const LAYER_NORM_WGSL: &str = include_str!("../../shaders/layer_norm.wgsl");
const LAYER_NORM_BACKWARD_WGSL: &str = include_str!("../../shaders/layer_norm_backward.wgsl");
/// Invocations per LayerNorm row (BERT's hidden sizes 384..1024 are 3..8 elements each).
const LAYER_NORM_WORKGROUP: u32 = 128;

const DROPOUT_WGSL: &str = include_str!("../../shaders/dropout.wgsl");
/// Inverted dropout of `x` (any shape, f32 or f16) with the counter-based mask of `seed`
/// (`shaders/dropout.wgsl`, [`super::mask::device_mask_keeps`]): kept elements scaled
/// by `1/keep`, in `x`'s dtype. Applied to an upstream gradient with the same seed it is the
/// backward.
pub(crate) fn dropout_hashed(x: CubeTensor, seed: u64, keep: f64) -> CubeTensor {
    elementwise(
        "dropout.wgsl",
        DROPOUT_WGSL,
        x,
        &[
            seed as u32,
            (seed >> 32) as u32,
            super::mask::device_mask_threshold(keep),
            ((1.0 / keep) as f32).to_bits(),
        ],
    )
}

/// Launches the element-wise kernel `name` (`source`) over `x` (any shape, f32 or f16, made
/// contiguous) into a new tensor of its shape and dtype, one invocation per element; its
/// parameters are `[n, extra.., row stride of the dispatch grid]`.
///
/// # Panics
/// When `x` is neither f32 nor f16, or has more than `u32::MAX` elements.
fn elementwise(
    name: &'static str,
    source: &'static str,
    x: CubeTensor,
    extra: &[u32],
) -> CubeTensor {
    let dtype = x.dtype;
    assert!(
        matches!(dtype, DType::F32 | DType::F16),
        "{name}: x {dtype:?} (f32 or f16 expected)"
    );
    let x = into_contiguous(x);
    let shape = x.meta.shape().clone();
    let n = shape.num_elements();
    assert!(
        n <= u32::MAX as usize,
        "{name}: {n} elements exceed u32 indexing"
    );
    let out = output(&x, shape, dtype);
    let (gx, gy) = grid((n as u32).div_ceil(SCALE_WORKGROUP));
    let mut params = vec![n as u32];
    params.extend_from_slice(extra);
    params.push(gx * SCALE_WORKGROUP);
    ActKernel::new(name, source, dtype, SCALE_WORKGROUP).launch((gx, gy), &[&x, &out], &params);
    out
}

const COPY_WGSL: &str = include_str!("../../shaders/copy.wgsl");

/// A contiguous copy of `x` (f32 or f16) in a new allocation (`shaders/copy.wgsl`): what a launch
/// binds where it would otherwise bind one allocation twice (see
/// [`super::wgpu_bindings::check_launch`]).
///
/// # Panics
/// When `x` is neither f32 nor f16, or has more than `u32::MAX` elements.
pub(crate) fn copy_new(x: CubeTensor) -> CubeTensor {
    elementwise("copy.wgsl", COPY_WGSL, x, &[])
}

/// Launches one LayerNorm kernel over the rows of `x` `[.., h]` (f32 or f16) with `gamma`
/// (and `beta` or the upstream gradient `g`, in `x`'s dtype) → `[.., h]` in `x`'s dtype.
fn layer_norm_launch(
    backward: bool,
    x: CubeTensor,
    gamma: CubeTensor,
    third: CubeTensor,
    eps: f64,
) -> CubeTensor {
    let dtype = x.dtype;
    assert!(
        matches!(dtype, DType::F32 | DType::F16),
        "layer_norm kernel: x {dtype:?} (f32 or f16 expected)"
    );
    let x = into_contiguous(x);
    let gamma = f32_contiguous(gamma);
    let third = if backward {
        assert_eq!(
            third.dtype, dtype,
            "layer_norm kernel: the gradient has x's dtype"
        );
        into_contiguous(third)
    } else {
        f32_contiguous(third)
    };
    let shape = x.meta.shape().clone();
    let h = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / h.max(1);
    let out = output(&x, shape, dtype);
    let (gx, gy) = grid(rows as u32);
    let (name, source) = if backward {
        ("layer_norm_backward.wgsl", LAYER_NORM_BACKWARD_WGSL)
    } else {
        ("layer_norm.wgsl", LAYER_NORM_WGSL)
    };
    ActKernel::new(name, source, dtype, LAYER_NORM_WORKGROUP).launch(
        (gx, gy),
        &[&x, &gamma, &third, &out],
        &[rows as u32, h as u32, (eps as f32).to_bits(), gx],
    );
    out
}

/// LayerNorm over the last axis in one pass per row (`shaders/layer_norm.wgsl`): `x` `[.., h]`
/// f32 or f16, `gamma`, `beta` `[h]` f32 → `[.., h]` in `x`'s dtype, statistics in f32.
pub(crate) fn layer_norm_rows(
    x: CubeTensor,
    gamma: CubeTensor,
    beta: CubeTensor,
    eps: f64,
) -> CubeTensor {
    layer_norm_launch(false, x, gamma, beta, eps)
}

/// `∂x` of [`layer_norm_rows`] from `x` and the upstream gradient `g` (`shaders/layer_norm_backward.wgsl`).
pub(crate) fn layer_norm_rows_backward(
    x: CubeTensor,
    gamma: CubeTensor,
    g: CubeTensor,
    eps: f64,
) -> CubeTensor {
    layer_norm_launch(true, x, gamma, g, eps)
}
