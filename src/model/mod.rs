//! BERT: configuration, checkpoint loading, the encoder and its tokenizer.

pub mod bert;
pub mod config;
pub mod dropout;
pub mod tokenizer;
pub mod weights;

pub use bert::{Bert, into_f16_storage};
pub use config::BertConfig;
pub use tokenizer::{BertTokenizer, Encoded};
pub use weights::Checkpoint;

use burn::tensor::Device;

use crate::error::Result;

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
