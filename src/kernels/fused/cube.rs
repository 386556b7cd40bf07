//! [`FusedBackend`] on the Cube (wgpu) backend: WGSL kernels (`shaders/`) for dropout,
//! LayerNorm and the matrix products, tensor-op compositions ([`super::ops`]) for the rest.

use burn::backend::Cube;
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::{TensorMetadata, tensor::FloatTensor};
use burn::tensor::DType;

use super::FusedBackend;
use super::ops::*;
use crate::kernels::prim::cast_to;

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
            return crate::kernels::wgpu_elementwise::dropout_hashed(x, seed, keep);
        }
        dropout_ops::<Self>(x, seed, keep)
    }

    fn matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        if use_wgsl(&a)
            && let Some(out) = crate::kernels::wgpu_matmul::matmul(&a, &b)
        {
            return out;
        }
        Self::float_matmul(a, b)
    }

    fn matmul_add(
        c: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::float_add(c, Self::matmul(a, b))
    }

    fn lora_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        lora_linear_parts::<Self>(x, w, bias, a, b).0
    }

    fn gelu_matmul(u: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::matmul(Self::gelu_exact(u), w)
    }

    fn dropout_matmul(
        p: FloatTensor<Self>,
        v: FloatTensor<Self>,
        seed: u64,
        keep: f64,
    ) -> FloatTensor<Self> {
        Self::matmul(Self::dropout_mask(p, seed, keep), v)
    }

    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        if use_wgsl(&x) {
            return crate::kernels::wgpu_elementwise::layer_norm_rows(x, gamma, beta, eps);
        }
        // f16 rows are normalised in f32 (their squares can overflow f16), as autocast.
        let dtype = x.dtype();
        let x = cast_to::<Self>(x, DType::F32);
        cast_to::<Self>(Self::layer_norm(x, gamma, Some(beta), eps), dtype)
    }

    fn add_layer_norm(
        y: FloatTensor<Self>,
        r: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let z = Self::float_add(y, r);
        (z.clone(), Self::layer_norm_last(z, gamma, beta, eps))
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
            return crate::kernels::wgpu_elementwise::layer_norm_rows_backward(x, gamma, grad, eps);
        }
        Self::layer_norm_last_backward(x, gamma, grad, eps).0
    }
}

/// Whether the Cube ops run their WGSL kernels on `x`: a wgpu tensor in f32 or f16, the
/// kernels on (`--no-kernels` keeps the tensor-op compositions).
fn use_wgsl(x: &FloatTensor<Cube>) -> bool {
    crate::kernels::kernels_enabled()
        && crate::kernels::wgpu::is_wgpu_tensor(x)
        && matches!(x.dtype(), DType::F32 | DType::F16)
}
