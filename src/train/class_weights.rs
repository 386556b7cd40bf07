//! Class weights for the cross-entropy of class kinds (`--class-weights`): scikit-learn's
//! `compute_class_weight("balanced")` or weights given by label name, applied as PyTorch's
//! `cross_entropy(weight=...)` applies them ([`crate::tasks::weighted_cross_entropy`]); and
//! the positive weights of multi-label kinds (`--pos-weight`), applied as
//! `BCEWithLogitsLoss(pos_weight=...)` ([`crate::tasks::bce_with_logits_labels`]).

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
    resolve_by(
        spec,
        train,
        &Use {
            flag: "--class-weights",
            takes: |k| k.takes_class_weights(),
            what: "tasks whose head is a softmax over classes (sst, and classification on your \
                   own data; multi-label tasks take --pos-weight)",
            noun: ["class", "classes"],
            balanced: |t| balanced(&class_counts(t, t.kind.class_names().len())),
        },
    )
}

/// The positive weights `spec` gives each label of the multi-label tasks of `train`
/// (`--pos-weight`, `BCEWithLogitsLoss`'s `pos_weight`); `None` for other tasks and for
/// [`ClassWeights::None`]. `balanced` is `(n − p) / p` for a label held by `p` of the `n`
/// labelled training rows (the negatives-to-positives ratio PyTorch's documentation suggests).
///
/// # Errors
/// As [`resolve`]: no multi-label task, a weight out of range, an unknown label, or a label
/// no training row holds (`balanced`).
pub fn resolve_pos_weight(
    spec: &ClassWeights,
    train: &[TaskData],
) -> Result<Vec<Option<TaskClassWeights>>> {
    resolve_by(
        spec,
        train,
        &Use {
            flag: "--pos-weight",
            takes: |k| k.takes_pos_weight(),
            what: "multi-label tasks (a sigmoid per label; single-label classes take \
                   --class-weights)",
            noun: ["label", "labels"],
            balanced: positives_balanced,
        },
    )
}

/// `targets` of the examples `indices` of `examples` with their class weights (`class`: each
/// example weighs its class's weight) and their labels' positive weights (`pos`), where given.
pub fn apply(
    targets: crate::tasks::Targets,
    class: Option<&TaskClassWeights>,
    pos: Option<&TaskClassWeights>,
    examples: &[crate::tasks::Prepared],
    indices: &[usize],
) -> crate::tasks::Targets {
    let mut targets = targets;
    if let Some(w) = class {
        let per_example = indices
            .iter()
            .map(|&i| {
                let label = examples[i].label;
                let class = if label.is_finite() { label as usize } else { 0 };
                w.weights.get(class).copied().unwrap_or(1.0) as f32
            })
            .collect();
        targets = targets.weighted(per_example);
    }
    if let Some(w) = pos {
        let w: Vec<f32> = w.weights.iter().map(|&x| x as f32).collect();
        targets = targets.with_pos_weight(&w);
    }
    targets
}

/// What one weights flag applies to.
struct Use {
    flag: &'static str,
    takes: fn(&dyn crate::tasks::Kind) -> bool,
    what: &'static str,
    /// What a weight is of, singular and plural.
    noun: [&'static str; 2],
    balanced: fn(&TaskData) -> Result<Vec<f64>>,
}

fn resolve_by(
    spec: &ClassWeights,
    train: &[TaskData],
    u: &Use,
) -> Result<Vec<Option<TaskClassWeights>>> {
    if *spec == ClassWeights::None {
        return Ok(vec![None; train.len()]);
    }
    let takes = |t: &&TaskData| (u.takes)(t.kind.as_ref());
    if !train.iter().any(|t| takes(&t)) {
        let names: Vec<String> = train.iter().map(|t| t.kind.name()).collect();
        return Err(Error::Invalid(format!(
            "{} applies to {}, not to {}",
            u.flag,
            u.what,
            names.join(", ")
        )));
    }
    if let ClassWeights::Given(map) = spec {
        let classes: Vec<String> = train
            .iter()
            .filter(takes)
            .flat_map(|t| t.kind.class_names())
            .collect();
        for (label, &w) in map {
            if !(MIN_WEIGHT..=MAX_WEIGHT).contains(&w) {
                return Err(Error::Invalid(format!(
                    "{}: the weight of `{label}` is {w}; weights must be in \
                     [{MIN_WEIGHT:e}, {MAX_WEIGHT:e}] (the loss is computed in f32)",
                    u.flag
                )));
            }
            if !classes.contains(label) {
                return Err(Error::Invalid(format!(
                    "{} names `{label}`, which is not a {} (the {}: {})",
                    u.flag,
                    u.noun[0],
                    u.noun[1],
                    classes.join(", ")
                )));
            }
        }
    }
    train
        .iter()
        .map(|t| {
            if !takes(&t) {
                return Ok(None);
            }
            let labels = t.kind.class_names();
            let weights = match spec {
                ClassWeights::None => return Ok(None),
                ClassWeights::Balanced => (u.balanced)(t)?,
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

/// `(n − p) / p` of each label of a multi-label task: `p` labelled training rows hold it, `n`
/// are labelled.
///
/// # Errors
/// [`Error::Invalid`] naming a label no row holds (its weight would be infinite).
fn positives_balanced(t: &TaskData) -> Result<Vec<f64>> {
    let names = t.kind.class_names();
    let mut pos = vec![0usize; names.len()];
    let mut n = 0usize;
    for e in t.examples.iter().filter(|e| e.label.is_finite()) {
        n += 1;
        for &l in &e.label_ids {
            if let Some(p) = pos.get_mut(l as usize) {
                *p += 1;
            }
        }
    }
    names
        .iter()
        .zip(pos)
        .map(|(name, p)| {
            if p == 0 {
                Err(Error::Invalid(format!(
                    "--pos-weight balanced: no training row has the label `{name}`"
                )))
            } else {
                Ok((n - p) as f64 / p as f64)
            }
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
