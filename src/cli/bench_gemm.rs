//! `lorabert bench --gemm`: GFLOP/s of the training step's matrix products through Burn's
//! `matmul` and through lorabert's route ([`crate::kernels::matmul`]), as JSON lines: on the CPU
//! (flex's `matmul` against the `gemm` crate writing into the output's own buffer) or on a wgpu
//! device (Burn's per-shape CubeCL kernels against `shaders/matmul.wgsl`). `tools/peft_bench.py --gemm`
//! times the same lines' shapes in PyTorch.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::BertConfig;

/// One product of the step: `batch` matrices `[m, k]·[k, n]`, operands read transposed in
/// place where the step reads them so (`g·Wᵀ`, `xᵀ·g`, `q·kᵀ`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GemmRecord {
    /// `lorabert` or `pytorch`.
    pub tool: String,
    /// What the product is in the step (`x·W intermediate.dense`, `g·Wᵀ ...`, `q·kᵀ`, ...).
    pub product: String,
    /// Matrices per call (batch × heads for attention, 1 otherwise).
    pub batch: usize,
    /// Rows of the output.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of the output.
    pub n: usize,
    /// Whether the left operand is a transposed view (`[k, m]` in memory).
    pub lhs_transposed: bool,
    /// Whether the right operand is a transposed view (`[n, k]` in memory).
    pub rhs_transposed: bool,
    /// `burn` (the backend's `float_matmul`), `lorabert` (`kernels::matmul`) or `torch`.
    pub route: String,
    /// The `gemm` crate's kernels on this CPU (`avx512f`, `fma`, ...), `wgpu` for a wgpu
    /// device, or PyTorch's BLAS.
    pub isa: String,
    /// Threads.
    pub threads: usize,
    /// Median seconds per call.
    pub median_seconds: f64,
    /// `2·batch·m·k·n / median_seconds / 1e9`.
    pub gflops: f64,
}

/// A product's shape: name, batch, m, k, n, lhs transposed, rhs transposed.
pub(super) type Shape = (String, usize, usize, usize, usize, bool, bool);

/// The distinct matrix products of a training step of `cfg` on `batch × seq` tokens with LoRA
/// ranks `ranks` on all linear layers (and full fine-tuning's weight gradients): the forward `x·W`,
/// the input gradients `g·Wᵀ`, the weight gradients `xᵀ·g`, LoRA's `[tokens, r]` products and
/// the attention products.
pub fn step_products(cfg: &BertConfig, batch: usize, seq: usize, ranks: &[usize]) -> Vec<Shape> {
    let (t, h, i) = (batch * seq, cfg.hidden_size, cfg.intermediate_size);
    let heads = cfg.num_attention_heads;
    let d = h / heads.max(1);
    let bh = batch * heads;
    let s = |name: &str, b, m, k, n, lt, rt| (name.to_string(), b, m, k, n, lt, rt);
    let mut v = vec![
        s(
            "x·W attention (query, key, value, output)",
            1,
            t,
            h,
            h,
            false,
            false,
        ),
        s("x·W intermediate.dense", 1, t, h, i, false, false),
        s("x·W output.dense", 1, t, i, h, false, false),
        s("g·Wᵀ attention", 1, t, h, h, false, true),
        s("g·Wᵀ intermediate.dense", 1, t, i, h, false, true),
        s("g·Wᵀ output.dense", 1, t, h, i, false, true),
        s("xᵀ·g ∂W attention (full)", 1, h, t, h, true, false),
        s("xᵀ·g ∂W intermediate.dense (full)", 1, h, t, i, true, false),
        s("xᵀ·g ∂W output.dense (full)", 1, i, t, h, true, false),
        s("q·kᵀ attention scores", bh, seq, d, seq, false, true),
        s("p·v attention context", bh, seq, seq, d, false, false),
        s("g·vᵀ ∂p", bh, seq, d, seq, false, true),
        s("pᵀ·g ∂v", bh, seq, seq, d, true, false),
    ];
    for &r in ranks {
        v.extend([
            s(&format!("x·A lora r={r}"), 1, t, h, r, false, false),
            s(&format!("(x·A)·B lora r={r}"), 1, t, r, h, false, false),
            s(&format!("g·Bᵀ lora r={r}"), 1, t, h, r, false, true),
            s(&format!("(x·A)ᵀ·g ∂B lora r={r}"), 1, r, t, h, true, false),
            s(&format!("xᵀ·(g·Bᵀ) ∂A lora r={r}"), 1, h, t, r, true, false),
        ]);
    }
    v
}

/// Median seconds of `f` over `reps` calls after `warmup` calls.
fn time(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    median(&t)
}

/// The median of `times` (the upper one of an even count; NaN when empty), in their unit.
pub(super) fn median(times: &[f64]) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Median seconds of one product of `shape` on `device` (flex or wgpu) through lorabert's route
/// ([`crate::kernels::matmul`], `ours`) or Burn's `matmul`, timed for about `seconds` (at least
/// 5 calls after 2 untimed): operands as the step holds them (transposed ones are views of the
/// stored matrix, 2-D for single products so no reshape copies them); on wgpu each call waits
/// for the device.
///
/// # Errors
/// A wgpu call fails.
pub(super) fn time_product(
    shape: &Shape,
    ours: bool,
    seconds: f64,
    device: &Device,
) -> Result<f64> {
    let (product, b, m, k, n, lt, rt) = shape.clone();
    let wgpu = crate::kernels::is_wgpu(device);
    let rnd3 =
        |rows, cols| Tensor::<3>::random([b, rows, cols], Distribution::Normal(0.0, 1.0), device);
    let rnd2 =
        |rows, cols| Tensor::<2>::random([rows, cols], Distribution::Normal(0.0, 1.0), device);
    let view3 = |t: bool, rows, cols| {
        if t {
            rnd3(cols, rows).swap_dims(1, 2)
        } else {
            rnd3(rows, cols)
        }
    };
    let view2 = |t: bool, rows, cols| {
        if t {
            rnd2(cols, rows).transpose()
        } else {
            rnd2(rows, cols)
        }
    };
    let (l3, r3) = (view3(lt, m, k), view3(rt, k, n));
    let (l2, r2) = (view2(lt, m, k), view2(rt, k, n));
    let flops = 2.0 * (b * m * k * n) as f64;
    // About `seconds` at ~100 GFLOP/s, at least 5 calls.
    let reps = ((seconds * 1e11 / flops) as usize).clamp(5, 2000);
    let mut failed = None;
    let call = || {
        // Flex runs each op when it is called: the product is done on return. A wgpu op is
        // queued: wait for it.
        let rows = match (b == 1, ours) {
            (true, false) => l2.clone().matmul(r2.clone()).dims()[0],
            (true, true) => crate::kernels::matmul(l2.clone(), r2.clone()).dims()[0],
            (false, false) => l3.clone().matmul(r3.clone()).dims()[0],
            (false, true) => crate::kernels::matmul(l3.clone(), r3.clone()).dims()[0],
        };
        std::hint::black_box(rows);
        if wgpu && let Err(e) = device.sync() {
            failed = Some(format!("{e:?}"));
        }
    };
    let median = time(2, reps, call);
    if let Some(e) = failed {
        bail!("{product}: the wgpu device failed: {e}");
    }
    Ok(median)
}

/// Times every product of [`step_products`] through Burn's matmul and through
/// [`crate::kernels::matmul`] on `device` (flex or wgpu), each for about `seconds` seconds. On
/// wgpu each timed call waits for the device (`Device::sync`), so a call's seconds include one
/// submission and wait, alike for both routes.
///
/// # Errors
/// When `device` is neither the CPU backend (flex) nor a wgpu device, or a wgpu call fails.
pub fn run(
    cfg: &BertConfig,
    batch: usize,
    seq: usize,
    ranks: &[usize],
    seconds: f64,
    device: &Device,
) -> Result<Vec<GemmRecord>> {
    let wgpu = crate::kernels::is_wgpu(device);
    if !crate::kernels::fused::is_flex(device) && !wgpu {
        bail!("--gemm measures the CPU or wgpu backend's products (--backend cpu or wgpu)");
    }
    let isa = if wgpu {
        "wgpu"
    } else {
        crate::kernels::gemm::isa()
    };
    let mut out = Vec::new();
    for (product, b, m, k, n, lt, rt) in step_products(cfg, batch, seq, ranks) {
        let flops = 2.0 * (b * m * k * n) as f64;
        for route in ["burn", "lorabert"] {
            let shape = (product.clone(), b, m, k, n, lt, rt);
            let median = time_product(&shape, route == "lorabert", seconds, device)?;
            out.push(GemmRecord {
                tool: "lorabert".into(),
                product: product.clone(),
                batch: b,
                m,
                k,
                n,
                lhs_transposed: lt,
                rhs_transposed: rt,
                route: route.into(),
                isa: isa.into(),
                threads: rayon::current_num_threads(),
                median_seconds: median,
                gflops: flops / median / 1e9,
            });
        }
    }
    Ok(out)
}
