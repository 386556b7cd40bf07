//! Bytes into the page: the GPU device, the model's files and the minBERT data, each from a URL
//! or from files picked on the page.

use std::rc::Rc;

use burn::tensor::Device;
use js_sys::{Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::HtmlInputElement;

use super::STATE;
use super::cache::fetch_cached;
use super::dom::{doc, input, log, set_input, set_text, status};
use crate::error::{Error, Result};
use crate::model::{BertConfig, BertTokenizer, Pretrained, load_bert};
use crate::tasks::minbert::{Split, file_names, task_data};
use crate::tasks::{PairEncoding, Task, TaskData};

const NO_WEBGPU: &str = "WebGPU is not available in this browser, so training runs on the CPU \
    (slow). WebGPU works in Chrome and Edge 113+ (Windows, macOS, ChromeOS, Android; on Linux \
    start Chrome with --enable-unsafe-webgpu --enable-features=Vulkan), Safari 26+, and Firefox \
    141+ on Windows (elsewhere set dom.webgpu.enabled in about:config).";

/// The model's three files as loaded into the page, kept for the runs of a session.
pub struct ModelBytes {
    /// A short name (the last part of its URL).
    pub name: String,
    /// `config.json`.
    pub config_json: String,
    /// Its parsed form.
    pub cfg: BertConfig,
    /// `model.safetensors`.
    pub weights: Vec<u8>,
    /// `tokenizer.json`.
    pub tokenizer: Vec<u8>,
    /// The folder URL the files came from; `None` where any was picked from disk.
    pub url: Option<String>,
}

impl ModelBytes {
    /// Its configuration and tokenizer for sequences of at most `max_len` tokens.
    ///
    /// # Errors
    /// As [`Pretrained::from_bytes`]: an invalid file, or `max_len` over the model's positions.
    pub fn pretrained(&self, max_len: usize) -> Result<Pretrained> {
        Pretrained::from_bytes(
            &self.name,
            &self.config_json,
            "config.json",
            &self.tokenizer,
            "tokenizer.json",
            max_len,
        )
    }
}

/// The compute device and what the browser says about it.
pub struct GpuInfo {
    /// WebGPU, or the CPU when there is none.
    pub device: Device,
    /// Whether `device` is WebGPU.
    pub gpu: bool,
    /// Whether the adapter offers `shader-f16`.
    pub shader_f16: bool,
    /// The adapter's `maxStorageBufferBindingSize` in bytes.
    pub max_buffer: Option<u64>,
}

/// The picked file of `<input type=file id=...>` named `name` (or the first one), if any.
///
/// # Errors
/// [`Error::Load`] naming the file when the browser cannot read it.
pub async fn picked_file(input_id: &str, name: Option<&str>) -> Result<Option<(String, Vec<u8>)>> {
    let Some(files) = doc()
        .get_element_by_id(input_id)
        .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
        .and_then(|i| i.files())
    else {
        return Ok(None);
    };
    for i in 0..files.length() {
        let Some(f) = files.get(i) else { continue };
        if name.is_none_or(|n| f.name() == n) {
            let buf = JsFuture::from(f.array_buffer())
                .await
                .map_err(|e| Error::load(f.name(), format!("{e:?}")))?;
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

/// The WebGPU adapter's `maxStorageBufferBindingSize` and whether it has `shader-f16`.
async fn adapter_facts(gpu: &JsValue) -> Option<(Option<u64>, bool)> {
    let request = Reflect::get(gpu, &"requestAdapter".into())
        .ok()?
        .dyn_into::<Function>()
        .ok()?
        .call0(gpu)
        .ok()?;
    let a = JsFuture::from(Promise::from(request)).await.ok()?;
    if a.is_null() {
        return None;
    }
    let max_buffer = js_get(&a, "limits")
        .and_then(|l| js_get(&l, "maxStorageBufferBindingSize"))
        .and_then(|v| v.as_f64())
        .map(|v| v as u64);
    let shader_f16 = js_get(&a, "features")
        .and_then(|f| {
            Reflect::get(&f, &"has".into())
                .ok()
                .and_then(|h| h.dyn_into::<Function>().ok())
                .and_then(|h| h.call1(&f, &"shader-f16".into()).ok())
        })
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Some((max_buffer, shader_f16))
}

/// Initialises WebGPU (or the CPU fallback) once.
pub async fn gpu() -> Rc<GpuInfo> {
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
    if let Some(gpu) = js_get(&nav, "gpu")
        && let Some((max_buffer, shader_f16)) = adapter_facts(&gpu).await
    {
        (info.max_buffer, info.shader_f16) = (max_buffer, shader_f16);
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
    if !info.gpu {
        log(NO_WEBGPU);
    }
    set_text("device", &describe(&info));
    // Where the device has f16, training runs in the f16 mode unless the user picks f32.
    if info.gpu
        && crate::kernels::f16_available(&info.device)
        && !super::settings::saved("precision")
    {
        set_input("precision", "f16");
    }
    let info = Rc::new(info);
    STATE.with(|s| s.borrow_mut().gpu = Some(info.clone()));
    info
}

fn describe(info: &GpuInfo) -> String {
    if !info.gpu {
        return "CPU (no WebGPU)".into();
    }
    format!(
        "WebGPU{}{}",
        if info.shader_f16 { ", shader-f16" } else { "" },
        info.max_buffer
            .map(|b| format!(", max buffer {} MiB", b >> 20))
            .unwrap_or_default()
    )
}

/// A model's short name from its folder URL: `org/name` for a Hugging Face
/// `https://huggingface.co/org/name/resolve/main/` URL, else the folder's last part.
fn model_name(base: &str) -> String {
    let trimmed = base.trim_end_matches('/');
    if let Some((repo, _)) = trimmed.split_once("/resolve/") {
        let parts: Vec<&str> = repo.rsplit('/').take(2).collect();
        if parts.len() == 2 {
            return format!("{}/{}", parts[1], parts[0]);
        }
    }
    trimmed
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("model")
        .to_string()
}

/// `base` as a folder URL (ending in `/`, or empty for the page's own folder).
fn folder(base: &str) -> String {
    if base.is_empty() || base.ends_with('/') {
        base.to_string()
    } else {
        format!("{base}/")
    }
}

/// Loads the model's files (picked, or from the model URL), checks them, and keeps them.
///
/// # Errors
/// A failed download or file read; the core's errors for a bad file, naming the tensor.
pub async fn load_model() -> Result<Rc<ModelBytes>> {
    let base = folder(&input("model-url"));
    let picked = std::rc::Rc::new(std::cell::Cell::new(false));
    let get = |name: &'static str| {
        let url = format!("{base}{name}");
        let picked = picked.clone();
        async move {
            if let Some((_, b)) = picked_file("model-files", Some(name)).await? {
                picked.set(true);
                return Ok::<_, Error>(b);
            }
            status(&format!("loading {name} ..."));
            let (b, stored) = fetch_cached(&url, name).await?;
            let from = if stored {
                "from the browser's store"
            } else {
                "downloaded"
            };
            log(&format!(
                "{url}: {:.1} MiB {from}",
                b.len() as f64 / 1048576.0
            ));
            Ok(b)
        }
    };
    // config.json first: another architecture is named before its weights are downloaded.
    let config = get("config.json").await?;
    let config_json =
        String::from_utf8(config).map_err(|_| Error::config("config.json", "not UTF-8"))?;
    let cfg = BertConfig::from_json(&config_json, &format!("{base}config.json"))?;
    let tokenizer = get("tokenizer.json").await?;
    BertTokenizer::from_bytes(&tokenizer, "tokenizer.json", 8)?;
    let weights = get("model.safetensors").await?;
    // Parse once now so a bad file is reported at load time, naming the tensor.
    status("checking model.safetensors ...");
    load_bert(&cfg, &weights, "model.safetensors", &Device::flex())?;
    let name = model_name(&base);
    let m = Rc::new(ModelBytes {
        name,
        config_json,
        cfg,
        weights,
        tokenizer,
        url: (!picked.get()).then(|| base.clone()),
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

/// The bytes of `task`'s minBERT file of `split`: the file picked in `pick`, else the first of
/// the split's file names found at the data URL.
async fn data_bytes(task: Task, split: Split, pick: &str) -> Result<(String, Vec<u8>)> {
    if let Some(f) = picked_file(pick, None).await? {
        return Ok(f);
    }
    let base = folder(&input("data-url"));
    let names = file_names(task, split);
    let mut last = None;
    for name in names {
        status(&format!("loading {name} ..."));
        match fetch_cached(&format!("{base}{name}"), name).await {
            Ok((b, _)) => return Ok((name.to_string(), b)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::load(&base, "no file name for this split")))
}

/// The training and dev data of `task` (first `max_train` / `max_dev` rows), tokenised.
///
/// # Errors
/// A failed download or file read; the core's errors naming the file and line.
pub async fn load_data(
    task: Task,
    tok: &BertTokenizer,
    max_train: Option<usize>,
    max_dev: Option<usize>,
) -> Result<(TaskData, TaskData)> {
    let mut out = Vec::new();
    for (split, pick, limit) in [
        (Split::Train, "train-file", max_train),
        (Split::Dev, "dev-file", max_dev),
    ] {
        let (src, bytes) = data_bytes(task, split, pick).await?;
        let td = task_data(task, split, &bytes, &src, tok, PairEncoding::Bi, limit)?;
        log(&format!(
            "{src}: {} examples ({} rows skipped, {} truncated)",
            td.examples.len(),
            td.skipped_rows,
            td.truncated
        ));
        out.push(td);
    }
    let dev = out
        .pop()
        .ok_or_else(|| Error::Invalid("no dev data".into()))?;
    let train = out
        .pop()
        .ok_or_else(|| Error::Invalid("no train data".into()))?;
    Ok((train, dev))
}
