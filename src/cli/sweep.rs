//! `lorabert sweep`, `sweep-merge`, `report` and `ensemble`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::args::{AdapterArg, SweepTaskArg};
use super::eval::write_predictions;
use super::load::{checkpoint_dir, data_file, load_own_file, load_split, load_trained};
use super::{ModelArgs, io};
use crate::report::claims::claims;
use crate::report::html::{charts, render, report_html, share_payload};
use crate::report::share::SharedData;
use crate::report::sweep::{
    Cell, SweepRow, grid, parse_ranks, parse_shard, rows_from_csv, rows_to_csv, shard,
};
use crate::tasks::HeadsConfig;
use crate::tasks::minbert::Split;
use crate::tasks::own::OwnTask;
use crate::tasks::{Task, TaskData};
use crate::train::RunResults;
use crate::train::artifacts::names;
use crate::train::evaluate::record;
use crate::train::{DevMetrics, Predictions, predict};

/// `lorabert sweep`.
#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Output folder: cells/<cell>/ (one training run each), sweep.csv, plots/, report.html.
    #[arg(long)]
    out: PathBuf,
    /// Tasks (sst, para, sts, multi; own with `-- --train-file FILE`).
    #[arg(long, value_delimiter = ',', default_value = "sst")]
    tasks: Vec<SweepTaskArg>,
    /// Adapters (lora, dora, none).
    #[arg(long, value_delimiter = ',', default_value = "lora,dora")]
    adapters: Vec<AdapterArg>,
    /// Target sets: attention (query,key,value,attention.output.dense), all-linear, or a
    /// `+`-joined module list.
    #[arg(long, value_delimiter = ',', default_value = "all-linear")]
    targets: Vec<String>,
    /// Ranks: a list (1,2,4,8) or an inclusive range (1..8).
    #[arg(long, default_value = "1,2,4,8")]
    ranks: String,
    /// Precisions (f32; f16 where the backend offers it).
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    precision: Vec<String>,
    /// Seeds.
    #[arg(long, value_delimiter = ',', default_value = "42")]
    seeds: Vec<u64>,
    /// Run only shard i of n (0-based `i/n`): every n-th cell starting at i.
    #[arg(long)]
    shard: Option<String>,
    /// Model folder passed to every run.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Data folder passed to every run.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Base URL of the web page for the report's share link.
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    share_base_url: String,
    /// Further `lorabert train` options for every cell, after `--` (e.g. `-- --epochs 1 --max-steps 200`).
    #[arg(last = true)]
    train_args: Vec<String>,
}

/// A finished cell's results, if any.
fn finished(dir: &Path) -> Option<RunResults> {
    let bytes = std::fs::read(dir.join("results.json")).ok()?;
    let r = RunResults::from_json(&bytes, "results.json").ok()?;
    r.finished.then_some(r)
}

/// Sorts rows in a canonical order so sharded-and-merged and unsharded sweeps compare equal.
fn sort_rows(rows: &mut [SweepRow]) {
    rows.sort_by(|a, b| {
        (&a.task, &a.targets, &a.adapter, a.r, &a.precision, a.seed).cmp(&(
            &b.task,
            &b.targets,
            &b.adapter,
            b.r,
            &b.precision,
            b.seed,
        ))
    });
}

/// Runs one cell's training in a child process (continuing from its resume checkpoint when it
/// has one), its log in `dir/train.log`. Whether the cell finished: by this run, or by an
/// orphaned run of the same cell that held the folder's lock first.
///
/// # Errors
/// When the folder or log cannot be created or the child cannot start.
fn run_cell(exe: &Path, cell: &Cell, dir: &Path, a: &SweepArgs) -> Result<bool> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::File::create(dir.join("train.log"))?;
    let mut cmd = if dir.join("resume").join("state.json").is_file() {
        eprintln!("  continuing from its resume checkpoint");
        resume_command(exe, dir, a)
    } else {
        train_command(exe, cell, dir, a)
    };
    let status = cmd
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if status.success() {
        return Ok(true);
    }
    // Lost a race with an orphaned run of this cell that took the folder's lock first: wait for
    // it, and count the cell as done when it finished.
    super::io::wait_while_locked(dir, &format!("  {}", cell.name()));
    if finished(dir).is_some() {
        eprintln!("  {}: finished by another process", cell.name());
        return Ok(true);
    }
    eprintln!(
        "  {} failed ({status}); see {}",
        cell.name(),
        dir.join("train.log").display()
    );
    Ok(false)
}

/// Runs (or resumes) a sweep.
pub fn sweep(a: SweepArgs) -> Result<()> {
    if a.tasks.contains(&SweepTaskArg::Own) && !a.train_args.iter().any(|x| x == "--train-file") {
        bail!("--tasks own trains on your file: add `-- --train-file FILE` (and its options)");
    }
    let names = |v: Vec<&'static str>| v.into_iter().map(String::from).collect::<Vec<_>>();
    let ranks = parse_ranks(&a.ranks).map_err(|e| anyhow::anyhow!("--{e}"))?;
    let mut cells = grid(
        &names(a.tasks.iter().map(|t| t.name()).collect()),
        &names(a.adapters.iter().map(|t| t.name()).collect()),
        &a.targets,
        &ranks,
        &a.precision,
        &a.seeds,
    );
    if let Some(s) = &a.shard {
        let (i, n) = parse_shard(s)?;
        cells = shard(&cells, i, n);
    }
    let exe = std::env::current_exe().context("cannot locate the lorabert executable")?;
    let cells_dir = a.out.join("cells");
    std::fs::create_dir_all(&cells_dir)
        .with_context(|| format!("cannot create {}", cells_dir.display()))?;
    check_options(&a)?;
    let gpu = a.train_args.iter().any(|x| x == "wgpu");
    if let Some(first) = cells
        .iter()
        .find(|c| finished(&cells_dir.join(c.name())).is_none() && (c.precision == "f32" || gpu))
    {
        check_first_cell(&exe, first, &cells_dir.join(first.name()), &a)?;
    }
    let mut failed = Vec::new();
    for (k, cell) in cells.iter().enumerate() {
        let dir = cells_dir.join(cell.name());
        // E.g. the child of a sweep that was killed (its training process lives on).
        super::io::wait_while_locked(
            &dir,
            &format!("[{}/{}] {}", k + 1, cells.len(), cell.name()),
        );
        if finished(&dir).is_some() {
            eprintln!(
                "[{}/{}] {}: finished earlier, skipped",
                k + 1,
                cells.len(),
                cell.name()
            );
            continue;
        }
        if cell.precision != "f32" && !a.train_args.iter().any(|x| x == "wgpu") {
            eprintln!(
                "[{}/{}] {}: precision {} needs a wgpu device (`-- --backend wgpu`), skipped",
                k + 1,
                cells.len(),
                cell.name(),
                cell.precision
            );
            continue;
        }
        eprintln!("[{}/{}] {}: training", k + 1, cells.len(), cell.name());
        if !run_cell(&exe, cell, &dir, &a)? {
            failed.push(cell.name());
            continue;
        }
        write_sweep_csv(&a.out, &cells)?;
    }
    let rows = write_sweep_csv(&a.out, &cells)?;
    eprintln!(
        "{} of {} cells finished; table in {}",
        rows.len(),
        cells.len(),
        a.out.join("sweep.csv").display()
    );
    write_report(
        &a.out,
        &a.share_base_url,
        a.model
            .as_deref()
            .map(|p| p.display().to_string())
            .as_deref(),
    )?;
    if !failed.is_empty() {
        bail!("{} cells failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// The `lorabert train` child process of `cell`, writing into `dir`.
fn train_command(exe: &Path, cell: &Cell, dir: &Path, a: &SweepArgs) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("train");
    if cell.task != "own" {
        cmd.args(["--task", &cell.task]); // own data: the --train-file after `--`
    }
    cmd.args(["--adapter", &cell.adapter, "--seed", &cell.seed.to_string()]);
    if cell.adapter != "none" {
        cmd.args([
            "--r",
            &cell.r.to_string(),
            "--target-modules",
            &cell.target_modules().join(","),
        ]);
    }
    // The cell's folder is the sweep's own: an earlier unfinished attempt is replaced (one with
    // a resume checkpoint is continued instead, see `resume_command`).
    cmd.arg("--out").arg(dir).arg("--overwrite");
    if cell.precision != "f32" {
        cmd.args(["--precision", &cell.precision, "--exact-precision"]);
    }
    if let Some(m) = &a.model {
        cmd.arg("--model").arg(m);
    }
    if let Some(d) = &a.data {
        cmd.arg("--data").arg(d);
    }
    cmd.args(&a.train_args);
    cmd
}

/// `lorabert train --resume DIR` for a cell interrupted with a resume checkpoint.
fn resume_command(exe: &Path, dir: &Path, a: &SweepArgs) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("train").arg("--resume").arg(dir);
    if let Some(m) = &a.model {
        cmd.arg("--model").arg(m);
    }
    if let Some(d) = &a.data {
        cmd.arg("--data").arg(d);
    }
    // Of the options after `--`, only those that say where and how to run apply to a resume.
    let mut args = a.train_args.iter();
    while let Some(x) = args.next() {
        if ["--threads", "--backend", "--model", "--data"].contains(&x.as_str()) {
            cmd.arg(x);
            if let Some(v) = args.next() {
                cmd.arg(v);
            }
        }
    }
    cmd
}

/// The options a sweep folder was started with (`OUT/sweep.json`): a re-run with other
/// options after `--`, or another model or data folder, would mix two sweeps in one table.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct SweepOptions {
    model: Option<PathBuf>,
    data: Option<PathBuf>,
    train_args: Vec<String>,
}

/// Records the sweep's options in `OUT/sweep.json`, or refuses when they differ from those
/// recorded there.
fn check_options(a: &SweepArgs) -> Result<()> {
    let now = SweepOptions {
        model: a.model.clone(),
        data: a.data.clone(),
        train_args: a.train_args.clone(),
    };
    let path = a.out.join("sweep.json");
    if let Ok(bytes) = std::fs::read(&path) {
        let then: SweepOptions = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a sweep's options", path.display()))?;
        if then != now {
            bail!(
                "{} was started with other options ({}): finish it with those, or use another --out",
                a.out.display(),
                serde_json::to_string(&then)?
            );
        }
        return Ok(());
    }
    io::write_atomic(&path, &serde_json::to_vec_pretty(&now)?)?;
    Ok(())
}

/// Runs the first cell's training command with `--check-only`, so options or data that every
/// cell would fail on are reported once, before any cell starts.
fn check_first_cell(exe: &Path, cell: &Cell, dir: &Path, a: &SweepArgs) -> Result<()> {
    let o = train_command(exe, cell, dir, a)
        .arg("--check-only")
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !o.status.success() {
        bail!(
            "the cells' training options fail ({}):\n{}",
            cell.name(),
            String::from_utf8_lossy(&o.stderr).trim_end()
        );
    }
    Ok(())
}

/// Rewrites `sweep.csv` from the finished cells' `results.json`; returns its rows.
fn write_sweep_csv(out: &Path, cells: &[Cell]) -> Result<Vec<SweepRow>> {
    let mut rows = Vec::new();
    for c in cells {
        if let Some(r) = finished(&out.join("cells").join(c.name())) {
            rows.push(SweepRow::from_results(c, &r)?);
        }
    }
    sort_rows(&mut rows);
    io::write_atomic(&out.join("sweep.csv"), rows_to_csv(&rows)?.as_bytes())?;
    Ok(rows)
}

/// `lorabert sweep-merge`.
#[derive(Args, Debug)]
pub struct MergeSweepArgs {
    /// Merged output folder.
    #[arg(long)]
    out: PathBuf,
    /// Shard output folders.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
}

/// Joins shard folders: union of their sweep.csv rows (canonical order) and their cells'
/// results.json files, then the report.
pub fn sweep_merge(a: MergeSweepArgs) -> Result<()> {
    let mut rows: Vec<SweepRow> = Vec::new();
    for s in &a.shards {
        let p = s.join("sweep.csv");
        let bytes = io::read(&p)?;
        for r in rows_from_csv(&bytes, &p.display().to_string())? {
            if let Some(old) = rows.iter().find(|o| o.cell == r.cell) {
                if old != &r {
                    eprintln!("{}: in several shards; keeping the first", r.cell);
                }
                continue;
            }
            let src = s.join("cells").join(&r.cell).join("results.json");
            if src.is_file() {
                io::write_atomic(
                    &a.out.join("cells").join(&r.cell).join("results.json"),
                    &io::read(&src)?,
                )?;
            }
            rows.push(r);
        }
    }
    sort_rows(&mut rows);
    io::write_atomic(&a.out.join("sweep.csv"), rows_to_csv(&rows)?.as_bytes())?;
    eprintln!(
        "merged {} rows from {} shards into {}",
        rows.len(),
        a.shards.len(),
        a.out.join("sweep.csv").display()
    );
    write_report(&a.out, "http://127.0.0.1:8080/", None)
}

/// `lorabert report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Sweep folder (with sweep.csv).
    dir: PathBuf,
    /// Base URL of the web page for the share link.
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    share_base_url: String,
}

/// Renders an SVG chart to PNG bytes with resvg (text with the system fonts; without any font
/// the labels are left out).
fn svg_to_png(svg: &str, opt: &resvg::usvg::Options) -> Result<Vec<u8>> {
    let tree = resvg::usvg::Tree::from_str(svg, opt).context("cannot parse a chart's SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .context("a chart has an empty size")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("cannot encode a chart as PNG")
}

/// Writes plots/*.svg, plots/*.png and report.html for a sweep folder.
pub fn report(a: ReportArgs) -> Result<()> {
    write_report(&a.dir, &a.share_base_url, None)
}

fn write_report(dir: &Path, base_url: &str, model: Option<&str>) -> Result<()> {
    let p = dir.join("sweep.csv");
    let rows = rows_from_csv(&io::read(&p)?, &p.display().to_string())?;
    if rows.is_empty() {
        eprintln!("{}: no finished cells yet, no report", p.display());
        return Ok(());
    }
    let mut curves = BTreeMap::new();
    let mut model_name = model.map(str::to_string);
    let mut data = None;
    for r in &rows {
        if let Some(res) = finished(&dir.join("cells").join(&r.cell)) {
            model_name.get_or_insert(res.model.clone());
            if data.is_none() {
                data = res
                    .data
                    .as_ref()
                    .zip(res.config.own.as_ref())
                    .map(|(d, o)| SharedData {
                        file: Path::new(&d.train_file)
                            .file_name()
                            .map_or(d.train_file.clone(), |f| f.to_string_lossy().to_string()),
                        kind: o.kind.name().into(),
                        train_rows: d.train.rows as u64,
                        validation_rows: d.validation_labels.rows as u64,
                    });
            }
            curves.insert(r.cell.clone(), res.loss_curve);
        }
    }
    let model_name = model_name.unwrap_or_default();
    let short = Path::new(&model_name)
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or(model_name.clone());
    let svgs = render(&charts(&rows, &curves));
    let mut opt = resvg::usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_system_fonts();
    // The charts ask for `sans-serif`; map it to a sans face that is installed.
    let families: Vec<String> = db
        .faces()
        .flat_map(|f| f.families.iter().map(|(n, _)| n.clone()))
        .collect();
    let sans = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial"]
        .iter()
        .find(|w| families.iter().any(|n| n == *w))
        .map(|s| s.to_string())
        .or_else(|| families.first().cloned());
    if let Some(f) = sans {
        db.set_sans_serif_family(f);
    }
    for (name, s) in &svgs {
        io::write_atomic(&dir.join("plots").join(name), s.as_bytes())?;
        let png = Path::new(name).with_extension("png");
        io::write_atomic(&dir.join("plots").join(png), &svg_to_png(s, &opt)?)?;
    }
    let claims = claims(&rows);
    let mut payload = share_payload(&short, &rows);
    payload.data = data;
    let link = crate::report::share::link(base_url, &payload).ok();
    let html = report_html(
        &format!("lorabert sweep: {short}"),
        &rows,
        &svgs,
        &claims,
        link.as_deref(),
    );
    io::write_atomic(&dir.join("report.html"), html.as_bytes())?;
    let md = claims
        .iter()
        .map(|c| {
            format!(
                "- **{}**: {} (cells: {})\n",
                c.id,
                c.text,
                c.cells.join(", ")
            )
        })
        .collect::<String>();
    io::write_atomic(&dir.join("claims.md"), md.as_bytes())?;
    eprintln!(
        "report: {} ({} charts in {})",
        dir.join("report.html").display(),
        svgs.len(),
        dir.join("plots").display()
    );
    for c in &claims {
        eprintln!("  {}: {}", c.id, c.text);
    }
    if let Some(l) = link {
        eprintln!("share: {l}");
    }
    Ok(())
}

/// `lorabert ensemble`.
#[derive(Args, Debug)]
pub struct EnsembleArgs {
    #[command(flatten)]
    pub(super) model: ModelArgs,
    /// Checkpoints (run folders or best/ folders) to combine; at least two.
    #[arg(long = "checkpoint", required = true, num_args = 1..)]
    checkpoints: Vec<PathBuf>,
    /// Folder with the minBERT files.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Own-data checkpoints (all of the same task): the labelled file to evaluate on.
    #[arg(long)]
    validation_file: Option<PathBuf>,
    #[command(flatten)]
    file: super::load::FileArgs,
    /// Use at most this many dev examples per task.
    #[arg(long)]
    max_eval: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Write test-set predictions of the ensemble here (minBERT CSV format).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    precision: super::precision::InferencePrecision,
}

fn average(preds: &[Predictions]) -> Predictions {
    let n = preds.len() as f32;
    let mut values = vec![0.0f32; preds[0].values.len()];
    for p in preds {
        for (v, x) in values.iter_mut().zip(&p.values) {
            *v += x / n;
        }
    }
    Predictions {
        kind: preds[0].kind.clone(),
        ids: preds[0].ids.clone(),
        values,
        width: preds[0].width,
    }
}

/// The members' shared own-data task, checked before any member is loaded: all members are
/// own-data checkpoints of the same kind and classes (and then a --validation-file is given),
/// or none is.
fn ensemble_task(a: &EnsembleArgs) -> Result<Option<OwnTask>> {
    let mut tasks = Vec::new();
    for ck in &a.checkpoints {
        let path = checkpoint_dir(ck)?.join(names::HEADS_CONFIG);
        let heads: HeadsConfig = serde_json::from_slice(&io::read(&path)?)
            .with_context(|| format!("{} is not a heads configuration", path.display()))?;
        tasks.push((ck, heads.own));
    }
    let (first_ck, first) = &tasks[0];
    for (ck, t) in &tasks[1..] {
        let describe = |t: &Option<OwnTask>| match t {
            None => "minBERT tasks".to_string(),
            Some(o) => o.kind.describe(),
        };
        let same = match (first, t) {
            (None, None) => true,
            (Some(x), Some(y)) => x.kind == y.kind && x.is_pair() == y.is_pair(),
            _ => false,
        };
        if !same {
            bail!(
                "{} ({}) and {} ({}) predict different things: an ensemble averages members of one task",
                first_ck.display(),
                describe(first),
                ck.display(),
                describe(t)
            );
        }
    }
    if first.is_some() && a.validation_file.is_none() {
        bail!("own-data checkpoints are compared on a labelled file: pass --validation-file FILE");
    }
    Ok(first.clone())
}

/// Averages the members' task probabilities (SST, Quora) and similarity scores (STS), reports
/// the dev metrics of every member and of the ensemble, and optionally writes test predictions.
pub fn ensemble(a: EnsembleArgs) -> Result<()> {
    if a.checkpoints.len() < 2 {
        bail!("an ensemble needs at least two --checkpoint folders");
    }
    ensemble_task(&a)?;
    let (device, _) = super::devices(a.model.backend, 0)?;
    let data_dir = match &a.validation_file {
        None => Some(io::resolve_data(a.data.as_deref())?),
        Some(_) => None,
    };
    let mut dev_preds: BTreeMap<Task, Vec<Predictions>> = BTreeMap::new();
    let mut test_preds: BTreeMap<Task, Vec<Predictions>> = BTreeMap::new();
    let mut dev_gold: BTreeMap<Task, TaskData> = BTreeMap::new();
    let mut report = Vec::new();
    for ck in &a.checkpoints {
        let (loaded, mut model, heads) = load_trained(&a.model, ck, &device)?;
        model.bert = a.precision.apply(model.bert, &device)?.0;
        let pad = loaded.pad_id();
        let mut m = DevMetrics::default();
        for &task in &heads.tasks {
            let dev = match (&heads.own, &a.validation_file, &data_dir) {
                (Some(o), Some(f), _) => {
                    load_own_file(f, &a.file, o, &loaded, heads.pair_encoding, a.max_eval)?
                }
                (Some(_), None, _) => {
                    bail!("own-data checkpoints are compared on --validation-file FILE")
                }
                (None, _, Some(dir)) => load_split(
                    dir,
                    task,
                    Split::Dev,
                    &loaded,
                    heads.pair_encoding,
                    a.max_eval,
                )?,
                (None, _, None) => bail!(
                    "{}: a minBERT checkpoint among own-data ones (--validation-file)",
                    ck.display()
                ),
            };
            let p = pollster::block_on(predict(&model, &dev, a.batch_size, pad))?;
            record(&mut m, &p, &dev, false);
            dev_preds.entry(task).or_default().push(p);
            dev_gold.entry(task).or_insert(dev);
            let Some(data_dir) = &data_dir else { continue };
            if a.out.is_some() && data_file(data_dir, task, Split::Test).is_some() {
                let test = load_split(
                    data_dir,
                    task,
                    Split::Test,
                    &loaded,
                    heads.pair_encoding,
                    None,
                )?;
                test_preds
                    .entry(task)
                    .or_default()
                    .push(pollster::block_on(predict(
                        &model,
                        &test,
                        a.batch_size,
                        pad,
                    ))?);
            }
        }
        eprintln!("{}: {m}", ck.display());
        report.push((ck.display().to_string(), m));
    }
    let mut ens = DevMetrics::default();
    for (task, preds) in &dev_preds {
        let (avg, gold) = (average(preds), &dev_gold[task]);
        record(&mut ens, &avg, gold, false);
    }
    eprintln!("ensemble of {}: {ens}", a.checkpoints.len());
    let json = serde_json::json!({
        "members": report.iter().map(|(c, m)| serde_json::json!({"checkpoint": c, "dev": m})).collect::<Vec<_>>(),
        "ensemble": ens,
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    if let Some(out) = &a.out {
        io::write_atomic(
            &out.join("ensemble.json"),
            serde_json::to_string_pretty(&json)?.as_bytes(),
        )?;
        for preds in test_preds.values() {
            write_predictions(out, "test", &average(preds))?;
        }
    }
    Ok(())
}
