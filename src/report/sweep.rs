//! Sweeps: the grid of cells, its shards, and one table row per finished run (`sweep.csv`).
//! The charts and HTML report are [`super::html`]'s, the claims [`super::claims`]'.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::train::RunResults;

/// One cell of a sweep grid: a normal training run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// `sst`, `para`, `sts` or `multi`.
    pub task: String,
    /// `lora`, `dora` or `none`.
    pub adapter: String,
    /// `attention`, `all-linear`, or a `+`-joined module list.
    pub targets: String,
    /// Rank (0 for `none`).
    pub r: usize,
    /// `f32` or `f16`.
    pub precision: String,
    /// Seed.
    pub seed: u64,
}

impl Cell {
    /// Folder name of the cell: `task-adapter-targets-rR-precision-sSEED`.
    pub fn name(&self) -> String {
        format!(
            "{}-{}-{}-r{}-{}-s{}",
            self.task, self.adapter, self.targets, self.r, self.precision, self.seed
        )
    }

    /// The `--target-modules` list of the cell.
    pub fn target_modules(&self) -> Vec<String> {
        crate::adapter::target_set(&self.targets)
    }
}

/// The grid in a fixed order (task, targets, adapter, rank, precision, seed). `none` (full
/// fine-tuning) gets one cell per task, precision and seed, with `r = 0` and targets `all`.
pub fn grid(
    tasks: &[String],
    adapters: &[String],
    targets: &[String],
    ranks: &[usize],
    precisions: &[String],
    seeds: &[u64],
) -> Vec<Cell> {
    let mut cells = Vec::new();
    for task in tasks {
        for t in targets {
            for a in adapters {
                let ranks: Vec<usize> = if a == "none" { vec![0] } else { ranks.to_vec() };
                for &r in &ranks {
                    for p in precisions {
                        for &seed in seeds {
                            let targets = if a == "none" {
                                "all".to_string()
                            } else {
                                t.clone()
                            };
                            let c = Cell {
                                task: task.clone(),
                                adapter: a.clone(),
                                targets,
                                r,
                                precision: p.clone(),
                                seed,
                            };
                            if !cells.contains(&c) {
                                cells.push(c);
                            }
                        }
                    }
                }
            }
        }
    }
    cells
}

/// Parses a list of ranks: `1,2,4,8` or an inclusive range `1..8`; 1 to 64 ranks, each >= 1
/// (the sweep's `--ranks` and the page's ranks field).
///
/// # Errors
/// [`Error::Invalid`] naming the text.
pub fn parse_ranks(s: &str) -> Result<Vec<usize>> {
    let bad = || {
        Error::Invalid(format!(
            "ranks `{s}`: use a list like 1,2,4,8 or a range 1..8"
        ))
    };
    let num = |x: &str| x.trim().parse::<usize>().map_err(|_| bad());
    let v: Vec<usize> = match s.split_once("..") {
        Some((a, b)) => (num(a)?..=num(b)?).take(65).collect(),
        None => s.split(',').map(num).collect::<Result<_>>()?,
    };
    if v.is_empty() || v.contains(&0) || v.len() > 64 {
        return Err(Error::Invalid(format!(
            "ranks `{s}`: 1 to 64 ranks, each >= 1"
        )));
    }
    Ok(v)
}

/// Parses `i/n` (0-based shard `i` of `n`).
///
/// # Errors
/// [`Error::Invalid`] unless `0 <= i < n`.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error::Invalid(format!(
            "--shard `{s}` must be i/n with 0 <= i < n (e.g. 0/4)"
        ))
    };
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The cells of shard `i` of `n`: every `n`-th cell starting at `i`.
pub fn shard(cells: &[Cell], i: usize, n: usize) -> Vec<Cell> {
    cells
        .iter()
        .enumerate()
        .filter(|(k, _)| k % n == i)
        .map(|(_, c)| c.clone())
        .collect()
}

/// One row of `sweep.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    /// Cell folder name.
    pub cell: String,
    /// Task.
    pub task: String,
    /// Adapter.
    pub adapter: String,
    /// Target set.
    pub targets: String,
    /// Rank.
    pub r: usize,
    /// Precision.
    pub precision: String,
    /// Seed.
    pub seed: u64,
    /// Best-epoch SST accuracy.
    pub sst_acc: Option<f64>,
    /// Best-epoch Quora accuracy.
    pub para_acc: Option<f64>,
    /// Best-epoch STS Pearson.
    pub sts_pearson: Option<f64>,
    /// Overall score for multitask runs, else the task's metric.
    pub score: f64,
    /// Mean training seconds per epoch.
    pub seconds_per_epoch: f64,
    /// Mean training examples per second.
    pub examples_per_second: f64,
    /// Peak resident memory in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// Trainable parameters.
    pub trainable_params: usize,
    /// All parameters.
    pub total_params: usize,
    /// Best epoch (1-based).
    pub best_epoch: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Own data: the metric `score` is (`metric_for_best_model`); empty for the minBERT tasks.
    #[serde(default)]
    pub metric: Option<String>,
}

impl SweepRow {
    /// The row of a finished run.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the run has no evaluated epoch.
    pub fn from_results(cell: &Cell, r: &RunResults) -> Result<Self> {
        let best = r
            .best
            .clone()
            .ok_or_else(|| Error::Invalid(format!("{}: no evaluated epoch", cell.name())))?;
        Ok(SweepRow {
            cell: cell.name(),
            task: cell.task.clone(),
            adapter: cell.adapter.clone(),
            targets: cell.targets.clone(),
            r: cell.r,
            precision: cell.precision.clone(),
            seed: cell.seed,
            sst_acc: best.sst_acc,
            para_acc: best.para_acc,
            sts_pearson: best.sts_pearson,
            score: best.primary(),
            seconds_per_epoch: r.mean_seconds_per_epoch(),
            examples_per_second: r.mean_examples_per_second(),
            peak_memory_bytes: r.peak_memory_bytes,
            trainable_params: r.params.trainable,
            total_params: r.params.total,
            best_epoch: r.best_epoch.unwrap_or(0),
            steps: r.steps,
            metric: r
                .config
                .own
                .as_ref()
                .map(|o| o.metric_for_best_model.clone()),
        })
    }
}

/// Writes rows as CSV (header first).
///
/// # Errors
/// [`Error::Invalid`] if serialisation fails.
pub fn rows_to_csv(rows: &[SweepRow]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)
            .map_err(|e| Error::Invalid(format!("sweep.csv: {e}")))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Invalid(format!("sweep.csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Invalid(e.to_string()))
}

/// Reads rows written by [`rows_to_csv`].
///
/// # Errors
/// [`Error::Data`] naming `source` and the line of a malformed row.
pub fn rows_from_csv(bytes: &[u8], source: &str) -> Result<Vec<SweepRow>> {
    let mut rdr = csv::Reader::from_reader(bytes);
    let mut rows = Vec::new();
    for rec in rdr.deserialize::<SweepRow>() {
        let row = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            Error::data(source, line, format!("bad sweep row: {e}"))
        })?;
        rows.push(row);
    }
    Ok(rows)
}

/// A sweep row of an SST cell for the report module's tests.
#[cfg(test)]
pub(crate) fn test_row(adapter: &str, targets: &str, r: usize, score: f64, secs: f64) -> SweepRow {
    tests::row(adapter, targets, r, score, secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn row(adapter: &str, targets: &str, r: usize, score: f64, secs: f64) -> SweepRow {
        let c = Cell {
            task: "sst".into(),
            adapter: adapter.into(),
            targets: targets.into(),
            r,
            precision: "f32".into(),
            seed: 1,
        };
        SweepRow {
            cell: c.name(),
            task: c.task,
            adapter: c.adapter,
            targets: c.targets,
            r,
            precision: c.precision,
            seed: 1,
            sst_acc: Some(score),
            para_acc: None,
            sts_pearson: None,
            score,
            seconds_per_epoch: secs,
            examples_per_second: 10.0,
            peak_memory_bytes: Some(1 << 28),
            trainable_params: 1000 * r,
            total_params: 1_000_000,
            best_epoch: 1,
            steps: 10,
            metric: None,
        }
    }

    #[test]
    fn grid_shards_and_csv_round_trip() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cells = grid(
            &s(&["sst"]),
            &s(&["lora", "dora"]),
            &s(&["all-linear"]),
            &[1, 2, 4],
            &s(&["f32"]),
            &[1],
        );
        assert_eq!(cells.len(), 6);
        let (a, b) = (shard(&cells, 0, 2), shard(&cells, 1, 2));
        assert_eq!(a.len() + b.len(), 6);
        assert!(a.iter().all(|c| !b.contains(c)));
        assert_eq!(parse_shard("1/3").unwrap(), (1, 3));
        assert!(parse_shard("3/3").is_err());
        let rows = vec![
            row("lora", "all-linear", 1, 0.45, 100.0),
            row("dora", "all-linear", 1, 0.46, 120.0),
        ];
        let csv = rows_to_csv(&rows).unwrap();
        assert_eq!(rows_from_csv(csv.as_bytes(), "sweep.csv").unwrap(), rows);
    }
}
