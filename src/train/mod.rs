//! Training: AdamW with linear warm-up and decay, global gradient-norm clipping, single-task
//! and multitask epochs, dev evaluation. Read-backs are `async` so the same loop runs in the
//! browser; native drivers block on it with a small executor.

pub mod artifacts;
pub mod memory;
pub mod prepare;
pub mod resume;
pub mod run;

pub use prepare::{Prepared, TaskData};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::adapter::LoraConfig;
use crate::data::make_batches;
use crate::error::{Error, Result};
use crate::tasks::{
    MultitaskModel, PairEncoding, Pooling, Task, TaskBatch, accuracy, overall_score, pearson,
};

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterChoice {
    /// Full fine-tuning: every encoder weight is trainable.
    None,
    /// LoRA adapters on `target_modules`.
    Lora,
    /// DoRA adapters on `target_modules`.
    Dora,
}

/// Storage precision of the frozen weights (`--precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Mixed precision ([`crate::model::Bert::into_f16`]): frozen 2-D weights (linear weights,
    /// embedding tables) in f16 storage and f16 activations (LayerNorm computed in f32), with
    /// adapters, heads, biases, LayerNorm parameters, gradients of parameters and AdamW moments
    /// in f32 and dynamic loss scaling ([`LossScaler`]). Needs a wgpu device with f16
    /// ([`crate::kernels::f16_available`]).
    F16,
}

impl Precision {
    /// `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

/// The precision a run asking for `requested` gets on `device`: the f16 mode falls back to f32 on
/// devices without it (the CPU backend, a GPU without `shader-f16`), with the one-line notice for
/// the driver to show.
pub fn resolve_precision(requested: Precision, device: &Device) -> (Precision, Option<String>) {
    if requested == Precision::F16 && !crate::kernels::f16_available(device) {
        return (
            Precision::F32,
            Some("f16 needs a wgpu device with f16 support (shader-f16): training in f32".into()),
        );
    }
    (requested, None)
}

/// Every setting of a training run; serialised into `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Tasks trained together (one for single-task runs, all three for multitask).
    pub tasks: Vec<Task>,
    /// Adapter type.
    pub adapter: AdapterChoice,
    /// Adapter hyper-parameters (`use_dora` follows `adapter`).
    pub lora: LoraConfig,
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per step (pairs count once).
    pub batch_size: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Decoupled weight decay of AdamW.
    pub weight_decay: f64,
    /// Fraction of all steps spent warming up linearly from 0 to `lr`.
    pub warmup_ratio: f64,
    /// Global gradient-norm clipping threshold (as `torch.nn.utils.clip_grad_norm_`); 0 = off.
    pub max_grad_norm: f64,
    /// Token limit per sequence (special tokens included).
    pub max_len: usize,
    /// Seed of weights init, dropout and data order.
    pub seed: u64,
    /// Stop after this many optimiser steps in total (quick runs).
    pub max_steps: Option<usize>,
    /// Use at most this many training examples per task.
    pub max_train_examples: Option<usize>,
    /// Use at most this many dev examples per task.
    pub max_eval_examples: Option<usize>,
    /// Sentence pooling.
    pub pooling: Pooling,
    /// Pair encoding.
    pub pair_encoding: PairEncoding,
    /// Dropout before the task heads.
    pub head_dropout: f64,
    /// Group examples of similar length into batches (less padding).
    pub bucket_by_length: bool,
    /// Batch size for evaluation.
    pub eval_batch_size: usize,
    /// Save a resume checkpoint every this many steps (0: only at epoch ends and on stop).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Skip a batch whose loss or gradient is not finite instead of stopping the run.
    #[serde(default)]
    pub skip_nonfinite: bool,
    /// Testing aid: make the loss NaN at this 1-based step (fault injection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_nan_at_step: Option<usize>,
    /// Storage precision of the frozen weights.
    #[serde(default)]
    pub precision: Precision,
}

fn default_checkpoint_every() -> usize {
    100
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            tasks: vec![Task::Sst],
            adapter: AdapterChoice::Lora,
            lora: LoraConfig {
                r: 1,
                lora_alpha: 8.0,
                ..LoraConfig::default()
            },
            epochs: 3,
            batch_size: 32,
            lr: 1e-3,
            weight_decay: 0.0,
            warmup_ratio: 0.1,
            max_grad_norm: 1.0,
            max_len: 128,
            seed: 42,
            max_steps: None,
            max_train_examples: None,
            max_eval_examples: None,
            pooling: Pooling::Mean,
            pair_encoding: PairEncoding::Bi,
            head_dropout: 0.1,
            bucket_by_length: true,
            eval_batch_size: 128,
            checkpoint_every: default_checkpoint_every(),
            skip_nonfinite: false,
            debug_nan_at_step: None,
            precision: Precision::F32,
        }
    }
}

impl TrainConfig {
    /// Checks option ranges.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the option.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Invalid(m.to_string()));
        if self.tasks.is_empty() {
            return bad("no task selected");
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("--batch-size must be >= 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("--lr must be > 0");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("--warmup-ratio must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.head_dropout) {
            return bad("--head-dropout must be in [0, 1)");
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            return bad("--epochs must be >= 1");
        }
        if self.max_steps == Some(0) {
            return bad("--max-steps must be >= 1");
        }
        if self.adapter != AdapterChoice::None {
            self.lora.validate()?;
        }
        Ok(())
    }
}

/// Seed of the random draws (dropout) of 0-based step `step`: a SplitMix64 mix of the run seed
/// and the step.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Learning rate at `step` (0-based) of `total`: linear warm-up over `warmup` steps, then linear
/// decay to 0 (`transformers.get_linear_schedule_with_warmup`).
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let rest = total.saturating_sub(warmup).max(1);
    peak * (total.saturating_sub(step) as f64 / rest as f64).max(0.0)
}

/// Dev metrics; a field is present when that task was evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DevMetrics {
    /// SST accuracy.
    pub sst_acc: Option<f64>,
    /// Paraphrase accuracy.
    pub para_acc: Option<f64>,
    /// STS Pearson correlation.
    pub sts_pearson: Option<f64>,
    /// `mean(sst, para, (sts + 1) / 2)`, when all three are present.
    pub overall: Option<f64>,
}

impl DevMetrics {
    /// The number to select the best epoch by: the overall score, or the only metric present.
    pub fn primary(&self) -> f64 {
        self.overall
            .or(self.sst_acc)
            .or(self.para_acc)
            .or(self.sts_pearson)
            .unwrap_or(f64::NEG_INFINITY)
    }
}

/// Statistics of one optimiser step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean loss of the batch.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Examples in the batch.
    pub examples: usize,
    /// f16 mode: the scaled gradients overflowed, so the optimiser step was skipped and the loss
    /// scale halved ([`LossScaler`]); `grad_norm` is then infinite or NaN.
    pub overflow: bool,
}

/// Dynamic loss scaling for the f16 mode, with PyTorch's `torch.amp.GradScaler` defaults: the
/// loss is multiplied by `scale` before backward so small f16 gradients do not flush to zero,
/// gradients are divided by it before clipping and AdamW; a step whose gradients overflow
/// (non-finite) is skipped and `scale` halved; after [`LossScaler::GROWTH_INTERVAL`] good steps
/// in a row it doubles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The current factor (starts at [`LossScaler::INIT`]).
    pub scale: f64,
    /// Steps without overflow since `scale` last changed.
    pub good_steps: usize,
    /// Optimiser steps skipped for overflow so far in the run.
    pub overflow_steps: usize,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: Self::INIT,
            good_steps: 0,
            overflow_steps: 0,
        }
    }
}

impl LossScaler {
    /// Initial scale, `2^16` (`GradScaler(init_scale=65536)`).
    pub const INIT: f64 = 65536.0;
    /// Good steps before the scale doubles (`growth_interval=2000`).
    pub const GROWTH_INTERVAL: usize = 2000;
    /// Below this the scale is not halved further: an overflow at scale 1 is a real non-finite
    /// gradient and stops the run as in f32.
    pub const MIN: f64 = 1.0;

    /// Records a step whose unscaled gradients were `finite`; returns whether the optimiser may
    /// apply them. `false` means skip the step (the scale has been halved).
    pub fn update(&mut self, finite: bool) -> bool {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            true
        } else {
            self.scale = (self.scale * 0.5).max(Self::MIN);
            self.good_steps = 0;
            self.overflow_steps += 1;
            false
        }
    }
}

/// Parameter counts of a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCounts {
    /// Parameters that receive gradients.
    pub trainable: usize,
    /// All parameters.
    pub total: usize,
}

struct CountVisitor(ParamCounts);

impl ModuleVisitor for CountVisitor {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let n = p.shape().num_elements();
        self.0.total += n;
        if p.val().is_require_grad() {
            self.0.trainable += n;
        }
    }
}

/// Counts trainable (gradient-requiring, on an autodiff device) and total parameters.
pub fn count_params<M: Module>(m: &M) -> ParamCounts {
    let mut v = CountVisitor(ParamCounts::default());
    m.visit(&mut v);
    v.0
}

/// Squared gradient norm of every trainable parameter, with the parameter's module path
/// (e.g. `encoder.layers.0.attention.query.adapter.lora_a`) so a non-finite one can be named.
struct SquaredNorms<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    names: Vec<String>,
    parts: Vec<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorms<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(p.id) {
            self.names.push(self.path.join("."));
            self.parts.push(g.square().sum());
        }
    }
}

struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(p.id) {
            self.grads.register(p.id, g.mul_scalar(self.factor));
        }
    }
}

/// Reads a scalar tensor back without blocking the event loop.
async fn read_scalar(t: Tensor<1>) -> Result<f64> {
    let v = read_f32(t).await?;
    v.first()
        .map(|&x| x as f64)
        .ok_or_else(|| Error::Invalid("empty tensor read back".into()))
}

/// Reads a tensor back to host f32 values asynchronously.
///
/// # Errors
/// [`Error::Invalid`] when the backend fails to read.
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| Error::Invalid(format!("device read-back failed: {e:?}")))?;
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Invalid(format!("device read-back failed: {e:?}")))
}

/// The training state: model, optimiser and schedule position.
pub struct Trainer {
    /// The model being trained (on an autodiff device); only `None` while the optimiser holds it
    /// inside [`Trainer::step`].
    model: Option<MultitaskModel>,
    optim: ModuleOptimizer,
    /// The run's configuration.
    pub cfg: TrainConfig,
    /// Optimiser steps taken so far.
    pub step: usize,
    /// Planned number of steps (for the schedule).
    pub total_steps: usize,
    warmup_steps: usize,
    pad_id: u32,
    device: Device,
    /// Loss scaling, in the f16 mode only.
    pub scaler: Option<LossScaler>,
}

impl Trainer {
    /// A trainer for `model` (already on `device`, an autodiff device) planning `total_steps`.
    pub fn new(
        model: MultitaskModel,
        cfg: TrainConfig,
        total_steps: usize,
        pad_id: u32,
        device: Device,
    ) -> Self {
        let optim = AdamWConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.999)
            .with_epsilon(1e-8)
            .with_weight_decay(cfg.weight_decay as f32)
            .init();
        let warmup_steps = (cfg.warmup_ratio * total_steps as f64).round() as usize;
        Trainer {
            scaler: (cfg.precision == Precision::F16).then(LossScaler::default),
            model: Some(model),
            optim,
            cfg,
            step: 0,
            total_steps: total_steps.max(1),
            warmup_steps,
            pad_id,
            device,
        }
    }

    /// The model being trained.
    pub fn model(&self) -> &MultitaskModel {
        self.model
            .as_ref()
            .expect("the model is only absent inside Trainer::step")
    }

    /// Consumes the trainer, returning the trained model.
    pub fn into_model(self) -> MultitaskModel {
        self.model
            .expect("the model is only absent inside Trainer::step")
    }

    /// The training device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of optimiser steps one epoch over `train` takes.
    pub fn steps_per_epoch(train: &[TaskData], batch_size: usize) -> usize {
        train
            .iter()
            .map(|t| t.examples.len().div_ceil(batch_size.max(1)))
            .sum()
    }

    /// The batches of epoch `epoch` (0-based): each task's examples split into batches (length
    /// bucketed if configured) with a seeded order, then all tasks' batches interleaved in a
    /// seeded random order. Returns `(index into train, example indices)`.
    pub fn plan_epoch(&self, train: &[TaskData], epoch: usize) -> Vec<(usize, Vec<usize>)> {
        let seed = self
            .cfg
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(epoch as u64);
        let mut plan = Vec::new();
        for (ti, td) in train.iter().enumerate() {
            let lengths = td.lengths();
            let lens = self.cfg.bucket_by_length.then_some(lengths.as_slice());
            for b in make_batches(
                td.examples.len(),
                self.cfg.batch_size,
                true,
                seed ^ ti as u64,
                lens,
            ) {
                plan.push((ti, b));
            }
        }
        plan.shuffle(&mut StdRng::seed_from_u64(seed));
        plan
    }

    /// One optimiser step on `batch`: forward, loss, backward, global-norm clipping, AdamW with
    /// the scheduled learning rate. In the f16 mode the loss is scaled before backward and the
    /// gradients unscaled before clipping; an overflow skips the update ([`LossScaler`],
    /// [`StepStats::overflow`]) but still advances the step.
    ///
    /// # Errors
    /// [`Error::NonFinite`] when the loss or (outside loss scaling) the gradient norm is not
    /// finite, naming the step and the parameters; a failed read-back.
    pub async fn step(&mut self, batch: &TaskBatch) -> Result<StepStats> {
        let examples = match batch {
            TaskBatch::Sst { labels, .. } => labels.dims()[0],
            TaskBatch::Pair { labels, .. } => labels.dims()[0],
        };
        // Dropout masks come from a generator reseeded at every step, so a resumed run draws
        // exactly the masks the uninterrupted run drew.
        let seed = step_seed(self.cfg.seed, self.step);
        self.device.seed(seed);
        crate::model::dropout::seed_dropout(seed);
        let mut loss = self.model().loss(batch);
        if self.cfg.debug_nan_at_step == Some(self.step + 1) {
            loss = loss.mul_scalar(f32::NAN);
        }
        let scale = self.scaler.map_or(1.0, |s| s.scale);
        let grads = if scale == 1.0 {
            loss.backward()
        } else {
            loss.clone().mul_scalar(scale).backward()
        };
        let loss = read_scalar(loss.detach()).await?;
        if !loss.is_finite() {
            return Err(Error::NonFinite {
                step: self.step + 1,
                what: format!("loss ({loss})"),
                last_checkpoint_step: None,
            });
        }
        let mut grads = GradientsParams::from_grads(grads, self.model());
        let mut sq = SquaredNorms {
            grads: &grads,
            path: Vec::new(),
            names: Vec::new(),
            parts: Vec::new(),
        };
        self.model().visit(&mut sq);
        let squares = if sq.parts.is_empty() {
            None
        } else {
            Some(Tensor::cat(sq.parts, 0))
        };
        let grad_norm = match &squares {
            None => 0.0,
            Some(s) => read_scalar(s.clone().sum()).await?.sqrt() / scale,
        };
        let lr = lr_at(self.step, self.total_steps, self.warmup_steps, self.cfg.lr);
        let finite = grad_norm.is_finite();
        // An overflow at the smallest scale is a real non-finite gradient: reported below.
        if let Some(scaler) = self.scaler.as_mut()
            && (finite || scaler.scale > LossScaler::MIN)
            && !scaler.update(finite)
        {
            self.step += 1;
            return Ok(StepStats {
                loss,
                lr,
                grad_norm,
                examples,
                overflow: true,
            });
        }
        if !grad_norm.is_finite() {
            // Name the parameters whose gradients are not finite (read back only on this path).
            let bad = match squares {
                Some(s) => read_f32(s)
                    .await?
                    .iter()
                    .zip(&sq.names)
                    .filter(|(v, _)| !v.is_finite())
                    .map(|(_, n)| n.as_str())
                    .collect::<Vec<_>>(),
                None => Vec::new(),
            };
            let shown = bad.iter().take(4).copied().collect::<Vec<_>>().join(", ");
            let more = bad.len().saturating_sub(4);
            return Err(Error::NonFinite {
                step: self.step + 1,
                what: format!(
                    "gradient norm ({grad_norm}; non-finite in {} of {} parameters: {shown}{})",
                    bad.len(),
                    sq.names.len(),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ),
                last_checkpoint_step: None,
            });
        }
        let clip = if self.cfg.max_grad_norm > 0.0 && grad_norm > self.cfg.max_grad_norm {
            self.cfg.max_grad_norm / (grad_norm + 1e-6)
        } else {
            1.0
        };
        // Unscaling and clipping in one pass over the gradients.
        let factor = clip / scale;
        if factor != 1.0 {
            self.model().visit(&mut ScaleGrads {
                grads: &mut grads,
                factor,
            });
        }
        let model = self
            .model
            .take()
            .expect("the model is present between steps");
        self.model = Some(self.optim.step(lr, model, grads));
        self.step += 1;
        Ok(StepStats {
            loss,
            lr,
            grad_norm,
            examples,
            overflow: false,
        })
    }

    /// Advances the schedule past a batch that was skipped (see `skip_nonfinite`).
    pub fn skip_step(&mut self) {
        self.step += 1;
    }

    /// The optimiser state (AdamW moments and step counts) as burnpack bytes.
    ///
    /// # Errors
    /// [`Error::Invalid`] when serialisation fails.
    pub fn optimizer_bytes(&self) -> Result<Vec<u8>> {
        self.optim
            .into_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| Error::Invalid(format!("optimizer state: {e:?}")))
    }

    /// Restores the optimiser state saved by [`optimizer_bytes`](Self::optimizer_bytes); the
    /// model's parameters must carry the same ids as when it was saved.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the bytes are not an optimiser record.
    pub fn load_optimizer_bytes(&mut self, bytes: Vec<u8>) -> Result<()> {
        let optim = self.optim.clone();
        self.optim = optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| Error::Invalid(format!("optimizer state: {e:?}")))?;
        Ok(())
    }

    /// Replaces the model (used when restoring a checkpoint).
    pub fn set_model(&mut self, model: MultitaskModel) {
        self.model = Some(model);
    }

    /// Builds the device batch for a planned entry.
    pub fn batch(&self, train: &[TaskData], entry: &(usize, Vec<usize>)) -> TaskBatch {
        train[entry.0].batch(&entry.1, self.pad_id, &self.device)
    }

    /// Evaluates on dev data with dropout off and no autodiff.
    ///
    /// # Errors
    /// [`Error::Invalid`] when a read-back fails.
    pub async fn evaluate(&self, dev: &[TaskData]) -> Result<DevMetrics> {
        evaluate(
            &self.model().valid(),
            dev,
            self.cfg.eval_batch_size,
            self.pad_id,
        )
        .await
    }
}

/// Raw predictions of one task, in example order: SST class probabilities `[n·5]`, paraphrase
/// probabilities `[n]`, STS scores on the 0..5 scale `[n]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// The task.
    pub task: Task,
    /// Example ids.
    pub ids: Vec<String>,
    /// Values as described above (row-major for SST).
    pub values: Vec<f32>,
}

impl Predictions {
    /// Predicted labels: SST argmax class, paraphrase `p > 0.5` (0/1), STS score.
    pub fn labels(&self) -> Vec<f64> {
        match self.task {
            Task::Sst => self
                .values
                .chunks(5)
                .map(|p| {
                    p.iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                            if v > best.1 { (i, v) } else { best }
                        })
                        .0 as f64
                })
                .collect(),
            Task::Para => self
                .values
                .iter()
                .map(|&p| (p > 0.5) as u8 as f64)
                .collect(),
            Task::Sts => self.values.iter().map(|&v| v as f64).collect(),
        }
    }
}

/// Runs `model` (inference mode: pass `model.valid()`) over `data` in batches.
///
/// # Errors
/// [`Error::Invalid`] when a read-back fails.
pub async fn predict(
    model: &MultitaskModel,
    data: &TaskData,
    batch_size: usize,
    pad_id: u32,
) -> Result<Predictions> {
    let device = model_device(model);
    let stride = if data.task == Task::Sst { 5 } else { 1 };
    let mut values = vec![0f32; data.examples.len() * stride];
    // Batches of similar length (less padding); outputs are put back in file order.
    let mut order: Vec<usize> = (0..data.examples.len()).collect();
    order.sort_by_key(|&i| data.examples[i].len());
    for idx in order.chunks(batch_size.max(1)) {
        let batch = data.batch(idx, pad_id, &device);
        let out: Vec<f32> = match &batch {
            TaskBatch::Sst { x, .. } => read_f32(softmax(model.sst_logits(x), 1)).await?,
            TaskBatch::Pair {
                task: Task::Para,
                x,
                ..
            } => read_f32(sigmoid(model.pair_scores(Task::Para, x))).await?,
            TaskBatch::Pair { task, x, .. } => {
                read_f32(model.pair_scores(*task, x).mul_scalar(5.0)).await?
            }
        };
        for (k, &i) in idx.iter().enumerate() {
            values[i * stride..(i + 1) * stride]
                .copy_from_slice(&out[k * stride..(k + 1) * stride]);
        }
    }
    Ok(Predictions {
        task: data.task,
        ids: data.examples.iter().map(|e| e.id.clone()).collect(),
        values,
    })
}

/// The device a model's parameters live on.
pub fn model_device(model: &MultitaskModel) -> Device {
    model.bert.embeddings.word_embeddings.val().device()
}

/// Scores predictions against the gold labels of `data`.
pub fn score(p: &Predictions, data: &TaskData) -> f64 {
    let gold: Vec<f64> = data.examples.iter().map(|e| e.label as f64).collect();
    let pred = p.labels();
    match p.task {
        Task::Sts => pearson(&pred, &gold),
        _ => {
            let pr: Vec<usize> = pred.iter().map(|&x| x as usize).collect();
            let gd: Vec<usize> = gold.iter().map(|&x| x as usize).collect();
            accuracy(&pr, &gd)
        }
    }
}

/// Dev metrics of `model` (pass `model.valid()`) on each task of `dev`.
///
/// # Errors
/// [`Error::Invalid`] when a read-back fails.
pub async fn evaluate(
    model: &MultitaskModel,
    dev: &[TaskData],
    batch_size: usize,
    pad_id: u32,
) -> Result<DevMetrics> {
    let mut m = DevMetrics::default();
    for d in dev {
        let p = predict(model, d, batch_size, pad_id).await?;
        let s = score(&p, d);
        match d.task {
            Task::Sst => m.sst_acc = Some(s),
            Task::Para => m.para_acc = Some(s),
            Task::Sts => m.sts_pearson = Some(s),
        }
    }
    if let (Some(a), Some(b), Some(c)) = (m.sst_acc, m.para_acc, m.sts_pearson) {
        m.overall = Some(overall_score(a, b, c));
    }
    Ok(m)
}

/// Attaches what `cfg` trains to `bert` and adds the heads: LoRA/DoRA adapters on the target
/// modules (base weights stay frozen), or, for [`AdapterChoice::None`], every encoder weight but
/// the unused pooler made trainable (full fine-tuning). `device` must be the autodiff training device.
///
/// # Errors
/// [`Error::Adapter`] for an invalid adapter config or a target that matches nothing.
pub fn build_model(
    bert: crate::model::Bert,
    cfg: &TrainConfig,
    hidden_size: usize,
    device: &Device,
) -> Result<(MultitaskModel, crate::tasks::HeadsConfig)> {
    let bert = match cfg.adapter {
        AdapterChoice::None => {
            let mut bert = bert.set_require_grad(true);
            // The heads read pooled token states, never the pooler: it stays frozen (as in a
            // transformers full fine-tuning run of `BertModel(add_pooling_layer=False)`).
            bert.pooler = bert.pooler.map(|p| p.set_require_grad(false));
            bert
        }
        kind => {
            let mut lora = cfg.lora.clone();
            lora.use_dora = kind == AdapterChoice::Dora;
            crate::adapter::apply_adapters(bert, &lora, device)?
        }
    };
    // After the adapters: DoRA's magnitude starts from the f32 row norms.
    let bert = match cfg.precision {
        Precision::F16 => bert.into_f16(),
        Precision::F32 => bert,
    };
    let heads = crate::tasks::HeadsConfig {
        tasks: cfg.tasks.clone(),
        pooling: cfg.pooling,
        pair_encoding: cfg.pair_encoding,
        head_dropout: cfg.head_dropout,
        hidden_size,
    };
    Ok((MultitaskModel::new(bert, &heads, device), heads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_scaler_halves_on_overflow_and_doubles_after_growth_interval() {
        let mut s = LossScaler::default();
        assert_eq!(s.scale, 65536.0);
        assert!(!s.update(false));
        assert_eq!((s.scale, s.overflow_steps, s.good_steps), (32768.0, 1, 0));
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            assert!(s.update(true));
        }
        assert_eq!(s.scale, 32768.0);
        assert!(s.update(true));
        assert_eq!((s.scale, s.good_steps), (65536.0, 0));
        s.scale = 1.5;
        assert!(!s.update(false));
        assert_eq!(s.scale, LossScaler::MIN, "never below the minimum");
    }

    #[test]
    fn schedule_warms_up_and_decays() {
        assert!((lr_at(0, 100, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(55, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert!(lr_at(100, 100, 10, 1.0) == 0.0);
    }
}
