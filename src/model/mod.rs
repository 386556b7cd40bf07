//! BERT: configuration, checkpoint loading, the encoder, its linear layers with their optional
//! LoRA/DoRA branch ([`lora`]), and its tokenizer.

pub mod bert;
pub mod config;
pub mod dropout;
pub mod init;
pub mod lora;
pub mod tokenizer;
pub mod weights;

pub use bert::{Bert, into_f16_storage};
pub use config::BertConfig;
pub use lora::{AdaptedLinear, AdapterKind, LoraAdapter};
pub use tokenizer::{BertTokenizer, Encoded};
pub use weights::Checkpoint;

use burn::tensor::Device;

use crate::error::Result;

/// A pretrained BERT's description: its name, `config.json` and tokenizer, without its weights
/// (those are read once per encoder built, by [`Pretrained::encoder`], and not kept).
#[derive(Debug, Clone)]
pub struct Pretrained {
    /// Where it came from (a folder or URL), quoted in `results.json` and adapter configs.
    pub name: String,
    /// Its parsed `config.json`.
    pub cfg: BertConfig,
    /// The `config.json` text (saved beside full fine-tuning and merged checkpoints).
    pub config_json: String,
    /// Its tokenizer, truncating to the run's `max_len` tokens.
    pub tokenizer: BertTokenizer,
}

impl Pretrained {
    /// Parses `config.json` and `tokenizer.json` (bytes; `*_source` name the files in
    /// errors) for sequences of at most `max_len` tokens.
    ///
    /// # Errors
    /// [`crate::Error::Config`] for a bad `config.json` or a `max_len` above its
    /// `max_position_embeddings`; [`crate::Error::Tokenizer`] for a bad `tokenizer.json`.
    pub fn from_bytes(
        name: &str,
        config_json: &str,
        config_source: &str,
        tokenizer_json: &[u8],
        tokenizer_source: &str,
        max_len: usize,
    ) -> Result<Self> {
        let cfg = BertConfig::from_json(config_json, config_source)?;
        if max_len > cfg.max_position_embeddings {
            return Err(crate::Error::config(
                config_source,
                format!(
                    "max length {max_len} (--max-len) exceeds max_position_embeddings {}",
                    cfg.max_position_embeddings
                ),
            ));
        }
        Ok(Pretrained {
            name: name.to_string(),
            tokenizer: BertTokenizer::from_bytes(tokenizer_json, tokenizer_source, max_len)?,
            cfg,
            config_json: config_json.to_string(),
        })
    }

    /// The encoder from `model.safetensors` bytes (`source` names the file in errors), on
    /// `device`; see [`load_bert`].
    ///
    /// # Errors
    /// As [`load_bert`].
    pub fn encoder(&self, safetensors: &[u8], source: &str, device: &Device) -> Result<Bert> {
        load_bert(&self.cfg, safetensors, source, device)
    }

    /// The id of the padding token.
    pub fn pad_id(&self) -> u32 {
        self.cfg.pad_token_id as u32
    }
}

/// Parses `model.safetensors` bytes and builds the encoder for `cfg` on `device`.
/// Keys with a `bert.` prefix are accepted; a missing pooler is tolerated.
///
/// # Errors
/// [`crate::Error::Safetensors`] for a malformed file, [`crate::Error::MissingTensor`] /
/// [`crate::Error::BadTensor`] naming the tensor that does not fit.
pub fn load_bert(
    cfg: &BertConfig,
    safetensors: &[u8],
    source_name: &str,
    device: &Device,
) -> Result<Bert> {
    let ck = Checkpoint::parse(
        safetensors,
        source_name,
        &["bert."],
        "embeddings.word_embeddings.weight",
    )?;
    Bert::from_checkpoint(cfg, &ck, device)
}
