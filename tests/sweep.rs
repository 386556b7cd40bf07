//! Sweeps on a tiny random BERT (MiniLM's tokenizer, hidden 16, one layer) and a few rows of the
//! minBERT data: resume after a kill, shards merged equal the unsharded sweep, report, ensemble.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use lorabert::report::sweep::{SweepRow, rows_from_csv};

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("lorabert-sweep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn sweep_cmd(model: &Path, out: &Path, extra: &[&str]) -> Command {
    let data =
        data_dir().expect("minBERT data not found (../shared/data/minbert or LORABERT_DATA)");
    let mut c = Command::new(env!("CARGO_BIN_EXE_lorabert"));
    c.args([
        "sweep",
        "--ranks",
        "1,2",
        "--adapters",
        "lora,dora",
        "--tasks",
        "sst",
    ]);
    c.arg("--model")
        .arg(model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(out);
    c.args(extra);
    c.args([
        "--",
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--max-train",
        "16",
        "--max-eval",
        "8",
        "--batch-size",
        "8",
        "--threads",
        "1",
    ]);
    c
}

fn finished_cells(out: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(out.join("cells")) {
        for e in rd.flatten() {
            let p = e.path().join("results.json");
            let r = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<lorabert::train::RunResults>(&b).ok());
            if r.is_some_and(|r| r.finished) {
                v.push((
                    e.file_name().to_string_lossy().to_string(),
                    std::fs::metadata(&p).unwrap().modified().unwrap(),
                ));
            }
        }
    }
    v.sort();
    v
}

fn rows(out: &Path) -> Vec<SweepRow> {
    rows_from_csv(&std::fs::read(out.join("sweep.csv")).unwrap(), "sweep.csv").unwrap()
}

/// Rows without the columns that measure the machine (time, throughput, memory).
fn outcome(mut rows: Vec<SweepRow>) -> Vec<SweepRow> {
    for r in &mut rows {
        r.seconds_per_epoch = 0.0;
        r.examples_per_second = 0.0;
        r.peak_memory_bytes = None;
    }
    rows
}

#[test]
fn killed_sweep_resumes_and_skips_finished_cells() {
    let model = tmp("model-a");
    tiny_model(&model);
    let out = tmp("resume");
    let mut child = sweep_cmd(&model, &out, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while finished_cells(&out).len() < 2 && t0.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    let done_before = finished_cells(&out);
    assert!(
        done_before.len() >= 2 && done_before.len() < 4,
        "killed with {} cells finished",
        done_before.len()
    );
    let o = sweep_cmd(&model, &out, &[]).output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    for (name, _) in &done_before {
        assert!(
            log.contains(&format!("{name}: finished earlier, skipped")),
            "{log}"
        );
    }
    let after = finished_cells(&out);
    assert_eq!(after.len(), 4);
    for (name, t) in &done_before {
        let (_, t2) = after.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(t, t2, "{name} was rerun");
    }
    assert_eq!(rows(&out).len(), 4);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("dora-vs-lora") && html.contains("#v1."));
    assert!(out.join("plots/sst-score-vs-rank.svg").is_file());
    let png = std::fs::read(out.join("plots/sst-score-vs-rank.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000);

    // An ensemble of two cells reports member and ensemble scores.
    let data = data_dir().unwrap();
    let ensemble = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lorabert"))
            .args(["ensemble", "--max-eval", "8"])
            .args(extra)
            .arg("--model")
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .arg("--checkpoint")
            .arg(out.join("cells/sst-lora-all-linear-r1-f32-s42"))
            .arg("--checkpoint")
            .arg(out.join("cells/sst-dora-all-linear-r2-f32-s42"))
            .output()
            .unwrap()
    };
    let o = ensemble(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 2);
    let acc = v["ensemble"]["sst_acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    // --precision as eval takes it: f16 on the CPU falls back to f32, or is refused when exact.
    let o = ensemble(&["--precision", "f16", "--exact-precision"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("refusing to fall back to f32"),
        "{err}"
    );
    for d in [model, out] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn two_shards_merged_equal_the_unsharded_sweep() {
    let model = tmp("model-b");
    tiny_model(&model);
    let (full, s0, s1, merged) = (tmp("full"), tmp("s0"), tmp("s1"), tmp("merged"));
    for (out, extra) in [
        (&full, vec![]),
        (&s0, vec!["--shard", "0/2"]),
        (&s1, vec!["--shard", "1/2"]),
    ] {
        let o = sweep_cmd(&model, out, &extra).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(rows(&s0).len(), 2);
    assert_eq!(rows(&s1).len(), 2);
    let o = Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args(["sweep-merge", "--out"])
        .arg(&merged)
        .arg(&s0)
        .arg(&s1)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(outcome(rows(&merged)), outcome(rows(&full)));
    assert!(merged.join("report.html").is_file());
    for d in [model, full, s0, s1, merged] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Sweeps, their report and share link, and ensembles take the embedding and token
/// classification kinds: each cell's score is its best-model metric (`ndcg@10`, seqeval's
/// `f1`), named in `sweep.csv`, on the score chart and in the link (with the data's kind);
/// `ensemble` of the two cells reports the kind's metrics for each member (equal to the cell's
/// own `eval`) and for the ensemble (mean embeddings; mean token probabilities).
#[test]
fn sweeps_reports_links_and_ensembles_take_embeddings_and_tags() {
    let model = tmp("model-kinds");
    tiny_model(&model);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let pairs = root.join("embedding/pairs.csv");
    let (conll, dev) = (root.join("token/train.conll"), root.join("token/dev.conll"));
    for (name, train, validation, metric, kind) in [
        ("emb", &pairs, &pairs, "ndcg@10", "embedding"),
        ("tok", &conll, &dev, "f1", "token-classification"),
    ] {
        let out = tmp(&format!("kinds-{name}"));
        let o = Command::new(env!("CARGO_BIN_EXE_lorabert"))
            .args([
                "sweep",
                "--tasks",
                "own",
                "--ranks",
                "1,2",
                "--adapters",
                "lora",
            ])
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&out)
            .args([
                "--",
                "--max-steps",
                "2",
                "--batch-size",
                "8",
                "--threads",
                "1",
            ])
            .arg("--train-file")
            .arg(train)
            .arg("--validation-file")
            .arg(validation)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{name}: {stderr}");
        let rows = rows(&out);
        assert_eq!(rows.len(), 2, "{name}");
        let mut cells = Vec::new();
        for row in &rows {
            assert_eq!(row.metric.as_deref(), Some(metric), "{name}");
            let cell = out.join("cells").join(&row.cell);
            let r: lorabert::train::RunResults =
                serde_json::from_slice(&std::fs::read(cell.join("results.json")).unwrap()).unwrap();
            let best = r.best.as_ref().unwrap().own.as_ref().unwrap();
            assert_eq!(best.get(metric), Some(row.score), "{name}: {}", row.cell);
            cells.push(cell);
        }
        let chart = std::fs::read_to_string(out.join("plots/own-score-vs-rank.svg")).unwrap();
        assert!(
            chart.contains(metric),
            "{name}: the chart does not name {metric}"
        );
        let link = stderr
            .lines()
            .find_map(|l| l.strip_prefix("share: "))
            .expect("a share link");
        let p = lorabert::report::share::decode(link).unwrap();
        assert_eq!(
            p.data.as_ref().map(|d| d.kind.as_str()),
            Some(kind),
            "{name}"
        );
        assert!(p.rows.iter().all(|r| r.metric.as_deref() == Some(metric)));
        let mut ens = Command::new(env!("CARGO_BIN_EXE_lorabert"));
        ens.arg("ensemble").arg("--model").arg(&model);
        for c in &cells {
            ens.arg("--checkpoint").arg(c);
        }
        let o = ens
            .arg("--validation-file")
            .arg(validation)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for (i, c) in cells.iter().enumerate() {
            let o = Command::new(env!("CARGO_BIN_EXE_lorabert"))
                .arg("eval")
                .arg("--model")
                .arg(&model)
                .arg("--checkpoint")
                .arg(c)
                .arg("--validation-file")
                .arg(validation)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let member = v["members"][i]["dev"]["own"][metric].as_f64().unwrap();
            let own = e["own"][metric].as_f64();
            assert_eq!(Some(member), own, "{name}: member {i} vs eval:\n{e}");
        }
        let m = v["ensemble"]["own"][metric].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&m), "{name}: {m}");
        let _ = std::fs::remove_dir_all(out);
    }
    let _ = std::fs::remove_dir_all(model);
}
