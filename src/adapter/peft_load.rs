//! Loading an adapter saved in PEFT's format (`adapter_config.json` + `adapter_model.safetensors`)
//! into lorabert's encoder, in named passes: index the file's keys, attach each selected module's
//! tensors, take the modules saved whole (a SEQ_CLS classifier, the pooler), take the trained
//! base biases, and refuse any tensor left unused (as PEFT 0.21.2 loads a folder).

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};

use super::{Bias, LoraConfig, Target, select_targets};
use crate::error::{Error, Result};
use crate::model::lora::AdapterKind;
use crate::model::weights::{Checkpoint, transpose};
use crate::model::{AdaptedLinear, Bert};

/// Prefix PEFT puts before module names of a wrapped `BertModel`.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// An adapter loaded from PEFT's files.
#[derive(Debug)]
pub struct LoadedAdapter {
    /// The encoder with the adapters attached.
    pub bert: Bert,
    /// The adapter's configuration.
    pub cfg: LoraConfig,
    /// What the user should know: modules `target_modules` selects in this model that the
    /// file has no tensors for (PEFT leaves those at their no-op initialisation).
    pub notes: Vec<String>,
    /// A sequence-classification adapter's saved `classifier` (`modules_to_save`): weight
    /// `[labels, hidden]` (PyTorch layout) and bias `[labels]`, row-major.
    pub classifier: Option<Classifier>,
}

/// The saved classifier of a sequence-classification adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    /// `[labels, hidden]`, row-major (PyTorch's `nn.Linear` layout).
    pub weight: Vec<f32>,
    /// `[labels]`.
    pub bias: Vec<f32>,
    /// Number of labels (1: regression, as transformers' `num_labels == 1`).
    pub labels: usize,
    /// Its input width (the hidden size).
    pub hidden: usize,
}

/// What every pass reads: the file, the configuration and the names to quote in errors.
struct Source<'a> {
    ck: &'a Checkpoint<'a>,
    cfg: &'a LoraConfig,
    config_source: &'a str,
    weights_source: &'a str,
    /// `bert.` for adapters of `BertFor...` models, else empty.
    key_prefix: &'static str,
}

/// Attaches the adapter tensors stored in PEFT format to `bert` (which must have none yet), as PEFT
/// loads them: modules selected by `target_modules` (or its regular expression), less
/// `exclude_modules`, in `layers_to_transform`; each with its `rank_pattern` / `alpha_pattern`
/// rank and alpha; `lora_B.bias` with `lora_bias`; the trained base biases of `bias: all` or
/// `lora_only`. Keys carry `base_model.model.` and, for adapters of `BertFor...` models,
/// `bert.` (module names are then matched with that prefix, as PEFT named them), and may carry
/// the adapter name (`lora_A.default.weight`, a live PEFT state dict), dropped as PEFT drops
/// it. A selected
/// module with none of its tensors in the file keeps no adapter (a note says which).
///
/// # Errors
/// [`Error::Adapter`] when a target selects
/// nothing, a module has some but not all of its tensors, a tensor's shape disagrees with its
/// rank or the layer, or a tensor in the file is not used (a module the config does not select,
/// a bias the config does not save, ...); [`Error::Safetensors`] for a malformed file.
pub fn load_tensors(
    bert: Bert,
    cfg: LoraConfig,
    config_source: &str,
    safetensors_bytes: &[u8],
    weights_source: &str,
) -> Result<LoadedAdapter> {
    let ck = Checkpoint::parse(safetensors_bytes, weights_source, &[], "")?;
    let (mut unused, key_prefix) = index_keys(&ck);
    let src = Source {
        ck: &ck,
        cfg: &cfg,
        config_source,
        weights_source,
        key_prefix,
    };
    let targets = select_targets(&bert, &cfg, key_prefix)?;
    let mut skipped = Vec::new();
    let bert = bert.map_linears(&mut |name, lin| {
        attach_module(&src, &targets, &mut unused, &mut skipped, name, lin)
    })?;
    let (bert, classifier) = take_saved_modules(&src, &mut unused, bert)?;
    let bert = take_trained_biases(&src, &targets, &mut unused, bert)?;
    if let Some((short, full)) = unused.into_iter().next() {
        let module = short.split(".lora_").next().unwrap_or(&short);
        return Err(Error::Adapter(format!(
            "{weights_source}: tensor `{full}` is not used: module `{module}` is not selected by the adapter's target_modules, exclude_modules and layers_to_transform in {config_source}"
        )));
    }
    let mut notes = Vec::new();
    if !skipped.is_empty() {
        notes.push(format!(
            "{weights_source}: {} module(s) selected by target_modules have no tensors in the file and keep no adapter (the saving model had none there): {}",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    Ok(LoadedAdapter {
        bert,
        cfg,
        notes,
        classifier,
    })
}

/// The file's keys by their short name (without `base_model.model.`, `bert.` and the adapter
/// name), each with its full key; and the module prefix of the saving model (`bert.` for
/// `BertFor...` models).
fn index_keys(ck: &Checkpoint) -> (BTreeMap<String, String>, &'static str) {
    let names = ck.names();
    let key_prefix = if names
        .iter()
        .any(|k| k.starts_with(&format!("{PEFT_PREFIX}bert.")))
    {
        "bert."
    } else {
        ""
    };
    let unused = names
        .iter()
        .map(|k| {
            let short = k.strip_prefix(PEFT_PREFIX).unwrap_or(k);
            let short = short.strip_prefix("bert.").unwrap_or(short);
            (without_adapter_name(short), k.clone())
        })
        .collect();
    (unused, key_prefix)
}

/// Attaches module `name`'s adapter tensors (taken out of `unused`) to `lin` where `targets`
/// select it; a selected module with none of its tensors in the file is listed in `skipped` and
/// keeps no adapter.
fn attach_module(
    src: &Source,
    targets: &[Target],
    unused: &mut BTreeMap<String, String>,
    skipped: &mut Vec<String>,
    name: &str,
    lin: AdaptedLinear,
) -> Result<AdaptedLinear> {
    let Some(t) = targets.iter().find(|t| t.name == name) else {
        return Ok(lin);
    };
    if lin.adapter.is_some() {
        return Err(Error::Adapter(format!("{name} already has an adapter")));
    }
    let (cfg, kind) = (src.cfg, src.cfg.kind());
    let (d_in, d_out) = lin.dims();
    let r = t.r;
    let magnitude = ["lora_magnitude_vector", "lora_magnitude_vector.weight"]
        .into_iter()
        .find(|k| unused.contains_key(&format!("{name}.{k}")))
        .unwrap_or("lora_magnitude_vector");
    let mut wanted = vec![
        ("lora_A.weight", vec![r, d_in]),
        ("lora_B.weight", vec![d_out, r]),
    ];
    if cfg.lora_bias {
        wanted.push(("lora_B.bias", vec![d_out]));
    }
    if kind == AdapterKind::Dora {
        wanted.push((magnitude, vec![d_out]));
    }
    let present = wanted
        .iter()
        .filter(|(k, _)| unused.contains_key(&format!("{name}.{k}")))
        .count();
    if present == 0 {
        skipped.push(name.to_string());
        return Ok(lin);
    }
    let mut values = Vec::new();
    for (suffix, shape) in &wanted {
        let short = format!("{name}.{suffix}");
        let full = unused.remove(&short).ok_or_else(|| {
            Error::Adapter(format!(
                "{}: tensor `{PEFT_PREFIX}{}{short}` is missing (the module's other tensors are there)",
                src.weights_source, src.key_prefix
            ))
        })?;
        let view_shape = shape_of(src.ck, &full);
        values.push(src.ck.f32_values_raw(&full, shape).map_err(|_| {
            Error::Adapter(format!(
                "{}: tensor `{full}` has shape {view_shape:?}, expected {shape:?} \
                 (r = {r} from {}, layer {d_in} -> {d_out})",
                src.weights_source, src.config_source
            ))
        })?);
    }
    let device = lin.weight.val().device();
    let mut values = values.into_iter();
    let mut next = || values.next().unwrap_or_default();
    let a = Tensor::<2>::from_data(
        TensorData::new(transpose(&next(), r, d_in), [d_in, r]),
        &device,
    );
    let b = Tensor::<2>::from_data(
        TensorData::new(transpose(&next(), d_out, r), [r, d_out]),
        &device,
    );
    let vec1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [d_out]), &device);
    let b_bias = cfg.lora_bias.then(|| vec1(next()));
    let m = (kind == AdapterKind::Dora).then(|| vec1(next()));
    let lin = lin.with_adapter_weights(kind, a, b, m, t.scaling, cfg.lora_dropout);
    Ok(match b_bias {
        Some(bb) => lin.with_lora_bias(bb),
        None => lin,
    })
}

/// The modules saved whole (`modules_to_save`): a SEQ_CLS adapter's `classifier` (or `score`),
/// returned, and the pooler, set into `bert`.
fn take_saved_modules(
    src: &Source,
    unused: &mut BTreeMap<String, String>,
    mut bert: Bert,
) -> Result<(Bert, Option<Classifier>)> {
    let (ck, weights_source) = (src.ck, src.weights_source);
    let mut take = |short: &str| unused.remove(short);
    let mut classifier = None;
    let saves = |m: &str| src.cfg.modules_to_save.iter().any(|x| x == m);
    if saves("classifier") || saves("score") {
        for head in ["classifier", "score"] {
            if let (Some(w), Some(b)) = (
                take(&format!("{head}.weight")),
                take(&format!("{head}.bias")),
            ) {
                let shape = shape_of(ck, &w);
                let [labels, hidden] = shape[..] else {
                    return Err(Error::Adapter(format!(
                        "{weights_source}: tensor `{w}` has shape {shape:?}, expected [labels, hidden]"
                    )));
                };
                classifier = Some(Classifier {
                    weight: ck.f32_values_raw(&w, &[labels, hidden])?,
                    bias: ck.f32_values_raw(&b, &[labels])?,
                    labels,
                    hidden,
                });
            }
        }
    }
    if (saves("pooler") || saves("pooler.dense"))
        && let (Some(w), Some(b)) = (take("pooler.dense.weight"), take("pooler.dense.bias"))
    {
        let h = shape_of(ck, &b).iter().product::<usize>();
        let weight = ck.f32_values_raw(&w, &[h, h])?;
        let bias = ck.f32_values_raw(&b, &[h])?;
        bert = bert.set_linear("pooler.dense", weight, bias, weights_source)?;
    }
    Ok((bert, classifier))
}

/// The trained base biases of `bias: all` / `lora_only` (`<module>[.base_layer].bias`), set
/// into `bert`; a bias the configuration does not save is an error.
fn take_trained_biases(
    src: &Source,
    targets: &[Target],
    unused: &mut BTreeMap<String, String>,
    mut bert: Bert,
) -> Result<Bert> {
    let (cfg, weights_source) = (src.cfg, src.weights_source);
    let biases: Vec<(String, String)> = unused
        .iter()
        .filter(|(short, _)| short.ends_with(".bias") && !short.contains(".lora_"))
        .map(|(short, full)| (short.clone(), full.clone()))
        .collect();
    for (short, full) in biases {
        let module = short.trim_end_matches(".bias");
        let module = module.strip_suffix(".base_layer").unwrap_or(module);
        let adapted = targets.iter().any(|t| t.name == module);
        let allowed = match cfg.bias {
            Bias::None => false,
            Bias::LoraOnly => adapted,
            Bias::All => true,
        };
        if !allowed {
            return Err(Error::Adapter(format!(
                "{weights_source}: tensor `{full}` is a bias, but `bias: {}` in {} saves {}",
                cfg.bias.name(),
                src.config_source,
                if cfg.bias == Bias::LoraOnly {
                    "only the adapted modules' biases"
                } else {
                    "none"
                }
            )));
        }
        let n = shape_of(src.ck, &full).iter().product();
        let v = src.ck.f32_values_raw(&full, &[n])?;
        bert = bert.set_bias(module, v, weights_source)?;
        unused.remove(&short);
    }
    Ok(bert)
}

/// `key` without PEFT's adapter name `default` after an adapter tensor's name
/// (`...lora_A.default.weight` -> `...lora_A.weight`, `...lora_magnitude_vector.default.weight`
/// -> `...lora_magnitude_vector.weight`): the keys of a PEFT model's live `state_dict()`, which
/// some tools save as they are. PEFT's `set_peft_model_state_dict` loads such a file as if saved
/// by `save_pretrained` (which drops the name), so lorabert does too.
fn without_adapter_name(key: &str) -> String {
    const NAMED: [&str; 3] = [".lora_A", ".lora_B", ".lora_magnitude_vector"];
    let mut out = key.to_string();
    for part in NAMED {
        let named = format!("{part}.default");
        if let Some(at) = out.find(&named) {
            let end = at + named.len();
            if end == out.len() || out[end..].starts_with('.') {
                out.replace_range(at..end, part);
            }
        }
    }
    out
}

fn shape_of(ck: &Checkpoint, full: &str) -> Vec<usize> {
    ck.shape(full).unwrap_or_default()
}
