//! Sentence pooling as a sentence-transformers model folder says (`1_Pooling/config.json`, or
//! the folder `modules.json` names): mean or CLS, modes lorabert does not compute refused, a
//! Pooling module of another width refused, and the folder's pooling the default of `embed` and
//! a fresh `train`.

mod common;

use std::path::Path;

use common::*;

/// The pooling of a sentence-transformers `1_Pooling/config.json`: all-MiniLM-L6-v2's is mean,
/// a bge-style one CLS; modes lorabert does not compute, several modes or none are refused
/// naming the file.
#[test]
fn pooling_follows_the_sentence_transformers_config() {
    use lorabert::tasks::Pooling;
    let name = "1_Pooling/config.json";
    let minilm = std::fs::read(model_dir().join(name)).unwrap();
    assert_eq!(
        Pooling::from_sentence_transformers(&minilm, name, Some(384)).unwrap(),
        Pooling::Mean
    );
    let cfg = |modes: &[&str]| {
        let mut v = serde_json::json!({"word_embedding_dimension": 384});
        for m in [
            "cls_token",
            "mean_tokens",
            "max_tokens",
            "mean_sqrt_len_tokens",
        ] {
            v[format!("pooling_mode_{m}")] = serde_json::json!(modes.contains(&m));
        }
        v.to_string().into_bytes()
    };
    assert_eq!(
        Pooling::from_sentence_transformers(&cfg(&["cls_token"]), name, None).unwrap(),
        Pooling::Cls
    );
    assert_eq!(
        Pooling::from_sentence_transformers(br#"{"pooling_mode": "cls"}"#, name, Some(384))
            .unwrap(),
        Pooling::Cls
    );
    for (bad, says) in [
        (cfg(&["max_tokens"]), "pooling_mode_max_tokens"),
        (cfg(&["cls_token", "mean_tokens"]), "--pooling"),
        (cfg(&[]), "no pooling_mode_"),
        (b"{".to_vec(), "EOF"),
    ] {
        let e = Pooling::from_sentence_transformers(&bad, name, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(name) && e.contains(says), "{e}");
    }
    // A Pooling module of another model's width (bge-base's 768 beside MiniLM's 384).
    let e = Pooling::from_sentence_transformers(&cfg(&["cls_token"]), name, Some(768))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(name)
            && e.contains("word_embedding_dimension 384 but the model's hidden_size is 768"),
        "{e}"
    );
}

/// Without --pooling, `embed` and a fresh `train` pool as the model folder's
/// sentence-transformers Pooling config says (here CLS, as bge models), and say so.
#[test]
fn a_model_folders_pooling_config_is_the_default() {
    let _g = rng_lock();
    let model = tmp("tiny-cls");
    tiny_model(&model);
    std::fs::create_dir_all(model.join("1_Pooling")).unwrap();
    std::fs::write(
        model.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 16, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    let embed = |extra: &[&str]| {
        let out = tmp(&format!("pool{}.npy", extra.len()));
        let mut args = vec!["embed", "--model", s(&model), "--output", s(&out)];
        args.extend(["--sentence", "a lovely film", "--sentence", "Zürich"]);
        args.extend(extra);
        ok(&args);
        let b = std::fs::read(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        b
    };
    let default = embed(&[]);
    assert_eq!(default, embed(&["--pooling", "cls"]));
    assert_ne!(default, embed(&["--pooling", "mean"]));
    let out = tmp("pool-run");
    let (success, _, printed) = lorabert(&[
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/own/sst2.csv")),
        "--max-steps",
        "1",
        "--batch-size",
        "8",
        "--max-len",
        "32",
        "--out",
        s(&out),
    ]);
    assert!(success, "{printed}");
    assert!(printed.contains("pooling: cls"), "{printed}");
    let r: lorabert::train::RunResults =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r.config.pooling, lorabert::tasks::Pooling::Cls);
    let _ = std::fs::remove_dir_all(&out);
    // A modules.json whose Pooling folder is missing is an error, not a silent mean.
    std::fs::write(
        model.join("modules.json"),
        r#"[{"idx": 1, "name": "1", "path": "9_Gone", "type": "sentence_transformers.models.Pooling"}]"#,
    )
    .unwrap();
    let e = tmp("pool-gone.npy");
    let refused = || {
        lorabert(&[
            "embed",
            "--model",
            s(&model),
            "--sentence",
            "a",
            "--output",
            s(&e),
        ])
    };
    let (success, _, printed) = refused();
    assert!(
        !success && printed.contains("modules.json") && printed.contains("9_Gone"),
        "{printed}"
    );
    assert!(!e.exists());
    // A Pooling config of another width (copied from another model) is refused, naming it.
    std::fs::remove_file(model.join("modules.json")).unwrap();
    std::fs::write(
        model.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true}"#,
    )
    .unwrap();
    let (success, _, printed) = refused();
    assert!(
        !success
            && printed.contains("1_Pooling/config.json")
            && printed.contains("word_embedding_dimension 384 but the model's hidden_size is 16"),
        "{printed}"
    );
    assert!(!e.exists());
    let _ = std::fs::remove_dir_all(&model);
}
