//! What a run leaves behind, as bytes: the PEFT adapter, the task heads, and (full fine-tuning
//! or `merge`) a whole encoder in Hugging Face names.

use burn::nn::Linear;

use crate::adapter::peft::{adapter_config_json, adapter_safetensors};
use crate::error::{Error, Result};
use crate::model::bert::Bert;
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
    for (name, head) in model.heads() {
        if let Some(l) = head {
            t.push_linear(name, l.weight.val(), l.bias.as_ref().map(|b| b.val()));
        }
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
    let load = |name: &str, l: Linear| -> Result<Linear> {
        let [d_in, d_out] = l.weight.shape().dims();
        let device = l.weight.val().device();
        let w = ck.linear_weight(&format!("{name}.weight"), d_in, d_out, &device)?;
        let b = ck.tensor1(&format!("{name}.bias"), d_out, &device)?;
        Ok(Linear {
            weight: l.weight.map(|_| w),
            bias: l.bias.map(|p| p.map(|_| b)),
        })
    };
    for (name, head) in model.heads_mut() {
        *head = head.take().map(|l| load(name, l)).transpose()?;
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
    let mut t = ReadBack::default();
    bert.queue_weights(&mut t);
    f32_safetensors(&t.read().await?)
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
) -> Result<(Bert, Option<crate::adapter::LoraConfig>, Vec<String>)> {
    let Some(cfg) = get(names::ADAPTER_CONFIG)? else {
        return Ok((bert, None, Vec::new()));
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
    Ok((l.bert, Some(l.cfg), l.notes))
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
    let (bert, adapter, notes) = restore_adapter(bert, get)?;
    let model = MultitaskModel::new(bert, &heads, device);
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
