//! LoRA / DoRA injection, as PEFT's `tuners/lora/model.py` and `config.py`: the configuration
//! with PEFT's names, target-module matching, attaching adapters to a
//! [`Bert`](crate::model::Bert), merging, and the PEFT file format. The adapted layer itself
//! (PEFT's `layer.py` / `dora.py`) is [`crate::model::lora`], below this module.

pub mod peft;
pub mod peft_load;

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
    /// Module names as PEFT matches them, or `["all-linear"]` (empty when `target_regex` is
    /// given).
    pub target_modules: Vec<String>,
    /// PEFT's `target_modules` given as one string: a regular expression matched against the
    /// whole module name (`re.fullmatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_regex: Option<String>,
    /// PEFT's `exclude_modules` as a list: modules equal to or ending in `.name` are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_modules: Vec<String>,
    /// PEFT's `exclude_modules` as a string: a regular expression (`re.fullmatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_regex: Option<String>,
    /// PEFT's `layers_to_transform`: only modules in these encoder layers (list targets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers_to_transform: Option<Vec<usize>>,
    /// PEFT's `layers_pattern`: the name before the layer index (`layer`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers_pattern: Vec<String>,
    /// PEFT's `rank_pattern`: `r` of the modules a pattern matches (`(.*\.)?(pattern)$`, first
    /// match in file order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rank_pattern: Vec<(String, usize)>,
    /// PEFT's `alpha_pattern`: `lora_alpha` per module, matched as `rank_pattern`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpha_pattern: Vec<(String, f64)>,
    /// PEFT's `lora_bias`: `lora_B` has a bias (LoRA only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lora_bias: bool,
    /// PEFT's `bias`: which base biases the adapter file carries (trained with it).
    #[serde(default, skip_serializing_if = "Bias::is_none")]
    pub bias: Bias,
    /// PEFT's `modules_to_save`: modules trained whole and saved in the adapter file (a
    /// sequence-classification adapter's `classifier`, sometimes the `pooler`); adapters never
    /// go on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules_to_save: Vec<String>,
}

/// The `modules_to_save` lorabert loads: the classifier of a `BertForSequenceClassification`
/// (`classifier`; `score` is PEFT's name for other models' heads, absent here) and its pooler.
pub const SAVED_MODULES: [&str; 4] = ["classifier", "score", "pooler", "pooler.dense"];

/// PEFT's `bias` option: which of the base model's biases were trained (and are saved in the
/// adapter file, as `<module>.base_layer.bias` or `<module>.bias`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bias {
    /// None (the default).
    #[default]
    None,
    /// The biases of the adapted layers.
    LoraOnly,
    /// Every bias of the model (linear layers and LayerNorms).
    All,
}

impl Bias {
    /// Whether it is [`Bias::None`].
    pub fn is_none(&self) -> bool {
        *self == Bias::None
    }

    /// PEFT's spelling: `none`, `lora_only`, `all`.
    pub fn name(self) -> &'static str {
        match self {
            Bias::None => "none",
            Bias::LoraOnly => "lora_only",
            Bias::All => "all",
        }
    }
}

/// One module an adapter goes on, with its rank and `lora_alpha` (after `rank_pattern`,
/// `alpha_pattern`).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The module's Hugging Face name (`encoder.layer.0.attention.self.query`).
    pub name: String,
    /// Its rank.
    pub r: usize,
    /// Its `lora_alpha`.
    pub lora_alpha: f64,
    /// Its scaling, `lora_alpha / r` (or `/ √r` with `use_rslora`).
    pub scaling: f64,
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
            target_regex: None,
            exclude_modules: Vec::new(),
            exclude_regex: None,
            layers_to_transform: None,
            layers_pattern: Vec::new(),
            rank_pattern: Vec::new(),
            alpha_pattern: Vec::new(),
            lora_bias: false,
            bias: Bias::None,
            modules_to_save: Vec::new(),
        }
    }
}

impl LoraConfig {
    /// `lora_alpha / r`, or `lora_alpha / √r` with `use_rslora` (PEFT `LoraLayer.update_layer`).
    pub fn scaling(&self) -> f64 {
        self.scaling_of(self.r, self.lora_alpha)
    }

    /// The scaling of rank `r` and `lora_alpha`.
    fn scaling_of(&self, r: usize, lora_alpha: f64) -> f64 {
        if self.use_rslora {
            lora_alpha / (r as f64).sqrt()
        } else {
            lora_alpha / r as f64
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
        if self.target_modules.is_empty() && self.target_regex.is_none() {
            return Err(Error::Adapter("`target_modules` is empty".into()));
        }
        if self.lora_bias && self.use_dora {
            return Err(Error::Adapter(
                "`lora_bias` is not supported for DoRA (as in PEFT)".into(),
            ));
        }
        if self.rank_pattern.iter().any(|(_, r)| *r == 0) {
            return Err(Error::Adapter(
                "`rank_pattern`: every rank must be >= 1".into(),
            ));
        }
        if self
            .alpha_pattern
            .iter()
            .any(|(_, a)| !(a.is_finite() && *a > 0.0))
        {
            return Err(Error::Adapter(
                "`alpha_pattern`: every alpha must be > 0".into(),
            ));
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

/// A regular expression matched as Python's `re.fullmatch`.
fn full_regex(pattern: &str, field: &str) -> Result<regex::Regex> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        Error::Adapter(format!(
            "`{field}` is not a regular expression lorabert can use: {e}"
        ))
    })
}

/// The index of the encoder layer in module key `key` as PEFT finds it for
/// `layers_to_transform`: the number after `.<pattern>.` (any name without patterns).
fn layer_index(key: &str, patterns: &[String]) -> Option<usize> {
    let regexes: Vec<String> = if patterns.is_empty() {
        vec![r"^.*?\.[^.]*\.(\d+)\.".into()]
    } else {
        patterns
            .iter()
            .map(|p| format!(r"^.*?\.{p}\.(\d+)\."))
            .collect()
    };
    regexes.iter().find_map(|r| {
        regex::Regex::new(r)
            .ok()?
            .captures(key)?
            .get(1)?
            .as_str()
            .parse()
            .ok()
    })
}

/// The value of the first pattern (in order) matching `key` as PEFT's `get_pattern_key`
/// (`(.*\.)?(pattern)$`).
fn pattern_value<T: Copy>(patterns: &[(String, T)], key: &str, field: &str) -> Result<Option<T>> {
    for (p, v) in patterns {
        let re = regex::Regex::new(&format!(r"^(?:.*\.)?(?:{p})$")).map_err(|e| {
            Error::Adapter(format!(
                "`{field}` key `{p}` is not a regular expression: {e}"
            ))
        })?;
        if re.is_match(key) {
            return Ok(Some(*v));
        }
    }
    Ok(None)
}

/// The modules of `bert` an adapter of `cfg` goes on, in model order, with their rank and
/// `lora_alpha`, as PEFT's `check_target_module_exists` and `get_pattern_key` decide them.
/// Module names are matched as `key_prefix` + the Hugging Face name (`bert.` for adapters made
/// on `BertFor...` models, whose modules PEFT names so).
///
/// # Errors
/// [`Error::Adapter`] when a listed target selects no module (naming it and listing valid
/// names), or a regular expression is not one.
pub fn select_targets(bert: &Bert, cfg: &LoraConfig, key_prefix: &str) -> Result<Vec<Target>> {
    let targets = cfg.expanded_targets();
    let mut names = Vec::new();
    bert.visit_linears(&mut |name, _| names.push(name.to_string()));
    for t in &targets {
        if !names
            .iter()
            .any(|n| matches_target(&format!("{key_prefix}{n}"), t))
        {
            return Err(Error::Adapter(format!(
                "target module `{t}` matches no module of the model; valid names include \
                 query, key, value, attention.output.dense, intermediate.dense, output.dense, \
                 dense, all-linear, or a full name such as encoder.layer.0.attention.self.query"
            )));
        }
    }
    let target_re = cfg
        .target_regex
        .as_deref()
        .map(|p| full_regex(p, "target_modules"))
        .transpose()?;
    let exclude_re = cfg
        .exclude_regex
        .as_deref()
        .map(|p| full_regex(p, "exclude_modules"))
        .transpose()?;
    let all_linear = cfg.target_modules.iter().any(|t| t == "all-linear");
    let mut out = Vec::new();
    for name in names {
        let key = format!("{key_prefix}{name}");
        // PEFT never puts adapters on modules it saves whole (`(^|.*\.)m($|\..*)`).
        let saved_whole = cfg.modules_to_save.iter().any(|m| {
            key == *m
                || key.starts_with(&format!("{m}."))
                || key.contains(&format!(".{m}."))
                || key.ends_with(&format!(".{m}"))
        });
        let excluded = saved_whole
            || exclude_re.as_ref().is_some_and(|r| r.is_match(&key))
            || cfg.exclude_modules.iter().any(|e| matches_target(&key, e));
        if excluded {
            continue;
        }
        let selected = match &target_re {
            Some(r) => r.is_match(&key),
            None => {
                // `all-linear` never selects the pooler.
                let listed = cfg
                    .target_modules
                    .iter()
                    .any(|t| t != "all-linear" && matches_target(&key, t))
                    || (all_linear && !name.starts_with("pooler"));
                listed
                    && cfg.layers_to_transform.as_ref().is_none_or(|layers| {
                        layers.is_empty()
                            || layer_index(&key, &cfg.layers_pattern)
                                .is_some_and(|i| layers.contains(&i))
                    })
            }
        };
        if !selected {
            continue;
        }
        let r = pattern_value(&cfg.rank_pattern, &key, "rank_pattern")?.unwrap_or(cfg.r);
        let lora_alpha =
            pattern_value(&cfg.alpha_pattern, &key, "alpha_pattern")?.unwrap_or(cfg.lora_alpha);
        out.push(Target {
            scaling: cfg.scaling_of(r, lora_alpha),
            name,
            r,
            lora_alpha,
        });
    }
    Ok(out)
}

/// Attaches freshly initialised adapters (A Kaiming-uniform, B = 0, DoRA m = ‖W‖, `lora_B`'s
/// bias 0 with `lora_bias`) to every module `cfg` selects, each with its rank; a module that
/// already has an adapter (loaded from a file: `train --init-adapter`) keeps it, as PEFT keeps
/// a selected module's no-op initialisation where the file has none. Random draws come from
/// `rng` ([`crate::model::init::InitRng`]), in module order.
///
/// # Errors
/// [`Error::Adapter`] for an invalid config, a target that matches nothing, or `bias` other
/// than `none` (training base biases is not supported).
pub fn apply_adapters(
    bert: Bert,
    cfg: &LoraConfig,
    rng: &mut crate::model::init::InitRng,
    device: &Device,
) -> Result<Bert> {
    cfg.validate()?;
    if cfg.bias != Bias::None {
        return Err(Error::Adapter(format!(
            "`bias: {}`: training the base model's biases is not supported (load such adapters, or train with bias none)",
            cfg.bias.name()
        )));
    }
    let selected = select_targets(&bert, cfg, "")?;
    bert.map_linears(&mut |name, lin| {
        let Some(t) = selected.iter().find(|t| t.name == name) else {
            return Ok(lin);
        };
        if lin.adapter.is_some() {
            return Ok(lin);
        }
        let (_, d_out) = lin.dims();
        let lin = lin.with_adapter(cfg.kind(), t.r, t.scaling, cfg.lora_dropout, rng, device);
        Ok(if cfg.lora_bias {
            lin.with_lora_bias(burn::tensor::Tensor::zeros([d_out], device))
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
