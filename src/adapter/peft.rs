//! The PEFT adapter format: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! Key names and layouts are PEFT's (`peft.utils.save_and_load.get_peft_model_state_dict` for a
//! `BertModel` base): `base_model.model.<module>.lora_A.weight` `[r, in]`,
//! `base_model.model.<module>.lora_B.weight` `[out, r]`,
//! `base_model.model.<module>.lora_magnitude_vector` `[out]` (DoRA).

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};
use serde_json::{Value, json};

use super::{LoraConfig, select_targets};
use crate::error::{Error, Result};
use crate::model::Bert;
use crate::model::lora::AdapterKind;
use crate::model::weights::{Checkpoint, ReadBack, f32_safetensors, transpose};

/// Prefix PEFT puts before module names of a wrapped `BertModel`.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// Serialises `cfg` as PEFT's `adapter_config.json` (`peft_type: LORA`; `all-linear` written as
/// the explicit module list so PEFT adapts exactly the same modules).
pub fn adapter_config_json(cfg: &LoraConfig, base_model_name_or_path: &str) -> String {
    let v = json!({
        "peft_type": "LORA",
        "task_type": null,
        "base_model_name_or_path": base_model_name_or_path,
        "r": cfg.r,
        "lora_alpha": cfg.lora_alpha,
        "lora_dropout": cfg.lora_dropout,
        "use_rslora": cfg.use_rslora,
        "use_dora": cfg.use_dora,
        "target_modules": cfg.expanded_targets(),
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": null,
        "layers_pattern": null,
        "library": "lorabert",
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Parses PEFT's `adapter_config.json` into a [`LoraConfig`].
///
/// # Errors
/// [`Error::Config`] (naming `source_name`) for malformed JSON, a `peft_type` other than `LORA`,
/// a regex `target_modules`, non-empty `rank_pattern`/`alpha_pattern`, `fan_in_fan_out`, or
/// values out of range.
pub fn parse_adapter_config(text: &str, source_name: &str) -> Result<LoraConfig> {
    let bad = |m: String| Error::config(source_name, m);
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("expected a JSON object".into()))?;
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
    for k in ["rank_pattern", "alpha_pattern"] {
        if obj
            .get(k)
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
        {
            return Err(bad(format!("`{k}` is not supported")));
        }
    }
    if flag("fan_in_fan_out") {
        return Err(bad(
            "`fan_in_fan_out: true` is not supported (BERT uses nn.Linear)".into(),
        ));
    }
    let target_modules = match obj.get("target_modules") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("`target_modules` must hold strings".into()))
            })
            .collect::<Result<Vec<_>>>()?,
        Some(Value::String(s)) if s == "all-linear" => vec![s.clone()],
        Some(Value::String(s)) => {
            return Err(bad(format!(
                "`target_modules` is the regular expression `{s}`; lorabert needs a list of module names"
            )));
        }
        _ => return Err(bad("`target_modules` is missing".into())),
    };
    let cfg = LoraConfig {
        r,
        lora_alpha,
        lora_dropout,
        use_rslora: flag("use_rslora"),
        use_dora: flag("use_dora"),
        target_modules,
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
        rb.push_linear(&format!("{PEFT_PREFIX}{name}.lora_A"), a.lora_a.val(), None);
        rb.push_linear(&format!("{PEFT_PREFIX}{name}.lora_B"), a.lora_b.val(), None);
        if let Some(m) = &a.lora_magnitude_vector {
            rb.push_param(
                &format!("{PEFT_PREFIX}{name}.lora_magnitude_vector"),
                m.val(),
            );
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let tensors = rb.read().await?;
    if tensors.is_empty() {
        return Err(Error::Adapter("the model has no adapters to save".into()));
    }
    f32_safetensors(&tensors)
}

/// Attaches the adapters stored in PEFT format to `bert` (which must have none yet).
/// Keys may carry `base_model.model.` and/or `bert.` prefixes.
///
/// # Errors
/// [`Error::Config`] for a bad `adapter_config.json`; [`Error::Adapter`] when a target selects
/// nothing, a tensor of a selected module is missing, a tensor's shape disagrees with `r` or the
/// layer (e.g. `lora_A` is `[4, 384]` while the config says `r = 8`), or the file holds adapter
/// tensors for modules the config does not select; [`Error::Safetensors`] for a malformed file.
pub fn load_adapter(
    bert: Bert,
    config_json: &str,
    config_source: &str,
    safetensors_bytes: &[u8],
    weights_source: &str,
) -> Result<(Bert, LoraConfig)> {
    let cfg = parse_adapter_config(config_json, config_source)?;
    let ck = Checkpoint::parse(safetensors_bytes, weights_source, &[], "")?;
    // Normalise key names: strip `base_model.model.` and `bert.`.
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for k in ck.names() {
        let short = k.strip_prefix(PEFT_PREFIX).unwrap_or(&k);
        let short = short.strip_prefix("bert.").unwrap_or(short);
        keys.insert(short.to_string(), k.clone());
    }
    let selected = select_targets(&bert, &cfg)?;
    for k in keys.keys() {
        let module = k.split(".lora_").next().unwrap_or(k);
        if !selected.iter().any(|s| s == module) {
            return Err(Error::Adapter(format!(
                "{weights_source}: tensor `{k}` belongs to module `{module}`, which target_modules {:?} in {config_source} does not select",
                cfg.target_modules
            )));
        }
    }
    let scaling = cfg.scaling();
    let kind = cfg.kind();
    let r = cfg.r;
    let bert = bert.map_linears(&mut |name, lin| {
        if !selected.iter().any(|s| s == name) {
            return Ok(lin);
        }
        if lin.adapter.is_some() {
            return Err(Error::Adapter(format!("{name} already has an adapter")));
        }
        let (d_in, d_out) = lin.dims();
        let get = |suffix: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let short = format!("{name}.{suffix}");
            let full = keys.get(&short).ok_or_else(|| {
                Error::Adapter(format!("{weights_source}: tensor `{PEFT_PREFIX}{short}` is missing"))
            })?;
            let view_shape = shape_of(&ck, full);
            ck.f32_values_raw(full, shape).map_err(|_| {
                Error::Adapter(format!(
                    "{weights_source}: tensor `{full}` has shape {view_shape:?}, expected {shape:?} \
                     (r = {r} from {config_source}, layer {d_in} -> {d_out})"
                ))
            })
        };
        let a = get("lora_A.weight", &[r, d_in])?;
        let b = get("lora_B.weight", &[d_out, r])?;
        let device = lin.weight.val().device();
        let a = Tensor::<2>::from_data(TensorData::new(transpose(&a, r, d_in), [d_in, r]), &device);
        let b = Tensor::<2>::from_data(TensorData::new(transpose(&b, d_out, r), [r, d_out]), &device);
        let m = if kind == AdapterKind::Dora {
            let key = if keys.contains_key(&format!("{name}.lora_magnitude_vector")) {
                "lora_magnitude_vector"
            } else {
                "lora_magnitude_vector.weight"
            };
            let v = get(key, &[d_out])?;
            Some(Tensor::<1>::from_data(TensorData::new(v, [d_out]), &device))
        } else {
            None
        };
        Ok(lin.with_adapter_weights(kind, a, b, m, scaling, cfg.lora_dropout))
    })?;
    Ok((bert, cfg))
}

fn shape_of(ck: &Checkpoint, full: &str) -> Vec<usize> {
    ck.shape(full).unwrap_or_default()
}
