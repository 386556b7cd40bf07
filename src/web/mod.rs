//! The browser driver (wasm32): wires the page (`index.html`) to the training core. It loads the
//! model and data as bytes (fetched URLs or picked files), trains on WebGPU through Burn's wgpu
//! backend with async read-backs (the page stays responsive), draws the loss curve and the
//! rank plot with the same SVG plotting code as the native report, keeps finished runs in
//! `localStorage`, and shares results as a link in the URL fragment (`report::share`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use burn::tensor::Device;
use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{
    Blob, BlobPropertyBag, Document, HtmlAnchorElement, HtmlElement, HtmlInputElement,
    HtmlSelectElement, Url,
};

use crate::adapter::LoraConfig;
use crate::data::{PairLabel, read_pairs, read_sst};
use crate::model::{BertConfig, BertTokenizer, load_bert};
use crate::report::plot::{Chart, Series, svg};
use crate::report::share::{self, SHARE_VERSION, SharePayload, ShareRow};
use crate::report::sweep::ATTENTION;
use crate::tasks::{PairEncoding, Pooling, Task};
use crate::train::artifacts::Files;
use crate::train::memory::largest_tensor_bytes;
use crate::train::run::{Observer, RunInfo, run};
use crate::train::{
    AdapterChoice, Precision, StepStats, TaskData, TrainConfig, Trainer, build_model,
    resolve_precision,
};

const STORAGE_KEY: &str = "lorabert.runs.v1";
const NO_WEBGPU: &str = "WebGPU is not available in this browser, so training runs on the CPU \
    (slow). WebGPU works in Chrome and Edge 113+ (Windows, macOS, ChromeOS, Android; on Linux \
    start Chrome with --enable-unsafe-webgpu --enable-features=Vulkan), Safari 26+, and Firefox \
    141+ on Windows (elsewhere set dom.webgpu.enabled in about:config).";

/// A finished run as kept in the page and in `localStorage`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RunRecord {
    row: ShareRow,
    loss_curve: Vec<[f64; 2]>,
    examples_per_second: f64,
}

struct ModelBytes {
    name: String,
    config_json: String,
    cfg: BertConfig,
    weights: Vec<u8>,
    tokenizer: Vec<u8>,
}

struct GpuInfo {
    device: Device,
    gpu: bool,
    shader_f16: bool,
    max_buffer: Option<u64>,
}

#[derive(Default)]
struct State {
    gpu: Option<Rc<GpuInfo>>,
    model: Option<Rc<ModelBytes>>,
    runs: Vec<RunRecord>,
    adapter_files: Option<Files>,
    busy: bool,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
    static STOP: Rc<Cell<bool>> = Rc::new(Cell::new(false));
}

fn doc() -> Document {
    web_sys::window()
        .and_then(|w| w.document())
        .expect("a page with a document")
}

fn el(id: &str) -> Option<HtmlElement> {
    doc().get_element_by_id(id).and_then(|e| e.dyn_into().ok())
}

fn set_text(id: &str, text: &str) {
    if let Some(e) = el(id) {
        e.set_text_content(Some(text));
    }
}

fn set_html(id: &str, html: &str) {
    if let Some(e) = el(id) {
        e.set_inner_html(html);
    }
}

fn input(id: &str) -> String {
    doc()
        .get_element_by_id(id)
        .and_then(|e| {
            e.clone()
                .dyn_into::<HtmlInputElement>()
                .map(|i| i.value())
                .ok()
                .or_else(|| e.dyn_into::<HtmlSelectElement>().ok().map(|s| s.value()))
        })
        .unwrap_or_default()
}

fn set_input(id: &str, v: &str) {
    if let Some(e) = doc().get_element_by_id(id) {
        if let Ok(i) = e.clone().dyn_into::<HtmlInputElement>() {
            i.set_value(v);
        } else if let Ok(s) = e.dyn_into::<HtmlSelectElement>() {
            s.set_value(v);
        }
    }
}

fn num<T: std::str::FromStr>(id: &str, what: &str) -> Result<T, String> {
    input(id)
        .trim()
        .parse()
        .map_err(|_| format!("{what}: `{}` is not a valid number", input(id)))
}

fn opt_num(id: &str, what: &str) -> Result<Option<usize>, String> {
    let v = input(id);
    if v.trim().is_empty() {
        Ok(None)
    } else {
        num(id, what).map(Some)
    }
}

fn status(msg: &str) {
    set_text("status", msg);
}

fn log(msg: &str) {
    web_sys::console::log_1(&msg.into());
    if let Some(e) = el("log") {
        let line = doc().create_element("div").expect("div");
        line.set_text_content(Some(msg));
        let _ = e.prepend_with_node_1(&line);
    }
}

fn now() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now() / 1000.0)
}

/// Resolves after the browser had a chance to run other tasks (a `setTimeout(0)`).
fn yield_now() -> Pin<Box<dyn Future<Output = ()>>> {
    let p = Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        }
    });
    Box::pin(async move {
        let _ = JsFuture::from(p).await;
    })
}

fn on_click(id: &str, f: impl Fn() + 'static) {
    if let Some(e) = el(id) {
        let c = Closure::<dyn Fn()>::new(f);
        e.set_onclick(Some(c.as_ref().unchecked_ref()));
        c.forget();
    }
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let w = web_sys::window().ok_or("no window")?;
    let resp = JsFuture::from(w.fetch_with_str(url))
        .await
        .map_err(|e| format!("{url}: fetch failed ({e:?})"))?;
    let resp: web_sys::Response = resp
        .dyn_into()
        .map_err(|_| format!("{url}: not a response"))?;
    if !resp.ok() {
        return Err(format!(
            "{url}: HTTP {} {}",
            resp.status(),
            resp.status_text()
        ));
    }
    let buf = JsFuture::from(resp.array_buffer().map_err(|e| format!("{url}: {e:?}"))?)
        .await
        .map_err(|e| format!("{url}: {e:?}"))?;
    Ok(Uint8Array::new(&buf).to_vec())
}

/// The picked file of `<input type=file id=...>` named `name` (or the only one), if any.
async fn picked_file(
    input_id: &str,
    name: Option<&str>,
) -> Result<Option<(String, Vec<u8>)>, String> {
    let Some(inp) = doc()
        .get_element_by_id(input_id)
        .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
    else {
        return Ok(None);
    };
    let Some(files) = inp.files() else {
        return Ok(None);
    };
    for i in 0..files.length() {
        let Some(f) = files.get(i) else { continue };
        if name.is_none_or(|n| f.name() == n) {
            let buf = JsFuture::from(f.array_buffer())
                .await
                .map_err(|e| format!("{}: {e:?}", f.name()))?;
            return Ok(Some((f.name(), Uint8Array::new(&buf).to_vec())));
        }
    }
    Ok(None)
}

fn js_get(obj: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(obj, &key.into())
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// Initialises WebGPU (or the CPU fallback) once.
async fn gpu() -> Rc<GpuInfo> {
    if let Some(g) = STATE.with(|s| s.borrow().gpu.clone()) {
        return g;
    }
    let nav: JsValue = web_sys::window()
        .map(|w| w.navigator().into())
        .unwrap_or(JsValue::NULL);
    let mut info = GpuInfo {
        device: Device::flex(),
        gpu: false,
        shader_f16: false,
        max_buffer: None,
    };
    if let Some(gpu) = js_get(&nav, "gpu") {
        // Read the adapter's limits and features for the checks below.
        let adapter = Reflect::get(&gpu, &"requestAdapter".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .and_then(|f| f.call0(&gpu).ok())
            .map(|p| JsFuture::from(Promise::from(p)));
        if let Some(fut) = adapter
            && let Ok(a) = fut.await
            && !a.is_null()
        {
            info.max_buffer = js_get(&a, "limits")
                .and_then(|l| js_get(&l, "maxStorageBufferBindingSize"))
                .and_then(|v| v.as_f64())
                .map(|v| v as u64);
            info.shader_f16 = js_get(&a, "features")
                .and_then(|f| {
                    Reflect::get(&f, &"has".into())
                        .ok()
                        .and_then(|h| h.dyn_into::<Function>().ok())
                        .and_then(|h| h.call1(&f, &"shader-f16".into()).ok())
                })
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            match Device::wgpu_options().init_async().await {
                Ok(d) => {
                    info.device = d;
                    info.gpu = true;
                }
                Err(e) => log(&format!(
                    "WebGPU initialisation failed ({e:?}); using the CPU"
                )),
            }
        }
    }
    if !info.gpu {
        log(NO_WEBGPU);
    }
    set_text(
        "device",
        &if info.gpu {
            format!(
                "WebGPU{}{}",
                if info.shader_f16 { ", shader-f16" } else { "" },
                info.max_buffer
                    .map(|b| format!(", max buffer {} MiB", b >> 20))
                    .unwrap_or_default()
            )
        } else {
            "CPU (no WebGPU)".into()
        },
    );
    // Where the device has f16, training runs in the f16 mode unless the user picks f32.
    if info.gpu && crate::kernels::f16_available(&info.device) {
        set_input("precision", "f16");
    }
    let info = Rc::new(info);
    STATE.with(|s| s.borrow_mut().gpu = Some(info.clone()));
    info
}

async fn load_model() -> Result<Rc<ModelBytes>, String> {
    let base = input("model-url");
    let get = |name: &'static str| {
        let base = base.clone();
        async move {
            if let Some((_, b)) = picked_file("model-files", Some(name)).await? {
                return Ok::<_, String>(b);
            }
            status(&format!("downloading {name} ..."));
            let url = format!(
                "{}{name}",
                if base.ends_with('/') || base.is_empty() {
                    base.clone()
                } else {
                    format!("{base}/")
                }
            );
            let b = fetch_bytes(&url).await?;
            log(&format!("{url}: {:.1} MiB", b.len() as f64 / 1048576.0));
            Ok(b)
        }
    };
    let config = get("config.json").await?;
    let weights = get("model.safetensors").await?;
    let tokenizer = get("tokenizer.json").await?;
    let config_json =
        String::from_utf8(config).map_err(|_| "config.json is not UTF-8".to_string())?;
    let cfg = BertConfig::from_json(&config_json, "config.json").map_err(|e| e.to_string())?;
    // Parse once now so a bad file is reported at load time, naming the tensor.
    status("checking model.safetensors ...");
    load_bert(&cfg, &weights, "model.safetensors", &Device::flex()).map_err(|e| e.to_string())?;
    BertTokenizer::from_bytes(&tokenizer, "tokenizer.json", 8).map_err(|e| e.to_string())?;
    let name = base
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("model")
        .to_string();
    let m = Rc::new(ModelBytes {
        name: if name.is_empty() {
            "model".into()
        } else {
            name
        },
        config_json,
        cfg,
        weights,
        tokenizer,
    });
    status(&format!(
        "model loaded: {} layers, hidden {}, {:.1} MiB",
        m.cfg.num_hidden_layers,
        m.cfg.hidden_size,
        m.weights.len() as f64 / 1048576.0
    ));
    STATE.with(|s| s.borrow_mut().model = Some(m.clone()));
    Ok(m)
}

fn task() -> Result<Task, String> {
    match input("task").as_str() {
        "sst" => Ok(Task::Sst),
        "para" => Ok(Task::Para),
        "sts" => Ok(Task::Sts),
        t => Err(format!("unknown task `{t}`")),
    }
}

fn file_names(t: Task) -> (&'static str, &'static str) {
    match t {
        Task::Sst => ("ids-sst-train.csv", "ids-sst-dev.csv"),
        Task::Para => ("quora-train-partial.csv", "quora-dev.csv"),
        Task::Sts => ("sts-train.csv", "sts-dev.csv"),
    }
}

async fn load_data(
    t: Task,
    tok: &BertTokenizer,
    max_train: Option<usize>,
    max_dev: Option<usize>,
) -> Result<(TaskData, TaskData), String> {
    let (train_name, dev_name) = file_names(t);
    let base = input("data-url");
    let base = if base.is_empty() || base.ends_with('/') {
        base
    } else {
        format!("{base}/")
    };
    let mut out = Vec::new();
    for (pick, name, limit) in [
        ("train-file", train_name, max_train),
        ("dev-file", dev_name, max_dev),
    ] {
        let (src, bytes) = match picked_file(pick, None).await? {
            Some(f) => f,
            None => {
                status(&format!("downloading {name} ..."));
                (
                    name.to_string(),
                    fetch_bytes(&format!("{base}{name}")).await?,
                )
            }
        };
        let td = match t {
            Task::Sst => TaskData::sst(
                &read_sst(&bytes, &src, true).map_err(|e| e.to_string())?,
                tok,
                limit,
            ),
            _ => {
                let label = if t == Task::Para {
                    PairLabel::Paraphrase
                } else {
                    PairLabel::Similarity
                };
                TaskData::pairs(
                    t,
                    &read_pairs(&bytes, &src, label).map_err(|e| e.to_string())?,
                    tok,
                    PairEncoding::Bi,
                    limit,
                )
            }
        }
        .map_err(|e| e.to_string())?;
        log(&format!(
            "{src}: {} examples ({} rows skipped, {} truncated)",
            td.examples.len(),
            td.skipped_rows,
            td.truncated
        ));
        out.push(td);
    }
    let dev = out.pop().ok_or("no dev data")?;
    let train = out.pop().ok_or("no train data")?;
    Ok((train, dev))
}

struct WebObserver {
    steps: u64,
    done: u64,
    examples: usize,
    t0: f64,
    losses: Vec<f64>,
    device: Device,
    peak: u64,
    best_files: Option<Files>,
    label: String,
}

impl Observer for WebObserver {
    fn now(&self) -> f64 {
        now()
    }

    fn on_epoch_start(&mut self, epoch: usize, steps: usize, done: usize) {
        self.steps = steps as u64;
        self.done = done as u64;
        self.examples = 0;
        self.t0 = now();
        status(&format!("{}: epoch {epoch}", self.label));
    }

    fn on_step(&mut self, s: &StepStats) {
        self.done += 1;
        self.examples += s.examples;
        self.losses.push(s.loss);
        if let Some(u) = self.device.memory_pool_usage() {
            self.peak = self.peak.max(u.bytes_reserved);
        }
        let dt = (now() - self.t0).max(1e-9);
        let rate = self.examples as f64 / dt;
        let left = (self.steps.saturating_sub(self.done)) as f64 * dt / (self.done.max(1) as f64);
        if let Some(p) = doc()
            .get_element_by_id("progress")
            .and_then(|e| e.dyn_into::<web_sys::HtmlProgressElement>().ok())
        {
            p.set_max(self.steps.max(1) as f64);
            p.set_value(self.done as f64);
        }
        set_text(
            "rate",
            &format!(
                "step {}/{}, loss {:.4}, {rate:.1} examples/s, ETA {left:.0} s",
                self.done, self.steps, s.loss
            ),
        );
        set_text(
            "loss-values",
            &serde_json::to_string(&self.losses).unwrap_or_default(),
        );
        let points: Vec<(f64, f64)> = self
            .losses
            .iter()
            .enumerate()
            .map(|(i, l)| ((i + 1) as f64, *l))
            .collect();
        let chart = Chart {
            title: format!("training loss: {}", self.label),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![Series {
                name: self.label.clone(),
                points,
            }],
            log2_x: false,
        };
        if let Ok(s) = svg(&chart, 560, 300) {
            set_html("loss-plot", &s);
        }
    }

    fn on_eval_start(&mut self, epoch: usize) {
        status(&format!(
            "{}: evaluating epoch {epoch} on dev ...",
            self.label
        ));
    }

    fn on_epoch_end(
        &mut self,
        results: &crate::report::RunResults,
        best: Option<&Files>,
    ) -> crate::Result<()> {
        if let Some(e) = results.epochs.last() {
            let m = &e.dev;
            let txt = [
                ("SST accuracy", m.sst_acc),
                ("Quora accuracy", m.para_acc),
                ("STS Pearson", m.sts_pearson),
            ]
            .iter()
            .filter_map(|(n, v)| v.map(|v| format!("{n} {v:.4}")))
            .collect::<Vec<_>>()
            .join(", ");
            set_text(
                "dev-metric",
                &format!("{}: epoch {}: dev {txt}", self.label, e.epoch),
            );
            log(&format!(
                "{}: epoch {}: train loss {:.4}, {:.1} ex/s, dev {txt}",
                self.label, e.epoch, e.train_loss, e.examples_per_second
            ));
        }
        if let Some(f) = best {
            self.best_files = Some(f.clone());
        }
        Ok(())
    }

    fn wants_resume_checkpoints(&self) -> bool {
        false
    }

    fn should_stop(&self) -> bool {
        STOP.with(|s| s.get())
    }

    fn peak_memory_bytes(&self) -> Option<u64> {
        (self.peak > 0).then_some(self.peak)
    }

    fn pause(&mut self) -> Option<Pin<Box<dyn Future<Output = ()>>>> {
        Some(yield_now())
    }
}

fn targets_of(t: &str) -> Vec<String> {
    if t == "attention" {
        ATTENTION.iter().map(|s| s.to_string()).collect()
    } else {
        vec!["all-linear".into()]
    }
}

/// Trains one configuration per (adapter, rank) in `grid` and records each run.
async fn train_grid(grid: Vec<(String, usize)>) -> Result<(), String> {
    let g = gpu().await;
    let model = match STATE.with(|s| s.borrow().model.clone()) {
        Some(m) => m,
        None => load_model().await?,
    };
    let t = task()?;
    let batch: usize = num("batch", "batch size")?;
    let max_len: usize = num("max-len", "max length")?;
    if batch == 0 || max_len < 4 || max_len > model.cfg.max_position_embeddings {
        return Err(format!(
            "batch size must be >= 1 and max length in 4..={}",
            model.cfg.max_position_embeddings
        ));
    }
    let per_example = if t == Task::Sst { 1 } else { 2 };
    if let Some(limit) = g.max_buffer {
        let need = largest_tensor_bytes(&model.cfg, batch * per_example, max_len);
        if need > limit {
            let mut fit = batch;
            while fit > 1 && largest_tensor_bytes(&model.cfg, fit * per_example, max_len) > limit {
                fit -= 1;
            }
            return Err(format!(
                "batch {batch} × {max_len} tokens needs a {} MiB buffer but this device allows {} MiB; the largest batch that fits is {fit}",
                need >> 20,
                limit >> 20
            ));
        }
    }
    let requested = if input("precision") == "f16" {
        Precision::F16
    } else {
        Precision::F32
    };
    let (precision, notice) = resolve_precision(requested, &g.device);
    if let Some(notice) = notice {
        log(&notice);
    }
    let tok = BertTokenizer::from_bytes(&model.tokenizer, "tokenizer.json", max_len)
        .map_err(|e| e.to_string())?;
    let (train, dev) = load_data(
        t,
        &tok,
        opt_num("max-train", "max train rows")?,
        opt_num("max-dev", "max dev rows")?,
    )
    .await?;
    let targets = input("targets");
    for (adapter, r) in grid {
        if STOP.with(|s| s.get()) {
            break;
        }
        let kind = match adapter.as_str() {
            "dora" => AdapterChoice::Dora,
            _ => AdapterChoice::Lora,
        };
        let cfg = TrainConfig {
            tasks: vec![t],
            adapter: kind,
            lora: LoraConfig {
                r,
                lora_alpha: num("alpha", "lora_alpha")?,
                lora_dropout: 0.0,
                use_rslora: false,
                use_dora: kind == AdapterChoice::Dora,
                target_modules: targets_of(&targets),
            },
            epochs: num("epochs", "epochs")?,
            batch_size: batch,
            lr: num("lr", "learning rate")?,
            max_len,
            max_steps: opt_num("max-steps", "max steps")?,
            pooling: Pooling::Mean,
            pair_encoding: PairEncoding::Bi,
            checkpoint_every: 0,
            eval_batch_size: 64,
            precision,
            ..TrainConfig::default()
        };
        cfg.validate().map_err(|e| e.to_string())?;
        let device = g.device.clone().autodiff();
        device.seed(cfg.seed);
        let label = format!("{adapter} r={r}");
        status(&format!("{label}: building the model ..."));
        let bert = load_bert(&model.cfg, &model.weights, "model.safetensors", &device)
            .map_err(|e| e.to_string())?;
        let (m, heads) =
            build_model(bert, &cfg, model.cfg.hidden_size, &device).map_err(|e| e.to_string())?;
        let per = Trainer::steps_per_epoch(std::slice::from_ref(&train), batch);
        let total = cfg
            .max_steps
            .unwrap_or(usize::MAX)
            .min(per * cfg.epochs)
            .max(1);
        let mut trainer = Trainer::new(
            m,
            cfg.clone(),
            total,
            model.cfg.pad_token_id as u32,
            device.clone(),
        );
        let info = RunInfo {
            model: model.name.clone(),
            backend: if g.gpu {
                "webgpu".into()
            } else {
                "flex (wasm CPU)".into()
            },
            heads,
            bert_config_json: model.config_json.clone(),
        };
        let mut obs = WebObserver {
            steps: 0,
            done: 0,
            examples: 0,
            t0: now(),
            losses: Vec::new(),
            device: device.clone(),
            peak: 0,
            best_files: None,
            label: label.clone(),
        };
        let results = run(
            &mut trainer,
            std::slice::from_ref(&train),
            std::slice::from_ref(&dev),
            &info,
            &mut obs,
            None,
        )
        .await
        .map_err(|e| format!("{label}: {e}"))?;
        let Some(best) = results.best.clone() else {
            continue;
        };
        let n = results.epochs.len().max(1) as f64;
        let rec = RunRecord {
            row: ShareRow {
                task: t.name().into(),
                adapter: adapter.clone(),
                targets: targets.clone(),
                r: r as u32,
                precision: cfg.precision.name().into(),
                seed: cfg.seed,
                score: best.primary().clamp(-1.0, 1.0),
                seconds_per_epoch: results.epochs.iter().map(|e| e.seconds).sum::<f64>() / n,
                peak_memory_bytes: results.peak_memory_bytes.unwrap_or(0),
                trainable_params: results.params.trainable as u64,
            },
            loss_curve: results.loss_curve.clone(),
            examples_per_second: results
                .epochs
                .iter()
                .map(|e| e.examples_per_second)
                .sum::<f64>()
                / n,
        };
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.runs.push(rec);
            s.adapter_files = obs.best_files.take();
        });
        save_runs();
        render_runs(&rows());
    }
    status("done");
    Ok(())
}

fn save_runs() {
    let json = STATE.with(|s| serde_json::to_string(&s.borrow().runs).unwrap_or_default());
    if let Some(st) = web_sys::window().and_then(|w| w.local_storage().ok().flatten())
        && st.set_item(STORAGE_KEY, &json).is_err()
    {
        log("could not save the results in localStorage (full or disabled)");
    }
}

fn load_runs() {
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The rows of the finished runs.
fn rows() -> Vec<ShareRow> {
    STATE.with(|s| s.borrow().runs.iter().map(|r| r.row.clone()).collect())
}

/// LoRA and DoRA at each of `ranks`.
fn lora_dora_grid(ranks: &[usize]) -> Vec<(String, usize)> {
    ["lora", "dora"]
        .iter()
        .flat_map(|a| ranks.iter().map(move |&r| (a.to_string(), r)))
        .collect()
}

/// Draws the results table and the rank plots (score, seconds per epoch, memory).
fn render_runs(rows: &[ShareRow]) {
    let mut h = String::from(
        "<tr><th>task</th><th>adapter</th><th>targets</th><th>r</th><th>precision</th><th>dev score</th><th>s/epoch</th><th>peak MiB</th><th>trainable</th></tr>",
    );
    for r in rows {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"score\">{:.4}</td><td>{:.1}</td><td>{:.0}</td><td>{}</td></tr>",
            esc(&r.task), esc(&r.adapter), esc(&r.targets), r.r, esc(&r.precision), r.score, r.seconds_per_epoch, r.peak_memory_bytes as f64 / 1048576.0, r.trainable_params
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

fn payload(rows: Vec<ShareRow>) -> SharePayload {
    let model = STATE
        .with(|s| s.borrow().model.as_ref().map(|m| m.name.clone()))
        .unwrap_or_else(|| input("model-url"));
    SharePayload {
        v: SHARE_VERSION,
        model: model.chars().take(100).collect(),
        rows,
    }
}

fn download(name: &str, bytes: &[u8], mime: &str) -> Result<(), String> {
    let arr = Array::new();
    arr.push(&Uint8Array::from(bytes).into());
    let opts = BlobPropertyBag::new();
    opts.set_type(mime);
    let blob =
        Blob::new_with_u8_array_sequence_and_options(&arr, &opts).map_err(|e| format!("{e:?}"))?;
    let url = Url::create_object_url_with_blob(&blob).map_err(|e| format!("{e:?}"))?;
    let a: HtmlAnchorElement = doc()
        .create_element("a")
        .map_err(|e| format!("{e:?}"))?
        .dyn_into()
        .map_err(|_| "anchor")?;
    a.set_href(&url);
    a.set_download(name);
    a.click();
    let _ = Url::revoke_object_url(&url);
    Ok(())
}

fn report(r: Result<(), String>) {
    if let Err(e) = r {
        status(&format!("error: {e}"));
        log(&format!("error: {e}"));
        set_text("error", &e);
    }
}

fn start_job(grid: Vec<(String, usize)>) {
    if STATE.with(|s| s.borrow().busy) {
        return;
    }
    STATE.with(|s| s.borrow_mut().busy = true);
    STOP.with(|s| s.set(false));
    set_text("error", "");
    spawn_local(async move {
        let r = train_grid(grid).await;
        STATE.with(|s| s.borrow_mut().busy = false);
        if STOP.with(|s| s.get()) {
            status("stopped; finished runs are kept");
        }
        report(r);
    });
}

fn parse_ranks(s: &str) -> Result<Vec<usize>, String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("ranks `{s}`: use a list like 1,2,4,8"))?;
    if v.is_empty() || v.contains(&0) || v.len() > 64 {
        return Err(format!("ranks `{s}`: 1 to 64 ranks, each >= 1"));
    }
    Ok(v)
}

/// Shows the results carried by the URL fragment, if any (no training).
fn show_shared() -> bool {
    let hash = web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default();
    if hash.len() < 2 {
        return false;
    }
    match share::decode(&hash) {
        Ok(p) => {
            render_runs(&p.rows);
            set_text(
                "shared",
                &format!(
                    "Shared results for {} ({} runs), not trained in this page.",
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

/// Entry point of the page (called by the binary's `main` in the wasm build).
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("internal error: {info}");
        web_sys::console::error_1(&msg.clone().into());
        set_text("error", &msg);
    }));
    load_runs();
    if !show_shared() {
        render_runs(&rows());
    }
    spawn_local(async {
        gpu().await;
    });
    on_click("load-model", || {
        spawn_local(async {
            report(load_model().await.map(|_| ()));
        })
    });
    on_click("start", || {
        start_job(vec![(
            input("adapter"),
            num::<usize>("rank", "rank").unwrap_or(1).max(1),
        )])
    });
    on_click("sweep", || match parse_ranks(&input("sweep-ranks")) {
        Ok(ranks) => start_job(lora_dora_grid(&ranks)),
        Err(e) => report(Err(e)),
    });
    on_click("rerun", || match parse_ranks(&input("sweep-ranks")) {
        Ok(ranks) => start_job(lora_dora_grid(&ranks)),
        Err(e) => report(Err(e)),
    });
    on_click("stop", || STOP.with(|s| s.set(true)));
    on_click("share", || {
        let rows = rows();
        let Some(w) = web_sys::window() else { return };
        let base = format!(
            "{}{}",
            w.location().origin().unwrap_or_default(),
            w.location().pathname().unwrap_or_default()
        );
        match share::link(&base, &payload(rows)) {
            Ok(link) => {
                set_input("share-link", &link);
                let clip = w.navigator().clipboard();
                let _ = clip.write_text(&link);
                status("share link copied");
            }
            Err(e) => report(Err(e.to_string())),
        }
    });
    on_click("download-adapter", || {
        let files = STATE.with(|s| s.borrow().adapter_files.clone());
        match files {
            Some(files) => {
                for (name, bytes) in files
                    .iter()
                    .filter(|(n, _)| n.starts_with("adapter_") || n.starts_with("heads"))
                {
                    report(download(name, bytes, "application/octet-stream"));
                }
            }
            None => report(Err("no adapter trained in this page yet".into())),
        }
    });
    on_click("download-csv", || {
        let rows = rows();
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record([
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
        ]);
        for r in &rows {
            let _ = w.write_record([
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
            ]);
        }
        match w.into_inner() {
            Ok(b) => report(download("lorabert-results.csv", &b, "text/csv")),
            Err(e) => report(Err(e.to_string())),
        }
    });
    on_click("clear", || {
        STATE.with(|s| s.borrow_mut().runs.clear());
        save_runs();
        render_runs(&[]);
    });
    status("ready: load a model, pick data, press Start");
}
