//! The PEFT adapter format: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! Key names and layouts are PEFT's (`peft.utils.save_and_load.get_peft_model_state_dict` for a
//! `BertModel` base): `base_model.model.<module>.lora_A.weight` `[r, in]`,
//! `base_model.model.<module>.lora_B.weight` `[out, r]`,
//! `base_model.model.<module>.lora_magnitude_vector` `[out]` (DoRA).

use serde::Deserialize;
use serde_json::{Value, json};

pub use super::peft_load::{Classifier, LoadedAdapter, PEFT_PREFIX};
use super::{Bias, LoraConfig};
use crate::error::{Error, Result};
use crate::model::Bert;
use crate::model::weights::{ReadBack, f32_safetensors};

/// Serialises `cfg` as PEFT's `adapter_config.json` (`peft_type: LORA`; `all-linear` written as
/// the explicit module list so PEFT adapts exactly the same modules). Only fields PEFT's
/// `LoraConfig` knows are written: PEFT warns about any other key and tells the user to
/// upgrade PEFT.
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
    (
        "library",
        "metadata (lorabert's own mark in older checkpoints; no longer written, as PEFT warns about keys it does not know)",
    ),
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

/// A JSON object's entries in file order with values of type `T` (serde_json's own map sorts
/// them; PEFT's `rank_pattern` and `alpha_pattern` are tried in file order).
struct Ordered<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Ordered<T>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, T>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// One value or a list of them, as PEFT writes `target_modules` (a list, or one string: a
/// regular expression or `all-linear`), `exclude_modules`, `layers_pattern` and
/// `layers_to_transform`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The fields of PEFT's `adapter_config.json` that lorabert applies, as PEFT 0.21.2 writes
/// them (`LoraConfig`'s names; a missing or `null` field takes PEFT's default). [`FIELDS`]
/// says what happens to every other field; they are checked before this is read.
#[derive(Deserialize)]
struct AdapterConfigFile {
    peft_type: Option<String>,
    r: Option<usize>,
    lora_alpha: Option<f64>,
    lora_dropout: Option<f64>,
    use_rslora: Option<bool>,
    use_dora: Option<bool>,
    lora_bias: Option<bool>,
    target_modules: Option<OneOrMany<String>>,
    exclude_modules: Option<OneOrMany<String>>,
    layers_to_transform: Option<OneOrMany<usize>>,
    layers_pattern: Option<OneOrMany<String>>,
    rank_pattern: Option<Ordered<usize>>,
    alpha_pattern: Option<Ordered<f64>>,
    modules_to_save: Option<Vec<String>>,
    bias: Option<Bias>,
}

/// Parses PEFT's `adapter_config.json` into a [`LoraConfig`]: every field checked against
/// [`FIELDS`] ([`check_fields`]), then the applied ones read as [`AdapterConfigFile`].
///
/// # Errors
/// [`Error::Config`] (naming `source_name`, and the field or the line and column) for malformed
/// JSON, a `peft_type` other than `LORA`, a refused or unknown field, a value of the wrong type,
/// or values out of range.
pub fn parse_adapter_config(text: &str, source_name: &str) -> Result<LoraConfig> {
    let bad = |m: String| Error::config(source_name, m);
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("expected a JSON object".into()))?;
    check_fields(obj).map_err(bad)?;
    let f: AdapterConfigFile =
        serde_json::from_str(text).map_err(|e| bad(format!("invalid value: {e}")))?;
    match f.peft_type.as_deref() {
        Some("LORA") | None => {}
        Some(other) => {
            return Err(bad(format!(
                "peft_type `{other}` is not supported (only LORA)"
            )));
        }
    }
    let r =
        f.r.ok_or_else(|| bad("`r` is missing or not a positive integer".into()))?;
    let (target_modules, target_regex) = match f.target_modules {
        Some(OneOrMany::One(s)) if s == "all-linear" => (vec![s], None),
        Some(OneOrMany::One(s)) => (Vec::new(), Some(s)),
        Some(OneOrMany::Many(v)) => (v, None),
        None => return Err(bad("`target_modules` is missing".into())),
    };
    let (exclude_modules, exclude_regex) = match f.exclude_modules {
        None => (Vec::new(), None),
        Some(OneOrMany::One(s)) => (Vec::new(), Some(s)),
        Some(OneOrMany::Many(v)) => (v, None),
    };
    // PEFT appends its task's defaults (`classifier`, `score`), often twice.
    let mut modules_to_save: Vec<String> = Vec::new();
    for m in f.modules_to_save.unwrap_or_default() {
        if !modules_to_save.contains(&m) {
            modules_to_save.push(m);
        }
    }
    let cfg = LoraConfig {
        r,
        lora_alpha: f.lora_alpha.unwrap_or(8.0),
        lora_dropout: f.lora_dropout.unwrap_or(0.0),
        use_rslora: f.use_rslora.unwrap_or(false),
        use_dora: f.use_dora.unwrap_or(false),
        target_modules,
        target_regex,
        exclude_modules,
        exclude_regex,
        layers_to_transform: f.layers_to_transform.map(OneOrMany::into_vec),
        layers_pattern: f.layers_pattern.map_or(Vec::new(), OneOrMany::into_vec),
        rank_pattern: f.rank_pattern.map_or(Vec::new(), |o| o.0),
        alpha_pattern: f.alpha_pattern.map_or(Vec::new(), |o| o.0),
        lora_bias: f.lora_bias.unwrap_or(false),
        bias: f.bias.unwrap_or(Bias::None),
        modules_to_save,
    };
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    Ok(cfg)
}

/// Checks every field of an `adapter_config.json` object against [`FIELDS`]: an unknown field,
/// a refused field that is set, or an initialisation that changes the base weights is an error
/// (the message, naming the field).
fn check_fields(obj: &serde_json::Map<String, Value>) -> std::result::Result<(), String> {
    for (k, val) in obj {
        let Some((_, how)) = FIELDS.iter().find(|(f, _)| f == k) else {
            return Err(format!(
                "field `{k}` is not a field of PEFT's LoraConfig that lorabert knows (PEFT 0.21.2); it cannot be applied"
            ));
        };
        if how.starts_with("refused when") && !unset(val) {
            return Err(format!("`{k}`: {how}"));
        }
        if *k == "init_lora_weights"
            && let Some(s) = val.as_str()
            && ["pissa", "olora", "loftq", "corda", "lora_ga"]
                .iter()
                .any(|p| s.starts_with(p))
        {
            return Err(format!(
                "`init_lora_weights: {s}`: this initialisation changes the base weights, so the adapter does not apply to the original model"
            ));
        }
    }
    Ok(())
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

/// Attaches the adapters stored in PEFT format to `bert`: `config_json` parsed as
/// [`parse_adapter_config`], then the tensors of `safetensors_bytes` loaded as
/// [`super::peft_load::load_tensors`] describes (PEFT 0.21.2's loading rules).
///
/// # Errors
/// [`Error::Config`] for a bad `adapter_config.json`; as [`super::peft_load::load_tensors`].
pub fn load_adapter(
    bert: Bert,
    config_json: &str,
    config_source: &str,
    safetensors_bytes: &[u8],
    weights_source: &str,
) -> Result<LoadedAdapter> {
    let cfg = parse_adapter_config(config_json, config_source)?;
    super::peft_load::load_tensors(bert, cfg, config_source, safetensors_bytes, weights_source)
}
