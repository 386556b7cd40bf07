//! Parity with PyTorch + transformers + PEFT, against golden files made by tools/make_golden.py.
//!
//! Tolerances (issue #2): MiniLM last_hidden_state within 1e-4; LoRA/DoRA layer outputs and the
//! gradients of A, B and the magnitude within 1e-5; merged vs unmerged outputs within 1e-4.

mod common;

use burn::tensor::{DType, Device, Tensor, TensorData};
use common::*;
use lorabert::adapter::{self, peft};
use lorabert::data::TokenBatch;
use lorabert::model::{AdaptedLinear, AdapterKind};
use lorabert::model::{BertConfig, BertTokenizer, load_bert};

fn minilm(device: &Device) -> (BertConfig, lorabert::model::Bert, BertTokenizer) {
    let dir = model_dir();
    let cfg = BertConfig::from_json(
        &std::fs::read_to_string(dir.join("config.json")).unwrap(),
        "config.json",
    )
    .unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let bert = load_bert(&cfg, &bytes, "model.safetensors", device).unwrap();
    let tok = BertTokenizer::from_bytes(
        &std::fs::read(dir.join("tokenizer.json")).unwrap(),
        "tokenizer.json",
        128,
    )
    .unwrap();
    (cfg, bert, tok)
}

fn sentences() -> (Vec<String>, Vec<(String, String)>) {
    let v: serde_json::Value = serde_json::from_slice(&golden("sentences.json")).unwrap();
    let s = v["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    let p = v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x[0].as_str().unwrap().to_string(),
                x[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (s, p)
}

#[test]
fn tokenizer_matches_transformers() {
    let device = Device::flex();
    let (_, _, tok) = minilm(&device);
    let g = golden("minilm_hidden.safetensors");
    let (sents, pairs) = sentences();
    let encs: Vec<_> = sents.iter().map(|s| tok.encode(s).unwrap()).collect();
    let b = TokenBatch::from_encoded(&encs.iter().collect::<Vec<_>>(), 0);
    assert_eq!(
        b.ids.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        read(&g, "input_ids").1
    );
    assert_eq!(b.mask, read(&g, "attention_mask").1);
    let encs: Vec<_> = pairs
        .iter()
        .map(|(a, b)| tok.encode_pair(a, b).unwrap())
        .collect();
    let b = TokenBatch::from_encoded(&encs.iter().collect::<Vec<_>>(), 0);
    assert_eq!(
        b.ids.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        read(&g, "pair_input_ids").1
    );
    assert_eq!(
        b.type_ids.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        read(&g, "pair_token_type_ids").1
    );
}

#[test]
fn minilm_last_hidden_state_matches_transformers() {
    check_hidden(&Device::flex(), 1e-4);
}

/// MiniLM's last_hidden_state on `device` for the golden sentences and pairs.
fn hidden_states(device: &Device) -> Vec<(Vec<usize>, Vec<f32>)> {
    let (_, bert, _) = minilm(device);
    let g = golden("minilm_hidden.safetensors");
    ["", "pair_"]
        .iter()
        .map(|prefix| {
            let ids = ints2(&g, &format!("{prefix}input_ids"), device);
            let types = ints2(&g, &format!("{prefix}token_type_ids"), device);
            let mask = ints2(&g, &format!("{prefix}attention_mask"), device).float();
            let out = bert.forward(ids, types, mask);
            (out.dims().to_vec(), host(out))
        })
        .collect()
}

fn check_hidden(device: &Device, tol: f32) {
    let g = golden("minilm_hidden.safetensors");
    for (prefix, (dims, got)) in ["", "pair_"].iter().zip(hidden_states(device)) {
        let want = read(&g, &format!("{prefix}last_hidden_state"));
        assert_eq!(dims, want.0);
        assert_close(&format!("{prefix}last_hidden_state"), &got, &want.1, tol);
    }
}

/// Builds the golden layer `prefix` (lora or dora) on an autodiff device.
fn golden_layer(prefix: &str, device: &Device) -> (AdaptedLinear, Tensor<3>, Tensor<3>, Vec<u8>) {
    let g = golden("layers.safetensors");
    let w = t2(&g, &format!("{prefix}.W"), device).transpose(); // [in, out]
    let b = t1(&g, &format!("{prefix}.b"), device);
    let a = t2(&g, &format!("{prefix}.A"), device).transpose(); // [in, r]
    let bb = t2(&g, &format!("{prefix}.B"), device).transpose(); // [r, out]
    let scaling = read(&g, &format!("{prefix}.scaling")).1[0] as f64;
    let (kind, m) = if prefix == "dora" {
        (AdapterKind::Dora, Some(t1(&g, "dora.m", device)))
    } else {
        (AdapterKind::Lora, None)
    };
    let lin = AdaptedLinear::frozen(w, Some(b)).with_adapter_weights(kind, a, bb, m, scaling, 0.0);
    let x = t3(&g, &format!("{prefix}.x"), device);
    let up = t3(&g, &format!("{prefix}.g"), device);
    (lin, x, up, g)
}

#[test]
fn lora_and_dora_layers_match_peft_outputs_and_gradients() {
    check_layers(&Device::flex().autodiff(), 1e-5);
}

fn check_layers(device: &Device, tol: f32) {
    let device = device.clone();
    for prefix in ["lora", "dora"] {
        let (lin, x, up, g) = golden_layer(prefix, &device);
        let out = lin.forward(x);
        assert_close(
            &format!("{prefix} output"),
            &host(out.clone()),
            &read(&g, &format!("{prefix}.out")).1,
            1e-5,
        );
        let grads = (out * up).sum().backward();
        let ad = lin.adapter.as_ref().unwrap();
        let ga = ad.lora_a.val().grad(&grads).expect("grad of A").transpose();
        let gb = ad.lora_b.val().grad(&grads).expect("grad of B").transpose();
        assert_close(
            &format!("{prefix} grad A"),
            &host(ga),
            &read(&g, &format!("{prefix}.grad_A")).1,
            1e-5,
        );
        assert_close(
            &format!("{prefix} grad B"),
            &host(gb),
            &read(&g, &format!("{prefix}.grad_B")).1,
            1e-5,
        );
        assert!(
            lin.weight.val().grad(&grads).is_none(),
            "frozen weight must carry no gradient"
        );
        if prefix == "dora" {
            let gm = ad
                .lora_magnitude_vector
                .as_ref()
                .unwrap()
                .val()
                .grad(&grads)
                .expect("grad of m");
            assert_close("dora grad m", &host(gm), &read(&g, "dora.grad_m").1, tol);
        }
    }
}

#[test]
fn merged_equals_unmerged_and_peft_merge() {
    let device = Device::flex();
    for prefix in ["lora", "dora"] {
        let (lin, x, _, g) = golden_layer(prefix, &device);
        let before = host(lin.forward(x.clone()));
        let merged = lin.merge();
        let merged_w = host(merged.weight.val().transpose());
        assert_close(
            &format!("{prefix} merged W vs PEFT"),
            &merged_w,
            &read(&g, &format!("{prefix}.merged_W")).1,
            1e-5,
        );
        let after = host(merged.forward(x.clone()));
        assert_close(&format!("{prefix} merged output"), &after, &before, 1e-4);
        let unmerged = merged.unmerge();
        assert_close(
            &format!("{prefix} unmerged W"),
            &host(unmerged.weight.val().transpose()),
            &read(&g, &format!("{prefix}.W")).1,
            1e-5,
        );
        assert_close(
            &format!("{prefix} unmerged output"),
            &host(unmerged.forward(x)),
            &before,
            1e-5,
        );
    }
}

#[test]
fn peft_made_adapter_loads_and_matches_peft_outputs() {
    let device = Device::flex();
    let (_, bert, _) = minilm(&device);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft_adapter");
    let cfg_json = std::fs::read_to_string(dir.join("adapter_config.json")).unwrap();
    let st = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let loaded = peft::load_adapter(
        bert,
        &cfg_json,
        "adapter_config.json",
        &st,
        "adapter_model.safetensors",
    )
    .unwrap();
    let (bert, cfg) = (loaded.bert, loaded.cfg);
    assert!(cfg.use_dora);
    assert_eq!(cfg.r, 2);
    let g = golden("peft_adapter_hidden.safetensors");
    let ids = ints2(&g, "input_ids", &device);
    let types = ints2(&g, "token_type_ids", &device);
    let mask = ints2(&g, "attention_mask", &device).float();
    let out = bert.forward(ids.clone(), types.clone(), mask.clone());
    let want = read(&g, "last_hidden_state").1;
    assert_close(
        "PEFT adapter last_hidden_state",
        &host(out.clone()),
        &want,
        1e-4,
    );

    // Saved here, re-read here: identical tensors and outputs; PEFT key names and layouts.
    let bytes = pollster::block_on(peft::adapter_safetensors(&bert)).unwrap();
    let orig = safetensors::SafeTensors::deserialize(&st).unwrap();
    let ours = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut a: Vec<_> = orig.names().into_iter().map(str::to_string).collect();
    let mut b: Vec<_> = ours.names().into_iter().map(str::to_string).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "same PEFT key names");
    for k in &a {
        assert_eq!(
            orig.tensor(k).unwrap().shape(),
            ours.tensor(k).unwrap().shape(),
            "{k}"
        );
        assert_close(k, &read(&bytes, k).1, &read(&st, k).1, 0.0);
    }
    let json = peft::adapter_config_json(&cfg, "all-MiniLM-L6-v2");
    let (_, bert0, _) = minilm(&device);
    let bert2 = peft::load_adapter(bert0, &json, "x", &bytes, "y")
        .unwrap()
        .bert;
    assert_close(
        "reloaded",
        &host(bert2.forward(ids.clone(), types.clone(), mask.clone())),
        &want,
        1e-4,
    );

    // Merging the whole model keeps the output.
    let merged = adapter::merge(bert2);
    assert_close(
        "merged model",
        &host(merged.forward(ids, types, mask)),
        &want,
        1e-4,
    );
}

#[test]
fn gram_norm_matches_direct_norm() {
    let device = Device::flex();
    let w = Tensor::<2>::from_data(
        TensorData::new(
            (0..60)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0)
                .collect::<Vec<_>>(),
            [10, 6],
        ),
        &device,
    );
    let a = Tensor::<2>::from_data(
        TensorData::new(
            (0..20)
                .map(|i| ((i * 13 % 7) as f32 - 3.0) / 5.0)
                .collect::<Vec<_>>(),
            [10, 2],
        ),
        &device,
    );
    let b = Tensor::<2>::from_data(
        TensorData::new(
            (0..12)
                .map(|i| ((i * 5 % 9) as f32 - 4.0) / 3.0)
                .collect::<Vec<_>>(),
            [2, 6],
        ),
        &device,
    );
    let s = 1.5;
    let direct = (w.clone() + a.clone().matmul(b.clone()).mul_scalar(s))
        .square()
        .sum_dim(0)
        .sqrt();
    let gram = lorabert::kernels::dora_weight_norm(w, a, b, s);
    assert_close("gram norm", &host(gram), &host(direct), 1e-5);
}

/// The DoRA ops on flex (the fused scale with its one-pass backward, the row norm by
/// definition) against their tensor-op references, on values that are not the golden layer's:
/// `s` = 0.5, rank 3, a tracked bias, negative magnitudes. Outputs and the gradients of
/// `base`, `lora`, `m` and `bias` within 1e-5 (relative to the largest value), the norms 1e-5.
#[test]
fn flex_dora_kernels_match_tensor_ops() {
    let device = Device::flex().autodiff();
    let vals = |n: usize, k: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * k) % 23) as f32 - 11.0) / 9.0)
            .collect()
    };
    let t2 = |v: Vec<f32>, shape: [usize; 2]| {
        Tensor::<2>::from_data(TensorData::new(v, shape), &device).require_grad()
    };
    let t1 = |v: Vec<f32>| {
        let n = v.len();
        Tensor::<1>::from_data(TensorData::new(v, [n]), &device).require_grad()
    };
    let (rows, out) = (37, 13);
    // No magnitude of exactly 0: the backward recovers `base + s·lora` from the output as
    // `(y − bias)·n/m` (documented at `DoraBackend::dora_scale_backward`).
    let m: Vec<f32> = vals(out, 5)
        .iter()
        .map(|v| if *v == 0.0 { 0.25 } else { *v })
        .collect();
    let norm: Vec<f32> = vals(out, 7).iter().map(|v| v.abs() + 0.5).collect();
    let up = Tensor::<2>::from_data(TensorData::new(vals(rows * out, 3), [rows, out]), &device);
    let run = |kernels: bool| {
        lorabert::kernels::set_kernels_enabled(kernels);
        let (base, lora) = (
            t2(vals(rows * out, 11), [rows, out]),
            t2(vals(rows * out, 17), [rows, out]),
        );
        let (mm, bias) = (t1(m.clone()), t1(vals(out, 19)));
        let n = Tensor::<1>::from_data(TensorData::new(norm.clone(), [out]), &device);
        let y = lorabert::kernels::dora_scale(
            base.clone(),
            lora.clone(),
            mm.clone(),
            n,
            Some(bias.clone()),
            0.5,
        );
        let grads = (y.clone() * up.clone()).sum().backward();
        let g = |t: &Tensor<2>| host(t.grad(&grads).expect("grad"));
        let g1 = |t: &Tensor<1>| host(t.grad(&grads).expect("grad"));
        lorabert::kernels::set_kernels_enabled(true);
        [host(y), g(&base), g(&lora), g1(&mm), g1(&bias)]
    };
    let _rng = rng_lock();
    let (fused, reference) = (run(true), run(false));
    for (what, (a, b)) in ["output", "grad base", "grad lora", "grad m", "grad bias"]
        .iter()
        .zip(fused.iter().zip(&reference))
    {
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        let a: Vec<f32> = a.iter().map(|v| v / scale).collect();
        let b: Vec<f32> = b.iter().map(|v| v / scale).collect();
        assert_close(&format!("flex dora_scale {what}"), &a, &b, 1e-5);
    }

    let plain = Device::flex();
    let p2 =
        |v: Vec<f32>, shape: [usize; 2]| Tensor::<2>::from_data(TensorData::new(v, shape), &plain);
    let (w, a, b) = (
        p2(vals(40 * out, 29), [40, out]),
        p2(vals(40 * 3, 31), [40, 3]),
        p2(vals(3 * out, 37), [3, out]),
    );
    let kernel = lorabert::kernels::dora_weight_norm(w.clone(), a.clone(), b.clone(), 0.5);
    let reference = lorabert::kernels::dora_weight_norm_reference(w, a, b, 0.5);
    assert_close("flex dora row norm", &host(kernel), &host(reference), 1e-5);
}

/// The same parity checks on the wgpu backend (in CI: Mesa's lavapipe Vulkan driver), f32.
/// Tolerances as on the CPU: hidden states 1e-4, layer outputs and gradients 1e-5.
#[cfg(feature = "wgpu")]
/// Exact GELU on `device`, the fused op ([`kernels::gelu`]) and the tensor-op reference, against
/// PyTorch's `nn.GELU()` on 4096 inputs over [-12, 12]: outputs and input gradients within `tol`.
fn check_gelu(device: &Device, tol: f32) {
    use lorabert::kernels;
    assert!(
        kernels::fused::runs_on(device),
        "the fused op runs on {device:?}"
    );
    let g = golden("gelu.safetensors");
    let upstream = t2(&g, "g", device);
    type Op = fn(Tensor<2>) -> Tensor<2>;
    let ops: [(&str, Op); 2] = [
        ("fused", kernels::gelu::<2>),
        ("reference", kernels::gelu_reference::<2>),
    ];
    for (name, f) in ops {
        let x = t2(&g, "x", device).require_grad();
        let y = f(x.clone());
        let grads = (y.clone() * upstream.clone()).sum().backward();
        assert_close(&format!("{name} gelu"), &host(y), &read(&g, "y").1, tol);
        let dx = host(x.grad(&grads).unwrap());
        assert_close(&format!("{name} gelu dx"), &dx, &read(&g, "dx").1, tol);
    }
}

#[test]
fn gelu_matches_pytorch() {
    check_gelu(&Device::flex().autodiff(), 1e-5);
}

/// Tolerances of [`check_fused_softmax_and_layer_norm`]: LayerNorm output and `∂x`, `∂γ`/`∂β`
/// relative to their largest value, softmax output and `∂scores`.
struct FusedTol {
    ln: f32,
    ln_params: f32,
    softmax: f32,
}

/// The fused attention softmax (scale and padding mask included) and LayerNorm
/// ([`lorabert::kernels::fused`]) against the tensor-op versions differentiated by Burn's
/// autodiff on `device`, with activations in `dtype`: outputs and gradients (input, and γ, β for
/// LayerNorm, as in full fine-tuning), on BERT-shaped rows with large offsets. The reference
/// LayerNorm of f16 rows is the f32 one on the widened rows, narrowed (as autocast).
fn check_fused_softmax_and_layer_norm(device: &Device, dtype: DType, tol: FusedTol) {
    use burn::tensor::Distribution;
    use lorabert::kernels::fused;
    device.seed(21);
    let narrow = |t: Tensor<3>| {
        if dtype == DType::F32 {
            t
        } else {
            t.cast(dtype)
        }
    };
    let x = narrow(Tensor::<3>::random(
        [6, 32, 384],
        Distribution::Normal(2.0, 3.0),
        device,
    ));
    let up = Tensor::<3>::random([6, 32, 384], Distribution::Normal(0.0, 1.0), device);
    let gamma = Tensor::<1>::random([384], Distribution::Normal(1.0, 0.2), device);
    let beta = Tensor::<1>::random([384], Distribution::Normal(0.0, 0.2), device);
    // With `trained`, γ and β take gradients (full fine-tuning); without, they are frozen (as
    // with adapters) and the fused op computes `∂x` alone.
    let run = |fused_op: bool, trained: bool| {
        let (x, g, b) = (x.clone().require_grad(), gamma.clone(), beta.clone());
        let (g, b) = if trained {
            (g.require_grad(), b.require_grad())
        } else {
            (g, b)
        };
        let y = if fused_op {
            fused::layer_norm(x.clone(), g.clone(), b.clone(), 1e-12)
        } else {
            let wide = x.clone().cast(DType::F32);
            narrow(burn::tensor::module::layer_norm(
                wide,
                g.clone(),
                Some(b.clone()),
                1e-12,
            ))
        };
        assert_eq!(y.dtype(), dtype, "layer_norm keeps the dtype of x");
        let grads = (y.clone().cast(DType::F32) * up.clone()).sum().backward();
        let dx = x.grad(&grads).unwrap();
        assert_eq!(dx.dtype(), dtype, "dx has the dtype of x");
        let param_grad = |t: &Tensor<1>| t.grad(&grads).map(host).unwrap_or_default();
        [host(y), host(dx), param_grad(&g), param_grad(&b)]
    };
    let (frozen, want) = (run(true, false), run(false, false));
    assert_close(
        &format!("fused layer_norm, frozen γ/β, output ({dtype:?})"),
        &frozen[0],
        &want[0],
        tol.ln,
    );
    assert_close(
        &format!("fused layer_norm, frozen γ/β, dx ({dtype:?})"),
        &frozen[1],
        &want[1],
        tol.ln,
    );
    let (got, want) = (run(true, true), run(false, true));
    for (what, (g, w)) in ["output", "dx", "dgamma", "dbeta"]
        .iter()
        .zip(got.iter().zip(&want))
    {
        let tol = match *what {
            "output" | "dx" => tol.ln,
            // ∂γ and ∂β sum 192 rows: compare relative to their scale.
            _ => tol.ln_params * w.iter().fold(1f32, |m, v| m.max(v.abs())),
        };
        assert_close(&format!("fused layer_norm {what} ({dtype:?})"), g, w, tol);
    }
    // The residual tail `LayerNorm(y + r)` as one op (`kernels::add_layer_norm`) against the add
    // then the LayerNorm: `∂y`, `∂r` (equal) and `∂γ`, `∂β`, with `r` tracked or not.
    let r = narrow(Tensor::<3>::random(
        [6, 32, 384],
        Distribution::Normal(-1.0, 2.0),
        device,
    ));
    let run = |fused_op: bool, trained: bool, track_r: bool| {
        let (y, g, b) = (x.clone().require_grad(), gamma.clone(), beta.clone());
        let r = if track_r {
            r.clone().require_grad()
        } else {
            r.clone()
        };
        let (g, b) = if trained {
            (g.require_grad(), b.require_grad())
        } else {
            (g, b)
        };
        let out = if fused_op {
            lorabert::kernels::add_layer_norm(y.clone(), r.clone(), g.clone(), b.clone(), 1e-12)
        } else {
            let wide = (y.clone() + r.clone()).cast(DType::F32);
            narrow(burn::tensor::module::layer_norm(
                wide,
                g.clone(),
                Some(b.clone()),
                1e-12,
            ))
        };
        assert_eq!(out.dtype(), dtype, "add_layer_norm keeps the dtype of y");
        let grads = (out.clone().cast(DType::F32) * up.clone()).sum().backward();
        let grad = |t: &Tensor<3>| t.grad(&grads).map(host).unwrap_or_default();
        let param_grad = |t: &Tensor<1>| t.grad(&grads).map(host).unwrap_or_default();
        [
            host(out),
            grad(&y),
            grad(&r),
            param_grad(&g),
            param_grad(&b),
        ]
    };
    for (trained, track_r) in [(false, true), (true, true), (false, false)] {
        let (got, want) = (run(true, trained, track_r), run(false, trained, track_r));
        for (what, (g, w)) in ["output", "dy", "dr", "dgamma", "dbeta"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            assert_eq!(
                g.len(),
                w.len(),
                "add_layer_norm {what}: tracked the same way"
            );
            let tol = match *what {
                "dgamma" | "dbeta" => tol.ln_params * w.iter().fold(1f32, |m, v| m.max(v.abs())),
                _ => tol.ln,
            };
            let what = format!(
                "fused add_layer_norm {what} (trained {trained}, r tracked {track_r}, {dtype:?})"
            );
            assert_close(&what, g, w, tol);
        }
        assert_eq!(got[2].is_empty(), !track_r);
        if track_r {
            assert_eq!(got[1], got[2], "y and r take the same gradient");
        }
    }
    let s = Tensor::<4>::random([2, 12, 64, 64], Distribution::Normal(0.0, 20.0), device);
    let s = if dtype == DType::F32 {
        s
    } else {
        s.cast(dtype)
    };
    let up = Tensor::<4>::random([2, 12, 64, 64], Distribution::Normal(0.0, 1.0), device);
    // BERT's padding bias: the last 20 keys of batch row 1 masked.
    let mask: Vec<f32> = (0..128)
        .map(|i| if i >= 64 + 44 { -10000.0 } else { 0.0 })
        .collect();
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [2, 64]), device);
    let run = |fused_op: bool| {
        let s = s.clone().require_grad();
        let scale = 1.0 / 32f64.sqrt();
        let y = if fused_op {
            fused::attention_softmax(s.clone(), mask.clone(), scale)
        } else {
            lorabert::kernels::attention_softmax_reference(s.clone(), mask.clone(), scale)
        };
        assert_eq!(y.dtype(), dtype, "softmax keeps the dtype of the scores");
        let grads = (y.clone().cast(DType::F32) * up.clone()).sum().backward();
        [host(y), host(s.grad(&grads).unwrap())]
    };
    let (got, want) = (run(true), run(false));
    assert_close("fused softmax", &got[0], &want[0], tol.softmax);
    assert_close("fused softmax dx", &got[1], &want[1], tol.softmax);
}

/// On the CPU: within 1e-5 (LayerNorm) and 1e-6 (softmax).
#[test]
fn fused_attention_softmax_and_layer_norm_match_tensor_ops() {
    let tol = FusedTol {
        ln: 1e-5,
        ln_params: 1e-5,
        softmax: 1e-6,
    };
    check_fused_softmax_and_layer_norm(&Device::flex().autodiff(), DType::F32, tol);
}

/// A fused `f(a)·b` op against `reference` (the fused `f` followed by a `matmul`, differentiated
/// by Burn's autodiff), activations in `dtype`: output, `∂a` and `∂b` under the upstream
/// gradient `up`, with both inputs tracked and with either one alone (as when the value
/// projection is frozen, or the probabilities come from frozen layers).
fn check_map_matmul<const D: usize>(
    what: &str,
    [a, b, up]: [Tensor<D>; 3],
    dtype: DType,
    fused: impl Fn(Tensor<D>, Tensor<D>) -> Tensor<D>,
    reference: impl Fn(Tensor<D>, Tensor<D>) -> Tensor<D>,
    tol: f32,
) {
    let narrow = |t: Tensor<D>| {
        if dtype == DType::F32 {
            t
        } else {
            t.cast(dtype)
        }
    };
    let (a, b) = (narrow(a), narrow(b));
    let run = |fused_op: bool, track_a: bool, track_b: bool| {
        let a = if track_a {
            a.clone().require_grad()
        } else {
            a.clone()
        };
        let b = if track_b {
            b.clone().require_grad()
        } else {
            b.clone()
        };
        let y = if fused_op {
            fused(a.clone(), b.clone())
        } else {
            reference(a.clone(), b.clone())
        };
        assert_eq!(y.dtype(), dtype, "{what} keeps the dtype of its input");
        let grads = (y.clone().cast(DType::F32) * up.clone()).sum().backward();
        let grad = |t: &Tensor<D>| t.grad(&grads).map(host).unwrap_or_default();
        [host(y), grad(&a), grad(&b)]
    };
    for (track_a, track_b) in [(true, true), (true, false), (false, true)] {
        let (got, want) = (run(true, track_a, track_b), run(false, track_a, track_b));
        for (part, (g, w)) in ["output", "da", "db"].iter().zip(got.iter().zip(&want)) {
            assert_eq!(g.len(), w.len(), "{what} {part}: tracked the same way");
            assert_close(
                &format!("{what} {part} (a tracked {track_a}, b {track_b}, {dtype:?})"),
                g,
                w,
                tol,
            );
        }
        assert_eq!(got[1].is_empty(), !track_a);
        assert_eq!(got[2].is_empty(), !track_b);
    }
}

/// The fused attention context `dropout(p)·v` ([`lorabert::kernels::fused::dropout_matmul`],
/// whose backward redraws the dropped probabilities) against the fused dropout then the product
/// op (`fused::matmul`, the same product kernel):
/// softmax probabilities `[2, 12, 64, 64]`, values `[2, 12, 64, 32]`, keep 0.9.
fn check_dropout_matmul(device: &Device, dtype: DType, tol: f32) {
    use burn::tensor::Distribution;
    use lorabert::kernels::fused;
    device.seed(33);
    let s = Tensor::<4>::random([2, 12, 64, 64], Distribution::Normal(0.0, 2.0), device);
    let p = burn::tensor::activation::softmax(s, 3);
    let v = Tensor::<4>::random([2, 12, 64, 32], Distribution::Normal(0.0, 1.0), device);
    let up = Tensor::<4>::random([2, 12, 64, 32], Distribution::Normal(0.0, 1.0), device);
    let (seed, keep) = (0xfeed_u64, 0.9);
    check_map_matmul(
        "dropout_matmul",
        [p, v, up],
        dtype,
        |p, v| fused::dropout_matmul(p, v, seed, keep),
        |p, v| fused::matmul(fused::dropout(p, seed, keep), v),
        tol,
    );
}

/// The fused `gelu(u)·w` ([`lorabert::kernels::fused::gelu_matmul`], whose backward recomputes
/// `gelu(u)`) against the fused GELU then the product op (`fused::matmul`): BERT-like pre-activations `[96, 256]`
/// (mean −0.5, sd 2) and a LoRA `A` `[256, 8]`.
fn check_gelu_matmul(device: &Device, dtype: DType, tol: f32) {
    use burn::tensor::Distribution;
    use lorabert::kernels::fused;
    device.seed(35);
    let u = Tensor::<2>::random([96, 256], Distribution::Normal(-0.5, 2.0), device);
    let w = Tensor::<2>::random([256, 8], Distribution::Uniform(-0.0625, 0.0625), device);
    let up = Tensor::<2>::random([96, 8], Distribution::Normal(0.0, 1.0), device);
    check_map_matmul(
        "gelu_matmul",
        [u, w, up],
        dtype,
        fused::gelu_matmul,
        |u, w| fused::matmul(fused::gelu(u), w),
        tol,
    );
}

/// The CPU's matrix products through `kernels::gemm` (the op behind `kernels::matmul` and
/// `kernels::linear`, whose output `gemm` writes in place) against Burn's flex `matmul` (the same
/// `gemm` crate through Burn's own buffers): see [`check_matmul_route`]. Same kernels, same
/// order of sums: equal within 1e-6 (relative to the values' scale of about 10).
#[test]
fn gemm_route_matches_burn_matmul() {
    check_matmul_route(&Device::flex().autodiff(), DType::F32, 1e-6);
}

/// The LoRA linear op (`kernels::lora_linear`: the base product with the low-rank term and the
/// bias accumulated into it, and `(g·bᵀ)·aᵀ` accumulated into `g·wᵀ` in the backward) against
/// Burn's own `matmul` and add, `x·w + bias + (x·a)·b`: output and the gradients of `x`, `a`,
/// `b`, with `x` tracked or not, for a 3-D input above the threading threshold at r = 1, a thin
/// case at r = 4 whose products split in two by rows (`x·a`, `g·bᵀ`) and by columns
/// (`(x·a)ᵀ·g`, `[4, 1024]·[1024, 128]`), r = 8, and ragged sizes. Values of about 10 to 20; within 1e-4 (the sums run in another order).
#[test]
fn lora_linear_op_matches_burn_matmul_and_add() {
    use burn::tensor::Distribution;
    let device = Device::flex().autodiff();
    device.seed(37);
    let n = |shape: Vec<usize>, sd: f64| {
        Tensor::<3>::random(shape, Distribution::Normal(0.0, sd), &device)
    };
    for (batch, rows, d_in, d_out, r) in [
        (2, 150, 384, 200, 1),
        (1, 1024, 96, 128, 4),
        (1, 64, 48, 40, 8),
        (3, 7, 5, 3, 2),
    ] {
        let x = n(vec![batch, rows, d_in], 1.0);
        let n2 =
            |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let w = n2([d_in, d_out]);
        let bias = n2([1, d_out]).reshape([d_out]);
        let a = n2([d_in, r]);
        let b = n2([r, d_out]);
        let up = n(vec![batch, rows, d_out], 1.0);
        for track_x in [true, false] {
            let run = |fused: bool| {
                let x = if track_x {
                    x.clone().require_grad()
                } else {
                    x.clone()
                };
                let (a, b) = (a.clone().require_grad(), b.clone().require_grad());
                let y = if fused {
                    lorabert::kernels::lora_linear(
                        x.clone(),
                        w.clone(),
                        bias.clone(),
                        a.clone(),
                        b.clone(),
                    )
                } else {
                    let w3 = w.clone().unsqueeze::<3>();
                    let ax = x.clone().matmul(a.clone().unsqueeze::<3>());
                    x.clone().matmul(w3)
                        + bias.clone().unsqueeze::<3>()
                        + ax.matmul(b.clone().unsqueeze::<3>())
                };
                let grads = (y.clone() * up.clone()).sum().backward();
                assert!(w.grad(&grads).is_none() && bias.grad(&grads).is_none());
                let gx = x.grad(&grads).map(host).unwrap_or_default();
                assert_eq!(gx.is_empty(), !track_x);
                [
                    host(y),
                    gx,
                    host(a.grad(&grads).expect("grad of a")),
                    host(b.grad(&grads).expect("grad of b")),
                ]
            };
            let (got, want) = (run(true), run(false));
            for (part, (g, w)) in ["output", "grad x", "grad a", "grad b"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                assert_close(
                    &format!(
                        "lora_linear {part} ({batch}x{rows}x{d_in} -> {d_out}, r {r}, x tracked {track_x})"
                    ),
                    g,
                    w,
                    1e-4 * (1.0 + w.iter().fold(0f32, |m, v| m.max(v.abs()))),
                );
            }
        }
    }
}

/// `kernels::fused::matmul` against Burn's `matmul` on `device` in `dtype`: outputs and both
/// gradients, for plain operands, a transposed weight (`g·Wᵀ`, the backward of a linear layer),
/// a transposed left operand (`xᵀ·g`), the attention shapes (`[b, heads, s, d]` views with
/// swapped axes), a rank-1 LoRA product, sizes that are not multiples of any tile, and a
/// contiguous batch.
fn check_matmul_route(device: &Device, dtype: DType, tol: f32) {
    use burn::tensor::Distribution;
    use lorabert::kernels::fused;
    device.seed(36);
    let n = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), device);
    // [rows, in] · [in, out], above the threshold where one matrix splits over threads.
    check_map_matmul(
        "x·W",
        [n([300, 384]), n([384, 200]), n([300, 200])],
        dtype,
        fused::matmul,
        |a, b| a.matmul(b),
        tol,
    );
    // A rank-1 LoRA product, and a product below the threading threshold.
    check_map_matmul(
        "x·A r=1",
        [n([64, 48]), n([48, 1]), n([64, 1])],
        dtype,
        fused::matmul,
        |a, b| a.matmul(b),
        tol,
    );
    // Ragged sizes: every edge of a 64 x 64 block, and k = 1.
    check_map_matmul(
        "ragged",
        [n([130, 67]), n([67, 65]), n([130, 65])],
        dtype,
        fused::matmul,
        |a, b| a.matmul(b),
        tol,
    );
    check_map_matmul(
        "k=1",
        [n([5, 1]), n([1, 70]), n([5, 70])],
        dtype,
        fused::matmul,
        |a, b| a.matmul(b),
        tol,
    );
    // g·Wᵀ with W [out, in] read transposed in place.
    check_map_matmul(
        "g·Wᵀ",
        [n([300, 200]), n([384, 200]), n([300, 384])],
        dtype,
        |a, b| fused::matmul(a, b.transpose()),
        |a, b| a.matmul(b.transpose()),
        tol,
    );
    // xᵀ·g with x [rows, in] read transposed in place.
    check_map_matmul(
        "xᵀ·g",
        [n([256, 96]), n([256, 80]), n([96, 80])],
        dtype,
        |a, b| fused::matmul(a.transpose(), b),
        |a, b| a.transpose().matmul(b),
        tol,
    );
    // Rank-1 weight gradients, vectors of long dot products (split along k over two threads):
    // xᵀ·(g·Bᵀ) `[96, 1024]·[1024, 1]`, and (x·A)ᵀ·g `[1, 1025]·[1025, 80]` (odd k). The two
    // halves are summed apart, so the order of the additions differs from Burn's: values of
    // about 30 (sums of a thousand unit products), within 5e-4 (about 1e-5 relative).
    let split_tol = tol.max(5e-4);
    check_map_matmul(
        "xᵀ·v",
        [n([1024, 96]), n([1024, 1]), n([96, 1])],
        dtype,
        |a, b| fused::matmul(a.transpose(), b),
        |a, b| a.transpose().matmul(b),
        split_tol,
    );
    check_map_matmul(
        "vᵀ·g",
        [n([1025, 1]), n([1025, 80]), n([1, 80])],
        dtype,
        |a, b| fused::matmul(a.transpose(), b),
        |a, b| a.transpose().matmul(b),
        split_tol,
    );
    // Attention: q [b, heads, s, d] and k as views of [b, s, heads, d], scores q·kᵀ.
    let q = Tensor::<4>::random([2, 16, 3, 8], Distribution::Normal(0.0, 1.0), device);
    let k = Tensor::<4>::random([2, 16, 3, 8], Distribution::Normal(0.0, 1.0), device);
    let up = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), device);
    check_map_matmul(
        "q·kᵀ",
        [q, k, up],
        dtype,
        |q, k| fused::matmul(q.swap_dims(1, 2), k.swap_dims(1, 2).swap_dims(2, 3)),
        |q, k| q.swap_dims(1, 2).matmul(k.swap_dims(1, 2).swap_dims(2, 3)),
        tol,
    );
    // A contiguous batch below the threading threshold (one matrix after another).
    let a3 = Tensor::<3>::random([2, 4, 6], Distribution::Normal(0.0, 1.0), device);
    let b3 = Tensor::<3>::random([2, 6, 5], Distribution::Normal(0.0, 1.0), device);
    let up3 = Tensor::<3>::random([2, 4, 5], Distribution::Normal(0.0, 1.0), device);
    check_map_matmul(
        "batched",
        [a3, b3, up3],
        dtype,
        fused::matmul,
        |a, b| a.matmul(b),
        tol,
    );
}

/// On the CPU the same ops in the same order: within 1e-6.
#[test]
fn fused_gelu_matmul_matches_gelu_then_matmul() {
    check_gelu_matmul(&Device::flex().autodiff(), DType::F32, 1e-6);
}

/// On the CPU the same ops in the same order: within 1e-6.
#[test]
fn fused_dropout_matmul_matches_dropout_then_matmul() {
    check_dropout_matmul(&Device::flex().autodiff(), DType::F32, 1e-6);
}

/// The fused CPU dropout multiplies by exactly the host mask of its seed, and its gradient is the
/// upstream gradient times the same mask (redrawn, not stored).
#[test]
fn fused_dropout_uses_the_mask_of_its_seed_both_ways() {
    use burn::tensor::Distribution;
    let device = Device::flex().autodiff();
    device.seed(4);
    let n = 3 * lorabert::kernels::mask::MASK_BLOCK + 123;
    let x = Tensor::<2>::random([n / 3 + 41, 3], Distribution::Normal(0.0, 1.0), &device)
        .slice([0..n / 3, 0..3]);
    let x = Tensor::<2>::from_data(x.into_data(), &device).require_grad();
    let up = Tensor::<2>::random(x.dims(), Distribution::Normal(0.0, 1.0), &device);
    let y = lorabert::kernels::fused::dropout(x.clone(), 99, 0.9);
    let grads = (y.clone() * up.clone()).sum().backward();
    let mask = lorabert::kernels::mask::mask(99, x.dims()[0] * 3, 0.9);
    let want: Vec<f32> = host(x.clone())
        .iter()
        .zip(&mask)
        .map(|(a, m)| a * m)
        .collect();
    assert_eq!(host(y), want);
    let want: Vec<f32> = host(up).iter().zip(&mask).map(|(a, m)| a * m).collect();
    assert_eq!(host(x.grad(&grads).unwrap()), want);
    // `x` above is held by the test too (dropped out of place, into a new buffer); an input
    // that nothing else holds is masked in place, with the same values.
    let values = host(x.clone());
    let unique = Tensor::<2>::from_data(TensorData::new(values.clone(), x.dims()), &device);
    let want: Vec<f32> = values.iter().zip(&mask).map(|(a, m)| a * m).collect();
    assert_eq!(
        host(lorabert::kernels::fused::dropout(unique, 99, 0.9)),
        want
    );
    assert_eq!(host(x), values, "the held input is left as it was");
}

mod wgpu {
    use super::*;

    fn device() -> Device {
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
    }

    /// Values at real (unmasked) tokens: the states of padding positions are never read.
    fn real_tokens(prefix: &str, dims: &[usize], v: &[f32]) -> Vec<f32> {
        let mask = read(
            &golden("minilm_hidden.safetensors"),
            &format!("{prefix}attention_mask"),
        )
        .1;
        let h = dims[2];
        v.chunks(h)
            .zip(mask)
            .filter(|(_, m)| *m > 0.0)
            .flat_map(|(c, _)| c.to_vec())
            .collect()
    }

    /// wgpu vs the CPU backend and vs transformers within 1e-4 at every real token. (At padding
    /// positions, whose states nothing reads, lavapipe differs from the CPU by up to 1.2e-4.)
    #[test]
    fn wgpu_minilm_last_hidden_state_matches_cpu_and_transformers() {
        let g = golden("minilm_hidden.safetensors");
        let cpu = hidden_states(&Device::flex());
        let gpu = hidden_states(&device());
        for ((prefix, (dims, c)), (_, w)) in ["", "pair_"].iter().zip(&cpu).zip(&gpu) {
            let (c, w) = (real_tokens(prefix, dims, c), real_tokens(prefix, dims, w));
            assert_close("wgpu vs cpu last_hidden_state", &w, &c, 1e-4);
            let want = real_tokens(
                prefix,
                dims,
                &read(&g, &format!("{prefix}last_hidden_state")).1,
            );
            assert_close("wgpu vs transformers last_hidden_state", &w, &want, 1e-4);
        }
    }

    #[test]
    fn wgpu_gelu_matches_pytorch() {
        check_gelu(&device().autodiff(), 1e-5);
    }

    /// The fused softmax and LayerNorm on wgpu in f32: within 1e-5 / 1e-6 as on the CPU.
    #[test]
    fn wgpu_fused_attention_softmax_and_layer_norm_match_tensor_ops() {
        let tol = FusedTol {
            ln: 1e-5,
            ln_params: 1e-5,
            softmax: 1e-6,
        };
        check_fused_softmax_and_layer_norm(&device().autodiff(), DType::F32, tol);
    }

    /// In f16 (the mode of `--precision f16`): LayerNorm outputs and `∂x` (|v| < 8 here) are f16
    /// roundings of f32 values computed two ways, so within one f16 spacing at 4..8, 2^-8 ≈
    /// 3.9e-3; `∂γ`, `∂β` (f32 sums over 192 rows) within 1e-3 relative; softmax probabilities
    /// and `∂scores` (f16 tensor ops both ways, the backward by another formula) within 2e-3.
    #[test]
    fn wgpu_fused_attention_softmax_and_layer_norm_match_tensor_ops_in_f16() {
        let device = device().autodiff();
        if !device.supports_dtype(DType::F16) {
            eprintln!("skipped: this wgpu adapter has no shader-f16");
            return;
        }
        let tol = FusedTol {
            ln: 3.9e-3,
            ln_params: 1e-3,
            softmax: 2e-3,
        };
        check_fused_softmax_and_layer_norm(&device, DType::F16, tol);
    }

    /// On wgpu: within 1e-5 in f32 and 3.9e-3 in f16 (one f16 spacing at 4..8, should a
    /// driver's matmul order its sums differently for the two calls); both run the same kernels
    /// in the same order, measured 0 on lavapipe.
    #[test]
    fn wgpu_fused_gelu_matmul_matches_gelu_then_matmul() {
        let device = device().autodiff();
        check_gelu_matmul(&device, DType::F32, 1e-5);
        if device.supports_dtype(DType::F16) {
            check_gelu_matmul(&device, DType::F16, 3.9e-3);
        } else {
            eprintln!("f16 skipped: this wgpu adapter has no shader-f16");
        }
    }

    /// On wgpu: within 1e-5 in f32 and 2e-3 in f16 (|values| below 4: a rounding or two, should
    /// a driver's matmul order its sums differently for the two calls); both run the same
    /// kernels in the same order, measured 0 on lavapipe.
    #[test]
    fn wgpu_fused_dropout_matmul_matches_dropout_then_matmul() {
        let device = device().autodiff();
        check_dropout_matmul(&device, DType::F32, 1e-5);
        if device.supports_dtype(DType::F16) {
            check_dropout_matmul(&device, DType::F16, 2e-3);
        } else {
            eprintln!("f16 skipped: this wgpu adapter has no shader-f16");
        }
    }

    /// `shaders/matmul_vec4.wgsl` and `shaders/matmul.wgsl` (runtime sizes and strides, f32
    /// accumulation; the cases reach both vec4 row counts and the three layouts) against
    /// Burn's wgpu matmul: the same products summed in another order, within 1e-4 of values of
    /// scale about 20 (k up to 384 products of N(0, 1) values; 5e-6 relative).
    #[test]
    fn wgpu_matmul_kernel_matches_burn_matmul() {
        check_matmul_route(&device().autodiff(), DType::F32, 1e-4);
    }

    /// The same in f16 storage: both round each output (about 20) to f16, 2⁻¹¹ relative, and
    /// Burn's kernel also accumulates in f16; within 0.1.
    #[test]
    fn wgpu_matmul_kernel_matches_burn_matmul_in_f16() {
        let device = device().autodiff();
        if !device.supports_dtype(DType::F16) {
            eprintln!("skipped: this wgpu adapter has no shader-f16");
            return;
        }
        check_matmul_route(&device, DType::F16, 0.1);
    }

    #[test]
    fn wgpu_lora_and_dora_layers_match_peft() {
        check_layers(&device().autodiff(), 1e-5);
    }
}

/// The own-data metrics against scikit-learn and SciPy (`tests/golden/metrics.json`, made by
/// `tools/make_golden_metrics.py`): accuracy, F1 (binary), macro-F1, Matthews correlation,
/// Pearson, Spearman (with ties), MSE, within 1e-12.
#[test]
fn own_data_metrics_match_sklearn_and_scipy() {
    use lorabert::tasks::metrics::{f1_binary, f1_macro, matthews, mse, spearman};
    use lorabert::tasks::{accuracy, pearson};
    let v: serde_json::Value = serde_json::from_slice(&golden("metrics.json")).unwrap();
    let ints = |c: &serde_json::Value, k: &str| -> Vec<usize> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    let floats = |c: &serde_json::Value, k: &str| -> Vec<f64> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let close = |name: &str, got: f64, want: &serde_json::Value| {
        let want = want.as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{name}: {got} vs {want}");
    };
    for c in v["classification"].as_array().unwrap() {
        let (g, p) = (ints(c, "gold"), ints(c, "pred"));
        let n = c["classes"].as_u64().unwrap() as usize;
        let name = c["name"].as_str().unwrap();
        close(name, accuracy(&p, &g), &c["accuracy"]);
        close(name, f1_macro(&p, &g, n), &c["f1_macro"]);
        close(name, matthews(&p, &g, n), &c["mcc"]);
        if n == 2 {
            close(name, f1_binary(&p, &g), &c["f1"]);
        }
    }
    for c in v["regression"].as_array().unwrap() {
        let (p, g) = (floats(c, "pred"), floats(c, "gold"));
        close("pearson", pearson(&p, &g), &c["pearson"]);
        close("spearman", spearman(&p, &g), &c["spearman"]);
        close("mse", mse(&p, &g), &c["mse"]);
    }
}

/// Adapters saved by PEFT 0.21.2 with the `adapter_config.json` fields lorabert applies
/// (`tests/golden/peft_interop/`, made by `tools/make_golden_peft_interop.py`): `lora_bias`,
/// `layers_to_transform` + `layers_pattern`, `exclude_modules` (list and regex), `bias:
/// lora_only` and `all`, `rank_pattern` + `alpha_pattern`, `target_modules` as a regex, DoRA on
/// one layer, an adapter of a `BertForSequenceClassification` (modules named `bert.…`), and one
/// whose saving model had no pooler. Each reproduces PEFT's `last_hidden_state` within 1e-5;
/// merged (where PEFT can merge), the output stays within 1e-5.
#[test]
fn peft_adapters_with_every_applied_field_match_peft() {
    use lorabert::model::{BertConfig, load_bert};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft_interop");
    let device = Device::flex();
    let cfg_text = std::fs::read_to_string(dir.join("base/config.json")).unwrap();
    let cfg = BertConfig::from_json(&cfg_text, "config.json").unwrap();
    let weights = std::fs::read(dir.join("base/model.safetensors")).unwrap();
    let exp = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let ids = ints2(&exp, "input_ids", &device);
    let types = ints2(&exp, "token_type_ids", &device);
    let (s, m) = read(&exp, "attention_mask");
    let mask = Tensor::<2>::from_data(TensorData::new(m, [s[0], s[1]]), &device);
    let cases = [
        "lora_bias_minimal",
        "lora_bias",
        "layers_to_transform",
        "exclude_list",
        "exclude_regex",
        "bias_lora_only",
        "bias_all",
        "patterns",
        "regex_targets",
        "dora_layers",
        "seq_cls_prefix",
        "no_pooler",
    ];
    let base_out = {
        let bert = load_bert(&cfg, &weights, "model.safetensors", &device).unwrap();
        host(bert.forward(ids.clone(), types.clone(), mask.clone()))
    };
    for case in cases {
        let bert = load_bert(&cfg, &weights, "model.safetensors", &device).unwrap();
        let json = std::fs::read_to_string(dir.join(case).join("adapter_config.json")).unwrap();
        let st = std::fs::read(dir.join(case).join("adapter_model.safetensors")).unwrap();
        let loaded = peft::load_adapter(
            bert,
            &json,
            "adapter_config.json",
            &st,
            "adapter_model.safetensors",
        )
        .unwrap_or_else(|e| panic!("{case}: {e}"));
        let want = read(&exp, &format!("{case}.last_hidden_state")).1;
        let got = host(
            loaded
                .bert
                .forward(ids.clone(), types.clone(), mask.clone()),
        );
        eprintln!("{case}: max |diff| to PEFT {:e}", max_abs_diff(&got, &want));
        assert_close(case, &got, &want, 1e-5);
        assert!(
            max_abs_diff(&got, &base_out) > 1e-3,
            "{case}: the adapter changes nothing"
        );
        if case == "no_pooler" {
            assert_eq!(loaded.notes.len(), 1, "{:?}", loaded.notes);
            assert!(
                loaded.notes[0].contains("pooler.dense"),
                "{:?}",
                loaded.notes
            );
        } else {
            assert!(loaded.notes.is_empty(), "{case}: {:?}", loaded.notes);
        }
        let merged = adapter::merge(loaded.bert);
        let got = host(merged.forward(ids.clone(), types.clone(), mask.clone()));
        assert_close(&format!("{case} merged"), &got, &want, 1e-5);
    }
}

/// Fields PEFT would apply differently, or that leave tensors unused, are refused naming them.
#[test]
fn peft_adapter_tensors_and_fields_are_all_accounted_for() {
    use lorabert::model::{BertConfig, load_bert};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft_interop");
    let device = Device::flex();
    let cfg = BertConfig::from_json(
        &std::fs::read_to_string(dir.join("base/config.json")).unwrap(),
        "c",
    )
    .unwrap();
    let weights = std::fs::read(dir.join("base/model.safetensors")).unwrap();
    let load = |case: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(case).join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        edit(&mut json);
        let st = std::fs::read(dir.join(case).join("adapter_model.safetensors")).unwrap();
        let bert = load_bert(&cfg, &weights, "model.safetensors", &device).unwrap();
        peft::load_adapter(
            bert,
            &json.to_string(),
            "adapter_config.json",
            &st,
            "adapter_model.safetensors",
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    // The lora_B.bias tensors without lora_bias: not silently ignored.
    let e = load("lora_bias", &|j| j["lora_bias"] = false.into());
    assert!(e.contains("lora_B.bias` is not used"), "{e}");
    // Trained biases without `bias`.
    let e = load("bias_all", &|j| j["bias"] = "none".into());
    assert!(e.contains("is a bias, but `bias: none`"), "{e}");
    // A module whose lora_B is missing while its lora_A is there.
    let st = std::fs::read(dir.join("lora_bias/adapter_model.safetensors")).unwrap();
    let t = safetensors::SafeTensors::deserialize(&st).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = t
        .tensors()
        .into_iter()
        .filter(|(k, _)| k != "base_model.model.encoder.layer.1.attention.self.value.lora_B.weight")
        .collect();
    let cut = safetensors::serialize(kept, None).unwrap();
    let json = std::fs::read_to_string(dir.join("lora_bias/adapter_config.json")).unwrap();
    let bert = load_bert(&cfg, &weights, "model.safetensors", &device).unwrap();
    let e = peft::load_adapter(
        bert,
        &json,
        "adapter_config.json",
        &cut,
        "adapter_model.safetensors",
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("encoder.layer.1.attention.self.value.lora_B.weight` is missing (the module's other tensors are there)"),
        "{e}"
    );
    // DoRA with lora_bias, as PEFT refuses.
    let e = load("lora_bias", &|j| j["use_dora"] = true.into());
    assert!(e.contains("`lora_bias` is not supported for DoRA"), "{e}");
}

/// A PEFT adapter file whose keys carry the adapter name (`...lora_A.default.weight`, a live
/// PEFT state dict saved as it is; PEFT 0.21's `set_peft_model_state_dict` loads it) loads as the
/// same adapter: the same hidden states as the file `save_pretrained` wrote, and PEFT's own
/// hidden states (`tools/make_golden.py`) within 1e-5.
#[test]
fn peft_adapter_keys_with_the_adapter_name_load_as_peft_loads_them() {
    let device = Device::flex();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft_adapter");
    let cfg_json = std::fs::read_to_string(dir.join("adapter_config.json")).unwrap();
    let st = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let t = safetensors::SafeTensors::deserialize(&st).unwrap();
    let named: Vec<(String, safetensors::tensor::TensorView)> = t
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let k = k
                .replace(".lora_A.weight", ".lora_A.default.weight")
                .replace(".lora_B.weight", ".lora_B.default.weight")
                .replace(
                    ".lora_magnitude_vector",
                    ".lora_magnitude_vector.default.weight",
                );
            (k, v)
        })
        .collect();
    assert!(
        named
            .iter()
            .any(|(k, _)| k.contains("lora_A.default.weight"))
    );
    assert!(
        named
            .iter()
            .any(|(k, _)| k.ends_with("lora_magnitude_vector.default.weight"))
    );
    let named = safetensors::serialize(named, None).unwrap();
    let g = golden("peft_adapter_hidden.safetensors");
    let ids = ints2(&g, "input_ids", &device);
    let types = ints2(&g, "token_type_ids", &device);
    let mask = ints2(&g, "attention_mask", &device).float();
    let hidden = |bytes: &[u8]| {
        let (_, bert, _) = minilm(&device);
        let loaded = peft::load_adapter(
            bert,
            &cfg_json,
            "adapter_config.json",
            bytes,
            "adapter_model.safetensors",
        )
        .unwrap();
        host(
            loaded
                .bert
                .forward(ids.clone(), types.clone(), mask.clone()),
        )
    };
    let (plain, with_name) = (hidden(&st), hidden(&named));
    assert_close("adapter-name keys vs plain keys", &with_name, &plain, 0.0);
    let want = read(&g, "last_hidden_state").1;
    let d = max_abs_diff(&with_name, &want);
    eprintln!("adapter-name keys vs PEFT: max |diff| {d:e}");
    // Measured 2.6e-6 (the test above allows 1e-4 for the plain keys).
    assert_close("adapter-name keys vs PEFT", &with_name, &want, 1e-5);
}

/// The interoperability document's table lists every `adapter_config.json` field the code knows,
/// with what the code does with it.
#[test]
fn readme_lists_every_adapter_config_field() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/interoperability.md"),
    )
    .unwrap();
    for (field, how) in peft::FIELDS {
        let row = format!("| `{field}` | {how} |");
        assert!(
            readme.contains(&row),
            "docs/interoperability.md lacks the row {row}"
        );
    }
}
