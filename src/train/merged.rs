//! What `lorabert merge` records in the folder it writes (`lorabert_merged.json`), and the check
//! that keeps an adapter from being applied twice: to a folder that already holds it merged,
//! or to a merge of its own base with another adapter (the trap of peft#1355). The check
//! compares what the files say; the drivers read the files and offer `--force`.

use serde::{Deserialize, Serialize};

use crate::data::sha256_hex;
use crate::error::{Error, Result};

/// The marker's file name in a merged folder.
pub const MARKER: &str = "lorabert_merged.json";

/// What a merged folder was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedFrom {
    /// The base model folder the adapter was merged into (as given to `merge`).
    pub base_model: String,
    /// SHA-256 (hex) of the base's `model.safetensors` (or its first weight file); empty when
    /// it could not be read.
    pub base_weights_sha256: String,
    /// The checkpoint (or PEFT folder) whose adapter was merged.
    pub checkpoint: String,
    /// SHA-256 (hex) of its `adapter_model.safetensors`.
    pub adapter_sha256: String,
}

impl MergedFrom {
    /// The marker for merging the adapter `adapter_bytes` of `checkpoint` into `base_model`.
    pub fn new(
        base_model: &str,
        base_weights: Option<&[u8]>,
        checkpoint: &str,
        adapter_bytes: &[u8],
    ) -> Self {
        MergedFrom {
            base_model: base_model.to_string(),
            base_weights_sha256: base_weights.map(sha256_hex).unwrap_or_default(),
            checkpoint: checkpoint.to_string(),
            adapter_sha256: sha256_hex(adapter_bytes),
        }
    }

    /// Parses a marker file.
    ///
    /// # Errors
    /// [`Error::Config`] naming [`MARKER`] when it is not the JSON `merge` writes.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::config(MARKER, e.to_string()))
    }
}

/// Why applying the adapter (`adapter_bytes`, whose `adapter_config.json` names
/// `adapter_base`, its `base_model_name_or_path`) to the model folder `model` that holds the
/// marker `merged` would apply an adapter twice, or `None` where it would not:
/// - the folder is the merge of this very adapter (same SHA-256): its weight change is in the
///   weights already, and applying it again doubles it;
/// - the adapter was trained on the base the folder was merged from (`same_base` says whether
///   `adapter_base` names that base; the caller resolves paths): the folder holds another
///   adapter's change too.
pub fn applied_twice(
    model: &str,
    merged: &MergedFrom,
    adapter_bytes: &[u8],
    same_base: bool,
) -> Option<String> {
    if sha256_hex(adapter_bytes) == merged.adapter_sha256 {
        return Some(format!(
            "{model} already holds this adapter, merged from {} ({MARKER}): applying it again \
             doubles its weight change. Use the base model with the adapter (--model {}), or \
             the merged folder alone (--checkpoint {model}); --force applies it anyway",
            merged.checkpoint, merged.base_model
        ));
    }
    same_base.then(|| {
        format!(
            "the adapter was trained on {}, but {model} is that base with the adapter of {} \
             merged in ({MARKER}): both weight changes would apply. Use --model {}; --force \
             applies it anyway",
            merged.base_model, merged.checkpoint, merged.base_model
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_adapter_or_one_on_the_same_base_is_refused() {
        let m = MergedFrom::new("base", Some(b"weights"), "runs/a", b"adapter A");
        let back = MergedFrom::from_json(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        let twice = applied_twice("merged", &m, b"adapter A", false).unwrap();
        assert!(
            twice.contains("already holds this adapter, merged from runs/a"),
            "{twice}"
        );
        let other = applied_twice("merged", &m, b"adapter B", true).unwrap();
        assert!(other.contains("trained on base"), "{other}");
        // Another adapter trained on the merged folder itself is fine.
        assert_eq!(applied_twice("merged", &m, b"adapter B", false), None);
    }
}
