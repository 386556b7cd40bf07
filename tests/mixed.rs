//! The f16 mode (`--precision f16`: f16 storage of frozen weights, f16 activations, f32
//! adapters and optimiser state, dynamic loss scaling) on Mesa's lavapipe, against the same
//! training in f32 and against transformers' f32 hidden states.
//!
//! Tolerances: f16 rounds every stored value and every activation by up to 2⁻¹¹ relative
//! (4.9e-4); with f32 accumulation in matmuls and LayerNorm, errors stay at the 1e-3 level per
//! layer. The training losses of f16 and f32 runs from the same start must agree within 5e-3
//! relative at every step of six epochs.

#![cfg(feature = "wgpu")]

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{DType, Device, Tensor};
use lorabert::model::init::InitRng;
use lorabert::model::{Bert, BertConfig, Encoded};
use lorabert::tasks::Task;
use lorabert::tasks::{Prepared, TaskData};
use lorabert::train::{LossScaler, Precision, TrainConfig, Trainer, build_model};

fn wgpu() -> Device {
    Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
}

/// SST-like sequences whose class is the sentiment token (10..15) they contain.
fn data(n: usize) -> TaskData {
    let examples = (0..n)
        .map(|i| {
            let class = (i * 7 + 3) % 5;
            let mut ids = vec![1u32, 20 + (i % 13) as u32, 10 + class as u32];
            ids.extend((0..(i % 5)).map(|j| 30 + ((i + j) % 17) as u32));
            ids.push(2);
            Prepared {
                id: format!("ex{i}"),
                a: Encoded {
                    type_ids: vec![0; ids.len()],
                    ids,
                    truncated: false,
                },
                b: None,
                label: class as f32,
                label_ids: Vec::new(),
                negatives: Vec::new(),
                words: None,
            }
        })
        .collect();
    TaskData {
        kind: lorabert::tasks::kinds::minbert(Task::Sst),
        examples,
        truncated: 0,
        skipped_rows: 0,
    }
}

fn trainer(precision: Precision, kind: &str) -> (Trainer, Vec<TaskData>) {
    let device = wgpu().autodiff();
    device.seed(3);
    let mut bcfg = BertConfig::tiny(64, 32, 2, 2);
    bcfg.hidden_dropout_prob = 0.0;
    bcfg.attention_probs_dropout_prob = 0.0;
    let bert = Bert::random(&bcfg, &device, &mut InitRng::new(3));
    let c = TrainConfig {
        tasks: vec![Task::Sst],
        adapter: common::adapter(kind, 2),
        batch_size: 16,
        lr: 5e-3,
        head_dropout: 0.0,
        precision,
        ..TrainConfig::default()
    };
    let (model, _) = build_model(bert, &c, 32, &device).unwrap();
    let d = vec![data(64)];
    let total = Trainer::steps_per_epoch(&d, c.batch_size) * 6;
    (Trainer::new(model, c, total, 0, device), d)
}

/// Runs `epochs` epochs, returning every step's loss.
fn losses(tr: &mut Trainer, d: &[TaskData], epochs: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for e in 0..epochs {
        for entry in tr.plan_epoch(d, e) {
            let b = tr.batch(d, &entry);
            let s = pollster::block_on(tr.step(&b)).unwrap();
            assert!(!s.overflow, "unexpected overflow at step {}", tr.step);
            out.push(s.loss);
        }
    }
    out
}

/// Asserts every step's loss of run `b` within `rel` (relative) of run `a`'s, same length.
fn assert_losses_close(what: &str, [na, nb]: [&str; 2], a: &[f64], b: &[f64], rel: f64) {
    eprintln!("{what} {na} {a:?}\n{what} {nb} {b:?}");
    assert_eq!(a.len(), b.len(), "{what}: step counts");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= rel * x.abs(),
            "{what} step {}: {na} loss {x} vs {nb} {y}",
            i + 1
        );
    }
}

/// Trainable parameter values, flattened in module order.
fn trainable(tr: &Trainer) -> Vec<f32> {
    struct V(Vec<f32>);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if p.is_require_grad() {
                let t = p.val();
                assert_eq!(t.dtype(), DType::F32, "trainable parameters stay f32");
                self.0.extend(common::host(t.detach()));
            }
        }
    }
    let mut v = V(Vec::new());
    tr.model().visit(&mut v);
    v.0
}

/// The wgpu backend in f32 (with its WGSL kernels and fused ops: LayerNorm, softmax, GELU, the
/// DoRA scale, `output.dense`'s `gelu(u)·A` from the pre-activation) trains like the CPU
/// backend (the tensor-op and flex references) from the same weights: every step's loss of
/// two epochs, LoRA and DoRA on all linear layers with dropout off (the two backends draw
/// different masks), within 1e-4 relative, the parity bound (measured within 2e-7).
#[test]
fn wgpu_f32_training_matches_cpu_training() {
    let _rng = common::rng_lock();
    for adapter in ["lora", "dora"] {
        let cpu = Device::flex().autodiff();
        cpu.seed(5);
        let mut bcfg = BertConfig::tiny(64, 32, 2, 2);
        bcfg.hidden_dropout_prob = 0.0;
        bcfg.attention_probs_dropout_prob = 0.0;
        let c = TrainConfig {
            tasks: vec![Task::Sst],
            adapter: common::adapter(adapter, 1),
            batch_size: 16,
            lr: 5e-3,
            head_dropout: 0.0,
            ..TrainConfig::default()
        };
        let bert = Bert::random(&bcfg, &cpu, &mut InitRng::new(5));
        let (model, _) = build_model(bert, &c, 32, &cpu).unwrap();
        let d = vec![data(64)];
        let total = Trainer::steps_per_epoch(&d, c.batch_size) * 2;
        let gpu = wgpu().autodiff();
        let mut on_gpu = Trainer::new(model.clone().fork(&gpu), c.clone(), total, 0, gpu);
        let mut on_cpu = Trainer::new(model, c, total, 0, cpu);
        let (lc, lg) = (losses(&mut on_cpu, &d, 2), losses(&mut on_gpu, &d, 2));
        assert_losses_close(&format!("{adapter:?}"), ["CPU", "wgpu"], &lc, &lg, 1e-4);
    }
}

/// One seed starts a run alike on every device: the encoder of `Bert::random`, the adapters
/// (`A`, DoRA's `m`) and the heads built on the CPU and on wgpu from the same seed hold the same
/// values (drawn on the host, `lorabert::model::init`; before, each backend drew its own
/// numbers). `A`, `B` and the heads are bit-identical; the encoder's normal draws and DoRA's
/// `m = ‖W‖` (a reduction on each device) within 1e-6 relative.
#[test]
fn one_seed_starts_every_device_alike() {
    for adapter in ["lora", "dora"] {
        let built = |device: Device| {
            device.seed(9);
            let bert = Bert::random(
                &BertConfig::tiny(64, 32, 2, 2),
                &device,
                &mut InitRng::new(9),
            );
            let c = TrainConfig {
                tasks: vec![Task::Sst, Task::Sts],
                adapter: common::adapter(adapter, 2),
                seed: 9,
                ..TrainConfig::default()
            };
            let (model, _) = build_model(bert, &c, 32, &device).unwrap();
            let mut v = Vec::new();
            struct All<'a>(&'a mut Vec<(bool, Vec<f32>)>);
            impl ModuleVisitor for All<'_> {
                fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                    self.0
                        .push((p.is_require_grad(), common::host(p.val().detach())));
                }
            }
            model.visit(&mut All(&mut v));
            v
        };
        let (cpu, gpu) = (built(Device::flex().autodiff()), built(wgpu().autodiff()));
        assert_eq!(cpu.len(), gpu.len());
        let mut trainable = 0;
        for (i, ((ta, a), (_, b))) in cpu.iter().zip(&gpu).enumerate() {
            assert_eq!(a.len(), b.len(), "{adapter} parameter {i}");
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 1e-6 * x.abs().max(1e-3),
                    "{adapter} parameter {i} (trainable {ta}): CPU {x} vs wgpu {y}"
                );
            }
            trainable += usize::from(*ta);
        }
        // A and B on the 6 linear layers of each of 2 layers, and the SST head's weight and bias
        // (STS is the cosine of the bi-encoder: no head); DoRA adds m per layer.
        let want = 2 * 6 * 2 + 2 + if adapter == "dora" { 12 } else { 0 };
        assert_eq!(trainable, want, "{adapter}: trainable tensors");
    }
}

#[test]
fn f16_training_follows_f32_training() {
    let _rng = common::rng_lock();
    for adapter in ["lora", "dora"] {
        let (mut t32, d) = trainer(Precision::F32, adapter);
        let (mut t16, _) = trainer(Precision::F16, adapter);
        assert_eq!(
            t16.model().bert.layers[0]
                .intermediate
                .dense
                .weight
                .val()
                .dtype(),
            DType::F16
        );
        assert!(t16.scaler.is_some() && t32.scaler.is_none());
        let (l32, l16) = (losses(&mut t32, &d, 6), losses(&mut t16, &d, 6));
        assert_losses_close(&format!("{adapter:?}"), ["f32", "f16"], &l32, &l16, 5e-3);
        let (first, last) = (l16[..4].iter().sum::<f64>(), l16[20..].iter().sum::<f64>());
        assert!(
            last < 0.95 * first,
            "{adapter:?}: f16 loss {first} -> {last}"
        );
    }
}

#[test]
fn gradient_overflow_skips_the_step_and_halves_the_scale() {
    let _rng = common::rng_lock();
    let (mut tr, d) = trainer(Precision::F16, "lora");
    let plan = tr.plan_epoch(&d, 0);
    let before = trainable(&tr);
    // 2^40 times the loss overflows f16 (largest finite 65504) on the way back.
    tr.scaler.as_mut().unwrap().scale = 2f64.powi(40);
    let s = pollster::block_on(tr.step(&tr.batch(&d, &plan[0]))).unwrap();
    assert!(s.overflow && !s.grad_norm.is_finite(), "{s:?}");
    assert!(s.loss.is_finite());
    assert_eq!(tr.step, 1, "the schedule advances past a skipped step");
    let sc = tr.scaler.unwrap();
    assert_eq!((sc.scale, sc.overflow_steps), (2f64.powi(39), 1));
    assert_eq!(
        trainable(&tr),
        before,
        "an overflowed step must not update the model"
    );
    // At the default scale the next step applies and counts towards growth.
    tr.scaler.as_mut().unwrap().scale = LossScaler::INIT;
    let s = pollster::block_on(tr.step(&tr.batch(&d, &plan[1]))).unwrap();
    assert!(!s.overflow && s.grad_norm.is_finite(), "{s:?}");
    assert_eq!(tr.scaler.unwrap().good_steps, 1);
    assert_ne!(trainable(&tr), before);
}

#[test]
fn nan_loss_in_f16_still_stops_the_run() {
    let _rng = common::rng_lock();
    let (mut tr, d) = trainer(Precision::F16, "lora");
    tr.cfg.debug_nan_at_step = Some(1);
    let plan = tr.plan_epoch(&d, 0);
    let e = pollster::block_on(tr.step(&tr.batch(&d, &plan[0])))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("non-finite loss (NaN) at step 1"), "{e}");
    assert_eq!(tr.step, 0);
}

/// MiniLM in the f16 mode against transformers' f32 `last_hidden_state` (golden file): every
/// real token's state within 1.5e-2 absolute and a mean absolute error under 1.5e-3 (measured
/// 5.9e-3 and 5.4e-4; the f32 encoder on lavapipe is within 1e-4, the rest is f16 rounding
/// through six layers).
#[test]
fn f16_minilm_hidden_states_stay_close_to_transformers() {
    let device = wgpu();
    let dir = common::model_dir();
    let cfg = BertConfig::from_json(
        &std::fs::read_to_string(dir.join("config.json")).unwrap(),
        "config.json",
    )
    .unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let bert = lorabert::model::load_bert(&cfg, &bytes, "model.safetensors", &device)
        .unwrap()
        .into_f16();
    let g = common::golden("minilm_hidden.safetensors");
    for prefix in ["", "pair_"] {
        let ids = common::ints2(&g, &format!("{prefix}input_ids"), &device);
        let types = common::ints2(&g, &format!("{prefix}token_type_ids"), &device);
        let mask = common::ints2(&g, &format!("{prefix}attention_mask"), &device).float();
        let m = common::host(mask.clone());
        let out = bert.forward(ids, types, mask);
        assert_eq!(
            out.dtype(),
            DType::F32,
            "last_hidden_state is widened to f32"
        );
        let got = common::host(out);
        let want = common::read(&g, &format!("{prefix}last_hidden_state")).1;
        let h = cfg.hidden_size;
        let (mut max, mut sum, mut n) = (0f32, 0f64, 0usize);
        for ((a, b), keep) in got.chunks(h).zip(want.chunks(h)).zip(&m) {
            if *keep > 0.0 {
                for (x, y) in a.iter().zip(b) {
                    max = max.max((x - y).abs());
                    sum += (x - y).abs() as f64;
                    n += 1;
                }
            }
        }
        let mean = sum / n as f64;
        eprintln!("{prefix}last_hidden_state f16 vs transformers: max {max:.2e}, mean {mean:.2e}");
        assert!(max <= 1.5e-2 && mean <= 1.5e-3, "max {max}, mean {mean}");
    }
}

/// The float32 values of a `.npy` file as `lorabert embed` writes it (version 1.0 header).
fn npy_values(path: &std::path::Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap();
    let header = u16::from_le_bytes([b[8], b[9]]) as usize;
    b[10 + header..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Every number in a JSON value, in document order.
fn numbers(v: &serde_json::Value, out: &mut Vec<f64>) {
    match v {
        serde_json::Value::Number(n) => out.push(n.as_f64().unwrap()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| numbers(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| numbers(x, out)),
        _ => {}
    }
}

/// The probabilities and scores of `predict --sentence`'s JSON lines.
fn predicted(stdout: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        numbers(&v["probabilities"], &mut out);
        numbers(&v["score"], &mut out);
    }
    out
}

const SENTENCES: [&str; 5] = [
    "A quiet, devastating film about grief.",
    "the plot is thin",
    "What is the best way to learn Rust quickly without reading the whole book first?",
    "Paris",
    "It rained all day in Hamburg, so we stayed inside and played chess until midnight.",
];

/// `--precision f16` in the inference commands (issue 32, item 5) on lavapipe: MiniLM's
/// mean-pooled `embed` output within the hidden-state bound of
/// [`f16_minilm_hidden_states_stay_close_to_transformers`] (1.5e-2 absolute, mean 1.5e-3) of the
/// f32 output (measured 2.0e-3 and 3.2e-4), and a DoRA checkpoint's (trained 2 steps on the CPU)
/// `predict` probabilities within 5e-3 of f32's and its `eval` accuracy within one of the 80 dev
/// rows (adapters and heads stay f32 on the f16 encoder).
#[test]
fn inference_commands_in_f16_follow_f32() {
    let dir = common::tmp("f16-inference");
    std::fs::create_dir_all(&dir).unwrap();
    let model = common::model_dir();
    let input = dir.join("sentences.txt");
    std::fs::write(&input, SENTENCES.join("\n")).unwrap();
    let wgpu_at = |p: &'static str| {
        [
            "--backend",
            "wgpu",
            "--precision",
            p,
            "--exact-precision",
            "--model",
            common::s(&model),
        ]
    };
    let mut embedded = Vec::new();
    for p in ["f32", "f16"] {
        let out = dir.join(format!("{p}.npy"));
        let mut args = vec!["embed", "--input", common::s(&input), "--output"];
        args.push(common::s(&out));
        args.extend(wgpu_at(p));
        common::ok(&args);
        embedded.push(npy_values(&out));
    }
    let (e32, e16) = (&embedded[0], &embedded[1]);
    assert_eq!(e32.len(), SENTENCES.len() * 384);
    let max = common::max_abs_diff(e16, e32);
    let mean = e16.iter().zip(e32).map(|(a, b)| (a - b).abs()).sum::<f32>() / e32.len() as f32;
    eprintln!("embed f16 vs f32: max {max:.2e}, mean {mean:.2e}");
    assert!(max > 0.0, "f16 must change the rounding");
    assert!(max <= 1.5e-2 && mean <= 1.5e-3, "max {max}, mean {mean}");

    let run = dir.join("run");
    let fixture = |name: &str| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/own")
            .join(name)
    };
    let (train, dev) = (fixture("sst2.csv"), fixture("sst2-dev.csv"));
    common::ok(&[
        "train",
        "--model",
        common::s(&model),
        "--train-file",
        common::s(&train),
        "--validation-file",
        common::s(&dev),
        "--adapter",
        "dora",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--max-len",
        "32",
        "--out",
        common::s(&run),
    ]);
    let mut predictions = Vec::new();
    let mut metrics = Vec::new();
    for p in ["f32", "f16"] {
        let mut args = vec!["predict", "--checkpoint", common::s(&run)];
        for s in SENTENCES {
            args.extend(["--sentence", s]);
        }
        args.extend(wgpu_at(p));
        predictions.push(predicted(&common::ok(&args)));
        let mut args = vec!["eval", "--checkpoint", common::s(&run)];
        args.extend(["--validation-file", common::s(&dev)]);
        args.extend(wgpu_at(p));
        let v: serde_json::Value = serde_json::from_str(&common::ok(&args)).unwrap();
        metrics.push(v);
    }
    assert_eq!(
        predictions[0].len(),
        SENTENCES.len() * 3,
        "2 probabilities and a score"
    );
    let worst = predictions[0]
        .iter()
        .zip(&predictions[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    eprintln!("predict f16 vs f32: max {worst:.2e}");
    assert!(
        worst <= 5e-3,
        "{:?} vs {:?}",
        predictions[1],
        predictions[0]
    );
    eprintln!("eval f32 {}\neval f16 {}", metrics[0], metrics[1]);
    // Rounding may flip a near-tie: at most one of the 80 dev rows.
    let acc = |m: &serde_json::Value| m["own"]["accuracy"].as_f64().unwrap();
    assert!((acc(&metrics[0]) - acc(&metrics[1])).abs() <= 1.0 / 80.0 + 1e-12);
    let _ = std::fs::remove_dir_all(&dir);
}

/// On the CPU `--precision f16` falls back to f32 with a notice (the same embeddings, bit for
/// bit) and `--exact-precision` refuses, as `train` does.
#[test]
fn inference_f16_on_cpu_falls_back_or_refuses() {
    let dir = common::tmp("f16-cpu-inference");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.npy"), dir.join("b.npy"));
    let base = [
        "embed",
        "--sentence",
        SENTENCES[0],
        "--sentence",
        SENTENCES[1],
    ];
    let mut args = base.to_vec();
    args.extend(["--output", common::s(&a)]);
    common::ok(&args);
    let mut args = base.to_vec();
    args.extend(["--output", common::s(&b), "--precision", "f16"]);
    let (ok, _, err) = common::lorabert(&args);
    assert!(ok, "{err}");
    assert!(
        err.contains("note: f16 needs a wgpu device with f16 support (shader-f16): running in f32"),
        "{err}"
    );
    assert_eq!(npy_values(&a), npy_values(&b));
    args.push("--exact-precision");
    let (ok, _, err) = common::lorabert(&args);
    assert!(
        !ok && err.contains("--exact-precision: refusing to fall back to f32"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
