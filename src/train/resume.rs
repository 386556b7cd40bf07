//! Resume checkpoints: everything needed to continue a run exactly where it stopped (trainable
//! parameters with their ids, AdamW state, schedule position, the epoch's running sums and the
//! results so far). The data order is a function of the seed and epoch and the dropout draws a
//! function of the seed and step, so restoring these gives bit-identical training on the CPU.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::Trainer;
use super::artifacts::Files;
use super::results::RunResults;
use crate::error::{Error, Result};
use crate::kernels::read_f32;
use crate::model::weights::Checkpoint;
use crate::model::weights::f32_safetensors;

/// Version of the resume-checkpoint layout.
pub const RESUME_VERSION: u32 = 1;

/// File names in a resume folder.
pub mod names {
    /// Schedule position, running sums, results so far, parameter ids.
    pub const STATE: &str = "state.json";
    /// Trainable parameters, `p0`, `p1`, ... in module order.
    pub const PARAMS: &str = "trainable.safetensors";
    /// AdamW state (burnpack).
    pub const OPTIMIZER: &str = "optimizer.bpk";
}

/// Running sums of the epoch in progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochProgress {
    /// Sum of step losses so far in this epoch.
    pub loss_sum: f64,
    /// Steps so far in this epoch.
    pub steps: usize,
    /// Examples so far in this epoch.
    pub examples: usize,
    /// Training seconds so far in this epoch.
    pub seconds: f64,
    /// Loss-curve window sum.
    pub window_sum: f64,
    /// Loss-curve window count.
    pub window_n: usize,
    /// Batches skipped for non-finite values so far in the run.
    pub skipped_batches: usize,
    /// The open window of `metrics.jsonl`'s training lines (it spans epoch ends).
    #[serde(default)]
    pub log: super::log::LogWindow,
}

/// `state.json` of a resume folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    /// [`RESUME_VERSION`].
    pub version: u32,
    /// Optimiser steps completed.
    pub step: usize,
    /// Planned steps.
    pub total_steps: usize,
    /// Ids of the trainable parameters, in module order (the optimiser state is keyed by them).
    pub param_ids: Vec<u64>,
    /// Running sums of the epoch in progress.
    pub progress: EpochProgress,
    /// Results so far (configuration included).
    pub results: RunResults,
}

impl ResumeState {
    /// Parses a `state.json`, upgrading the results record inside it from older layouts
    /// ([`RunResults::from_value`]).
    ///
    /// # Errors
    /// [`Error::Config`] naming `source` for malformed JSON or content.
    pub fn from_json(bytes: &[u8], source: &str) -> Result<Self> {
        let mut v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::config(source, format!("invalid JSON: {e}")))?;
        if let Some(o) = v.as_object_mut()
            && let Some(r) = o.remove("results")
        {
            o.insert(
                "results".into(),
                serde_json::to_value(RunResults::from_value(r, source)?)
                    .map_err(|e| Error::config(source, e))?,
            );
        }
        serde_json::from_value(v).map_err(|e| Error::config(source, format!("invalid: {e}")))
    }
}

struct Collect(Vec<(u64, Vec<usize>, Tensor<1>)>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let v = p.val();
        if v.is_require_grad() {
            let shape = v.dims().to_vec();
            let n: usize = shape.iter().product();
            self.0.push((p.id.val(), shape, v.detach().reshape([n])));
        }
    }
}

/// The files of a resume checkpoint of `trainer`.
///
/// # Errors
/// [`Error::Invalid`] when a read-back or serialisation fails.
pub async fn resume_files(
    trainer: &Trainer,
    progress: &EpochProgress,
    results: &RunResults,
) -> Result<Files> {
    let mut c = Collect(Vec::new());
    trainer.model().visit(&mut c);
    let mut tensors = BTreeMap::new();
    let mut ids = Vec::new();
    for (i, (id, shape, t)) in c.0.into_iter().enumerate() {
        ids.push(id);
        tensors.insert(format!("p{i:05}"), (shape, read_f32(t).await?));
    }
    let state = ResumeState {
        version: RESUME_VERSION,
        step: trainer.step,
        total_steps: trainer.total_steps,
        param_ids: ids,
        progress: progress.clone(),
        results: results.clone(),
    };
    Ok(vec![
        (
            names::STATE,
            serde_json::to_vec_pretty(&state).map_err(|e| Error::Invalid(e.to_string()))?,
        ),
        (names::PARAMS, f32_safetensors(&tensors)?),
        (names::OPTIMIZER, trainer.optimizer_bytes()?),
    ])
}

struct Restore<'a> {
    ck: &'a Checkpoint<'a>,
    ids: &'a [u64],
    next: usize,
    err: Option<Error>,
}

impl ModuleMapper for Restore<'_> {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let v = p.val();
        if !v.is_require_grad() || self.err.is_some() {
            return p;
        }
        let i = self.next;
        self.next += 1;
        let Some(&id) = self.ids.get(i) else {
            self.err = Some(Error::Invalid(format!(
                "resume checkpoint has {} trainable parameters, the model more",
                self.ids.len()
            )));
            return p;
        };
        let shape = v.dims().to_vec();
        match self.ck.f32_values_raw(&format!("p{i:05}"), &shape) {
            Ok(vals) => {
                let t = Tensor::<D>::from_data(TensorData::new(vals, shape), &v.device())
                    .set_require_grad(true);
                Param::initialized(ParamId::from(id), t)
            }
            Err(e) => {
                self.err = Some(e);
                p
            }
        }
    }
}

/// Restores a trainer built with the same configuration from a resume folder's files
/// (`get(name)` returns a file's bytes). Returns the running sums and the results so far.
///
/// # Errors
/// [`Error::Config`] for a missing or invalid `state.json`, or one whose configuration differs
/// from the trainer's; parameter and optimiser errors naming the file.
pub fn restore_training(
    trainer: &mut Trainer,
    get: &mut dyn FnMut(&str) -> Result<Option<Vec<u8>>>,
) -> Result<(EpochProgress, RunResults)> {
    let missing = |n: &str| Error::config(n, "missing from the resume folder");
    let state = ResumeState::from_json(
        &get(names::STATE)?.ok_or_else(|| missing(names::STATE))?,
        names::STATE,
    )?;
    if state.version != RESUME_VERSION {
        return Err(Error::config(
            names::STATE,
            format!("version {} is not {RESUME_VERSION}", state.version),
        ));
    }
    if state.results.config != trainer.cfg {
        return Err(Error::config(
            names::STATE,
            "the checkpoint was made with another configuration",
        ));
    }
    let params = get(names::PARAMS)?.ok_or_else(|| missing(names::PARAMS))?;
    let ck = Checkpoint::parse(&params, names::PARAMS, &[], "")?;
    let mut r = Restore {
        ck: &ck,
        ids: &state.param_ids,
        next: 0,
        err: None,
    };
    let model = trainer.model().clone().map(&mut r);
    if let Some(e) = r.err {
        return Err(e);
    }
    if r.next != state.param_ids.len() {
        return Err(Error::config(
            names::STATE,
            format!(
                "{} trainable parameters saved, the model has {}",
                state.param_ids.len(),
                r.next
            ),
        ));
    }
    trainer.set_model(model);
    trainer
        .load_optimizer_bytes(get(names::OPTIMIZER)?.ok_or_else(|| missing(names::OPTIMIZER))?)?;
    trainer.step = state.step;
    if state.results.loss_scaler.is_some() {
        trainer.scaler = state.results.loss_scaler;
    }
    trainer.total_steps = state.total_steps;
    Ok((state.progress, state.results))
}
