//! Exports of a trained model in the layouts other libraries load, as bytes (the driver adds the
//! tokenizer files and writes the folder):
//!
//! - **transformers**: a `BertForSequenceClassification` folder (`config.json` with
//!   `architectures`, `id2label`, `label2id`, `num_labels`, `problem_type`; `model.safetensors`
//!   with the adapter folded into `bert.*` and the head as `classifier.*`), for
//!   `AutoModelForSequenceClassification.from_pretrained`;
//! - **PEFT sequence classification**: an adapter folder with `task_type: SEQ_CLS` and the head
//!   in `modules_to_save` as `classifier` (the layout PEFT saves from a
//!   `BertForSequenceClassification`), for `AutoPeftModelForSequenceClassification`;
//! - **sentence-transformers**: the merged encoder as a `BertModel` folder with `modules.json`,
//!   `sentence_bert_config.json` and `1_Pooling/config.json`, for `SentenceTransformer(dir)`.
//!
//! `BertForSequenceClassification` feeds its classifier the pooler output
//! (`tanh(dense(h[:, 0]))`, transformers' `BertPooler`): only heads trained with
//! [`Pooling::Pooler`] on one sequence (single texts or cross-encoded pairs) are exported that
//! way, so the export computes exactly what lorabert computes.

use serde_json::{Value, json};

use super::artifacts::{Files, bert_tensors, names};
use crate::adapter::peft::{adapter_config_json, adapter_tensors};
use crate::adapter::{Bias, LoraConfig};
use crate::error::{Error, Result};
use crate::kernels::read_f32;
use crate::model::Bert;
use crate::model::weights::{Tensors, f32_safetensors, transpose};
use crate::tasks::kind::SeqCls;
use crate::tasks::{HeadsConfig, MultitaskModel, PairEncoding, Pooling, Task};

/// A task head as transformers' `BertForSequenceClassification.classifier` computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqClsHead {
    /// The task it was trained for.
    pub task: Task,
    /// Label names by output index (`id2label`); one entry for regression.
    pub id2label: Vec<String>,
    /// One real-valued output (`problem_type: regression`) instead of classes.
    pub regression: bool,
    /// Independent labels, a sigmoid each (`problem_type: multi_label_classification`).
    pub multi_label: bool,
    /// A tag per word piece: `BertForTokenClassification` (classifier on every piece's last
    /// hidden state, no pooler), not `BertForSequenceClassification`.
    pub token: bool,
    /// Classifier weight `[labels, hidden]`, row-major (PyTorch's `nn.Linear` layout).
    pub weight: Vec<f32>,
    /// Classifier bias `[labels]`.
    pub bias: Vec<f32>,
    /// Its input width (the hidden size).
    pub hidden: usize,
}

/// The head of `task` in `model` as a `BertForSequenceClassification` classifier whose outputs
/// are what `lorabert predict` reports: SST's 5 logits (labels `0`..`4`); the paraphrase logit
/// `z` as two logits `[0, z]` (softmax of those is `[1 − σ(z), σ(z)]`, labels `0`, `1`); STS's
/// regression output times 5 (the similarity on the 0–5 scale); an own-data head as trained
/// (class logits named by its labels, or the regression value).
///
/// # Errors
/// [`Error::Invalid`] when the checkpoint has no head for `task`, its pooling is not
/// [`Pooling::Pooler`], or it is a bi-encoded pair head (two sentences encoded apart, which
/// `BertForSequenceClassification` does not compute); [`Error::ReadBack`] on a failed read.
pub async fn seq_cls_head(
    model: &MultitaskModel,
    heads: &HeadsConfig,
    task: Task,
) -> Result<SeqClsHead> {
    if !heads.tasks.contains(&task) {
        let have: Vec<&str> = heads.tasks.iter().map(|t| t.name()).collect();
        return Err(Error::Invalid(format!(
            "the checkpoint has no `{}` head (it has {})",
            task.name(),
            have.join(", ")
        )));
    }
    let kind = crate::tasks::kinds::of(task, heads)?;
    // A token head reads every piece's hidden state, whatever pooling the heads record.
    let token = task == Task::Own
        && heads.own.as_ref().is_some_and(|o| {
            matches!(
                o.kind,
                crate::tasks::own::TaskKind::TokenClassification { .. }
            )
        });
    if heads.pooling != Pooling::Pooler && !token {
        return Err(Error::Invalid(format!(
            "this checkpoint's heads read {} pooling; BertForSequenceClassification feeds its classifier the pooler output, so only heads trained with --pooling pooler export exactly (train with it, or export the encoder with --format sentence-transformers)",
            pooling_name(heads.pooling)
        )));
    }
    if kind.is_pair() && heads.pair_encoding == PairEncoding::Bi {
        return Err(Error::Invalid(format!(
            "the `{}` head is bi-encoded (each sentence encoded apart{}); BertForSequenceClassification encodes a pair as one sequence: train with --pair-encoding cross, or export the encoder with --format sentence-transformers",
            task.name(),
            if task == Task::Sts {
                ", scored by the cosine"
            } else {
                ""
            }
        )));
    }
    let lin = model
        .head(kind.head_name())
        .ok_or_else(|| Error::Invalid(format!("the checkpoint has no `{}` head", task.name())))?;
    let [hidden, outs] = lin.weight.dims();
    let w = transpose(
        &read_f32(lin.weight.val().reshape([hidden * outs])).await?,
        hidden,
        outs,
    );
    let b = match &lin.bias {
        Some(b) => read_f32(b.val()).await?,
        None => vec![0.0; outs],
    };
    let SeqCls {
        id2label,
        regression,
        multi_label,
        token,
        weight,
        bias,
    } = kind.seq_cls(w, b, hidden)?;
    Ok(SeqClsHead {
        task,
        id2label,
        regression,
        multi_label,
        token,
        weight,
        bias,
        hidden,
    })
}

fn pooling_name(p: Pooling) -> &'static str {
    match p {
        Pooling::Mean => "mean",
        Pooling::Cls => "cls",
        Pooling::Pooler => "pooler",
    }
}

/// The base model's `config.json` as a `BertForSequenceClassification` config for `head`:
/// `architectures`, `id2label`, `label2id`, `num_labels` and `problem_type`
/// (`single_label_classification` or `regression`) set, every other field kept; for a token
/// head a `BertForTokenClassification` config (no `problem_type`).
///
/// # Errors
/// [`Error::Config`] when `base_config_json` is not a JSON object.
pub fn seq_cls_config_json(base_config_json: &str, head: &SeqClsHead) -> Result<String> {
    let mut v: Value = serde_json::from_str(base_config_json)
        .map_err(|e| Error::config("config.json", format!("invalid: {e}")))?;
    let o = v
        .as_object_mut()
        .ok_or_else(|| Error::config("config.json", "not a JSON object"))?;
    o.insert(
        "architectures".into(),
        json!([if head.token {
            "BertForTokenClassification"
        } else {
            "BertForSequenceClassification"
        }]),
    );
    o.insert(
        "id2label".into(),
        Value::Object(
            head.id2label
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), json!(l)))
                .collect(),
        ),
    );
    o.insert(
        "label2id".into(),
        Value::Object(
            head.id2label
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), json!(i)))
                .collect(),
        ),
    );
    o.insert("num_labels".into(), json!(head.id2label.len()));
    if head.token {
        o.remove("problem_type");
        return serde_json::to_string_pretty(&v).map_err(|e| Error::Invalid(e.to_string()));
    }
    o.insert(
        "problem_type".into(),
        json!(if head.regression {
            "regression"
        } else if head.multi_label {
            "multi_label_classification"
        } else {
            "single_label_classification"
        }),
    );
    serde_json::to_string_pretty(&v).map_err(|e| Error::Invalid(e.to_string()))
}

/// The classifier as named tensors `{prefix}classifier.weight` `[labels, hidden]` and
/// `{prefix}classifier.bias` `[labels]`.
fn classifier_tensors(head: &SeqClsHead, prefix: &str, t: &mut Tensors) {
    let labels = head.bias.len();
    t.insert(
        format!("{prefix}classifier.weight"),
        (vec![labels, head.hidden], head.weight.clone()),
    );
    t.insert(
        format!("{prefix}classifier.bias"),
        (vec![labels], head.bias.clone()),
    );
}

/// A `BertForSequenceClassification` folder's `config.json` and `model.safetensors` (f32): the
/// encoder `bert` (with any adapter already merged: [`crate::adapter::merge`]) under `bert.`,
/// and `head` as `classifier`; for a token head a `BertForTokenClassification` folder (the
/// pooler left out, as that model has none).
///
/// # Errors
/// [`Error::Invalid`] when `bert` has no pooler or still has an unmerged adapter; as
/// [`seq_cls_config_json`]; [`Error::ReadBack`] on a failed read.
pub async fn transformers_files(
    bert: &Bert,
    head: &SeqClsHead,
    base_config_json: &str,
) -> Result<Files> {
    if bert.pooler.is_none() && !head.token {
        return Err(Error::Invalid(
            "the base checkpoint has no pooler (pooler.dense), which BertForSequenceClassification's head reads".into(),
        ));
    }
    require_merged(bert)?;
    let mut t: Tensors = bert_tensors(bert)
        .await?
        .into_iter()
        .filter(|(k, _)| !(head.token && k.starts_with("pooler.")))
        .map(|(k, v)| (format!("bert.{k}"), v))
        .collect();
    classifier_tensors(head, "", &mut t);
    Ok(vec![
        (
            names::CONFIG,
            seq_cls_config_json(base_config_json, head)?.into_bytes(),
        ),
        (names::MODEL, f32_safetensors(&t)?),
    ])
}

fn require_merged(bert: &Bert) -> Result<()> {
    let mut unmerged = None;
    bert.visit_linears(&mut |name, l| {
        if l.adapter.as_ref().is_some_and(|a| !a.merged) && unmerged.is_none() {
            unmerged = Some(name.to_string());
        }
    });
    match unmerged {
        Some(n) => Err(Error::Invalid(format!(
            "{n}: the adapter must be merged before a whole-model export"
        ))),
        None => Ok(()),
    }
}

/// A PEFT sequence-classification adapter folder (`adapter_config.json` with `task_type:
/// SEQ_CLS` and `modules_to_save: ["classifier"]`, `adapter_model.safetensors` with keys under
/// `base_model.model.bert.` and the head as `base_model.model.classifier.*`), as PEFT saves an
/// adapter of a `BertForSequenceClassification`; for a token head `task_type: TOKEN_CLS`, as
/// PEFT saves one of a `BertForTokenClassification`. `bert` carries the (unmerged) adapter of
/// `lora`.
///
/// # Errors
/// [`Error::Invalid`] for an adapter whose trained base biases (`bias` other than `none`) or
/// saved modules (`modules_to_save`) this layout would lose; the adapter saving errors.
pub async fn peft_seq_cls_files(
    bert: &Bert,
    lora: &LoraConfig,
    head: &SeqClsHead,
    base_model_name_or_path: &str,
) -> Result<Files> {
    if lora.bias != Bias::None {
        return Err(Error::Invalid(format!(
            "the adapter trains base biases (bias: {}), which a PEFT export would not carry: export with --format transformers",
            lora.bias.name()
        )));
    }
    if let Some(m) = lora
        .modules_to_save
        .iter()
        .find(|m| !matches!(m.as_str(), "classifier" | "score"))
    {
        return Err(Error::Invalid(format!(
            "the adapter saves module `{m}` whole (modules_to_save), which this export would not carry: export with --format transformers"
        )));
    }
    let mut v: Value = serde_json::from_str(&adapter_config_json(lora, base_model_name_or_path))
        .map_err(|e| Error::Invalid(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        let task_type = if head.token { "TOKEN_CLS" } else { "SEQ_CLS" };
        o.insert("task_type".into(), json!(task_type));
        o.insert("modules_to_save".into(), json!(["classifier"]));
    }
    let config = serde_json::to_string_pretty(&v).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut t = adapter_tensors(bert, "base_model.model.bert.").await?;
    classifier_tensors(head, "base_model.model.", &mut t);
    Ok(vec![
        (names::ADAPTER_CONFIG, config.into_bytes()),
        (names::ADAPTER_WEIGHTS, f32_safetensors(&t)?),
    ])
}

/// What a sentence-transformers base model's folder says about its modules, carried into an
/// export of a model fine-tuned from it: whether its `modules.json` ends in a `Normalize` module
/// (all-MiniLM-L6-v2 does: its embeddings have norm 1), and its `sentence_bert_config.json`
/// (`max_seq_length`, `do_lower_case`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SentenceTransformersBase {
    /// The base lists `sentence_transformers.models.Normalize`.
    pub normalize: bool,
    /// The base's `max_seq_length`, tokens.
    pub max_seq_length: Option<usize>,
    /// The base's `do_lower_case`.
    pub do_lower_case: bool,
    /// Modules of the base after Pooling that an export does not carry (a `Dense` layer and its
    /// weights), by type; the caller says so.
    pub not_carried: Vec<String>,
}

impl SentenceTransformersBase {
    /// Reads a base folder's `modules.json` and `sentence_bert_config.json` (either may be
    /// absent: a plain BERT checkpoint has neither).
    ///
    /// # Errors
    /// [`Error::Config`] naming the file when one is present but not the JSON
    /// sentence-transformers writes.
    pub fn from_files(modules_json: Option<&[u8]>, st_config: Option<&[u8]>) -> Result<Self> {
        let mut base = SentenceTransformersBase::default();
        if let Some(b) = modules_json {
            let v: Value = serde_json::from_slice(b)
                .map_err(|e| Error::config("modules.json", e.to_string()))?;
            let list = v
                .as_array()
                .ok_or_else(|| Error::config("modules.json", "not a list of modules"))?;
            for m in list {
                let ty = m.get("type").and_then(Value::as_str).unwrap_or_default();
                match ty.rsplit('.').next().unwrap_or_default() {
                    "Transformer" | "Pooling" => {}
                    "Normalize" => base.normalize = true,
                    _ => base.not_carried.push(ty.to_string()),
                }
            }
        }
        if let Some(b) = st_config {
            let v: Value = serde_json::from_slice(b)
                .map_err(|e| Error::config("sentence_bert_config.json", e.to_string()))?;
            base.max_seq_length = v
                .get("max_seq_length")
                .and_then(Value::as_u64)
                .map(|n| n as usize);
            base.do_lower_case = v
                .get("do_lower_case")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        }
        Ok(base)
    }
}

/// A sentence-transformers folder: the encoder `bert` (adapter merged) as a `BertModel`
/// (`config.json` = `base_config_json`, `model.safetensors`), `modules.json` (Transformer,
/// Pooling, and `Normalize` where the base has it), `sentence_bert_config.json` (the base's
/// `max_seq_length` and `do_lower_case` where it has them, else `max_seq_length` tokens) and
/// `1_Pooling/config.json` (mean or CLS pooling, as `pooling`), so
/// `SentenceTransformer(dir).encode(texts)` gives the pooled vectors lorabert computes
/// (`lorabert embed --pooling`), scaled to norm 1 where the base normalises, as the base's
/// own embeddings are.
///
/// # Errors
/// [`Error::Invalid`] for [`Pooling::Pooler`] (sentence-transformers' Pooling module has no
/// BERT-pooler mode) or an unmerged adapter; [`Error::ReadBack`] on a failed read.
pub async fn sentence_transformers_files(
    bert: &Bert,
    base_config_json: &str,
    pooling: Pooling,
    max_seq_length: usize,
    hidden: usize,
    base: &SentenceTransformersBase,
) -> Result<Files> {
    if pooling == Pooling::Pooler {
        return Err(Error::Invalid(
            "sentence-transformers pools token states (mean or CLS) and has no BERT-pooler mode: export with --pooling mean or cls, or use --format transformers for a pooler head".into(),
        ));
    }
    require_merged(bert)?;
    let weights = f32_safetensors(&bert_tensors(bert).await?)?;
    let pretty =
        |v: Value| serde_json::to_vec_pretty(&v).map_err(|e| Error::Invalid(e.to_string()));
    let mut modules = json!([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
    ]);
    if base.normalize
        && let Some(list) = modules.as_array_mut()
    {
        list.push(json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
    }
    let pool = json!({
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling == Pooling::Cls,
        "pooling_mode_mean_tokens": pooling == Pooling::Mean,
        "pooling_mode_max_tokens": false,
        "pooling_mode_mean_sqrt_len_tokens": false,
        "pooling_mode_weightedmean_tokens": false,
        "pooling_mode_lasttoken": false,
        "include_prompt": true
    });
    Ok(vec![
        (names::CONFIG, base_config_json.as_bytes().to_vec()),
        (names::MODEL, weights),
        ("modules.json", pretty(modules)?),
        (
            "sentence_bert_config.json",
            pretty(json!({
                "max_seq_length": base.max_seq_length.unwrap_or(max_seq_length),
                "do_lower_case": base.do_lower_case
            }))?,
        ),
        ("1_Pooling/config.json", pretty(pool)?),
    ])
}
