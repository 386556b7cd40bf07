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
    a.push("--hidden-states");
    lorabert(&a);
    // Batches of one sentence each (dynamic padding, other lengths) give the same outputs.
    let e3 = emb.join("batched.safetensors");
    let mut b = a.clone();
    let at = b.iter().position(|x| *x == s(&e1)).unwrap();
    b[at] = s(&e3);
    b.extend(["--batch-size", "1"]);
    lorabert(&b);
    // Written a chunk of 2 sentences at a time (the second chunk shorter than the longest
    // sentence, so its states are padded on the way out): the same file.
    let e4 = emb.join("chunked.safetensors");
    let mut c = a.clone();
    c[at] = s(&e4);
    c.extend(["--chunk-sentences", "2"]);
    lorabert(&c);
    for name in [
        "sentence_embedding",
        "last_hidden_state",
        "attention_mask",
        "input_ids",
    ] {
        let (s1, v1) = read(&std::fs::read(&e1).unwrap(), name);
        for (e, what) in [(&e3, "batch 1"), (&e4, "chunks of 2")] {
            let (s3, v3) = read(&std::fs::read(e).unwrap(), name);
            assert_eq!(s1, s3, "{name}");
            assert_close(&format!("{name}: batch 32 vs {what}"), &v3, &v1, 1e-5);
        }
    }
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
    a.push("--hidden-states");
    lorabert(&a);
    let (shape, v1) = read(&std::fs::read(&e1).unwrap(), "last_hidden_state");
    let (_, v2) = read(&std::fs::read(&e2).unwrap(), "last_hidden_state");
    assert_eq!(shape[0], 3);
    assert_eq!(shape[2], 384);
    assert_close("merged vs adapted embeddings", &v2, &v1, 1e-4);
    let (mshape, _) = read(&std::fs::read(&e1).unwrap(), "attention_mask");
    assert_eq!(mshape, shape[..2].to_vec());
    let (eshape, p1) = read(&std::fs::read(&e1).unwrap(), "sentence_embedding");
    let (_, p2) = read(&std::fs::read(&e2).unwrap(), "sentence_embedding");
    assert_eq!(eshape, vec![3, 384]);
    assert_close("merged vs adapted sentence embeddings", &p2, &p1, 1e-4);
    // The mean over real tokens of the hidden states, for each sentence.
    let (_, mask) = read(&std::fs::read(&e1).unwrap(), "attention_mask");
    let seq = shape[1];
    for i in 0..3 {
        let n: f32 = mask[i * seq..(i + 1) * seq].iter().sum();
        let mean: Vec<f32> = (0..384)
            .map(|j| {
                (0..n as usize)
                    .map(|t| v1[(i * seq + t) * 384 + j])
                    .sum::<f32>()
                    / n
            })
            .collect();
        assert_close(
            "sentence_embedding = mean of the states",
            &p1[i * 384..(i + 1) * 384],
            &mean,
            1e-4,
        );
    }

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

/// The checkpoints and expected outputs of `tools/make_golden_export.py` (`tests/golden/export`):
/// what transformers, PEFT and sentence-transformers computed from `lorabert export` folders.
fn export_golden() -> (PathBuf, serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/export");
    let exp = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    (dir, exp)
}

/// `texts` of a golden case: single sentences, or pairs.
fn golden_texts(exp: &serde_json::Value, pairs: bool) -> Vec<Vec<String>> {
    let key = if pairs { "pairs" } else { "sentences" };
    exp[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| match v {
            serde_json::Value::Array(p) => p.iter().map(|s| s.as_str().unwrap().into()).collect(),
            s => vec![s.as_str().unwrap().to_string()],
        })
        .collect()
}

/// `--sentence` (and `--sentence-pair`) arguments for `texts`.
fn sentence_args(texts: &[Vec<String>]) -> Vec<&str> {
    let mut args = Vec::new();
    for t in texts {
        args.extend(["--sentence", t[0].as_str()]);
        if let Some(p) = t.get(1) {
            args.extend(["--sentence-pair", p.as_str()]);
        }
    }
    args
}

/// The encoder of an exported folder (its `config.json`, `tokenizer.json`, `model.safetensors`)
/// run by lorabert on `texts`: `(last_hidden_state's encoder, pooler output or mean-pooled
/// states)`, `[batch, hidden]` row-major.
fn exported_pooled(dir: &Path, texts: &[Vec<String>], pooler: bool) -> Vec<f32> {
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let tok = std::fs::read(dir.join("tokenizer.json")).unwrap();
    let p =
        lorabert::model::Pretrained::from_bytes("x", &cfg, "config.json", &tok, "t", 128).unwrap();
    let device = burn::tensor::Device::flex();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let bert = p.encoder(&bytes, "model.safetensors", &device).unwrap();
    let encs: Vec<_> = texts
        .iter()
        .map(|t| match t.get(1) {
            Some(b) => p.tokenizer.encode_pair(&t[0], b).unwrap(),
            None => p.tokenizer.encode(&t[0]).unwrap(),
        })
        .collect();
    let batch = lorabert::data::TokenBatch::from_encoded(&encs.iter().collect::<Vec<_>>(), 0);
    let x = batch.to_tensors(&device);
    let h = bert.forward(x.ids, x.type_ids, x.mask.clone());
    host(if pooler {
        bert.pool(h).unwrap()
    } else {
        lorabert::tasks::pool(h, x.mask, lorabert::tasks::Pooling::Mean)
    })
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    let mut out = Vec::new();
    for x in v.as_array().unwrap() {
        match x {
            serde_json::Value::Array(a) => out.extend(a.iter().map(|y| y.as_f64().unwrap() as f32)),
            y => out.push(y.as_f64().unwrap() as f32),
        }
    }
    out
}

/// What `lorabert predict` printed for `task` (a head name, or `None` for every row), as the
/// golden files hold it: class probabilities in label order, or the regression value.
fn predicted(out: &str, task: Option<&str>, labels: &[String], regression: bool) -> Vec<f32> {
    let mut got = Vec::new();
    for l in out.lines().filter(|l| l.starts_with('{')) {
        let row: serde_json::Value = serde_json::from_str(l).unwrap();
        if task.is_some_and(|t| row["task"] != t) {
            continue;
        }
        if regression {
            got.push(row["score"].as_f64().unwrap() as f32);
        } else {
            for name in labels {
                got.push(row["probabilities"][name].as_f64().unwrap() as f32);
            }
        }
    }
    got
}

/// `lorabert export` (issue 17, item 7), against `tools/make_golden_export.py`'s references:
/// for each head trained with `--pooling pooler` (SST, paraphrase and STS of a multitask
/// checkpoint; an own-data DoRA head with string labels), `lorabert predict` on the checkpoint
/// gives what transformers' `AutoModelForSequenceClassification` computed from the
/// `--format transformers` export, and PEFT's `AutoPeftModelForSequenceClassification` from the
/// `--format peft` export (1e-4); a fresh export has the golden config fields, and run by
/// lorabert's own encoder (the `transformers` folder) or SEQ_CLS loader (the `peft` folder)
/// gives the same. The mean-pooled checkpoint's `--format sentence-transformers` export gives
/// `SentenceTransformer.encode`'s vectors, as does `lorabert embed --pooling mean`.
#[test]
fn exports_load_in_transformers_peft_and_sentence_transformers() {
    let (dir, exp) = export_golden();
    let model = model_dir();
    let softmax = |v: &[f32], n: usize| -> Vec<f32> {
        v.chunks(n)
            .flat_map(|row| {
                let m = row.iter().cloned().fold(f32::MIN, f32::max);
                let e: Vec<f32> = row.iter().map(|x| (x - m).exp()).collect();
                let s: f32 = e.iter().sum();
                e.into_iter().map(move |x| x / s)
            })
            .collect()
    };
    for (name, case) in exp["cases"].as_object().unwrap() {
        let ckpt = dir.join(case["checkpoint"].as_str().unwrap());
        if name.ends_with("-st") {
            continue;
        }
        let task = case["task"].as_str();
        let pairs = case["pairs"].as_bool().unwrap();
        let texts = golden_texts(&exp, pairs);
        let cfg = &case["config"];
        let regression = cfg["problem_type"] == "regression";
        let n = cfg["num_labels"].as_u64().unwrap() as usize;
        let labels: Vec<String> = (0..n)
            .map(|i| cfg["id2label"][i.to_string()].as_str().unwrap().to_string())
            .collect();
        let want_tf = floats(&case["transformers"]);
        let want_peft = floats(&case["peft"]);
        // The checkpoint itself, through lorabert predict.
        let mut args = vec!["predict", "--model", s(&model), "--checkpoint", s(&ckpt)];
        args.extend(sentence_args(&texts));
        let out = lorabert(&args);
        let got = predicted(&out, task, &labels, regression);
        let d = max_abs_diff(&got, &want_tf);
        eprintln!("{name}: lorabert predict vs transformers export: max |diff| {d:e}");
        assert!(d < 1e-4, "{name}: {got:?} vs {want_tf:?}");
        // A fresh transformers export: its config, and its weights run by lorabert.
        let tf = tmp(&format!("{name}-tf"));
        let mut args = vec![
            "export",
            "--model",
            s(&model),
            "--checkpoint",
            s(&ckpt),
            "--format",
            "transformers",
            "--output",
            s(&tf),
        ];
        if let Some(t) = task {
            args.extend(["--task", t]);
        }
        lorabert(&args);
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tf.join("config.json")).unwrap()).unwrap();
        for k in [
            "architectures",
            "id2label",
            "label2id",
            "num_labels",
            "problem_type",
        ] {
            assert_eq!(written[k], cfg[k], "{name}: config.json `{k}`");
        }
        let pooled = exported_pooled(&tf, &texts, true);
        let st = std::fs::read(tf.join("model.safetensors")).unwrap();
        let (_, w) = read(&st, "classifier.weight");
        let (_, b) = read(&st, "classifier.bias");
        let hidden = w.len() / n;
        let logits: Vec<f32> = pooled
            .chunks(hidden)
            .flat_map(|p| {
                (0..n).map(|j| b[j] + (0..hidden).map(|k| p[k] * w[j * hidden + k]).sum::<f32>())
            })
            .collect();
        let got = if regression {
            logits
        } else {
            softmax(&logits, n)
        };
        let d = max_abs_diff(&got, &want_tf);
        eprintln!("{name}: fresh transformers export run by lorabert: max |diff| {d:e}");
        assert!(d < 1e-4, "{name}: {got:?} vs {want_tf:?}");
        // A fresh PEFT export, loaded back as a SEQ_CLS adapter.
        let peft = tmp(&format!("{name}-peft"));
        args[6] = "peft";
        args[8] = s(&peft);
        lorabert(&args);
        let ac: serde_json::Value =
            serde_json::from_slice(&std::fs::read(peft.join("adapter_config.json")).unwrap())
                .unwrap();
        assert_eq!(ac["task_type"], "SEQ_CLS");
        assert_eq!(ac["modules_to_save"], serde_json::json!(["classifier"]));
        let mut args = vec!["predict", "--model", s(&model), "--checkpoint", s(&peft)];
        args.extend(sentence_args(&texts));
        let out = lorabert(&args);
        let generic: Vec<String> = (0..n).map(|i| format!("LABEL_{i}")).collect();
        let got = predicted(&out, None, &generic, regression);
        let d = max_abs_diff(&got, &want_peft);
        eprintln!("{name}: fresh PEFT export run by lorabert vs PEFT: max |diff| {d:e}");
        assert!(d < 1e-4, "{name}: {got:?} vs {want_peft:?}");
        let _ = std::fs::remove_dir_all(tf);
        let _ = std::fs::remove_dir_all(peft);
    }
    // sentence-transformers: the mean-pooled checkpoint.
    let case = &exp["cases"]["ckpt-mean-st"];
    let want = floats(&case["sentence_transformers"]);
    let ckpt = dir.join("ckpt-mean");
    let texts = golden_texts(&exp, false);
    let st = tmp("st");
    lorabert(&[
        "export",
        "--model",
        s(&model),
        "--checkpoint",
        s(&ckpt),
        "--format",
        "sentence-transformers",
        "--output",
        s(&st),
    ]);
    let pool: serde_json::Value =
        serde_json::from_slice(&std::fs::read(st.join("1_Pooling/config.json")).unwrap()).unwrap();
    assert_eq!(pool["pooling_mode_mean_tokens"], true);
    // The base's modules (Transformer, Pooling, Normalize) and max_seq_length (256) are carried
    // over: sentence-transformers' vectors have norm 1, as the base model's do.
    let json = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(st.join(name)).unwrap()).unwrap()
    };
    let types: Vec<String> = json("modules.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["type"]
                .as_str()
                .unwrap()
                .rsplit('.')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types, ["Transformer", "Pooling", "Normalize"]);
    assert_eq!(json("sentence_bert_config.json")["max_seq_length"], 256);
    assert_eq!(
        case["modules"],
        serde_json::json!(["Transformer", "Pooling", "Normalize"])
    );
    assert_eq!(case["max_seq_length"], 256);
    for n in floats(&case["norms"]) {
        assert!((n - 1.0).abs() < 1e-5, "sentence-transformers norm {n}");
    }
    // lorabert's pooled vectors, scaled to norm 1 as sentence-transformers' Normalize does.
    let unit = |v: Vec<f32>| -> Vec<f32> {
        v.chunks(384)
            .flat_map(|row| {
                let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                row.iter().map(move |x| x / n).collect::<Vec<_>>()
            })
            .collect()
    };
    let got = unit(exported_pooled(&st, &texts, false));
    let d = max_abs_diff(&got, &want);
    eprintln!("fresh sentence-transformers export run by lorabert: max |diff| {d:e}");
    assert!(d < 1e-4);
    let emb = st.join("emb.safetensors");
    let mut args = vec![
        "embed",
        "--model",
        s(&model),
        "--checkpoint",
        s(&ckpt),
        "--pooling",
        "mean",
        "--output",
        s(&emb),
    ];
    args.extend(sentence_args(&texts));
    lorabert(&args);
    let (shape, got) = read(&std::fs::read(&emb).unwrap(), "sentence_embedding");
    assert_eq!(shape, vec![texts.len(), 384]);
    let d = max_abs_diff(&unit(got), &want);
    eprintln!(
        "lorabert embed --pooling mean (normalised) vs sentence-transformers: max |diff| {d:e}"
    );
    assert!(d < 1e-5);
    // --normalize is sentence-transformers' Normalize module: its encode output, unchanged.
    let unit_emb = st.join("unit.safetensors");
    let at = args.iter().position(|x| *x == s(&emb)).unwrap();
    let mut normalized = args.clone();
    normalized[at] = s(&unit_emb);
    normalized.push("--normalize");
    lorabert(&normalized);
    let (_, got) = read(&std::fs::read(&unit_emb).unwrap(), "sentence_embedding");
    let d = max_abs_diff(&got, &want);
    eprintln!("lorabert embed --normalize vs sentence-transformers: max |diff| {d:e}");
    assert!(d < 1e-5);
    // The same embeddings as a NumPy array and as JSON lines.
    let (_, want) = read(&std::fs::read(&emb).unwrap(), "sentence_embedding");
    let npy = st.join("emb.npy");
    let jsonl = st.join("emb.jsonl");
    for out in [&npy, &jsonl] {
        let mut args = vec!["embed", "--model", s(&model), "--checkpoint", s(&ckpt)];
        args.extend(["--output", s(out)]);
        args.extend(sentence_args(&texts));
        lorabert(&args);
    }
    let bytes = std::fs::read(&npy).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains(&format!("'shape': ({}, 384)", texts.len())),
        "{header}"
    );
    let values: Vec<f32> = bytes[10 + header_len..]
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(values, want, ".npy holds the safetensors embeddings");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), texts.len());
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["sentence"], texts[i][0].as_str());
        let e: Vec<f32> = l["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(e, want[i * 384..(i + 1) * 384], "line {i}");
    }
    let _ = std::fs::remove_dir_all(st);
}

/// Exports that would not compute what lorabert computes are refused, saying why and what to do.
#[test]
fn export_refuses_what_it_cannot_write_exactly() {
    let (dir, _) = export_golden();
    let model = model_dir();
    let fails = |ckpt: &str, extra: &[&str], want: &str| {
        let out = tmp("refused");
        let ck = dir.join(ckpt);
        let mut args = vec![
            "export",
            "--model",
            s(&model),
            "--checkpoint",
            s(&ck),
            "--output",
            s(&out),
        ];
        args.extend(extra);
        let o = Command::new(env!("CARGO_BIN_EXE_lorabert"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(!out.exists(), "nothing is written");
    };
    fails(
        "ckpt-mean",
        &["--format", "transformers"],
        "--pooling pooler",
    );
    fails(
        "ckpt-multi",
        &["--format", "transformers"],
        "pick one with --task",
    );
    fails(
        "ckpt-multi",
        &["--format", "peft", "--task", "nli"],
        "heads are sst, para, sts",
    );
    fails(
        "ckpt-multi",
        &["--format", "sentence-transformers"],
        "no BERT-pooler mode",
    );
    fails(
        "ckpt-own",
        &["--format", "transformers", "--pooling", "mean"],
        "--pooling applies",
    );
}

/// `train --init-adapter`: a lorabert checkpoint's adapter (DoRA) and heads are the starting
/// point (at a learning rate too small to move an f32, the run's checkpoint predicts what the
/// starting checkpoint predicts and its adapter is unchanged); a PEFT SEQ_CLS adapter folder sets
/// the run's adapter (its r and target_modules), its classifier left to the heads.
#[test]
fn train_init_adapter_starts_from_a_checkpoint_or_a_peft_folder() {
    let (dir, _) = export_golden();
    let model = model_dir();
    let work = tmp("init");
    std::fs::create_dir_all(&work).unwrap();
    let csv = work.join("own.csv");
    std::fs::write(
        &csv,
        "text,label\nsuch a lovely film,pos\na dreadful bore,neg\nit opens on a Monday,neu\n\
         warm and funny,pos\nflat and dull,neg\nthe film is in colour,neu\n",
    )
    .unwrap();
    let ckpt = dir.join("ckpt-own");
    let run = work.join("run");
    let out = lorabert(&[
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&csv),
        "--validation-file",
        s(&csv),
        "--pooling",
        "pooler",
        "--init-adapter",
        s(&ckpt),
        "--lr",
        "1e-30",
        "--max-steps",
        "1",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--out",
        s(&run),
    ]);
    assert!(out.contains("starting from the adapter and heads"), "{out}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["config"]["adapter"]["use_dora"], true);
    assert_eq!(results["config"]["adapter"]["r"], 2);
    assert_eq!(results["config"]["init_adapter"], s(&ckpt));
    let labels: Vec<String> = ["neg", "neu", "pos"].map(String::from).to_vec();
    let texts = vec![
        vec!["a lovely, warm film".to_string()],
        vec!["so dull".to_string()],
    ];
    let probs = |ck: &Path| {
        let mut args = vec!["predict", "--model", s(&model), "--checkpoint", s(ck)];
        args.extend(sentence_args(&texts));
        predicted(&lorabert(&args), None, &labels, false)
    };
    let (before, after) = (probs(&ckpt), probs(&run));
    assert_eq!(before.len(), 6);
    assert_close("probabilities", &after, &before, 1e-6);
    let a = std::fs::read(ckpt.join("adapter_model.safetensors")).unwrap();
    let b = std::fs::read(run.join("best/adapter_model.safetensors")).unwrap();
    let names: Vec<String> = safetensors::SafeTensors::deserialize(&a)
        .unwrap()
        .names()
        .into_iter()
        .map(String::from)
        .collect();
    assert!(names.iter().any(|n| n.ends_with("lora_magnitude_vector")));
    for n in &names {
        assert_close(n, &read(&b, n).1, &read(&a, n).1, 1e-7);
    }
    // A PEFT folder as PEFT saved it: r = 4 on query and value, a classifier in modules_to_save.
    let peft = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft_seqcls");
    let run2 = work.join("run2");
    let out = lorabert(&[
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&csv),
        "--validation-file",
        s(&csv),
        "--init-adapter",
        s(&peft),
        "--max-steps",
        "2",
        "--epochs",
        "1",
        "--out",
        s(&run2),
    ]);
    assert!(out.contains("the run trains its own heads"), "{out}");
    let r2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run2.join("results.json")).unwrap()).unwrap();
    assert_eq!(r2["config"]["adapter"]["r"], 4);
    assert_eq!(
        r2["config"]["adapter"]["target_modules"],
        serde_json::json!(["query", "value"])
    );
    let _ = std::fs::remove_dir_all(work);
}

/// A small random BERT config in `dir` (hidden 32, intermediate 64, 4 heads, `layers` blocks,
/// MiniLM's vocabulary size so `bench`'s synthetic token ids fit), for the benches.
fn small_config(dir: &Path, layers: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("config.json");
    let json = serde_json::json!({
        "model_type": "bert", "vocab_size": 30522, "hidden_size": 32,
        "num_hidden_layers": layers, "num_attention_heads": 4, "intermediate_size": 64,
        "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12
    });
    std::fs::write(&cfg, json.to_string()).unwrap();
    cfg
}

/// The JSON values of a JSON Lines file.
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `bench --gemm` writes one JSON line per product and route with the shapes of the model's
/// config (here a small random one: hidden 32, intermediate 64, 4 heads, batch 2 × 8 tokens),
/// positive GFLOP/s, and the same products on both routes.
#[test]
fn bench_gemm_writes_the_step_products_of_the_model_shape() {
    let dir = tmp("bench-gemm");
    let cfg = small_config(&dir, 1);
    let out = dir.join("gemm.jsonl");
    lorabert(&[
        "bench",
        "--gemm",
        "--model-config",
        s(&cfg),
        "--batch-size",
        "2",
        "--seq-len",
        "8",
        "--threads",
        "2",
        "--output",
        s(&out),
    ]);
    let recs = json_lines(&out);
    let find = |product: &str, route: &str| {
        recs.iter()
            .find(|r| r["product"] == product && r["route"] == route)
            .unwrap_or_else(|| panic!("no {product} on {route}"))
    };
    for route in ["burn", "lorabert"] {
        let up = find("x·W intermediate.dense", route);
        assert_eq!(
            [&up["m"], &up["k"], &up["n"]],
            [16, 32, 64].map(serde_json::Value::from).each_ref()
        );
        let back = find("g·Wᵀ intermediate.dense", route);
        assert_eq!(
            [&back["m"], &back["k"], &back["n"]],
            [16, 64, 32].map(serde_json::Value::from).each_ref()
        );
        assert_eq!(back["rhs_transposed"], true);
        let att = find("q·kᵀ attention scores", route);
        assert_eq!(
            [&att["batch"], &att["m"], &att["k"], &att["n"]],
            [8, 8, 8, 8].map(serde_json::Value::from).each_ref()
        );
        let a8 = find("xᵀ·(g·Bᵀ) ∂A lora r=8", route);
        assert_eq!(
            [&a8["m"], &a8["k"], &a8["n"]],
            [32, 16, 8].map(serde_json::Value::from).each_ref()
        );
        assert_eq!(a8["lhs_transposed"], true);
    }
    assert_eq!(recs.len() % 2, 0);
    assert!(
        recs.iter()
            .all(|r| r["gflops"].as_f64().unwrap() > 0.0 && r["threads"] == 2)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bench --floor` records each configuration's floor: the step's products (counted as
/// `bench_floor::step_products` lists them) timed alone, and the step as a fraction of it.
#[test]
fn bench_floor_reports_the_step_against_its_products() {
    let dir = tmp("bench-floor");
    let cfg = small_config(&dir, 2);
    let out = dir.join("bench.jsonl");
    lorabert(&[
        "bench",
        "--floor",
        "--configs",
        "full,lora-r2,dora-r2",
        "--model-config",
        s(&cfg),
        "--batch-size",
        "2",
        "--seq-len",
        "8",
        "--warmup",
        "1",
        "--steps",
        "3",
        "--output",
        s(&out),
    ]);
    let recs = json_lines(&out);
    // Per block: 6 x·W, 6 g·Wᵀ (3 fewer in the first block under an adapter), 6 attention
    // products; full adds 6 xᵀ·g; an adapter 6 products per linear layer (5 in the first
    // block's q, k, v); DoRA one norm product per linear layer.
    for (rec, products) in recs.iter().zip([
        2 * 24,
        2 * 18 - 3 + 2 * 36 - 3,
        2 * 18 - 3 + 2 * 36 - 3 + 12,
    ]) {
        let floor = &rec["floor"];
        assert_eq!(floor["products"], products, "{rec}");
        let (secs, step) = (
            floor["seconds"].as_f64().unwrap(),
            rec["median_step_seconds"].as_f64().unwrap(),
        );
        assert!(secs > 0.0 && secs < step, "{rec}");
        let fraction = rec["floor_fraction"].as_f64().unwrap();
        assert!((fraction - secs / step).abs() < 1e-12, "{rec}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
