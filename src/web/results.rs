//! Finished runs in the page: kept in `localStorage`, drawn as a table and rank plots, shared
//! as a link (`report::share`), downloaded as CSV.

use super::STATE;
use super::dom::{el, esc, input, log, set_html, set_input, set_text, status};
use crate::model::AdapterKind;
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
    /// The id its best checkpoint is stored under in the browser (`checkpoints/<id>/`,
    /// [`super::cache::store_checkpoint`]); `None` for runs kept before checkpoints were, or
    /// where the quota was full.
    #[serde(default)]
    pub checkpoint: Option<String>,
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
    // One score plot per task and metric (an SST 5-class accuracy and an own file's accuracy do
    // not share an axis); seconds and memory compare across tasks.
    let mut scored: Vec<(String, String)> = Vec::new();
    for r in rows {
        let key = (r.task.clone(), r.metric.clone().unwrap_or_default());
        if !scored.contains(&key) {
            scored.push(key);
        }
    }
    for (task, metric) in &scored {
        let of_task: Vec<ShareRow> = rows
            .iter()
            .filter(|r| &r.task == task && r.metric.clone().unwrap_or_default() == *metric)
            .cloned()
            .collect();
        let what = if metric.is_empty() {
            task.clone()
        } else {
            format!("{task} ({metric})")
        };
        plots.push_str(&rank_plot(
            &of_task,
            &format!("dev score vs rank: {what}"),
            "dev score",
            |r| r.score,
        ));
    }
    plots.push_str(&rank_plot(
        rows,
        "seconds per epoch vs rank",
        "s/epoch",
        |r| r.seconds_per_epoch,
    ));
    plots.push_str(&rank_plot(rows, "peak memory vs rank", "MiB", |r| {
        r.peak_memory_bytes as f64 / 1048576.0
    }));
    set_html("rank-plot", &plots);
}

/// One rank plot (SVG) of `f` over `rows`, one line per task, adapter and target set; empty
/// when there is nothing to draw.
fn rank_plot(rows: &[ShareRow], title: &str, y: &str, f: fn(&ShareRow) -> f64) -> String {
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
    svg(&chart, 420, 280).unwrap_or_default()
}

/// The share payload of `rows`.
pub fn payload(rows: Vec<ShareRow>) -> SharePayload {
    let model = STATE
        .with(|s| s.borrow().model.as_ref().map(|m| m.name.clone()))
        .unwrap_or_else(|| input("model-url"));
    let model_url = STATE.with(|s| s.borrow().model.as_ref().and_then(|m| m.url.clone()));
    SharePayload {
        v: SHARE_VERSION,
        model: model.chars().take(100).collect(),
        rows,
        data: STATE.with(|s| s.borrow().shared_data.clone()),
        model_url: model_url.filter(|u| u.len() <= 128),
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
            apply_shared_settings(&p);
            true
        }
        Err(e) => {
            set_text("error", &e.to_string());
            status(&format!("error: {e}"));
            false
        }
    }
}

/// Puts the shared runs' settings into the form, so "Re-run" trains them as they were: the
/// model URL, the first row's task, targets, precision and carried settings (`lora_alpha`,
/// epochs, steps, batch, max length, lr, row limits, data URL), and the rows' ranks.
fn apply_shared_settings(p: &SharePayload) {
    if let Some(u) = &p.model_url {
        set_input("model-url", u);
    }
    let Some(r) = p.rows.first() else { return };
    set_input("task", &r.task);
    set_input("targets", &r.targets);
    set_input("precision", &r.precision);
    set_input("adapter", &r.adapter);
    set_input("rank", &r.r.to_string());
    let ranks: Vec<String> = p.rows.iter().map(|r| r.r.to_string()).collect();
    set_input("sweep-ranks", &ranks.join(","));
    let Some(c) = &r.config else { return };
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    for (id, v) in [
        ("alpha", c.alpha.to_string()),
        ("epochs", c.epochs.to_string()),
        ("max-steps", opt(c.max_steps)),
        ("batch", c.batch.to_string()),
        ("max-len", c.max_len.to_string()),
        ("lr", c.lr.to_string()),
        ("max-train", opt(c.max_train)),
        ("max-dev", opt(c.max_dev)),
        ("eval-steps", opt(c.eval_steps)),
        ("patience", opt(c.patience)),
        (
            "loraplus",
            c.loraplus.map(|r| r.to_string()).unwrap_or_default(),
        ),
    ] {
        set_input(id, &v);
    }
    if let Some(d) = &c.data_url {
        set_input("data-url", d);
    }
}

/// The `(adapter, r)` runs of a shared link, in its order without repeats: what "Re-run"
/// trains.
pub fn shared_grid() -> Option<Vec<(AdapterKind, usize)>> {
    let hash = web_sys::window()?.location().hash().ok()?;
    let p = share::decode(&hash).ok()?;
    apply_shared_settings(&p);
    let mut grid: Vec<(AdapterKind, usize)> = Vec::new();
    // Rows of full fine-tuning (`none`, from a native sweep) are not trained in the page.
    for r in &p.rows {
        let Some(kind) = AdapterKind::from_name(&r.adapter) else {
            continue;
        };
        let run = (kind, r.r as usize);
        if !grid.contains(&run) {
            grid.push(run);
        }
    }
    Some(grid)
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
