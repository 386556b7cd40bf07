//! Sweeps: the grid of cells, one table row per finished run (`sweep.csv`), the charts, the
//! claims the seed paper asks about, and a self-contained HTML report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::RunResults;
use super::plot::{Chart, Series, svg};
use super::share::{SHARE_VERSION, SharePayload, ShareRow};
use crate::error::{Error, Result};

/// `attention` = the attention block's linear layers.
pub const ATTENTION: [&str; 4] = ["query", "key", "value", "attention.output.dense"];

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
        match self.targets.as_str() {
            "attention" => ATTENTION.iter().map(|s| s.to_string()).collect(),
            "all-linear" => vec!["all-linear".into()],
            other => other.split('+').map(str::to_string).collect(),
        }
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
        let n = r.epochs.len().max(1) as f64;
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
            seconds_per_epoch: r.epochs.iter().map(|e| e.seconds).sum::<f64>() / n,
            examples_per_second: r.epochs.iter().map(|e| e.examples_per_second).sum::<f64>() / n,
            peak_memory_bytes: r.peak_memory_bytes,
            trainable_params: r.params.trainable,
            total_params: r.params.total,
            best_epoch: r.best_epoch.unwrap_or(0),
            steps: r.steps,
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

fn series_key(r: &SweepRow) -> String {
    let a = match r.adapter.as_str() {
        "lora" => "LoRA",
        "dora" => "DoRA",
        _ => "full",
    };
    format!("{a} {} {}", r.targets, r.precision)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Per task: series (adapter, targets, precision) → rank → values over seeds.
fn by_rank(
    rows: &[SweepRow],
    value: impl Fn(&SweepRow) -> Option<f64>,
) -> BTreeMap<String, BTreeMap<String, BTreeMap<usize, Vec<f64>>>> {
    let mut m: BTreeMap<String, BTreeMap<String, BTreeMap<usize, Vec<f64>>>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.adapter != "none") {
        if let Some(v) = value(r) {
            m.entry(r.task.clone())
                .or_default()
                .entry(series_key(r))
                .or_default()
                .entry(r.r)
                .or_default()
                .push(v);
        }
    }
    m
}

fn metric_name(task: &str) -> &'static str {
    match task {
        "sst" => "SST dev accuracy",
        "para" => "Quora dev accuracy",
        "sts" => "STS dev Pearson",
        _ => "overall dev score",
    }
}

/// The sweep's charts as `(file name, chart)`: score, seconds per epoch and peak memory versus
/// rank (one line per adapter, target set and precision; one chart per task), and the loss
/// curves of the runs given in `curves` (cell name → `[step, loss]`).
pub fn charts(rows: &[SweepRow], curves: &BTreeMap<String, Vec<[f64; 2]>>) -> Vec<(String, Chart)> {
    let mut out = Vec::new();
    type Value = Box<dyn Fn(&SweepRow) -> Option<f64>>;
    let specs: [(&str, &str, Value); 3] = [
        ("score", "", Box::new(|r: &SweepRow| Some(r.score))),
        (
            "seconds",
            "seconds per epoch",
            Box::new(|r: &SweepRow| Some(r.seconds_per_epoch)),
        ),
        (
            "memory",
            "peak memory (MiB)",
            Box::new(|r: &SweepRow| r.peak_memory_bytes.map(|b| b as f64 / 1048576.0)),
        ),
    ];
    for (key, label, f) in specs.iter() {
        for (task, series) in by_rank(rows, |r| f(r)) {
            let y_label = if label.is_empty() {
                metric_name(&task).to_string()
            } else {
                label.to_string()
            };
            let series = series
                .into_iter()
                .map(|(name, pts)| Series {
                    name,
                    points: pts.into_iter().map(|(r, v)| (r as f64, mean(&v))).collect(),
                })
                .collect();
            out.push((
                format!("{task}-{key}-vs-rank.svg"),
                Chart {
                    title: format!("{task}: {y_label} vs rank"),
                    x_label: "rank r".into(),
                    y_label,
                    series,
                    log2_x: true,
                },
            ));
        }
    }
    if !curves.is_empty() {
        let series = curves
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(name, c)| Series {
                name: name.clone(),
                points: c.iter().map(|p| (p[0], p[1])).collect(),
            })
            .collect::<Vec<_>>();
        if !series.is_empty() {
            out.push((
                "loss-curves.svg".into(),
                Chart {
                    title: "training loss".into(),
                    x_label: "step".into(),
                    y_label: "loss".into(),
                    series,
                    log2_x: false,
                },
            ));
        }
    }
    out
}

/// A statement computed from the sweep's own numbers, with the cells it quotes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// Which question: `rank-1`, `dora-vs-lora`, `f16-vs-f32`, `attention-vs-all-linear`.
    pub id: String,
    /// The statement.
    pub text: String,
    /// Names of the cells it is computed from.
    pub cells: Vec<String>,
}

type Key = (String, String, String, String, usize); // task, adapter, targets, precision, r
type Family = (String, String, String, String); // task, adapter, targets, precision

fn grouped(rows: &[SweepRow]) -> BTreeMap<Key, Vec<&SweepRow>> {
    let mut m: BTreeMap<Key, Vec<&SweepRow>> = BTreeMap::new();
    for r in rows {
        m.entry((
            r.task.clone(),
            r.adapter.clone(),
            r.targets.clone(),
            r.precision.clone(),
            r.r,
        ))
        .or_default()
        .push(r);
    }
    m
}

fn avg(rs: &[&SweepRow], f: impl Fn(&SweepRow) -> f64) -> f64 {
    rs.iter().map(|r| f(r)).sum::<f64>() / rs.len().max(1) as f64
}

fn names(rs: &[&SweepRow]) -> Vec<String> {
    rs.iter().map(|r| r.cell.clone()).collect()
}

/// The four claims of the seed paper, each computed from (seed-averaged) cells of the sweep:
/// (a) how much of the best rank's score rank 1 reaches; (b) DoRA versus LoRA at equal rank;
/// (c) f16 versus f32 peak memory and speed; (d) attention-only versus all-linear.
pub fn claims(rows: &[SweepRow]) -> Vec<Claim> {
    let g = grouped(rows);
    let mut out = Vec::new();
    // (a) rank 1 vs best rank, per (task, adapter, targets, precision).
    let mut fams: BTreeMap<Family, Vec<(usize, &Vec<&SweepRow>)>> = BTreeMap::new();
    for (k, v) in &g {
        if k.1 != "none" {
            fams.entry((k.0.clone(), k.1.clone(), k.2.clone(), k.3.clone()))
                .or_default()
                .push((k.4, v));
        }
    }
    for ((task, adapter, targets, prec), ranks) in &fams {
        let Some((_, r1)) = ranks.iter().find(|(r, _)| *r == 1) else {
            continue;
        };
        let Some((best_r, best)) = ranks
            .iter()
            .max_by(|a, b| avg(a.1, |r| r.score).total_cmp(&avg(b.1, |r| r.score)))
        else {
            continue;
        };
        if ranks.len() < 2 {
            continue;
        }
        let (s1, sb) = (avg(r1, |r| r.score), avg(best, |r| r.score));
        let mut cells = names(r1);
        cells.extend(names(best));
        cells.dedup();
        out.push(Claim {
            id: "rank-1".into(),
            text: format!(
                "{task} {adapter} {targets} {prec}: rank 1 scores {s1:.4}, {:.1} % of the best rank (r = {best_r}, {sb:.4}), with {:.1} % of its trainable parameters",
                100.0 * s1 / sb,
                100.0 * avg(r1, |r| r.trainable_params as f64) / avg(best, |r| r.trainable_params as f64)
            ),
            cells,
        });
    }
    // (b) DoRA vs LoRA at equal rank.
    for (k, dora) in g.iter().filter(|(k, _)| k.1 == "dora") {
        let lk = (
            k.0.clone(),
            "lora".to_string(),
            k.2.clone(),
            k.3.clone(),
            k.4,
        );
        let Some(lora) = g.get(&lk) else { continue };
        let (sd, sl) = (avg(dora, |r| r.score), avg(lora, |r| r.score));
        let (td, tl) = (
            avg(dora, |r| r.seconds_per_epoch),
            avg(lora, |r| r.seconds_per_epoch),
        );
        let mut cells = names(lora);
        cells.extend(names(dora));
        out.push(Claim {
            id: "dora-vs-lora".into(),
            text: format!(
                "{} {} {} r = {}: DoRA {sd:.4} vs LoRA {sl:.4} ({:+.4}); DoRA takes {:.2}× LoRA's time per epoch",
                k.0, k.2, k.3, k.4, sd - sl, td / tl.max(1e-12)
            ),
            cells,
        });
    }
    // (c) f16 vs f32.
    let mut any_f16 = false;
    for (k, h) in g.iter().filter(|(k, _)| k.3 == "f16") {
        let fk = (
            k.0.clone(),
            k.1.clone(),
            k.2.clone(),
            "f32".to_string(),
            k.4,
        );
        let Some(f) = g.get(&fk) else { continue };
        any_f16 = true;
        let mem = |rs: &[&SweepRow]| avg(rs, |r| r.peak_memory_bytes.unwrap_or(0) as f64);
        let mut cells = names(f);
        cells.extend(names(h));
        out.push(Claim {
            id: "f16-vs-f32".into(),
            text: format!(
                "{} {} {} r = {}: f16 peak memory {:.2}× f32, time per epoch {:.2}× f32, score {:+.4}",
                k.0, k.1, k.2, k.4,
                mem(h) / mem(f).max(1.0),
                avg(h, |r| r.seconds_per_epoch) / avg(f, |r| r.seconds_per_epoch).max(1e-12),
                avg(h, |r| r.score) - avg(f, |r| r.score)
            ),
            cells,
        });
    }
    if !any_f16 {
        out.push(Claim {
            id: "f16-vs-f32".into(),
            text: "no f16/f32 cell pairs in this sweep (the CPU backend computes in f32 only; run the sweep with --precision f32,f16 on a GPU backend)".into(),
            cells: vec![],
        });
    }
    // (d) attention-only vs all-linear.
    for (k, att) in g.iter().filter(|(k, _)| k.2 == "attention") {
        let ak = (
            k.0.clone(),
            k.1.clone(),
            "all-linear".to_string(),
            k.3.clone(),
            k.4,
        );
        let Some(all) = g.get(&ak) else { continue };
        let mut cells = names(att);
        cells.extend(names(all));
        out.push(Claim {
            id: "attention-vs-all-linear".into(),
            text: format!(
                "{} {} {} r = {}: attention-only {:.4} vs all-linear {:.4} ({:+.4}) with {:.0} % of the trainable parameters",
                k.0, k.1, k.3, k.4,
                avg(att, |r| r.score),
                avg(all, |r| r.score),
                avg(att, |r| r.score) - avg(all, |r| r.score),
                100.0 * avg(att, |r| r.trainable_params as f64) / avg(all, |r| r.trainable_params as f64).max(1.0)
            ),
            cells,
        });
    }
    out
}

/// The rows as a share-link payload.
pub fn share_payload(model: &str, rows: &[SweepRow]) -> SharePayload {
    SharePayload {
        v: SHARE_VERSION,
        model: model.chars().take(100).collect(),
        rows: rows
            .iter()
            .map(|r| ShareRow {
                task: r.task.clone(),
                adapter: r.adapter.clone(),
                targets: r.targets.clone(),
                r: r.r as u32,
                precision: r.precision.clone(),
                seed: r.seed,
                score: r.score.clamp(-1.0, 1.0),
                seconds_per_epoch: r.seconds_per_epoch,
                peak_memory_bytes: r.peak_memory_bytes.unwrap_or(0),
                trainable_params: r.trainable_params as u64,
            })
            .collect(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn opt(v: Option<f64>) -> String {
    v.map_or("".into(), |v| format!("{v:.4}"))
}

/// A self-contained HTML report: the table, the charts (inline SVG), the claims and the share
/// link.
pub fn report_html(
    title: &str,
    rows: &[SweepRow],
    svgs: &[(String, String)],
    claims: &[Claim],
    share: Option<&str>,
) -> String {
    let mut h = String::new();
    h.push_str(&format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;font-size:13px}}\
         td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}th{{background:#eee}}\
         td:first-child{{text-align:left}}.charts svg{{margin:4px;border:1px solid #ddd}}li{{margin:6px 0}}\
         code{{font-size:12px;color:#555}}</style></head><body>\n<h1>{t}</h1>\n",
        t = esc(title)
    ));
    h.push_str("<h2>Runs</h2>\n<table><tr><th>cell</th><th>r</th><th>SST acc</th><th>Quora acc</th><th>STS r</th><th>score</th><th>s/epoch</th><th>ex/s</th><th>peak MiB</th><th>trainable</th></tr>\n");
    for r in rows {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&r.cell), r.r, opt(r.sst_acc), opt(r.para_acc), opt(r.sts_pearson), r.score, r.seconds_per_epoch,
            r.examples_per_second, r.peak_memory_bytes.map_or("".into(), |b| format!("{:.0}", b as f64 / 1048576.0)), r.trainable_params
        ));
    }
    h.push_str("</table>\n<h2>Claims, from this sweep's numbers</h2>\n<ul>\n");
    for c in claims {
        h.push_str(&format!("<li><b>{}</b>: {}", esc(&c.id), esc(&c.text)));
        if !c.cells.is_empty() {
            h.push_str(&format!(
                "<br><code>cells: {}</code>",
                esc(&c.cells.join(", "))
            ));
        }
        h.push_str("</li>\n");
    }
    h.push_str("</ul>\n<h2>Charts</h2>\n<div class=\"charts\">\n");
    for (name, s) in svgs {
        h.push_str(&format!("<!-- {} -->\n{}\n", esc(name), s));
    }
    h.push_str("</div>\n");
    if let Some(link) = share {
        h.push_str(&format!(
            "<h2>Share</h2>\n<p><a href=\"{l}\">{l}</a></p>\n",
            l = esc(link)
        ));
    }
    h.push_str("</body></html>\n");
    h
}

/// Renders all charts to SVG strings (charts that fail to draw, e.g. with no data, are left out).
pub fn render(charts: &[(String, Chart)]) -> Vec<(String, String)> {
    charts
        .iter()
        .filter_map(|(n, c)| svg(c, 640, 400).ok().map(|s| (n.clone(), s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(adapter: &str, targets: &str, r: usize, score: f64, secs: f64) -> SweepRow {
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

    #[test]
    fn claims_quote_their_cells() {
        let rows = vec![
            row("lora", "all-linear", 1, 0.45, 100.0),
            row("lora", "all-linear", 8, 0.50, 110.0),
            row("dora", "all-linear", 1, 0.46, 120.0),
            row("lora", "attention", 1, 0.40, 90.0),
        ];
        let c = claims(&rows);
        let r1 = c.iter().find(|c| c.id == "rank-1").unwrap();
        assert!(
            r1.text.contains("90.0 % of the best rank (r = 8, 0.5000)"),
            "{}",
            r1.text
        );
        assert_eq!(
            r1.cells,
            vec![
                "sst-lora-all-linear-r1-f32-s1",
                "sst-lora-all-linear-r8-f32-s1"
            ]
        );
        let d = c.iter().find(|c| c.id == "dora-vs-lora").unwrap();
        assert!(
            d.text.contains("DoRA 0.4600 vs LoRA 0.4500 (+0.0100)") && d.text.contains("1.20×"),
            "{}",
            d.text
        );
        let a = c
            .iter()
            .find(|c| c.id == "attention-vs-all-linear")
            .unwrap();
        assert!(a.text.contains("(-0.0500)"), "{}", a.text);
        assert!(c.iter().any(|c| c.id == "f16-vs-f32" && c.cells.is_empty()));
        let svgs = render(&charts(&rows, &BTreeMap::new()));
        assert_eq!(svgs.len(), 3);
        let html = report_html("sweep", &rows, &svgs, &c, Some("http://x/#v1.abc"));
        assert!(
            html.contains("<svg") && html.contains("rank-1") && html.contains("http://x/#v1.abc")
        );
    }
}
