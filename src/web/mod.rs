//! The browser driver (wasm32): wires the page (`index.html`) to the training core. It loads the
//! model and data as bytes (fetched URLs or picked files; [`load`]), trains on WebGPU through
//! Burn's wgpu backend with async read-backs so the page stays responsive ([`train`],
//! [`observer`]), draws the loss curve and the rank plot with the same SVG plotting code as the
//! native report, keeps finished runs in `localStorage`, and shares results as a link in the
//! URL fragment ([`results`], `report::share`). Downloads are kept in Cache Storage with their
//! SHA-256 ([`cache`]); own CSV/TSV/JSONL files are previewed and their columns picked
//! ([`owndata`]); "Try it" predicts a typed sentence with the trained model ([`tryit`]), or
//! for an embedding model searches a corpus with the base model and the adapter side by side
//! ([`search`]).
//! [`dom`] holds the small DOM helpers.

pub mod cache;
pub mod dom;
pub mod load;
pub mod observer;
pub mod owndata;
pub mod results;
pub mod search;
pub mod settings;
pub mod tags;
pub mod train;
pub mod tryit;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen_futures::spawn_local;

use crate::error::Error;
use crate::report::share;
use crate::report::sweep::parse_ranks;
use crate::train::artifacts::Files;
use dom::{download, input, num, on_click, report, set_input, status};
use load::{GpuInfo, ModelBytes, gpu, load_model};
use results::{RunRecord, load_runs, payload, render_runs, results_csv, rows, save_runs};
use train::{lora_dora_grid, start_job};

/// What the page holds between clicks.
#[derive(Default)]
pub struct State {
    /// The device, once probed.
    pub gpu: Option<Rc<GpuInfo>>,
    /// The loaded model's files.
    pub model: Option<Rc<ModelBytes>>,
    /// Finished runs (also in `localStorage`).
    pub runs: Vec<RunRecord>,
    /// The last run's best checkpoint files.
    pub adapter_files: Option<Files>,
    /// Whether a training job is running.
    pub busy: bool,
    /// Own data files picked, dropped or fetched.
    pub own: owndata::OwnFiles,
    /// The model "Try it" uses, once built: the last run's best checkpoint, or one loaded
    /// from disk.
    pub trained: Option<Rc<tryit::Trained>>,
    /// What "Try it" builds from `adapter_files` when `trained` is empty (a run's label).
    pub try_source: Option<String>,
    /// Own data of the last run, for share links (name and row counts only).
    pub shared_data: Option<crate::report::share::SharedData>,
}

thread_local! {
    /// The page's state.
    pub static STATE: RefCell<State> = RefCell::new(State::default());
    /// Set by the Stop button; checked before every step.
    pub static STOP: Rc<Cell<bool>> = Rc::new(Cell::new(false));
}

/// Starts the LoRA/DoRA rank sweep of the ranks field.
fn sweep_ranks() {
    match parse_ranks(&input("sweep-ranks")) {
        Ok(ranks) => start_job(lora_dora_grid(&ranks)),
        Err(e) => report(Err(e)),
    }
}

/// Puts a share link of the results table into the link field and the clipboard.
fn share_link() {
    let Some(w) = web_sys::window() else { return };
    let base = format!(
        "{}{}",
        w.location().origin().unwrap_or_default(),
        w.location().pathname().unwrap_or_default()
    );
    match share::link(&base, &payload(rows())) {
        Ok(link) => {
            set_input("share-link", &link);
            let _ = w.navigator().clipboard().write_text(&link);
            status("share link copied");
        }
        Err(e) => report(Err(e)),
    }
}

/// Offers the last run's adapter and heads files as downloads.
fn download_adapter() {
    let files = STATE.with(|s| s.borrow().adapter_files.clone());
    let Some(files) = files else {
        return report(Err(Error::Invalid(
            "no adapter trained in this page yet".into(),
        )));
    };
    for (name, bytes) in files
        .iter()
        .filter(|(n, _)| n.starts_with("adapter_") || n.starts_with("heads"))
    {
        report(download(name, bytes, "application/octet-stream"));
    }
}

/// After a reload: the last finished run whose best checkpoint the browser kept becomes the
/// model "Try it" uses and what "Download adapter" saves.
async fn restore_last_checkpoint() {
    let last = STATE.with(|s| {
        s.borrow()
            .runs
            .iter()
            .rev()
            .find_map(|r| r.checkpoint.clone().map(|id| (id, r.row.clone())))
    });
    let Some((id, row)) = last else { return };
    let Some(files) = cache::load_checkpoint(&id).await else {
        dom::log(&format!(
            "the checkpoint of the last run ({id}) is no longer stored"
        ));
        return;
    };
    tryit::offer_run(
        &format!(
            "{} {} r={}, best epoch (kept in this browser)",
            row.task, row.adapter, row.r
        ),
        &files,
    );
    STATE.with(|s| s.borrow_mut().adapter_files = Some(files));
}

/// Registers `sw.js`, which keeps the page's own files for offline visits (model and data files
/// are kept by [`cache`]). Where the browser has no service workers the page works as before.
fn register_service_worker() {
    let Some(w) = web_sys::window() else { return };
    let promise = w.navigator().service_worker().register("sw.js");
    spawn_local(async move {
        if let Err(e) = wasm_bindgen_futures::JsFuture::from(promise).await {
            dom::log(&format!("offline use unavailable (service worker: {e:?})"));
        }
    });
}

/// Shows the fields of the chosen data source (minBERT presets or your own file).
fn show_source() {
    let own = owndata::selected();
    if !own {
        // A bad own file disables Start for own data only.
        owndata::set_startable(true);
    }
    if let Some(e) = dom::el("minbert-fields") {
        e.set_hidden(own);
    }
    if let Some(e) = dom::el("own-fields") {
        e.set_hidden(!own);
    }
}

/// Entry point of the page (called by the binary's `main` in the wasm build).
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string();
        web_sys::console::error_1(&format!("internal error: {text}").into());
        // A failed GPU device is said in the page's words (what failed, reload to go on, what
        // is kept); any other panic keeps its text for a bug report.
        match crate::error::device_failure_message(&text) {
            Some(msg) => {
                dom::set_text("error", &msg);
                status("the GPU device failed: reload the page to train again");
            }
            None => dom::set_text("error", &format!("internal error: {text}")),
        }
    }));
    register_service_worker();
    // The saved form first: a shared link's settings then take precedence.
    settings::restore();
    settings::wire();
    load_runs();
    if !results::show_shared() {
        render_runs(&rows());
    }
    spawn_local(async {
        restore_last_checkpoint().await;
        gpu().await;
        cache::render_stored().await;
    });
    owndata::wire();
    dom::on_change("model-pick", || {
        let v = input("model-pick");
        if !v.is_empty() {
            set_input("model-url", &v);
        }
    });
    for id in ["source-minbert", "source-own"] {
        dom::on_change(id, show_source);
    }
    show_source();
    on_click("try-run", || {
        spawn_local(async { report(tryit::run().await) })
    });
    on_click("try-search-run", || {
        spawn_local(async { report(search::run().await) })
    });
    search::wire();
    on_click("load-ckpt", || {
        spawn_local(async { report(tryit::load_picked().await) })
    });
    on_click("load-model", || {
        spawn_local(async {
            report(load_model().await.map(|_| ()));
        })
    });
    on_click("start", || {
        let kind = crate::model::AdapterKind::from_name(&input("adapter"))
            .unwrap_or(crate::model::AdapterKind::Lora);
        start_job(vec![(
            kind,
            num::<usize>("rank", "rank").unwrap_or(1).max(1),
        )])
    });
    on_click("sweep", sweep_ranks);
    // Re-run trains the shared link's runs with the settings it carries.
    on_click("rerun", || match results::shared_grid() {
        Some(grid) if !grid.is_empty() => start_job(grid),
        _ => sweep_ranks(),
    });
    on_click("stop", || {
        // The step in progress finishes first; its epochs so far are kept.
        STOP.with(|s| s.set(true));
        train::set_stop_button("stopping…", false);
    });
    on_click("share", share_link);
    on_click("download-adapter", download_adapter);
    on_click("download-csv", || {
        report(results_csv(&rows()).and_then(|b| download("lorabert-results.csv", &b, "text/csv")))
    });
    on_click("clear", || {
        // The runs' kept checkpoints go with them (they would otherwise fill the store unseen).
        let ids: Vec<String> = STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.adapter_files = None;
            s.runs.drain(..).filter_map(|r| r.checkpoint).collect()
        });
        save_runs();
        render_runs(&[]);
        spawn_local(async move {
            for id in ids {
                cache::delete_checkpoint(&id).await;
            }
            cache::render_stored().await;
        });
    });
    status("ready: pick a model and data, then press Start");
}
