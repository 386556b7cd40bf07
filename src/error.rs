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
