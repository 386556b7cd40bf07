//! [`FusedBackend`] under autodiff: each fused op recorded with a hand-written backward that
//! keeps one tensor (or none), as Burn's custom-kernel example keeps forward and backward apart.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::{AutodiffBackend, Backend, TensorMetadata, tensor::FloatTensor};

use super::{FusedBackend, cast_to};

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

/// `∂x` of the LayerNorm over the last axis at `x` ([`FusedBackend::layer_norm_last`]) from its
/// output gradient, and `(∂γ, ∂β)` when `params` (γ and β trained); `∂x` alone otherwise.
#[allow(clippy::type_complexity)]
fn layer_norm_grads<B: FusedBackend>(
    x: B::FloatTensorPrimitive,
    gamma: B::FloatTensorPrimitive,
    grad: B::FloatTensorPrimitive,
    eps: f64,
    params: bool,
) -> (
    B::FloatTensorPrimitive,
    Option<(B::FloatTensorPrimitive, B::FloatTensorPrimitive)>,
) {
    if params {
        let (dx, dgamma, dbeta) = B::layer_norm_last_backward(x, gamma, grad, eps);
        (dx, Some((dgamma, dbeta)))
    } else {
        (B::layer_norm_last_backward_x(x, gamma, grad, eps), None)
    }
}

/// Registers `(∂γ, ∂β)` for the tracked ones of the parents `[γ, β]`.
fn register_params<B: Backend>(
    grads: &mut Gradients,
    parents: [Option<burn::backend::autodiff::NodeId>; 2],
    dparams: Option<(B::FloatTensorPrimitive, B::FloatTensorPrimitive)>,
) {
    let Some((dgamma, dbeta)) = dparams else {
        return;
    };
    for (id, d) in parents.into_iter().zip([dgamma, dbeta]) {
        if let Some(id) = id {
            grads.register::<B>(id, d);
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

impl<B: FusedBackend, S: Clone + Send + std::fmt::Debug + 'static> Backward<B, 2>
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
            grads.register::<B>(node.id, B::matmul(fa_t, grad.clone()));
        }
        if let Some(node) = n_a {
            let dfa = B::matmul(grad, B::float_swap_dims(b, last - 1, last));
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

    fn matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        // Keeps `a` and `b` (handles): `∂b = aᵀ·g`, `∂a = g·bᵀ`.
        let backward = MapMatmulBackward::<B, ()> {
            f: |_, a| a,
            df: |_, _, g| g,
        };
        map_matmul::<B, C, ()>(a, b, (), backward, |a, b, _| B::matmul(a, b))
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
        /// Keeps `x`, `w`, `a`, `b` (handles) and `x·a` (`[rows, r]`); see
        /// [`FusedBackend::lora_linear`] for the gradients. `w` and `bias` are not parents.
        #[derive(Debug)]
        struct LoraLinearBackward;

        impl<B: FusedBackend> Backward<B, 3> for LoraLinearBackward {
            type State = [B::FloatTensorPrimitive; 5];

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [n_x, n_a, n_b] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let [x, w, a, b, ax] = ops.state;
                let grad = cast_to::<B>(grad, x.dtype());
                let t = |m| B::float_swap_dims(m, 0, 1);
                if let Some(node) = n_b {
                    grads.register::<B>(node.id, B::matmul(t(ax), grad.clone()));
                }
                if n_x.is_none() && n_a.is_none() {
                    return;
                }
                let g_ax = B::matmul(grad.clone(), t(b));
                if let Some(node) = n_a {
                    grads.register::<B>(node.id, B::matmul(t(x), g_ax.clone()));
                }
                if let Some(node) = n_x {
                    let dx = B::matmul_add(B::matmul(grad, t(w)), g_ax, t(a));
                    grads.register::<B>(node.id, dx);
                }
            }
        }

        let (w, bias) = (w.into_primitive(), bias.into_primitive());
        match LoraLinearBackward
            .prepare::<C>([x.node(), a.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, a, b) = (x.into_primitive(), a.into_primitive(), b.into_primitive());
                let (y, ax) = super::ops::lora_linear_parts::<B>(
                    x.clone(),
                    w.clone(),
                    bias,
                    a.clone(),
                    b.clone(),
                );
                prep.finish([x, w, a, b, ax], y)
            }
            OpsKind::UnTracked(prep) => prep.finish(
                super::ops::lora_linear_parts::<B>(
                    x.into_primitive(),
                    w,
                    bias,
                    a.into_primitive(),
                    b.into_primitive(),
                )
                .0,
            ),
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
                let params = n_gamma.is_some() || n_beta.is_some();
                if n_x.is_none() && !params {
                    return;
                }
                let (dx, dparams) = layer_norm_grads::<B>(x, gamma, grad, eps, params);
                if let Some(node) = n_x {
                    grads.register::<B>(node.id, dx);
                }
                register_params::<B>(
                    grads,
                    [n_gamma.map(|n| n.id), n_beta.map(|n| n.id)],
                    dparams,
                );
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

    fn add_layer_norm(
        y: FloatTensor<Self>,
        r: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        /// Keeps the sum `z` and `γ`, as [`FusedBackend::layer_norm_last`] keeps its input; `y`
        /// and `r` get the same `∂z`.
        #[derive(Debug)]
        struct AddLayerNormBackward;

        impl<B: FusedBackend> Backward<B, 4> for AddLayerNormBackward {
            type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 4>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [n_y, n_r, n_gamma, n_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (z, gamma, eps) = ops.state;
                let params = n_gamma.is_some() || n_beta.is_some();
                if n_y.is_none() && n_r.is_none() && !params {
                    return;
                }
                let (dz, dparams) = layer_norm_grads::<B>(z, gamma, grad, eps, params);
                match (n_y, n_r) {
                    (Some(y), Some(r)) => {
                        grads.register::<B>(y.id, dz.clone());
                        grads.register::<B>(r.id, dz);
                    }
                    (Some(node), None) | (None, Some(node)) => grads.register::<B>(node.id, dz),
                    (None, None) => {}
                }
                register_params::<B>(
                    grads,
                    [n_gamma.map(|n| n.id), n_beta.map(|n| n.id)],
                    dparams,
                );
            }
        }

        match AddLayerNormBackward
            .prepare::<C>([y.node(), r.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let gamma = gamma.into_primitive();
                let (z, out) = B::add_layer_norm(
                    y.into_primitive(),
                    r.into_primitive(),
                    gamma.clone(),
                    beta.into_primitive(),
                    eps,
                );
                (
                    Self::from_inner(z.clone()),
                    prep.finish((z, gamma, eps), out),
                )
            }
            OpsKind::UnTracked(prep) => {
                let (z, out) = B::add_layer_norm(
                    y.into_primitive(),
                    r.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    eps,
                );
                (Self::from_inner(z), prep.finish(out))
            }
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
