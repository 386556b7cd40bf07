//! Metrics of the minBERT tasks (computed on host values).

/// Fraction of `pred[i] == gold[i]`; 0 for empty input.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    if pred.is_empty() {
        return 0.0;
    }
    let ok = pred.iter().zip(gold).filter(|(p, g)| p == g).count();
    ok as f64 / pred.len() as f64
}

/// Pearson correlation coefficient of `x` and `y` (the STS-B metric, as `scipy.stats.pearsonr`);
/// 0 when either has zero variance or fewer than two points.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
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
    fn overall() {
        assert!((overall_score(0.5, 0.8, 0.8) - (0.5 + 0.8 + 0.9) / 3.0).abs() < 1e-12);
        assert_eq!(accuracy(&[1, 2, 3], &[1, 0, 3]), 2.0 / 3.0);
    }
}
