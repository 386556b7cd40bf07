//! The inference path of evaluation and `embed` (issue 32, item 2): each distinct text encoded
//! once in length-sorted batches ([`lorabert::train::texts`]) gives the predictions of the
//! example batches the model trains on, and batches run side by side on the CPU
//! ([`lorabert::kernels::batches`]) give the same bits as one after another.

mod common;

use std::sync::Arc;

use burn::tensor::Device;
use common::{adapter, max_abs_diff, rng_lock};
use lorabert::data::length_batches;
use lorabert::model::init::InitRng;
use lorabert::model::{Bert, BertConfig, Encoded};
use lorabert::tasks::{
    HeadsConfig, Kind, MultitaskModel, PairEncoding, Pooling, Prepared, Task, TaskData,
};
use lorabert::train::predict;
use lorabert::train::texts::run_batches;

/// A text of `n` filler tokens between `[CLS]` (1) and `[SEP]` (2), drawn from `seed`.
fn text(seed: usize, n: usize) -> Encoded {
    let mut ids = vec![1u32];
    ids.extend((0..n).map(|j| 20 + ((seed * 7 + j * 3) % 40) as u32));
    ids.push(2);
    Encoded {
        type_ids: vec![0; ids.len()],
        ids,
        truncated: false,
    }
}

/// `n` pairs of texts of 1 to 23 tokens; every third pair's first text repeats an earlier one
/// (as Quora's dev questions repeat), so distinct texts are fewer than rows. Cross-encoded
/// pairs are one sequence, `[CLS] a [SEP] b [SEP]` with segment ids 0 then 1, as the tokenizer
/// gives them.
fn pairs(kind: Arc<dyn Kind>, n: usize, encoding: PairEncoding) -> TaskData {
    let examples = (0..n)
        .map(|i| {
            let first = if i % 3 == 2 { i / 3 } else { i };
            let a = text(first, 1 + (first * 5) % 23);
            let b = text(1000 + i, 1 + (i * 11) % 17);
            let (a, b) = match encoding {
                PairEncoding::Bi => (a, Some(b)),
                PairEncoding::Cross => {
                    let mut joint = a;
                    joint.type_ids.extend(vec![1; b.ids.len() - 1]);
                    joint.ids.extend(&b.ids[1..]);
                    (joint, None)
                }
            };
            Prepared {
                id: format!("p{i}"),
                a,
                b,
                label: (i % 2) as f32,
                label_ids: Vec::new(),
                negatives: Vec::new(),
                words: None,
            }
        })
        .collect();
    TaskData {
        kind,
        examples,
        truncated: 0,
        skipped_rows: 0,
    }
}

/// A tiny random encoder with a DoRA adapter and the minBERT heads, in inference mode.
fn model(encoding: PairEncoding) -> MultitaskModel {
    let device = Device::flex();
    let bcfg = BertConfig::tiny(64, 16, 2, 2);
    let mut rng = InitRng::new(3);
    let bert = Bert::random(&bcfg, &device, &mut rng);
    let bert =
        lorabert::adapter::apply_adapters(bert, &adapter("dora", 2).unwrap(), &mut rng, &device)
            .unwrap();
    let heads = HeadsConfig {
        tasks: vec![Task::Sst, Task::Para, Task::Sts],
        pooling: Pooling::Mean,
        pair_encoding: encoding,
        head_dropout: 0.0,
        hidden_size: 16,
        own: None,
    };
    MultitaskModel::new(bert, &heads, &mut rng, &device).unwrap()
}

/// The predictions of batches of examples as training builds them (both texts of a pair padded
/// together), in file order.
fn by_example_batches(model: &MultitaskModel, data: &TaskData, batch: usize) -> Vec<f32> {
    let device = Device::flex();
    let kind = data.kind.as_ref();
    let idx: Vec<usize> = (0..data.examples.len()).collect();
    let batches: Vec<&[usize]> = idx.chunks(batch).collect();
    let outs = pollster::block_on(run_batches(&device, &batches, |b| {
        let x = data.batch(b, 0, &device).x;
        kind.predictions(model.outputs(kind, &x))
    }))
    .unwrap();
    outs.concat()
}

#[test]
fn distinct_texts_encoded_once_predict_as_example_batches_do() {
    let _rng = rng_lock();
    for encoding in [PairEncoding::Bi, PairEncoding::Cross] {
        let m = model(encoding);
        for task in [Task::Para, Task::Sts] {
            let data = pairs(lorabert::tasks::kinds::minbert(task), 45, encoding);
            let want = by_example_batches(&m, &data, 7);
            let got = pollster::block_on(predict(&m, &data, 8, 0)).unwrap();
            assert_eq!(got.values.len(), want.len());
            // Only the padding differs (masked out): rounding of sums over other lengths.
            let d = max_abs_diff(&got.values, &want);
            assert!(d < 1e-5, "{encoding:?} {task:?}: {d}");
        }
    }
}

#[test]
fn side_by_side_batches_give_the_bits_of_one_after_another() {
    let _rng = rng_lock();
    let m = model(PairEncoding::Bi);
    let data = pairs(
        lorabert::tasks::kinds::minbert(Task::Para),
        60,
        PairEncoding::Bi,
    );
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| pollster::block_on(predict(&m, &data, 4, 0)).unwrap().values)
    };
    let one = on(1);
    let two = on(2);
    assert_eq!(one.len(), 60);
    assert!(
        one.iter()
            .zip(&two)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

#[test]
fn length_batches_keep_order_and_bound_count_and_tokens() {
    let lens = [3usize, 1, 7, 2, 9, 4, 4, 100];
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| lens[i]);
    let b = length_batches(&order, |i| lens[i], 3, 12);
    // Longest first: 100 alone (over the budget, but a batch holds at least one), 9 and 7
    // alone (two of them exceed 12 rows), then 3 x 4 = 12 rows: [3, 4, 4], then [1, 2].
    let lens_of = |s: &[usize]| s.iter().map(|&i| lens[i]).collect::<Vec<_>>();
    let got: Vec<Vec<usize>> = b.iter().map(|s| lens_of(s)).collect();
    assert_eq!(
        got,
        vec![vec![100], vec![9], vec![7], vec![3, 4, 4], vec![1, 2]]
    );
    let mut all: Vec<usize> = b.concat();
    all.sort();
    assert_eq!(all, (0..lens.len()).collect::<Vec<_>>());
    assert!(length_batches(&[], |_: usize| 1, 3, 12).is_empty());
}
