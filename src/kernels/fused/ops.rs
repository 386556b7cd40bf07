//! The fused ops as compositions of a backend's own tensor ops: what the Cube (wgpu) side
//! runs where it has no WGSL kernel, and what the flex side falls back to for other dtypes.

use burn::backend::{Backend, TensorMetadata, tensor::FloatTensor};
use burn::tensor::TensorData;

use crate::kernels::prim::cast_to;

pub(super) const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// `1/√(2π)`, the standard normal density at 0.
pub(super) const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `Φ(x)` from tensor ops of backend `B`.
pub(super) fn phi_ops<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let e = B::float_erf(B::float_mul_scalar(x, FRAC_1_SQRT_2.into()));
    B::float_add_scalar(B::float_mul_scalar(e, 0.5.into()), 0.5.into())
}

pub(super) fn gelu_ops<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul(x.clone(), phi_ops::<B>(x))
}

pub(super) fn gelu_backward_ops<B: Backend>(
    x: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
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

pub(super) fn attention_softmax_ops<B: Backend>(
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
pub(super) fn dropout_ops<B: Backend>(x: FloatTensor<B>, seed: u64, keep: f64) -> FloatTensor<B> {
    let shape = x.shape();
    let mask = crate::kernels::mask::mask(seed, shape.num_elements(), keep);
    let mask = B::float_from_data(TensorData::new(mask, shape), &x.device());
    let mask = cast_to::<B>(mask, x.dtype());
    B::float_mul(x, mask)
}

pub(super) fn softmax_backward_ops<B: Backend>(
    y: FloatTensor<B>,
    grad: FloatTensor<B>,
    scale: f64,
) -> FloatTensor<B> {
    let last = y.shape().num_dims() - 1;
    let dot = B::float_sum_dim(B::float_mul(grad.clone(), y.clone()), last);
    B::float_mul_scalar(B::float_mul(y, B::float_sub(grad, dot)), scale.into())
}

/// `x` reshaped to `[rows, h]` and the shape to restore.
pub(super) fn rows_of<B: Backend>(x: FloatTensor<B>) -> (FloatTensor<B>, burn::tensor::Shape) {
    let shape = x.shape();
    let h = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / h.max(1);
    (B::float_reshape(x, [rows, h].into()), shape)
}

pub(super) fn layer_norm_backward_ops<B: Backend>(
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

/// The forward of [`super::FusedBackend::lora_linear`] on backend `B`: `(y, x·a)`, where
/// `y = x·w` and then `y += [x·a | 1]·[b ; bias]` (the bias folded into the accumulated product
/// as a column of ones, so no separate pass over `y` adds it).
pub(super) fn lora_linear_parts<B: super::FusedBackend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    bias: FloatTensor<B>,
    a: FloatTensor<B>,
    b: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let ax = B::matmul(x.clone(), a);
    let y = B::matmul(x, w);
    let rows = ax.shape()[0];
    let out = bias.shape()[0];
    let ones = B::float_ones([rows, 1].into(), &ax.device(), ax.dtype().into());
    let ax1 = B::float_cat(vec![ax.clone(), ones], 1);
    let b1 = B::float_cat(vec![b, B::float_reshape(bias, [1, out].into())], 0);
    (B::matmul_add(y, ax1, b1), ax)
}
