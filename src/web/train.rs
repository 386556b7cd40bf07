//! The page's training job: the form's fields into one [`Job`] per (adapter, rank) of a grid,
//! each run with a [`WebObserver`], each finished run recorded in the results table.

use wasm_bindgen_futures::spawn_local;

use super::dom::{input, log, num, opt_float, opt_num, report, set_text, status};
use super::load::{GpuInfo, ModelBytes, gpu, load_data, load_model};
use super::observer::WebObserver;
use super::results::{RunRecord, render_runs, rows, save_runs};
use super::{STATE, STOP, owndata, tryit};
use crate::adapter::LoraConfig;
use crate::error::{Error, Result};
use crate::model::AdapterKind;
use crate::report::share::{ShareRow, ShareRunConfig, SharedData};
use crate::tasks::{PairEncoding, Pooling, Task};
use crate::train::memory::{largest_tensor_bytes, sequences_per_example};
use crate::train::{
    Controls, DevMetrics, Job, Precision, RunResults, TrainConfig, resolve_precision,
};

/// LoRA and DoRA at each of `ranks`.
pub fn lora_dora_grid(ranks: &[usize]) -> Vec<(AdapterKind, usize)> {
    [AdapterKind::Lora, AdapterKind::Dora]
        .into_iter()
        .flat_map(|a| ranks.iter().map(move |&r| (a, r)))
        .collect()
}

/// Starts training the `(adapter, rank)` grid in the background, unless a job is running.
pub fn start_job(grid: Vec<(AdapterKind, usize)>) {
    if STATE.with(|s| s.borrow().busy) {
        return;
    }
    STATE.with(|s| s.borrow_mut().busy = true);
    STOP.with(|s| s.set(false));
    set_text("error", "");
    // While it trains, Start and Sweep wait; Stop is what can be pressed.
    owndata::set_startable(false);
    set_stop_button("Stop", true);
    spawn_local(async move {
        let r = train_grid(grid).await;
        STATE.with(|s| s.borrow_mut().busy = false);
        owndata::set_startable(true);
        set_stop_button("Stop", false);
        if STOP.with(|s| s.get()) {
            status("stopped; finished runs are kept");
        }
        report(r);
    });
}

/// Sets the Stop button's text and whether it can be pressed.
pub fn set_stop_button(text: &str, enabled: bool) {
    if let Some(e) = super::dom::el("stop") {
        e.set_inner_text(text);
        if enabled {
            let _ = e.remove_attribute("disabled");
        } else {
            let _ = e.set_attribute("disabled", "");
        }
    }
}

/// The task picked on the page.
fn task() -> Result<Task> {
    match input("task").as_str() {
        "sst" => Ok(Task::Sst),
        "para" => Ok(Task::Para),
        "sts" => Ok(Task::Sts),
        t => Err(Error::Invalid(format!("unknown task `{t}`"))),
    }
}

/// The run configuration of the form's fields (LoRA at r = 1; the grid sets both), not yet
/// validated (own data sets its task first).
fn form_config(t: Task, precision: Precision) -> Result<TrainConfig> {
    Ok(TrainConfig {
        tasks: vec![t],
        adapter: Some(LoraConfig {
            r: 1,
            lora_alpha: num("alpha", "lora_alpha")?,
            lora_dropout: 0.0,
            use_rslora: false,
            use_dora: false,
            target_modules: crate::adapter::target_set(&input("targets")),
            ..LoraConfig::default()
        }),
        epochs: num("epochs", "epochs")?,
        batch_size: num("batch", "batch size")?,
        lr: num("lr", "learning rate")?,
        max_len: num("max-len", "max length")?,
        max_steps: opt_num("max-steps", "max steps")?,
        pooling: Pooling::Mean,
        pair_encoding: PairEncoding::Bi,
        checkpoint_every: 0,
        eval_batch_size: 64,
        precision,
        controls: Controls {
            eval_steps: opt_num("eval-steps", "evaluate every")?,
            early_stopping_patience: opt_num("patience", "early-stopping patience")?,
            loraplus_lr_ratio: opt_float("loraplus", "LoRA+ ratio")?,
            ..Controls::default()
        },
        ..TrainConfig::default()
    })
}

/// Refuses a batch whose largest buffer exceeds the device's `maxStorageBufferBindingSize`,
/// naming the largest batch that fits.
fn check_buffer(g: &GpuInfo, model: &ModelBytes, cfg: &TrainConfig) -> Result<()> {
    let Some(limit) = g.max_buffer else {
        return Ok(());
    };
    let per_example = sequences_per_example(cfg);
    let need = |batch: usize| largest_tensor_bytes(&model.cfg, batch * per_example, cfg.max_len);
    if need(cfg.batch_size) <= limit {
        return Ok(());
    }
    let mut fit = cfg.batch_size;
    while fit > 1 && need(fit) > limit {
        fit -= 1;
    }
    Err(Error::Invalid(format!(
        "batch {} × {} tokens needs a {} MiB buffer but this device allows {} MiB; the largest batch that fits is {fit}",
        cfg.batch_size,
        cfg.max_len,
        need(cfg.batch_size) >> 20,
        limit >> 20
    )))
}

/// What a run's share row records beside its configuration: the form's target modules (as
/// typed), the row limits and the data URL (minBERT data only).
struct RowContext {
    targets: String,
    max_train: Option<usize>,
    max_dev: Option<usize>,
    data_url: Option<String>,
}

/// The share row of a finished run of `cfg` at rank `r` with its best dev metrics `best`.
fn share_row(
    cfg: &TrainConfig,
    results: &RunResults,
    best: &DevMetrics,
    r: usize,
    ctx: &RowContext,
) -> ShareRow {
    ShareRow {
        task: cfg.task_names(),
        adapter: cfg.adapter_name().into(),
        targets: ctx.targets.clone(),
        r: r as u32,
        precision: cfg.precision.name().into(),
        seed: cfg.seed,
        score: best.primary().clamp(-1.0, 1.0),
        seconds_per_epoch: results.mean_seconds_per_epoch(),
        peak_memory_bytes: results.peak_memory_bytes.unwrap_or(0),
        trainable_params: results.params.trainable as u64,
        metric: cfg.own.as_ref().map(|o| o.metric_for_best_model.clone()),
        config: Some(ShareRunConfig {
            alpha: cfg.adapter.as_ref().map_or(8.0, |a| a.lora_alpha),
            epochs: cfg.epochs as u32,
            max_steps: cfg.max_steps.map(|s| s as u64),
            batch: cfg.batch_size as u32,
            max_len: cfg.max_len as u32,
            lr: cfg.lr,
            max_train: ctx.max_train.map(|n| n as u64),
            max_dev: ctx.max_dev.map(|n| n as u64),
            data_url: ctx.data_url.clone(),
            eval_steps: cfg.controls.eval_steps.map(|n| n as u64),
            patience: cfg.controls.early_stopping_patience.map(|n| n as u64),
            loraplus: cfg.controls.loraplus_lr_ratio,
        }),
    }
}

/// Keeps a run's best checkpoint `files` in the browser's store under a new id (returned), so
/// Try it and Download work after a reload; a failure is logged and gives `None`.
async fn keep_checkpoint(label: &str, files: &crate::train::artifacts::Files) -> Option<String> {
    let id = format!("run-{}", js_sys::Date::now() as u64);
    match super::cache::store_checkpoint(&id, files).await {
        Ok(()) => Some(id),
        Err(e) => {
            log(&format!(
                "{label}: the checkpoint is not kept for a reload: {e}"
            ));
            None
        }
    }
}

/// Trains one configuration per (adapter, rank) in `grid` and records each run.
async fn train_grid(grid: Vec<(AdapterKind, usize)>) -> Result<()> {
    let g = gpu().await;
    let model = match STATE.with(|s| s.borrow().model.clone()) {
        Some(m) => m,
        None => load_model().await?,
    };
    let own_data = owndata::selected();
    let t = if own_data { Task::Own } else { task()? };
    let requested = match input("precision").as_str() {
        "f16" => Precision::F16,
        _ => Precision::F32,
    };
    let (precision, notice) = resolve_precision(requested, &g.device);
    let mut form = form_config(t, precision)?;
    if let Some(why) = notice {
        log(&format!("{why}: training in f32"));
    }
    let pretrained = model.pretrained(form.max_len)?;
    let (max_train, max_dev) = (
        opt_num("max-train", "max train rows")?,
        opt_num("max-dev", "max dev rows")?,
    );
    let (train, dev, shared) = if own_data {
        let (spec, d) = owndata::load(&pretrained.tokenizer, form.seed, max_train, max_dev).await?;
        let shared = SharedData {
            file: spec.train_file.clone(),
            kind: d.task.kind.name().into(),
            train_rows: d.train.examples.len() as u64,
            validation_rows: d.dev.examples.len() as u64,
        };
        form.data = Some(spec);
        form.own = Some(d.task);
        (d.train, d.dev, Some(shared))
    } else {
        let (train, dev) = load_data(t, &pretrained.tokenizer, max_train, max_dev).await?;
        (train, dev, None)
    };
    let form = form.validated()?;
    check_buffer(&g, &model, &form)?;
    let ctx = RowContext {
        targets: input("targets"),
        max_train,
        max_dev,
        data_url: (!own_data).then(|| input("data-url")),
    };
    STATE.with(|s| s.borrow_mut().shared_data = shared);
    // An embedding run is tried by searching: the training file's positives are offered as the
    // corpus, its first anchor as the query.
    let embedding = form
        .own
        .as_ref()
        .filter(|o| matches!(o.kind, crate::tasks::own::TaskKind::Embedding { .. }));
    if let Some((docs, query)) = embedding.and_then(owndata::search_corpus) {
        super::search::offer_corpus(&docs, &query);
    }
    let backend = if g.gpu { "webgpu" } else { "flex (wasm CPU)" };
    for (adapter, r) in grid {
        if STOP.with(|s| s.get()) {
            break;
        }
        let cfg = form.clone().with_adapter(r, adapter == AdapterKind::Dora)?;
        // Seeded as the CLI seeds (`cli::devices`): the plain device and its autodiff twin.
        g.device.seed(cfg.seed);
        let device = g.device.clone().autodiff();
        device.seed(cfg.seed);
        let label = format!("{} r={r}", adapter.name());
        status(&format!("{label}: building the model ..."));
        let bert = pretrained.encoder(&model.weights, "model.safetensors", &device)?;
        let (train, dev) = (vec![train.clone()], vec![dev.clone()]);
        let mut job = Job::new(cfg, &pretrained, bert, train, dev, backend, &device)?;
        let mut obs = WebObserver::new(&label, &device);
        let results = job
            .run(&mut obs)
            .await
            .inspect_err(|_| log(&format!("{label}: the run failed")))?;
        let Some(best) = results.best.clone() else {
            continue;
        };
        let mut rec = RunRecord {
            row: share_row(&job.trainer.cfg, &results, &best, r, &ctx),
            loss_curve: results.loss_curve.clone(),
            examples_per_second: results.mean_examples_per_second(),
            checkpoint: None,
        };
        let best_files = obs.best_files.take();
        if let Some(files) = &best_files {
            // "Try it" builds its model from these files on its first use; a copy is kept in
            // the browser's store, so Try it and Download work after a reload too.
            tryit::offer_run(&format!("{label}, best epoch"), files);
            rec.checkpoint = keep_checkpoint(&label, files).await;
        }
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.runs.push(rec);
            s.adapter_files = best_files;
        });
        save_runs();
        render_runs(&rows());
    }
    status("done");
    Ok(())
}
