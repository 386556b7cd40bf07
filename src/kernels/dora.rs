//! DoRA's two ops (the row norm `‖W + s·B·A‖` and the output scale `(m / norm) ⊙ (base + s·lora)
//! + b`) as a backend extension: one trait ([`DoraBackend`]) with the WGSL kernels on wgpu, fused
//! loops on flex (in every build, with or without the wgpu feature) and a hand-written backward
//! under autodiff. [`crate::kernels::dora_weight_norm`] and [`crate::kernels::dora_scale`] pick
//! these or the tensor-op references by [`super::Route`].

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{
    AutodiffBackend, Backend, TensorMetadata, backend_extension, get_or_init_device_settings,
    tensor::FloatTensor,
};
use burn::tensor::{Shape, Tensor};

use super::prim::cast_to;

/// DoRA's row norm and output scale as backend ops: WGSL kernels on wgpu devices (`impl
/// DoraBackend for Cube` in `src/kernels/wgpu.rs`), fused loops on flex (`impl DoraBackend for
/// Flex` in `src/kernels/fused/flex.rs`), a hand-written backward under autodiff (here).
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "web")))]
pub trait DoraBackend: Backend {
    /// `shaders/dora_norm.wgsl`: `w` `[in, out]` (f32 or f16), `a` `[in, r]`, `b` `[r, out]`,
    /// `gram` = `AᵀᵀAᵀ` `[r, r]` → `[out]` f32.
    fn dora_row_norm(
        w: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        gram: FloatTensor<Self>,
        scaling: f32,
    ) -> FloatTensor<Self>;

    /// `shaders/dora_scale.wgsl`: `base`, `lora` `[rows, out]` (both f32 or both f16, the output
    /// likewise); `m`, `norm`, `bias` `[out]` f32.
    fn dora_scale(
        base: FloatTensor<Self>,
        lora: FloatTensor<Self>,
        m: FloatTensor<Self>,
        norm: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scaling: f32,
    ) -> FloatTensor<Self>;

    /// The backward of [`DoraBackend::dora_scale`] from its output `y` `[rows, out]` at `grad`
    /// (same shape and dtype): `(∂base = g ⊙ (m/n), ∂m = Σ_rows g ⊙ (y − bias) / m)`, `∂m`
    /// `[out]` f32 (a magnitude of exactly 0 divided as 1e-30). `∂lora` is `s·∂base` and
    /// `∂bias` = `Σ_rows g`, left to the caller.
    fn dora_scale_backward(
        grad: FloatTensor<Self>,
        y: FloatTensor<Self>,
        m: FloatTensor<Self>,
        norm: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// [`DoraBackend::dora_scale_backward`] from tensor ops (wgpu, and flex tensors that are not
/// contiguous f32): f16 activations (the f16 mode) meet f32 `m`, `norm` and bias: the row sums
/// are taken in the activations' dtype, as the reference's autodiff does, and widened; the
/// per-column scale is narrowed.
pub(crate) fn dora_scale_backward_ops<B: Backend>(
    grad: B::FloatTensorPrimitive,
    y: B::FloatTensorPrimitive,
    m: B::FloatTensorPrimitive,
    norm: B::FloatTensorPrimitive,
    bias: B::FloatTensorPrimitive,
) -> (B::FloatTensorPrimitive, B::FloatTensorPrimitive) {
    let out_features = m.shape()[0];
    let (act, param) = (grad.dtype(), m.dtype());
    let row = |t: B::FloatTensorPrimitive| B::float_reshape(t, Shape::new([1, out_features]));
    let scale = cast_to::<B>(row(B::float_div(m.clone(), norm)), act);
    let centred = B::float_sub(y, cast_to::<B>(row(bias), act));
    let gm = B::float_sum_dim(B::float_mul(grad.clone(), centred), 0);
    let bools = get_or_init_device_settings::<B>(&m.device()).bool_dtype;
    let zero = B::float_equal_elem(m.clone(), 0.0.into(), bools);
    let m = B::float_mask_fill(m, zero, 1e-30.into());
    let gm = B::float_div(cast_to::<B>(gm, param), row(m));
    (
        B::float_mul(grad, scale),
        B::float_reshape(gm, Shape::new([out_features])),
    )
}

/// [`crate::kernels::dora_weight_norm`] on the [`Route::Wgsl`](super::Route) and
/// [`Route::Cpu`](super::Route) routes: the backend op ([`DoraBackend::dora_row_norm`]).
pub fn dora_weight_norm(w: Tensor<2>, a: Tensor<2>, b: Tensor<2>, scaling: f64) -> Tensor<1> {
    let (w, a, b) = (w.detach(), a.detach(), b.detach());
    let gram = super::matmul(a.clone().transpose(), a.clone());
    let out = <burn::backend::Dispatch as DoraBackend>::dora_row_norm(
        w.into_dispatch(),
        a.into_dispatch(),
        b.into_dispatch(),
        gram.into_dispatch(),
        scaling as f32,
    );
    Tensor::from_dispatch(out)
}

/// [`crate::kernels::dora_scale`] on the [`Route::Wgsl`](super::Route) and
/// [`Route::Cpu`](super::Route) routes: the backend op ([`DoraBackend::dora_scale`]).
pub fn dora_scale(
    base: Tensor<2>,
    lora: Tensor<2>,
    m: Tensor<1>,
    norm: Tensor<1>,
    bias: Option<Tensor<1>>,
    scaling: f64,
) -> Tensor<2> {
    let out_features = m.dims()[0];
    let bias = bias.unwrap_or_else(|| Tensor::zeros([out_features], &m.device()));
    let out = <burn::backend::Dispatch as DoraBackend>::dora_scale(
        base.into_dispatch(),
        lora.into_dispatch(),
        m.into_dispatch(),
        norm.detach().into_dispatch(),
        bias.into_dispatch(),
        scaling as f32,
    );
    Tensor::from_dispatch(out)
}

impl<B: DoraBackend, C: CheckpointStrategy> DoraBackend for Autodiff<B, C> {
    fn dora_scale_backward(
        grad: FloatTensor<Self>,
        y: FloatTensor<Self>,
        m: FloatTensor<Self>,
        norm: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        // Not differentiated again (no double backward in training).
        let (gx, gm) = B::dora_scale_backward(
            grad.into_primitive(),
            y.into_primitive(),
            m.into_primitive(),
            norm.into_primitive(),
            bias.into_primitive(),
        );
        (Self::from_inner(gx), Self::from_inner(gm))
    }

    fn dora_row_norm(
        w: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        gram: FloatTensor<Self>,
        scaling: f32,
    ) -> FloatTensor<Self> {
        // The norm is a constant of the graph (detached, as in DoRA section 4.3 and PEFT).
        Self::from_inner(B::dora_row_norm(
            w.into_primitive(),
            a.into_primitive(),
            b.into_primitive(),
            gram.into_primitive(),
            scaling,
        ))
    }

    fn dora_scale(
        base: FloatTensor<Self>,
        lora: FloatTensor<Self>,
        m: FloatTensor<Self>,
        norm: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scaling: f32,
    ) -> FloatTensor<Self> {
        /// `y = (m/n) ⊙ (base + s·lora) + bias`, rows × out:
        /// `∂base = g ⊙ (m/n)`, `∂lora = s · g ⊙ (m/n)`, `∂bias = Σ_rows g`, and
        /// `∂m = Σ_rows g ⊙ (base + s·lora) / n = Σ_rows g ⊙ (y − bias) / m`: the backward keeps
        /// the output `y`, which the next op usually keeps anyway (the attention scores' matmul
        /// for `query`/`key`, the context for `value`, GELU for `intermediate.dense`: the same
        /// buffer), instead of a `[rows, out]` copy of `base + s·lora`. A magnitude of exactly 0
        /// (never the case from PEFT's initialisation `m = ‖W_j‖`) is divided as 1e-30.
        #[derive(Debug)]
        struct DoraScaleBackward;

        impl<B: DoraBackend> Backward<B, 4> for DoraScaleBackward {
            type State = (
                Option<(B::FloatTensorPrimitive, B::FloatTensorPrimitive)>,
                B::FloatTensorPrimitive,
                B::FloatTensorPrimitive,
                f32,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 4>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [n_base, n_lora, n_m, n_bias] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (kept, m, norm, s) = ops.state;
                let out_features = m.shape()[0];
                if let Some(node) = n_bias {
                    let gb = cast_to::<B>(B::float_sum_dim(grad.clone(), 0), m.dtype());
                    grads.register::<B>(node.id, B::float_reshape(gb, Shape::new([out_features])));
                }
                let g_base = match (n_m, kept) {
                    (Some(node), Some((y, bias))) => {
                        let (g_base, gm) = B::dora_scale_backward(grad, y, m, norm, bias);
                        grads.register::<B>(node.id, gm);
                        g_base
                    }
                    _ => {
                        let scale =
                            B::float_reshape(B::float_div(m, norm), Shape::new([1, out_features]));
                        let scale = cast_to::<B>(scale, grad.dtype());
                        B::float_mul(grad, scale)
                    }
                };
                if let Some(node) = n_lora {
                    let g_lora = if s == 1.0 {
                        g_base.clone()
                    } else {
                        B::float_mul_scalar(g_base.clone(), s.into())
                    };
                    grads.register::<B>(node.id, g_lora);
                }
                if let Some(node) = n_base {
                    grads.register::<B>(node.id, g_base);
                }
            }
        }

        let m_tracked = m.is_tracked();
        match DoraScaleBackward
            .prepare::<C>([base.node(), lora.node(), m.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (m, norm) = (m.into_primitive(), norm.into_primitive());
                let bias = bias.into_primitive();
                let out = B::dora_scale(
                    base.into_primitive(),
                    lora.into_primitive(),
                    m.clone(),
                    norm.clone(),
                    bias.clone(),
                    scaling,
                );
                let kept = m_tracked.then(|| (out.clone(), bias));
                prep.finish((kept, m, norm, scaling), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::dora_scale(
                base.into_primitive(),
                lora.into_primitive(),
                m.into_primitive(),
                norm.into_primitive(),
                bias.into_primitive(),
                scaling,
            )),
        }
    }
}
