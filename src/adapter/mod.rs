//! LoRA / DoRA injection, as PEFT's `tuners/lora/model.py` and `config.py`: the configuration
//! with PEFT's names, target-module matching, attaching adapters to a
//! [`Bert`](crate::model::Bert), merging, and the PEFT file format. The adapted layer itself
//! (PEFT's `layer.py` / `dora.py`) is [`crate::model::lora`], below this module.

pub mod peft;

use crate::model::lora::AdapterKind;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Bert;

/// The linear layers `all-linear` selects: every linear layer of the encoder. The pooler is left
/// out because lorabert's heads do not read it (PEFT's `all-linear` on a bare `BertModel` would
/// also adapt `pooler.dense`).
pub const ALL_LINEAR: [&str; 6] = [
    "query",
    "key",
    "value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

/// The target set `attention`: the attention block's linear layers.
pub const ATTENTION: [&str; 4] = ["query", "key", "value", "attention.output.dense"];

/// The `target_modules` list of a named target set: `attention` ([`ATTENTION`]), `all-linear`,
/// or a `+`-joined list of module names (`query+value`), as sweeps and the page name them.
pub fn target_set(name: &str) -> Vec<String> {
    match name {
        "attention" => ATTENTION.iter().map(|s| s.to_string()).collect(),
        "all-linear" => vec!["all-linear".into()],
        other => other.split('+').map(str::to_string).collect(),
    }
}

/// Adapter hyper-parameters, named and defaulted as PEFT's `LoraConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank `r` of `B·A`.
    pub r: usize,
    /// `lora_alpha`; `scaling = lora_alpha / r` (or `/ √r` with `use_rslora`).
    pub lora_alpha: f64,
    /// Dropout probability on the adapter input.
    pub lora_dropout: f64,
    /// Rank-stabilised scaling (Kalajdzievski 2023): `lora_alpha / √r`.
    pub use_rslora: bool,
    /// DoRA (Liu et al. 2024) instead of LoRA.
    pub use_dora: bool,
    /// Module names as PEFT matches them, or `["all-linear"]`.
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 8,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            use_rslora: false,
            use_dora: false,
            target_modules: vec!["all-linear".into()],
        }
    }
}

impl LoraConfig {
    /// `lora_alpha / r`, or `lora_alpha / √r` with `use_rslora` (PEFT `LoraLayer.update_layer`).
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// LoRA or DoRA.
    pub fn kind(&self) -> AdapterKind {
        if self.use_dora {
            AdapterKind::Dora
        } else {
            AdapterKind::Lora
        }
    }

    /// Checks value ranges.
    ///
    /// # Errors
    /// [`Error::Adapter`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 {
            return Err(Error::Adapter("`r` must be >= 1".into()));
        }
        if !self.lora_alpha.is_finite() || self.lora_alpha <= 0.0 {
            return Err(Error::Adapter(format!(
                "`lora_alpha` = {} must be > 0",
                self.lora_alpha
            )));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(Error::Adapter(format!(
                "`lora_dropout` = {} must be in [0, 1)",
                self.lora_dropout
            )));
        }
        if self.target_modules.is_empty() {
            return Err(Error::Adapter("`target_modules` is empty".into()));
        }
        Ok(())
    }

    /// The target list with `all-linear` expanded to [`ALL_LINEAR`].
    pub fn expanded_targets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.target_modules {
            if t == "all-linear" {
                out.extend(ALL_LINEAR.iter().map(|s| s.to_string()));
            } else {
                out.push(t.clone());
            }
        }
        out.dedup();
        out
    }
}

/// PEFT's rule for a list of target names: `key` is selected when it equals a target or ends with
/// `"." + target` (`peft.tuners.tuners_utils.check_target_module_exists`).
pub fn matches_target(key: &str, target: &str) -> bool {
    key == target || key.ends_with(&format!(".{target}"))
}

/// Full module names of `bert` selected by `cfg.target_modules`, in model order.
///
/// # Errors
/// [`Error::Adapter`] when a target name selects no module (naming it and listing valid names).
pub fn select_targets(bert: &Bert, cfg: &LoraConfig) -> Result<Vec<String>> {
    let targets = cfg.expanded_targets();
    let mut names = Vec::new();
    bert.visit_linears(&mut |name, _| names.push(name.to_string()));
    for t in &targets {
        if !names.iter().any(|n| matches_target(n, t)) {
            return Err(Error::Adapter(format!(
                "target module `{t}` matches no module of the model; valid names include \
                 query, key, value, attention.output.dense, intermediate.dense, output.dense, \
                 dense, all-linear, or a full name such as encoder.layer.0.attention.self.query"
            )));
        }
    }
    // `all-linear` never selects the pooler.
    let explicit: Vec<&String> = cfg
        .target_modules
        .iter()
        .filter(|t| *t != "all-linear")
        .collect();
    Ok(names
        .into_iter()
        .filter(|n| {
            explicit.iter().any(|t| matches_target(n, t))
                || (cfg.target_modules.iter().any(|t| t == "all-linear")
                    && !n.starts_with("pooler"))
        })
        .collect())
}

/// Attaches freshly initialised adapters (A Kaiming-uniform, B = 0, DoRA m = ‖W‖) to every module
/// `cfg` selects. Random draws use `device`'s seeded generator.
///
/// # Errors
/// [`Error::Adapter`] for an invalid config or a target that matches nothing.
pub fn apply_adapters(bert: Bert, cfg: &LoraConfig, device: &Device) -> Result<Bert> {
    cfg.validate()?;
    let selected = select_targets(&bert, cfg)?;
    let scaling = cfg.scaling();
    bert.map_linears(&mut |name, lin| {
        Ok(if selected.iter().any(|s| s == name) {
            lin.with_adapter(cfg.kind(), cfg.r, scaling, cfg.lora_dropout, device)
        } else {
            lin
        })
    })
}

/// Folds every adapter into its base weight (see [`crate::model::AdaptedLinear::merge`]).
pub fn merge(bert: Bert) -> Bert {
    bert.map_linears(&mut |_, l| Ok(l.merge()))
        .unwrap_or_else(|_| unreachable!("merge returns no error"))
}

/// Reverses [`merge`] (see [`crate::model::AdaptedLinear::unmerge`]).
pub fn unmerge(bert: Bert) -> Bert {
    bert.map_linears(&mut |_, l| Ok(l.unmerge()))
        .unwrap_or_else(|_| unreachable!("unmerge returns no error"))
}

/// Trainable adapter parameters in `bert` (sum of `r·(in+out)` and DoRA magnitudes).
pub fn adapter_param_count(bert: &Bert) -> usize {
    let mut n = 0;
    bert.visit_linears(&mut |_, l| n += l.adapter_params());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_matching_rule() {
        assert!(matches_target(
            "encoder.layer.0.attention.output.dense",
            "output.dense"
        ));
        assert!(matches_target(
            "encoder.layer.0.output.dense",
            "output.dense"
        ));
        assert!(!matches_target(
            "encoder.layer.0.intermediate.dense",
            "output.dense"
        ));
        assert!(matches_target(
            "encoder.layer.0.attention.self.query",
            "query"
        ));
        assert!(!matches_target(
            "encoder.layer.0.attention.self.query",
            "uery"
        ));
    }

    #[test]
    fn scaling_rules() {
        let mut c = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            ..Default::default()
        };
        assert_eq!(c.scaling(), 2.0);
        c.use_rslora = true;
        assert_eq!(c.scaling(), 4.0);
    }
}
