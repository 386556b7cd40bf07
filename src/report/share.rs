//! The share-link format: a run table packed into a URL fragment, `#v1.<base64url(JSON)>`.
//! One module for both writers (the native `report`, the page) and the page's reader; decoding
//! validates everything, so a hostile link gives an error, never a panic or a huge allocation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Format version written into every link.
pub const SHARE_VERSION: u32 = 1;
/// Longest fragment accepted by [`decode`], in bytes.
pub const MAX_FRAGMENT_BYTES: usize = 32 * 1024;
/// Most rows a link may carry.
pub const MAX_ROWS: usize = 512;
const MAX_STR: usize = 128;

/// One result row in a link (short field names keep links compact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRow {
    /// Task (`sst`, `para`, `sts`, `multi`).
    #[serde(rename = "k")]
    pub task: String,
    /// Adapter (`lora`, `dora`, `none`).
    #[serde(rename = "a")]
    pub adapter: String,
    /// Target set (`attention`, `all-linear`, or a list).
    #[serde(rename = "t")]
    pub targets: String,
    /// Rank.
    pub r: u32,
    /// Precision (`f32`, `f16`).
    #[serde(rename = "p")]
    pub precision: String,
    /// Seed.
    #[serde(rename = "d")]
    pub seed: u64,
    /// Score: overall score, or the task's metric for single-task runs.
    #[serde(rename = "s")]
    pub score: f64,
    /// Seconds per epoch.
    #[serde(rename = "e")]
    pub seconds_per_epoch: f64,
    /// Peak memory in bytes.
    #[serde(rename = "m")]
    pub peak_memory_bytes: u64,
    /// Trainable parameters.
    #[serde(rename = "n")]
    pub trainable_params: u64,
    /// The metric `score` is (own data: its `metric_for_best_model`; absent for the minBERT
    /// tasks, whose metric the task names).
    #[serde(rename = "q", default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// How the run was configured beyond the columns above, so a re-run reproduces it (absent
    /// in links made before it was carried, and in the native report's).
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ShareRunConfig>,
}

/// The settings of a run that a link carries for "Re-run" (never any of the data): what the
/// page's form sets besides the row's task, adapter, targets, `r` and precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRunConfig {
    /// `lora_alpha`.
    pub alpha: f64,
    /// Epochs.
    pub epochs: u32,
    /// Step budget (`max_steps`), if one was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// Batch size.
    pub batch: u32,
    /// Maximum sequence length, tokens.
    pub max_len: u32,
    /// Learning rate.
    pub lr: f64,
    /// Training rows used (the first N), if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_train: Option<u64>,
    /// Validation rows used (the first N), if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_dev: Option<u64>,
    /// The minBERT data folder's URL (absent for own data, whose file is never carried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_url: Option<String>,
    /// Evaluation every N steps (`eval_steps`), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_steps: Option<u64>,
    /// Early-stopping patience, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<u64>,
    /// LoRA+'s `loraplus_lr_ratio`, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loraplus: Option<f64>,
}

impl ShareRunConfig {
    /// Checks that every value is in a range a run can take.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Invalid(m.to_string()));
        if !(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha <= 1e6) {
            return bad("lora_alpha is not in (0, 1e6]");
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return bad("lr is not in (0, 10]");
        }
        if !(1..=1000).contains(&self.epochs) {
            return bad("epochs is not in 1..=1000");
        }
        if !(1..=65536).contains(&self.batch) {
            return bad("batch is not in 1..=65536");
        }
        if !(2..=65536).contains(&self.max_len) {
            return bad("max_len is not in 2..=65536");
        }
        if self.max_steps == Some(0) {
            return bad("max_steps is 0");
        }
        if self.eval_steps == Some(0) || self.patience == Some(0) {
            return bad("eval_steps or patience is 0");
        }
        if self
            .loraplus
            .is_some_and(|r| !(r.is_finite() && r > 0.0 && r <= 1e6))
        {
            return bad("loraplus is not in (0, 1e6]");
        }
        if let Some(u) = &self.data_url
            && (u.len() > MAX_STR || u.chars().any(|c| c.is_control()))
        {
            return bad("data_url is too long or has control characters");
        }
        Ok(())
    }
}

/// Own data in a share link: the file's name and row counts, never its contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedData {
    /// The training file's name (without its folder).
    pub file: String,
    /// The task kind's name ([`crate::tasks::own::TaskKind::name`]): `classification`,
    /// `regression`, `multi-label`, `embedding`, `token-classification`.
    pub kind: String,
    /// Training rows.
    pub train_rows: u64,
    /// Validation rows.
    pub validation_rows: u64,
}

/// What a link carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharePayload {
    /// [`SHARE_VERSION`].
    pub v: u32,
    /// Model name.
    #[serde(rename = "model")]
    pub model: String,
    /// Result rows.
    pub rows: Vec<ShareRow>,
    /// Own data: which file, what kind, how many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<SharedData>,
    /// The model folder's URL, where it was loaded from one (never a local file), for
    /// "Re-run".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_url: Option<String>,
}

/// Encodes `payload` as a fragment (without `#`): `v1.<base64url(JSON)>`.
///
/// # Errors
/// [`Error::Invalid`] when the payload itself is invalid (see [`validate`]) or too large.
pub fn encode(payload: &SharePayload) -> Result<String> {
    validate(payload)?;
    let json = serde_json::to_vec(payload).map_err(|e| Error::Invalid(e.to_string()))?;
    let s = format!("v{}.{}", payload.v, URL_SAFE_NO_PAD.encode(json));
    if s.len() > MAX_FRAGMENT_BYTES {
        return Err(Error::Invalid(format!(
            "share link would be {} bytes (limit {MAX_FRAGMENT_BYTES}); share fewer rows",
            s.len()
        )));
    }
    Ok(s)
}

/// A full link: `base_url#fragment`.
///
/// # Errors
/// As [`encode`].
pub fn link(base_url: &str, payload: &SharePayload) -> Result<String> {
    Ok(format!(
        "{}#{}",
        base_url.trim_end_matches('#'),
        encode(payload)?
    ))
}

/// Decodes a fragment (with or without `#`, or a whole URL) and validates it.
///
/// # Errors
/// [`Error::Invalid`] naming the problem: too long, unknown version, bad base64 or JSON, or a
/// field out of range.
pub fn decode(fragment: &str) -> Result<SharePayload> {
    let bad = |m: String| Error::Invalid(format!("share link: {m}"));
    let frag = fragment.rsplit_once('#').map_or(fragment, |(_, f)| f);
    if frag.len() > MAX_FRAGMENT_BYTES {
        return Err(bad(format!(
            "{} bytes is over the limit of {MAX_FRAGMENT_BYTES}",
            frag.len()
        )));
    }
    let (ver, body) = frag
        .split_once('.')
        .ok_or_else(|| bad("missing version prefix `v1.`".into()))?;
    if ver != format!("v{SHARE_VERSION}") {
        return Err(bad(format!(
            "version `{ver}` is not supported (expected v{SHARE_VERSION})"
        )));
    }
    let json = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|e| bad(format!("not base64url: {e}")))?;
    let p: SharePayload =
        serde_json::from_slice(&json).map_err(|e| bad(format!("invalid content: {e}")))?;
    validate(&p).map_err(|e| bad(e.to_string()))?;
    Ok(p)
}

/// Checks ranges and sizes.
///
/// # Errors
/// [`Error::Invalid`] naming the field.
pub fn validate(p: &SharePayload) -> Result<()> {
    let bad = |m: String| Err(Error::Invalid(m));
    if p.v != SHARE_VERSION {
        return bad(format!("version {} is not {SHARE_VERSION}", p.v));
    }
    if p.model.len() > MAX_STR {
        return bad("model name too long".into());
    }
    if let Some(u) = &p.model_url
        && (u.len() > MAX_STR || u.chars().any(|c| c.is_control()))
    {
        return bad("model_url is too long or has control characters".into());
    }
    if p.rows.len() > MAX_ROWS {
        return bad(format!("{} rows (limit {MAX_ROWS})", p.rows.len()));
    }
    if let Some(d) = &p.data {
        for (name, s) in [("data file", &d.file), ("data kind", &d.kind)] {
            if s.len() > MAX_STR || s.chars().any(|c| c.is_control()) {
                return bad(format!("{name} is too long or has control characters"));
            }
        }
    }
    for (i, r) in p.rows.iter().enumerate() {
        let metric = r.metric.clone().unwrap_or_default();
        for (name, s) in [
            ("task", &r.task),
            ("adapter", &r.adapter),
            ("targets", &r.targets),
            ("precision", &r.precision),
            ("metric", &metric),
        ] {
            if s.len() > MAX_STR || s.chars().any(|c| c.is_control()) {
                return bad(format!(
                    "row {i}: {name} is too long or has control characters"
                ));
            }
        }
        if !(r.score.is_finite() && (-1.0..=1.0).contains(&r.score)) {
            return bad(format!("row {i}: score {} is not in [-1, 1]", r.score));
        }
        if !(r.seconds_per_epoch.is_finite() && r.seconds_per_epoch >= 0.0) {
            return bad(format!("row {i}: seconds_per_epoch must be >= 0"));
        }
        if r.r == 0 && r.adapter != "none" || r.r > 65536 {
            return bad(format!("row {i}: rank {} is out of range", r.r));
        }
        if let Some(c) = &r.config {
            c.validate()
                .map_err(|e| Error::Invalid(format!("row {i}: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SharePayload {
        SharePayload {
            v: 1,
            model: "all-MiniLM-L6-v2".into(),
            rows: vec![ShareRow {
                task: "sst".into(),
                adapter: "dora".into(),
                targets: "all-linear".into(),
                r: 4,
                precision: "f32".into(),
                seed: 42,
                score: 0.4791,
                seconds_per_epoch: 231.5,
                peak_memory_bytes: 300_000_000,
                trainable_params: 43_397,
                metric: None,
                config: Some(ShareRunConfig {
                    alpha: 8.0,
                    epochs: 1,
                    max_steps: Some(12),
                    batch: 8,
                    max_len: 32,
                    lr: 0.01,
                    max_train: Some(96),
                    max_dev: None,
                    data_url: Some("fixtures/data/".into()),
                    eval_steps: Some(6),
                    patience: Some(2),
                    loraplus: Some(16.0),
                }),
            }],
            data: None,
            model_url: Some("https://huggingface.co/org/m/resolve/main/".into()),
        }
    }

    #[test]
    fn round_trip() {
        let l = link("http://127.0.0.1:8080/", &sample()).unwrap();
        assert!(l.starts_with("http://127.0.0.1:8080/#v1."));
        assert_eq!(decode(&l).unwrap(), sample());
    }

    #[test]
    fn rejects_hostile_input() {
        assert!(
            decode("#v2.abc")
                .unwrap_err()
                .to_string()
                .contains("version")
        );
        assert!(
            decode("#v1.!!!")
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
        assert!(
            decode(&"v1.".repeat(20000))
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
        let mut p = sample();
        p.rows[0].score = f64::NAN;
        assert!(encode(&p).is_err());
        let json = br#"{"v":1,"model":"m","rows":[],"extra":1}"#;
        assert!(decode(&format!("v1.{}", URL_SAFE_NO_PAD.encode(json))).is_err());
        let mut p = sample();
        p.rows[0].config.as_mut().unwrap().lr = f64::INFINITY;
        assert!(encode(&p).unwrap_err().to_string().contains("row 0: lr"));
        let mut p = sample();
        p.rows[0].config.as_mut().unwrap().batch = 0;
        assert!(encode(&p).unwrap_err().to_string().contains("batch"));
        // A link made before the settings were carried still decodes.
        let old = br#"{"v":1,"model":"m","rows":[{"k":"sst","a":"lora","t":"all-linear","r":1,"p":"f32","d":42,"s":0.3,"e":1.0,"m":1,"n":1}]}"#;
        let p = decode(&format!("v1.{}", URL_SAFE_NO_PAD.encode(old))).unwrap();
        assert_eq!(p.rows[0].config, None);
        assert_eq!(p.model_url, None);
    }
}
