//! Bad input gets a clear error naming the file, line, tensor or module, and no panic (issue #2).

mod common;

use burn::tensor::Device;
use lorabert::adapter::{LoraConfig, apply_adapters, peft};
use lorabert::data::{PairLabel, read_pairs, read_sst};
use lorabert::model::init::InitRng;
use lorabert::model::{Bert, BertConfig, load_bert};
use lorabert::train::artifacts::bert_safetensors;

fn tiny() -> (BertConfig, Vec<u8>) {
    let cfg = BertConfig::tiny(50, 8, 1, 2);
    let device = Device::flex();
    device.seed(1);
    let bert = Bert::random(&cfg, &device, &mut InitRng::new(1));
    (cfg, pollster::block_on(bert_safetensors(&bert)).unwrap())
}

fn err_of<T: std::fmt::Debug>(r: lorabert::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn tiny_checkpoint_round_trips() {
    let (cfg, bytes) = tiny();
    load_bert(&cfg, &bytes, "tiny.safetensors", &Device::flex()).expect("valid checkpoint loads");
}

#[test]
fn config_with_indivisible_heads() {
    let e = err_of(BertConfig::from_json(
        r#"{"hidden_size": 384, "num_attention_heads": 7}"#,
        "m/config.json",
    ));
    assert!(
        e.contains("m/config.json") && e.contains("not divisible by num_attention_heads 7"),
        "{e}"
    );
}

#[test]
fn truncated_safetensors() {
    let (cfg, bytes) = tiny();
    for cut in [4usize, 20, bytes.len() / 2, bytes.len() - 1] {
        let e = err_of(load_bert(
            &cfg,
            &bytes[..cut],
            "model.safetensors",
            &Device::flex(),
        ));
        assert!(
            e.starts_with("model.safetensors: not a valid safetensors file"),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn header_claiming_huge_size() {
    let mut bytes = (u64::MAX / 2).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let cfg = BertConfig::tiny(50, 8, 1, 2);
    let e = err_of(load_bert(&cfg, &bytes, "evil.safetensors", &Device::flex()));
    assert!(e.contains("evil.safetensors"), "{e}");
}

#[test]
fn tensor_of_wrong_shape_is_named() {
    let (_, bytes) = tiny();
    // The same file read with a config whose intermediate size differs.
    let mut cfg = BertConfig::tiny(50, 8, 1, 2);
    cfg.intermediate_size = 16;
    let e = err_of(load_bert(
        &cfg,
        &bytes,
        "model.safetensors",
        &Device::flex(),
    ));
    assert!(
        e.contains("`encoder.layer.0.intermediate.dense.weight` has shape [32, 8]"),
        "{e}"
    );
    assert!(e.contains("expected shape [16, 8]"), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let (_, bytes) = tiny();
    let mut cfg = BertConfig::tiny(50, 8, 1, 2);
    cfg.num_hidden_layers = 2;
    let e = err_of(load_bert(
        &cfg,
        &bytes,
        "model.safetensors",
        &Device::flex(),
    ));
    assert!(
        e.contains("tensor `encoder.layer.1.attention.self.query.weight` is missing"),
        "{e}"
    );
}

#[test]
fn data_file_problems_name_file_and_line() {
    let e = err_of(read_sst(
        b"\tid\tsentence\n0\tx\tgood\n",
        "ids-sst-train.csv",
        true,
    ));
    assert!(
        e.contains("ids-sst-train.csv line 1: missing column `sentiment`"),
        "{e}"
    );
    let e = err_of(read_sst(
        b"\tid\tsentence\tsentiment\n0\tx\tgood\t3\n1\ty\tbad\tfour\n",
        "sst.csv",
        true,
    ));
    assert!(
        e.contains("sst.csv line 3: sentiment `four` is not a number"),
        "{e}"
    );
    let e = err_of(read_pairs(
        b"\tid\tsentence1\tsentence2\tsimilarity\n0\tx\ta\tb\t7.5\n",
        "sts.csv",
        PairLabel::Similarity,
    ));
    assert!(
        e.contains("sts.csv line 2: similarity `7.5` is not in 0..=5"),
        "{e}"
    );
    let e = err_of(read_pairs(
        b"\tid\tsentence1\tsentence2\tis_duplicate\n0\tx\ta\t\xc3\x28\t1\n",
        "quora.csv",
        PairLabel::Paraphrase,
    ));
    assert!(
        e.contains("quora.csv line 2") && e.contains("not valid UTF-8"),
        "{e}"
    );
    let e = err_of(read_pairs(
        b"\tid\tsentence1\n0\tx\ta\n",
        "q.csv",
        PairLabel::Paraphrase,
    ));
    assert!(e.contains("missing column `sentence2`"), "{e}");
}

#[test]
fn unknown_target_module() {
    let device = Device::flex();
    let mut rng = InitRng::new(0);
    let bert = Bert::random(&BertConfig::tiny(50, 8, 1, 2), &device, &mut rng);
    let cfg = LoraConfig {
        target_modules: vec!["qkv".into()],
        ..Default::default()
    };
    let e = err_of(apply_adapters(bert, &cfg, &mut rng, &device));
    assert!(e.contains("target module `qkv` matches no module"), "{e}");
}

#[test]
fn adapter_whose_r_does_not_match_its_tensors() {
    let device = Device::flex();
    let cfg = LoraConfig {
        r: 2,
        target_modules: vec!["query".into()],
        ..Default::default()
    };
    let mut rng = InitRng::new(0);
    let bert = Bert::random(&BertConfig::tiny(50, 8, 1, 2), &device, &mut rng);
    let bert = apply_adapters(bert, &cfg, &mut rng, &device).unwrap();
    let st = pollster::block_on(peft::adapter_safetensors(&bert)).unwrap();
    let wrong = LoraConfig {
        r: 4,
        ..cfg.clone()
    };
    let json = peft::adapter_config_json(&wrong, "tiny");
    let fresh = Bert::random(&BertConfig::tiny(50, 8, 1, 2), &device, &mut rng);
    let e = err_of(peft::load_adapter(
        fresh,
        &json,
        "adapter_config.json",
        &st,
        "adapter_model.safetensors",
    ));
    assert!(e.contains("base_model.model.encoder.layer.0.attention.self.query.lora_A.weight` has shape [2, 8], expected [4, 8]"), "{e}");
    assert!(e.contains("r = 4 from adapter_config.json"), "{e}");
}

#[test]
fn adapter_config_problems() {
    let e = err_of(peft::parse_adapter_config(
        r#"{"peft_type": "IA3", "r": 2, "target_modules": ["query"]}"#,
        "a.json",
    ));
    assert!(
        e.contains("a.json: peft_type `IA3` is not supported"),
        "{e}"
    );
    let e = err_of(peft::parse_adapter_config(
        r#"{"r": 0, "target_modules": ["query"]}"#,
        "a.json",
    ));
    assert!(e.contains("`r` must be >= 1"), "{e}");
    let e = err_of(peft::parse_adapter_config(
        r#"{"r": 2, "target_modules": ["query"], "fan_in_fan_out": true}"#,
        "a.json",
    ));
    assert!(
        e.contains("a.json: `fan_in_fan_out`: refused when true"),
        "{e}"
    );
    let e = err_of(peft::parse_adapter_config(
        r#"{"r": 2, "target_modules": ["query"], "lora_shrink": 3}"#,
        "a.json",
    ));
    assert!(
        e.contains("field `lora_shrink` is not a field of PEFT's LoraConfig"),
        "{e}"
    );
    let e = err_of(peft::parse_adapter_config(
        r#"{"r": 2, "target_modules": ["query"], "init_lora_weights": "pissa_niter_4"}"#,
        "a.json",
    ));
    assert!(e.contains("changes the base weights"), "{e}");
}

#[test]
fn cli_reports_missing_model_folder() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args([
            "eval",
            "--model",
            "/nonexistent/model",
            "--checkpoint",
            "tests/golden",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("tests/golden is not a checkpoint folder")
            || err.contains("/nonexistent/model"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args(["train", "--model", "/nonexistent/model", "--max-steps", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("error: model folder /nonexistent/model does not exist"),
        "{err}"
    );
}

/// `bench` refuses a zero rank, zero steps, a sequence longer than the model's positions, and
/// (`--gemm`) f16 or an unwritable output, with a message naming the option or path, before
/// measuring anything.
#[test]
fn bench_rejects_bad_options_by_name() {
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lorabert"))
            .arg("bench")
            .arg("--model")
            .arg(common::model_dir())
            .args(["--output", "/nonexistent-dir/bench.jsonl"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let e = run(&["--configs", "lora-r0"]);
    assert!(e.contains("bad rank in `lora-r0`: `r` must be >= 1"), "{e}");
    let e = run(&["--configs", "lora-r1", "--steps", "0"]);
    assert!(e.contains("--steps must be >= 1"), "{e}");
    let e = run(&[
        "--configs",
        "lora-r1",
        "--seq-len",
        "100000",
        "--steps",
        "1",
    ]);
    assert!(
        e.contains("--seq-len 100000 exceeds max_position_embeddings 512"),
        "{e}"
    );
    assert!(
        !e.contains("error: error:") && !e.contains("failed: error:"),
        "{e}"
    );
    // `--gemm` refuses f16 and an output it could not write before timing anything (a folder
    // under /proc cannot be created, even by root).
    let e = run(&["--gemm", "--precision", "f16"]);
    assert!(e.contains("--gemm times f32 products"), "{e}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args([
            "bench",
            "--gemm",
            "--output",
            "/proc/lorabert-none/gemm.jsonl",
        ])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !e.contains("panicked"), "{e}");
    assert!(e.contains("/proc/lorabert-none"), "{e}");
    assert!(!e.contains("GFLOP/s"), "nothing is timed first: {e}");
}

/// `--threads` far above the cores is refused at once, naming the bound, instead of spawning
/// that many threads (`--threads 100000` hung with no output).
#[test]
fn absurd_thread_count_is_refused_at_once() {
    let start = std::time::Instant::now();
    for command in ["train", "bench"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lorabert"))
            .args([command, "--threads", "100000"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command} accepted --threads 100000");
        let err = String::from_utf8_lossy(&out.stderr);
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let limit = lorabert::cli::MAX_THREADS_PER_CORE * cores;
        assert!(
            err.contains(&format!("--threads 100000 is more than {limit}")),
            "{command}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args(["train", "--threads", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--threads 0: give at least 1"),
        "{err}"
    );
}
