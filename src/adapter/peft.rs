//! The PEFT adapter format: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! Key names and layouts are PEFT's (`peft.utils.save_and_load.get_peft_model_state_dict` for a
//! `BertModel` base): `base_model.model.<module>.lora_A.weight` `[r, in]`,
//! `base_model.model.<module>.lora_B.weight` `[out, r]`,
//! `base_model.model.<module>.lora_magnitude_vector` `[out]` (DoRA).

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};
use serde_json::{Value, json};

use super::{Bias, LoraConfig, select_targets};
use crate::error::{Error, Result};
use crate::model::Bert;
use crate::model::lora::AdapterKind;
use crate::model::weights::{Checkpoint, ReadBack, f32_safetensors, transpose};

/// Prefix PEFT puts before module names of a wrapped `BertModel`.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// Serialises `cfg` as PEFT's `adapter_config.json` (`peft_type: LORA`; `all-linear` written as
/// the explicit module list so PEFT adapts exactly the same modules).
pub fn adapter_config_json(cfg: &LoraConfig, base_model_name_or_path: &str) -> String {
    let ordered =
        |m: &[(String, f64)]| Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
    let ranks: Vec<(String, f64)> = cfg
        .rank_pattern
        .iter()
        .map(|(k, r)| (k.clone(), *r as f64))
        .collect();
    let mut v = json!({
        "peft_type": "LORA",
        "task_type": null,
        "base_model_name_or_path": base_model_name_or_path,
        "r": cfg.r,
        "lora_alpha": cfg.lora_alpha,
        "lora_dropout": cfg.lora_dropout,
        "use_rslora": cfg.use_rslora,
        "use_dora": cfg.use_dora,
        "target_modules": match &cfg.target_regex {
            Some(r) => json!(r),
            None => json!(cfg.expanded_targets()),
        },
        "bias": cfg.bias.name(),
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": if cfg.modules_to_save.is_empty() {
            Value::Null
        } else {
            json!(cfg.modules_to_save)
        },
        "rank_pattern": ordered(&ranks),
        "alpha_pattern": ordered(&cfg.alpha_pattern),
        "layers_to_transform": cfg.layers_to_transform,
        "layers_pattern": match cfg.layers_pattern.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        },
        "library": "lorabert",
    });
    if let Some(o) = v.as_object_mut() {
        if cfg.lora_bias {
            o.insert("lora_bias".into(), json!(true));
        }
        match (&cfg.exclude_regex, cfg.exclude_modules.is_empty()) {
            (Some(r), _) => {
                o.insert("exclude_modules".into(), json!(r));
            }
            (None, false) => {
                o.insert("exclude_modules".into(), json!(cfg.exclude_modules));
            }
            (None, true) => {}
        }
    }
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// How lorabert treats each field of PEFT's (0.21.2) `LoraConfig` in `adapter_config.json`:
/// every field changes the computation as PEFT does, or is metadata that changes nothing, or
/// refuses the load when it holds anything but its default (naming the field and why). A field
/// not in this list is refused. The table of docs/interoperability.md is this list (checked by `tests/parity.rs`).
pub const FIELDS: &[(&str, &str)] = &[
    ("peft_type", "applied: LORA only"),
    ("task_type", "metadata (the model class PEFT wraps)"),
    ("auto_mapping", "metadata"),
    ("peft_version", "metadata"),
    ("base_model_name_or_path", "metadata"),
    ("revision", "metadata"),
    ("inference_mode", "metadata (trainability in PEFT)"),
    ("library", "metadata (lorabert's own mark)"),
    ("r", "applied"),
    ("lora_alpha", "applied"),
    ("lora_dropout", "applied"),
    ("use_rslora", "applied"),
    ("use_dora", "applied"),
    (
        "target_modules",
        "applied: a list (PEFT's suffix rule, `all-linear`) or a regular expression (re.fullmatch)",
    ),
    ("exclude_modules", "applied: a list or a regular expression"),
    (
        "layers_to_transform",
        "applied (with list targets, as PEFT)",
    ),
    ("layers_pattern", "applied"),
    ("rank_pattern", "applied"),
    ("alpha_pattern", "applied"),
    ("lora_bias", "applied (LoRA; refused with DoRA, as PEFT)"),
    (
        "bias",
        "applied: `none`, `lora_only`, `all` (the trained biases in the file replace the base ones)",
    ),
    (
        "fan_in_fan_out",
        "refused when true: BERT's layers are nn.Linear",
    ),
    (
        "modules_to_save",
        "applied: `classifier` (a SEQ_CLS adapter's head: `predict` runs it on the pooler output, as BertForSequenceClassification), `score`, `pooler`; other modules refused",
    ),
    (
        "init_lora_weights",
        "metadata for true, false, gaussian, eva, orthogonal (initialisation only); refused for pissa, olora, loftq, corda, lora_ga (they change the base weights)",
    ),
    ("eva_config", "metadata (initialisation only)"),
    ("runtime_config", "metadata (runtime options)"),
    (
        "ensure_weight_tying",
        "metadata (tied embeddings of modules_to_save)",
    ),
    ("qalora_group_size", "metadata (used with use_qalora only)"),
    ("megatron_core", "metadata (used with megatron_config only)"),
    ("use_qalora", "refused when true: quantisation-aware LoRA"),
    ("use_bdlora", "refused when true: not implemented"),
    ("megatron_config", "refused when set: Megatron layers"),
    (
        "trainable_token_indices",
        "refused when set: trainable token embeddings",
    ),
    (
        "loftq_config",
        "refused when set: LoftQ changes the base weights",
    ),
    (
        "corda_config",
        "refused when set: CorDA changes the base weights",
    ),
    (
        "lora_ga_config",
        "refused when set: LoRA-GA changes the base weights",
    ),
    ("velora_config", "refused when set: not implemented"),
    ("monteclora_config", "refused when set: not implemented"),
    ("kasa_config", "refused when set: not implemented"),
    ("arrow_config", "refused when set: not implemented"),
    (
        "alora_invocation_tokens",
        "refused when set: activated LoRA changes the forward",
    ),
    ("layer_replication", "refused when set: replicated layers"),
    (
        "target_parameters",
        "refused when set: adapters on parameters, not modules",
    ),
];

/// Whether a JSON value is a field's "unset": null, false, or an empty string, list or object.
fn unset(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// A JSON object's entries in file order (serde_json's own map sorts them; PEFT's
/// `rank_pattern` and `alpha_pattern` are tried in file order).
struct Ordered(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
            fn visit_unit<E>(self) -> std::result::Result<Ordered, E> {
                Ok(Ordered(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The two pattern fields, in file order.
#[derive(serde::Deserialize)]
struct Patterns {
    #[serde(default)]
    rank_pattern: Option<Ordered>,
    #[serde(default)]
    alpha_pattern: Option<Ordered>,
}

/// Parses PEFT's `adapter_config.json` into a [`LoraConfig`], field by field as [`FIELDS`]
/// says.
///
/// # Errors
/// [`Error::Config`] (naming `source_name` and the field) for malformed JSON, a `peft_type`
/// other than `LORA`, a refused or unknown field, or values out of range.
pub fn parse_adapter_config(text: &str, source_name: &str) -> Result<LoraConfig> {
    let bad = |m: String| Error::config(source_name, m);
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("expected a JSON object".into()))?;
    for (k, val) in obj {
        let Some((_, how)) = FIELDS.iter().find(|(f, _)| f == k) else {
            return Err(bad(format!(
                "field `{k}` is not a field of PEFT's LoraConfig that lorabert knows (PEFT 0.21.2); it cannot be applied"
            )));
        };
        let refused = how.starts_with("refused when");
        if refused && !unset(val) {
            return Err(bad(format!("`{k}`: {how}")));
        }
        if *k == "init_lora_weights"
            && let Some(s) = val.as_str()
            && ["pissa", "olora", "loftq", "corda", "lora_ga"]
                .iter()
                .any(|p| s.starts_with(p))
        {
            return Err(bad(format!(
                "`init_lora_weights: {s}`: this initialisation changes the base weights, so the adapter does not apply to the original model"
            )));
        }
    }
    match obj.get("peft_type").and_then(Value::as_str) {
        Some("LORA") | None => {}
        Some(other) => {
            return Err(bad(format!(
                "peft_type `{other}` is not supported (only LORA)"
            )));
        }
    }
    let r = obj
        .get("r")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("`r` is missing or not a positive integer".into()))?
        as usize;
    let lora_alpha = obj.get("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0);
    let lora_dropout = obj
        .get("lora_dropout")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let flag = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);
    let strings = |k: &str, v: &Value| -> Result<Vec<String>> {
        v.as_array()
            .ok_or_else(|| bad(format!("`{k}` must be a list or a string")))?
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("`{k}` must hold strings")))
            })
            .collect()
    };
    let (target_modules, target_regex) = match obj.get("target_modules") {
        Some(Value::String(s)) if s == "all-linear" => (vec![s.clone()], None),
        Some(Value::String(s)) => (Vec::new(), Some(s.clone())),
        Some(v @ Value::Array(_)) => (strings("target_modules", v)?, None),
        _ => return Err(bad("`target_modules` is missing".into())),
    };
    let (exclude_modules, exclude_regex) = match obj.get("exclude_modules") {
        None | Some(Value::Null) => (Vec::new(), None),
        Some(Value::String(s)) => (Vec::new(), Some(s.clone())),
        Some(v) => (strings("exclude_modules", v)?, None),
    };
    let layers_to_transform = match obj.get("layers_to_transform") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(vec![n.as_u64().ok_or_else(|| {
            bad("`layers_to_transform` must be a layer index or a list of them".into())
        })? as usize]),
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|x| x.as_u64().map(|i| i as usize))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("`layers_to_transform` must hold layer indices".into()))?,
        ),
        Some(_) => {
            return Err(bad(
                "`layers_to_transform` must be a list of layer indices".into()
            ));
        }
    };
    let layers_pattern = match obj.get("layers_pattern") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(v) => strings("layers_pattern", v)?,
    };
    let patterns: Patterns =
        serde_json::from_str(text).map_err(|e| bad(format!("invalid patterns: {e}")))?;
    let rank_pattern = patterns.rank_pattern.map_or(Ok(Vec::new()), |o| {
        o.0.into_iter()
            .map(|(k, v)| match v.as_u64() {
                Some(r) => Ok((k, r as usize)),
                None => Err(bad(format!(
                    "`rank_pattern` `{k}`: the rank must be an integer"
                ))),
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let alpha_pattern = patterns.alpha_pattern.map_or(Ok(Vec::new()), |o| {
        o.0.into_iter()
            .map(|(k, v)| match v.as_f64() {
                Some(a) => Ok((k, a)),
                None => Err(bad(format!(
                    "`alpha_pattern` `{k}`: alpha must be a number"
                ))),
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut modules_to_save = match obj.get("modules_to_save") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => strings("modules_to_save", v)?,
    };
    // PEFT appends its task's defaults (`classifier`, `score`), often twice.
    let mut seen = Vec::new();
    modules_to_save.retain(|m| {
        let new = !seen.contains(m);
        seen.push(m.clone());
        new
    });
    let bias = match obj.get("bias").and_then(Value::as_str) {
        None | Some("none") => Bias::None,
        Some("lora_only") => Bias::LoraOnly,
        Some("all") => Bias::All,
        Some(other) => {
            return Err(bad(format!(
                "`bias: {other}` is not none, lora_only or all"
            )));
        }
    };
    let cfg = LoraConfig {
        r,
        lora_alpha,
        lora_dropout,
        use_rslora: flag("use_rslora"),
        use_dora: flag("use_dora"),
        target_modules,
        target_regex,
        exclude_modules,
        exclude_regex,
        layers_to_transform,
        layers_pattern,
        rank_pattern,
        alpha_pattern,
        lora_bias: flag("lora_bias"),
        bias,
        modules_to_save,
    };
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    Ok(cfg)
}

/// Writes the adapters of `bert` as PEFT `adapter_model.safetensors` bytes.
///
/// # Errors
/// [`Error::Invalid`] if a tensor cannot be read back; [`Error::Adapter`] when the model has no
/// adapters or they are merged.
pub async fn adapter_safetensors(bert: &Bert) -> Result<Vec<u8>> {
    f32_safetensors(&adapter_tensors(bert, PEFT_PREFIX).await?)
}

/// The adapters of `bert` as named f32 tensors in PEFT's layout, each key `prefix` + module
/// name + `.lora_A.weight` `[r, in]`, `.lora_B.weight` `[out, r]` (and `.lora_B.bias`
/// `[out]`, `.lora_magnitude_vector` `[out]`): `prefix` is [`PEFT_PREFIX`] for a wrapped
/// `BertModel`, `base_model.model.bert.` for a `BertForSequenceClassification`.
///
/// # Errors
/// As [`adapter_safetensors`].
pub async fn adapter_tensors(bert: &Bert, prefix: &str) -> Result<crate::model::weights::Tensors> {
    let mut rb = ReadBack::default();
    let mut err = None;
    bert.visit_linears(&mut |name, lin| {
        let Some(a) = &lin.adapter else { return };
        if a.merged {
            err = Some(Error::Adapter(format!(
                "{name}: cannot save a merged adapter; unmerge first"
            )));
            return;
        }
        // lora_A [in, r] and lora_B [r, out] here; PEFT stores them as the nn.Linear weights
        // [r, in] and [out, r].
        rb.push_linear(&format!("{prefix}{name}.lora_A"), a.lora_a.val(), None);
        rb.push_linear(
            &format!("{prefix}{name}.lora_B"),
            a.lora_b.val(),
            a.lora_b_bias.as_ref().map(|b| b.val()),
        );
        if let Some(m) = &a.lora_magnitude_vector {
            rb.push_param(&format!("{prefix}{name}.lora_magnitude_vector"), m.val());
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let tensors = rb.read().await?;
    if tensors.is_empty() {
        return Err(Error::Adapter("the model has no adapters to save".into()));
    }
    Ok(tensors)
}

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

/// Attaches the adapters stored in PEFT format to `bert` (which must have none yet), as PEFT
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
/// [`Error::Config`] for a bad `adapter_config.json`; [`Error::Adapter`] when a target selects
/// nothing, a module has some but not all of its tensors, a tensor's shape disagrees with its
/// rank or the layer, or a tensor in the file is not used (a module the config does not select,
/// a bias the config does not save, ...); [`Error::Safetensors`] for a malformed file.
pub fn load_adapter(
    bert: Bert,
    config_json: &str,
    config_source: &str,
    safetensors_bytes: &[u8],
    weights_source: &str,
) -> Result<LoadedAdapter> {
    let cfg = parse_adapter_config(config_json, config_source)?;
    let ck = Checkpoint::parse(safetensors_bytes, weights_source, &[], "")?;
    // The module names of the saving model: with `bert.` for BertFor... models.
    let names = ck.names();
    let key_prefix = if names
        .iter()
        .any(|k| k.starts_with(&format!("{PEFT_PREFIX}bert.")))
    {
        "bert."
    } else {
        ""
    };
    let mut unused: BTreeMap<String, String> = names
        .iter()
        .map(|k| {
            let short = k.strip_prefix(PEFT_PREFIX).unwrap_or(k);
            let short = short.strip_prefix("bert.").unwrap_or(short);
            (without_adapter_name(short), k.clone())
        })
        .collect();
    let targets = select_targets(&bert, &cfg, key_prefix)?;
    let kind = cfg.kind();
    let mut skipped = Vec::new();
    let mut bert = bert.map_linears(&mut |name, lin| {
        let Some(t) = targets.iter().find(|t| t.name == name) else {
            return Ok(lin);
        };
        if lin.adapter.is_some() {
            return Err(Error::Adapter(format!("{name} already has an adapter")));
        }
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
                    "{weights_source}: tensor `{PEFT_PREFIX}{key_prefix}{short}` is missing (the module's other tensors are there)"
                ))
            })?;
            let view_shape = shape_of(&ck, &full);
            values.push(ck.f32_values_raw(&full, shape).map_err(|_| {
                Error::Adapter(format!(
                    "{weights_source}: tensor `{full}` has shape {view_shape:?}, expected {shape:?} \
                     (r = {r} from {config_source}, layer {d_in} -> {d_out})"
                ))
            })?);
        }
        let device = lin.weight.val().device();
        let mut values = values.into_iter();
        let mut next = || values.next().unwrap_or_default();
        let a = Tensor::<2>::from_data(TensorData::new(transpose(&next(), r, d_in), [d_in, r]), &device);
        let b = Tensor::<2>::from_data(TensorData::new(transpose(&next(), d_out, r), [r, d_out]), &device);
        let vec1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [d_out]), &device);
        let b_bias = cfg.lora_bias.then(|| vec1(next()));
        let m = (kind == AdapterKind::Dora).then(|| vec1(next()));
        let lin = lin.with_adapter_weights(kind, a, b, m, t.scaling, cfg.lora_dropout);
        Ok(match b_bias {
            Some(bb) => lin.with_lora_bias(bb),
            None => lin,
        })
    })?;
    // Modules saved whole: the classifier and the pooler of SEQ_CLS adapters.
    let mut take = |short: &str| unused.remove(short);
    let mut classifier = None;
    let saves = |m: &str| cfg.modules_to_save.iter().any(|x| x == m);
    if saves("classifier") || saves("score") {
        for head in ["classifier", "score"] {
            if let (Some(w), Some(b)) = (
                take(&format!("{head}.weight")),
                take(&format!("{head}.bias")),
            ) {
                let shape = shape_of(&ck, &w);
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
        let h = shape_of(&ck, &b).iter().product::<usize>();
        let weight = ck.f32_values_raw(&w, &[h, h])?;
        let bias = ck.f32_values_raw(&b, &[h])?;
        bert = bert.set_linear("pooler.dense", weight, bias, weights_source)?;
    }
    // The trained base biases of `bias: all` / `lora_only`: `<module>[.base_layer].bias`.
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
                "{weights_source}: tensor `{full}` is a bias, but `bias: {}` in {config_source} saves {}",
                cfg.bias.name(),
                if cfg.bias == Bias::LoraOnly {
                    "only the adapted modules' biases"
                } else {
                    "none"
                }
            )));
        }
        let n = shape_of(&ck, &full).iter().product();
        let v = ck.f32_values_raw(&full, &[n])?;
        bert = bert.set_bias(module, v, weights_source)?;
        unused.remove(&short);
    }
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
