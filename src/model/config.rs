//! Hugging Face `BertConfig` (`config.json`), the fields lorabert uses.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The subset of Hugging Face's `BertConfig` that defines the encoder's shape and numerics.
///
/// Source: `transformers.models.bert.configuration_bert.BertConfig`; field names and defaults match
/// it so a `config.json` from any BERT checkpoint parses unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size (rows of `embeddings.word_embeddings`).
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Hidden size `H`.
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    /// Number of encoder layers.
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    /// Number of attention heads; must divide `hidden_size`.
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    /// Feed-forward inner size.
    #[serde(default = "d_inter")]
    pub intermediate_size: usize,
    /// Feed-forward activation; only `gelu` (exact, erf) is supported.
    #[serde(default = "d_act")]
    pub hidden_act: String,
    /// Dropout on embeddings and sub-layer outputs.
    #[serde(default = "d_drop")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "d_drop")]
    pub attention_probs_dropout_prob: f64,
    /// Number of learned positions.
    #[serde(default = "d_pos")]
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[serde(default = "d_types")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: usize,
    /// Only `absolute` is supported.
    #[serde(default = "d_pos_type")]
    pub position_embedding_type: String,
}

fn d_vocab() -> usize {
    30522
}
fn d_hidden() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_inter() -> usize {
    3072
}
fn d_act() -> String {
    "gelu".into()
}
fn d_drop() -> f64 {
    0.1
}
fn d_pos() -> usize {
    512
}
fn d_types() -> usize {
    2
}
fn d_eps() -> f64 {
    1e-12
}
fn d_pos_type() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Parses and validates a `config.json`.
    ///
    /// `source_name` (usually the file path) is quoted in errors.
    ///
    /// # Errors
    /// [`Error::Config`] when the JSON is malformed, `model_type` names another architecture than
    /// `bert`, a size is zero, `hidden_size` does not divide
    /// by `num_attention_heads`, or the activation / position-embedding type is unsupported.
    pub fn from_json(text: &str, source_name: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::config(source_name, format!("invalid config.json: {e}")))?;
        // Other architectures' files parse here too (their unknown fields are ignored and the
        // BERT sizes default), so the architecture is checked first.
        if let Some(t) = value.get("model_type").and_then(|t| t.as_str())
            && t != "bert"
        {
            return Err(Error::config(
                source_name,
                format!(
                    "model_type `{t}` is not BERT: lorabert fine-tunes BERT-architecture checkpoints (model_type `bert`, e.g. all-MiniLM-L6-v2, bge-small-en-v1.5, e5-small-v2, bert-base-uncased)"
                ),
            ));
        }
        let cfg: BertConfig = serde_json::from_value(value)
            .map_err(|e| Error::config(source_name, format!("invalid config.json: {e}")))?;
        cfg.validate(source_name)?;
        Ok(cfg)
    }

    /// Checks the invariants the model relies on.
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending field.
    pub fn validate(&self, source_name: &str) -> Result<()> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (name, v) in sizes {
            if v == 0 {
                return Err(Error::config(source_name, format!("`{name}` must be > 0")));
            }
            if v > 1 << 24 {
                return Err(Error::config(
                    source_name,
                    format!("`{name}` = {v} is implausibly large"),
                ));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(
                source_name,
                format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(Error::config(
                source_name,
                format!(
                    "hidden_act `{}` is not supported (only `gelu`, exact erf GELU)",
                    self.hidden_act
                ),
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(Error::config(
                source_name,
                format!(
                    "position_embedding_type `{}` is not supported (only `absolute`)",
                    self.position_embedding_type
                ),
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::config(
                    source_name,
                    format!("`{name}` = {p} must be in [0, 1)"),
                ));
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(Error::config(source_name, "`layer_norm_eps` must be > 0"));
        }
        let params = self.encoder_params();
        if params > 1 << 36 {
            return Err(Error::config(
                source_name,
                format!("{params} parameters is implausibly large for a BERT encoder"),
            ));
        }
        if self.pad_token_id >= self.vocab_size {
            return Err(Error::config(
                source_name,
                "`pad_token_id` must be < vocab_size",
            ));
        }
        Ok(())
    }

    /// Parameters of the encoder described by this configuration (embeddings, layers; no
    /// pooler), e.g. 22,565,376 for all-MiniLM-L6-v2.
    pub fn encoder_params(&self) -> u64 {
        let (h, i, l) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.num_hidden_layers as u64,
        );
        let emb = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) as u64
            * h
            + 2 * h;
        let layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h;
        emb + l * layer
    }

    /// Size of one attention head, `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// A tiny configuration for tests: `hidden`, `layers`, `heads`, intermediate `4 * hidden`.
    pub fn tiny(vocab_size: usize, hidden: usize, layers: usize, heads: usize) -> Self {
        BertConfig {
            vocab_size,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: 4 * hidden,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 128,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: "absolute".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_indivisible_heads() {
        let err = BertConfig::from_json(
            r#"{"hidden_size": 100, "num_attention_heads": 12}"#,
            "cfg.json",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cfg.json"), "{err}");
        assert!(err.contains("not divisible"), "{err}");
    }

    #[test]
    fn parses_defaults() {
        let c = BertConfig::from_json("{}", "x").unwrap();
        assert_eq!(c.hidden_size, 768);
        assert_eq!(c.head_dim(), 64);
    }

    #[test]
    fn minilm_parameter_count() {
        let mut cfg = BertConfig::tiny(30522, 384, 6, 12);
        cfg.max_position_embeddings = 512;
        cfg.intermediate_size = 1536;
        // all-MiniLM-L6-v2 holds 22,713,216 parameters, 147,840 of them in its pooler.
        assert_eq!(cfg.encoder_params(), 22_713_216 - 147_840);
    }

    #[test]
    fn names_another_architecture() {
        // DistilBERT's config.json (its fields, none of BERT's), as distilbert-base-uncased has it.
        let distil = r#"{"model_type": "distilbert", "dim": 768, "n_layers": 6, "n_heads": 12}"#;
        let err = BertConfig::from_json(distil, "m/config.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("m/config.json: model_type `distilbert` is not BERT"),
            "{err}"
        );
        let bert = r#"{"model_type": "bert", "hidden_size": 384, "num_attention_heads": 12}"#;
        assert_eq!(BertConfig::from_json(bert, "x").unwrap().hidden_size, 384);
    }

    #[test]
    fn rejects_garbage() {
        let err = BertConfig::from_json("{not json", "bad.json").unwrap_err();
        assert!(err.to_string().starts_with("bad.json: invalid config.json"));
    }
}
