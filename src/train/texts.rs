//! Inference over texts rather than examples: a sentence, pair or embedding kind's outputs come
//! from each text's pooled state alone ([`Kind::forward_pooled`]), so evaluation encodes every
//! distinct text of the data once (a Quora dev question that appears in several pairs, an
//! anchor shared by several rows), in batches of texts of similar length, and applies the head
//! to the pooled rows. A bi-encoded pair batch otherwise pads both sentences of every pair to
//! the longest of the batch: on Quora's dev file 972k token rows against 607k this way.
//!
//! The pooled state of a text is the same whatever it is batched with (padding is masked out),
//! up to the rounding of sums over different padded lengths.

use std::collections::HashMap;

use burn::tensor::{Device, Tensor, TensorData};

use crate::data::TokenBatch;
use crate::error::{Error, Result};
use crate::kernels::read_f32;
use crate::model::{Bert, Encoded};
use crate::tasks::{MultitaskModel, Pooling, TaskData, pool};

/// `run` of each batch of `batches`, read back, in order: side by side on the CPU
/// ([`crate::kernels::batches::map_batches`]), else one after another.
///
/// # Errors
/// A failed read-back.
pub async fn run_batches(
    device: &Device,
    batches: &[&[usize]],
    run: impl Fn(&[usize]) -> Tensor<2> + Sync,
) -> Result<Vec<Vec<f32>>> {
    #[cfg(not(target_family = "wasm"))]
    if crate::kernels::batches::side_by_side(device, batches.len()) {
        return crate::kernels::batches::map_batches(device, batches.len(), |j| {
            pollster::block_on(read_f32(run(batches[j])))
        });
    }
    let _ = device;
    let mut outs = Vec::with_capacity(batches.len());
    for b in batches {
        outs.push(read_f32(run(b)).await?);
    }
    Ok(outs)
}

/// The kind's prediction values for each batch of `batches` (example indices into `data`), as
/// evaluation's `predict` reads them, computed from each distinct text's pooled
/// state: the texts in batches of at most `batch_size` × texts per example, by length (on the
/// CPU also at most [`crate::data::INFERENCE_BATCH_TOKENS`] token rows), then the head on each
/// example batch's rows. `None` when the kind does not take pooled texts
/// ([`Kind::forward_pooled`]), `data` has no examples, or in the browser (wasm builds keep their
/// batches of examples).
///
/// # Errors
/// A failed read-back; [`Error::Invalid`] when examples differ in their number of texts.
pub async fn pooled_predictions(
    model: &MultitaskModel,
    data: &TaskData,
    batches: &[&[usize]],
    batch_size: usize,
    pad_id: u32,
) -> Result<Option<Vec<Vec<f32>>>> {
    let kind = data.kind.as_ref();
    // The page keeps its batches of examples (one read-back each; WebGPU's are slow).
    if cfg!(target_family = "wasm") {
        return Ok(None);
    }
    let Some(first) = data.examples.first() else {
        return Ok(None);
    };
    let table = model.bert.embeddings.word_embeddings.weight.val();
    let (device, h) = (table.device(), table.dims()[1]);
    let per_example = first.texts().len();
    let head = model.head(kind.head_name());
    let probe = Tensor::<2>::zeros([per_example, h], &device);
    if kind.forward_pooled(model, head, probe).is_none() {
        return Ok(None);
    }
    // Each distinct text (token and segment ids) once; every example's rows into them.
    let mut index: HashMap<(&[u32], &[u32]), usize> = HashMap::new();
    let mut texts: Vec<&Encoded> = Vec::new();
    let mut rows: Vec<Vec<usize>> = Vec::with_capacity(data.examples.len());
    for (n, e) in data.examples.iter().enumerate() {
        let mut r = Vec::with_capacity(per_example);
        for t in std::iter::once(&e.a)
            .chain(e.b.as_ref())
            .chain(e.negatives.iter())
        {
            let i = *index
                .entry((t.ids.as_slice(), t.type_ids.as_slice()))
                .or_insert_with(|| {
                    texts.push(t);
                    texts.len() - 1
                });
            r.push(i);
        }
        if r.len() != per_example {
            return Err(Error::Invalid(format!(
                "{}: example {} has {} texts where the first has {per_example}",
                data.kind.name(),
                n + 1,
                r.len()
            )));
        }
        rows.push(r);
    }
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].ids.len());
    let text_batches = crate::data::length_batches(
        &order,
        |i| texts[i].ids.len(),
        batch_size * per_example,
        crate::data::inference_batch_tokens(&device),
    );
    let pooled_batches = run_batches(&device, &text_batches, |idx| {
        let encs: Vec<&Encoded> = idx.iter().map(|&i| texts[i]).collect();
        model.embed(&TokenBatch::from_encoded(&encs, pad_id).to_tensors(&device))
    })
    .await?;
    let pooled = put_back(&text_batches, &pooled_batches, texts.len(), h);
    // The head on each example batch: its first texts, then its second texts, ... as
    // `TaskData::batch` lays a batch out.
    let mut outs = Vec::with_capacity(batches.len());
    for idx in batches {
        let mut x = Vec::with_capacity(idx.len() * per_example * h);
        let rows = &rows;
        let rows_of = |t: usize| idx.iter().map(move |&e| rows[e][t]);
        for i in (0..per_example).flat_map(rows_of) {
            x.extend_from_slice(&pooled[i * h..(i + 1) * h]);
        }
        let x = Tensor::<2>::from_data(TensorData::new(x, [idx.len() * per_example, h]), &device);
        let Some(out) = kind.forward_pooled(model, head, x) else {
            return Ok(None);
        };
        outs.push(read_f32(kind.predictions(out)).await?);
    }
    Ok(Some(outs))
}

/// The pooled sentence embeddings `[encs.len(), hidden]` (row-major, not normalised) of `encs`
/// through `bert`, as sentence-transformers' `encode` computes them (`1_Pooling`'s mean or CLS
/// over the last hidden state): the texts sorted by length, in batches of at most `batch_size`
/// (on the CPU also at most [`crate::data::INFERENCE_BATCH_TOKENS`] token rows), each padded
/// with `pad_id` to its own longest text, the rows put back in input order. Used by `lorabert
/// search` and the page's semantic search, so the two rank alike.
///
/// # Errors
/// [`Error::Invalid`] for [`Pooling::Pooler`] (not a sentence embedding) or a `batch_size` of
/// 0; a failed read-back.
pub async fn embed_encoded(
    bert: &Bert,
    encs: &[Encoded],
    pooling: Pooling,
    batch_size: usize,
    pad_id: u32,
) -> Result<Vec<f32>> {
    if pooling == Pooling::Pooler {
        return Err(Error::Invalid(
            "sentence embeddings pool with mean or cls, not BERT's pooler".into(),
        ));
    }
    if batch_size == 0 {
        return Err(Error::Invalid("the batch size must be >= 1".into()));
    }
    let table = bert.embeddings.word_embeddings.weight.val();
    let (device, h) = (table.device(), table.dims()[1]);
    let mut order: Vec<usize> = (0..encs.len()).collect();
    order.sort_by_key(|&i| encs[i].ids.len());
    let batches = crate::data::length_batches(
        &order,
        |i| encs[i].ids.len(),
        batch_size,
        crate::data::inference_batch_tokens(&device),
    );
    let outs = run_batches(&device, &batches, |idx| {
        let batch: Vec<&Encoded> = idx.iter().map(|&i| &encs[i]).collect();
        let x = TokenBatch::from_encoded(&batch, pad_id).to_tensors(&device);
        let states = bert.forward(x.ids, x.type_ids, x.mask.clone());
        pool(states, x.mask, pooling)
    })
    .await?;
    Ok(put_back(&batches, &outs, encs.len(), h))
}

/// The rows `[n, h]` of `outs` (one `[batch, h]` block per batch of `batches`, rows in the
/// batch's order) put back in input order: row `k` of batch `j` is input `batches[j][k]`.
fn put_back(batches: &[&[usize]], outs: &[Vec<f32>], n: usize, h: usize) -> Vec<f32> {
    let mut rows = vec![0f32; n * h];
    for (idx, p) in batches.iter().zip(outs) {
        for (k, &i) in idx.iter().enumerate() {
            rows[i * h..(i + 1) * h].copy_from_slice(&p[k * h..(k + 1) * h]);
        }
    }
    rows
}
