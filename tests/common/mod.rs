//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod embed;

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::SafeTensors;

/// Burn's random generator is per backend and process-wide (and a training step reseeds it):
/// tests of one binary that seed it or train must not interleave, so each holds this lock.
static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`RNG_LOCK`] (a panicked holder does not poison it for the others).
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The adapter of a test case by name: `lora` or `dora` at rank `r` (`lora_alpha` 8, all linear
/// layers, no dropout: PEFT's defaults but `r`), or `none` for full fine-tuning.
pub fn adapter(kind: &str, r: usize) -> Option<lorabert::adapter::LoraConfig> {
    (kind != "none").then(|| lorabert::adapter::LoraConfig {
        r,
        use_dora: kind == "dora",
        ..Default::default()
    })
}

/// The default model folder: `$LORABERT_MODEL`, else `../shared/models/all-MiniLM-L6-v2`, else
/// `models/all-MiniLM-L6-v2` (where `tools/setup.sh` puts it). Panics with instructions if none.
pub fn model_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("LORABERT_MODEL").map(PathBuf::from),
        Some(root.join("../shared/models/all-MiniLM-L6-v2")),
        Some(root.join("models/all-MiniLM-L6-v2")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.join("model.safetensors").is_file() {
            return c;
        }
    }
    panic!("all-MiniLM-L6-v2 not found: run tools/setup.sh (or set LORABERT_MODEL)");
}

/// The minBERT data folder (`$LORABERT_DATA` or `../shared/data/minbert`), if present.
pub fn data_dir() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        std::env::var_os("LORABERT_DATA").map(PathBuf::from),
        Some(root.join("../shared/data/minbert")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.join("ids-sst-dev.csv").is_file())
}

pub fn golden(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Reads tensor `name` of a safetensors buffer as (shape, f32 values); integer tensors converted.
pub fn read(bytes: &[u8], name: &str) -> (Vec<usize>, Vec<f32>) {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let v = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("golden tensor {name} missing"));
    let data = v.data();
    let vals: Vec<f32> = match v.dtype() {
        safetensors::Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        safetensors::Dtype::I64 => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        d => panic!("unexpected dtype {d:?}"),
    };
    (v.shape().to_vec(), vals)
}

pub fn t2(bytes: &[u8], name: &str, device: &Device) -> Tensor<2> {
    let (s, v) = read(bytes, name);
    Tensor::from_data(TensorData::new(v, [s[0], s[1]]), device)
}

pub fn t1(bytes: &[u8], name: &str, device: &Device) -> Tensor<1> {
    let (s, v) = read(bytes, name);
    Tensor::from_data(TensorData::new(v, [s[0]]), device)
}

pub fn t3(bytes: &[u8], name: &str, device: &Device) -> Tensor<3> {
    let (s, v) = read(bytes, name);
    Tensor::from_data(TensorData::new(v, [s[0], s[1], s[2]]), device)
}

pub fn ints2(bytes: &[u8], name: &str, device: &Device) -> Tensor<2, Int> {
    let (s, v) = read(bytes, name);
    let v: Vec<i64> = v.into_iter().map(|x| x as i64).collect();
    Tensor::from_data(TensorData::new(v, [s[0], s[1]]), device)
}

pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest absolute difference; panics if lengths differ.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let d = max_abs_diff(got, want);
    assert!(d <= tol, "{what}: max |diff| = {d:e} > tolerance {tol:e}");
    assert!(
        got.iter().all(|x| x.is_finite()),
        "{what}: non-finite values"
    );
}

/// Writes a tiny random BERT (MiniLM's tokenizer and vocabulary, hidden 16, one layer, two heads)
/// into `dir` as a Hugging Face folder.
pub fn tiny_model(dir: &std::path::Path) {
    let mut cfg = lorabert::model::BertConfig::tiny(30522, 16, 1, 2);
    cfg.max_position_embeddings = 128;
    let device = Device::flex();
    device.seed(5);
    let bert =
        lorabert::model::Bert::random(&cfg, &device, &mut lorabert::model::init::InitRng::new(5));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        pollster::block_on(lorabert::train::artifacts::bert_safetensors(&bert)).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        model_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
}

/// Runs the lorabert binary with `args`: (success, stdout, stderr).
pub fn lorabert(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Runs the lorabert binary with `args`, asserting success: its stdout.
pub fn ok(args: &[&str]) -> String {
    let (success, stdout, stderr) = lorabert(args);
    assert!(success, "lorabert {args:?} failed:\n{stderr}");
    stdout
}

/// A fresh temporary path `name` of this test binary and process (removed if present).
pub fn tmp(name: &str) -> PathBuf {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let p = std::env::temp_dir().join(format!("lorabert-{bin}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}
