//! Token classification: `seqeval`'s metrics (golden values from
//! `tools/make_golden_token.py`), the CoNLL and JSON Lines readers on slices of CoNLL-2003
//! (`tools/make_token_fixtures.py`), word-piece alignment and windows, bad input, and a run
//! through the binary.

mod common;

use std::path::PathBuf;

use common::{lorabert, model_dir, ok, rng_lock, s, tiny_model, tmp};
use lorabert::data::conll::{JsonKeys, read_conll, read_token_jsonl};
use lorabert::model::BertTokenizer;
use lorabert::tasks::own::{self, DataSpec, TaskKind};
use lorabert::tasks::tags::{TagScheme, detect, scores};
use lorabert::tasks::{NO_TAG, PairEncoding};
use lorabert::train::results::RunResults;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/token")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<Vec<String>> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Exact to rounding: the same counts divided the same way.
const TOL: f64 = 1e-12;

#[test]
fn metrics_match_seqeval() {
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read("tests/golden/token.json").unwrap()).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let scheme = TagScheme::parse(case["scheme"].as_str().unwrap()).unwrap();
        let got = scores(&strings(&case["gold"]), &strings(&case["pred"]), scheme);
        let close = |what: &str, a: f64, b: &serde_json::Value| {
            let b = b.as_f64().unwrap();
            assert!((a - b).abs() < TOL, "{name} {what}: {a} vs seqeval {b}");
        };
        close("precision", got.micro.precision, &case["precision"]);
        close("recall", got.micro.recall, &case["recall"]);
        close("f1", got.micro.f1, &case["f1"]);
        close("accuracy", got.accuracy, &case["accuracy"]);
        let want = case["per_type"].as_object().unwrap();
        assert_eq!(got.per_type.len(), want.len(), "{name}: entity types");
        for (t, w) in want {
            let g = &got.per_type[t];
            close(&format!("{t} precision"), g.precision, &w["precision"]);
            close(&format!("{t} recall"), g.recall, &w["recall"]);
            close(&format!("{t} f1"), g.f1, &w["f1-score"]);
            assert_eq!(
                g.support as f64,
                w["support"].as_f64().unwrap(),
                "{name} {t}"
            );
        }
    }
}

#[test]
fn readers_agree_on_conll_tabs_and_json_lines() {
    let conll = read_conll(&read("train.conll"), "train.conll", None).unwrap();
    assert_eq!(conll.sentences.len(), 240);
    assert!(conll.docstarts > 0);
    let tabs = read_conll(&read("train_tab.conll"), "train_tab.conll", None).unwrap();
    assert_eq!(conll.sentences, tabs.sentences);
    let iob2 = read_conll(&read("train_iob2.conll"), "train_iob2.conll", None).unwrap();
    let names: Vec<String> = String::from_utf8(read("label_names.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let keys = JsonKeys {
        label_names: Some(&names),
        ..Default::default()
    };
    let jsonl = read_token_jsonl(&read("train.jsonl"), "train.jsonl", keys).unwrap();
    assert_eq!(jsonl.sentences.len(), 240);
    for (a, b) in iob2.sentences.iter().zip(&jsonl.sentences) {
        assert_eq!((&a.tokens, &a.tags), (&b.tokens, &b.tags));
    }
    // The published IOB1 tags and their IOB2 conversion are told apart.
    let d = |f: &lorabert::data::conll::TaggedFile| {
        detect(f.sentences.iter().map(|s| (s.line, &s.tags[..])), "f")
            .unwrap()
            .scheme
    };
    assert_eq!(d(&conll), TagScheme::Iob1);
    assert_eq!(d(&iob2), TagScheme::Iob2);
    // The POS column instead of the NER one.
    let pos = read_conll(&read("train.conll"), "train.conll", Some(1)).unwrap();
    assert_eq!(pos.sentences[0].tags[0], "NNP");
}

fn tok(max_len: usize) -> BertTokenizer {
    let bytes = std::fs::read(model_dir().join("tokenizer.json")).unwrap();
    BertTokenizer::from_bytes(&bytes, "tokenizer.json", max_len).unwrap()
}

fn spec(train: &str, validation: Option<&str>) -> DataSpec {
    DataSpec {
        train_file: fixture(train).display().to_string(),
        validation_file: validation.map(|v| fixture(v).display().to_string()),
        validation_split: 0.2,
        stride: Some(4),
        ..DataSpec::default()
    }
}

fn load(spec: &DataSpec, max_len: usize) -> lorabert::Result<own::OwnData> {
    let train = std::fs::read(&spec.train_file).unwrap();
    let val = spec
        .validation_file
        .as_ref()
        .map(|v| std::fs::read(v).unwrap());
    own::load(
        spec,
        &train,
        val.as_deref(),
        &tok(max_len),
        PairEncoding::Cross,
        42,
        None,
        None,
    )
}

#[test]
fn every_word_is_predicted_once_on_its_first_piece() {
    // 16 pieces per window: CoNLL's longer sentences are split.
    let data = load(&spec("train.conll", Some("dev.conll")), 16).unwrap();
    let TaskKind::TokenClassification {
        id2label,
        scheme,
        window,
        stride,
        ..
    } = &data.task.kind
    else {
        panic!("{:?}", data.task.kind)
    };
    assert_eq!((*scheme, *window, *stride), (TagScheme::Iob1, 16, 4));
    assert_eq!(id2label[0], "B-LOC", "tags sorted as run_ner.py sorts them");
    let dev = read_conll(&read("dev.conll"), "dev.conll", None).unwrap();
    let mut seen = vec![Vec::new(); dev.sentences.len()];
    let mut windows = 0;
    for e in &data.dev.examples {
        let w = e.words.as_ref().unwrap();
        assert!(e.a.ids.len() <= 16);
        assert_eq!(e.label_ids.len(), e.a.ids.len());
        for (&p, &g) in w.pieces.iter().zip(&w.gold) {
            // Each predicted word's first piece carries its gold tag; later pieces are out.
            assert_eq!(e.label_ids[p as usize], g);
            seen[w.sentence as usize].push(id2label[g as usize].clone());
        }
        windows += 1;
    }
    assert!(windows > dev.sentences.len(), "some sentences are split");
    for (s, got) in dev.sentences.iter().zip(seen) {
        assert_eq!(s.tags, got, "sentence at line {}", s.line);
    }
    let ignored = data.train.examples.iter().flat_map(|e| &e.label_ids);
    assert!(ignored.clone().any(|&t| t == NO_TAG));
    // Entities per type in the summary, as the README counts them (maximal spans).
    assert!(data.summary.train.counts["PER"] > 0);
    assert!(
        data.summary
            .warnings
            .iter()
            .any(|w| w.contains("split into windows")),
        "{:?}",
        data.summary.warnings
    );
    // --label-all-tokens: later pieces train on the word's tag, B- as I-.
    let mut all = spec("train.conll", Some("dev.conll"));
    all.label_all_tokens = true;
    let data = load(&all, 16).unwrap();
    let inside = data.train.examples.iter().map(|e| {
        e.label_ids[1..e.label_ids.len() - 1]
            .iter()
            .all(|&t| t != NO_TAG)
    });
    assert!(inside.into_iter().all(|x| x));
}

#[test]
fn json_lines_and_iob2_files_load_alike() {
    let names: Vec<String> = String::from_utf8(read("label_names.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut js = spec("train.jsonl", None);
    js.label_names = Some(names.clone());
    let a = load(&js, 64).unwrap();
    let b = load(&spec("train_iob2.conll", None), 64).unwrap();
    // The same task, but that the JSON Lines run keeps the names of its integer tags.
    let mut kind = b.task.kind.clone();
    if let TaskKind::TokenClassification { label_names, .. } = &mut kind {
        *label_names = names;
    }
    assert_eq!(a.task.kind, kind);
    assert_eq!(a.dev.examples.len(), b.dev.examples.len());
    for (x, y) in a.train.examples.iter().zip(&b.train.examples) {
        assert_eq!((&x.a.ids, &x.label_ids), (&y.a.ids, &y.label_ids));
    }
}

fn err(spec: &DataSpec) -> String {
    load(spec, 64).unwrap_err().to_string()
}

#[test]
fn bad_token_files_are_refused_naming_file_and_line() {
    let dir = tmp("bad-token");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let train = write(
        "t.conll",
        "EU NNP I-ORG\nrejects VBZ O\n\nPeter NNP I-PER\n",
    );
    // A validation tag the training file does not have, named with its line.
    let dev = write(
        "d.conll",
        "-DOCSTART- -X- O\n\nEU NNP I-ORG\nBerlin NNP I-LOC\n",
    );
    let e = err(&DataSpec {
        train_file: train.clone(),
        validation_file: Some(dev.clone()),
        ..DataSpec::default()
    });
    assert!(
        e.contains("d.conll line 4: tag `I-LOC` (word `Berlin`)"),
        "{e}"
    );
    // A token line with another column count.
    let ragged = write("r.conll", "EU NNP I-ORG\nrejects O\n");
    let e = err(&DataSpec {
        train_file: ragged,
        ..DataSpec::default()
    });
    assert!(
        e.contains("r.conll line 2: 2 column(s) where the file's token lines have 3"),
        "{e}"
    );
    // Only -DOCSTART-.
    let empty = write("e.conll", "-DOCSTART- -X- O O\n\n\n");
    assert!(
        err(&DataSpec {
            train_file: empty,
            ..DataSpec::default()
        })
        .contains("only -DOCSTART-")
    );
    // Token and tag lists of different lengths in JSON Lines.
    let js = write(
        "j.jsonl",
        "{\"tokens\": [\"a\"], \"ner_tags\": [\"O\"]}\n{\"tokens\": [\"a\", \"b\"], \"ner_tags\": [\"O\"]}\n",
    );
    let e = err(&DataSpec {
        train_file: js,
        ..DataSpec::default()
    });
    assert!(
        e.contains("j.jsonl line 2: 2 tokens (`tokens`) but 1 tags"),
        "{e}"
    );
    // Not UTF-8.
    let p = dir.join("n.conll");
    std::fs::write(&p, b"EU I-ORG\nM\xfcnchen I-LOC\n").unwrap();
    let e = err(&DataSpec {
        train_file: p.display().to_string(),
        ..DataSpec::default()
    });
    assert!(
        e.contains("n.conll line 2: byte column 2: the file is not UTF-8"),
        "{e}"
    );
    // A stride that leaves no room for new words.
    let mut wide = spec("train.conll", None);
    wide.stride = Some(62);
    assert!(err(&wide).contains("--stride 62 must be under"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// dev.conll as JSON Lines with integer tags (ids into label_names.txt, as a Hugging Face
/// dataset writes them), in a temporary file.
fn dev_as_ids_jsonl() -> PathBuf {
    let names: Vec<String> = String::from_utf8(read("label_names.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut jsonl = String::new();
    let conll = String::from_utf8(read("dev.conll")).unwrap();
    for block in conll.split("\n\n") {
        let (mut words, mut ids) = (Vec::new(), Vec::new());
        for line in block.lines().filter(|l| !l.trim().is_empty()) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols[0] != "-DOCSTART-" {
                words.push(cols[0]);
                let tag = cols[cols.len() - 1];
                ids.push(names.iter().position(|n| n == tag).unwrap());
            }
        }
        if !words.is_empty() {
            jsonl.push_str(&serde_json::json!({"tokens": words, "ner_tags": ids}).to_string());
            jsonl.push('\n');
        }
    }
    let path = tmp("dev-ids.jsonl");
    std::fs::write(&path, jsonl).unwrap();
    path
}

#[test]
fn train_on_conll_through_the_binary() {
    let _g = rng_lock();
    let model = tmp("tiny");
    tiny_model(&model);
    let out = tmp("ner-run");
    let (success, _, printed) = lorabert(&[
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&fixture("train.conll")),
        "--validation-file",
        s(&fixture("dev.conll")),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "5e-3",
        "--max-len",
        "32",
        "--out",
        s(&out),
    ]);
    assert!(success, "{printed}");
    // The detected scheme and the entity counts are printed.
    assert!(
        printed.contains("IOB1") && printed.contains("PER: 90"),
        "{printed}"
    );
    let results: RunResults =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let dev = results.epochs.last().unwrap().dev.own.as_ref().unwrap();
    assert_eq!(dev.metric_for_best_model, "f1");
    for m in ["f1", "precision", "recall", "accuracy", "f1/PER", "f1/LOC"] {
        let v = dev.get(m).unwrap_or_else(|| panic!("{m} missing: {dev:?}"));
        assert!((0.0..=1.0).contains(&v), "{m} {v}");
    }
    // Token accuracy of a trained head beats tagging everything O? At least it is measured
    // on every dev word: 80 sentences of dev.conll.
    assert!(dev.get("accuracy").unwrap() > 0.5);
    assert!(out.join("best/adapter_model.safetensors").is_file());
    // eval re-reads the validation file as the run did.
    let printed = ok(&[
        "eval",
        "--model",
        s(&model),
        "--checkpoint",
        s(&out),
        "--validation-file",
        s(&fixture("dev.conll")),
    ]);
    assert!(printed.contains("\"f1\""), "{printed}");
    // The same sentences as JSON Lines with integer tags (ids into label_names.txt, as a Hugging
    // Face dataset writes them) evaluate alike with --label-names, and are refused without.
    let dev_jsonl = dev_as_ids_jsonl();
    let eval_jsonl = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", s(&model), "--checkpoint", s(&out)];
        args.extend(["--validation-file", s(&dev_jsonl)]);
        args.extend(extra);
        lorabert(&args)
    };
    let (success, _, stderr) = eval_jsonl(&[]);
    assert!(!success && stderr.contains("--label-names"), "{stderr}");
    // A names file with a repeated or an empty name is refused, naming its line.
    for (names, says) in [
        ("O\nB-PER\nO\n", "line 3: `O` again"),
        ("O\n\nB-PER\n", "line 2: an empty name"),
    ] {
        let bad = tmp("bad-names.txt");
        std::fs::write(&bad, names).unwrap();
        let (success, _, stderr) = eval_jsonl(&["--label-names", s(&bad)]);
        assert!(!success && stderr.contains(says), "{stderr}");
        let _ = std::fs::remove_file(&bad);
    }
    let (success, from_ids, stderr) =
        eval_jsonl(&["--label-names", s(&fixture("label_names.txt"))]);
    assert!(success, "{stderr}");
    assert_eq!(
        from_ids, printed,
        "JSON Lines with integer tags vs the CoNLL file"
    );
    let _ = std::fs::remove_file(&dev_jsonl);
    let (success, printed, stderr) = lorabert(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&out),
        "--sentence",
        "Angela Merkel visited Paris.",
    ]);
    // predict prints each text's entities and tagged words as JSON.
    assert!(success, "{stderr}");
    let row: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(row["words"].as_array().unwrap().len(), 5, "{row}");
    // An ensemble of two token runs averages their tag probabilities and is evaluated as
    // one model (seqeval's metrics on the averaged predictions).
    let other = tmp("ner-run-2");
    // --label-names on a CoNLL file is not used, and the run says so.
    let (success, _, printed) = lorabert(&[
        "train",
        "--label-names",
        s(&fixture("label_names.txt")),
        "--model",
        s(&model),
        "--train-file",
        s(&fixture("train.conll")),
        "--validation-file",
        s(&fixture("dev.conll")),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "5e-3",
        "--max-len",
        "32",
        "--seed",
        "7",
        "--out",
        s(&other),
    ]);
    assert!(success, "{printed}");
    assert!(
        printed.contains("CoNLL file") && printed.contains("not used"),
        "{printed}"
    );
    let printed = ok(&[
        "ensemble",
        "--model",
        s(&model),
        "--checkpoint",
        s(&out),
        "--checkpoint",
        s(&other),
        "--validation-file",
        s(&fixture("dev.conll")),
    ]);
    let v: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let f1 = v["ensemble"]["own"]["f1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&f1), "{v}");
    assert!(
        v["ensemble"]["own"]["accuracy"].as_f64().unwrap() > 0.5,
        "{v}"
    );
    let _ = std::fs::remove_dir_all(&other);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&model);
}

/// `tools/make_golden_token_export.py`'s checkpoint and what transformers' pipeline and PEFT
/// compute from its exports.
fn export_golden() -> (PathBuf, serde_json::Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/token_export");
    let v = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    (dir.join("ckpt"), v)
}

#[test]
fn predicted_entities_match_the_transformers_pipeline() {
    let (ckpt, want) = export_golden();
    let model = model_dir();
    let sentences: Vec<String> = serde_json::from_value(want["sentences"].clone()).unwrap();
    let mut args = vec!["predict", "--model", s(&model), "--checkpoint", s(&ckpt)];
    for t in &sentences {
        args.extend(["--sentence", t.as_str()]);
    }
    let printed = ok(&args);
    let rows: Vec<serde_json::Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), sentences.len());
    let mut found = 0;
    for ((row, text), expected) in rows
        .iter()
        .zip(&sentences)
        .zip(want["entities"].as_array().unwrap())
    {
        let got = row["entities"].as_array().unwrap();
        let expected = expected.as_array().unwrap();
        assert_eq!(got.len(), expected.len(), "{text}: {got:?} vs {expected:?}");
        for (g, e) in got.iter().zip(expected) {
            for k in ["entity_group", "start", "end"] {
                assert_eq!(g[k], e[k], "{text}: {k}");
            }
            let (gs, es) = (g["score"].as_f64().unwrap(), e["score"].as_f64().unwrap());
            assert!((gs - es).abs() < 1e-4, "{text}: score {gs} vs {es}");
            let (a, b) = (
                e["start"].as_u64().unwrap() as usize,
                e["end"].as_u64().unwrap() as usize,
            );
            let span: String = text.chars().skip(a).take(b - a).collect();
            assert_eq!(g["word"].as_str().unwrap(), span);
            found += 1;
        }
    }
    assert!(found >= 3, "the golden checkpoint finds entities ({found})");
    // Pre-split words from a file: each word's tag and probability on its first piece, as
    // transformers and PEFT compute them from the exports.
    let dir = tmp("pred-words");
    std::fs::create_dir_all(&dir).unwrap();
    let words: Vec<Vec<String>> = serde_json::from_value(want["words"].clone()).unwrap();
    let input = dir.join("words.jsonl");
    let lines: Vec<String> = words
        .iter()
        .map(|w| serde_json::json!({ "tokens": w }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.join("tags.jsonl");
    ok(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&ckpt),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    let id2label = want["id2label"].as_object().unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    for (line, probs) in text.lines().zip(want["probs"].as_array().unwrap()) {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        for ((tag, score), p) in row["tags"]
            .as_array()
            .unwrap()
            .iter()
            .zip(row["scores"].as_array().unwrap())
            .zip(probs.as_array().unwrap())
        {
            let p: Vec<f64> = serde_json::from_value(p.clone()).unwrap();
            let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            assert_eq!(tag.as_str(), id2label[&best.to_string()].as_str());
            assert!((score.as_f64().unwrap() - p[best]).abs() < 1e-4);
        }
    }
    // The same words as CoNLL, tags only.
    let conll = dir.join("tags.conll");
    ok(&[
        "predict",
        "--model",
        s(&model),
        "--checkpoint",
        s(&ckpt),
        "--input",
        s(&input),
        "--output",
        s(&conll),
    ]);
    let back = read_conll(&std::fs::read(&conll).unwrap(), "tags.conll", None).unwrap();
    assert_eq!(back.sentences.len(), words.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exports_load_as_token_classification() {
    let (ckpt, want) = export_golden();
    let model = model_dir();
    let dir = tmp("token-export");
    let tf = dir.join("tf");
    ok(&[
        "export",
        "--model",
        s(&model),
        "--checkpoint",
        s(&ckpt),
        "--format",
        "transformers",
        "--output",
        s(&tf),
    ]);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tf.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "BertForTokenClassification");
    assert_eq!(cfg["id2label"], want["id2label"]);
    assert!(cfg.get("problem_type").is_none());
    let bytes = std::fs::read(tf.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = st.names().into_iter().map(String::from).collect();
    assert!(names.iter().any(|n| n == "classifier.weight"));
    assert!(
        !names.iter().any(|n| n.contains("pooler")),
        "BertForTokenClassification has no pooler"
    );
    let pf = dir.join("peft");
    ok(&[
        "export",
        "--model",
        s(&model),
        "--checkpoint",
        s(&ckpt),
        "--format",
        "peft",
        "--output",
        s(&pf),
    ]);
    let acfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pf.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(acfg["task_type"], "TOKEN_CLS");
    assert_eq!(acfg["modules_to_save"][0], "classifier");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_peft_token_classification_adapter_predicts_like_peft() {
    // `tools/make_golden_peft_tokcls.py`: made by PEFT, not by lorabert.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft_tokcls");
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let words: Vec<Vec<String>> = serde_json::from_value(want["words"].clone()).unwrap();
    let tmpd = tmp("peft-tokcls");
    std::fs::create_dir_all(&tmpd).unwrap();
    let input = tmpd.join("words.jsonl");
    let lines: Vec<String> = words
        .iter()
        .map(|w| serde_json::json!({ "tokens": w }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let printed = ok(&[
        "predict",
        "--model",
        s(&model_dir()),
        "--checkpoint",
        s(&dir.join("adapter")),
        "--input",
        s(&input),
    ]);
    let id2label = want["id2label"].as_object().unwrap();
    let mut checked = 0;
    for (line, probs) in printed.lines().zip(want["probs"].as_array().unwrap()) {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let tags = row["tags"].as_array().unwrap();
        let scores = row["scores"].as_array().unwrap();
        assert_eq!(tags.len(), probs.as_array().unwrap().len());
        for ((tag, score), p) in tags.iter().zip(scores).zip(probs.as_array().unwrap()) {
            let p: Vec<f64> = serde_json::from_value(p.clone()).unwrap();
            let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            assert_eq!(tag.as_str(), id2label[&best.to_string()].as_str());
            let d = (score.as_f64().unwrap() - p[best]).abs();
            assert!(d < 1e-5, "probability {} vs PEFT {} ({d})", score, p[best]);
            checked += 1;
        }
    }
    assert_eq!(checked, words.iter().map(Vec::len).sum::<usize>());
    let _ = std::fs::remove_dir_all(&tmpd);
}

/// A run trained on JSON Lines with integer tags keeps their names: `eval` reads integer tags
/// by them without `--label-names`, and refuses other names for the same ids.
#[test]
fn a_run_remembers_the_names_of_its_integer_tags() {
    let _g = rng_lock();
    let model = tmp("tiny-ids");
    tiny_model(&model);
    let (out, dev) = (tmp("ner-ids-run"), dev_as_ids_jsonl());
    let names = fixture("label_names.txt");
    ok(&[
        "train",
        "--model",
        s(&model),
        "--train-file",
        s(&fixture("train.jsonl")),
        "--label-names",
        s(&names),
        "--validation-file",
        s(&dev),
        "--max-steps",
        "2",
        "--batch-size",
        "16",
        "--max-len",
        "32",
        "--out",
        s(&out),
    ]);
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", s(&model), "--checkpoint", s(&out)];
        args.extend(["--validation-file", s(&dev)]);
        args.extend(extra);
        lorabert(&args)
    };
    let (success, remembered, stderr) = eval(&[]);
    assert!(success, "{stderr}");
    let (success, given, stderr) = eval(&["--label-names", s(&names)]);
    assert!(success, "{stderr}");
    assert_eq!(remembered, given);
    let reversed = tmp("reversed-names.txt");
    let mut r: Vec<String> = String::from_utf8(read("label_names.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    r.reverse();
    std::fs::write(&reversed, r.join("\n")).unwrap();
    let (success, _, stderr) = eval(&["--label-names", s(&reversed)]);
    assert!(
        !success && stderr.contains("differs from the names"),
        "{stderr}"
    );
    for p in [&reversed, &dev] {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&model);
}
