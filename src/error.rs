//! The one error type of the core. Every variant names what was wrong and where (file, line,
//! tensor, module), so a user can act on it without a backtrace.

use std::fmt;

/// Errors returned by the lorabert core. Messages name the file, line, tensor or module at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file (`config.json`, `adapter_config.json`, a run config) is invalid.
    #[error("{source_name}: {message}")]
    Config {
        /// File (or other source) the configuration came from.
        source_name: String,
        /// What is wrong with it.
        message: String,
    },
    /// A tensor expected in a checkpoint is absent.
    #[error("{source_name}: tensor `{tensor}` is missing{hint}")]
    MissingTensor {
        /// Checkpoint the tensor was looked up in.
        source_name: String,
        /// Expected tensor name.
        tensor: String,
        /// Extra context (e.g. which prefixes were tried).
        hint: String,
    },
    /// A tensor in a checkpoint has a different shape or dtype than the model needs.
    #[error("{source_name}: tensor `{tensor}` has {found}, expected {expected}")]
    BadTensor {
        /// Checkpoint the tensor came from.
        source_name: String,
        /// Tensor name.
        tensor: String,
        /// What was found (shape and dtype).
        found: String,
        /// What was expected.
        expected: String,
    },
    /// A safetensors file could not be parsed (truncated, bad header, ...).
    #[error("{source_name}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        source_name: String,
        /// Parser message.
        message: String,
    },
    /// A data file has a malformed row or header.
    #[error("{source_name} line {line}: {message}")]
    Data {
        /// The data file.
        source_name: String,
        /// 1-based line number (the header is line 1).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer {source_name}: {message}")]
    Tokenizer {
        /// The tokenizer file.
        source_name: String,
        /// What failed.
        message: String,
    },
    /// An adapter configuration or adapter weights do not fit the model.
    #[error("adapter: {0}")]
    Adapter(String),
    /// A loss or gradient became NaN or infinite.
    #[error("non-finite {what} at step {step}{}", match last_checkpoint_step {
        Some(s) => format!("; the last good checkpoint is from step {s}"),
        None => "; no checkpoint was saved before it".to_string(),
    })]
    NonFinite {
        /// 1-based optimiser step.
        step: usize,
        /// `loss` or `gradient norm`, with its value.
        what: String,
        /// Step of the last resume checkpoint saved before, if any.
        last_checkpoint_step: Option<usize>,
    },
    /// A file could not be read or written (native drivers; the core itself touches no files).
    #[error("cannot {action} {path}: {io}")]
    Io {
        /// What was being done: `read`, `write`, `create`, ...
        action: &'static str,
        /// The file or folder.
        path: String,
        /// The operating system's error.
        io: std::io::Error,
    },
    /// A URL or a picked file could not be fetched or read (the page's downloads and files).
    #[error("cannot load {source_name}: {message}")]
    Load {
        /// The URL or file name.
        source_name: String,
        /// What failed (HTTP status, browser error).
        message: String,
    },
    /// Reading a tensor back from the device to the host failed (e.g. a lost GPU device).
    #[error("device read-back failed: {0}")]
    ReadBack(String),
    /// Anything else the core rejects (bad option values, empty datasets, ...).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub fn config(source_name: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Config {
            source_name: source_name.to_string(),
            message: message.to_string(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(action: &'static str, path: impl fmt::Display, io: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_string(),
            io,
        }
    }

    /// Shorthand for [`Error::Load`].
    pub fn load(source_name: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Load {
            source_name: source_name.to_string(),
            message: message.to_string(),
        }
    }

    /// Shorthand for [`Error::Data`].
    pub fn data(source_name: impl fmt::Display, line: u64, message: impl fmt::Display) -> Self {
        Error::Data {
            source_name: source_name.to_string(),
            line,
            message: message.to_string(),
        }
    }
}

/// Result alias of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message a person sees when a panic's text (`PanicHookInfo`'s display: location, then
/// message) or an error's text says the GPU device failed; `None` for anything else.
///
/// A device fails when WebGPU rejects a command (a validation error, which cubecl-wgpu raises as
/// `wgpu error: ...` from its `device_poison.rs`) or loses the device (a driver reset, a
/// timeout; cubecl then reports the device as poisoned at every later use). Neither can be
/// recovered on the same page: the message says so, names the first line of what the device
/// reported, and says what is kept.
pub fn device_failure_message(panic_text: &str) -> Option<String> {
    // Matched without case (`DevicePoisoned`, `The device is poisoned`).
    // A failed read-back ([`Error::ReadBack`]) on a lost device says only "An error happened
    // during execution": it counts as a device failure too.
    const SIGNS: [&str; 6] = [
        "device_poison.rs",
        "wgpu error:",
        "poisoned",
        "device was lost",
        "invalid commandbuffer",
        "device read-back failed",
    ];
    let lower = panic_text.to_lowercase();
    if !SIGNS.iter().any(|s| lower.contains(s)) {
        return None;
    }
    // The message starts after the location line `panicked at FILE:LINE:COL:`.
    let body = match panic_text.split_once(":\n") {
        Some((head, rest)) if head.contains("panicked at") => rest,
        _ => panic_text,
    };
    let reported = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no detail")
        .trim_start_matches("wgpu error:")
        .trim();
    Some(format!(
        "The GPU device failed ({reported}). This page cannot use it again: reload the page to \
         train again. Finished runs stay in the results table, and Download adapter still saves \
         the last finished run's checkpoint."
    ))
}

#[cfg(test)]
mod tests {
    use super::device_failure_message;

    #[test]
    fn device_failures_get_a_plain_message() {
        // What Chromium showed for the aliased DoRA binding (issue 33).
        let dawn = "panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/\
                    cubecl-wgpu-0.11.3/src/compute/device_poison.rs:42:17:\nwgpu error: \
                    Validation Error\n\nCaused by:\n  In a CommandEncoder\n    [Invalid \
                    CommandBuffer \"CubeCL Tasks Encoder\"] is invalid due to a previous error.";
        let m = device_failure_message(dawn).expect("a device failure");
        assert!(
            m.starts_with("The GPU device failed (Validation Error)."),
            "{m}"
        );
        assert!(m.contains("reload the page"), "{m}");
        assert!(!m.contains("panicked") && !m.contains(".rs:"), "{m}");
        let lost = "panicked at src/web/observer.rs:10:5:\ncalled `Result::unwrap()` on an \
                    `Err` value: DevicePoisoned(\"Destroyed: device destroyed\")";
        assert!(device_failure_message(lost).is_some());
        // A read-back on a lost device is an error, not a panic.
        // What Chromium gives when the device is destroyed mid-run (tests/e2e/e2e.mjs).
        let read = "device read-back failed: An error happened during execution";
        assert!(device_failure_message(read).is_some());
        let read = "device read-back failed: DevicePoisoned(The device is poisoned)";
        let m = device_failure_message(read).expect("a device failure");
        assert!(
            m.contains("(device read-back failed: DevicePoisoned"),
            "{m}"
        );
        // Other panics keep their own text.
        let other = "panicked at src/tasks/mod.rs:3:1:\nindex out of bounds";
        assert_eq!(device_failure_message(other), None);
    }
}
