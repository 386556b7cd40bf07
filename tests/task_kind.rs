//! The task-kind extension point (`tasks::Kind`): a toy kind defined here, and only here, trains
//! through the same trainer, evaluation and prediction code as the built-in kinds. It is the
//! recipe of "How to add a task kind" in `docs/architecture.md`, minus the registration line
//! (`tasks::kinds::task_kind`): the model is built with `MultitaskModel::with_kinds`, which takes
//! the kinds directly, and nothing here reloads a checkpoint (which goes through the registry).

mod common;

use std::sync::Arc;

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use common::{adapter, rng_lock};
use lorabert::data::BatchTensors;
use lorabert::model::init::InitRng;
use lorabert::model::{Bert, BertConfig, Encoded};
use lorabert::tasks::kind::{KindMetrics, Targets};
use lorabert::tasks::kinds::{apply, features, value_targets};
use lorabert::tasks::{
    HeadsConfig, Kind, MultitaskModel, PairEncoding, Pooling, Prepared, Task, TaskData,
};
use lorabert::train::{TrainConfig, Trainer, predict};

/// A toy kind: "how loud is the sentence", a real value 2 when it holds the loud token (10),
/// else 0, trained with an L1 loss (no built-in kind has one) and scored by the share of
/// predictions within 0.5 of the target (`within_half`, the best-model metric) and the L1
/// loss (`l1_loss`, lower is better by its name).
#[derive(Debug)]
struct Loudness;

impl Kind for Loudness {
    fn task(&self) -> Task {
        Task::Own
    }

    fn name(&self) -> String {
        "loudness".into()
    }

    fn head_name(&self) -> &'static str {
        "loudness"
    }

    fn is_pair(&self) -> bool {
        false
    }

    fn head(&self, hidden: usize, _: PairEncoding) -> Option<[usize; 2]> {
        Some([hidden, 1])
    }

    fn width(&self) -> usize {
        1
    }

    fn targets(&self, labels: &[f32], device: &Device) -> Targets {
        Targets::Values(value_targets(labels, 1.0, device))
    }

    fn forward(
        &self,
        model: &MultitaskModel,
        head: Option<&Linear>,
        x: &BatchTensors,
    ) -> Tensor<2> {
        apply(head, features(model, model.embed(x), false))
    }

    fn loss(&self, outputs: Tensor<2>, targets: &Targets) -> Tensor<1> {
        let [b, _] = outputs.dims();
        (outputs.reshape([b]) - targets.values()).abs().mean()
    }

    fn predictions(&self, outputs: Tensor<2>) -> Tensor<2> {
        outputs
    }

    fn label_of(&self, values: &[f32]) -> f64 {
        values[0] as f64
    }

    fn real_valued(&self) -> bool {
        true
    }

    fn metrics(&self, pred: &[f64], gold: &[f64]) -> KindMetrics {
        let n = pred.len().max(1) as f64;
        let within = pred
            .iter()
            .zip(gold)
            .filter(|(p, g)| (*p - *g).abs() < 0.5)
            .count() as f64
            / n;
        let l1 = pred
            .iter()
            .zip(gold)
            .map(|(p, g)| (p - g).abs())
            .sum::<f64>()
            / n;
        KindMetrics::new(
            "within_half",
            vec![("within_half", within), ("l1_loss", l1)],
        )
    }
}

/// Sentences of filler tokens (20..40), half of them with the loud token 10.
fn data(n: usize) -> TaskData {
    let examples = (0..n)
        .map(|i| {
            let loud = i % 2 == 0;
            let mut ids = vec![1u32];
            ids.extend((0..3 + i % 4).map(|j| 20 + ((i * 7 + j * 3) % 20) as u32));
            if loud {
                ids.insert(1 + i % 3, 10);
            }
            ids.push(2);
            Prepared {
                id: format!("s{i}"),
                a: Encoded {
                    type_ids: vec![0; ids.len()],
                    ids,
                    truncated: false,
                },
                b: None,
                label: if loud { 2.0 } else { 0.0 },
                label_ids: Vec::new(),
                negatives: Vec::new(),
                words: None,
            }
        })
        .collect();
    TaskData {
        kind: Arc::new(Loudness),
        examples,
        truncated: 0,
        skipped_rows: 0,
    }
}

#[test]
fn a_kind_defined_outside_the_crate_trains_evaluates_and_predicts() {
    let _rng = rng_lock();
    let device = Device::flex().autodiff();
    device.seed(5);
    let mut bcfg = BertConfig::tiny(64, 16, 2, 2);
    bcfg.hidden_dropout_prob = 0.0;
    bcfg.attention_probs_dropout_prob = 0.0;
    let lora = adapter("lora", 2).unwrap();
    let mut rng = InitRng::new(5);
    let bert = Bert::random(&bcfg, &device, &mut rng);
    let bert = lorabert::adapter::apply_adapters(bert, &lora, &mut rng, &device).unwrap();
    let heads = HeadsConfig {
        tasks: vec![Task::Own],
        pooling: Pooling::Mean,
        pair_encoding: PairEncoding::Bi,
        head_dropout: 0.0,
        hidden_size: 16,
        own: None,
    };
    let kind: Arc<dyn Kind> = Arc::new(Loudness);
    let model = MultitaskModel::with_kinds(bert, &[kind], &heads, &mut rng, &device);
    assert_eq!(model.head_names, ["loudness"]);
    let cfg = TrainConfig {
        tasks: vec![Task::Own],
        adapter: Some(lora),
        batch_size: 16,
        lr: 2e-2,
        head_dropout: 0.0,
        ..TrainConfig::default()
    };
    let train = vec![data(96)];
    let dev = vec![data(32)];
    let per = Trainer::steps_per_epoch(&train, cfg.batch_size);
    let mut tr = Trainer::new(model, cfg, per * 10, 0, device);
    let before = pollster::block_on(tr.evaluate(&dev)).unwrap();
    let mut losses = Vec::new();
    for epoch in 0..10 {
        let plan = tr.plan_epoch(&train, epoch);
        let mut sum = 0.0;
        for entry in &plan {
            let b = tr.batch(&train, entry);
            sum += pollster::block_on(tr.step(&b)).unwrap().loss;
        }
        losses.push(sum / plan.len() as f64);
    }
    let after = pollster::block_on(tr.evaluate(&dev)).unwrap();
    eprintln!("L1 loss by epoch {losses:?}; dev before {before}, after {after}");
    let (b, a) = (before.own.unwrap(), after.own.unwrap());
    // The trainer minimised the kind's own loss, and evaluation reported the kind's own
    // metrics, the best-model metric first.
    assert!(losses[9] < 0.5 * losses[0], "{losses:?}");
    assert_eq!(a.metric_for_best_model, "within_half");
    assert!(a.get("within_half").unwrap() > 0.9, "{a:?}");
    assert!(a.get("l1_loss").unwrap() < b.get("l1_loss").unwrap());
    assert!(a.primary() > b.primary());
    // Predictions come back as the kind reports them, one row per example under its name.
    let model = tr.model().valid();
    let p = pollster::block_on(predict(&model, &dev[0], 8, 0)).unwrap();
    let rows = p.rows();
    assert_eq!(rows.len(), 32);
    assert!(
        rows.iter()
            .all(|r| r.task == "loudness" && r.label.is_none())
    );
    assert!(
        (rows[0].score - 2.0).abs() < 0.5 && rows[1].score.abs() < 0.5,
        "{rows:?}"
    );
}
