//! What a run leaves behind, as bytes: the PEFT adapter, the task heads, and (full fine-tuning
//! or `merge`) a whole encoder in Hugging Face names.

use crate::adapter::peft::{adapter_config_json, adapter_safetensors};
use crate::error::{Error, Result};
use crate::model::bert::Bert;
use crate::model::init::InitRng;
use crate::model::weights::Checkpoint;
use crate::model::weights::{ReadBack, f32_safetensors};
use crate::tasks::{HeadsConfig, MultitaskModel};

use super::TrainConfig;

/// File names inside a checkpoint folder.
pub mod names {
    /// PEFT adapter configuration.
    pub const ADAPTER_CONFIG: &str = "adapter_config.json";
    /// PEFT adapter weights.
    pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
    /// Task heads.
    pub const HEADS: &str = "heads.safetensors";
    /// Task-head configuration.
    pub const HEADS_CONFIG: &str = "heads_config.json";
    /// A whole encoder (full fine-tuning, merge).
    pub const MODEL: &str = "model.safetensors";
    /// Its Hugging Face configuration.
    pub const CONFIG: &str = "config.json";
}

/// Named files of a checkpoint: `(file name, bytes)`.
pub type Files = Vec<(&'static str, Vec<u8>)>;

/// The task heads as safetensors (`sst.weight` `[5, hidden]`, `sst.bias`, `para.*`, `sts.*`,
/// `own.*`; weights in the PyTorch `[out, in]` layout).
///
/// # Errors
/// [`Error::Invalid`] if a tensor cannot be read back.
pub async fn heads_safetensors(model: &MultitaskModel) -> Result<Vec<u8>> {
    let mut t = ReadBack::default();
    for (name, l) in model.named_heads() {
        t.push_linear(name, l.weight.val(), l.bias.as_ref().map(|b| b.val()));
    }
    f32_safetensors(&t.read().await?)
}

/// Loads heads saved by [`heads_safetensors`] into `model` (whose heads must have the same
/// shapes).
///
/// # Errors
/// [`Error::Safetensors`] for a malformed file; [`Error::MissingTensor`] / [`Error::BadTensor`]
/// naming a head tensor that is absent or has another shape.
pub fn load_heads(
    mut model: MultitaskModel,
    bytes: &[u8],
    source_name: &str,
) -> Result<MultitaskModel> {
    let ck = Checkpoint::parse(bytes, source_name, &[], "")?;
    for (name, head) in model.named_heads_mut() {
        let [d_in, d_out] = head.weight.shape().dims();
        let device = head.weight.val().device();
        let w = ck.linear_weight(&format!("{name}.weight"), d_in, d_out, &device)?;
        let b = ck.tensor1(&format!("{name}.bias"), d_out, &device)?;
        head.weight = head.weight.clone().map(|_| w);
        head.bias = head.bias.take().map(|p| p.map(|_| b));
    }
    Ok(model)
}

/// The encoder's weights as a Hugging Face `BertModel` `model.safetensors` (no prefix; linear
/// weights `[out, in]`; [`Bert::queue_weights`]). Adapters are written folded in when merged,
/// and left out otherwise (call [`crate::adapter::merge`] first to include them).
///
/// # Errors
/// [`Error::ReadBack`] if a tensor cannot be read back.
pub async fn bert_safetensors(bert: &Bert) -> Result<Vec<u8>> {
    f32_safetensors(&bert_tensors(bert).await?)
}

/// The encoder's weights as named f32 tensors under their `BertModel` names (see
/// [`bert_safetensors`]).
///
/// # Errors
/// [`Error::ReadBack`] if a tensor cannot be read back.
pub async fn bert_tensors(bert: &Bert) -> Result<crate::model::weights::Tensors> {
    let mut t = ReadBack::default();
    bert.queue_weights(&mut t);
    t.read().await
}

/// The files of a checkpoint of `model` trained with `cfg`: for adapters, the PEFT adapter
/// (`adapter_config.json`, `adapter_model.safetensors`); for full fine-tuning, the whole encoder
/// (`model.safetensors`, `config.json` given as `bert_config_json`); and always the heads
/// (`heads.safetensors`, `heads_config.json`).
///
/// # Errors
/// [`Error::Invalid`] if a tensor cannot be read back.
pub async fn checkpoint_files(
    model: &MultitaskModel,
    cfg: &TrainConfig,
    heads: &HeadsConfig,
    base_model_name: &str,
    bert_config_json: &str,
) -> Result<Files> {
    let mut files: Files = Vec::new();
    match &cfg.adapter {
        None => {
            files.push((names::MODEL, bert_safetensors(&model.bert).await?));
            files.push((names::CONFIG, bert_config_json.as_bytes().to_vec()));
        }
        Some(lora) => {
            files.push((
                names::ADAPTER_CONFIG,
                adapter_config_json(lora, base_model_name).into_bytes(),
            ));
            files.push((
                names::ADAPTER_WEIGHTS,
                adapter_safetensors(&model.bert).await?,
            ));
        }
    }
    files.push((names::HEADS, heads_safetensors(model).await?));
    files.push((
        names::HEADS_CONFIG,
        serde_json::to_vec_pretty(heads).map_err(|e| Error::Invalid(e.to_string()))?,
    ));
    Ok(files)
}

/// A trained model rebuilt from checkpoint files.
#[derive(Debug)]
pub struct Restored {
    /// Encoder (with its adapters) and heads.
    pub model: MultitaskModel,
    /// The heads' configuration.
    pub heads: HeadsConfig,
    /// The adapter's configuration (`None` for full fine-tuning).
    pub adapter: Option<crate::adapter::LoraConfig>,
    /// Notes from loading the adapter (see [`crate::adapter::peft::LoadedAdapter::notes`]).
    pub notes: Vec<String>,
}

/// Attaches the adapter of a checkpoint folder or a PEFT adapter folder
/// (`adapter_config.json` + `adapter_model.safetensors`; `get(name)` gives a file's bytes) to
/// `bert`; a folder without an adapter (full fine-tuning) leaves it as it is. Returns the
/// adapter's configuration and the loading notes.
///
/// # Errors
/// [`Error::Adapter`] when `adapter_model.safetensors` is missing beside its config; the
/// adapter loading errors naming the file, field and tensor.
pub fn restore_adapter(
    bert: Bert,
    get: &mut dyn FnMut(&str) -> Result<Option<Vec<u8>>>,
) -> Result<AdapterParts> {
    let Some(cfg) = get(names::ADAPTER_CONFIG)? else {
        return Ok(AdapterParts {
            bert,
            adapter: None,
            notes: Vec::new(),
            classifier: None,
        });
    };
    let cfg =
        String::from_utf8(cfg).map_err(|_| Error::config(names::ADAPTER_CONFIG, "not UTF-8"))?;
    let weights = get(names::ADAPTER_WEIGHTS)?.ok_or_else(|| {
        Error::Adapter(format!(
            "{} is missing beside {}",
            names::ADAPTER_WEIGHTS,
            names::ADAPTER_CONFIG
        ))
    })?;
    let l = crate::adapter::peft::load_adapter(
        bert,
        &cfg,
        names::ADAPTER_CONFIG,
        &weights,
        names::ADAPTER_WEIGHTS,
    )?;
    Ok(AdapterParts {
        bert: l.bert,
        adapter: Some(l.cfg),
        notes: l.notes,
        classifier: l.classifier,
    })
}

/// What [`restore_adapter`] found in a folder.
#[derive(Debug)]
pub struct AdapterParts {
    /// The encoder with the adapter attached.
    pub bert: Bert,
    /// The adapter's configuration, when the folder has one.
    pub adapter: Option<crate::adapter::LoraConfig>,
    /// Loading notes.
    pub notes: Vec<String>,
    /// A sequence-classification adapter's saved classifier.
    pub classifier: Option<crate::adapter::peft::Classifier>,
}

/// Rebuilds the model of a PEFT sequence-classification adapter folder (`task_type: SEQ_CLS`,
/// its `classifier` in `modules_to_save`): the encoder with the adapter, and an own-data head
/// that is transformers' `BertForSequenceClassification` head (the pooler output into the
/// classifier: softmax over the labels, or the value for one label, as transformers'
/// `num_labels == 1`; a sigmoid per label, threshold 0.5, where the base's `problem_type` is
/// `multi_label_classification`). Labels are named by the base `config.json`'s `id2label` (else
/// `LABEL_0`, ... as transformers names them); texts and cross-encoded pairs both go in. A
/// token-classification adapter (`task_type: TOKEN_CLS`) becomes a token task
/// (`BertForTokenClassification`'s head on every piece; the tag scheme read from the label
/// names, windows of the base's `max_position_embeddings`).
///
/// # Errors
/// [`Error::Config`] when the folder has no classifier (a PEFT folder without heads), the base
/// has no pooler; the adapter loading errors.
pub fn restore_seq_cls(
    bert: Bert,
    get: &mut dyn FnMut(&str) -> Result<Option<Vec<u8>>>,
    base_config_json: &str,
    device: &burn::tensor::Device,
) -> Result<Restored> {
    use crate::tasks::own::{Columns, OwnTask, TaskKind};
    let parts = restore_adapter(bert, get)?;
    let Some(c) = parts.classifier else {
        return Err(Error::config(
            names::HEADS_CONFIG,
            "missing: task heads are needed here (a PEFT adapter folder has none, unless it saves a classifier: task_type SEQ_CLS)",
        ));
    };
    // A TOKEN_CLS adapter's classifier reads every piece's hidden state, not the pooler.
    let token = get(names::ADAPTER_CONFIG)?
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("task_type").and_then(|t| t.as_str()) == Some("TOKEN_CLS"));
    if parts.bert.pooler.is_none() && !token {
        return Err(Error::config(
            "config.json",
            "the adapter's classifier reads BERT's pooler, and the base checkpoint has none",
        ));
    }
    let base: serde_json::Value = serde_json::from_str(base_config_json)
        .map_err(|e| Error::config("config.json", format!("invalid: {e}")))?;
    let multi_label =
        base.get("problem_type").and_then(|v| v.as_str()) == Some("multi_label_classification");
    let id2label: Vec<String> = (0..c.labels)
        .map(|i| {
            base.get("id2label")
                .and_then(|m| m.get(i.to_string()))
                .and_then(|v| v.as_str())
                .map_or_else(|| format!("LABEL_{i}"), str::to_string)
        })
        .collect();
    let kind = if token {
        // Windows of the positions the base embeds (512 for BERT), a quarter shared.
        let window = base
            .get("max_position_embeddings")
            .and_then(|v| v.as_u64())
            .map_or(512, |v| v as usize)
            .clamp(4, 512);
        TaskKind::TokenClassification {
            scheme: crate::tasks::tags::scheme_of_labels(&id2label),
            id2label,
            window,
            stride: window / 4,
            label_all_tokens: false,
            label_names: Vec::new(),
        }
    } else if multi_label {
        TaskKind::MultiLabel {
            id2label,
            label_ids: false,
            threshold: 0.5,
            thresholds: Vec::new(),
        }
    } else if c.labels == 1 {
        TaskKind::Regression
    } else {
        TaskKind::Classification { id2label }
    };
    let own = OwnTask {
        name: if token { "token_cls" } else { "seq_cls" }.into(),
        metric_for_best_model: kind.default_metric().into(),
        kind,
        columns: Columns {
            text: String::new(),
            text_pair: None,
            label: String::new(),
            multi_label: None,
            negatives: Vec::new(),
        },
        no_header: false,
        pairs_optional: true,
    };
    let heads = HeadsConfig {
        tasks: vec![crate::tasks::Task::Own],
        pooling: crate::tasks::Pooling::Pooler,
        pair_encoding: crate::tasks::PairEncoding::Cross,
        head_dropout: 0.0,
        hidden_size: c.hidden,
        own: Some(own),
    };
    // The head's initial draws are replaced by the adapter's classifier below.
    let mut model = MultitaskModel::new(parts.bert, &heads, &mut InitRng::new(0), device)?;
    let w = crate::model::weights::transpose(&c.weight, c.labels, c.hidden);
    let w = burn::tensor::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(w, [c.hidden, c.labels]),
        device,
    );
    let b = burn::tensor::Tensor::<1>::from_data(
        burn::tensor::TensorData::new(c.bias, [c.labels]),
        device,
    );
    for (_, head) in model.named_heads_mut() {
        head.weight = head.weight.clone().map(|_| w.clone());
        head.bias = head.bias.take().map(|p| p.map(|_| b.clone()));
    }
    Ok(Restored {
        model,
        heads,
        adapter: parts.adapter,
        notes: parts.notes,
    })
}

/// Rebuilds a trained model from the files of a lorabert checkpoint ([`restore`]) or, where
/// there is no `heads_config.json`, of a PEFT sequence-classification adapter folder
/// ([`restore_seq_cls`], labels from `base_config_json`). `get(name)` returns a file's bytes
/// or `None` when absent.
///
/// # Errors
/// As [`restore`] and [`restore_seq_cls`] (a PEFT folder without a classifier has no heads).
pub fn restore_any(
    bert: Bert,
    get: &mut dyn FnMut(&str) -> Result<Option<Vec<u8>>>,
    base_config_json: &str,
    device: &burn::tensor::Device,
) -> Result<Restored> {
    if get(names::HEADS_CONFIG)?.is_some() {
        restore(bert, get, device)
    } else {
        restore_seq_cls(bert, get, base_config_json, device)
    }
}

/// Rebuilds a trained model from checkpoint files. `bert` is the base encoder (for a full
/// fine-tuning checkpoint, the caller builds it from the checkpoint's `model.safetensors`);
/// `get(name)` returns a checkpoint file's bytes or `None` when absent.
///
/// # Errors
/// [`Error::Config`] when `heads_config.json` is missing or invalid; adapter and head loading
/// errors naming the file and tensor.
pub fn restore(
    bert: Bert,
    get: &mut dyn FnMut(&str) -> Result<Option<Vec<u8>>>,
    device: &burn::tensor::Device,
) -> Result<Restored> {
    let heads_json = get(names::HEADS_CONFIG)?.ok_or_else(|| {
        Error::config(
            names::HEADS_CONFIG,
            "missing: task heads are needed here (a PEFT adapter folder has none)",
        )
    })?;
    let heads: HeadsConfig = serde_json::from_slice(&heads_json)
        .map_err(|e| Error::config(names::HEADS_CONFIG, format!("invalid: {e}")))?;
    let AdapterParts {
        bert,
        adapter,
        notes,
        classifier: _,
    } = restore_adapter(bert, get)?;
    crate::tasks::check_pooling(&bert, heads.pooling)?;
    // The heads' initial draws are replaced by the checkpoint's heads below.
    let model = MultitaskModel::new(bert, &heads, &mut InitRng::new(0), device)?;
    let heads_bytes = get(names::HEADS)?
        .ok_or_else(|| Error::config(names::HEADS, "missing from the checkpoint folder"))?;
    let model = load_heads(model, &heads_bytes, names::HEADS)?;
    Ok(Restored {
        model,
        heads,
        adapter,
        notes,
    })
}
