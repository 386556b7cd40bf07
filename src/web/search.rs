//! "Try it" for an embedding model: semantic search. A corpus (pasted, loaded from a file, or
//! offered after an embedding run: the training file's positives) is embedded by the base model
//! and by the trained adapter; a typed query shows the nearest texts by cosine under each, side
//! by side, with where the adapter's hits stood in the base model's ranking. The embeddings come
//! from the same code as `lorabert search` (`train::texts::embed_encoded`, brute-force cosine as
//! sentence-transformers' `util.semantic_search`); the corpus's are kept until the corpus or the
//! model changes, so a new query embeds only itself.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;

use super::STATE;
use super::dom::{
    el, esc, input, now, num, on_change, report, set_html, set_input, set_text, status,
};
use super::load::{ModelBytes, gpu, load_model, picked_file};
use super::tryit::{Trained, current, is_embedding};
use crate::data::sha256_hex;
use crate::error::{Error, Result};
use crate::model::{Bert, Encoded};
use crate::tasks::retrieval::{normalized, top_k};
use crate::train::texts::embed_encoded;

/// The most corpus texts one search embeds (twice: base model and adapter).
pub const MAX_CORPUS: usize = 5000;

/// Texts per forward pass (the page's evaluation batch).
const BATCH: usize = 64;

/// The corpus embeddings of the last search, unit length, row-major `[texts, hidden]`.
struct Corpus {
    /// The model they were embedded by (a weak reference keeps its address from being reused).
    model: Weak<Trained>,
    /// The corpus's SHA-256.
    key: String,
    base: Rc<Vec<f32>>,
    adapter: Rc<Vec<f32>>,
}

thread_local! {
    static CORPUS: RefCell<Option<Corpus>> = const { RefCell::new(None) };
    /// The base model's encoder, built on the first search, with the model files it came from.
    static BASE: RefCell<Option<(Weak<ModelBytes>, Rc<Bert>)>> = const { RefCell::new(None) };
}

/// The corpus of the text area: one text per line, trimmed, empty lines skipped, a byte-order
/// mark dropped.
///
/// # Errors
/// [`Error::Invalid`] for an empty corpus or one over [`MAX_CORPUS`] texts.
pub fn corpus_lines(text: &str) -> Result<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let docs: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if docs.is_empty() {
        return Err(Error::Invalid(
            "Search: paste or load the texts to search, one per line".into(),
        ));
    }
    if docs.len() > MAX_CORPUS {
        return Err(Error::Invalid(format!(
            "Search: the corpus has {} texts; the page searches at most {MAX_CORPUS} (use `lorabert \
             search` for more)",
            docs.len()
        )));
    }
    Ok(docs)
}

/// Fills the corpus with `docs` and the query with `query`, unless the user typed their own
/// (the corpus field is empty or still holds what was offered before).
pub fn offer_corpus(docs: &[String], query: &str) {
    let Some(area) = el("try-corpus") else { return };
    let offered = area.get_attribute("data-offered").is_some();
    if input("try-corpus").trim().is_empty() || offered {
        set_input("try-corpus", &docs.join("\n"));
        let _ = area.set_attribute("data-offered", "");
        set_input("try-query", query);
        set_text(
            "try-corpus-note",
            &format!(
                "{} texts: the training file's positives (edit, paste or load your own)",
                docs.len()
            ),
        );
    }
}

/// The base model's encoder on the page's device (the model files loaded now, built once).
///
/// # Errors
/// The model's files fail to load or build.
async fn base_encoder(t: &Trained) -> Result<Rc<Bert>> {
    let model = match STATE.with(|s| s.borrow().model.clone()) {
        Some(m) => m,
        None => load_model().await?,
    };
    if let Some((m, b)) = BASE.with(|b| b.borrow().clone())
        && std::ptr::eq(m.as_ptr(), Rc::as_ptr(&model))
    {
        return Ok(b);
    }
    let g = gpu().await;
    let bert = Rc::new(t.pretrained.encoder(
        &model.weights,
        "model.safetensors (base)",
        &g.device,
    )?);
    BASE.with(|b| *b.borrow_mut() = Some((Rc::downgrade(&model), bert.clone())));
    Ok(bert)
}

/// Unit-length embeddings `[texts, hidden]` of `encs` through `bert`.
async fn unit(bert: &Bert, t: &Trained, encs: &[Encoded]) -> Result<Vec<f32>> {
    let h = bert.embeddings.word_embeddings.weight.dims()[1];
    let v = embed_encoded(bert, encs, t.heads.pooling, BATCH, t.pretrained.pad_id()).await?;
    Ok(normalized(&v, h))
}

/// One result row as `lorabert search --json` writes it.
fn hit_json(
    query: &str,
    rank: usize,
    (i, score): (usize, f32),
    docs: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "query": query, "rank": rank + 1, "score": score, "corpus_id": i, "text": docs[i],
    })
}

/// Searches the corpus for the typed query with the base model and the adapter and shows the
/// top results of each side by side.
///
/// # Errors
/// No model; a model that is not an embedding model; an empty query or corpus; a corpus over
/// [`MAX_CORPUS`]; a base model whose width differs from the adapter's; as [`embed_encoded`].
pub async fn run() -> Result<()> {
    let t = current().await?;
    if !is_embedding(&t.heads) {
        return Err(Error::Invalid(
            "Search needs an embedding model (trained on pairs); this one predicts labels: use \
             Predict"
                .into(),
        ));
    }
    let query = input("try-query").trim().to_string();
    if query.is_empty() {
        return Err(Error::Invalid("Search: type a query first".into()));
    }
    let k: usize = num("try-top-k", "results")?;
    if k == 0 {
        return Err(Error::Invalid("Search: show at least 1 result".into()));
    }
    let docs = corpus_lines(&input("try-corpus"))?;
    let base = base_encoder(&t).await?;
    let h = t.model.bert.embeddings.word_embeddings.weight.dims()[1];
    if base.embeddings.word_embeddings.weight.dims()[1] != h {
        return Err(Error::Invalid(
            "Search: the loaded base model is not the one this adapter was trained on (its \
             width differs); load that model first"
                .into(),
        ));
    }
    let tok = &t.pretrained.tokenizer;
    let t0 = now();
    let key = sha256_hex(docs.join("\n").as_bytes());
    let kept = CORPUS.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|c| c.key == key && std::ptr::eq(c.model.as_ptr(), Rc::as_ptr(&t)))
            .map(|c| (c.base.clone(), c.adapter.clone()))
    });
    let (base_docs, adapter_docs) = match kept {
        Some(v) => v,
        None => {
            status(&format!(
                "Search: embedding {} texts with the base model and the adapter ...",
                docs.len()
            ));
            let encs = docs
                .iter()
                .map(|d| tok.encode(d))
                .collect::<Result<Vec<_>>>()?;
            let b = Rc::new(unit(&base, &t, &encs).await?);
            let a = Rc::new(unit(&t.model.bert, &t, &encs).await?);
            CORPUS.with(|c| {
                *c.borrow_mut() = Some(Corpus {
                    model: Rc::downgrade(&t),
                    key,
                    base: b.clone(),
                    adapter: a.clone(),
                })
            });
            (b, a)
        }
    };
    let q = [tok.encode(&query)?];
    let (qb, qa) = (
        unit(&base, &t, &q).await?,
        unit(&t.model.bert, &t, &q).await?,
    );
    let base_hits = top_k(&qb, &base_docs, h, docs.len(), None);
    let adapter_hits = top_k(&qa, &adapter_docs, h, k, None);
    let base_rank: HashMap<usize, usize> = base_hits
        .iter()
        .enumerate()
        .map(|(r, (i, _))| (*i, r + 1))
        .collect();
    let base_hits = &base_hits[..k.min(base_hits.len())];
    set_html(
        "try-hits",
        &hits_html(&docs, base_hits, &adapter_hits, &base_rank),
    );
    let json = serde_json::json!({
        "base": base_hits.iter().enumerate().map(|(r, h)| hit_json(&query, r, *h, &docs)).collect::<Vec<_>>(),
        "adapter": adapter_hits.iter().enumerate().map(|(r, h)| hit_json(&query, r, *h, &docs)).collect::<Vec<_>>(),
    });
    set_text("try-hits-json", &json.to_string());
    let ms = (now() - t0) * 1000.0;
    set_text(
        "try-search-time",
        &format!("{ms:.0} ms, {} texts", docs.len()),
    );
    status("Search: done");
    Ok(())
}

/// The side-by-side table: rank, the base model's hit and cosine, the adapter's hit, cosine and
/// its rank under the base model.
fn hits_html(
    docs: &[String],
    base: &[(usize, f32)],
    adapter: &[(usize, f32)],
    base_rank: &HashMap<usize, usize>,
) -> String {
    let mut html = String::from(
        "<tr><th>rank</th><th>base model</th><th>cosine</th><th>fine-tuned</th><th>cosine</th>\
         <th>base rank</th></tr>",
    );
    for r in 0..base.len().max(adapter.len()) {
        let cell = |h: Option<&(usize, f32)>| match h {
            Some((i, s)) => format!("<td>{}</td><td>{s:.4}</td>", esc(&docs[*i])),
            None => "<td></td><td></td>".to_string(),
        };
        let moved = adapter.get(r).map_or(String::new(), |(i, _)| {
            let b = base_rank.get(i).copied().unwrap_or(0);
            match b.cmp(&(r + 1)) {
                std::cmp::Ordering::Greater => format!("<span class=\"up\">{b} ↑</span>"),
                std::cmp::Ordering::Less => format!("<span class=\"down\">{b} ↓</span>"),
                std::cmp::Ordering::Equal => format!("{b}"),
            }
        });
        html.push_str(&format!(
            "<tr><td>{}</td>{}{}<td>{moved}</td></tr>",
            r + 1,
            cell(base.get(r)),
            cell(adapter.get(r))
        ));
    }
    html
}

/// Wires the corpus file picker: a text file's lines (or a CSV, TSV or JSON Lines file's `text`
/// column, as `lorabert search --corpus` reads it) replace the corpus.
pub fn wire() {
    on_change("try-corpus-file", || {
        spawn_local(async { report(load_corpus_file().await) })
    });
    // Once edited, the corpus is the user's: a later run does not replace it.
    if let Some(e) = el("try-corpus") {
        let c = wasm_bindgen::closure::Closure::<dyn Fn()>::new(|| {
            if let Some(a) = el("try-corpus") {
                let _ = a.remove_attribute("data-offered");
            }
        });
        let _ = e.add_event_listener_with_callback("input", c.as_ref().unchecked_ref());
        c.forget();
    }
}

/// Reads the picked corpus file into the corpus field.
async fn load_corpus_file() -> Result<()> {
    let Some((name, bytes)) = picked_file("try-corpus-file", None).await? else {
        return Ok(());
    };
    // One text per line in the field: a table's field that spans lines becomes one line.
    let docs: Vec<String> = crate::data::corpus::corpus_texts(&bytes, &name, None)?
        .iter()
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    set_input("try-corpus", &docs.join("\n"));
    if let Some(a) = el("try-corpus") {
        let _ = a.remove_attribute("data-offered");
    }
    set_text(
        "try-corpus-note",
        &format!("{} texts from {name}", docs.len()),
    );
    Ok(())
}
