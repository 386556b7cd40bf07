//! `lorabert predict` on a token-classification checkpoint: the entities of `--sentence`
//! texts, or the tags of an `--input` file's words.

use std::path::Path;

use anyhow::{Result, bail};

use super::io;
use super::load::read_data_file;
use crate::data::table::Format;
use crate::model::Pretrained;
use crate::tasks::kinds::token::TokenClassification;
use crate::tasks::own::{self, DataSpec};
use crate::tasks::{HeadsConfig, MultitaskModel};
use crate::train::entities::{predict_entities, token_task};
use crate::train::evaluate::predict;

/// What `predict` reads for a token checkpoint.
pub struct TokenInput<'a> {
    /// `--sentence` texts.
    pub sentences: &'a [String],
    /// `--input` file.
    pub input: Option<&'a Path>,
    /// `--output` file.
    pub output: Option<&'a Path>,
    /// `--format`.
    pub format: Option<Format>,
    /// `--batch-size`.
    pub batch_size: usize,
}

/// Predicts with the token task of `heads`: the entities of each `--sentence` text as JSON lines
/// (`{"id", "task", "entities": [{"entity_group", "score", "word", "start", "end"}], "words":
/// [{"word", "tag", "score"}]}`), or the tags of every word of an `--input` CoNLL or JSON Lines
/// token file (any tags in it are ignored), written as CoNLL (`word tag` lines; `--output
/// x.conll`) or JSON Lines (`{"id", "tokens", "tags", "scores"}`, each score the tag's
/// probability; `--output x.jsonl`, or stdout).
///
/// # Errors
/// No token task; an unreadable or malformed input; an `--output` of another extension.
pub fn predict_tokens(
    a: &TokenInput,
    loaded: &Pretrained,
    model: &MultitaskModel,
    heads: &HeadsConfig,
) -> Result<()> {
    let Some(task) = token_task(heads) else {
        bail!("this checkpoint has no token-classification head");
    };
    let Some(path) = a.input else {
        let texts: Vec<(String, String)> = a
            .sentences
            .iter()
            .enumerate()
            .map(|(i, s)| ((i + 1).to_string(), s.clone()))
            .collect();
        let out = pollster::block_on(predict_entities(
            model,
            heads,
            &loaded.tokenizer,
            &texts,
            a.batch_size,
            loaded.pad_id(),
        ))?;
        let lines: Vec<String> = out
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        return emit(a.output, &lines.join("\n"), "jsonl");
    };
    let name = path.display().to_string();
    let spec = DataSpec {
        format: a.format,
        ..DataSpec::default()
    };
    let file = own::tokens::read_tagged(&read_data_file(path)?, &name, &spec)?;
    let sentences: Vec<Vec<String>> = file.sentences.iter().map(|s| s.tokens.clone()).collect();
    let data = own::tokens::untagged(&sentences, task, &loaded.tokenizer)?;
    let p = pollster::block_on(predict(model, &data, a.batch_size, loaded.pad_id()))?;
    let kind = TokenClassification(task.clone());
    let tags = kind.word_predictions(&p.values, &data.examples);
    let name_of = |t: u32| {
        kind.tags()
            .get(t as usize)
            .cloned()
            .unwrap_or_else(|| "O".into())
    };
    let conll = a
        .output
        .is_some_and(|o| Format::from_file_name(&o.display().to_string()) == Some(Format::Conll));
    let mut text = String::new();
    for (s, t) in file.sentences.iter().zip(&tags) {
        let names: Vec<String> = t.iter().map(|&(id, _)| name_of(id)).collect();
        if conll {
            for (w, tag) in s.tokens.iter().zip(&names) {
                text.push_str(&format!("{w} {tag}\n"));
            }
            text.push('\n');
        } else {
            let scores: Vec<f32> = t.iter().map(|&(_, p)| p).collect();
            let row = serde_json::json!({"id": s.id, "tokens": s.tokens, "tags": names, "scores": scores});
            text.push_str(&row.to_string());
            text.push('\n');
        }
    }
    eprintln!(
        "{}: tagged {} sentences ({} words)",
        name,
        file.sentences.len(),
        file.tokens()
    );
    emit(
        a.output,
        text.trim_end_matches('\n'),
        if conll { "conll" } else { "jsonl" },
    )
}

/// Writes `text` to `output` (atomically; its extension must be `.jsonl`, `.json` or, for word
/// tags, `.conll`) or prints it.
fn emit(output: Option<&Path>, text: &str, kind: &str) -> Result<()> {
    let Some(out) = output else {
        println!("{text}");
        return Ok(());
    };
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    // A .conll output was chosen by its extension; JSON lines need .jsonl or .json.
    if kind != "conll" && !matches!(ext, "jsonl" | "json") {
        bail!(
            "--output {}: name a .jsonl file (or .conll for the tags of an --input file)",
            out.display()
        );
    }
    io::write_atomic(out, format!("{text}\n").as_bytes())?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
