//! The WGSL kernels (`shaders/`, `src/kernels/wgpu.rs`) against their tensor-op references, on
//! the wgpu backend (in CI: Mesa's lavapipe Vulkan driver).
//!
//! Tolerances: f32 kernels within 1e-5 relative (the same sums in another order); the row-norm
//! kernel reading f16 storage within 1e-5 relative of the reference fed the same f16 values, and
//! within 2e-3 relative of the f32 weights (f16 rounds each weight by at most 2⁻¹¹ relative;
//! a norm averages those errors).
#![cfg(feature = "wgpu")]

mod common;

use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use common::*;
use lorabert::kernels;

fn device() -> Device {
    Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
}

fn assert_rel(what: &str, got: &[f32], want: &[f32], rel: f32) {
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-6);
    assert_close(what, got, want, rel * scale);
}

/// `(Wᵀ [in, out], Aᵀ [in, r], Bᵀ [r, out])` with B non-zero (a trained adapter), seeded.
fn inputs(
    d_in: usize,
    d_out: usize,
    r: usize,
    device: &Device,
) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    device.seed(7);
    let w = Tensor::<2>::random([d_in, d_out], Distribution::Normal(0.0, 0.05), device);
    let a = Tensor::<2>::random([d_in, r], Distribution::Uniform(-0.05, 0.05), device);
    let b = Tensor::<2>::random([r, d_out], Distribution::Normal(0.0, 0.02), device);
    (w, a, b)
}

#[test]
fn kernels_run_on_wgpu_devices_only() {
    assert!(kernels::wgpu::runs_on(&device()));
    assert!(kernels::wgpu::runs_on(&device().autodiff()));
    assert!(!kernels::wgpu::runs_on(&Device::flex()));
}

#[test]
fn dora_norm_kernel_matches_reference_f32() {
    let device = device();
    for (d_in, d_out, r) in [(384, 1536, 1), (1536, 384, 8), (64, 100, 3), (384, 384, 64)] {
        let (w, a, b) = inputs(d_in, d_out, r, &device);
        let s = 16.0 / r as f64;
        let got = host(kernels::dora::dora_weight_norm(
            w.clone(),
            a.clone(),
            b.clone(),
            s,
        ));
        let want = host(kernels::dora_weight_norm_reference(
            w.clone(),
            a.clone(),
            b.clone(),
            s,
        ));
        assert_rel(
            &format!("dora norm {d_in}x{d_out} r={r}"),
            &got,
            &want,
            1e-5,
        );
        // And against the direct definition ||W + s·B·A|| (rows of Wᵀ + s·Aᵀ·Bᵀ are columns here).
        let direct = host(
            (w + a.matmul(b).mul_scalar(s))
                .square()
                .sum_dim(0)
                .sqrt()
                .squeeze_dim::<1>(0),
        );
        assert_rel(&format!("dora norm vs direct r={r}"), &got, &direct, 1e-5);
    }
}

#[test]
fn dora_norm_kernel_reads_f16_storage() {
    let device = device();
    assert!(device.supports_dtype(DType::F16), "lavapipe offers f16");
    let (w, a, b) = inputs(384, 1536, 8, &device);
    let w16 = w.clone().cast(DType::F16);
    let got = host(kernels::dora::dora_weight_norm(
        w16.clone(),
        a.clone(),
        b.clone(),
        2.0,
    ));
    let same_inputs = host(kernels::dora_weight_norm_reference(
        w16,
        a.clone(),
        b.clone(),
        2.0,
    ));
    assert_rel(
        "f16 kernel vs reference on the same f16 weights",
        &got,
        &same_inputs,
        1e-5,
    );
    let f32_weights = host(kernels::dora_weight_norm_reference(w, a, b, 2.0));
    assert_rel("f16 kernel vs f32 weights", &got, &f32_weights, 2e-3);
}

#[test]
fn dora_norm_of_zero_row_is_finite() {
    let device = device();
    let w = Tensor::<2>::zeros([16, 4], &device);
    let a = Tensor::<2>::zeros([16, 2], &device);
    let b = Tensor::<2>::zeros([2, 4], &device);
    let got = host(kernels::dora::dora_weight_norm(w, a, b, 1.0));
    assert!(got.iter().all(|v| (*v - 1e-6).abs() < 1e-9), "{got:?}");
}

/// `(output, ∂base, ∂lora, ∂m, ∂bias)` of the DoRA output scale through the WGSL kernel and
/// through the tensor-op reference, on the same seeded `[175, 400]` rows whose activations are
/// in `dtype`: 70,000 elements, rows that do not divide the workgroup size.
fn dora_scale_runs(dtype: DType) -> [[Vec<f32>; 5]; 2] {
    let device = device().autodiff();
    device.seed(3);
    let (rows, out) = (175, 400);
    let act = |t: Tensor<2>| {
        if dtype == DType::F32 {
            t
        } else {
            t.cast(dtype)
        }
    };
    let base = act(Tensor::<2>::random(
        [rows, out],
        Distribution::Normal(0.0, 1.0),
        &device,
    ));
    let lora = act(Tensor::<2>::random(
        [rows, out],
        Distribution::Normal(0.0, 1.0),
        &device,
    ));
    let m = Tensor::<1>::random([out], Distribution::Uniform(0.5, 1.5), &device);
    let norm = Tensor::<1>::random([out], Distribution::Uniform(0.5, 1.5), &device);
    let bias = Tensor::<1>::random([out], Distribution::Normal(0.0, 1.0), &device);
    let upstream = Tensor::<2>::random([rows, out], Distribution::Normal(0.0, 1.0), &device);
    let run = |kernel: bool| {
        let (b, l, m, bi) = (
            base.clone().require_grad(),
            lora.clone().require_grad(),
            m.clone().require_grad(),
            bias.clone().require_grad(),
        );
        let f = if kernel {
            kernels::dora::dora_scale
        } else {
            kernels::dora_scale_reference
        };
        let y = f(
            b.clone(),
            l.clone(),
            m.clone(),
            norm.clone(),
            Some(bi.clone()),
            0.75,
        );
        assert_eq!(y.dtype(), dtype, "the output has the activations' dtype");
        let grads = (y.clone().cast(DType::F32) * upstream.clone())
            .sum()
            .backward();
        let gb = b.grad(&grads).unwrap();
        assert_eq!(gb.dtype(), dtype, "∂base has the activations' dtype");
        [
            host(y),
            host(gb),
            host(l.grad(&grads).unwrap()),
            host(m.grad(&grads).unwrap()),
            host(bi.grad(&grads).unwrap()),
        ]
    };
    [run(true), run(false)]
}

const DORA_SCALE_PARTS: [&str; 5] = [
    "output",
    "grad base",
    "grad lora",
    "grad magnitude",
    "grad bias",
];

/// f32: within 1e-5 relative to the largest value (`∂m`, from the kept output as
/// `(y − bias)/m`, measured 4.5e-7; the rest the same operations, measured 0).
#[test]
fn dora_scale_kernel_matches_reference_forward_and_backward() {
    let [k, r] = dora_scale_runs(DType::F32);
    for (what, (k, r)) in DORA_SCALE_PARTS.iter().zip(k.iter().zip(&r)) {
        assert_rel(&format!("dora scale {what}"), k, r, 1e-5);
    }
}

/// The f16 mode's DoRA output scale (f16 rows, f32 `m`, `norm`, bias): the kernel against the
/// tensor-op reference on the same f16 rows, relative to the largest value: the output within
/// 2e-3 (the kernel rounds once from f32, the reference after each of its three f16 ops, each
/// rounding up to 2⁻¹¹ ≈ 4.9e-4 relative; measured 6.0e-4), the four gradients within 1e-3
/// (`∂base`, `∂lora`, `∂bias`: the same f16 products and row sums on both sides, measured 0;
/// `∂m`: the kernel's backward takes `(y − bias)/m` from its rounded f16 output where the
/// reference keeps `base + s·lora`, measured 5.4e-4 with biases as large as the outputs).
#[test]
fn dora_scale_kernel_matches_reference_in_f16() {
    if !device().supports_dtype(DType::F16) {
        eprintln!("skipped: this wgpu adapter has no shader-f16");
        return;
    }
    let [k, r] = dora_scale_runs(DType::F16);
    for (i, (what, (k, r))) in DORA_SCALE_PARTS.iter().zip(k.iter().zip(&r)).enumerate() {
        let tol = if i == 0 { 2e-3 } else { 1e-3 };
        assert_rel(&format!("f16 dora scale {what}"), k, r, tol);
    }
}

#[test]
fn dora_scale_kernel_covers_large_batches() {
    // More than 4096 workgroups of 256: the kernel's second dispatch dimension is used.
    let device = device();
    let (rows, out) = (1100, 1000);
    let base = Tensor::<2>::from_data(
        TensorData::new(
            (0..rows * out)
                .map(|i| (i % 97) as f32 / 97.0)
                .collect::<Vec<_>>(),
            [rows, out],
        ),
        &device,
    );
    let lora = base.clone().mul_scalar(-0.5);
    let m = Tensor::<1>::ones([out], &device);
    let norm = Tensor::<1>::ones([out], &device).mul_scalar(2.0);
    let got = host(kernels::dora::dora_scale(
        base.clone(),
        lora.clone(),
        m.clone(),
        norm.clone(),
        None,
        1.0,
    ));
    let want = host(kernels::dora_scale_reference(
        base, lora, m, norm, None, 1.0,
    ));
    assert_rel("large dora scale", &got, &want, 1e-6);
}

/// f16 storage of a frozen weight: `frozen_linear` forward and `∂x` against the f32 weight.
/// Tolerance 2e-3 relative (each weight rounded to f16, 2⁻¹¹ relative; f32 accumulation).
#[test]
fn frozen_linear_with_f16_weight_matches_f32() {
    let device = device().autodiff();
    device.seed(11);
    let x = Tensor::<3>::random([4, 16, 384], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<2>::random([384, 1536], Distribution::Normal(0.0, 0.05), &device);
    let bias = Tensor::<1>::random([1536], Distribution::Normal(0.0, 0.1), &device);
    let upstream = Tensor::<3>::random([4, 16, 1536], Distribution::Normal(0.0, 1.0), &device);
    let run = |w: Tensor<2>| {
        let x = x.clone().require_grad();
        let y = kernels::frozen_linear(x.clone(), w, Some(bias.clone()));
        assert_eq!(y.dtype(), DType::F32, "activations stay f32");
        let grads = (y.clone() * upstream.clone()).sum().backward();
        (host(y), host(x.grad(&grads).unwrap()))
    };
    let (y32, dx32) = run(w.clone());
    let (y16, dx16) = run(w.cast(DType::F16));
    assert_rel("f16-storage linear output", &y16, &y32, 2e-3);
    assert_rel("f16-storage linear dx", &dx16, &dx32, 2e-3);
}

/// `into_f16_storage` converts frozen 2-D weights only; a DoRA layer on f16 storage gives the
/// f32 layer's output and adapter gradients within 2e-3 relative.
#[test]
fn dora_layer_on_f16_storage_matches_f32() {
    use lorabert::model::{AdaptedLinear, AdapterKind};
    let device = device().autodiff();
    device.seed(5);
    let w = Tensor::<2>::random([384, 384], Distribution::Normal(0.0, 0.05), &device);
    let bias = Tensor::<1>::random([384], Distribution::Normal(0.0, 0.1), &device);
    let a = Tensor::<2>::random([384, 4], Distribution::Uniform(-0.05, 0.05), &device);
    let b = Tensor::<2>::random([4, 384], Distribution::Normal(0.0, 0.02), &device);
    let layer = AdaptedLinear::frozen(w, Some(bias)).with_adapter_weights(
        AdapterKind::Dora,
        a,
        b,
        None,
        2.0,
        0.0,
    );
    let layer16 = lorabert::model::into_f16_storage(layer.clone());
    assert_eq!(layer16.weight.val().dtype(), DType::F16);
    assert_eq!(layer16.bias.as_ref().unwrap().val().dtype(), DType::F32);
    let ad = layer16.adapter.as_ref().unwrap();
    assert_eq!(ad.lora_a.val().dtype(), DType::F32);
    assert_eq!(
        ad.lora_magnitude_vector.as_ref().unwrap().val().dtype(),
        DType::F32
    );
    let x = Tensor::<3>::random([2, 8, 384], Distribution::Normal(0.0, 1.0), &device);
    let run = |l: &AdaptedLinear| {
        let y = l.forward(x.clone());
        let grads = y.clone().square().sum().backward();
        let ad = l.adapter.as_ref().unwrap();
        (
            host(y),
            host(ad.lora_b.val().grad(&grads).unwrap()),
            host(
                ad.lora_magnitude_vector
                    .as_ref()
                    .unwrap()
                    .val()
                    .grad(&grads)
                    .unwrap(),
            ),
        )
    };
    let (r32, r16) = (run(&layer), run(&layer16));
    assert_rel("f16-storage DoRA output", &r16.0, &r32.0, 2e-3);
    assert_rel("f16-storage DoRA grad B", &r16.1, &r32.1, 2e-3);
    assert_rel("f16-storage DoRA grad m", &r16.2, &r32.2, 2e-3);
}

#[test]
fn f16_storage_is_available_on_lavapipe_but_not_on_the_cpu() {
    assert!(kernels::f16_available(&device()));
    assert!(!kernels::f16_available(&Device::flex()));
}

/// The CLI falls back to f32 with a notice on the CPU, and `--exact-precision` refuses instead.
#[test]
fn cli_f16_on_cpu_falls_back_with_notice() {
    let Some(data) = data_dir() else {
        panic!("minBERT data not found: set LORABERT_DATA or provide ../shared/data/minbert");
    };
    let out = std::env::temp_dir().join(format!("lorabert-f16cpu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lorabert"))
            .args([
                "train",
                "--precision",
                "f16",
                "--task",
                "sst",
                "--max-steps",
                "1",
            ])
            .args([
                "--batch-size",
                "4",
                "--max-len",
                "16",
                "--max-train",
                "8",
                "--max-eval",
                "4",
            ])
            .arg("--data")
            .arg(&data)
            .arg("--model")
            .arg(model_dir())
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("f16 needs a wgpu device"), "{err}");
    let results = std::fs::read_to_string(out.join("results.json")).unwrap();
    assert!(results.contains("\"precision\": \"f32\""), "{results}");
    let _ = std::fs::remove_dir_all(&out);
    let o = run(&["--exact-precision"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--exact-precision: refusing to fall back to f32"),
        "{err}"
    );
    assert!(!out.exists(), "a refused run leaves no output folder");
    let _ = std::fs::remove_dir_all(&out);
}

/// The wgpu dropout kernel (`shaders/dropout.wgsl`) through the fused op, in `dtype`: the
/// output is `x` times exactly the host mirror of its counter-based mask
/// (`device_mask_keeps`), about `keep` of the elements are kept, the backward multiplies the
/// upstream gradient by the same mask (regenerated from the seed, not stored), and another seed
/// gives another mask. 100,003 elements: a ragged last workgroup.
fn check_dropout_kernel(dtype: DType) {
    use lorabert::kernels::mask::device_mask_keeps;
    let device = device().autodiff();
    let n = 100_003;
    let (seed, keep) = (0x1234_5678_9abc_def0_u64, 0.9);
    let values: Vec<f32> = (0..n).map(|i| 1.0 + (i % 13) as f32 * 0.25).collect();
    let cast = |t: Tensor<1>| {
        if dtype == DType::F32 {
            t
        } else {
            t.cast(dtype)
        }
    };
    let x = cast(Tensor::<1>::from_data(
        TensorData::new(values.clone(), [n]),
        &device,
    ))
    .require_grad();
    let up: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
    let y = kernels::fused::dropout(x.clone(), seed, keep);
    assert_eq!(y.dtype(), dtype);
    let upstream = Tensor::<1>::from_data(TensorData::new(up.clone(), [n]), &device);
    let grads = (y.clone().cast(DType::F32) * upstream).sum().backward();
    let (y, dx) = (host(y), host(x.grad(&grads).unwrap()));
    let scale = (1.0 / keep) as f32;
    let mask: Vec<f32> = (0..n as u32)
        .map(|i| {
            if device_mask_keeps(seed, i, keep) {
                scale
            } else {
                0.0
            }
        })
        .collect();
    // The products are exact in f32; in f16 rounded once (values below 5.5, scale 1.11: within
    // 2^-8 of the f32 product).
    let tol = if dtype == DType::F32 { 1e-6 } else { 4e-3 };
    let want: Vec<f32> = values.iter().zip(&mask).map(|(v, m)| v * m).collect();
    assert_close(&format!("dropout output ({dtype:?})"), &y, &want, tol);
    let want: Vec<f32> = up.iter().zip(&mask).map(|(g, m)| g * m).collect();
    assert_close(&format!("dropout dx ({dtype:?})"), &dx, &want, tol);
    let kept = mask.iter().filter(|&&m| m > 0.0).count() as f64 / n as f64;
    assert!(
        (kept - keep).abs() < 0.005,
        "kept fraction {kept}, expected {keep}"
    );
    let other: Vec<f32> = (0..n as u32)
        .map(|i| {
            if device_mask_keeps(seed + 1, i, keep) {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let differ = mask.iter().zip(&other).filter(|(a, b)| a != b).count();
    // Two independent masks differ where exactly one keeps: 2 · 0.9 · 0.1 = 18 %.
    assert!(
        differ > n / 10,
        "seed + 1 changed only {differ} of {n} mask elements"
    );
}

#[test]
fn dropout_kernel_uses_its_hash_mask_both_ways() {
    check_dropout_kernel(DType::F32);
}

#[test]
fn dropout_kernel_uses_its_hash_mask_both_ways_in_f16() {
    if !device().supports_dtype(DType::F16) {
        eprintln!("skipped: this wgpu adapter has no shader-f16");
        return;
    }
    check_dropout_kernel(DType::F16);
}

/// A DoRA magnitude of exactly 0 (a crafted adapter): the kernel's backward, which divides by
/// `m`, still returns finite gradients (the zero entry divided as 1e-30: `y − bias` is 0 there).
#[test]
fn dora_scale_backward_is_finite_at_zero_magnitude() {
    let device = device().autodiff();
    let (rows, out) = (6, 5);
    let base = Tensor::<2>::ones([rows, out], &device).require_grad();
    let lora = Tensor::<2>::ones([rows, out], &device).mul_scalar(0.5);
    let m = Tensor::<1>::from_data(
        TensorData::new(vec![0.0f32, 1.0, 2.0, 0.0, 1.5], [out]),
        &device,
    )
    .require_grad();
    let norm = Tensor::<1>::ones([out], &device);
    let bias = Tensor::<1>::ones([out], &device);
    let y = kernels::dora::dora_scale(base.clone(), lora, m.clone(), norm, Some(bias), 1.0);
    let grads = y.sum().backward();
    let gm = host(m.grad(&grads).unwrap());
    assert!(gm.iter().all(|v| v.is_finite()), "dm {gm:?}");
    // Non-zero magnitudes: dm_j = Σ_rows (base + lora) / norm = 6 · 1.5.
    assert_close(
        "dm at non-zero m",
        &[gm[1], gm[2], gm[4]],
        &[9.0, 9.0, 9.0],
        1e-5,
    );
}
