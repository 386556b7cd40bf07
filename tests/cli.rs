//! End to end through the `lorabert` binary on the real MiniLM and minBERT files: a few real
//! multitask training steps, then eval, predict, embed and merge on the checkpoint.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use lorabert::train::RunResults;

fn lorabert(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "lorabert {args:?} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).to_string() + &stderr
}

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("lorabert-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn train_eval_predict_embed_merge_on_minilm() {
    let model = model_dir();
    let data = data_dir()
        .expect("minBERT data not found: set LORABERT_DATA or provide ../shared/data/minbert");
    let run = tmp("run");
    lorabert(&[
        "train",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--task",
        "multi",
        "--adapter",
        "dora",
        "--r",
        "2",
        "--max-steps",
        "6",
        "--max-train",
        "48",
        "--max-eval",
        "40",
        "--batch-size",
        "8",
        "--out",
        s(&run),
    ]);
    let results: RunResults =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    assert!(results.finished);
    assert_eq!(results.steps, 6);
    let best = results.best.clone().unwrap();
    let overall = best
        .overall
        .expect("multitask run reports the overall score");
    assert!((0.0..=1.0).contains(&overall));
    assert!(results.params.trainable > 0 && results.params.trainable < results.params.total / 50);
    assert!(results.peak_memory_bytes.unwrap_or(0) > 50_000_000);
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "heads.safetensors",
        "heads_config.json",
    ] {
        assert!(run.join("best").join(f).is_file(), "best/{f} missing");
    }

    // eval on the same dev subset reproduces the recorded metrics.
    let out = lorabert(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--checkpoint",
        s(&run),
        "--max-eval",
        "40",
    ]);
    let json_end = out.find("\n}").unwrap() + 2;
    let m: lorabert::train::DevMetrics = serde_json::from_str(&out[..json_end]).unwrap();
    assert_eq!(m, best);

    // predict writes the minBERT CSVs (no Quora test file in the shared data: skipped).
    let pred = tmp("pred");
    let out = lorabert(&[
        "predict",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--checkpoint",
        s(&run),
        "--out",
        s(&pred),
    ]);
    let sst = std::fs::read_to_string(pred.join("sst-test-output.csv")).unwrap();
    assert!(sst.starts_with("id,Predicted_Sentiment\n"));
    assert_eq!(sst.lines().count(), 2210 + 1);
    let sts = std::fs::read_to_string(pred.join("sts-test-output.csv")).unwrap();
    assert!(sts.starts_with("id,Predicted_Similiarity\n"));
    assert_eq!(sts.lines().count(), 1725 + 1);
    if !data.join("quora-test-student.csv").exists() {
        assert!(out.contains("para: no test file"), "{out}");
    }

    // embed with the adapter == embed with the merged checkpoint.
    let emb = tmp("emb");
    std::fs::create_dir_all(&emb).unwrap();
    let args = [
        "--sentence",
        "A lovely, funny film.",
        "--sentence",
        "",
        "--sentence",
        "Zürich café",
    ];
    let mut a = vec![
        "embed",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--output",
    ];
    let e1 = emb.join("adapted.safetensors");
    a.push(s(&e1));
    a.extend(args);
    lorabert(&a);
    let merged = tmp("merged");
    lorabert(&[
        "merge",
        "--model",
        s(&model),
        "--checkpoint",
        s(&run),
        "--output",
        s(&merged),
    ]);
    let e2 = emb.join("merged.safetensors");
    let mut a = vec!["embed", "--model", s(&merged), "--output", s(&e2)];
    a.extend(args);
    lorabert(&a);
    let (shape, v1) = read(&std::fs::read(&e1).unwrap(), "last_hidden_state");
    let (_, v2) = read(&std::fs::read(&e2).unwrap(), "last_hidden_state");
    assert_eq!(shape[0], 3);
    assert_eq!(shape[2], 384);
    assert_close("merged vs adapted embeddings", &v2, &v1, 1e-4);
    let (mshape, _) = read(&std::fs::read(&e1).unwrap(), "attention_mask");
    assert_eq!(mshape, shape[..2].to_vec());

    for d in [run, pred, emb, merged] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A PEFT adapter folder as PEFT saves it (no heads) is taken by `merge` (the merged model
/// reproduces PEFT's output) and refused by `eval`, which needs heads, with a message saying so.
#[test]
fn merge_takes_a_peft_adapter_folder() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft_interop");
    let model = tmp("peft-base");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(golden.join("base").join(f), model.join(f)).unwrap();
    }
    std::fs::copy(
        model_dir().join("tokenizer.json"),
        model.join("tokenizer.json"),
    )
    .unwrap();
    let out = tmp("peft-merged");
    let adapter = golden.join("lora_bias");
    lorabert(&[
        "merge",
        "--max-len",
        "32",
        "--model",
        s(&model),
        "--checkpoint",
        s(&adapter),
        "--output",
        s(&out),
    ]);
    let device = burn::tensor::Device::flex();
    let cfg = lorabert::model::BertConfig::from_json(
        &std::fs::read_to_string(out.join("config.json")).unwrap(),
        "config.json",
    )
    .unwrap();
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let bert = lorabert::model::load_bert(&cfg, &bytes, "model.safetensors", &device).unwrap();
    let exp = std::fs::read(golden.join("expected.safetensors")).unwrap();
    let (s2, m) = read(&exp, "attention_mask");
    let mask = burn::tensor::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(m, [s2[0], s2[1]]),
        &device,
    );
    let got = host(bert.forward(
        ints2(&exp, "input_ids", &device),
        ints2(&exp, "token_type_ids", &device),
        mask,
    ));
    assert_close(
        "merged PEFT adapter",
        &got,
        &read(&exp, "lora_bias.last_hidden_state").1,
        1e-5,
    );
    assert!(!out.join("heads_config.json").exists());
    let o = Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args([
            "eval",
            "--max-len",
            "32",
            "--model",
            s(&model),
            "--checkpoint",
            s(&adapter),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("a PEFT adapter folder has none"),
        "{err}"
    );
    for d in [model, out] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A PEFT sequence-classification adapter made on MiniLM (`tests/golden/peft_seqcls/`, by
/// `tools/make_golden_peft_seqcls.py`: LoRA on query/value and the `classifier` saved through
/// `modules_to_save`) predicts through lorabert with transformers + PEFT's probabilities,
/// within 1e-5, for single sentences and a cross-encoded pair; labels named as transformers
/// names them without an `id2label` (`LABEL_0`, ...).
#[test]
fn peft_sequence_classification_adapter_predicts_like_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft_seqcls");
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let model = model_dir();
    let mut args = vec!["predict", "--model", s(&model), "--checkpoint", s(&dir)];
    let sentences: Vec<String> = exp["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for t in &sentences {
        args.extend(["--sentence", t.as_str()]);
    }
    let out = lorabert(&args);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), sentences.len(), "{out}");
    let check = |row: &serde_json::Value, want: &serde_json::Value| {
        for (i, w) in want.as_array().unwrap().iter().enumerate() {
            let got = row["probabilities"][format!("LABEL_{i}")].as_f64().unwrap();
            let w = w.as_f64().unwrap();
            assert!((got - w).abs() < 1e-5, "{row}: LABEL_{i} {got} vs {w}");
        }
    };
    for (row, want) in rows.iter().zip(exp["probabilities"].as_array().unwrap()) {
        check(row, want);
    }
    let pair = exp["pair"].as_array().unwrap();
    let out = lorabert(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&dir),
        "--sentence",
        pair[0].as_str().unwrap(),
        "--sentence-pair",
        pair[1].as_str().unwrap(),
    ]);
    let row: serde_json::Value =
        serde_json::from_str(out.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    check(&row, &exp["pair_probabilities"]);
}

/// Base checkpoints in the layouts people download (`tests/golden/checkpoints/`, written by
/// transformers through `tools/make_golden_checkpoints.py`): sharded safetensors with their
/// index, and `pytorch_model.bin` only, load and give transformers' `last_hidden_state`
/// within 1e-5; another layout is refused listing the folder's files.
#[test]
fn sharded_and_pytorch_bin_checkpoints_load() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/checkpoints");
    let device = burn::tensor::Device::flex();
    let exp = std::fs::read(golden.join("expected.safetensors")).unwrap();
    let (s2, m) = read(&exp, "attention_mask");
    let mask = burn::tensor::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(m, [s2[0], s2[1]]),
        &device,
    );
    for layout in ["sharded", "pytorch_bin"] {
        let dir = golden.join(layout);
        let (bytes, source) = lorabert::cli::load::read_weights(&dir).unwrap();
        let cfg = lorabert::model::BertConfig::from_json(
            &std::fs::read_to_string(dir.join("config.json")).unwrap(),
            "config.json",
        )
        .unwrap();
        let bert = lorabert::model::load_bert(&cfg, &bytes, &source, &device).unwrap();
        let got = host(bert.forward(
            ints2(&exp, "input_ids", &device),
            ints2(&exp, "token_type_ids", &device),
            mask.clone(),
        ));
        let want = read(&exp, "last_hidden_state").1;
        eprintln!("{layout}: max |diff| {:e}", max_abs_diff(&got, &want));
        assert_close(layout, &got, &want, 1e-5);
    }
    let odd = tmp("odd-layout");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::write(odd.join("config.json"), "{}").unwrap();
    std::fs::write(odd.join("tf_model.h5"), "x").unwrap();
    let e = lorabert::cli::load::read_weights(&odd)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no weights in a layout lorabert reads")
            && e.contains("the folder has config.json, tf_model.h5"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(odd);
}
