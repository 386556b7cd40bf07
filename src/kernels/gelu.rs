//! Exact GELU as one differentiable op (backend extension) whose backward keeps only its input.
//!
//! Built from tensor ops, `x·(1 + erf(x/√2))/2` keeps three `[.., intermediate]` tensors alive for
//! the backward (`x`, `x/√2` for erf, `Φ(x)` for the product) and runs about ten element-wise
//! passes; this op keeps `x` alone and computes `∂x = g·(Φ(x) + x·φ(x))` in the backward. On
//! the flex CPU backend forward and backward are each one fused pass over f32 data split across
//! the rayon pool (flex runs element-wise ops on one thread); on wgpu they are tensor-op
//! compositions (the saving there is memory).

#[cfg(any(feature = "wgpu", feature = "web"))]
use burn::backend::Cube;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{
    AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension, tensor::FloatTensor,
};
use burn::tensor::{DType, Tensor, TensorData};

const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// `1/√(2π)`, the standard normal density at 0.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Exact (erf) GELU with a hand-written backward.
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "web")))]
pub trait GeluBackend: Backend {
    /// `x·Φ(x)`, any shape, same dtype.
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `grad·(Φ(x) + x·φ(x))`, the gradient of [`GeluBackend::gelu_exact`] at `x`.
    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
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

/// [`crate::kernels::gelu`] through the extension.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as GeluBackend>::gelu_exact(
        x.into_dispatch(),
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

#[cfg(any(feature = "wgpu", feature = "web"))]
impl GeluBackend for Cube {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_ops::<Self>(x)
    }

    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_backward_ops::<Self>(x, grad)
    }
}

fn gelu_f32(x: f32) -> f32 {
    x * 0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2 as f32))
}

fn gelu_grad_f32(x: f32) -> f32 {
    let phi = 0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2 as f32));
    phi + x * libm::expf(-0.5 * x * x) * FRAC_1_SQRT_2PI as f32
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
    let mut out = vec![0f32; a.len()];
    const CHUNK: usize = 1 << 14;
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| {
                for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                    *o = f(*a, *b);
                }
            });
    }
    #[cfg(target_family = "wasm")]
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = f(*a, *b);
    }
    out
}

impl GeluBackend for Flex {
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
}

impl<B: GeluBackend, C: CheckpointStrategy> GeluBackend for Autodiff<B, C> {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        /// Keeps `x` (shared with the forward's input, no copy) for `∂x = g·(Φ(x) + x·φ(x))`.
        #[derive(Debug)]
        struct GeluBackward;

        impl<B: GeluBackend> Backward<B, 1> for GeluBackward {
            type State = B::FloatTensorPrimitive;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [n_x] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                if let Some(node) = n_x {
                    grads.register::<B>(node.id, B::gelu_exact_backward(ops.state, grad));
                }
            }
        }

        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
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
}
