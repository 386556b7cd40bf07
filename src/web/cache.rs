//! Downloads kept in the browser: model files and data fetched by URL go into Cache Storage
//! (cache `lorabert-files-v1`, keyed by URL) with their SHA-256 and size, so a reload or a visit
//! the next day reads them from disk instead of the network. A stored file whose bytes no
//! longer match its SHA-256 is dropped and fetched again. Before storing, the origin's quota
//! (`navigator.storage.estimate()`) is checked: a file that does not fit is used for this
//! visit and not stored, with a message saying so, instead of failing the run. Each finished
//! run's best checkpoint is kept the same way under `checkpoints/<run id>/`.

use std::collections::BTreeMap;

use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, Headers, Request, Response, ResponseInit};

use super::dom::{esc, log, now, set_html, set_text, status};
use crate::data::sha256_hex;
use crate::error::{Error, Result};
use crate::train::artifacts::{Files, names};

/// The Cache Storage cache the page keeps its files in.
pub const CACHE_NAME: &str = "lorabert-files-v1";
const SHA_HEADER: &str = "x-lorabert-sha256";
const SIZE_HEADER: &str = "x-lorabert-bytes";

const MIB: f64 = 1048576.0;

async fn open() -> Option<Cache> {
    let caches = web_sys::window()?.caches().ok()?;
    let c = JsFuture::from(caches.open(CACHE_NAME)).await.ok()?;
    c.dyn_into().ok()
}

/// `url` made absolute against the page's address (the cache's key).
fn absolute(url: &str) -> String {
    let base = web_sys::window()
        .and_then(|w| w.location().href().ok())
        .unwrap_or_default();
    web_sys::Url::new_with_base(url, &base)
        .map(|u| u.href())
        .unwrap_or_else(|_| url.to_string())
}

async fn body(resp: &Response, url: &str) -> Result<Vec<u8>> {
    let fail = |e: JsValue| Error::load(url, format!("{e:?}"));
    let buf = JsFuture::from(resp.array_buffer().map_err(fail)?)
        .await
        .map_err(fail)?;
    Ok(Uint8Array::new(&buf).to_vec())
}

/// The stored bytes of `url`, if stored and intact.
async fn lookup(cache: &Cache, url: &str) -> Option<Vec<u8>> {
    let hit = JsFuture::from(cache.match_with_str(url)).await.ok()?;
    let resp: Response = hit.dyn_into().ok()?;
    let want = resp.headers().get(SHA_HEADER).ok().flatten();
    let bytes = body(&resp, url).await.ok()?;
    if want.as_deref() == Some(sha256_hex(&bytes).as_str()) {
        Some(bytes)
    } else {
        log(&format!(
            "{url}: the stored copy does not match its SHA-256; fetching it again"
        ));
        let _ = JsFuture::from(cache.delete_with_str(url)).await;
        None
    }
}

/// Bytes free in the origin's storage quota, when the browser says.
async fn free_bytes() -> Option<f64> {
    let storage = web_sys::window()?.navigator().storage();
    let est = JsFuture::from(storage.estimate().ok()?).await.ok()?;
    let get = |k: &str| Reflect::get(&est, &k.into()).ok().and_then(|v| v.as_f64());
    Some(get("quota")? - get("usage").unwrap_or(0.0))
}

/// Stores `bytes` as `url` unless the quota is too small; returns the message shown.
async fn store(cache: &Cache, url: &str, bytes: &[u8], sha: &str) -> String {
    let need = bytes.len() as f64;
    if let Some(free) = free_bytes().await
        && free < need * 1.1
    {
        return format!(
            "{url}: not stored in the browser (needs {:.1} MiB, {:.1} MiB of the storage quota free): delete stored models below to keep it for the next visit",
            need / MIB,
            free.max(0.0) / MIB
        );
    }
    let headers = match Headers::new() {
        Ok(h) => h,
        Err(e) => return format!("{url}: not stored ({e:?})"),
    };
    let _ = headers.set(SHA_HEADER, sha);
    let _ = headers.set(SIZE_HEADER, &bytes.len().to_string());
    let _ = headers.set("content-type", "application/octet-stream");
    let init = ResponseInit::new();
    init.set_headers(&headers);
    let mut copy = bytes.to_vec();
    let resp = match Response::new_with_opt_u8_array_and_init(Some(&mut copy), &init) {
        Ok(r) => r,
        Err(e) => return format!("{url}: not stored ({e:?})"),
    };
    match JsFuture::from(cache.put_with_str(url, &resp)).await {
        Ok(_) => format!(
            "{url}: stored in the browser ({:.1} MiB, SHA-256 {})",
            need / MIB,
            &sha[..12]
        ),
        Err(e) => format!(
            "{url}: not stored in the browser: the storage quota is full ({}); delete stored models below",
            Reflect::get(&e, &"name".into())
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_else(|| format!("{e:?}"))
        ),
    }
}

/// Streams `resp`'s body, showing `label`'s progress in MiB and MiB/s.
async fn read_with_progress(resp: &Response, url: &str, label: &str) -> Result<Vec<u8>> {
    let total = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<f64>().ok());
    let Some(stream) = resp.body() else {
        return body(resp, url).await;
    };
    let reader: web_sys::ReadableStreamDefaultReader = stream
        .get_reader()
        .dyn_into()
        .map_err(|_| Error::load(url, "no stream reader"))?;
    let fail = |e: JsValue| Error::load(url, format!("{e:?}"));
    let mut out = Vec::with_capacity(total.unwrap_or(0.0) as usize);
    let t0 = now();
    let mut shown = 0.0;
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(fail)?;
        if Reflect::get(&chunk, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true)
        {
            break;
        }
        if let Ok(v) = Reflect::get(&chunk, &"value".into()) {
            out.extend(Uint8Array::new(&v).to_vec());
        }
        let t = now();
        if t - shown > 0.2 {
            shown = t;
            let got = out.len() as f64 / MIB;
            let rate = got / (t - t0).max(1e-3);
            let of = total
                .map(|b| format!(" of {:.1}", b / MIB))
                .unwrap_or_default();
            status(&format!(
                "downloading {label}: {got:.1}{of} MiB, {rate:.1} MiB/s"
            ));
            if let Some(b) = total {
                set_progress(out.len() as f64, b);
            }
        }
    }
    Ok(out)
}

fn set_progress(value: f64, max: f64) {
    if let Some(p) = super::dom::doc()
        .get_element_by_id("dl-progress")
        .and_then(|e| e.dyn_into::<web_sys::HtmlProgressElement>().ok())
    {
        p.set_max(max.max(1.0));
        p.set_value(value);
    }
}

/// The bytes at `url`: from the browser's store when it holds them intact, else downloaded
/// (progress in MiB and MiB/s on the status line, `label` naming the file) and stored with
/// their SHA-256 where the quota allows. Returns the bytes and whether they came from the
/// store.
///
/// # Errors
/// [`Error::Load`] naming the URL: a network error or an HTTP status other than 2xx.
pub async fn fetch_cached(url: &str, label: &str) -> Result<(Vec<u8>, bool)> {
    let key = absolute(url);
    let cache = open().await;
    if let Some(c) = &cache
        && let Some(bytes) = lookup(c, &key).await
    {
        return Ok((bytes, true));
    }
    let fail = |e: JsValue| Error::load(url, format!("{e:?}"));
    let w = web_sys::window().ok_or_else(|| Error::load(url, "no window"))?;
    let resp = JsFuture::from(w.fetch_with_str(url)).await.map_err(fail)?;
    let resp: Response = resp
        .dyn_into()
        .map_err(|_| Error::load(url, "not a response"))?;
    if !resp.ok() {
        return Err(Error::load(
            url,
            format!("HTTP {} {}", resp.status(), resp.status_text()),
        ));
    }
    let bytes = read_with_progress(&resp, url, label).await?;
    set_progress(1.0, 1.0);
    if let Some(c) = &cache {
        let sha = sha256_hex(&bytes);
        log(&store(c, &key, &bytes, &sha).await);
        render_stored().await;
    }
    Ok((bytes, false))
}

/// One stored file: its URL and size in bytes.
struct Stored {
    url: String,
    bytes: f64,
}

async fn stored(cache: &Cache) -> Vec<Stored> {
    let Ok(keys) = JsFuture::from(cache.keys()).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for k in Array::from(&keys).iter() {
        let Ok(req) = k.dyn_into::<Request>() else {
            continue;
        };
        let url = req.url();
        let size = match JsFuture::from(cache.match_with_request(&req)).await {
            Ok(r) => r
                .dyn_into::<Response>()
                .ok()
                .and_then(|r| r.headers().get(SIZE_HEADER).ok().flatten())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0),
            Err(_) => 0.0,
        };
        out.push(Stored { url, bytes: size });
    }
    out
}

/// The folder of a stored URL (a model's or a data set's files share it).
fn folder_of(url: &str) -> String {
    url.rsplit_once('/')
        .map_or(url.to_string(), |(f, _)| format!("{f}/"))
}

/// Redraws the "stored in this browser" table (`#stored`) and the quota line (`#quota`): one
/// row per folder with its files, size and a delete button.
pub async fn render_stored() {
    let Some(cache) = open().await else {
        set_text(
            "quota",
            "this browser offers no Cache Storage here: files are fetched on every visit",
        );
        return;
    };
    let mut groups: BTreeMap<String, (Vec<String>, f64)> = BTreeMap::new();
    for s in stored(&cache).await {
        let g = groups.entry(folder_of(&s.url)).or_default();
        g.0.push(s.url.rsplit('/').next().unwrap_or("").to_string());
        g.1 += s.bytes;
    }
    let mut html = String::from("<tr><th>folder</th><th>files</th><th>MiB</th><th></th></tr>");
    for (i, (folder, (files, bytes))) in groups.iter().enumerate() {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td><button class=\"del\" data-folder=\"{}\" id=\"del-{i}\">Delete</button></td></tr>",
            esc(folder),
            esc(&files.join(", ")),
            bytes / MIB,
            esc(folder).replace('"', "&quot;"),
        ));
    }
    if groups.is_empty() {
        html.push_str("<tr><td colspan=\"4\">nothing stored yet</td></tr>");
    }
    set_html("stored", &html);
    for (i, folder) in groups.keys().enumerate() {
        let folder = folder.clone();
        super::dom::on_click(&format!("del-{i}"), move || {
            let folder = folder.clone();
            wasm_bindgen_futures::spawn_local(async move {
                delete_folder(&folder).await;
                render_stored().await;
            });
        });
    }
    let quota = match free_bytes().await {
        Some(free) => format!("{:.0} MiB of browser storage free", free.max(0.0) / MIB),
        None => String::new(),
    };
    set_text("quota", &quota);
}

/// Deletes every stored file under `folder`.
async fn delete_folder(folder: &str) {
    let Some(cache) = open().await else { return };
    for s in stored(&cache).await {
        if folder_of(&s.url) == folder {
            let _ = JsFuture::from(cache.delete_with_str(&s.url)).await;
        }
    }
    log(&format!("deleted the stored files of {folder}"));
}

/// The names a stored checkpoint may hold (those `train::artifacts::checkpoint_files` writes).
const CHECKPOINT_NAMES: [&str; 6] = [
    names::ADAPTER_CONFIG,
    names::ADAPTER_WEIGHTS,
    names::HEADS,
    names::HEADS_CONFIG,
    names::MODEL,
    names::CONFIG,
];

/// The folder URL (the cache's key prefix) of the finished run `id`'s stored checkpoint.
fn checkpoint_folder(id: &str) -> String {
    absolute(&format!("checkpoints/{id}/"))
}

/// Keeps a finished run's best checkpoint (`files`) in the browser's store under
/// `checkpoints/<id>/`, so "Try it" and "Download adapter" work after a reload. The stored
/// list shows it, with a Delete button, like the models.
///
/// # Errors
/// [`Error::Load`] naming the folder where the browser has no Cache Storage or a file could not
/// be stored (the quota).
pub async fn store_checkpoint(id: &str, files: &Files) -> Result<()> {
    let folder = checkpoint_folder(id);
    let cache = open()
        .await
        .ok_or_else(|| Error::load(&folder, "this browser offers no Cache Storage"))?;
    for (name, bytes) in files {
        let url = format!("{folder}{name}");
        let msg = store(&cache, &url, bytes, &sha256_hex(bytes)).await;
        if !msg.contains(": stored in the browser") {
            return Err(Error::load(&folder, msg));
        }
    }
    Ok(())
}

/// Deletes the checkpoint stored for run `id` ([`store_checkpoint`]).
pub async fn delete_checkpoint(id: &str) {
    delete_folder(&checkpoint_folder(id)).await;
}

/// The checkpoint stored for run `id` ([`store_checkpoint`]), if every file is there intact.
pub async fn load_checkpoint(id: &str) -> Option<Files> {
    let cache = open().await?;
    let folder = checkpoint_folder(id);
    let mut files: Files = Vec::new();
    for s in stored(&cache).await {
        let Some(name) = s.url.strip_prefix(&folder) else {
            continue;
        };
        let Some(name) = CHECKPOINT_NAMES.into_iter().find(|n| *n == name) else {
            continue;
        };
        files.push((name, lookup(&cache, &s.url).await?));
    }
    (!files.is_empty()).then_some(files)
}
