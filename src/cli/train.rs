//! `lorabert train`.

mod data_spec;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::args::{
    AdapterArg, EmbeddingArgs, FormatArg, PairArg, PoolingArg, TaskArg, TaskTypeArg, TokenArgs,
};
use super::controls::ControlArgs;
use super::init_adapter::{init_adapter_config, init_adapter_weights, init_heads};
use super::load::{load_model, load_own, load_split};
use super::precision::precision_or_refuse;
use super::run_dir::{ignored_on_resume, refuse_existing_run};
use super::train_run::{Plan, announce, run_job};
use super::{ModelArgs, PrecisionArg, devices, io};
use crate::adapter::LoraConfig;
use crate::model::{BertConfig, Pretrained};
use crate::tasks::minbert::Split;
use crate::tasks::own::DataSummary;
use crate::tasks::{PairEncoding, Pooling, Task, TaskData};
use crate::train::memory::{estimate_training_bytes, largest_batch, sequences_per_example};
use crate::train::resume::{ResumeState, names as resume_names};
use crate::train::{Job, RunResults, TrainConfig, ValidConfig};

/// `lorabert train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub(super) model: ModelArgs,
    /// Folder with the minBERT files (default ../shared/data/minbert).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Task(s) to train: the minBERT presets. With an embedding flag (--loss, --matryoshka-dims,
    /// ...), sts or para trains sentence embeddings on the task's pair files instead of a head
    /// (`--task sts --loss cosent`: scored pairs, score / 5; `--task para --loss mnrl`: the
    /// duplicate pairs, retrieval on the dev file's duplicates).
    #[arg(long, value_enum, default_value_t = TaskArg::Multi)]
    task: TaskArg,
    /// Your own training file instead of a minBERT task. CSV, TSV or JSON Lines with a header:
    /// columns `sentence` or `text` (pairs: `sentence1` + `sentence2`) and `label`, or named
    /// with --text-column, --text-pair-column, --label-column. Token classification: a CoNLL
    /// file (.conll, .txt, .iob, .bio or --format conll: a token per line, its tag in the last
    /// column, a blank line between sentences) or JSON Lines with token and tag lists
    /// (`{"tokens": [...], "ner_tags": [...]}`, as Hugging Face datasets write them).
    #[arg(long, conflicts_with = "task")]
    train_file: Option<PathBuf>,
    /// Validation file for --train-file (same columns); without it --validation-split.
    #[arg(long)]
    validation_file: Option<PathBuf>,
    /// Fraction of --train-file held out for validation when there is no --validation-file
    /// (seeded by --seed; stratified by class for classification) [default: 0.1].
    #[arg(long)]
    validation_split: Option<f64>,
    /// The text column of --train-file (token classification in JSON Lines: the key of the
    /// token lists [default: `tokens`]).
    #[arg(long)]
    text_column: Option<String>,
    /// The second-sentence column of sentence pairs.
    #[arg(long)]
    text_pair_column: Option<String>,
    /// The label column (token classification: in a CoNLL file the tag's column number, 0 for
    /// the word [default: the last]; in JSON Lines the key of the tag lists [default:
    /// `ner_tags`, `tags`, ...]).
    #[arg(long)]
    label_column: Option<String>,
    /// What the label column holds (default: inferred from its values; multi-label when it
    /// holds JSON arrays or a multi-label flag below is given).
    #[arg(long, value_enum)]
    task_type: Option<TaskTypeArg>,
    /// Multi-label: the separator of the labels in one field (`billing,urgent`; GoEmotions'
    /// `3,10` with `,`).
    #[arg(long, value_name = "SEP")]
    label_separator: Option<String>,
    /// Multi-label: one 0/1 column per label, named by the label (`--label-columns a,b,c`).
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    label_columns: Vec<String>,
    /// A file of the label names, one per line, in id order, for labels written as 0-based
    /// ids into it: multi-label (GoEmotions' emotions.txt) and token classification (integer
    /// tags in JSON Lines, as a Hugging Face dataset's `ner_tags` feature names them).
    #[arg(long, value_name = "FILE")]
    label_names: Option<PathBuf>,
    /// Multi-label: a label is predicted when its probability reaches this (in (0, 1))
    /// [default: 0.5].
    #[arg(long, value_name = "P")]
    threshold: Option<f64>,
    /// The files' format (default: from the extension: .csv, .tsv, .jsonl).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// The files have no header row: columns are then named 0, 1, ... (e.g. --text-column 3).
    #[arg(long)]
    no_header: bool,
    /// The metric that picks the best epoch: accuracy, f1 (binary), f1_macro, mcc
    /// (classification; default accuracy); pearson, spearman, mse (regression; default
    /// pearson); f1_micro, f1_macro, precision_micro, recall_micro, subset_accuracy,
    /// hamming_loss (multi-label; default f1_micro); ndcg@10, mrr@10, map@100, recall@1/5/10,
    /// accuracy@1/10 (embedding pairs; default ndcg@10); pearson, spearman (scored embedding
    /// pairs; default spearman); f1, precision, recall, accuracy, f1/<type> (token
    /// classification, seqeval's entity scores; default f1).
    #[arg(long)]
    metric_for_best_model: Option<String>,
    /// A CSV row whose quoted field spans lines (RFC 4180 allows it; in a file of one-line
    /// texts it is a stray `"`) is an error naming the line the quote opened on, instead of a
    /// warning.
    #[arg(long)]
    strict_quotes: bool,
    /// Adapter type (`none` = full fine-tuning).
    #[arg(long, value_enum, default_value_t = AdapterArg::Lora)]
    adapter: AdapterArg,
    /// Start from the adapter in this folder (a lorabert run or checkpoint folder, or a PEFT
    /// adapter folder as PEFT saves it): its adapter_config.json sets the adapter (r,
    /// lora_alpha, target_modules, DoRA, ...) and its weights the starting values; a lorabert
    /// checkpoint's heads are kept when they are the heads this run trains.
    #[arg(long, conflicts_with_all = ["resume", "adapter", "r", "lora_alpha", "lora_dropout", "use_rslora", "target_modules"])]
    init_adapter: Option<PathBuf>,
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
    /// Train this many optimiser steps in total: overrides --epochs (fewer or more), as
    /// transformers' max_steps does; the learning-rate schedule spans them.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Use at most this many training examples per task.
    #[arg(long)]
    max_train: Option<usize>,
    /// Use at most this many dev examples per task.
    #[arg(long)]
    max_eval: Option<usize>,
    /// Sentence pooling [default: the model folder's sentence-transformers pooling,
    /// `1_Pooling/config.json` (mean for all-MiniLM-L6-v2, CLS for bge models), else mean].
    #[arg(long, value_enum)]
    pooling: Option<PoolingArg>,
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
    /// Output folder (results.json, best/, resume/). Default runs/<task>-<adapter>-r<r>. A run
    /// that fails before training (its data refused, say) removes the folder if it made it.
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
    /// Start over in an --out folder that holds a run (replacing its results, best/, resume/,
    /// metrics.jsonl and tb/).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Check the options, model and data without training or writing anything.
    #[arg(long, hide = true)]
    check_only: bool,
    /// Testing aid: make the loss NaN at this step.
    #[arg(long, hide = true)]
    debug_nan_at_step: Option<usize>,
    /// Testing aid: sleep this many milliseconds after every step (so that a test can stop a
    /// tiny run in its middle).
    #[arg(long, hide = true)]
    pub(super) debug_step_delay_ms: Option<u64>,
    /// The arguments given on the command line (clap ids, the field names), set by
    /// [`super::main`]: `--resume` names those it ignores.
    #[arg(skip)]
    pub(super) given: Vec<String>,
    /// Precision: f32, or f16 (wgpu devices with f16: frozen weights and activations in f16,
    /// adapters, heads and optimizer state in f32, dynamic loss scaling). Falls back to f32
    /// with a notice.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
    /// With `--precision f16`: fail instead of falling back to f32 (sweeps use it).
    #[arg(long)]
    exact_precision: bool,
    #[command(flatten)]
    controls: ControlArgs,
    #[command(flatten)]
    embedding: EmbeddingArgs,
    #[command(flatten)]
    tokens: TokenArgs,
}

impl TrainArgs {
    /// The run configuration the flags describe.
    ///
    /// # Errors
    /// An unreadable or malformed `--class-weights` file or list.
    fn config(&self) -> Result<TrainConfig> {
        let adapter = (self.adapter != AdapterArg::None).then(|| LoraConfig {
            r: self.r,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            use_rslora: self.use_rslora,
            use_dora: self.adapter == AdapterArg::Dora,
            target_modules: self.target_modules.clone(),
            ..LoraConfig::default()
        });
        let label_names = self
            .label_names
            .as_deref()
            .map(super::load::label_names)
            .transpose()?;
        let data = match &self.train_file {
            Some(f) => Some(self.own_spec(f, label_names)),
            None if self.embedding_preset() => Some(self.preset_spec()?),
            None => None,
        };
        let data = data
            .map(|mut d| {
                self.embedding.apply(&mut d);
                self.tokens.apply(&mut d).map(|()| d)
            })
            .transpose()?;
        Ok(TrainConfig {
            tasks: match data {
                Some(_) => vec![Task::Own],
                None => self.task.tasks(),
            },
            adapter,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup_ratio: self.warmup_ratio,
            max_grad_norm: self.max_grad_norm,
            max_len: self.model.max_len,
            seed: self.seed,
            max_steps: self.max_steps,
            max_train_examples: self.max_train,
            max_eval_examples: self.max_eval,
            pooling: match self.pooling {
                None | Some(PoolingArg::Mean) => Pooling::Mean,
                Some(PoolingArg::Cls) => Pooling::Cls,
                Some(PoolingArg::Pooler) => Pooling::Pooler,
            },
            pair_encoding: match self.pair_encoding {
                PairArg::Bi => PairEncoding::Bi,
                PairArg::Cross => PairEncoding::Cross,
            },
            head_dropout: self.head_dropout,
            bucket_by_length: !self.no_bucket,
            eval_batch_size: self.eval_batch_size,
            checkpoint_every: self.checkpoint_every,
            skip_nonfinite: self.skip_nonfinite,
            debug_nan_at_step: self.debug_nan_at_step,
            precision: self.precision.into(),
            data,
            own: None,
            init_adapter: self.init_adapter.as_ref().map(|p| p.display().to_string()),
            controls: self.controls.controls()?,
        })
    }

    /// The configuration and output folder of the run: the flags' and `--out` (default
    /// `runs/<task>-<adapter>-r<r>`), or with `--resume DIR` the saved configuration and `DIR`.
    /// With `--resume`, also the model the run was trained on (as recorded).
    fn run_config(&self) -> Result<(TrainConfig, PathBuf, Option<String>)> {
        let stray = self.stray_own_data_options();
        if self.train_file.is_none() && !stray.is_empty() {
            bail!(
                "{} only {} to your own data: add --train-file FILE",
                stray.join(", "),
                if stray.len() == 1 { "applies" } else { "apply" }
            );
        }
        if let Some(dir) = &self.resume {
            let state_path = dir.join("resume").join(resume_names::STATE);
            if !state_path.is_file() {
                if let Ok(b) = io::read(&dir.join("results.json"))
                    && RunResults::from_json(&b, "results.json").is_ok_and(|r| r.finished)
                {
                    bail!(
                        "the run in {} has finished: there is nothing to resume. To train on \
                         from its best checkpoint start a new run with --init-adapter {}, or \
                         pass --overwrite (without --resume) to replace it",
                        dir.display(),
                        dir.join("best").display()
                    );
                }
                bail!(
                    "{} has no resume checkpoint ({} is missing)",
                    dir.display(),
                    state_path.display()
                );
            }
            let bytes = io::read(&state_path)?;
            let st = ResumeState::from_json(&bytes, &state_path.display().to_string())?;
            if let Some(note) = ignored_on_resume(&self.given, &st.results.config) {
                eprintln!("{note}");
            }
            return Ok((st.results.config, dir.clone(), Some(st.results.model)));
        }
        let out = self.out.clone().unwrap_or_else(|| {
            let task = match &self.train_file {
                Some(f) => f
                    .file_stem()
                    .map_or("own".into(), |s| s.to_string_lossy().to_string()),
                None if self.embedding_preset() => {
                    format!("{:?}-embedding", self.task).to_lowercase()
                }
                None => format!("{:?}", self.task).to_lowercase(),
            };
            let adapter = format!("{:?}", self.adapter).to_lowercase();
            PathBuf::from(format!("runs/{task}-{adapter}-r{}", self.r))
        });
        let mut cfg = self.config()?;
        if let Some(dir) = &self.init_adapter {
            cfg.adapter = Some(init_adapter_config(dir)?);
        }
        Ok((cfg, out, None))
    }
}

/// Resolves the flags: the run's configuration (validated; the saved one with `--resume`), the
/// model (a resumed run's own unless `--model`), the data folder, the device and precision, and
/// the applied-twice check of `--init-adapter` (ripgrep's `LowArgs -> HiArgs`).
fn plan(a: &TrainArgs) -> Result<Plan> {
    let (mut cfg, out, resumed_model) = a.run_config()?;
    // Bad flags are reported before the model is looked for (or fetched).
    cfg.validate()?;
    // A resumed run uses the model it began with (recorded in its state) unless told otherwise.
    let model_arg = a.model.model.clone().or_else(|| {
        resumed_model
            .map(PathBuf::from)
            .filter(|p| p.join("config.json").is_file())
    });
    if a.model.model.is_none()
        && let Some(m) = &model_arg
    {
        eprintln!("resuming with the run's model {}", m.display());
    }
    let model_dir = io::resolve_model(model_arg.as_deref())?;
    // A fresh run without --pooling pools as the model was made to (its sentence-transformers
    // Pooling module), as sentence-transformers does.
    if a.pooling.is_none()
        && a.resume.is_none()
        && let Some(p) = super::export::model_pooling(&model_dir)?
    {
        if p != cfg.pooling {
            eprintln!(
                "pooling: {} (the model's sentence-transformers Pooling config; --pooling to choose)",
                format!("{p:?}").to_lowercase()
            );
        }
        cfg.pooling = p;
    }
    let mut cfg = cfg.validated()?;
    let resume_hint = match &model_arg {
        Some(m) => format!(
            "lorabert train --resume {} --model {}",
            out.display(),
            m.display()
        ),
        None => format!("lorabert train --resume {}", out.display()),
    };
    let data_dir = match cfg.data {
        None => Some(io::resolve_data(a.data.as_deref())?),
        Some(_) => None,
    };
    // Before the output folder exists: a refused --exact-precision leaves nothing behind.
    let (_, device) = devices(a.model.backend, cfg.seed)?;
    cfg.set_precision(precision_or_refuse(
        cfg.precision,
        &device,
        a.exact_precision,
        "training",
    )?);
    // A fresh run from --init-adapter starts from its weights; a resumed one from its own.
    let init = a.init_adapter.clone().filter(|_| a.resume.is_none());
    if let Some(dir) = &init {
        super::load::refuse_applying_twice(
            &model_dir,
            &super::load::checkpoint_dir(dir)?,
            a.model.force,
        )?;
    }
    Ok(Plan {
        cfg,
        out,
        model_dir,
        data_dir,
        device,
        init,
        resume_hint,
    })
}

/// Reads the model and data of `plan` and builds the [`Job`] (with `--init-adapter`'s weights
/// and heads) for `backend`.
fn build_job(plan: &Plan, backend: &str) -> Result<(Job, Pretrained)> {
    let mut cfg = plan.cfg.clone();
    let (model, mut bert) = load_model(&plan.model_dir, None, cfg.max_len, &plan.device)?;
    if let Some(dir) = &plan.init {
        bert = init_adapter_weights(dir, bert)?;
    }
    let (train, dev, summary) = load_all_data(&mut cfg, plan.data_dir.as_deref(), &model)?;
    let mut job = Job::new(cfg, &model, bert, train, dev, backend, &plan.device)?;
    job.info.data = summary;
    if let Some(dir) = &plan.init {
        init_heads(&mut job, dir)?;
    }
    Ok((job, model))
}

/// `lorabert train`: flags in ([`plan`]), the [`Job`] built from the files ([`build_job`]),
/// trained with a [`super::progress::CliObserver`] ([`run_job`]).
pub fn train(a: TrainArgs) -> Result<super::Outcome> {
    let plan = plan(&a)?;
    if a.check_only {
        build_job(&plan, "check")?;
        eprintln!("the options and data are fine (--check-only: nothing trained or written)");
        return Ok(super::Outcome::Finished);
    }
    let out = &plan.out;
    // A run that fails before it trains (bad data, too little memory) removes the folder it
    // made; declared before the lock, so the lock goes first.
    let mut made = NewDir((!out.exists()).then_some(out.as_path()));
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // One run per output folder: a second `train` (or an orphaned sweep child) is refused.
    let lock = io::lock_dir(out)?;
    if a.resume.is_none() && !a.overwrite {
        refuse_existing_run(out, &plan.resume_hint)?;
    }
    if a.overwrite {
        // The replaced run's resume checkpoint and TensorBoard files go now: a later
        // `--resume` must not continue it under the new run's metrics.jsonl, nor TensorBoard
        // draw both runs as one (results.json and best/ are replaced when the new run writes
        // its own, metrics.jsonl when it starts).
        for d in ["resume", "tb"] {
            let p = out.join(d);
            if p.exists() {
                std::fs::remove_dir_all(&p)
                    .with_context(|| format!("--overwrite: cannot remove {}", p.display()))?;
            }
        }
    }
    let backend = a.model.backend.describe();
    let (mut job, model) = build_job(&plan, backend)?;
    if !a.skip_memory_check {
        check_memory(&model.cfg, &job.trainer.cfg, job.params())?;
    }
    if a.resume.is_some() {
        let dir = out.join("resume");
        job.resume_from(&mut io::files_in(&dir))
            .with_context(|| format!("restoring {}", dir.display()))?;
        let t = &job.trainer;
        eprintln!(
            "resuming {} at step {} of {}",
            out.display(),
            t.step,
            t.total_steps
        );
    }
    made.0 = None;
    announce(&job, &plan, backend);
    let delay = a.debug_step_delay_ms.map(std::time::Duration::from_millis);
    let outcome = run_job(job, &plan, delay)?;
    drop(lock);
    Ok(outcome)
}

/// An output folder `train` created, removed when dropped unless the run got as far as
/// training (then `.0` is `None`).
struct NewDir<'a>(Option<&'a Path>);

impl Drop for NewDir<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// The run's data: its own files (resolving `cfg.own`) or the minBERT files of its tasks in
/// `minbert_dir`; with own data's summary for the record.
fn load_all_data(
    cfg: &mut ValidConfig,
    minbert_dir: Option<&Path>,
    model: &Pretrained,
) -> Result<(Vec<TaskData>, Vec<TaskData>, Option<DataSummary>)> {
    match (&cfg.data, minbert_dir) {
        (Some(spec), _) => {
            let own = load_own(spec, cfg, model)?;
            cfg.set_own(own.task)?;
            Ok((vec![own.train], vec![own.dev], Some(own.summary)))
        }
        (None, Some(dir)) => {
            let (t, d) = load_data(dir, cfg, model)?;
            Ok((t, d, None))
        }
        (None, None) => bail!("no minBERT data folder"),
    }
}

/// The training and dev data of every task of `cfg` from the minBERT folder `dir`.
fn load_data(
    dir: &Path,
    cfg: &TrainConfig,
    model: &Pretrained,
) -> Result<(Vec<TaskData>, Vec<TaskData>)> {
    let (mut train, mut dev) = (Vec::new(), Vec::new());
    for &task in &cfg.tasks {
        let enc = cfg.pair_encoding;
        train.push(load_split(
            dir,
            task,
            Split::Train,
            model,
            enc,
            cfg.max_train_examples,
        )?);
        dev.push(load_split(
            dir,
            task,
            Split::Dev,
            model,
            enc,
            cfg.max_eval_examples,
        )?);
    }
    for d in train.iter().chain(&dev) {
        if d.skipped_rows > 0 {
            eprintln!(
                "{}: skipped {} rows without a label",
                d.kind.name(),
                d.skipped_rows
            );
        }
    }
    Ok((train, dev))
}

/// Fails before training when the estimated peak memory of the worst-case batch (every sequence
/// `max_len` tokens; bi-encoded pairs count twice) exceeds the available memory.
fn check_memory(
    bert: &BertConfig,
    cfg: &TrainConfig,
    params: crate::train::ParamCounts,
) -> Result<()> {
    let Some(avail) = io::available_memory_bytes() else {
        return Ok(());
    };
    let per_example = sequences_per_example(cfg);
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
