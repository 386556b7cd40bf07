//! An embedding run's checkpoint in sentence-transformers: `SentenceTransformer(base)` with the
//! run's `best/` adapter loaded gives the embeddings `lorabert embed --checkpoint` gives.
//!
//! `tests/golden/st_adapter/{lora,dora}` are `best/` folders of `lorabert train --task-type
//! embedding` runs on all-MiniLM-L6-v2; `expected.json` holds what sentence-transformers 6.3
//! computed after loading each (`tools/make_golden_st_adapter.py`: LoRA through
//! `SentenceTransformer.load_adapter`; DoRA through PEFT's `PeftModel.from_pretrained`, since
//! transformers 5.25's `load_adapter` leaves DoRA magnitudes at their initial value, for
//! PEFT's own adapters too). Also checked: lorabert writes those folders today exactly as they
//! are committed (same tensors, same configuration), so the comparison covers the writer.

mod common;

use burn::tensor::Device;
use common::embed::{json_matrix, json_strs};
use common::*;
use lorabert::adapter::peft;
use lorabert::model::{BertConfig, load_bert};

fn expected() -> serde_json::Value {
    serde_json::from_slice(&golden("st_adapter/expected.json")).unwrap()
}

fn case_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/st_adapter")
        .join(name)
}

/// `lorabert embed --checkpoint FOLDER --normalize` equals sentence-transformers' `encode`
/// after loading the adapter (1e-5 per component; unit-norm rows), and differs from the base
/// model's (so the adapter is applied).
#[test]
fn embed_with_a_run_adapter_matches_sentence_transformers() {
    let g = expected();
    let sentences = json_strs(&g["sentences"]);
    let base = json_matrix(&g["base"]).concat();
    let model = model_dir();
    for name in ["lora", "dora"] {
        let out = tmp(&format!("{name}.safetensors"));
        let dir = case_dir(name);
        let mut args = vec![
            "embed",
            "--model",
            s(&model),
            "--checkpoint",
            s(&dir),
            "--normalize",
            "--output",
            s(&out),
        ];
        for t in &sentences {
            args.extend(["--sentence", t]);
        }
        ok(&args);
        let (shape, got) = read(&std::fs::read(&out).unwrap(), "sentence_embedding");
        assert_eq!(shape, vec![sentences.len(), 384], "{name}");
        let want = json_matrix(&g["cases"][name]["embeddings"]).concat();
        assert_close(name, &got, &want, 1e-5);
        assert!(
            max_abs_diff(&got, &base) > 1e-3,
            "{name}: the adapter does not change the embeddings"
        );
    }
    // The reason DoRA goes through PEFT's loader in the script still holds when it is rerun.
    assert_eq!(
        g["cases"]["dora"]["load_adapter_drops_the_magnitudes"],
        serde_json::json!(true)
    );
}

/// Loading each committed folder and saving it again gives the same tensors (names, shapes,
/// values) and the same `adapter_config.json` (but `base_model_name_or_path`, the folder the
/// run was trained from): what sentence-transformers loaded is what lorabert writes.
#[test]
fn the_committed_folders_are_what_lorabert_writes() {
    let device = Device::flex();
    let dir = model_dir();
    let cfg = BertConfig::from_json(
        &std::fs::read_to_string(dir.join("config.json")).unwrap(),
        "config.json",
    )
    .unwrap();
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    for name in ["lora", "dora"] {
        let folder = case_dir(name);
        let config_json = std::fs::read_to_string(folder.join("adapter_config.json")).unwrap();
        let tensors = std::fs::read(folder.join("adapter_model.safetensors")).unwrap();
        let bert = load_bert(&cfg, &weights, "model.safetensors", &device).unwrap();
        let loaded = peft::load_adapter(bert, &config_json, "config", &tensors, "weights").unwrap();
        assert!(loaded.notes.is_empty(), "{name}: {:?}", loaded.notes);
        let saved = pollster::block_on(peft::adapter_safetensors(&loaded.bert)).unwrap();
        let (old, new) = (
            safetensors::SafeTensors::deserialize(&tensors).unwrap(),
            safetensors::SafeTensors::deserialize(&saved).unwrap(),
        );
        let mut names: Vec<String> = old.names().into_iter().map(String::from).collect();
        let mut again: Vec<String> = new.names().into_iter().map(String::from).collect();
        names.sort();
        again.sort();
        assert_eq!(names, again, "{name}: tensor names");
        for k in &names {
            assert_eq!(
                old.tensor(k).unwrap().shape(),
                new.tensor(k).unwrap().shape(),
                "{name}: {k}"
            );
            assert_close(k, &read(&tensors, k).1, &read(&saved, k).1, 0.0);
        }
        let mut want: serde_json::Value = serde_json::from_str(&config_json).unwrap();
        let mut got: serde_json::Value =
            serde_json::from_str(&peft::adapter_config_json(&loaded.cfg, "base")).unwrap();
        for v in [&mut want, &mut got] {
            v.as_object_mut().unwrap().remove("base_model_name_or_path");
        }
        assert_eq!(got, want, "{name}: adapter_config.json");
    }
}
