//! The training controls: class weights against scikit-learn and PyTorch
//! (`tests/golden/controls.json`, written by `tools/make_golden_controls.py`), gradient
//! accumulation as one large batch, LoRA+'s learning-rate groups as PEFT's
//! `create_loraplus_optimizer` forms them, evaluation every N steps with early stopping (and
//! its resume), and `metrics.jsonl`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use lorabert::model::init::InitRng;
use lorabert::model::{Bert, BertConfig, Encoded};
use lorabert::tasks::{Prepared, Task, TaskData};
use lorabert::train::class_weights::TaskClassWeights;
use lorabert::train::{RunResults, TrainConfig, Trainer, build_model};
use serde_json::Value;

fn golden_json() -> Value {
    serde_json::from_slice(&golden("controls.json")).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/own")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("lorabert-ctl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn weighted_cross_entropy_matches_pytorch() {
    let g = &golden_json()["weighted_cross_entropy"];
    let device = Device::flex();
    let rows: Vec<f32> = g["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    let n = g["labels"].as_array().unwrap().len();
    let logits = Tensor::<2>::from_data(TensorData::new(rows, [n, 5]), &device);
    let labels: Vec<i64> = g["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [n]), &device);
    let by_class = floats(&g["weight"]);
    let ids: Vec<usize> = g["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let per_example: Vec<f32> = ids.iter().map(|&c| by_class[c]).collect();
    let targets = lorabert::tasks::Targets::Classes(labels.clone());
    let plain = host(targets.cross_entropy(logits.clone()))[0] as f64;
    let weighted = host(targets.weighted(per_example).cross_entropy(logits))[0] as f64;
    let want = g["loss"].as_f64().unwrap();
    let want_plain = g["unweighted_loss"].as_f64().unwrap();
    // f32 arithmetic against PyTorch's float64.
    assert!((weighted - want).abs() < 1e-5, "{weighted} vs {want}");
    assert!((plain - want_plain).abs() < 1e-5, "{plain} vs {want_plain}");
    assert!(
        (want - want_plain).abs() > 0.05,
        "the weights change the loss"
    );
}

/// `lorabert train` on the tiny model in `model` with `args`, output in `out`.
fn train(model: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .arg("train")
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(["--threads", "1", "--batch-size", "8", "--max-len", "32"])
        .args(args)
        .output()
        .unwrap()
}

/// `--train-file` and `--validation-file` of the SST-2 fixture, then `extra`.
fn sst2_args<'a>(files: &'a (PathBuf, PathBuf), extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--train-file", files.0.to_str().unwrap()];
    args.extend(["--validation-file", files.1.to_str().unwrap()]);
    args.extend(extra);
    args
}

fn results(out: &Path) -> RunResults {
    let bytes = std::fs::read(out.join("results.json")).unwrap();
    RunResults::from_json(&bytes, "results.json").unwrap()
}

fn log(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn balanced_class_weights_are_scikit_learns_and_bad_weights_are_named() {
    let model = tmp("cw-model");
    tiny_model(&model);
    let g = golden_json();
    for (file, dev) in [("sst2.csv", "sst2-dev.csv"), ("sst5.jsonl", "sst5.jsonl")] {
        let out = tmp(&format!("cw-{file}"));
        let o = train(
            &model,
            &out,
            &[
                "--train-file",
                fixture(file).to_str().unwrap(),
                "--validation-file",
                fixture(dev).to_str().unwrap(),
                "--class-weights",
                "balanced",
                "--max-steps",
                "2",
            ],
        );
        assert!(o.status.success(), "{}", log(&o));
        assert!(log(&o).contains("class weights of "), "{}", log(&o));
        let r = results(&out);
        assert_eq!(r.class_weights.len(), 1);
        let used = &r.class_weights[0];
        let want = g["class_weights"][file].as_object().unwrap();
        assert_eq!(used.labels.len(), want.len(), "{file}");
        for (label, w) in used.labels.iter().zip(&used.weights) {
            let expected = want[label].as_f64().unwrap();
            assert!(
                (w - expected).abs() < 1e-12,
                "{file} {label}: {w} vs {expected}"
            );
        }
        let _ = std::fs::remove_dir_all(out);
    }
    let bad = |args: &[&str]| {
        let out = tmp("cw-bad");
        let files = (fixture("sst2.csv"), fixture("sst2-dev.csv"));
        let mut all = sst2_args(&files, &["--max-steps", "1"]);
        all.extend(args);
        let o = train(&model, &out, &all);
        assert!(!o.status.success(), "{args:?} was accepted");
        log(&o)
    };
    let e = bad(&["--class-weights", "neutral=2"]);
    assert!(
        e.contains("`neutral`, which is not a class (the classes: negative, positive)"),
        "{e}"
    );
    let e = bad(&["--class-weights", "negative=-1"]);
    assert!(e.contains("the weight of `negative` is -1"), "{e}");
    let e = bad(&["--class-weights", "negative=heavy"]);
    assert!(e.contains("`heavy`) is not a number"), "{e}");
    let out = tmp("cw-sts");
    let o = train(
        &model,
        &out,
        &[
            "--train-file",
            fixture("sts.csv").to_str().unwrap(),
            "--class-weights",
            "balanced",
            "--max-steps",
            "1",
        ],
    );
    assert!(!o.status.success());
    assert!(
        log(&o).contains("--class-weights applies to tasks whose head is a softmax over classes"),
        "{}",
        log(&o)
    );
    for d in [model, out] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Sequences of 3..8 tokens whose class (0..4) is a "sentiment token" among them.
fn synthetic(n: usize, seed: u64) -> TaskData {
    let mut s = seed;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as usize
    };
    let examples = (0..n)
        .map(|i| {
            let class = next() % 5;
            let mut ids = vec![1u32];
            for _ in 0..3 + next() % 6 {
                ids.push(20 + (next() % 20) as u32);
            }
            ids.insert(1, 10 + class as u32);
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

/// A trainer of `c` on a tiny random BERT without dropout (the same start every call).
fn trainer(c: &TrainConfig) -> Trainer {
    let device = Device::flex().autodiff();
    let mut bcfg = BertConfig::tiny(64, 16, 2, 2);
    bcfg.hidden_dropout_prob = 0.0;
    bcfg.attention_probs_dropout_prob = 0.0;
    let bert = Bert::random(&bcfg, &device, &mut InitRng::new(3));
    let (model, _) = build_model(bert, c, 16, &device).unwrap();
    Trainer::new(model, c.clone(), 100, 0, device)
}

fn cfg() -> TrainConfig {
    TrainConfig {
        tasks: vec![Task::Sst],
        adapter: adapter("lora", 2),
        batch_size: 8,
        lr: 1e-2,
        head_dropout: 0.0,
        warmup_ratio: 0.0,
        max_grad_norm: 0.0,
        ..TrainConfig::default()
    }
}

/// Every trainable parameter: its module path, rank and values, in module order.
fn named(t: &Trainer) -> Vec<(String, usize, Vec<f32>)> {
    #[derive(Default)]
    struct V(Vec<String>, Vec<(String, usize, Vec<f32>)>);
    impl burn::module::ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            if p.val().is_require_grad() {
                let values = host(p.val().flatten::<1>(0, D - 1));
                self.1.push((self.0.join("."), D, values));
            }
        }
    }
    let mut v = V::default();
    t.model().visit(&mut v);
    v.1
}

/// Every trainable parameter's values, in module order.
fn trainable(t: &Trainer) -> Vec<Vec<f32>> {
    named(t).into_iter().map(|(_, _, v)| v).collect()
}

#[test]
fn accumulated_gradients_update_as_one_large_batch() {
    let _rng = rng_lock();
    let data = vec![synthetic(24, 5)];
    // Micro-batches of unequal sizes (8, 8 and 5 examples): each mean loss weighs by its share.
    let parts: [Vec<usize>; 3] = [(0..8).collect(), (8..16).collect(), (16..21).collect()];
    let all: Vec<usize> = (0..21).collect();
    let mut c = cfg();
    c.controls.gradient_accumulation_steps = 3;
    // With class weights each micro-batch weighs by its share of the step's weight total.
    let weights = TaskClassWeights {
        task: "sst".into(),
        labels: (0..5).map(|i| i.to_string()).collect(),
        weights: vec![5.0, 1.0, 0.5, 2.0, 1.0],
    };
    for (step, w) in [
        (0, None),
        (1, None),
        (0, Some(weights.clone())),
        (1, Some(weights)),
    ] {
        let mut acc = trainer(&c);
        let mut big = trainer(&cfg());
        acc.set_class_weights(vec![w.clone()]);
        big.set_class_weights(vec![w]);
        for _ in 0..=step {
            let micro: Vec<_> = parts
                .iter()
                .map(|p| acc.batch(&data, &(0, p.clone())))
                .collect();
            let a = pollster::block_on(acc.step_accumulated(&micro)).unwrap();
            let b = pollster::block_on(big.step(&big.batch(&data, &(0, all.clone())))).unwrap();
            assert_eq!(a.examples, 21);
            assert!((a.loss - b.loss).abs() < 1e-5, "{} vs {}", a.loss, b.loss);
            assert!((a.grad_norm - b.grad_norm).abs() < 1e-5 * b.grad_norm.max(1.0));
        }
        for (x, y) in trainable(&acc).iter().zip(trainable(&big)) {
            assert_close("weights after accumulation", x, &y, 1e-5);
        }
    }
}

#[test]
fn loraplus_moves_lora_b_and_1d_parameters_at_the_ratio() {
    let _rng = rng_lock();
    let data = vec![synthetic(16, 9)];
    let entry = (0, (0..16).collect::<Vec<_>>());
    let before = named(&trainer(&cfg()));
    let step = |ratio: Option<f64>| {
        let mut c = cfg();
        c.controls.loraplus_lr_ratio = ratio;
        let mut t = trainer(&c);
        pollster::block_on(t.step(&t.batch(&data, &entry))).unwrap();
        trainable(&t)
    };
    let (plain, plus) = (step(None), step(Some(4.0)));
    // AdamW's first update is linear in the learning rate: `lora_B` and the 1-D parameters (the
    // head's bias) move 4 times as far, everything else (lora_A, the head's weight) as far, as
    // PEFT's create_loraplus_optimizer groups them.
    let mut fast = 0;
    for (((name, rank, b), p), q) in before.iter().zip(&plain).zip(&plus) {
        let d1: Vec<f32> = p.iter().zip(b).map(|(x, y)| x - y).collect();
        let d4: Vec<f32> = q.iter().zip(b).map(|(x, y)| x - y).collect();
        if name.ends_with("lora_b") || *rank == 1 {
            let want: Vec<f32> = d1.iter().map(|d| d * 4.0).collect();
            assert!(d1.iter().any(|&d| d != 0.0), "{name} did not move");
            assert_close(name, &d4, &want, 1e-6);
            fast += 1;
        } else {
            assert_close(name, &d4, &d1, 1e-7);
        }
    }
    // Two layers' worth of adapted linears' lora_B (all-linear: 6 per layer) and the head's bias.
    assert_eq!(fast, 2 * 6 + 1);
}

/// `metrics.jsonl` of `out` without its timings.
fn metric_lines(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("examples_per_second");
            o.remove("eval_seconds");
            v
        })
        .collect()
}

#[test]
fn early_stopping_ends_a_run_that_stops_improving_and_survives_a_resume() {
    let model = tmp("es-model");
    tiny_model(&model);
    let (straight, cut) = (tmp("es-straight"), tmp("es-cut"));
    let (train_file, dev_file) = (fixture("sst2.csv"), fixture("sst2-dev.csv"));
    let args = [
        "--train-file",
        train_file.to_str().unwrap(),
        "--validation-file",
        dev_file.to_str().unwrap(),
        "--epochs",
        "3",
        // A rate too small to change a prediction: no evaluation improves on the first.
        "--lr",
        "1e-9",
        "--eval-steps",
        "10",
        "--early-stopping-patience",
        "3",
        "--logging-steps",
        "4",
        "--checkpoint-every",
        "2",
    ];
    let o = train(&model, &straight, &args);
    assert!(o.status.success(), "{}", log(&o));
    let r = results(&straight);
    // 30 steps per epoch: evaluations at steps 10 (the best), 20, 30 (the epoch's end) and 40,
    // the third in a row without improvement.
    let steps: Vec<usize> = r.evaluations.iter().map(|e| e.step).collect();
    assert_eq!(steps, vec![10, 20, 30, 40]);
    assert_eq!(r.best_step, Some(10));
    assert_eq!(r.best_epoch, Some(1));
    let stop = r.stopped_early.as_ref().expect("stopped early");
    assert_eq!(stop.step, 40);
    assert!((stop.epoch - 40.0 / 30.0).abs() < 1e-12);
    assert!(
        stop.reason.starts_with("3 evaluations in a row"),
        "{}",
        stop.reason
    );
    assert!(r.finished && r.steps == 40);
    assert_eq!(r.epochs.len(), 2, "the partial second epoch is recorded");
    assert_eq!(r.epochs[1].steps, 10);
    assert!(straight.join("best/adapter_model.safetensors").is_file());
    assert!(
        log(&o).contains("early stopping at step 40 (epoch 1.33)"),
        "{}",
        log(&o)
    );
    let lines = metric_lines(&straight);
    let at: Vec<(usize, bool)> = lines
        .iter()
        .map(|l| {
            (
                l["step"].as_u64().unwrap() as usize,
                l.get("loss").is_some(),
            )
        })
        .collect();
    let mut want: Vec<(usize, bool)> = (1..=10).map(|i| (4 * i, true)).collect();
    want.extend([10, 20, 30, 40].map(|s| (s, false)));
    want.sort_by_key(|&(s, train)| (s, !train));
    assert_eq!(
        at, want,
        "a training line every 4 steps, an evaluation line every 10"
    );
    assert!(lines[0]["learning_rate"].as_f64().unwrap() > 0.0);
    assert!(lines.iter().any(|l| l.get("eval_accuracy").is_some()));

    // Stopped by SIGTERM after a checkpoint, then resumed: the same evaluations, the same stop
    // and the same metrics.jsonl, without a step written twice.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .arg("train")
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&cut)
        .args(["--threads", "1", "--batch-size", "8", "--max-len", "32"])
        .args(args)
        .args(["--debug-step-delay-ms", "30"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !cut.join("resume/state.json").is_file()
        && t0.elapsed() < std::time::Duration::from_secs(120)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let stopped = results(&cut);
    assert!(!stopped.finished && stopped.steps < 40, "{}", stopped.steps);
    let o = Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args(["train", "--threads", "1", "--model"])
        .arg(&model)
        .arg("--resume")
        .arg(&cut)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", log(&o));
    let (a, b) = (results(&straight), results(&cut));
    let evals = |r: &RunResults| {
        r.evaluations
            .iter()
            .map(|e| (e.step, e.dev.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(evals(&a), evals(&b));
    assert_eq!(a.stopped_early, b.stopped_early);
    assert_eq!(a.best_step, b.best_step);
    assert_eq!(metric_lines(&straight), metric_lines(&cut));
    for d in [model, straight, cut] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A Python with TensorBoard: `$LORABERT_TB_PYTHON`, or a virtualenv made once in
/// `~/.cache/lorabert/tb-venv` (`python3 -m venv`, `pip install tensorboard==2.21.0` from PyPI).
fn tensorboard_python() -> PathBuf {
    if let Some(p) = std::env::var_os("LORABERT_TB_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    let venv = PathBuf::from(home).join(".cache/lorabert/tb-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import tensorboard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(&python)
                .args(["-m", "pip", "install", "-q", "tensorboard==2.21.0"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok,
            "could not make a virtualenv with tensorboard in {} (needs python3 and PyPI; or set \
             LORABERT_TB_PYTHON to a python with the tensorboard package)",
            venv.display()
        );
    }
    python
}

#[test]
fn tensorboard_reads_back_every_scalar_of_metrics_jsonl() {
    let model = tmp("tb-model");
    tiny_model(&model);
    let out = tmp("tb");
    let files = (fixture("sst2.csv"), fixture("sst2-dev.csv"));
    let first = [
        "--epochs",
        "2",
        "--eval-steps",
        "10",
        "--logging-steps",
        "4",
        "--report-to",
        "tensorboard",
    ];
    let o = train(&model, &out, &sst2_args(&files, &first));
    assert!(o.status.success(), "{}", log(&o));
    let read = Command::new(tensorboard_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/read_tensorboard.py"))
        .arg(out.join("tb"))
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let tb: Value = serde_json::from_slice(&read.stdout).unwrap();
    let lines: Vec<Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut checked = 0;
    for l in &lines {
        let step = l["step"].as_u64().unwrap();
        for (k, x) in l.as_object().unwrap() {
            let tag = match k.as_str() {
                "step" => continue,
                "epoch" if l.get("loss").is_none() => continue,
                "eval_seconds" => "eval/seconds".to_string(),
                k if k.starts_with("eval_") => format!("eval/{}", &k[5..]),
                "examples_per_second" => "train/examples_per_second".into(),
                k => format!("train/{k}"),
            };
            let points = tb[&tag]
                .as_array()
                .unwrap_or_else(|| panic!("{tag} not in TensorBoard's scalars: {tb}"));
            let p = points
                .iter()
                .find(|p| p[0].as_u64() == Some(step))
                .unwrap_or_else(|| panic!("{tag} has no point at step {step}"));
            let (got, want) = (p[1].as_f64().unwrap(), x.as_f64().unwrap());
            // Scalars are stored as float32.
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1e-30),
                "{tag} at {step}: {got} vs {want}"
            );
            checked += 1;
        }
    }
    // 60 steps: 15 training lines of 5 scalars, 6 evaluations (10, 20, 30, 40, 50, 60) of 5.
    assert_eq!(lines.len(), 15 + 6);
    assert_eq!(checked, 15 * 5 + 6 * 5);
    let total: usize = tb
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_array().unwrap().len())
        .sum();
    assert_eq!(
        total, checked,
        "TensorBoard holds no scalar that metrics.jsonl lacks"
    );
    // --overwrite replaces the run: its TensorBoard files and metrics.jsonl lines go too.
    let again = ["--max-steps", "3", "--logging-steps", "1", "--overwrite"];
    let o = train(&model, &out, &sst2_args(&files, &again));
    assert!(o.status.success(), "{}", log(&o));
    assert!(!out.join("tb").exists(), "the replaced run's tb/ is gone");
    let steps: Vec<u64> = metric_lines(&out)
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 3], "only the new run's lines");
    for d in [model, out] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn bad_control_flags_are_named() {
    let model = tmp("bad-model");
    tiny_model(&model);
    let files = (fixture("sst2.csv"), fixture("sst2-dev.csv"));
    let run = |extra: &[&str]| {
        let out = tmp("bad");
        let mut args = sst2_args(&files, &["--max-steps", "2"]);
        args.extend(extra);
        let o = train(&model, &out, &args);
        let _ = std::fs::remove_dir_all(&out);
        assert!(!o.status.success(), "{extra:?} was accepted");
        log(&o)
    };
    for (flags, message) in [
        (
            &["--eval-steps", "0"][..],
            "--eval-steps must be >= 1 (leave it out to evaluate at epoch ends only)",
        ),
        (
            &["--early-stopping-patience", "0"],
            "--early-stopping-patience must be >= 1",
        ),
        (
            &["--early-stopping-threshold", "-0.1"],
            "--early-stopping-threshold must be a finite number >= 0",
        ),
        (
            &["--gradient-accumulation-steps", "0"],
            "--gradient-accumulation-steps must be >= 1",
        ),
        (&["--logging-steps", "0"], "--logging-steps must be >= 1"),
        (
            &["--loraplus-lr-ratio", "inf"],
            "--loraplus-lr-ratio must be a finite number > 0",
        ),
        (
            &["--loraplus-lr-ratio", "16", "--adapter", "none"],
            "--loraplus-lr-ratio applies to LoRA and DoRA adapters",
        ),
        (
            &["--report-to", "tensorboard,none"],
            "--report-to: `none` with tensorboard: give one or the other",
        ),
        (
            &["--class-weights", "negative=2,negative=3"],
            "`negative` is given twice",
        ),
        (
            &["--class-weights", "negative=1e39"],
            "the weight of `negative` is 1000000000000000000000000000000000000000",
        ),
        (
            &["--eval-steps", "5", "--max-eval", "0"],
            "--eval-steps needs validation examples",
        ),
        (
            &["--report-to", "wandb"],
            "--report-to wandb: lorabert reports to `tensorboard` (or `none`)",
        ),
        (
            &["--class-weights", "weights.json"],
            "--class-weights weights.json: not `balanced`, `none` or `label=weight,...`, and no such file",
        ),
        // No validation examples to count the patience on.
        (
            &["--early-stopping-patience", "2", "--max-eval", "0"],
            "--early-stopping-patience needs validation examples",
        ),
    ] {
        let e = run(flags);
        assert!(e.contains(message), "{flags:?}: {e}");
    }
    let _ = std::fs::remove_dir_all(model);
}
