//! # lorabert
//!
//! Parameter-efficient fine-tuning (LoRA, DoRA) of small BERT encoders on Burn, for the minBERT
//! multitask setup (SST-5 sentiment, Quora paraphrase, STS-B similarity).
//!
//! The core (everything but the `cli` and `web` drivers) does no file-system, thread or process
//! work: it takes bytes and returns bytes and records, so the same code serves the native CLI
//! and the browser build.
//!
//! The modules are layers; each imports only from itself and the layers below it (checked by
//! `tests/layering.rs`; docs/architecture.md says what each holds):
//!
//! | layer | module |
//! |---|---|
//! | 8 (drivers; never import each other) | [`cli`] (native), `web` (wasm32) |
//! | 7 | [`report`] |
//! | 6 | [`train`] |
//! | 5 | [`tasks`] |
//! | 4 | [`adapter`] |
//! | 3 | [`data`] |
//! | 2 | [`model`] |
//! | 1 | [`kernels`] |
//! | 0 | [`error`] |

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
