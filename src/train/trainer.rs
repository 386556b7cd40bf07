//! The training state ([`Trainer`]): one optimiser step (forward, loss, backward, clipping,
//! AdamW at the scheduled learning rate, f16 loss scaling), the epoch's batch plan, and the
//! model the run trains ([`build_model`]).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::class_weights::TaskClassWeights;
use super::config::{Precision, TrainConfig};
use super::evaluate::{DevMetrics, evaluate};
use crate::error::{Error, Result};
use crate::kernels::read_f32;
use crate::tasks::{MultitaskModel, TaskBatch, TaskData};

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

/// Moves the gradients of LoRA+'s fast group (PEFT's `create_loraplus_optimizer`: every
/// `lora_B` and every 1-D parameter: biases, LayerNorm, DoRA's magnitude) out of `grads` into
/// `fast`.
struct LoraPlusSplit<'a> {
    grads: &'a mut GradientsParams,
    fast: GradientsParams,
    path: Vec<String>,
}

impl ModuleVisitor for LoraPlusSplit<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let is_b = self.path.last().is_some_and(|n| n == "lora_b");
        if (is_b || D == 1)
            && let Some(g) = self.grads.remove::<D>(p.id)
        {
            self.fast.register(p.id, g);
        }
    }
}

/// The squared gradient norms of a step's parameters, with their names.
struct GradNorms {
    /// Module paths of the parameters with gradients.
    names: Vec<String>,
    /// `Σ g²` of each, `[names.len()]`; `None` without gradients.
    squares: Option<Tensor<1>>,
}

impl GradNorms {
    fn of(model: &MultitaskModel, grads: &GradientsParams) -> Self {
        let mut sq = SquaredNorms {
            grads,
            path: Vec::new(),
            names: Vec::new(),
            parts: Vec::new(),
        };
        model.visit(&mut sq);
        let squares = (!sq.parts.is_empty()).then(|| Tensor::cat(sq.parts, 0));
        GradNorms {
            names: sq.names,
            squares,
        }
    }

    /// The global norm of the gradients of a loss scaled by `scale`, unscaled.
    async fn total(&self, scale: f64) -> Result<f64> {
        match &self.squares {
            None => Ok(0.0),
            Some(s) => Ok(read_scalar(s.clone().sum()).await?.sqrt() / scale),
        }
    }

    /// The error of a non-finite gradient norm at 1-based `step`, naming the parameters whose
    /// gradients are not finite (read back only on this path).
    async fn non_finite_error(self, step: usize, grad_norm: f64) -> Error {
        let values = match self.squares {
            Some(s) => match read_f32(s).await {
                Ok(v) => v,
                Err(e) => return e,
            },
            None => Vec::new(),
        };
        let bad: Vec<&str> = values
            .iter()
            .zip(&self.names)
            .filter(|(v, _)| !v.is_finite())
            .map(|(_, n)| n.as_str())
            .collect();
        let shown = bad.iter().take(4).copied().collect::<Vec<_>>().join(", ");
        let more = match bad.len().saturating_sub(4) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        Error::NonFinite {
            step,
            what: format!(
                "gradient norm ({grad_norm}; non-finite in {} of {} parameters: {shown}{more})",
                bad.len(),
                self.names.len(),
            ),
            last_checkpoint_step: None,
        }
    }
}

/// Reads a scalar tensor back without blocking the event loop.
async fn read_scalar(t: Tensor<1>) -> Result<f64> {
    let v = read_f32(t).await?;
    v.first()
        .map(|&x| x as f64)
        .ok_or_else(|| Error::ReadBack("an empty tensor came back".into()))
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
    /// Class weights by training task (`--class-weights`); empty or `None` for none.
    class_weights: Vec<Option<TaskClassWeights>>,
    /// Positive weights by training task (`--pos-weight`, multi-label); empty or `None` for
    /// none.
    pos_weight: Vec<Option<TaskClassWeights>>,
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
            class_weights: Vec::new(),
            pos_weight: Vec::new(),
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

    /// One optimiser step on `batch`: forward, loss, backward, global-norm clipping, AdamW with
    /// the scheduled learning rate. In the f16 mode the loss is scaled before backward and the
    /// gradients unscaled before clipping; an overflow skips the update ([`LossScaler`],
    /// [`StepStats::overflow`]) but still advances the step.
    ///
    /// # Errors
    /// [`Error::NonFinite`] when the loss or (outside loss scaling) the gradient norm is not
    /// finite, naming the step and the parameters; a failed read-back.
    pub async fn step(&mut self, batch: &TaskBatch) -> Result<StepStats> {
        self.step_accumulated(std::slice::from_ref(batch)).await
    }

    /// One optimiser step on the gradients of `batches` added up (`--gradient-accumulation-steps`):
    /// each micro-batch's mean loss is weighted by its share of all their examples (of all
    /// their class weights, with `--class-weights`) before its backward pass, so the update is
    /// that of one batch of all of them (transformers scales by the number of items the same
    /// way). Each micro-batch draws its own dropout masks.
    /// Otherwise as [`step`](Self::step), which is this with one batch.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    ///
    /// # Panics
    /// When `batches` is empty.
    pub async fn step_accumulated(&mut self, batches: &[TaskBatch]) -> Result<StepStats> {
        assert!(!batches.is_empty(), "an optimiser step needs a batch");
        let examples: usize = batches.iter().map(TaskBatch::examples).sum();
        let mass: f64 = batches.iter().map(|b| b.targets.mass()).sum();
        let scale = self.scaler.map_or(1.0, |s| s.scale);
        let mut loss = 0.0;
        // One batch (the usual step) keeps its gradients as they come; more are added up.
        let mut acc: Option<GradientsAccumulator<MultitaskModel>> = None;
        let mut single = None;
        for (j, batch) in batches.iter().enumerate() {
            let weight = batch.targets.mass() / mass;
            let (l, grads) = self.backward(batch, j, weight * scale).await?;
            loss += weight * l;
            if batches.len() == 1 {
                single = Some(grads);
            } else {
                acc.get_or_insert_with(GradientsAccumulator::new)
                    .accumulate(self.model(), grads);
            }
        }
        let mut grads = match acc {
            Some(mut a) => a.grads(),
            None => single.unwrap_or_else(GradientsParams::new),
        };
        let norms = GradNorms::of(self.model(), &grads);
        let grad_norm = norms.total(scale).await?;
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
        if !finite {
            return Err(norms.non_finite_error(self.step + 1, grad_norm).await);
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
        let mut model = self
            .model
            .take()
            .expect("the model is present between steps");
        if let Some(ratio) = self.cfg.controls.loraplus_lr_ratio {
            let mut split = LoraPlusSplit {
                grads: &mut grads,
                fast: GradientsParams::new(),
                path: Vec::new(),
            };
            model.visit(&mut split);
            let fast = split.fast;
            model = self.optim.step(lr * ratio, model, fast);
        }
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

    /// Forward and backward of micro-batch `j` of this step with the loss multiplied by
    /// `factor` (its weight times the f16 loss scale): the unmultiplied loss and the gradients.
    async fn backward(
        &mut self,
        batch: &TaskBatch,
        j: usize,
        factor: f64,
    ) -> Result<(f64, GradientsParams)> {
        // Dropout masks come from a generator reseeded at every step (and micro-batch), so a
        // resumed run draws exactly the masks the uninterrupted run drew.
        let mut seed = step_seed(self.cfg.seed, self.step);
        if j > 0 {
            seed = step_seed(seed, j);
        }
        self.device.seed(seed);
        crate::kernels::mask::seed_dropout(seed);
        let mut loss = self.model().loss(batch);
        if self.cfg.debug_nan_at_step == Some(self.step + 1) {
            loss = loss.mul_scalar(f32::NAN);
        }
        let grads = if factor == 1.0 {
            loss.backward()
        } else {
            loss.clone().mul_scalar(factor).backward()
        };
        let loss = read_scalar(loss.detach()).await?;
        if !loss.is_finite() {
            return Err(Error::NonFinite {
                step: self.step + 1,
                what: format!("loss ({loss})"),
                last_checkpoint_step: None,
            });
        }
        Ok((loss, GradientsParams::from_grads(grads, self.model())))
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
    ///
    /// # Panics
    /// When `entry` does not come from [`plan_epoch`](Self::plan_epoch) of the same `train`.
    pub fn batch(&self, train: &[TaskData], entry: &(usize, Vec<usize>)) -> TaskBatch {
        let (task, indices) = entry;
        let mut batch = train[*task].batch(indices, self.pad_id, &self.device);
        batch.targets = super::class_weights::apply(
            batch.targets,
            self.class_weights.get(*task).and_then(Option::as_ref),
            self.pos_weight.get(*task).and_then(Option::as_ref),
            &train[*task].examples,
            indices,
        );
        batch
    }

    /// Sets the positive weights of the multi-label training tasks (by index into the
    /// training data, as [`crate::train::class_weights::resolve_pos_weight`] gives them),
    /// applied to every batch built by [`batch`](Self::batch).
    pub fn set_pos_weight(&mut self, weights: Vec<Option<TaskClassWeights>>) {
        self.pos_weight = weights;
    }

    /// Sets the class weights of the training tasks (by index into the training data, as
    /// [`crate::train::class_weights::resolve`] gives them), applied to every batch built by
    /// [`batch`](Self::batch).
    pub fn set_class_weights(&mut self, weights: Vec<Option<TaskClassWeights>>) {
        self.class_weights = weights;
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
            self.cfg.controls.tune_thresholds,
        )
        .await
    }
}

/// Attaches what `cfg` trains to `bert` and adds the heads: LoRA/DoRA adapters on the target
/// modules (base weights stay frozen), or, without an adapter, every encoder weight but the
/// unused pooler made trainable (full fine-tuning). `device` must be the autodiff training device.
///
/// # Errors
/// [`Error::Adapter`] for an invalid adapter config or a target that matches nothing;
/// [`Error::Invalid`] for an unresolved own-data task or a `--matryoshka-dims` dimension larger
/// than `hidden_size`.
pub fn build_model(
    bert: crate::model::Bert,
    cfg: &TrainConfig,
    hidden_size: usize,
    device: &Device,
) -> Result<(MultitaskModel, crate::tasks::HeadsConfig)> {
    // Adapters and heads are drawn on the host from the run's seed: the same start on every
    // device (see `crate::model::init`).
    let mut rng = crate::model::init::InitRng::new(cfg.seed);
    let bert = match &cfg.adapter {
        None => {
            let mut bert = bert.set_require_grad(true);
            // The heads read pooled token states, not the pooler (unless `--pooling pooler`):
            // it stays frozen (as in a transformers full fine-tuning run of
            // `BertModel(add_pooling_layer=False)`).
            if cfg.pooling != crate::tasks::Pooling::Pooler {
                bert.pooler = bert.pooler.map(|p| p.set_require_grad(false));
            }
            bert
        }
        Some(lora) => crate::adapter::apply_adapters(bert, lora, &mut rng, device)?,
    };
    // After the adapters: DoRA's magnitude starts from the f32 row norms.
    let bert = match cfg.precision {
        Precision::F16 => bert.into_f16(),
        Precision::F32 => bert,
    };
    crate::tasks::check_pooling(&bert, cfg.pooling)?;
    if cfg.tasks.contains(&crate::tasks::Task::Own) && cfg.own.is_none() {
        return Err(Error::Invalid(
            "the own-data task is not resolved (read its data first)".into(),
        ));
    }
    if let Some(crate::tasks::own::TaskKind::Embedding { matryoshka, .. }) =
        cfg.own.as_ref().map(|o| &o.kind)
        && let Some(m) = matryoshka.iter().find(|m| m.dim > hidden_size)
    {
        return Err(Error::Invalid(format!(
            "--matryoshka-dims: {} is larger than the model's embedding ({hidden_size} \
             dimensions); give dimensions up to {hidden_size}",
            m.dim
        )));
    }
    let heads = crate::tasks::HeadsConfig {
        tasks: cfg.tasks.clone(),
        pooling: cfg.pooling,
        pair_encoding: cfg.pair_encoding,
        head_dropout: cfg.head_dropout,
        hidden_size,
        own: cfg.own.clone(),
    };
    Ok((MultitaskModel::new(bert, &heads, &mut rng, device)?, heads))
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
