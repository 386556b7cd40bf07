//! "Try it": a sentence (or a pair) typed on the page through the last run's best checkpoint,
//! or through a checkpoint loaded from disk (a lorabert checkpoint's files, or a PEFT
//! sequence-classification adapter's), showing the predicted label with every class's
//! probability, or the score. One forward pass without the training graph, through the same
//! code as `lorabert predict --sentence` (`train::infer`). A token-classification model shows
//! the sentence's entities highlighted ([`super::tags`]); an embedding model is tried by
//! semantic search instead ([`super::search`]).

use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::Uint8Array;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::HtmlInputElement;

use super::STATE;
use super::dom::{doc, el, esc, input, log, now, set_html, set_text, status};
use super::load::{ModelBytes, gpu, load_model};
use crate::error::{Error, Result};
use crate::model::Pretrained;
use crate::tasks::own::{OwnRow, OwnRows, TaskKind};
use crate::tasks::{HeadsConfig, MultitaskModel};
use crate::train::artifacts::{Files, names, restore_any};
use crate::train::entities::{predict_entities, token_task};
use crate::train::evaluate::PredictionRow;
use crate::train::infer::predict_texts;

/// A trained model ready to predict, with what it was loaded from.
pub struct Trained {
    /// The model (inference device, no autodiff).
    pub model: MultitaskModel,
    /// Its heads' configuration.
    pub heads: HeadsConfig,
    /// Tokenizer and configuration of the base.
    pub pretrained: Pretrained,
    /// Where it came from (shown on the page).
    pub source: String,
}

/// Builds the model of checkpoint `files` (name → bytes) on the page's device: the base model's
/// weights (or the checkpoint's own `model.safetensors`, full fine-tuning) with the adapter and
/// heads of the files.
///
/// # Errors
/// The loaders' errors naming the file and tensor; a PEFT folder without a classifier.
pub async fn build(
    model: &ModelBytes,
    files: BTreeMap<String, Vec<u8>>,
    source: &str,
) -> Result<Trained> {
    let g = gpu().await;
    // `lorabert predict`'s default --max-len, where the model has the positions.
    let pretrained = model.pretrained(128.min(model.cfg.max_position_embeddings))?;
    let (weights, name) = match files.get(names::MODEL) {
        Some(w) => (w.as_slice(), names::MODEL),
        None => (model.weights.as_slice(), "model.safetensors (base)"),
    };
    let bert = pretrained.encoder(weights, name, &g.device)?;
    let mut get = |n: &str| Ok(files.get(n).cloned());
    let r = restore_any(bert, &mut get, &model.config_json, &g.device)?;
    for n in &r.notes {
        log(&format!("note: {n}"));
    }
    Ok(Trained {
        model: r.model,
        heads: r.heads,
        pretrained,
        source: source.to_string(),
    })
}

/// Whether `heads` are an embedding model's (no head: "Try it" searches with it).
pub fn is_embedding(heads: &HeadsConfig) -> bool {
    heads
        .own
        .as_ref()
        .is_some_and(|o| matches!(o.kind, TaskKind::Embedding { .. }))
}

/// Shows the fields of "Try it" for the model's kind: semantic search for an embedding model
/// ([`super::search`]), else a sentence (or pair) to predict.
pub fn show_mode(embedding: bool) {
    // Results of the previous model are not this one's.
    for id in ["try-out", "try-hits"] {
        set_html(id, "");
    }
    for id in ["try-json", "try-hits-json", "try-time", "try-search-time"] {
        set_text(id, "");
    }
    if let Some(e) = el("try-classify") {
        e.set_hidden(embedding);
    }
    if let Some(e) = el("try-search") {
        e.set_hidden(!embedding);
    }
}

/// Makes the last run's best checkpoint `files` (kept as `State::adapter_files`) the one "Try
/// it" uses; its model is built on the first prediction, so a rank sweep does not rebuild it
/// after every run.
pub fn offer_run(label: &str, files: &Files) {
    let heads = files
        .iter()
        .find(|(n, _)| *n == names::HEADS_CONFIG)
        .and_then(|(_, b)| serde_json::from_slice::<HeadsConfig>(b).ok());
    show_mode(heads.as_ref().is_some_and(is_embedding));
    set_text("try-model", &format!("trying: {label}"));
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.trained = None;
        s.try_source = Some(label.to_string());
    });
}

/// The model "Try it" uses: the one kept, else built from the last run's best checkpoint.
///
/// # Errors
/// No trained or loaded model; as [`build`].
pub(super) async fn current() -> Result<Rc<Trained>> {
    if let Some(t) = STATE.with(|s| s.borrow().trained.clone()) {
        return Ok(t);
    }
    let (files, model, label) = STATE.with(|s| {
        let s = s.borrow();
        (
            s.adapter_files.clone(),
            s.model.clone(),
            s.try_source.clone(),
        )
    });
    let Some(files) = files else {
        return Err(Error::Invalid(
            "Try it needs a model: train one above, or load a checkpoint's files".into(),
        ));
    };
    // After a reload the base model is loaded again (from the browser's store).
    let model = match model {
        Some(m) => m,
        None => load_model().await?,
    };
    status("loading the trained model for Try it ...");
    let files: BTreeMap<String, Vec<u8>> =
        files.into_iter().map(|(n, b)| (n.to_string(), b)).collect();
    let label = label.unwrap_or_else(|| "the last run".into());
    set_trained(build(&model, files, &label).await?);
    STATE
        .with(|s| s.borrow().trained.clone())
        .ok_or_else(|| Error::Invalid("Try it: the model was not kept".into()))
}

/// Keeps `t` as the model "Try it" uses.
pub fn set_trained(t: Trained) {
    let what = format!(
        "trying: {} ({})",
        t.source,
        t.heads
            .kinds()
            .map(|kinds| kinds
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    set_text("try-model", &what);
    show_mode(is_embedding(&t.heads));
    STATE.with(|s| s.borrow_mut().trained = Some(Rc::new(t)));
}

/// Loads the checkpoint files picked in `#ckpt-files`.
///
/// # Errors
/// No files picked; a file the browser cannot read; as [`build`].
pub async fn load_picked() -> Result<()> {
    let Some(list) = doc()
        .get_element_by_id("ckpt-files")
        .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
        .and_then(|i| i.files())
    else {
        return Ok(());
    };
    let mut files = BTreeMap::new();
    for i in 0..list.length() {
        let Some(f) = list.get(i) else { continue };
        let buf = JsFuture::from(f.array_buffer())
            .await
            .map_err(|e| Error::load(f.name(), format!("{e:?}")))?;
        files.insert(f.name(), Uint8Array::new(&buf).to_vec());
    }
    if files.is_empty() {
        return Err(Error::Invalid(
            "pick the checkpoint's files (adapter_config.json, adapter_model.safetensors, heads_config.json, heads.safetensors)".into(),
        ));
    }
    let model = match STATE.with(|s| s.borrow().model.clone()) {
        Some(m) => m,
        None => load_model().await?,
    };
    status("loading the checkpoint ...");
    // Heads alone run on the base weights: said, not silent.
    let bare = !files.contains_key(names::ADAPTER_WEIGHTS) && !files.contains_key(names::MODEL);
    let names: Vec<&String> = files.keys().collect();
    let source = format!(
        "checkpoint files {}",
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut t = build(&model, files, &source).await?;
    if bare {
        t.source
            .push_str(" (no adapter_model.safetensors or model.safetensors: the base weights)");
    }
    set_trained(t);
    status("checkpoint loaded: try it under \"Try it\"");
    Ok(())
}

/// The rows' HTML: one row per head with the label and its probability (multi-label: the
/// labels over their thresholds), and a bar per class.
fn rows_html(rows: &[PredictionRow]) -> String {
    let mut html = String::from("<tr><th>task</th><th>prediction</th><th>probabilities</th></tr>");
    for r in rows {
        let pred = match (&r.label, &r.labels) {
            (Some(l), _) => format!("<b>{}</b> ({:.1} %)", esc(l), 100.0 * r.score),
            // Multi-label: the labels over their thresholds (possibly none).
            (None, Some(ls)) if ls.is_empty() => "<b>no label</b>".to_string(),
            (None, Some(ls)) => format!(
                "<b>{}</b>",
                ls.iter().map(|l| esc(l)).collect::<Vec<_>>().join(", ")
            ),
            (None, None) => format!("<b>{:.4}</b>", r.score),
        };
        let mut probs = String::new();
        for (c, p) in &r.probabilities {
            probs.push_str(&format!(
                "<div class=\"bar\"><span class=\"bar-label\">{}</span><span class=\"bar-fill\" style=\"width:{:.0}px\"></span> {:.4}</div>",
                esc(c),
                (p * 160.0).clamp(0.0, 160.0),
                p
            ));
        }
        html.push_str(&format!(
            "<tr><td>{}</td><td>{pred}</td><td>{probs}</td></tr>",
            esc(&r.task)
        ));
    }
    html
}

/// Predicts the typed sentence (and pair) and shows the result.
///
/// # Errors
/// No trained or loaded model; an empty sentence; as [`predict_texts`].
pub async fn run() -> Result<()> {
    let t = current().await?;
    let text = input("try-text");
    if text.trim().is_empty() {
        return Err(Error::Invalid("Try it: type a sentence first".into()));
    }
    if token_task(&t.heads).is_some() {
        return tag(&t, text).await;
    }
    let pair = Some(input("try-pair")).filter(|p| !p.trim().is_empty());
    let rows = OwnRows {
        source: "the Try it field".into(),
        rows: vec![OwnRow {
            line: 1,
            id: "1".into(),
            text,
            text_pair: pair,
            label: String::new(),
            negatives: Vec::new(),
        }],
        skipped_lines: Vec::new(),
    };
    let t0 = now();
    let out = predict_texts(
        &t.model,
        &t.heads,
        &t.pretrained.tokenizer,
        &rows,
        1,
        t.pretrained.pad_id(),
    )
    .await?;
    let ms = (now() - t0) * 1000.0;
    set_html("try-out", &rows_html(&out));
    set_text("try-json", &serde_json::to_string(&out).unwrap_or_default());
    set_text("try-time", &format!("{ms:.0} ms"));
    Ok(())
}

/// Tags the typed `text` with a token-classification model: its entities highlighted with type
/// and score ([`super::tags::entities_html`]), and in `#try-json` the JSON `lorabert predict
/// --sentence` prints (one object per text, in an array).
///
/// # Errors
/// As [`predict_entities`].
async fn tag(t: &Trained, text: String) -> Result<()> {
    let t0 = now();
    let out = predict_entities(
        &t.model,
        &t.heads,
        &t.pretrained.tokenizer,
        &[("1".to_string(), text.clone())],
        1,
        t.pretrained.pad_id(),
    )
    .await?;
    let ms = (now() - t0) * 1000.0;
    if let Some(e) = out.first() {
        set_html("try-out", &super::tags::entities_html(&text, e));
    }
    set_text("try-json", &serde_json::to_string(&out).unwrap_or_default());
    set_text("try-time", &format!("{ms:.0} ms"));
    Ok(())
}
