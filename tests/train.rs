//! Training on a tiny random BERT with synthetic data: losses fall, every task and adapter type
//! trains, frozen weights stay frozen, checkpoints restore to the same predictions.

mod common;

use burn::module::Module;
use burn::tensor::Device;
use common::{adapter, rng_lock};
use lorabert::model::init::InitRng;
use lorabert::model::{Bert, BertConfig, Encoded};
use lorabert::tasks::{PairEncoding, Task};
use lorabert::tasks::{Prepared, TaskData};
use lorabert::train::artifacts::{checkpoint_files, restore};
use lorabert::train::{TrainConfig, Trainer, build_model, count_params, evaluate, predict};

/// Sequences whose class is decided by which "sentiment token" (10..15) they contain.
fn synthetic(task: Task, n: usize, seed: u64) -> TaskData {
    let mut s = seed;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as usize
    };
    let mut examples = Vec::new();
    for i in 0..n {
        let class = next() % 5;
        let len = 3 + next() % 6;
        let mut ids = vec![1u32];
        for _ in 0..len {
            ids.push(20 + (next() % 20) as u32);
        }
        ids.insert(1 + next() % len, 10 + class as u32);
        ids.push(2);
        let a = Encoded {
            type_ids: vec![0; ids.len()],
            ids,
            truncated: false,
        };
        let (b, label) = match task {
            Task::Sst => (None, class as f32),
            _ => {
                let other = if next() % 2 == 0 {
                    class
                } else {
                    (class + 1 + next() % 4) % 5
                };
                let ids = vec![1, 21, 10 + other as u32, 22, 2];
                let b = Encoded {
                    type_ids: vec![0; ids.len()],
                    ids,
                    truncated: false,
                };
                let same = (other == class) as u8 as f32;
                (
                    Some(b),
                    if task == Task::Para {
                        same
                    } else {
                        same * 4.0 + (class as f32) * 0.1
                    },
                )
            }
        };
        examples.push(Prepared {
            id: format!("ex{i}"),
            a,
            b,
            label,
            label_ids: Vec::new(),
            negatives: Vec::new(),
            words: None,
        });
    }
    TaskData {
        kind: lorabert::tasks::kinds::minbert(task),
        examples,
        truncated: 0,
        skipped_rows: 0,
    }
}

/// A run of `tasks` with adapter `kind` (`lora`, `dora` at r = 2, or `none`).
fn cfg(tasks: Vec<Task>, kind: &str) -> TrainConfig {
    TrainConfig {
        tasks,
        adapter: adapter(kind, 2),
        epochs: 1,
        batch_size: 16,
        lr: 2e-2,
        head_dropout: 0.0,
        ..TrainConfig::default()
    }
}

/// Cross-encoding: `[CLS] a [SEP] b [SEP]` in one sequence with token types 0 / 1.
fn as_cross(mut d: TaskData) -> TaskData {
    for e in &mut d.examples {
        if let Some(b) = e.b.take() {
            e.a.type_ids.extend(std::iter::repeat_n(1, b.ids.len() - 1));
            e.a.ids.extend_from_slice(&b.ids[1..]);
        }
    }
    d
}

fn setup(c: &TrainConfig) -> (Trainer, Vec<TaskData>, Device) {
    let device = Device::flex().autodiff();
    device.seed(3);
    let mut bcfg = BertConfig::tiny(64, 16, 2, 2);
    bcfg.hidden_dropout_prob = 0.0;
    bcfg.attention_probs_dropout_prob = 0.0;
    let bert = Bert::random(&bcfg, &device, &mut InitRng::new(3));
    let (model, _) = build_model(bert, c, 16, &device).unwrap();
    let data: Vec<TaskData> = c
        .tasks
        .iter()
        .map(|&t| synthetic(t, 96, t as u64 + 7))
        .map(|d| {
            if c.pair_encoding == PairEncoding::Cross {
                as_cross(d)
            } else {
                d
            }
        })
        .collect();
    let per = Trainer::steps_per_epoch(&data, c.batch_size);
    (
        Trainer::new(model, c.clone(), per * 8, 0, device.clone()),
        data,
        device,
    )
}

fn mean_loss_over_epochs(c: TrainConfig, epochs: usize) -> (f64, f64, Trainer, Vec<TaskData>) {
    let (mut tr, data, _) = setup(&c);
    let mut first = 0.0;
    let mut last = 0.0;
    for e in 0..epochs {
        let plan = tr.plan_epoch(&data, e);
        let mut sum = 0.0;
        for entry in &plan {
            let b = tr.batch(&data, entry);
            sum += pollster::block_on(tr.step(&b)).unwrap().loss;
        }
        let mean = sum / plan.len() as f64;
        if e == 0 {
            first = mean;
        }
        last = mean;
    }
    (first, last, tr, data)
}

#[test]
fn lora_dora_and_full_finetuning_reduce_the_loss_on_every_task() {
    let _rng = rng_lock();
    for adapter in ["lora", "dora", "none"] {
        let (first, last, _, _) = mean_loss_over_epochs(cfg(Task::ALL.to_vec(), adapter), 8);
        eprintln!("{adapter:?}: mean loss epoch 1 {first:.4} -> epoch 8 {last:.4}");
        assert!(
            last.is_finite() && last < 0.7 * first,
            "{adapter:?}: loss {first} -> {last}"
        );
    }
}

#[test]
fn only_adapters_and_heads_train() {
    let _rng = rng_lock();
    let c = cfg(vec![Task::Sst], "lora");
    let (tr, _, _) = setup(&c);
    let counts = count_params(tr.model());
    // r = 2 on 6 linears of 2 layers (16x16 x4, 16x64, 64x16) + SST head 16*5+5.
    let per_layer = 4 * 2 * (16 + 16) + 2 * (16 + 64) + 2 * (64 + 16);
    let lora = 2 * per_layer;
    assert_eq!(counts.trainable, lora + 16 * 5 + 5, "{counts:?}");
    let base_w = tr.model().bert.layers[0]
        .attention
        .self_attn
        .query
        .weight
        .val()
        .into_data();
    let (_, _, tr, _) = mean_loss_over_epochs(c, 1);
    let after = tr.model().bert.layers[0]
        .attention
        .self_attn
        .query
        .weight
        .val()
        .into_data();
    assert_eq!(base_w, after, "frozen base weight changed");
}

#[test]
fn checkpoint_restores_identical_predictions() {
    let _rng = rng_lock();
    for (adapter, enc) in [("dora", PairEncoding::Bi), ("lora", PairEncoding::Cross)] {
        let mut c = cfg(Task::ALL.to_vec(), adapter);
        c.pair_encoding = enc;
        let (_, _, tr, data) = mean_loss_over_epochs(c.clone(), 2);
        let heads = lorabert::tasks::HeadsConfig {
            tasks: c.tasks.clone(),
            pooling: c.pooling,
            pair_encoding: c.pair_encoding,
            head_dropout: 0.0,
            hidden_size: 16,
            own: None,
        };
        let files =
            pollster::block_on(checkpoint_files(tr.model(), &c, &heads, "tiny", "{}")).unwrap();
        let valid = tr.model().valid();
        let want = pollster::block_on(evaluate(&valid, &data, 32, 0, false)).unwrap();
        let want_p = pollster::block_on(predict(&valid, &data[1], 32, 0)).unwrap();
        // Rebuild from the same base encoder, then load the files.
        let device = Device::flex();
        device.seed(3);
        let autodiff = device.clone().autodiff();
        autodiff.seed(3);
        let mut bcfg = BertConfig::tiny(64, 16, 2, 2);
        bcfg.hidden_dropout_prob = 0.0;
        bcfg.attention_probs_dropout_prob = 0.0;
        let base = Bert::random(&bcfg, &autodiff, &mut InitRng::new(3)).valid();
        let mut get = |n: &str| Ok(files.iter().find(|(f, _)| *f == n).map(|(_, b)| b.clone()));
        let restored = restore(base, &mut get, &device).unwrap().model;
        let got = pollster::block_on(evaluate(&restored, &data, 32, 0, false)).unwrap();
        let got_p = pollster::block_on(predict(&restored, &data[1], 32, 0)).unwrap();
        assert_eq!(want, got, "{adapter:?} {enc:?}");
        let d = want_p
            .values
            .iter()
            .zip(&got_p.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(d < 1e-5, "{adapter:?}: predictions differ by {d}");
    }
}

#[test]
fn same_seed_same_training() {
    let _rng = rng_lock();
    let c = cfg(vec![Task::Sts], "lora");
    let (a, b, _, _) = mean_loss_over_epochs(c.clone(), 2);
    let (a2, b2, _, _) = mean_loss_over_epochs(c, 2);
    assert_eq!((a, b), (a2, b2));
}

#[test]
fn interrupted_and_resumed_training_is_bit_identical() {
    let _rng = rng_lock();
    use lorabert::train::resume::{EpochProgress, restore_training, resume_files};
    for adapter in ["dora", "none"] {
        let mut c = cfg(vec![Task::Sst, Task::Sts], adapter);
        c.head_dropout = 0.2; // dropout draws must be reproduced too
        let (mut straight, data, _) = setup(&c);
        let (mut first, _, _) = setup(&c);
        let plan: Vec<_> = (0..2).flat_map(|e| straight.plan_epoch(&data, e)).collect();
        for entry in &plan {
            let b = straight.batch(&data, entry);
            pollster::block_on(straight.step(&b)).unwrap();
        }
        // Interrupted after 5 steps: save, rebuild everything from scratch, restore, continue.
        for entry in &plan[..5] {
            let b = first.batch(&data, entry);
            pollster::block_on(first.step(&b)).unwrap();
        }
        let results = lorabert::train::RunResults {
            results_version: lorabert::train::results::RESULTS_VERSION,
            model: "tiny".into(),
            backend: "flex".into(),
            config: c.clone(),
            epochs: vec![],
            best_epoch: None,
            best: None,
            params: count_params(first.model()),
            peak_memory_bytes: None,
            truncated_examples: 0,
            skipped_rows: 0,
            steps: 5,
            finished: false,
            versions: Default::default(),
            loss_curve: vec![],
            skipped_batches: 0,
            before_training: None,
            left_out_duplicates: 0,
            loss_scaler: None,
            data: None,
            segments: Vec::new(),
            evaluations: Vec::new(),
            best_step: None,
            patience_counter: 0,
            stopped_early: None,
            class_weights: Vec::new(),
            pos_weight: Vec::new(),
        };
        let files =
            pollster::block_on(resume_files(&first, &EpochProgress::default(), &results)).unwrap();
        drop(first);
        let (mut resumed, _, _) = setup(&c);
        let mut get = |n: &str| Ok(files.iter().find(|(f, _)| *f == n).map(|(_, b)| b.clone()));
        restore_training(&mut resumed, &mut get).unwrap();
        assert_eq!(resumed.step, 5);
        for entry in &plan[5..] {
            let b = resumed.batch(&data, entry);
            pollster::block_on(resumed.step(&b)).unwrap();
        }
        let a = lorabert::train::resume::resume_files;
        let fa = pollster::block_on(a(&straight, &EpochProgress::default(), &results)).unwrap();
        let fb = pollster::block_on(a(&resumed, &EpochProgress::default(), &results)).unwrap();
        let params = |f: &lorabert::train::artifacts::Files| {
            f.iter()
                .find(|(n, _)| *n == "trainable.safetensors")
                .unwrap()
                .1
                .clone()
        };
        assert!(
            params(&fa) == params(&fb),
            "{adapter:?}: resumed weights differ from the uninterrupted run"
        );
        // (Equal weights after more AdamW steps also mean the moments were restored exactly.)
    }
}

#[test]
fn nan_loss_stops_with_the_step_or_is_skipped() {
    let _rng = rng_lock();
    let mut c = cfg(vec![Task::Sst], "lora");
    c.debug_nan_at_step = Some(3);
    let (mut tr, data, _) = setup(&c);
    let plan = tr.plan_epoch(&data, 0);
    for (i, entry) in plan.iter().enumerate().take(3) {
        let b = tr.batch(&data, entry);
        let r = pollster::block_on(tr.step(&b));
        if i < 2 {
            r.unwrap();
        } else {
            let e = r.unwrap_err().to_string();
            assert!(e.starts_with("non-finite loss (NaN) at step 3"), "{e}");
        }
    }
    assert_eq!(tr.step, 2, "a non-finite step must not update the model");
}

/// `results.json` files written before the adapter became one setting (version 1: `adapter`
/// `"dora"` / `"none"` beside a `lora` object; made by commit 594a271's `lorabert train`, see
/// `tests/data/README.md`) still load, upgraded to the current layout.
#[test]
fn version_1_results_files_still_load() {
    use lorabert::train::RunResults;
    use lorabert::train::results::RESULTS_VERSION;
    let read = |name: &str| {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        RunResults::from_json(&std::fs::read(&path).unwrap(), &path).unwrap()
    };
    let dora = read("results-v1-dora.json");
    assert_eq!(dora.results_version, RESULTS_VERSION);
    let lora = dora.config.adapter.as_ref().expect("an adapter");
    assert!(lora.use_dora);
    assert_eq!((lora.r, lora.lora_alpha, lora.lora_dropout), (2, 8.0, 0.1));
    assert_eq!(dora.config.adapter_name(), "dora");
    assert_eq!(dora.config.tasks, Task::ALL.to_vec());
    assert_eq!(dora.steps, 9);
    assert!(dora.best.as_ref().and_then(|b| b.overall).is_some());
    let full = read("results-v1-full.json");
    assert_eq!(full.config.adapter, None);
    assert_eq!(full.config.adapter_name(), "none");
    // The current layout round-trips, and a newer version than this build's is refused.
    let json = serde_json::to_vec(&dora).unwrap();
    assert_eq!(RunResults::from_json(&json, "again.json").unwrap(), dora);
    let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["results_version"] = (RESULTS_VERSION + 1).into();
    let e = RunResults::from_value(v, "future.json")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("future.json: results_version"), "{e}");
}
