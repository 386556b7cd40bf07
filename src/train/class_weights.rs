//! Class weights for the cross-entropy of class kinds (`--class-weights`): scikit-learn's
//! `compute_class_weight("balanced")` or weights given by label name, applied as PyTorch's
//! `cross_entropy(weight=...)` applies them ([`crate::tasks::weighted_cross_entropy`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tasks::TaskData;

/// Which class weights a run uses (`--class-weights`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeights {
    /// Every class weighs 1 (the plain mean cross-entropy).
    #[default]
    None,
    /// `n / (k · count(c))` for `n` training examples of `k` classes (scikit-learn's
    /// `compute_class_weight("balanced")`): every class weighs as much in the loss.
    Balanced,
    /// Weights by label name; a class not named weighs 1 (as scikit-learn's dict form).
    Given(BTreeMap<String, f64>),
}

/// The smallest class weight `--class-weights` takes.
pub const MIN_WEIGHT: f64 = 1e-6;
/// The largest class weight `--class-weights` takes.
pub const MAX_WEIGHT: f64 = 1e6;

/// The class weights one task trains with, in class order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskClassWeights {
    /// The task's name.
    pub task: String,
    /// Its class names, in output order.
    pub labels: Vec<String>,
    /// The weight of each class.
    pub weights: Vec<f64>,
}

/// scikit-learn's `compute_class_weight("balanced")`: `n / (k · count)` for each of the `k`
/// classes' counts (`n` their sum).
///
/// # Errors
/// [`Error::Invalid`] naming (by index) a class without examples, whose weight would be
/// infinite (scikit-learn refuses it too).
pub fn balanced(counts: &[usize]) -> Result<Vec<f64>> {
    let n: usize = counts.iter().sum();
    let k = counts.len() as f64;
    counts
        .iter()
        .enumerate()
        .map(|(c, &m)| {
            if m == 0 {
                Err(Error::Invalid(format!(
                    "--class-weights balanced: class {c} has no training examples"
                )))
            } else {
                Ok(n as f64 / (k * m as f64))
            }
        })
        .collect()
}

/// The weights `spec` gives each task of `train`, by class, for the tasks whose kind takes
/// class weights; `None` for the others and for [`ClassWeights::None`].
///
/// # Errors
/// [`Error::Invalid`] when `spec` asks for weights and no task's kind takes them (naming the
/// kinds), a given weight is outside [[`MIN_WEIGHT`], [`MAX_WEIGHT`]], a given label is not a class of any
/// task (naming the classes), or a class has no training examples (`balanced`).
pub fn resolve(spec: &ClassWeights, train: &[TaskData]) -> Result<Vec<Option<TaskClassWeights>>> {
    if *spec == ClassWeights::None {
        return Ok(vec![None; train.len()]);
    }
    if !train.iter().any(|t| t.kind.takes_class_weights()) {
        let names: Vec<String> = train.iter().map(|t| t.kind.name()).collect();
        return Err(Error::Invalid(format!(
            "--class-weights applies to tasks whose head is a softmax over classes (sst, and \
             classification on your own data), not to {}",
            names.join(", ")
        )));
    }
    if let ClassWeights::Given(map) = spec {
        for (label, &w) in map {
            if !(MIN_WEIGHT..=MAX_WEIGHT).contains(&w) {
                return Err(Error::Invalid(format!(
                    "--class-weights: the weight of `{label}` is {w}; weights must be in \
                     [{MIN_WEIGHT:e}, {MAX_WEIGHT:e}] (the loss is computed in f32)"
                )));
            }
            let known = train
                .iter()
                .filter(|t| t.kind.takes_class_weights())
                .any(|t| t.kind.class_names().contains(label));
            if !known {
                let classes: Vec<String> = train
                    .iter()
                    .filter(|t| t.kind.takes_class_weights())
                    .flat_map(|t| t.kind.class_names())
                    .collect();
                return Err(Error::Invalid(format!(
                    "--class-weights names `{label}`, which is not a class (the classes: {})",
                    classes.join(", ")
                )));
            }
        }
    }
    train
        .iter()
        .map(|t| {
            if !t.kind.takes_class_weights() {
                return Ok(None);
            }
            let labels = t.kind.class_names();
            let weights = match spec {
                ClassWeights::None => return Ok(None),
                ClassWeights::Balanced => balanced(&class_counts(t, labels.len()))?,
                ClassWeights::Given(map) => labels
                    .iter()
                    .map(|l| map.get(l).copied().unwrap_or(1.0))
                    .collect(),
            };
            Ok(Some(TaskClassWeights {
                task: t.kind.name(),
                labels,
                weights,
            }))
        })
        .collect()
}

/// Training examples per class id `0..k` (examples without a label are not counted).
fn class_counts(t: &TaskData, k: usize) -> Vec<usize> {
    let mut counts = vec![0; k];
    for e in &t.examples {
        if e.label.is_finite() && (e.label as usize) < k {
            counts[e.label as usize] += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_is_n_over_k_times_count() {
        let w = balanced(&[6, 2, 4]).unwrap();
        assert_eq!(w, vec![12.0 / 18.0, 12.0 / 6.0, 12.0 / 12.0]);
        assert!(balanced(&[3, 0]).is_err());
    }
}
