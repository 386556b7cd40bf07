//! `lorabert bench`: times the training step (forward, backward, clipping, AdamW) on synthetic
//! batches and reports median step seconds, examples/s, peak memory and trainable parameters as
//! JSON lines. Each configuration runs in its own child process so peak memory is its own.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::load::load_model;
use super::{BackendArg, io};
use crate::adapter::LoraConfig;
use crate::data::BatchTensors;
use crate::model::{Bert, BertConfig};
use crate::tasks::{Task, TaskBatch};
use crate::train::{TrainConfig, Trainer, build_model, count_params};

/// `lorabert bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Hugging Face model folder whose weights are used (default: the default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A `config.json` to benchmark with random weights instead (e.g. the bert-base shape).
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// Examples per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Tokens per example.
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Configurations: full, lora-rN, dora-rN (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "full,lora-r1,lora-r8,dora-r1,dora-r8"
    )]
    configs: Vec<String>,
    /// Backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
    /// Precision: f32, or f16 (frozen weights and activations in f16, loss scaling; wgpu
    /// devices with f16; falls back to f32 with a notice, and the record says which ran).
    #[arg(long, value_enum, default_value_t = super::PrecisionArg::F32)]
    precision: super::PrecisionArg,
    /// Run the tensor-op references instead of the custom kernels (the WGSL kernels on wgpu, the
    /// fused GELU, softmax and LayerNorm ops of `kernels::fused`), to measure what they gain.
    #[arg(long)]
    no_kernels: bool,
    /// Instead of training steps, time the step's matrix products on `--backend` (cpu or
    /// wgpu): GFLOP/s per product through Burn's matmul and through lorabert's route, as JSON
    /// lines, the LoRA products at ranks 1 and 8. `--warmup`, `--steps` and `--configs` do not
    /// apply; the products are f32 (`--precision f16` is refused); with `--no-kernels` the
    /// lorabert route runs Burn's matmul too.
    #[arg(long)]
    gemm: bool,
    /// Instead of training steps, time sentence embeddings (as `lorabert embed` computes them:
    /// tokenisation, length-sorted batches of `--batch-size` with dynamic padding, mean
    /// pooling) of `--input`'s sentences: one untimed batch, then `--steps` timed passes over
    /// the file; the median pass as sentences/s in a JSON line (`tools/compare_inference.sh`
    /// sets it beside sentence-transformers and ONNX Runtime). `--precision f16` runs the
    /// encoder in f16 as `embed --precision f16` (the record says which precision ran).
    #[arg(long, conflicts_with = "gemm")]
    inference: bool,
    /// After each configuration's steps, time the step's matrix products alone through
    /// lorabert's product route (as `--gemm`, each distinct shape about 0.3 s) and report that
    /// floor as a fraction of the step (`floor_fraction`, floor seconds / step seconds: 1.0 is a
    /// step that is nothing but its products; f32 only).
    #[arg(long, conflicts_with_all = ["gemm", "inference"])]
    floor: bool,
    /// With `--inference`: a UTF-8 file of sentences, one per line (blank lines skipped).
    #[arg(long, requires = "inference")]
    input: Option<PathBuf>,
    /// With `--inference`: maximum tokens per sentence, special tokens included (256, the
    /// `max_seq_length` of all-MiniLM-L6-v2's sentence-transformers configuration).
    #[arg(long, default_value_t = 256)]
    max_len: usize,
    /// Rayon threads (default: all cores).
    #[arg(long)]
    pub(super) threads: Option<usize>,
    /// JSON-lines output file (rewritten atomically after each configuration; with `--gemm`
    /// written once at the end, its folder checked first).
    #[arg(long, default_value = "bench.jsonl")]
    output: PathBuf,
    /// Internal: run one configuration in this process and print its JSON line.
    #[arg(long, hide = true)]
    only: Option<String>,
}

/// One benchmark result line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRecord {
    /// `lorabert`.
    pub tool: String,
    /// Configuration name (`full`, `lora-r1`, ...).
    pub config: String,
    /// Model shape description.
    pub model: String,
    /// Backend.
    pub backend: String,
    /// Precision.
    pub precision: String,
    /// Examples per step.
    pub batch_size: usize,
    /// Tokens per example.
    pub seq_len: usize,
    /// Threads used.
    pub threads: usize,
    /// Median seconds per training step.
    pub median_step_seconds: f64,
    /// Examples per second at the median step time.
    pub examples_per_second: f64,
    /// Peak resident memory of the process in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// GPU backends: bytes the device's memory pools hold after the timed steps (the pools
    /// keep their high-water pages, so this is the step's peak device memory); `None` on CPUs.
    #[serde(default)]
    pub device_memory_bytes: Option<u64>,
    /// Whether the custom kernels ran (WGSL kernels on wgpu, fused ops on wgpu and the CPU),
    /// unless `--no-kernels`.
    #[serde(default)]
    pub kernels: bool,
    /// Trainable parameters.
    pub trainable_params: usize,
    /// All step times in seconds (after warm-up).
    pub step_seconds: Vec<f64>,
    /// With `--floor`: the step's matrix products alone, each at the rate lorabert's product
    /// route reaches for its shape ([`super::bench_floor`]), in seconds, with their GFLOP and
    /// count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<super::bench_floor::Floor>,
    /// With `--floor`: `floor.seconds / median_step_seconds`, how close the step is to the time
    /// its products take (1.0: nothing but the products).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_fraction: Option<f64>,
}

/// The adapter of a `--configs` entry: `full` (none), `lora-rN` or `dora-rN`.
fn parse_config(name: &str) -> Result<Option<LoraConfig>> {
    if name == "full" {
        return Ok(None);
    }
    let (kind, r) = name
        .split_once("-r")
        .with_context(|| format!("bad --configs entry `{name}` (use full, lora-rN or dora-rN)"))?;
    let r: usize = r.parse().with_context(|| format!("bad rank in `{name}`"))?;
    if r == 0 {
        bail!("bad rank in `{name}`: `r` must be >= 1");
    }
    let use_dora = match kind {
        "lora" => false,
        "dora" => true,
        _ => bail!("bad --configs entry `{name}` (use full, lora-rN or dora-rN)"),
    };
    Ok(Some(LoraConfig {
        r,
        use_dora,
        ..LoraConfig::default()
    }))
}

/// A synthetic SST batch of `b` sequences of `s` tokens (no padding) on `device`.
fn synthetic_batch(b: usize, s: usize, device: &Device) -> TaskBatch {
    let ids: Vec<i64> = (0..b * s)
        .map(|i| 1000 + ((i * 7919) % 20000) as i64)
        .collect();
    TaskBatch {
        kind: crate::tasks::kinds::minbert(Task::Sst),
        x: BatchTensors {
            ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [b, s]), device),
            type_ids: Tensor::<2, Int>::zeros([b, s], device),
            mask: Tensor::<2>::ones([b, s], device),
        },
        targets: crate::tasks::Targets::Classes(Tensor::<1, Int>::from_data(
            TensorData::new((0..b as i64).map(|i| i % 5).collect::<Vec<_>>(), [b]),
            device,
        )),
    }
}

/// Runs the benchmark (parent: one child per configuration; child: one measurement).
pub fn bench(a: BenchArgs) -> Result<()> {
    if a.no_kernels {
        crate::kernels::set_kernels_enabled(false);
    }
    if a.gemm {
        return bench_gemm(&a);
    }
    if a.inference {
        return super::bench_inference::run(&super::bench_inference::InferenceBench {
            model: a.model.as_deref(),
            input: a.input.as_ref(),
            batch_size: a.batch_size,
            steps: a.steps,
            max_len: a.max_len,
            backend: a.backend,
            output: &a.output,
            precision: super::precision::InferencePrecision {
                precision: a.precision,
                exact_precision: false,
            },
        });
    }
    if let Some(one) = &a.only {
        let rec = measure(&a, one)?;
        println!("{}", serde_json::to_string(&rec)?);
        return Ok(());
    }
    for c in &a.configs {
        parse_config(c)?;
    }
    if a.batch_size == 0 || a.seq_len == 0 || a.steps == 0 {
        bail!("--batch-size, --seq-len and --steps must be >= 1");
    }
    let exe = std::env::current_exe().context("cannot locate the lorabert executable")?;
    let mut lines = String::new();
    for c in &a.configs {
        let mut cmd = Command::new(&exe);
        cmd.arg("bench").arg("--only").arg(c);
        cmd.args([
            "--batch-size",
            &a.batch_size.to_string(),
            "--seq-len",
            &a.seq_len.to_string(),
        ]);
        cmd.args([
            "--warmup",
            &a.warmup.to_string(),
            "--steps",
            &a.steps.to_string(),
        ]);
        if let Some(m) = &a.model {
            cmd.arg("--model").arg(m);
        }
        if let Some(m) = &a.model_config {
            cmd.arg("--model-config").arg(m);
        }
        cmd.args(["--backend", &format!("{:?}", a.backend).to_lowercase()]);
        cmd.args(["--precision", &format!("{:?}", a.precision).to_lowercase()]);
        if a.no_kernels {
            cmd.arg("--no-kernels");
        }
        if a.floor {
            cmd.arg("--floor");
        }
        if let Some(t) = a.threads {
            cmd.args(["--threads", &t.to_string()]);
        }
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "bench {c} failed: {}",
                stderr.trim().trim_start_matches("error: ")
            );
        }
        // The child's notes (e.g. the f16 fallback).
        eprint!("{stderr}");
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let rec: BenchRecord =
            serde_json::from_str(&line).with_context(|| format!("bench {c}: bad output {line}"))?;
        eprintln!(
            "{:<10} {} {:>8.3} s/step {:>7.1} ex/s  peak {:>6.0} MiB{}  trainable {}{}",
            rec.config,
            rec.precision,
            rec.median_step_seconds,
            rec.examples_per_second,
            rec.peak_memory_bytes.unwrap_or(0) as f64 / (1 << 20) as f64,
            rec.device_memory_bytes
                .map(|b| format!("  device {:.0} MiB", b as f64 / (1 << 20) as f64))
                .unwrap_or_default(),
            rec.trainable_params,
            match (&rec.floor, rec.floor_fraction) {
                (Some(f), Some(x)) => format!(
                    "  floor {:.3} s ({:.1} GFLOP): {x:.2} of it",
                    f.seconds, f.gflop
                ),
                _ => String::new(),
            }
        );
        lines.push_str(&line);
        lines.push('\n');
        io::write_atomic(&a.output, lines.as_bytes())?;
    }
    eprintln!("wrote {}", a.output.display());
    Ok(())
}

/// `--gemm`: the step's products for the benchmarked model's shapes, written as JSON lines.
fn bench_gemm(a: &BenchArgs) -> Result<()> {
    if a.batch_size == 0 || a.seq_len == 0 {
        bail!("--batch-size and --seq-len must be >= 1");
    }
    if a.precision != super::PrecisionArg::F32 {
        bail!("--gemm times f32 products: drop --precision");
    }
    io::check_writable(&a.output)?;
    let (device, _) = super::devices(a.backend, 0)?;
    let cfg = match &a.model_config {
        Some(path) => BertConfig::from_json(&io::read_text(path)?, &path.display().to_string())?,
        None => {
            let path = io::resolve_model(a.model.as_deref())?.join("config.json");
            BertConfig::from_json(&io::read_text(&path)?, &path.display().to_string())?
        }
    };
    let recs = super::bench_gemm::run(&cfg, a.batch_size, a.seq_len, &[1, 8], 0.5, &device)?;
    let mut lines = String::new();
    for r in &recs {
        eprintln!(
            "{:<44} {:>4}×[{:>4},{:>4}]·[{:>4},{:>4}] {:<8} {:>8.2} GFLOP/s",
            r.product, r.batch, r.m, r.k, r.k, r.n, r.route, r.gflops
        );
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    io::write_atomic(&a.output, lines.as_bytes())?;
    let on = match recs.first() {
        Some(r) if r.isa == "wgpu" => "a wgpu device".to_string(),
        _ => format!(
            "{} threads, gemm kernels {}",
            rayon::current_num_threads(),
            crate::kernels::gemm::isa()
        ),
    };
    eprintln!("wrote {} ({on})", a.output.display());
    Ok(())
}

/// The benchmarked encoder: random weights of `--model-config`'s shape, or the model folder's;
/// with its configuration and a name for the record.
fn bench_encoder(a: &BenchArgs, device: &Device) -> Result<(BertConfig, Bert, String)> {
    Ok(match &a.model_config {
        Some(path) => {
            let cfg = BertConfig::from_json(&io::read_text(path)?, &path.display().to_string())?;
            let params = cfg.encoder_params() as usize;
            let need = crate::train::memory::estimate_training_bytes(
                &cfg,
                a.batch_size,
                a.seq_len,
                params,
                params,
            );
            if io::available_memory_bytes().is_some_and(|avail| need > avail) {
                bail!(
                    "{}: about {} GiB needed, more than is available",
                    path.display(),
                    need >> 30
                );
            }
            let bert = Bert::random(&cfg, device, &mut crate::model::init::InitRng::new(0));
            (cfg, bert, format!("{} (random weights)", path.display()))
        }
        None => {
            let dir = io::resolve_model(a.model.as_deref())?;
            let cfg_path = dir.join("config.json");
            let cfg =
                BertConfig::from_json(&io::read_text(&cfg_path)?, &cfg_path.display().to_string())?;
            if a.seq_len > cfg.max_position_embeddings {
                bail!(
                    "--seq-len {} exceeds max_position_embeddings {} of {}",
                    a.seq_len,
                    cfg.max_position_embeddings,
                    cfg_path.display()
                );
            }
            let (loaded, bert) = load_model(&dir, None, a.seq_len.max(4), device)?;
            (loaded.cfg, bert, dir.display().to_string())
        }
    })
}

/// One benchmark: `--warmup` then `--steps` timed training steps of configuration `name` on a
/// synthetic SST batch.
fn measure(a: &BenchArgs, name: &str) -> Result<BenchRecord> {
    let adapter = parse_config(name)?;
    let (_, device) = super::devices(a.backend, 0)?;
    let (cfg, bert, model_name) = bench_encoder(a, &device)?;
    if a.seq_len > cfg.max_position_embeddings || a.seq_len == 0 || a.batch_size == 0 {
        bail!(
            "--seq-len must be in 1..={} and --batch-size >= 1",
            cfg.max_position_embeddings
        );
    }
    let mut tc = TrainConfig {
        tasks: vec![Task::Sst],
        adapter,
        ..TrainConfig::default()
    };
    tc.precision =
        super::precision::precision_or_refuse(a.precision.into(), &device, false, "training")?;
    let (model, _) = build_model(bert, &tc, cfg.hidden_size, &device)?;
    // Give back the pages of the f32 weights an f16 conversion freed, so the device memory
    // reported is the training step's, not the load's.
    device.memory_cleanup();
    let trainable = count_params(&model).trainable;
    let mut trainer = Trainer::new(model, tc, 1_000_000, 0, device.clone());
    let (b, s) = (a.batch_size, a.seq_len);
    let batch = synthetic_batch(b, s, &device);
    let mut times = Vec::with_capacity(a.steps);
    for i in 0..a.warmup + a.steps {
        let t = Instant::now();
        pollster::block_on(trainer.step(&batch))?;
        // The step read its loss back, so the device has finished its work.
        if i >= a.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let median = super::bench_gemm::median(&times);
    let floor = match (a.floor, trainer.cfg.precision) {
        (true, crate::train::Precision::F32) => Some(super::bench_floor::measure(
            &cfg,
            b,
            s,
            trainer.cfg.adapter.as_ref(),
            0.3,
            &device,
        )?),
        (true, _) => {
            eprintln!("note: --floor times f32 products: no floor for an f16 step");
            None
        }
        (false, _) => None,
    };
    Ok(BenchRecord {
        tool: "lorabert".into(),
        config: name.to_string(),
        model: model_name,
        backend: a.backend.describe().to_string(),
        precision: trainer.cfg.precision.name().to_string(),
        batch_size: b,
        seq_len: s,
        threads: rayon::current_num_threads(),
        median_step_seconds: median,
        examples_per_second: b as f64 / median,
        peak_memory_bytes: io::peak_rss_bytes(),
        device_memory_bytes: match a.backend {
            BackendArg::Cpu | BackendArg::Ndarray => None,
            _ => device.memory_pool_usage().map(|u| u.bytes_reserved),
        },
        kernels: crate::kernels::kernels_enabled() && crate::kernels::fused::runs_on(&device),
        trainable_params: trainable,
        step_seconds: times,
        floor_fraction: floor.as_ref().map(|f| f.seconds / median),
        floor,
    })
}
