//! The training controls' flags (`--eval-steps`, `--early-stopping-patience`, ...), named as
//! transformers' `TrainingArguments` and callbacks name them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::train::Controls;
use crate::train::class_weights::ClassWeights;

/// When to evaluate and when to stop (flattened into `lorabert train`'s flags).
#[derive(Args, Debug, Clone, Default)]
pub struct ControlArgs {
    /// Evaluate on the validation data also every N optimiser steps (besides every epoch end),
    /// keeping the best evaluation's checkpoint as best/.
    #[arg(long, value_name = "N")]
    eval_steps: Option<usize>,
    /// Stop after P evaluations in a row without improving the best-model metric (as
    /// transformers' EarlyStoppingCallback); best/ keeps the best checkpoint.
    #[arg(long, value_name = "P")]
    early_stopping_patience: Option<usize>,
    /// The improvement over the best so far that resets the patience (in the metric's units).
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "T",
        allow_negative_numbers = true
    )]
    early_stopping_threshold: f64,
    /// Write a training line (loss, learning rate, gradient norm, examples/s) to
    /// OUT/metrics.jsonl every N optimiser steps (evaluations are always written).
    #[arg(long, default_value_t = crate::train::log::DEFAULT_LOGGING_STEPS, value_name = "N")]
    logging_steps: usize,
    /// Add up the gradients of K batches of --batch-size before each optimiser step (the
    /// same update as one batch of K x --batch-size, in the memory of one).
    #[arg(long, default_value_t = 1, value_name = "K")]
    gradient_accumulation_steps: usize,
    /// LoRA+: lora_B (and biases, DoRA magnitudes) learn at R x --lr (PEFT's
    /// create_loraplus_optimizer; the LoRA+ paper suggests 16).
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    loraplus_lr_ratio: Option<f64>,
    /// Weigh each class in the cross-entropy: `balanced` (n / (k x count), as scikit-learn),
    /// `none`, weights by label name (`neg=1,pos=4.5`; unnamed classes weigh 1), or a JSON
    /// file of them (`{"neg": 1, "pos": 4.5}`).
    #[arg(long, value_name = "SPEC")]
    class_weights: Option<String>,
    /// Multi-label: weigh each label's positive term in the binary cross-entropy
    /// (BCEWithLogitsLoss's pos_weight): `balanced` (negatives / positives of each label in
    /// the training rows), `none`, weights by label name (`grief=20,pride=10`; unnamed labels
    /// weigh 1), or a JSON file of them.
    #[arg(long, value_name = "SPEC")]
    pos_weight: Option<String>,
    /// Multi-label: tune each label's threshold on the validation data at every evaluation
    /// (the F1-maximising one of 0.05, 0.10, ..., 0.95); the best checkpoint keeps them and
    /// `predict` uses them.
    #[arg(long)]
    tune_thresholds: bool,
    /// Also report the metrics.jsonl lines to `tensorboard` (event files in OUT/tb/ for
    /// `tensorboard --logdir`), or `none`.
    #[arg(long, value_delimiter = ',', value_name = "TO")]
    report_to: Vec<String>,
}

impl ControlArgs {
    /// The controls the flags describe (ranges are checked by `TrainConfig::validate`).
    ///
    /// # Errors
    /// An unreadable or malformed `--class-weights` file or list.
    pub fn controls(&self) -> Result<Controls> {
        Ok(Controls {
            eval_steps: self.eval_steps,
            early_stopping_patience: self.early_stopping_patience,
            early_stopping_threshold: self.early_stopping_threshold,
            logging_steps: self.logging_steps,
            gradient_accumulation_steps: self.gradient_accumulation_steps,
            loraplus_lr_ratio: self.loraplus_lr_ratio,
            report_to: report_to(&self.report_to)?,
            class_weights: match &self.class_weights {
                None => ClassWeights::None,
                Some(spec) => weights("--class-weights", spec)?,
            },
            pos_weight: match &self.pos_weight {
                None => ClassWeights::None,
                Some(spec) => weights("--pos-weight", spec)?,
            },
            tune_thresholds: self.tune_thresholds,
        })
    }
}

/// `--report-to`: the integrations named (`none` alone: none).
///
/// # Errors
/// `none` together with an integration.
fn report_to(given: &[String]) -> Result<Vec<String>> {
    let mut to: Vec<String> = Vec::new();
    for r in given.iter().map(|r| r.trim()) {
        if !r.is_empty() && r != "none" && !to.iter().any(|t| t == r) {
            to.push(r.to_string());
        }
    }
    if !to.is_empty() && given.iter().any(|r| r.trim() == "none") {
        bail!(
            "--report-to: `none` with {}: give one or the other",
            to.join(",")
        );
    }
    Ok(to)
}

/// The largest `--class-weights` file read (a weights file is a few lines).
const MAX_FILE: u64 = 1 << 20;

/// `--class-weights SPEC` or `--pos-weight SPEC` (`flag`): `balanced`, `none`,
/// `label=weight,...`, or a JSON file of a `{"label": weight}` object.
///
/// # Errors
/// A list entry without `=` or with a weight that is not a number; an unreadable file or one
/// that is not such an object (naming the file).
fn weights(flag: &str, spec: &str) -> Result<ClassWeights> {
    match spec {
        "balanced" => return Ok(ClassWeights::Balanced),
        "none" => return Ok(ClassWeights::None),
        _ => {}
    }
    let path = Path::new(spec);
    if !spec.contains('=') || path.is_file() {
        let file = std::fs::File::open(path).with_context(|| {
            format!(
                "{flag} {spec}: not `balanced`, `none` or `label=weight,...`, and no \
                 such file"
            )
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {spec}"))?;
        if bytes.len() as u64 > MAX_FILE {
            bail!("{flag} {spec}: the file is over {MAX_FILE} bytes: not a weights file");
        }
        let json = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let map: BTreeMap<String, f64> = serde_json::from_slice(json).with_context(|| {
            format!(
                "{flag} {spec}: the file must hold a JSON object of weights by label, \
                 e.g. {{\"neg\": 1, \"pos\": 4.5}}"
            )
        })?;
        return Ok(ClassWeights::Given(map));
    }
    let mut map = BTreeMap::new();
    for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
        let Some((label, w)) = item.rsplit_once('=') else {
            bail!(
                "{flag}: `{item}` is not `label=weight` (a label holding `,` or `=` \
                 goes in a JSON file: {{\"label\": weight}})"
            );
        };
        let w: f64 = w.trim().parse().map_err(|_| {
            anyhow::anyhow!("{flag}: the weight of `{label}` (`{w}`) is not a number")
        })?;
        if map.insert(label.trim().to_string(), w).is_some() {
            bail!(
                "{flag}: `{}` is given twice (a label holding `,` or `=` goes in a \
                 JSON file: {{\"label\": weight}})",
                label.trim()
            );
        }
    }
    Ok(ClassWeights::Given(map))
}
