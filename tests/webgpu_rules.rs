//! WebGPU's binding rule for lorabert's WGSL kernels (`src/kernels/wgpu_bindings.rs`): a buffer
//! range bound `read_write` is bound once per dispatch. Dawn (Chrome, Edge) rejects a dispatch
//! that breaks it and the device is lost; native wgpu runs it, so without this check the page's
//! DoRA failed in Chromium while every native test passed (the Gram product `Aᵀ·A` bound `A`
//! as both operands, both `read_write`; it now binds a copy of the right operand).
#![cfg(feature = "wgpu")]

mod common;

use burn::tensor::{DType, Device, Distribution, Tensor};
use common::*;
use lorabert::kernels;
use lorabert::kernels::wgpu_bindings::{BindingSpan, aliased_binding, writable_bindings};

const SHADERS: [(&str, &str); 8] = [
    ("copy", include_str!("../shaders/copy.wgsl")),
    ("dora_norm", include_str!("../shaders/dora_norm.wgsl")),
    ("dora_scale", include_str!("../shaders/dora_scale.wgsl")),
    ("dropout", include_str!("../shaders/dropout.wgsl")),
    ("layer_norm", include_str!("../shaders/layer_norm.wgsl")),
    (
        "layer_norm_backward",
        include_str!("../shaders/layer_norm_backward.wgsl"),
    ),
    ("matmul", include_str!("../shaders/matmul.wgsl")),
    ("matmul_vec4", include_str!("../shaders/matmul_vec4.wgsl")),
];

fn device() -> Device {
    Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
}

fn span(allocation: usize, start: u64, end: u64) -> BindingSpan {
    BindingSpan {
        allocation,
        start,
        end,
    }
}

/// Every binding is `read_write` (wgpu tracks usage per buffer, and cubecl's pools place many
/// tensors in one buffer: a `read` binding beside a `read_write` one of that buffer is refused),
/// so no two bindings of a launch may overlap at all.
#[test]
fn every_shader_binding_is_read_write() {
    for (name, wgsl) in SHADERS {
        let writable = writable_bindings(wgsl);
        assert!(writable.len() >= 3, "{name}: {writable:?}");
        assert!(writable.iter().all(|&w| w), "{name}: {writable:?}");
    }
}

#[test]
fn the_check_refuses_the_old_gram_launch() {
    let matmul = writable_bindings(SHADERS[6].1);
    // The Gram product `Aᵀ·A` as it was launched: lhs and rhs one allocation (the same 768
    // bytes, as in the page's error), the output another.
    let gram = [span(7, 0, 768), span(7, 0, 768), span(8, 0, 36)];
    assert_eq!(aliased_binding(&matmul, &gram), Some((0, 1)));
    // As it is launched now: the right operand is a copy.
    let fixed = [span(7, 0, 768), span(9, 0, 768), span(8, 0, 36)];
    assert_eq!(aliased_binding(&matmul, &fixed), None);
    // Part of a buffer bound beside another part: refused where they overlap, allowed where
    // they are disjoint, as WebGPU decides.
    let overlapping = [span(7, 0, 512), span(9, 0, 64), span(7, 256, 768)];
    assert_eq!(aliased_binding(&matmul, &overlapping), Some((0, 2)));
    let disjoint = [span(7, 0, 256), span(9, 0, 64), span(7, 256, 512)];
    assert_eq!(aliased_binding(&matmul, &disjoint), None);
    // Read-only bindings may overlap each other (only a writable one may not).
    let read_only = writable_bindings(
        "@group(0) @binding(0) var<storage, read> a: array<f32>;\n\
         @group(0) @binding(1) var<storage, read> b: array<f32>;\n\
         @group(0) @binding(2) var<storage, read_write> out: array<f32>;",
    );
    assert_eq!(read_only, vec![false, false, true]);
    assert_eq!(aliased_binding(&read_only, &gram), None);
}

/// `Aᵀ·A` through the product kernels, which bind `A` as both operands (the DoRA row norm's
/// Gram matrix), in `dtype`, against the CPU.
fn gram_matches_cpu(dtype: DType) {
    let device = device();
    for (n_in, r) in [(96, 2), (64, 3), (32, 1), (64, 8)] {
        let cpu = Device::flex();
        cpu.seed(3);
        let a_cpu = Tensor::<2>::random([n_in, r], Distribution::Normal(0.0, 0.5), &cpu);
        let want = host(a_cpu.clone().transpose().matmul(a_cpu.clone()));
        let a = Tensor::<2>::from_data(a_cpu.to_data(), &device).cast(dtype);
        let got = host(kernels::matmul(a.clone().transpose(), a).cast(DType::F32));
        let tol = if dtype == DType::F16 { 2e-2 } else { 1e-5 };
        assert_close(&format!("gram {n_in}x{r} {dtype:?}"), &got, &want, tol);
    }
}

#[test]
fn gram_product_of_one_buffer_binds_a_copy() {
    gram_matches_cpu(DType::F32);
    if kernels::f16_available(&device()) {
        gram_matches_cpu(DType::F16);
    } else {
        eprintln!("skipped f16: this wgpu adapter has no shader-f16");
    }
}

#[test]
fn dora_row_norm_at_the_page_shapes_launches_cleanly() {
    // The shapes the page failed on: the tiny BERT (hidden 32, intermediate 64) and hidden 96,
    // at ranks whose Gram product takes the strided kernel (r not a multiple of 4).
    let device = device();
    for (n_in, n_out, r) in [(32, 32, 2), (64, 32, 3), (96, 96, 2), (96, 384, 1)] {
        device.seed(5);
        let w = Tensor::<2>::random([n_in, n_out], Distribution::Normal(0.0, 0.05), &device);
        let a = Tensor::<2>::random([n_in, r], Distribution::Normal(0.0, 0.05), &device);
        let b = Tensor::<2>::random([r, n_out], Distribution::Normal(0.0, 0.05), &device);
        let got = host(kernels::dora::dora_weight_norm(
            w.clone(),
            a.clone(),
            b.clone(),
            2.0,
        ));
        let want = host(kernels::dora_weight_norm_reference(w, a, b, 2.0));
        let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert_close(
            &format!("norm {n_in}x{n_out} r={r}"),
            &got,
            &want,
            1e-5 * scale,
        );
    }
}
