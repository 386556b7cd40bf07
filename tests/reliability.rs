//! Faults: SIGTERM mid-epoch leaves a loadable checkpoint and `--resume` finishes with the same
//! result as an uninterrupted run; a NaN loss stops with the step and the last checkpoint (or is
//! skipped); a DoRA weight with an all-zero row stays finite; a run that fails before training
//! leaves no output folder it made; a reader that closes the output pipe early ends the program
//! quietly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use lorabert::model::{AdaptedLinear, AdapterKind};
use lorabert::train::RunResults;
use lorabert::train::resume::ResumeState;

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("lorabert-rel-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn train(model: &Path, out: &Path, extra: &[&str]) -> Command {
    train_sized(model, out, "2", "600", extra)
}

fn train_sized(model: &Path, out: &Path, epochs: &str, max_train: &str, extra: &[&str]) -> Command {
    let data =
        data_dir().expect("minBERT data not found (../shared/data/minbert or LORABERT_DATA)");
    let mut c = Command::new(env!("CARGO_BIN_EXE_lorabert"));
    c.args([
        "train",
        "--task",
        "sst",
        "--adapter",
        "dora",
        "--r",
        "2",
        "--epochs",
        epochs,
        "--batch-size",
        "4",
    ]);
    c.args([
        "--max-train",
        max_train,
        "--max-eval",
        "16",
        "--checkpoint-every",
        "7",
        "--threads",
        "1",
    ]);
    c.arg("--model")
        .arg(model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(out);
    c.args(extra);
    c
}

fn results(out: &Path) -> RunResults {
    serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn sigterm_then_resume_equals_uninterrupted() {
    let model = tmp("model");
    tiny_model(&model);
    let (straight, cut) = (tmp("straight"), tmp("cut"));
    let o = train(&model, &straight, &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let mut child = train(&model, &cut, &[]).spawn().unwrap();
    let t0 = Instant::now();
    while !cut.join("resume/state.json").is_file() && t0.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "a stopped run exits with 130");
    let st: ResumeState =
        serde_json::from_slice(&std::fs::read(cut.join("resume/state.json")).unwrap()).unwrap();
    let total = results(&straight).steps;
    assert!(
        st.step > 0 && st.step < total,
        "checkpoint at step {} of {total}",
        st.step
    );
    assert!(!results(&cut).finished);

    let data = data_dir().unwrap();
    // Other run flags on --resume are ignored (the results below stay bit-identical), and a
    // note names them with their saved values.
    let o = Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args(["train", "--threads", "1", "--resume"])
        .arg(&cut)
        .arg("--model")
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .args(["--lr", "0.5", "--batch-size", "16"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("note: --resume continues with the run's saved configuration; ignored: ")
            && log.contains("--lr (saved: 0.001)")
            && log.contains("--batch-size (saved: 4)"),
        "{log}"
    );
    // A CPU run probes no GPU or display: no `error:` line from a probe.
    assert!(!log.contains("XDG_RUNTIME_DIR"), "{log}");
    assert!(
        log.contains(&format!("resuming {} at step {}", cut.display(), st.step)),
        "{log}"
    );
    let (a, b) = (results(&straight), results(&cut));
    assert!(b.finished);
    assert_eq!(a.loss_curve, b.loss_curve, "same losses at every step");
    assert_eq!(a.best, b.best);
    for f in ["adapter_model.safetensors", "heads.safetensors"] {
        assert!(
            std::fs::read(straight.join("best").join(f)).unwrap()
                == std::fs::read(cut.join("best").join(f)).unwrap(),
            "{f} differs"
        );
    }
    assert!(
        !cut.join("resume").exists(),
        "a finished run removes its resume checkpoint"
    );
    for d in [model, straight, cut] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn nan_loss_stops_naming_step_and_checkpoint_or_is_skipped() {
    let model = tmp("model-nan");
    tiny_model(&model);
    let out = tmp("nan");
    let o = train(&model, &out, &["--debug-nan-at-step", "10"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("non-finite loss (NaN) at step 10; the last good checkpoint is from step 7"),
        "{err}"
    );
    assert!(err.contains("--resume"), "{err}");
    let st: ResumeState =
        serde_json::from_slice(&std::fs::read(out.join("resume/state.json")).unwrap()).unwrap();
    assert_eq!(st.step, 7);

    let out2 = tmp("nan-skip");
    let o = train(
        &model,
        &out2,
        &["--debug-nan-at-step", "10", "--skip-nonfinite"],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("skipped: non-finite loss (NaN) at step 10"),
        "{err}"
    );
    assert_eq!(results(&out2).skipped_batches, 1);
    for d in [model, out, out2] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn dora_with_an_all_zero_row_stays_finite() {
    let device = Device::flex().autodiff();
    let (d_in, d_out, r) = (8, 6, 2);
    // W^T [in, out] whose output row 3 (column 3 here) is all zero.
    let w: Vec<f32> = (0..d_in * d_out)
        .map(|i| {
            if i % d_out == 3 {
                0.0
            } else {
                ((i * 7 % 13) as f32 - 6.0) / 10.0
            }
        })
        .collect();
    let w = Tensor::<2>::from_data(TensorData::new(w, [d_in, d_out]), &device);
    for b_zero in [true, false] {
        let a = Tensor::<2>::from_data(
            TensorData::new(
                (0..d_in * r)
                    .map(|i| (i as f32 - 7.0) / 9.0)
                    .collect::<Vec<_>>(),
                [d_in, r],
            ),
            &device,
        );
        let b = if b_zero {
            Tensor::<2>::zeros([r, d_out], &device)
        } else {
            Tensor::<2>::ones([r, d_out], &device).mul_scalar(0.1)
        };
        let lin = AdaptedLinear::frozen(w.clone(), None).with_adapter_weights(
            AdapterKind::Dora,
            a,
            b,
            None,
            2.0,
            0.0,
        );
        let m = host(
            lin.adapter
                .as_ref()
                .unwrap()
                .lora_magnitude_vector
                .as_ref()
                .unwrap()
                .val(),
        );
        if b_zero {
            // The norm is clamped at 1e-6 (PEFT would divide 0 by 0 here and produce NaN).
            assert!(m[3] <= 1e-6, "magnitude of the zero row: {}", m[3]);
        }
        let x = Tensor::<2>::from_data(
            TensorData::new(
                (0..3 * d_in).map(|i| (i as f32).sin()).collect::<Vec<_>>(),
                [3, d_in],
            ),
            &device,
        );
        let y = lin.forward(x);
        let grads = y.clone().sum().backward();
        assert!(
            host(y).iter().all(|v| v.is_finite()),
            "output not finite (B zero: {b_zero})"
        );
        let ad = lin.adapter.as_ref().unwrap();
        for g in [
            ad.lora_a.val().grad(&grads).unwrap(),
            ad.lora_b.val().grad(&grads).unwrap(),
        ] {
            assert!(
                host(g).iter().all(|v| v.is_finite()),
                "gradient not finite (B zero: {b_zero})"
            );
        }
        let gm = ad
            .lora_magnitude_vector
            .as_ref()
            .unwrap()
            .val()
            .grad(&grads)
            .unwrap();
        assert!(host(gm).iter().all(|v| v.is_finite()));
    }
}

#[test]
fn second_run_on_a_busy_output_folder_is_refused() {
    let model = tmp("model-lock");
    tiny_model(&model);
    let out = tmp("lock");
    let mut first = train_sized(&model, &out, "50", "600", &[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = out.join(".lorabert.lock");
    let t0 = Instant::now();
    while !lock.is_file() && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(lock.is_file(), "the first run took no lock");
    let o = train(&model, &out, &[]).output().unwrap();
    let _ = first.kill();
    let _ = first.wait();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("in use by another lorabert process") && err.contains(&first.id().to_string()),
        "{err}"
    );
    // The killed run's lock is stale now: a new run takes it over; what the killed run left
    // (results.json, a resume checkpoint) is not replaced without --overwrite.
    if out.join("results.json").is_file() {
        let o = train_sized(&model, &out, "1", "16", &[]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("--overwrite"), "{err}");
    }
    let o = train_sized(&model, &out, "1", "16", &["--overwrite"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!lock.exists(), "the lock is removed at the end of a run");
    for d in [model, out] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// An adapter is not applied twice (peft#1355's trap): `merge` records what it merged
/// (`lorabert_merged.json`), and `merge` or `predict` of the same checkpoint on the merged
/// folder, or of another adapter trained on the same base, is refused naming the folders;
/// `--force` applies it anyway. The merged folder alone predicts what the run predicts.
#[test]
fn an_adapter_is_not_applied_twice() {
    let model = tmp("twice-model");
    tiny_model(&model);
    let (a, b, merged) = (tmp("twice-a"), tmp("twice-b"), tmp("twice-merged"));
    for (out, seed) in [(&a, "1"), (&b, "2")] {
        let o = train_sized(&model, out, "1", "32", &["--lr", "0.05", "--seed", seed])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_lorabert"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let p = |x: &Path| x.to_str().unwrap().to_string();
    // `predict --model MODEL --checkpoint CK --sentence "A fine film." EXTRA..`.
    let predict = |model: &Path, ck: &Path, extra: &[&str]| {
        let (model, ck) = (p(model), p(ck));
        let mut args = vec![
            "predict",
            "--model",
            &model,
            "--checkpoint",
            &ck,
            "--sentence",
            "A fine film.",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (ok, _, e) = run(&[
        "merge",
        "--model",
        &p(&model),
        "--checkpoint",
        &p(&a),
        "--output",
        &p(&merged),
    ]);
    assert!(ok, "{e}");
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(merged.join("lorabert_merged.json")).unwrap())
            .unwrap();
    assert_eq!(marker["base_model"], p(&model));
    assert_eq!(marker["adapter_sha256"].as_str().unwrap().len(), 64);
    // The same adapter again: merge and predict refuse.
    let again = p(&tmp("twice-again"));
    let (ok, _, e) = run(&[
        "merge",
        "--model",
        &p(&merged),
        "--checkpoint",
        &p(&a),
        "--output",
        &again,
    ]);
    assert!(
        !ok && e.contains("already holds this adapter") && e.contains("--force"),
        "{e}"
    );
    let (ok, _, e) = predict(&merged, &a, &[]);
    assert!(!ok && e.contains("already holds this adapter"), "{e}");
    // Another adapter trained on the same base: refused too.
    let (ok, _, e) = predict(&merged, &b, &[]);
    assert!(!ok && e.contains("the adapter was trained on"), "{e}");
    // An adapter trained on a copy of the base under another name: the same weights (the
    // merge recorded their SHA-256), refused too.
    let copy = tmp("twice-model-copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(&model).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
    }
    let c = tmp("twice-c");
    let o = train_sized(&copy, &c, "1", "32", &["--lr", "0.05", "--seed", "3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (ok, _, e) = predict(&merged, &c, &[]);
    assert!(!ok && e.contains("the adapter was trained on"), "{e}");
    // --force applies it, with a warning.
    let (ok, _, e) = predict(&merged, &a, &["--force"]);
    assert!(ok && e.contains("warning (--force)"), "{e}");
    // The run on its base and the merged folder's own heads predict alike.
    let (ok, base_out, e) = predict(&model, &a, &[]);
    assert!(ok, "{e}");
    let (ok, merged_out, e) = run(&[
        "predict",
        "--checkpoint",
        &p(&merged),
        "--model",
        &p(&merged),
        "--sentence",
        "A fine film.",
    ]);
    assert!(ok, "{e}");
    let probs = |s: &str| -> Vec<f64> {
        let v: serde_json::Value = serde_json::from_str(s.lines().next().unwrap()).unwrap();
        v["probabilities"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (x, y) = (probs(&base_out), probs(&merged_out));
    assert!(
        x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-4),
        "{x:?} vs {y:?}"
    );
    for d in [model, copy, a, b, c, merged] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A checkpoint whose heads read BERT's pooler, evaluated on a base without one (`eval --model`
/// another folder): an error naming the pooler, not the panic `artifacts::restore` reached
/// before (it skipped the checks a new run makes).
#[test]
fn pooler_heads_on_a_base_without_a_pooler_is_an_error() {
    // MiniLM has a pooler (the tiny test model has none).
    let model = model_dir();
    let run = tmp("nopool-run");
    let o = train_sized(
        &model,
        &run,
        "1",
        "8",
        &["--pooling", "pooler", "--max-steps", "1", "--max-len", "16"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The same base without pooler.dense.
    let bare = tmp("nopool-bare");
    std::fs::create_dir_all(&bare).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model.join(f), bare.join(f)).unwrap();
    }
    let st = std::fs::read(model.join("model.safetensors")).unwrap();
    let t = safetensors::SafeTensors::deserialize(&st).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = t
        .tensors()
        .into_iter()
        .filter(|(k, _)| !k.contains("pooler"))
        .collect();
    std::fs::write(
        bare.join("model.safetensors"),
        safetensors::serialize(kept, None).unwrap(),
    )
    .unwrap();
    for args in [
        vec!["eval", "--checkpoint"],
        vec!["predict", "--sentence", "A fine film.", "--checkpoint"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_lorabert"))
            .args(&args)
            .arg(&run)
            .arg("--model")
            .arg(&bare)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(!e.contains("panicked"), "{e}");
        assert!(
            e.contains("this base model has no pooler (pooler.dense)"),
            "{e}"
        );
    }
    for d in [run, bare] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Ctrl-C while `embed` writes leaves neither a partial output nor its temporary file (and an
/// output from before stays as it was).
#[test]
fn interrupted_embed_leaves_no_temporary_file() {
    let model = tmp("embed-int-model");
    tiny_model(&model);
    let dir = tmp("embed-int");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("lines.txt");
    let lines: Vec<String> = (0..300_000)
        .map(|i| format!("sentence number {i}"))
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.join("emb.npy");
    std::fs::write(&out, b"before").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args([
            "embed",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
        ])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let temp = dir.join(format!(".emb.npy.tmp-{}", child.id()));
    let t0 = Instant::now();
    while !temp.exists() && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(temp.exists(), "embed never began writing");
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "an interrupted embed exits with 130"
    );
    assert!(!temp.exists(), "the temporary file is left behind");
    assert_eq!(std::fs::read(&out).unwrap(), b"before");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&model);
}

/// A run refused at its data (here a label column that does not exist) removes the output
/// folder it created; a folder that was there before stays, with what it held.
#[test]
fn a_run_that_fails_before_training_leaves_no_folder_it_made() {
    let model = tmp("fail-model");
    tiny_model(&model);
    let pairs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/own/sst2.csv");
    let run = |out: &Path| {
        lorabert(&[
            "train",
            "--model",
            s(&model),
            "--train-file",
            s(&pairs),
            "--label-column",
            "no_such_column",
            "--out",
            s(out),
        ])
    };
    let fresh = tmp("fail-fresh");
    let (success, _, stderr) = run(&fresh);
    assert!(!success && stderr.contains("no_such_column"), "{stderr}");
    assert!(!fresh.exists(), "{} was left behind", fresh.display());
    let kept = tmp("fail-kept");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::write(kept.join("notes.txt"), "mine").unwrap();
    let (success, _, stderr) = run(&kept);
    assert!(!success, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(kept.join("notes.txt")).unwrap(),
        "mine"
    );
    let left: Vec<_> = std::fs::read_dir(&kept)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("notes.txt")],
        "only the user's file stays"
    );
    // --exact-precision with f32 says it has no effect; a byte-order mark is not part of the
    // first sentence of --input.
    let input = tmp("bom.txt");
    std::fs::write(&input, "\u{feff}hi there\nsecond\n").unwrap();
    let out = tmp("exact.jsonl");
    let (success, _, stderr) = lorabert(&[
        "embed",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--exact-precision",
        "--output",
        s(&out),
    ]);
    assert!(success, "{stderr}");
    assert!(
        stderr.contains("--exact-precision only applies to --precision f16"),
        "{stderr}"
    );
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["sentence"], "hi there");
    for d in [model, kept] {
        let _ = std::fs::remove_dir_all(d);
    }
    for f in [input, out] {
        let _ = std::fs::remove_file(f);
    }
}

/// `lorabert search ... --json | head -1`: the reader closes the pipe before the program prints;
/// the program ends by SIGPIPE, as Unix tools do, not with a panic and a backtrace.
#[cfg(unix)]
#[test]
fn a_closed_output_pipe_ends_the_program_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let model = tmp("pipe-model");
    tiny_model(&model);
    let corpus = tmp("pipe-corpus.txt");
    let lines: Vec<String> = (0..200).map(|i| format!("document number {i}")).collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lorabert"))
        .args([
            "search",
            "--json",
            "--top-k",
            "200",
            "--query",
            "a document",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--corpus")
        .arg(&corpus)
        .arg("--cache-dir")
        .arg(tmp("pipe-cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the model has loaded.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "{stderr}");
    for p in [model, corpus, tmp("pipe-cache")] {
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
    }
}
