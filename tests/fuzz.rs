//! Time-bounded fuzzing of every parser of untrusted input with proptest generators: the
//! minBERT readers, the safetensors model loader, config.json, adapter_config.json + adapter
//! weights, heads, and the share-link decoder. Each target must return `Ok` or `Err`, never
//! panic. Budget per target: `LORABERT_FUZZ_SECONDS` (default 20).

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use lorabert::adapter::{LoraConfig, apply_adapters, peft};
use lorabert::data::{PairLabel, read_pairs, read_sst};
use lorabert::model::init::InitRng;
use lorabert::model::{Bert, BertConfig, load_bert};
use lorabert::report::share;

fn budget() -> Duration {
    let s = std::env::var("LORABERT_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20.0);
    Duration::from_secs_f64(s)
}

/// Mutations of a valid input: bit flips, byte overwrites, truncation, duplication, insertion of
/// "interesting" bytes (tabs, quotes, newlines, 0xff, large digits).
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = seed.len().max(1);
    let ops = prop::collection::vec(
        (
            0..6u8,
            0..n,
            any::<u8>(),
            prop::sample::select(vec![
                b'\t', b'"', b'\n', 0xff, b'9', b'{', b'[', 0, b'\\', b'e',
            ]),
        ),
        1..8,
    );
    (Just(seed), ops).prop_map(|(mut v, ops)| {
        for (op, pos, byte, special) in ops {
            if v.is_empty() {
                v.push(byte);
                continue;
            }
            let p = pos % v.len();
            match op {
                0 => v[p] ^= 1 << (byte % 8),
                1 => v[p] = byte,
                2 => v.truncate(p),
                3 => {
                    let tail = v[p..].to_vec();
                    v.extend_from_slice(&tail[..tail.len().min(64)]);
                }
                4 => v.insert(p, special),
                _ => {
                    for _ in 0..(byte % 12) {
                        v.insert(p, b'9');
                    }
                }
            }
        }
        v
    })
}

fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let muts: Vec<BoxedStrategy<Vec<u8>>> = seeds.into_iter().map(|s| mutated(s).boxed()).collect();
    prop_oneof![
        3 => prop::strategy::Union::new(muts),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Runs `check` on generated inputs until the time budget is spent; fails on the first panic.
fn fuzz(name: &str, strategy: impl Strategy<Value = Vec<u8>>, check: impl Fn(&[u8])) -> usize {
    let mut runner = TestRunner::new(Config {
        rng_seed: proptest::test_runner::RngSeed::Fixed(7),
        ..Config::default()
    });
    let deadline = Instant::now() + budget();
    let mut n = 0;
    while Instant::now() < deadline {
        let input = strategy.new_tree(&mut runner).expect("generate").current();
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            panic!(
                "{name}: panicked on input (hex) {}",
                input.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
        }
        n += 1;
    }
    eprintln!("{name}: {n} inputs, no panic");
    assert!(n > 0);
    n
}

#[test]
fn fuzz_data_readers() {
    let sst =
        b"\tid\tsentence\tsentiment\n0\tab12\t A \"good\" film .\t3\n1\tcd34\tbad\t0\n".to_vec();
    let test = b"0\t\tid\tsentence\n1\t0.0\tab\t x\n".to_vec();
    let quora = b"\tid\tsentence1\tsentence2\tis_duplicate\n5\tx1\t\"\"\"Why?\"\"\"\tHow?\t1.0\n6\tx2\ta\tb\t\n".to_vec();
    let sts = b"\tid\tsentence1\tsentence2\tsimilarity\n1\ts\tA man.\tA dog.\t2.5\n".to_vec();
    fuzz("data readers", inputs(vec![sst, test, quora, sts]), |b| {
        let _ = read_sst(b, "f", true);
        let _ = read_sst(b, "f", false);
        let _ = read_pairs(b, "f", PairLabel::Paraphrase);
        let _ = read_pairs(b, "f", PairLabel::Similarity);
        let _ = read_pairs(b, "f", PairLabel::None);
    });
}

fn tiny_bytes() -> (BertConfig, Vec<u8>) {
    let cfg = BertConfig::tiny(20, 4, 1, 2);
    let device = Device::flex();
    let bert = Bert::random(&cfg, &device, &mut InitRng::new(0));
    (
        cfg,
        pollster::block_on(lorabert::train::artifacts::bert_safetensors(&bert)).unwrap(),
    )
}

#[test]
fn fuzz_safetensors_model_loader() {
    let (cfg, bytes) = tiny_bytes();
    // A header claiming huge shapes and offsets.
    let huge = br#"{"embeddings.word_embeddings.weight":{"dtype":"F32","shape":[1099511627776,4],"data_offsets":[0,17592186044416]}}"#;
    let mut evil = (huge.len() as u64).to_le_bytes().to_vec();
    evil.extend_from_slice(huge);
    let device = Device::flex();
    fuzz("model.safetensors", inputs(vec![bytes, evil]), |b| {
        let _ = load_bert(&cfg, b, "model.safetensors", &device);
    });
}

#[test]
fn fuzz_config_json() {
    let seed = std::fs::read(common::model_dir().join("config.json")).unwrap();
    fuzz(
        "config.json",
        inputs(vec![
            seed,
            br#"{"hidden_size": 384, "num_attention_heads": 12, "vocab_size": 1e30}"#.to_vec(),
        ]),
        |b| {
            if let Ok(s) = std::str::from_utf8(b) {
                let _ = BertConfig::from_json(s, "config.json");
            }
        },
    );
}

#[test]
fn fuzz_adapter_config_and_weights() {
    let device = Device::flex();
    let cfg = BertConfig::tiny(20, 4, 1, 2);
    let lcfg = LoraConfig {
        r: 2,
        use_dora: true,
        target_modules: vec!["query".into(), "output.dense".into()],
        ..Default::default()
    };
    let mut rng = InitRng::new(0);
    let bert = Bert::random(&cfg, &device, &mut rng);
    let bert = apply_adapters(bert, &lcfg, &mut rng, &device).unwrap();
    let st = pollster::block_on(peft::adapter_safetensors(&bert)).unwrap();
    let json = peft::adapter_config_json(&lcfg, "tiny").into_bytes();
    let base = Bert::random(&cfg, &device, &mut rng);
    // Fuzz the JSON with valid weights, and the weights with valid JSON.
    fuzz("adapter_config.json", inputs(vec![json.clone()]), |b| {
        if let Ok(s) = std::str::from_utf8(b) {
            let _ = peft::load_adapter(
                base.clone(),
                s,
                "adapter_config.json",
                &st,
                "adapter_model.safetensors",
            );
        }
    });
    let json = String::from_utf8(json).unwrap();
    fuzz("adapter_model.safetensors", inputs(vec![st.clone()]), |b| {
        let _ = peft::load_adapter(
            base.clone(),
            &json,
            "adapter_config.json",
            b,
            "adapter_model.safetensors",
        );
    });
}

#[test]
fn fuzz_share_link_decoder() {
    let payload = share::SharePayload {
        v: 1,
        model: "m".into(),
        rows: vec![share::ShareRow {
            task: "sst".into(),
            adapter: "lora".into(),
            targets: "all-linear".into(),
            r: 1,
            precision: "f32".into(),
            seed: 1,
            score: 0.5,
            seconds_per_epoch: 1.0,
            peak_memory_bytes: 1,
            trainable_params: 1,
            metric: None,
            config: None,
        }],
        data: None,
        model_url: None,
    };
    let link = share::link("http://h/", &payload).unwrap().into_bytes();
    fuzz("share link", inputs(vec![link]), |b| {
        let s = String::from_utf8_lossy(b);
        if let Ok(p) = share::decode(&s) {
            // Whatever decodes is valid and re-encodes.
            share::encode(&p).expect("a decoded payload re-encodes");
        }
    });
}
