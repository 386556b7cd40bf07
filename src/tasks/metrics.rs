//! Metrics of the tasks, computed on host values: accuracy, F1, Matthews correlation for
//! classification; Pearson, Spearman, MSE for regression; the minBERT overall score. Each
//! matches the scikit-learn / SciPy function it names (golden values in
//! `tests/golden/metrics.json`, made by `tools/make_golden.py --only metrics`).

/// Fraction of `pred[i] == gold[i]`; 0 for empty input.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    if pred.is_empty() {
        return 0.0;
    }
    let ok = pred.iter().zip(gold).filter(|(p, g)| p == g).count();
    ok as f64 / pred.len() as f64
}

/// Relative spread below which values count as constant: f32 rounding noise (the cosine of
/// identical embeddings is 1 ± 1e-7) is not variation.
pub const CONSTANT_TOLERANCE: f64 = 1e-6;

/// Whether `x` is constant up to rounding: its standard deviation is at most
/// [`CONSTANT_TOLERANCE`] of its largest magnitude (or exactly 0). SciPy calls such input
/// constant (`ConstantInputWarning`) and its correlations undefined.
pub fn is_constant(x: &[f64]) -> bool {
    if x.len() < 2 {
        return true;
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let sd = (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    sd == 0.0 || sd <= CONSTANT_TOLERANCE * scale
}

/// Pearson correlation coefficient of `x` and `y` (the STS-B metric, as `scipy.stats.pearsonr`);
/// 0 when either is constant ([`is_constant`]: undefined, where SciPy gives NaN) or has fewer
/// than two points.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 || is_constant(&x[..n]) || is_constant(&y[..n]) {
        return 0.0;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    sxy / (sxx.sqrt() * syy.sqrt())
}

/// The confusion counts of `classes` classes: `m[gold][pred]`.
fn confusion(pred: &[usize], gold: &[usize], classes: usize) -> Vec<Vec<f64>> {
    let mut m = vec![vec![0.0; classes]; classes];
    for (&p, &g) in pred.iter().zip(gold) {
        if p < classes && g < classes {
            m[g][p] += 1.0;
        }
    }
    m
}

/// F1 of class `c` (`sklearn.metrics.f1_score(..., labels=[c], average=None)`, 0 where
/// precision and recall are undefined, as its `zero_division=0`).
fn f1_of(m: &[Vec<f64>], c: usize) -> f64 {
    let tp = m[c][c];
    let predicted: f64 = m.iter().map(|row| row[c]).sum();
    let actual: f64 = m[c].iter().sum();
    if predicted + actual == 0.0 {
        return 0.0;
    }
    2.0 * tp / (predicted + actual)
}

/// F1 of the positive class (class 1) of a binary task (`sklearn.metrics.f1_score`, the
/// default `average="binary"`).
pub fn f1_binary(pred: &[usize], gold: &[usize]) -> f64 {
    f1_of(&confusion(pred, gold, 2), 1)
}

/// Macro-averaged F1 (`sklearn.metrics.f1_score(average="macro", zero_division=0)`): the mean
/// F1 over the classes among `0..classes` that occur in `gold` or in `pred`, as scikit-learn
/// averages over the labels present in either. A training class absent from both (no
/// validation row, never predicted) is left out rather than counted as F1 0; 0 when no class
/// occurs.
pub fn f1_macro(pred: &[usize], gold: &[usize], classes: usize) -> f64 {
    let m = confusion(pred, gold, classes);
    let present: Vec<usize> = (0..classes)
        .filter(|&c| m[c].iter().sum::<f64>() + m.iter().map(|r| r[c]).sum::<f64>() > 0.0)
        .collect();
    if present.is_empty() {
        return 0.0;
    }
    present.iter().map(|&c| f1_of(&m, c)).sum::<f64>() / present.len() as f64
}

/// Matthews correlation coefficient, multiclass (`sklearn.metrics.matthews_corrcoef`); 0 when
/// it is undefined (one class predicted or present).
pub fn matthews(pred: &[usize], gold: &[usize], classes: usize) -> f64 {
    let m = confusion(pred, gold, classes);
    let n: f64 = m.iter().flatten().sum();
    let correct: f64 = (0..classes).map(|c| m[c][c]).sum();
    let t: Vec<f64> = m.iter().map(|row| row.iter().sum()).collect();
    let p: Vec<f64> = (0..classes).map(|c| m.iter().map(|r| r[c]).sum()).collect();
    let tp: f64 = t.iter().zip(&p).map(|(a, b)| a * b).sum();
    let cov_ytyp = correct * n - tp;
    let cov_ypyp = n * n - p.iter().map(|x| x * x).sum::<f64>();
    let cov_ytyt = n * n - t.iter().map(|x| x * x).sum::<f64>();
    if cov_ypyp == 0.0 || cov_ytyt == 0.0 {
        return 0.0;
    }
    cov_ytyp / (cov_ytyt * cov_ypyp).sqrt()
}

/// Ranks of `x` from 1, ties given their average rank (`scipy.stats.rankdata`).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman rank correlation (`scipy.stats.spearmanr`): Pearson of the average ranks; 0 when
/// either input is constant ([`is_constant`]), whose ranks would order rounding noise.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if is_constant(&x[..n]) || is_constant(&y[..n]) {
        return 0.0;
    }
    pearson(&ranks(&x[..n]), &ranks(&y[..n]))
}

/// Mean squared error (`sklearn.metrics.mean_squared_error`); 0 for empty input.
pub fn mse(pred: &[f64], gold: &[f64]) -> f64 {
    let n = pred.len().min(gold.len());
    if n == 0 {
        return 0.0;
    }
    pred.iter()
        .zip(gold)
        .map(|(p, g)| (p - g) * (p - g))
        .sum::<f64>()
        / n as f64
}

/// Multi-label metrics of predicted label sets against gold ones
/// ([`multi_label_scores`]), each as scikit-learn computes it on indicator matrices.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiLabelScores {
    /// `f1_score(average="micro")`: `2·Σtp / (2·Σtp + Σfp + Σfn)` over all labels.
    pub f1_micro: f64,
    /// `f1_score(average="macro", zero_division=0)`: the mean of every label's F1, a label
    /// neither present nor predicted counting 0 (scikit-learn averages over all columns of
    /// an indicator matrix).
    pub f1_macro: f64,
    /// `precision_score(average="micro", zero_division=0)`.
    pub precision_micro: f64,
    /// `recall_score(average="micro", zero_division=0)`.
    pub recall_micro: f64,
    /// `accuracy_score`: the fraction of rows whose predicted set equals the gold set.
    pub subset_accuracy: f64,
    /// `hamming_loss`: the fraction of (row, label) cells predicted wrong.
    pub hamming_loss: f64,
    /// `f1_score(average=None, zero_division=0)`: each label's F1, in label order.
    pub f1_per_label: Vec<f64>,
}

/// `2·tp / (2·tp + fp + fn)`, 0 where the denominator is 0 (`zero_division=0`).
fn f1_counts(tp: f64, fp: f64, fn_: f64) -> f64 {
    let d = 2.0 * tp + fp + fn_;
    if d == 0.0 { 0.0 } else { 2.0 * tp / d }
}

/// `a / b`, 0 where `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// The multi-label metrics of indicator matrices `pred` and `gold` (`[rows, labels]`,
/// row-major, `true` where the row has the label), as scikit-learn's `f1_score`,
/// `precision_score`, `recall_score` (micro, macro, per label; `zero_division=0`),
/// `accuracy_score` (subset accuracy) and `hamming_loss` compute them; every metric is 0 for
/// no rows. Golden values: `tests/golden/multi_label.json` (`tools/make_golden_multilabel.py`).
///
/// # Panics
/// When `pred` and `gold` differ in length or `labels` does not divide it.
pub fn multi_label_scores(pred: &[bool], gold: &[bool], labels: usize) -> MultiLabelScores {
    assert_eq!(pred.len(), gold.len(), "indicator matrices of one shape");
    assert!(
        labels > 0 && pred.len().is_multiple_of(labels),
        "rows of `labels` cells"
    );
    let rows = pred.len() / labels;
    let (mut tp, mut fp, mut fn_) = (vec![0.0; labels], vec![0.0; labels], vec![0.0; labels]);
    let mut exact = 0usize;
    let mut wrong = 0usize;
    for r in 0..rows {
        let (p, g) = (
            &pred[r * labels..(r + 1) * labels],
            &gold[r * labels..(r + 1) * labels],
        );
        let mut same = true;
        for l in 0..labels {
            match (p[l], g[l]) {
                (true, true) => tp[l] += 1.0,
                (true, false) => fp[l] += 1.0,
                (false, true) => fn_[l] += 1.0,
                (false, false) => {}
            }
            if p[l] != g[l] {
                same = false;
                wrong += 1;
            }
        }
        exact += same as usize;
    }
    let (stp, sfp, sfn): (f64, f64, f64) = (tp.iter().sum(), fp.iter().sum(), fn_.iter().sum());
    let f1_per_label: Vec<f64> = (0..labels)
        .map(|l| f1_counts(tp[l], fp[l], fn_[l]))
        .collect();
    MultiLabelScores {
        f1_micro: f1_counts(stp, sfp, sfn),
        f1_macro: f1_per_label.iter().sum::<f64>() / labels as f64,
        precision_micro: ratio(stp, stp + sfp),
        recall_micro: ratio(stp, stp + sfn),
        subset_accuracy: ratio(exact as f64, rows as f64),
        hamming_loss: ratio(wrong as f64, pred.len() as f64),
        f1_per_label,
    }
}

/// The minBERT overall score: `mean(SST accuracy, paraphrase accuracy, (STS Pearson + 1) / 2)`.
pub fn overall_score(sst_acc: f64, para_acc: f64, sts_pearson: f64) -> f64 {
    (sst_acc + para_acc + (sts_pearson + 1.0) / 2.0) / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_matches_scipy() {
        // Values from scipy 1.x: scipy.stats.pearsonr(x, y).statistic
        let r = pearson(&[1., 2., 3., 4., 5.], &[2., 1., 4., 3., 7.]);
        assert!((r - 0.8241633836921339).abs() < 1e-12, "{r}");
        let r = pearson(
            &[0.1, 0.5, 0.2, 0.9, 0.7, 0.3],
            &[1.0, 2.5, 0.5, 4.8, 3.1, 2.2],
        );
        assert!((r - 0.9502742523832863).abs() < 1e-12, "{r}");
        assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), 0.0);
    }

    #[test]
    fn constant_predictions_up_to_rounding_have_no_correlation() {
        // STS: identical sentence pairs give a cosine of 1 ± 1e-7 in f32, times 5.
        let pred = [5.0, 5.0 - 4.8e-7, 5.0 + 2.4e-7, 5.0, 5.0 - 2.4e-7];
        let gold = [4.8, 5.0, 4.6, 4.0, 5.0];
        assert!(is_constant(&pred));
        assert_eq!(pearson(&pred, &gold), 0.0);
        assert_eq!(spearman(&pred, &gold), 0.0);
        assert!(!is_constant(&gold));
        assert!(!is_constant(&[0.0, 1e-3]));
    }

    #[test]
    fn overall() {
        assert!((overall_score(0.5, 0.8, 0.8) - (0.5 + 0.8 + 0.9) / 3.0).abs() < 1e-12);
        assert_eq!(accuracy(&[1, 2, 3], &[1, 0, 3]), 2.0 / 3.0);
    }
}
