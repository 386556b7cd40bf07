//! The WGSL kernels of [`crate::kernels`] on Burn's wgpu backend, through Burn's backend-extension
//! mechanism (`#[backend_extension]`, as in Burn's `examples/custom-wgpu-kernel`): the sources in
//! `shaders/` are templated (rank, storage type, workgroup size), launched on the tensors' compute
//! client, and given an autodiff backward where they sit in the graph.

use super::DORA_NORM_EPS_SQ;
use super::fused::cast_to;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::wgpu::{
    CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous,
};
use burn::backend::{
    AutodiffBackend, Backend, Cube, CubeDevice, DispatchDevice, TensorMetadata, backend_extension,
    get_or_init_device_settings, tensor::FloatTensor,
};
use burn::tensor::{DType, Device, Shape, Tensor};
use cubecl::prelude::KernelId;
use cubecl::server::KernelArguments;
use cubecl::{CubeCount, CubeDim};

/// Backend operations with a WGSL kernel on wgpu devices, and the same DoRA ops as fused loops on
/// flex (`impl KernelBackend for Flex` in `src/kernels/fused/flex.rs`).
#[backend_extension(Autodiff, Flex, Cube)]
pub trait KernelBackend: Backend {
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

    /// The backward of [`KernelBackend::dora_scale`] from its output `y` `[rows, out]` at `grad`
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

/// [`KernelBackend::dora_scale_backward`] from tensor ops (wgpu, and flex tensors that are not
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

/// Whether tensors on `device` run the WGSL kernels: a wgpu device (its compiler takes WGSL).
pub fn runs_on(device: &Device) -> bool {
    match device.clone().inner().as_dispatch() {
        DispatchDevice::Cube(d) => matches!(d, CubeDevice::Wgpu(_)),
        _ => false,
    }
}

/// [`crate::kernels::dora_weight_norm`] on a wgpu device.
pub fn dora_weight_norm(w: Tensor<2>, a: Tensor<2>, b: Tensor<2>, scaling: f64) -> Tensor<1> {
    let (w, a, b) = (w.detach(), a.detach(), b.detach());
    let gram = super::matmul(a.clone().transpose(), a.clone());
    let out = <burn::backend::Dispatch as KernelBackend>::dora_row_norm(
        w.into_dispatch(),
        a.into_dispatch(),
        b.into_dispatch(),
        gram.into_dispatch(),
        scaling as f32,
    );
    Tensor::from_dispatch(out)
}

/// [`crate::kernels::dora_scale`] on a wgpu device.
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
    let out = <burn::backend::Dispatch as KernelBackend>::dora_scale(
        base.into_dispatch(),
        lora.into_dispatch(),
        m.into_dispatch(),
        norm.detach().into_dispatch(),
        bias.into_dispatch(),
        scaling as f32,
    );
    Tensor::from_dispatch(out)
}

const DORA_NORM_WGSL: &str = include_str!("../../shaders/dora_norm.wgsl");
const DORA_SCALE_WGSL: &str = include_str!("../../shaders/dora_scale.wgsl");

const WORKGROUP: u32 = 64;
pub(super) const SCALE_WORKGROUP: u32 = 256;
/// Workgroups per dispatch row of `dora_scale` (WebGPU allows 65535 per dimension).
const SCALE_GROUPS_X: u32 = 4096;

#[derive(Debug)]
struct DoraNormKernel {
    rank: usize,
    w_f16: bool,
}

impl KernelSource for DoraNormKernel {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(DORA_NORM_WGSL)
            .register("r", self.rank.to_string())
            .register("w_elem", if self.w_f16 { "f16" } else { "f32" })
            .register("enable", if self.w_f16 { "enable f16;" } else { "" })
            .register("workgroup_size", WORKGROUP.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.rank, self.w_f16, WORKGROUP))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

const ROW_STATS_WGSL: &str = include_str!("../../shaders/row_stats.wgsl");

/// `source` with its activation type filled in: `{{ act }}` f16 (and `{{ enable }}` turning on
/// WGSL's f16) or f32.
pub(super) fn act_template(source: &str, f16: bool) -> SourceTemplate {
    SourceTemplate::new(source)
        .register("act", if f16 { "f16" } else { "f32" })
        .register("enable", if f16 { "enable f16;" } else { "" })
}

/// A kernel of `shaders/` templated on the activation type: `{{ act }}` (f32, or f16 in the f16
/// mode, with `{{ enable }}` turning on WGSL's f16), `{{ workgroup_size }}`, and (LayerNorm)
/// `{{ row_stats }}`, the shared row reductions of `shaders/row_stats.wgsl`.
#[derive(Debug)]
pub(super) struct ActKernel {
    /// The shader's file name (part of the kernel's cache id).
    name: &'static str,
    source: &'static str,
    f16: bool,
    workgroup: u32,
}

impl ActKernel {
    /// The kernel `name` (`source`) for activations of `dtype` (f16, else f32).
    pub(super) fn new(
        name: &'static str,
        source: &'static str,
        dtype: DType,
        workgroup: u32,
    ) -> Self {
        ActKernel {
            name,
            source,
            f16: dtype == DType::F16,
            workgroup,
        }
    }

    /// Launches the kernel over a `(x, y)` grid of workgroups of its size (see [`launch`]).
    pub(super) fn launch(self, (gx, gy): (u32, u32), tensors: &[&CubeTensor], params: &[u32]) {
        let workgroup = self.workgroup;
        launch(
            self,
            workgroup,
            CubeCount::Static(gx, gy, 1),
            tensors,
            params,
        );
    }
}

impl KernelSource for ActKernel {
    fn source(&self) -> SourceTemplate {
        act_template(self.source, self.f16)
            .register("workgroup_size", self.workgroup.to_string())
            .register("row_stats", ROW_STATS_WGSL)
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.name, self.f16, self.workgroup))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Whether `t` lives on a wgpu device (the WGSL kernels' compiler).
pub(crate) fn is_wgpu_tensor(t: &CubeTensor) -> bool {
    matches!(t.device, CubeDevice::Wgpu(_))
}

/// `(x-dimension, y-dimension)` workgroup counts covering `groups` workgroups (WebGPU allows
/// 65535 per dimension); kernels index `wid.y * x + wid.x` and skip what lies past the end.
pub(super) fn grid(groups: u32) -> (u32, u32) {
    if groups <= SCALE_GROUPS_X {
        (groups.max(1), 1)
    } else {
        (SCALE_GROUPS_X, groups.div_ceil(SCALE_GROUPS_X))
    }
}

/// A new contiguous tensor of `shape` and `dtype` (f32 or f16) on `like`'s device (the kernels'
/// output).
pub(super) fn output(like: &CubeTensor, shape: Shape, dtype: DType) -> CubeTensor {
    let bytes = shape.num_elements() * if dtype == DType::F16 { 2 } else { 4 };
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        like.client.empty(bytes),
        dtype,
    )
}

/// Launches `kernel` over `count` workgroups of `workgroup` invocations with `tensors` bound in
/// order (bindings 0..n, the output last among them) and `params` as the final binding.
///
/// # Panics
/// When a binding the kernel declares `read_write` overlaps another binding
/// ([`super::wgpu_bindings::check_launch`]: WebGPU rejects such a dispatch).
pub(super) fn launch<K: KernelSource + std::fmt::Debug>(
    kernel: K,
    workgroup: u32,
    count: CubeCount,
    tensors: &[&CubeTensor],
    params: &[u32],
) {
    super::wgpu_bindings::check_launch(&kernel, tensors);
    let client = &tensors[0].client;
    let bytes: Vec<u8> = params.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut buffers: Vec<_> = tensors.iter().map(|t| t.handle.clone().binding()).collect();
    buffers.push(client.create_from_slice(&bytes).binding());
    client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim::new_1d(workgroup))),
        count,
        KernelArguments::new().with_buffers(buffers),
    );
}

pub(super) fn f32_contiguous(t: CubeTensor) -> CubeTensor {
    assert_eq!(t.dtype, DType::F32, "kernel input must be f32");
    into_contiguous(t)
}

impl KernelBackend for Cube {
    fn dora_row_norm(
        w: CubeTensor,
        a: CubeTensor,
        b: CubeTensor,
        gram: CubeTensor,
        scaling: f32,
    ) -> CubeTensor {
        let w_f16 = match w.dtype {
            DType::F16 => true,
            DType::F32 => false,
            other => panic!("dora_row_norm: weight dtype {other:?} (f32 or f16 expected)"),
        };
        let w = into_contiguous(w);
        let (a, b, gram) = (f32_contiguous(a), f32_contiguous(b), f32_contiguous(gram));
        let (n_in, n_out) = (w.meta.shape()[0], w.meta.shape()[1]);
        let rank = a.meta.shape()[1];
        let out = output(&w, Shape::new([n_out]), DType::F32);
        launch(
            DoraNormKernel { rank, w_f16 },
            WORKGROUP,
            CubeCount::Static((n_out as u32).div_ceil(WORKGROUP), 1, 1),
            &[&w, &a, &b, &gram, &out],
            &[
                n_in as u32,
                n_out as u32,
                scaling.to_bits(),
                (DORA_NORM_EPS_SQ as f32).to_bits(),
            ],
        );
        out
    }

    fn dora_scale(
        base: CubeTensor,
        lora: CubeTensor,
        m: CubeTensor,
        norm: CubeTensor,
        bias: CubeTensor,
        scaling: f32,
    ) -> CubeTensor {
        let dtype = base.dtype;
        assert!(
            matches!(dtype, DType::F32 | DType::F16) && lora.dtype == dtype,
            "dora_scale: base {dtype:?} and lora {:?} (both f32 or both f16 expected)",
            lora.dtype
        );
        let (base, lora) = (into_contiguous(base), into_contiguous(lora));
        let (m, norm, bias) = (
            f32_contiguous(m),
            f32_contiguous(norm),
            f32_contiguous(bias),
        );
        let shape = base.meta.shape().clone();
        let total = shape.num_elements();
        let n_out = shape[shape.num_dims() - 1];
        let out = output(&base, shape, dtype);
        let (gx, gy) = grid((total as u32).div_ceil(SCALE_WORKGROUP));
        ActKernel::new("dora_scale.wgsl", DORA_SCALE_WGSL, dtype, SCALE_WORKGROUP).launch(
            (gx, gy),
            &[&base, &lora, &m, &norm, &bias, &out],
            &[
                total as u32,
                n_out as u32,
                scaling.to_bits(),
                gx * SCALE_WORKGROUP,
            ],
        );
        out
    }

    fn dora_scale_backward(
        grad: CubeTensor,
        y: CubeTensor,
        m: CubeTensor,
        norm: CubeTensor,
        bias: CubeTensor,
    ) -> (CubeTensor, CubeTensor) {
        dora_scale_backward_ops::<Self>(grad, y, m, norm, bias)
    }
}

impl<B: KernelBackend, C: CheckpointStrategy> KernelBackend for Autodiff<B, C> {
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

        impl<B: KernelBackend> Backward<B, 4> for DoraScaleBackward {
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
