//! TensorBoard event files (`train --report-to tensorboard`): every `metrics.jsonl` line as
//! scalars, tagged as transformers' `TensorBoardCallback` tags them (`train/loss`,
//! `train/learning_rate`, `train/grad_norm`, `eval/<metric>`), in `OUT/tb/` for
//! `tensorboard --logdir`. The format is TensorFlow's: TFRecord frames (length, masked CRC32C of
//! the length, an `Event` protobuf, masked CRC32C of the data) after a `brain.Event:2` version
//! event; the protobuf messages are declared here with `prost`, the checksum is `crc32c`'s.
//! `tests/controls.rs` reads the files back with TensorBoard's own `EventAccumulator`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use prost::Message;

use crate::train::log::LogLine;

/// `tensorflow.Event` (the fields written here).
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    wall_time: f64,
    /// The optimiser step.
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

/// `Event.what`: the file's version (first event) or a summary.
#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a `simple_value` scalar.
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    /// In the `value` oneof, so that a 0 is written too (a plain proto3 field would leave it
    /// out, and TensorBoard would drop the point).
    #[prost(oneof = "ValueKind", tags = "2")]
    value: Option<ValueKind>,
}

/// `Summary.Value.value`: the scalar.
#[derive(Clone, PartialEq, prost::Oneof)]
enum ValueKind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
}

/// TFRecord's masked CRC32C.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord frame of `event`.
fn frame(event: &Event) -> Vec<u8> {
    let data = event.encode_to_vec();
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(&masked_crc(&data).to_le_bytes());
    out
}

/// The scalars of a `metrics.jsonl` line, tagged as transformers' `TensorBoardCallback`.
pub fn scalars(line: &LogLine) -> Vec<(String, f64)> {
    match line {
        LogLine::Train(t) => vec![
            ("train/loss".into(), t.loss),
            ("train/learning_rate".into(), t.learning_rate),
            ("train/grad_norm".into(), t.grad_norm),
            ("train/epoch".into(), t.epoch),
            ("train/examples_per_second".into(), t.examples_per_second),
        ],
        LogLine::Eval(e) => {
            let mut v: Vec<(String, f64)> = e
                .metrics
                .iter()
                .map(|(k, &x)| (format!("eval/{}", k.trim_start_matches("eval_")), x))
                .collect();
            v.push(("eval/seconds".into(), e.eval_seconds));
            v
        }
    }
}

/// An event file being written: each line is appended and flushed as it comes.
pub struct EventWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl EventWriter {
    /// A new event file in `dir` (created if needed), named as TensorFlow names them
    /// (`events.out.tfevents.<seconds>.<host>.<pid>`), starting with the version event. A
    /// resumed run starts a new file beside the earlier ones; TensorBoard reads them in order.
    ///
    /// # Errors
    /// When the folder or file cannot be created or written (naming it).
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let now = wall_time();
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "lorabert".into());
        let name = format!(
            "events.out.tfevents.{}.{host}.{}",
            now as u64,
            std::process::id()
        );
        let path = dir.join(name);
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = EventWriter { path, file };
        w.write(&Event {
            wall_time: now,
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(w)
    }

    /// Appends the scalars of `line` at its step.
    ///
    /// # Errors
    /// When the file cannot be written (naming it).
    pub fn log(&mut self, line: &LogLine) -> Result<()> {
        let value = scalars(line)
            .into_iter()
            .map(|(tag, v)| SummaryValue {
                tag,
                value: Some(ValueKind::SimpleValue(v as f32)),
            })
            .collect();
        self.write(&Event {
            wall_time: wall_time(),
            step: line.step() as i64,
            what: Some(What::Summary(Summary { value })),
        })
    }

    fn write(&mut self, e: &Event) -> Result<()> {
        self.file
            .write_all(&frame(e))
            .and_then(|()| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_is_tensorflows() {
        // crc32c("123456789") = 0xE3069283 (RFC 3720's check value); TensorFlow's
        // `crc32c::Mask` is ((crc >> 15) | (crc << 17)) + 0xa282ead8 = 0xC78AB0E5 (worked out
        // by hand, modulo 2^32).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
    }
}
