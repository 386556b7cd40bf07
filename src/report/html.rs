//! What a sweep report shows: the charts (score, time and memory versus rank; loss curves),
//! rendered to SVG, the share-link payload, and the self-contained `report.html`.

use std::collections::BTreeMap;

use super::claims::Claim;
use super::plot::{Chart, Series, svg};
use super::share::{SHARE_VERSION, SharePayload, ShareRow};
use super::sweep::SweepRow;

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

/// The name of the score of `task`'s rows: the minBERT task's metric, or the own-data run's
/// `metric_for_best_model`.
fn metric_name(task: &str, rows: &[SweepRow]) -> String {
    match task {
        "sst" => "SST dev accuracy".into(),
        "para" => "Quora dev accuracy".into(),
        "sts" => "STS dev Pearson".into(),
        "multi" => "overall dev score".into(),
        _ => match rows
            .iter()
            .find(|r| r.task == task)
            .and_then(|r| r.metric.clone())
        {
            Some(m) if m == "mse" => "dev −MSE".into(),
            Some(m) => format!("dev {m}"),
            None => "dev score".into(),
        },
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
                metric_name(&task, rows)
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
                metric: r.metric.clone(),
                config: None,
            })
            .collect(),
        data: None,
        model_url: None,
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
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::claims::claims;
    use crate::report::sweep::test_row;

    #[test]
    fn claims_quote_their_cells() {
        let rows = vec![
            test_row("lora", "all-linear", 1, 0.45, 100.0),
            test_row("lora", "all-linear", 8, 0.50, 110.0),
            test_row("dora", "all-linear", 1, 0.46, 120.0),
            test_row("lora", "attention", 1, 0.40, 90.0),
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
