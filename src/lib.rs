//! # lorabert
//!
//! Parameter-efficient fine-tuning (LoRA, DoRA) of small BERT encoders on Burn, for the minBERT
//! multitask setup (SST-5 sentiment, Quora paraphrase, STS-B similarity).
//!
//! The core (everything but `cli`) does no file-system, thread or process work: it takes bytes
//! and returns bytes and records, so the same code serves the native CLI and the browser build.

pub mod adapter;
#[cfg(not(target_family = "wasm"))]
pub mod cli;
pub mod data;
pub mod error;
pub mod kernels;
pub mod model;
pub mod report;
pub mod tasks;
pub mod train;
#[cfg(target_family = "wasm")]
pub mod web;

pub use error::{Error, Result};
