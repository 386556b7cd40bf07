//! The matrix products of [`crate::kernels::matmul`] on wgpu devices: `shaders/matmul_vec4.wgsl`
//! and `shaders/matmul.wgsl`, launched through [`super::wgpu`]'s helpers (see [`matmul`]).

use super::wgpu::{act_template, launch, output};
use super::wgpu_bindings::BindingSpan;
use super::wgpu_elementwise::copy_new;
use burn::backend::wgpu::{CubeTensor, KernelSource, SourceTemplate, into_contiguous};
use burn::tensor::{DType, Shape};
use cubecl::CubeCount;
use cubecl::prelude::KernelId;

const MATMUL_WGSL: &str = include_str!("../../shaders/matmul.wgsl");
const MATMUL_VEC4_WGSL: &str = include_str!("../../shaders/matmul_vec4.wgsl");
/// Output rows and columns per `shaders/matmul.wgsl` workgroup in its square layout.
const MATMUL_TILE: usize = 64;
/// Invocations per `shaders/matmul.wgsl` workgroup (16 × 16).
const MATMUL_THREADS: u32 = 256;
/// WebGPU's `maxComputeWorkgroupsPerDimension` default.
const MAX_GROUPS: usize = 65535;

/// `shaders/matmul_vec4.wgsl` into `out` for row-major copies of `lhs` and `rhs`
/// (`k`, `n` multiples of 4), `[batch, m, n, k]`.
fn launch_vec4(lhs: &CubeTensor, rhs: &CubeTensor, out: &CubeTensor, dims: [usize; 4]) {
    let [batch, m, n, k] = dims;
    // Row-major copies of strided views (an element-wise pass, small beside the product).
    let (lhs, rhs) = (into_contiguous(lhs.clone()), into_contiguous(rhs.clone()));
    // 16 rows per invocation where m fills the 256-row blocks (as many loads, 4x the
    // multiply-adds of 4 rows); 4 rows (64-row blocks) for short products such as attention's
    // 64-token sequences.
    let rows = if m >= 256 { 16 } else { 4 };
    launch(
        MatmulVec4Kernel {
            f16: out.dtype == DType::F16,
            rows,
        },
        MATMUL_THREADS,
        CubeCount::Static(
            (n / 4).div_ceil(16) as u32,
            m.div_ceil(16 * rows) as u32,
            batch as u32,
        ),
        &[&lhs, &rhs, out],
        &[m as u32, (n / 4) as u32, (k / 4) as u32],
    );
}

/// `shaders/matmul.wgsl` (any strides) into `out`, `[batch, m, n]`, with the kernel's size and
/// stride parameters `params`; the layout by the output's shape.
fn launch_strided(
    lhs: &CubeTensor,
    rhs: &CubeTensor,
    out: &CubeTensor,
    dims: [usize; 3],
    params: &[usize],
) {
    let [batch, m, n] = dims;
    let params: Vec<u32> = params.iter().map(|&p| p as u32).collect();
    let layout = if n < 16 {
        MatmulLayout::Narrow
    } else if m < 16 {
        MatmulLayout::Short
    } else {
        MatmulLayout::Square
    };
    let (gx, gy) = match layout {
        MatmulLayout::Square => (n.div_ceil(MATMUL_TILE), m.div_ceil(MATMUL_TILE)),
        MatmulLayout::Narrow => (n.div_ceil(4), m.div_ceil(1024)),
        MatmulLayout::Short => (n.div_ceil(1024), m.div_ceil(4)),
    };
    launch(
        MatmulKernel {
            f16: out.dtype == DType::F16,
            layout,
        },
        MATMUL_THREADS,
        CubeCount::Static(gx as u32, gy as u32, batch as u32),
        &[lhs, rhs, out],
        &params,
    );
}

/// `lhs · rhs` over the last two axes: `lhs` `[.., m, k]`, `rhs` `[.., k, n]` (rank 2 to 4, the
/// same leading axes, both f32 or both f16, any strides) → a new contiguous `[.., m, n]` in their
/// dtype, accumulated in f32. Where `k` and `n` are multiples of 4, `shaders/matmul_vec4.wgsl`
/// on row-major copies of strided operands (16 rows per invocation from `m` = 256 on, else 4);
/// otherwise `shaders/matmul.wgsl`, which reads the strides in place (64 × 64 blocks, or
/// 1024 × 4 where `n` < 16, or 4 × 1024 where `m` < 16). The sizes and strides are parameters:
/// one run compiles at most five product kernels per dtype, where Burn's matmul
/// compiles one per shape class, layout and vector width (about 40 for one training run, each
/// slow to compile in a browser).
///
/// `None` where the kernels do not apply (other dtypes or ranks, broadcast leading axes, an
/// empty operand, more than 65535 blocks or batches per grid axis, indices past `u32`); the
/// caller then runs Burn's matmul.
pub(crate) fn matmul(lhs: &CubeTensor, rhs: &CubeTensor) -> Option<CubeTensor> {
    let dtype = lhs.dtype;
    if !matches!(dtype, DType::F32 | DType::F16) || rhs.dtype != dtype {
        return None;
    }
    let (ls, rs) = (lhs.meta.shape(), rhs.meta.shape());
    let d = ls.num_dims();
    if !(2..=4).contains(&d) || rs.num_dims() != d || ls[..d - 2] != rs[..d - 2] {
        return None;
    }
    let (m, k, n) = (ls[d - 2], ls[d - 1], rs[d - 1]);
    if rs[d - 2] != k {
        return None;
    }
    let batch: usize = ls[..d - 2].iter().product();
    let inner = if d == 4 { ls[1] } else { 1 };
    // One allocation bound as both operands (the Gram product `Aᵀ·A` of the DoRA row norm):
    // every binding is read_write, and WebGPU refuses a writable binding that overlaps another
    // one of the same dispatch, so the right operand is bound as a copy.
    let rhs_copy;
    let rhs = if BindingSpan::of(lhs).overlaps(&BindingSpan::of(rhs)) {
        rhs_copy = copy_new(rhs.clone());
        &rhs_copy
    } else {
        rhs
    };
    let (lt, rt) = (lhs.meta.strides(), rhs.meta.strides());
    let lead = |t: &[usize], i: usize| if i + 2 < d { t[i] } else { 0 };
    let params = [
        m,
        n,
        k,
        inner,
        lt[d - 2],
        lt[d - 1],
        lead(lt, 0),
        lead(lt, 1),
        rt[d - 2],
        rt[d - 1],
        lead(rt, 0),
        lead(rt, 1),
    ];
    let span = |t: &[usize], s: &Shape| -> usize {
        (0..d).map(|i| t[i] * s[i].saturating_sub(1)).sum::<usize>() + 1
    };
    let fits = |v: usize| v <= u32::MAX as usize;
    let (gx, gy) = (n.div_ceil(MATMUL_TILE), m.div_ceil(MATMUL_TILE));
    if batch * m * n * k == 0
        || gx > MAX_GROUPS
        || gy > MAX_GROUPS
        || batch > MAX_GROUPS
        || !fits(batch * m * n)
        || !fits(batch * m * k)
        || !fits(batch * k * n)
        || !fits(span(lt, ls))
        || !fits(span(rt, rs))
        || params.iter().any(|&p| !fits(p))
    {
        return None;
    }
    let mut out_shape = ls.clone();
    out_shape[d - 1] = n;
    let out = output(lhs, out_shape, dtype);
    if k % 4 == 0 && n % 4 == 0 {
        launch_vec4(lhs, rhs, &out, [batch, m, n, k]);
    } else {
        launch_strided(lhs, rhs, &out, [batch, m, n], &params);
    }
    Some(out)
}

/// How `shaders/matmul.wgsl` lays its 4 × 4 blocks over the output (see the shader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MatmulLayout {
    /// 64 × 64 per workgroup.
    Square,
    /// 1024 rows × 4 columns per workgroup (`n` < 16).
    Narrow,
    /// 4 rows × 1024 columns per workgroup (`m` < 16).
    Short,
}

/// `shaders/matmul.wgsl` in one layout, in f16 or f32.
#[derive(Debug)]
struct MatmulKernel {
    f16: bool,
    layout: MatmulLayout,
}

impl KernelSource for MatmulKernel {
    fn source(&self) -> SourceTemplate {
        let (row, col, row_step, col_step) = match self.layout {
            MatmulLayout::Square => ("wid.y * 64u + lid.y", "wid.x * 64u + lid.x", 16, 16),
            MatmulLayout::Narrow => ("wid.y * 1024u + t", "wid.x * 4u", 256, 1),
            MatmulLayout::Short => ("wid.y * 4u", "wid.x * 1024u + t", 1, 256),
        };
        act_template(MATMUL_WGSL, self.f16)
            .register("row", row)
            .register("col", col)
            .register("row_step", row_step.to_string())
            .register("col_step", col_step.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.f16, self.layout))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// `shaders/matmul_vec4.wgsl` with `rows` output rows per invocation (its R), in f16 or f32.
#[derive(Debug)]
struct MatmulVec4Kernel {
    f16: bool,
    rows: usize,
}

impl KernelSource for MatmulVec4Kernel {
    fn source(&self) -> SourceTemplate {
        let lines = |f: &dyn Fn(usize) -> String| (0..self.rows).map(f).collect::<String>();
        act_template(MATMUL_VEC4_WGSL, self.f16)
            .register("tile_rows", (16 * self.rows).to_string())
            .register(
                "addresses",
                lines(&|i| {
                    format!(
                        "    let a{i} = a_batch + min(row + {}u, last_r) * k4;\n",
                        16 * i
                    )
                }),
            )
            .register(
                "accumulators",
                lines(&|i| format!("    var acc{i} = vec4<f32>(0.0);\n")),
            )
            .register(
                "products",
                lines(&|i| {
                    format!(
                        "        let x{i} = vec4<f32>(lhs[a{i} + c]);\n        \
                         acc{i} += x{i}.x * b0 + x{i}.y * b1 + x{i}.z * b2 + x{i}.w * b3;\n"
                    )
                }),
            )
            .register(
                "stores",
                lines(&|i| {
                    let r = 16 * i;
                    format!(
                        "    if row + {r}u < m {{\n        \
                         out[(o + row + {r}u) * n4 + cv] = vec4<{act}>(acc{i});\n    }}\n",
                        act = if self.f16 { "f16" } else { "f32" }
                    )
                }),
            )
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.f16, self.rows))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}
