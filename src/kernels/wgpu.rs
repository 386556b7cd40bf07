//! The WGSL kernels of [`crate::kernels`] on Burn's wgpu backend, through Burn's backend-extension
//! mechanism (`#[backend_extension]`, as in Burn's `examples/custom-wgpu-kernel`): the sources in
//! `shaders/` are templated (rank, storage type, workgroup size), launched on the tensors' compute
//! client, and given an autodiff backward where they sit in the graph.

use super::DORA_NORM_EPS_SQ;
use super::dora::DoraBackend;
use burn::backend::wgpu::{
    CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous,
};
use burn::backend::{Cube, CubeDevice, DispatchDevice};
use burn::tensor::{DType, Device, Shape};
use cubecl::prelude::KernelId;
use cubecl::server::KernelArguments;
use cubecl::{CubeCount, CubeDim};

/// Whether tensors on `device` run the WGSL kernels: a wgpu device (its compiler takes WGSL).
pub fn runs_on(device: &Device) -> bool {
    match device.clone().inner().as_dispatch() {
        DispatchDevice::Cube(d) => matches!(d, CubeDevice::Wgpu(_)),
        _ => false,
    }
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

impl DoraBackend for Cube {
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
        super::dora::dora_scale_backward_ops::<Self>(grad, y, m, norm, bias)
    }
}
