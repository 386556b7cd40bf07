//! Your own data in the page: a CSV, TSV or JSON Lines file picked, dropped on the page or
//! fetched by URL; a preview of its first rows; column pickers filled with the same detection
//! as the CLI (`tasks::own`: `sentence`/`text`, `sentence1` + `sentence2`, `label`, ...); the
//! inferred task kind with its label counts (or, for embedding pairs, the loss); a validation
//! file or a seeded split. Training reads the same [`DataSpec`] as `lorabert train
//! --train-file`.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::HtmlInputElement;

use super::STATE;
use super::dom::{doc, el, esc, input, log, report, set_html, set_input, set_text, status};
use super::load::picked_file;
use crate::data::table::{Format, Table};
use crate::error::{Error, Result};
use crate::model::BertTokenizer;
use crate::tasks::PairEncoding;
use crate::tasks::own::{self, Columns, DataSpec, OwnData, TaskType};

/// Rows shown in the preview.
const PREVIEW_ROWS: usize = 5;

/// An own data file as the page holds it.
pub struct OwnFile {
    /// The file's name (its extension picks the format).
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// The own data files of the page: training and, optionally, validation.
#[derive(Default)]
pub struct OwnFiles {
    /// The training file.
    pub train: Option<Rc<OwnFile>>,
    /// The validation file.
    pub validation: Option<Rc<OwnFile>>,
}

fn table_of(f: &OwnFile) -> Result<Table> {
    let format = Format::resolve(&f.name, None)?;
    if format == Format::Conll {
        return Err(Error::Invalid(format!(
            "{}: a CoNLL file holds tagged words, not a table",
            f.name
        )));
    }
    Table::read(&f.bytes, &f.name, format, true)
}

/// Whether `f` under the page's fields is a file of tagged words (CoNLL, or JSON Lines with
/// token lists): token classification ([`super::tags`]).
fn is_tokens(f: &OwnFile) -> bool {
    spec(f, None).is_ok_and(|s| own::tokens::is_token_data(&s, &f.bytes).unwrap_or(false))
}

/// Fills a `<select>` with `options` (value = text), selecting `chosen`.
fn fill_select(id: &str, options: &[String], none: Option<&str>, chosen: Option<&str>) {
    let mut html = String::new();
    if let Some(n) = none {
        html.push_str(&format!("<option value=\"\">{}</option>", esc(n)));
    }
    for o in options {
        let sel = if Some(o.as_str()) == chosen {
            " selected"
        } else {
            ""
        };
        let v = esc(o).replace('"', "&quot;");
        html.push_str(&format!("<option value=\"{v}\"{sel}>{}</option>", esc(o)));
    }
    set_html(id, &html);
}

/// The preview table's HTML: the header and the first rows, long fields cut.
fn preview_html(t: &Table) -> String {
    let cut = |s: &str| {
        if s.chars().count() > 80 {
            format!("{}…", s.chars().take(80).collect::<String>())
        } else {
            s.to_string()
        }
    };
    let mut html = String::from("<tr><th>line</th>");
    for h in &t.header {
        html.push_str(&format!("<th>{}</th>", esc(h)));
    }
    html.push_str("</tr>");
    for r in t.rows.iter().take(PREVIEW_ROWS) {
        html.push_str(&format!("<tr><td>{}</td>", r.line));
        for f in &r.fields {
            html.push_str(&format!("<td>{}</td>", esc(&cut(f))));
        }
        html.push_str("</tr>");
    }
    html
}

/// The spec of the page's own-data fields for the training file `train` (and validation
/// file `validation`).
pub fn spec(train: &OwnFile, validation: Option<&OwnFile>) -> Result<DataSpec> {
    let col = |id: &str| Some(input(id)).filter(|v| !v.is_empty());
    let split: f64 = input("own-split").trim().parse().map_err(|_| {
        Error::Invalid(format!(
            "validation split: `{}` is not a number",
            input("own-split")
        ))
    })?;
    Ok(DataSpec {
        train_file: train.name.clone(),
        validation_file: validation.map(|v| v.name.clone()),
        validation_split: split,
        format: None,
        no_header: false,
        text_column: col("own-text"),
        text_pair_column: col("own-pair"),
        label_column: col("own-label"),
        task_type: match input("own-type").as_str() {
            "classification" => Some(TaskType::Classification),
            "regression" => Some(TaskType::Regression),
            "multi-label" => Some(TaskType::MultiLabel),
            "embedding" => Some(TaskType::Embedding),
            _ => None,
        },
        loss: own::embedding::loss_of_flag(&input("own-loss")),
        score_range: score_range(&input("own-score-range"))?,
        metric_for_best_model: None,
        strict_quotes: false,
        ..DataSpec::default()
    })
}

/// The score range field (`LO,HI`, as `--score-range`); `None` when empty.
///
/// # Errors
/// [`Error::Invalid`] for anything but two numbers separated by a comma.
fn score_range(text: &str) -> Result<Option<[f64; 2]>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let bad = || {
        Error::Invalid(format!(
            "score range: `{text}` is not two numbers LO,HI (0,5)"
        ))
    };
    let (lo, hi) = text.split_once(',').ok_or_else(bad)?;
    let num = |v: &str| v.trim().parse::<f64>().map_err(|_| bad());
    Ok(Some([num(lo)?, num(hi)?]))
}

/// Shows the task the columns make: kind, classes and label counts (or the target's range),
/// or the error naming line and column.
fn show_summary() {
    let Some(train) = STATE.with(|s| s.borrow().own.train.clone()) else {
        return;
    };
    let tokens = is_tokens(&train);
    show_columns(!tokens);
    if tokens {
        let read = spec(&train, None).and_then(|s| own::tokens::training_tags(&s, &train.bytes));
        return show_result(read.map(|r| super::tags::summary(&r)));
    }
    let mut embedding = false;
    let text = (|| -> Result<String> {
        let t = table_of(&train)?;
        let spec = spec(&train, None)?;
        // Embedding pairs need no label: a score or 0/1 column is used where there is one.
        embedding = own::embedding::is_embedding(&t, &spec);
        if !embedding && input("own-label").is_empty() {
            return Err(Error::Invalid(
                "no label column found: pick one in the Label list".into(),
            ));
        }
        let (task, rows) = own::task_of(&t, &spec)?;
        if rows.rows.is_empty() {
            return Err(Error::data(&train.name, 1, "no rows to train on"));
        }
        // Without a validation file the rows are split at Start: too few are said now.
        if input("own-val-file").is_empty() {
            own::split(rows.clone(), &task, spec.validation_split, 42)?;
        }
        let summary = own::summarize(&rows, &task)?;
        Ok(format!(
            "{} of {}: {summary}; metrics {}",
            task.kind.describe(),
            task.columns.describe(),
            task.kind.metric_names().join(", ")
        ))
    })();
    // The loss list is for embedding pairs only; it stays while its fields are in use (a score
    // range that does not parse must stay visible to be corrected).
    let in_use = !input("own-loss").is_empty() || !input("own-score-range").is_empty();
    if let Some(e) = el("own-loss-row") {
        e.set_hidden(!(embedding || in_use));
    }
    show_result(text);
}

/// Shows the summary line `text` (or its error) and enables Start where it is not an error.
fn show_result(text: Result<String>) {
    match text {
        Ok(t) => {
            set_text("own-summary", &t);
            set_text("error", "");
            set_startable(true);
        }
        Err(e) => {
            set_text("own-summary", &format!("error: {e}"));
            set_startable(false);
        }
    }
}

/// Enables or disables Start and Sweep: own data with no usable file (a failed read, no label
/// column) trains nothing until one is picked.
pub fn set_startable(on: bool) {
    for id in ["start", "sweep"] {
        if let Some(e) = el(id) {
            if on {
                let _ = e.remove_attribute("disabled");
            } else {
                let _ = e.set_attribute("disabled", "");
            }
        }
    }
}

/// Forgets the training file after a failed read: no preview, pickers or summary of the
/// previous file stay to be trained on by mistake, and Start waits for a file that reads.
fn clear_train() {
    STATE.with(|s| s.borrow_mut().own.train = None);
    for id in ["own-text", "own-pair", "own-label"] {
        fill_select(id, &[], None, None);
    }
    set_html("own-preview", "");
    set_text("own-summary", "");
    set_startable(false);
}

/// The columns to preselect: the CLI's detection (`Columns::resolve`) where it finds them; else
/// the first usual text name (or the first column) and, for the label, the first usual name or
/// the last column that is not the text.
fn guess_columns(t: &Table) -> (String, Option<String>, String) {
    let detect = DataSpec::default();
    if own::embedding::is_embedding(t, &detect) {
        // Anchor/positive pairs: the label, a score or 0/1 column, only where there is one.
        if let Ok((_, c)) = own::embedding::kind_of(t, &detect) {
            return (c.text, c.text_pair, c.label);
        }
    }
    if let Ok(c) = Columns::resolve(t, &detect) {
        return (c.text, c.text_pair, c.label);
    }
    let first = |names: &[&str]| {
        names
            .iter()
            .find(|n| t.header.iter().any(|h| h == *n))
            .map(|n| n.to_string())
    };
    let text = first(own::TEXT_NAMES)
        .or_else(|| t.header.first().cloned())
        .unwrap_or_default();
    let pair = first(own::PAIR_NAMES);
    // Empty where no other column is left: the label picker then asks for one.
    let label = first(own::LABEL_NAMES)
        .or_else(|| {
            t.header
                .iter()
                .rev()
                .find(|h| **h != text && Some(*h) != pair.as_ref())
                .cloned()
        })
        .unwrap_or_default();
    (text, pair, label)
}

/// Reads the picked (or dropped) training file: preview, column pickers, summary.
async fn read_train_file() -> Result<()> {
    let Some((name, bytes)) = picked_file("own-file", None).await? else {
        return Ok(());
    };
    set_train(name, bytes)
}

/// Shows the column pickers (tables) or hides them (tagged words, which have none).
fn show_columns(on: bool) {
    if let Some(e) = el("own-columns") {
        e.set_hidden(!on);
    }
    if let Some(e) = el("own-loss-row").filter(|_| !on) {
        e.set_hidden(true);
    }
}

fn set_train(name: String, bytes: Vec<u8>) -> Result<()> {
    let f = OwnFile { name, bytes };
    if is_tokens(&f) {
        return set_tokens(f);
    }
    let t = table_of(&f).inspect_err(|e| {
        clear_train();
        // Said where the file was picked too, not only at the top of the page.
        set_text("own-summary", &format!("error: {e}"));
    })?;
    let (text, pair, label) = guess_columns(&t);
    fill_select("own-text", &t.header, None, Some(&text));
    fill_select(
        "own-pair",
        &t.header,
        Some("(none: single texts)"),
        pair.as_deref(),
    );
    let none = if own::embedding::is_embedding(&t, &DataSpec::default()) {
        Some("(none: anchor/positive pairs)")
    } else {
        label.is_empty().then_some("(pick the label column)")
    };
    fill_select("own-label", &t.header, none, Some(&label));
    // A loss or score range given for the previous file is not carried over to this one.
    set_input("own-loss", "");
    set_input("own-score-range", "");
    set_html("own-preview", &preview_html(&t));
    log(&format!(
        "{}: {} rows, columns {}",
        f.name,
        t.rows.len(),
        t.header.join(", ")
    ));
    status(&format!("data: {} ({} rows)", f.name, t.rows.len()));
    STATE.with(|s| s.borrow_mut().own.train = Some(Rc::new(f)));
    set_input_checked("source-own");
    show_summary();
    Ok(())
}

/// Takes a file of tagged words: the preview of its first sentences with their tags coloured,
/// the summary (tags, scheme, entities per type).
fn set_tokens(f: OwnFile) -> Result<()> {
    // The pickers of a previous table (its label column, a loss) say nothing about this file.
    for id in ["own-text", "own-pair", "own-label"] {
        fill_select(id, &[], None, None);
    }
    set_input("own-loss", "");
    set_input("own-score-range", "");
    let spec = spec(&f, None)?;
    let read = own::tokens::training_tags(&spec, &f.bytes).inspect_err(|e| {
        clear_train();
        set_text("own-summary", &format!("error: {e}"));
    })?;
    set_html(
        "own-preview",
        &super::tags::preview_html(&read.file, read.scheme, PREVIEW_ROWS),
    );
    log(&format!(
        "{}: {} sentences, {} words",
        f.name,
        read.file.sentences.len(),
        read.file.tokens()
    ));
    status(&format!(
        "data: {} ({} sentences)",
        f.name,
        read.file.sentences.len()
    ));
    STATE.with(|s| s.borrow_mut().own.train = Some(Rc::new(f)));
    set_input_checked("source-own");
    // The file is read once: its summary from what was read here.
    show_columns(false);
    show_result(Ok(super::tags::summary(&read)));
    Ok(())
}

fn set_input_checked(id: &str) {
    if let Some(i) = doc()
        .get_element_by_id(id)
        .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
    {
        i.set_checked(true);
    }
}

/// Whether the page trains on own data (the "your own file" choice).
pub fn selected() -> bool {
    doc()
        .get_element_by_id("source-own")
        .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
        .is_some_and(|i| i.checked())
}

/// The own data of the page's fields, read and tokenised for training with `tok`.
///
/// # Errors
/// [`Error::Invalid`] when no file was given; the readers' errors naming file, line and column.
pub async fn load(
    tok: &BertTokenizer,
    seed: u64,
    max_train: Option<usize>,
    max_dev: Option<usize>,
) -> Result<(DataSpec, OwnData)> {
    let validation = picked_file("own-val-file", None)
        .await?
        .map(|(name, bytes)| Rc::new(OwnFile { name, bytes }));
    STATE.with(|s| s.borrow_mut().own.validation = validation.clone());
    let train = STATE
        .with(|s| s.borrow().own.train.clone())
        .ok_or_else(|| {
            Error::Invalid("own data: pick, drop or fetch a CSV, TSV or JSONL file first".into())
        })?;
    let spec = spec(&train, validation.as_deref())?;
    let data = own::load(
        &spec,
        &train.bytes,
        validation.as_ref().map(|v| v.bytes.as_slice()),
        tok,
        PairEncoding::Bi,
        seed,
        max_train,
        max_dev,
    )?;
    log(&format!(
        "{}: {} training and {} validation rows; {}",
        spec.train_file,
        data.train.examples.len(),
        data.dev.examples.len(),
        data.summary.validation
    ));
    for w in &data.summary.warnings {
        log(&format!("warning: {w}"));
    }
    Ok((spec, data))
}

/// Wires the own-data fields: the file picker, drops on the data section, the URL button and
/// the column pickers.
pub fn wire() {
    let on = |id: &str, ev: &str, f: Box<dyn Fn()>| {
        if let Some(e) = el(id) {
            let c = Closure::<dyn Fn()>::new(f);
            let _ = e.add_event_listener_with_callback(ev, c.as_ref().unchecked_ref());
            c.forget();
        }
    };
    on(
        "own-file",
        "change",
        Box::new(|| spawn_local(async { report(read_train_file().await) })),
    );
    for id in [
        "own-text",
        "own-pair",
        "own-label",
        "own-type",
        "own-loss",
        "own-score-range",
    ] {
        on(id, "change", Box::new(show_summary));
    }
    on(
        "own-fetch",
        "click",
        Box::new(|| {
            spawn_local(async {
                let url = input("own-url");
                let name = url.rsplit('/').next().unwrap_or("data.csv").to_string();
                let r = async {
                    let (bytes, _) = super::cache::fetch_cached(&url, &name).await?;
                    set_train(name, bytes)
                }
                .await;
                report(r);
            })
        }),
    );
    if let Some(zone) = el("data-section") {
        let over = Closure::<dyn Fn(web_sys::DragEvent)>::new(|e: web_sys::DragEvent| {
            e.prevent_default();
        });
        let _ = zone.add_event_listener_with_callback("dragover", over.as_ref().unchecked_ref());
        over.forget();
        let drop = Closure::<dyn Fn(web_sys::DragEvent)>::new(|e: web_sys::DragEvent| {
            e.prevent_default();
            let Some(files) = e.data_transfer().and_then(|d| d.files()) else {
                return;
            };
            if let Some(i) = doc()
                .get_element_by_id("own-file")
                .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
            {
                i.set_files(Some(&files));
            }
            spawn_local(async { report(read_train_file().await) });
        });
        let _ = zone.add_event_listener_with_callback("drop", drop.as_ref().unchecked_ref());
        drop.forget();
    }
}

/// Distinct texts offered as "Try it"'s search corpus after an embedding run: at most this many.
pub const MAX_OFFERED_CORPUS: usize = 2000;

/// What "Try it" searches after an embedding run on the training file of `task`: the distinct
/// second texts (positives) and hard negatives of its rows, in file order (at most
/// [`MAX_OFFERED_CORPUS`]), and its first anchor as a sample query; `None` when the file is
/// gone or reads no rows.
pub fn search_corpus(task: &own::OwnTask) -> Option<(Vec<String>, String)> {
    let train = STATE.with(|s| s.borrow().own.train.clone())?;
    let rows = own::task_rows(&table_of(&train).ok()?, task).ok()?;
    let mut seen = std::collections::HashSet::new();
    let docs: Vec<String> = rows
        .rows
        .iter()
        .flat_map(|r| r.text_pair.iter().chain(&r.negatives))
        // One text per line in the corpus field: a field that spans lines becomes one line.
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|d| seen.insert(d.clone()))
        .take(MAX_OFFERED_CORPUS)
        .collect();
    Some((docs, rows.rows.first()?.text.clone()))
}
