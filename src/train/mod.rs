//! Training: the run configuration ([`config`]), the trainer's step with AdamW, linear
//! warm-up and decay, global gradient-norm clipping and f16 loss scaling ([`trainer`]), dev
//! evaluation ([`evaluate`]), predictions for given texts ([`infer`]), the one run path of both drivers ([`job`]) and its epoch loop
//! ([`run`]), the results record ([`results`]), checkpoint files ([`artifacts`]) and exports
//! for transformers, PEFT and sentence-transformers ([`export`]), resume
//! checkpoints ([`resume`]) and memory estimates ([`memory`]). Read-backs are `async` so the
//! same loop runs in the browser; native drivers block on it with a small executor.

pub mod artifacts;
pub mod class_weights;
pub mod config;
pub mod entities;
pub mod evaluate;
pub mod export;
pub mod infer;
pub mod job;
pub mod log;
pub mod memory;
pub mod merged;
mod plan;
pub mod results;
pub mod resume;
pub mod run;
pub mod texts;
pub mod trainer;

pub use config::{Controls, Precision, TrainConfig, ValidConfig, resolve_precision};
pub use evaluate::{DevMetrics, Predictions, evaluate, model_device, predict};
pub use job::Job;
pub use results::{EpochRecord, RunResults};
pub use trainer::{
    LossScaler, ParamCounts, StepStats, Trainer, build_model, count_params, lr_at, step_seed,
};
