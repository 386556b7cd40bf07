//! Finished runs in the page: kept in `localStorage`, drawn as a table and rank plots, shared
//! as a link (`report::share`), downloaded as CSV.

use super::STATE;
use super::dom::{el, esc, input, log, set_html, set_input, set_text, status};
use crate::report::plot::{Chart, Series, svg};
use crate::report::share::{self, SHARE_VERSION, SharePayload, ShareRow};

const STORAGE_KEY: &str = "lorabert.runs.v1";

/// A finished run as kept in the page and in `localStorage`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// Its row of the results table (as in share links).
    pub row: ShareRow,
    /// `[step, mean loss]` points.
    pub loss_curve: Vec<[f64; 2]>,
    /// Mean training throughput, examples per second.
    pub examples_per_second: f64,
}

/// Writes the finished runs to `localStorage`.
pub fn save_runs() {
    let json = STATE.with(|s| serde_json::to_string(&s.borrow().runs).unwrap_or_default());
    if let Some(st) = web_sys::window().and_then(|w| w.local_storage().ok().flatten())
        && st.set_item(STORAGE_KEY, &json).is_err()
    {
        log("could not save the results in localStorage (full or disabled)");
    }
}

/// Reads the finished runs kept in `localStorage`.
pub fn load_runs() {
    let Some(st) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) else {
        return;
    };
    if let Ok(Some(json)) = st.get_item(STORAGE_KEY) {
        match serde_json::from_str::<Vec<RunRecord>>(&json) {
            Ok(runs) => STATE.with(|s| s.borrow_mut().runs = runs),
            Err(e) => log(&format!("ignoring saved results ({e})")),
        }
    }
}

/// The rows of the finished runs.
pub fn rows() -> Vec<ShareRow> {
    STATE.with(|s| s.borrow().runs.iter().map(|r| r.row.clone()).collect())
}

/// Draws the results table and the rank plots (score, seconds per epoch, memory).
pub fn render_runs(rows: &[ShareRow]) {
    let mut h = String::from(
        "<tr><th>task</th><th>adapter</th><th>targets</th><th>r</th><th>precision</th><th>dev score</th><th>s/epoch</th><th>peak MiB</th><th>trainable</th></tr>",
    );
    // The best score of each task is marked (scores of different tasks do not compare).
    let best = |task: &str| {
        rows.iter()
            .filter(|r| r.task == task)
            .map(|r| r.score)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    for r in rows {
        let task = match &r.metric {
            Some(m) => format!("{} ({m})", r.task),
            None => r.task.clone(),
        };
        let class = if r.score == best(&r.task) {
            " class=\"best\""
        } else {
            ""
        };
        h.push_str(&format!(
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"score\">{:.4}</td><td>{:.1}</td><td>{:.0}</td><td>{}</td></tr>",
            esc(&task), esc(&r.adapter), esc(&r.targets), r.r, esc(&r.precision), r.score, r.seconds_per_epoch, r.peak_memory_bytes as f64 / 1048576.0, r.trainable_params
        ));
    }
    set_html("results", &h);
    let mut plots = String::new();
    for (title, y, f) in [
        (
            "dev score vs rank",
            "dev score",
            (|r: &ShareRow| r.score) as fn(&ShareRow) -> f64,
        ),
        ("seconds per epoch vs rank", "s/epoch", |r: &ShareRow| {
            r.seconds_per_epoch
        }),
        ("peak memory vs rank", "MiB", |r: &ShareRow| {
            r.peak_memory_bytes as f64 / 1048576.0
        }),
    ] {
        let mut series: Vec<Series> = Vec::new();
        for r in rows {
            let name = format!("{} {} {}", r.task, r.adapter.to_uppercase(), r.targets);
            match series.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push((r.r as f64, f(r))),
                None => series.push(Series {
                    name,
                    points: vec![(r.r as f64, f(r))],
                }),
            }
        }
        for s in &mut series {
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let chart = Chart {
            title: title.into(),
            x_label: "rank r".into(),
            y_label: y.into(),
            series,
            log2_x: true,
        };
        if let Ok(s) = svg(&chart, 420, 280) {
            plots.push_str(&s);
        }
    }
    set_html("rank-plot", &plots);
}

/// The share payload of `rows`.
pub fn payload(rows: Vec<ShareRow>) -> SharePayload {
    let model = STATE
        .with(|s| s.borrow().model.as_ref().map(|m| m.name.clone()))
        .unwrap_or_else(|| input("model-url"));
    SharePayload {
        v: SHARE_VERSION,
        model: model.chars().take(100).collect(),
        rows,
        data: STATE.with(|s| s.borrow().shared_data.clone()),
    }
}

/// Shows the results carried by the URL fragment, if any (no training).
pub fn show_shared() -> bool {
    let hash = web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default();
    if hash.len() < 2 {
        return false;
    }
    match share::decode(&hash) {
        Ok(p) => {
            render_runs(&p.rows);
            let data = p
                .data
                .as_ref()
                .map(|d| {
                    format!(
                        " on {} ({}, {} training and {} validation rows)",
                        d.file, d.kind, d.train_rows, d.validation_rows
                    )
                })
                .unwrap_or_default();
            set_text(
                "shared",
                &format!(
                    "Shared results for {}{data} ({} runs), not trained in this page.",
                    p.model,
                    p.rows.len()
                ),
            );
            if let Some(e) = el("rerun") {
                e.set_hidden(false);
            }
            if let Some(r) = p.rows.first() {
                set_input("task", &r.task);
                set_input("targets", &r.targets);
                let ranks: Vec<String> = p.rows.iter().map(|r| r.r.to_string()).collect();
                set_input("sweep-ranks", &ranks.join(","));
            }
            true
        }
        Err(e) => {
            set_text("error", &e.to_string());
            status(&format!("error: {e}"));
            false
        }
    }
}

/// The results table as CSV bytes (`Download CSV`).
///
/// # Errors
/// [`crate::Error::Invalid`] if the CSV writer fails.
pub fn results_csv(rows: &[ShareRow]) -> crate::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let bad = |e: csv::Error| crate::Error::Invalid(format!("CSV: {e}"));
    w.write_record([
        "task",
        "adapter",
        "targets",
        "r",
        "precision",
        "seed",
        "dev_score",
        "seconds_per_epoch",
        "peak_memory_bytes",
        "trainable_params",
    ])
    .map_err(bad)?;
    for r in rows {
        w.write_record([
            r.task.clone(),
            r.adapter.clone(),
            r.targets.clone(),
            r.r.to_string(),
            r.precision.clone(),
            r.seed.to_string(),
            format!("{:.6}", r.score),
            format!("{:.3}", r.seconds_per_epoch),
            r.peak_memory_bytes.to_string(),
            r.trainable_params.to_string(),
        ])
        .map_err(bad)?;
    }
    w.into_inner()
        .map_err(|e| crate::Error::Invalid(format!("CSV: {e}")))
}
