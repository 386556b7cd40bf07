//! The floor of a training step (issue 32, item 1): the seconds its matrix products take at the
//! rate lorabert's product route reaches for each of their shapes alone (`bench --gemm`'s
//! measurement), so `lorabert bench --floor` can report a step as a fraction of it. Everything
//! else in a step (element-wise passes, LayerNorm, softmax, dropout, DoRA's scale, gradient sums,
//! packing, the optimiser) is what separates the step from its floor.

use anyhow::Result;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::bench_gemm::{Shape, time_product};
use crate::adapter::LoraConfig;
use crate::model::BertConfig;

/// A step's floor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Floor {
    /// Seconds of the step's products, each at its measured rate.
    pub seconds: f64,
    /// The step's products in GFLOP (`2·batch·m·k·n` each).
    pub gflop: f64,
    /// Products counted (calls per step).
    pub products: usize,
}

/// The matrix products of one training step (forward and backward) of a BERT encoder of shape
/// `cfg` on `batch × seq` tokens, with `adapter` on every linear layer of every block (`None`:
/// full fine-tuning), each with how many times the step runs it. Counted: per block the six
/// linear layers' `x·W`; their input gradients `g·Wᵀ` (in the first block not those of query,
/// key and value under an adapter: nothing below them trains); full fine-tuning's weight
/// gradients `xᵀ·g`; the attention's `q·kᵀ` and `p·v` and their four gradient products; an
/// adapter's `x·A`, `(x·A)·B`, `g·Bᵀ`, `∂B = (x·A)ᵀ·g`, `∂A = xᵀ·(g·Bᵀ)` and (but in the first
/// block's query, key and value) `(g·Bᵀ)·Aᵀ`; DoRA's weight norm, one `Wᵀ·A`-sized product per
/// layer (forward only: PEFT detaches it). Not counted: the classifier head (`[batch, hidden]`
/// rows, under 0.01 % of the FLOPs).
pub fn step_products(
    cfg: &BertConfig,
    batch: usize,
    seq: usize,
    adapter: Option<&LoraConfig>,
) -> Vec<(Shape, usize)> {
    let (t, h, i) = (batch * seq, cfg.hidden_size, cfg.intermediate_size);
    let layers = cfg.num_hidden_layers;
    let heads = cfg.num_attention_heads.max(1);
    let (d, bh) = (h / heads, batch * heads);
    let s = |name: &str, b, m, k, n, lt, rt| (name.to_string(), b, m, k, n, lt, rt);
    // (in, out) of the six linear layers, and whether they are query, key or value.
    let linears = [
        (h, h, true),
        (h, h, true),
        (h, h, true),
        (h, h, false),
        (h, i, false),
        (i, h, false),
    ];
    let mut v: Vec<(Shape, usize)> = Vec::new();
    let mut add = |shape: Shape, count: usize| {
        if count == 0 {
            return;
        }
        match v.iter_mut().find(|(s, _)| *s == shape) {
            Some((_, c)) => *c += count,
            None => v.push((shape, count)),
        }
    };
    for layer in 0..layers {
        for &(inp, out, qkv) in &linears {
            // Under an adapter the first block's query, key and value pass no gradient down.
            let dx = adapter.is_none() || layer > 0 || !qkv;
            add(s("x·W", 1, t, inp, out, false, false), 1);
            add(s("g·Wᵀ", 1, t, out, inp, false, true), usize::from(dx));
            match adapter {
                None => add(s("xᵀ·g ∂W", 1, inp, t, out, true, false), 1),
                Some(a) => {
                    let r = a.r;
                    add(s("x·A", 1, t, inp, r, false, false), 1);
                    add(s("(x·A)·B", 1, t, r, out, false, false), 1);
                    add(s("g·Bᵀ", 1, t, out, r, false, true), 1);
                    add(s("(x·A)ᵀ·g ∂B", 1, r, t, out, true, false), 1);
                    add(s("xᵀ·(g·Bᵀ) ∂A", 1, inp, t, r, true, false), 1);
                    add(s("(g·Bᵀ)·Aᵀ", 1, t, r, inp, false, true), usize::from(dx));
                    if a.use_dora {
                        add(s("Wᵀ·A DoRA norm", 1, out, inp, r, true, false), 1);
                    }
                }
            }
        }
        add(s("q·kᵀ, g·vᵀ", bh, seq, d, seq, false, true), 2);
        add(s("p·v, ∂s·k", bh, seq, seq, d, false, false), 2);
        add(s("pᵀ·g, ∂sᵀ·q", bh, seq, seq, d, true, false), 2);
    }
    v
}

/// Times each distinct product of [`step_products`] through lorabert's route on `device` (about
/// `seconds` each) and adds them up by their counts.
///
/// # Errors
/// As [`time_product`].
pub fn measure(
    cfg: &BertConfig,
    batch: usize,
    seq: usize,
    adapter: Option<&LoraConfig>,
    seconds: f64,
    device: &Device,
) -> Result<Floor> {
    let mut floor = Floor {
        seconds: 0.0,
        gflop: 0.0,
        products: 0,
    };
    for (shape, count) in step_products(cfg, batch, seq, adapter) {
        let (_, b, m, k, n, _, _) = shape;
        floor.seconds += count as f64 * time_product(&shape, true, seconds, device)?;
        floor.gflop += count as f64 * 2.0 * (b * m * k * n) as f64 / 1e9;
        floor.products += count;
    }
    Ok(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MiniLM, batch 32 × 64, LoRA r = 1 and full fine-tuning: the step's products add up to the
    /// FLOPs counted by hand (89.3 and 134.1 GFLOP; the issue estimated about 92 for LoRA).
    #[test]
    fn minilm_step_products_add_up_to_the_hand_count() {
        let mut cfg = BertConfig::tiny(30522, 384, 6, 12);
        cfg.intermediate_size = 1536;
        let lora_r1 = LoraConfig {
            r: 1,
            ..LoraConfig::default()
        };
        let flops = |adapter: Option<&LoraConfig>| -> f64 {
            step_products(&cfg, 32, 64, adapter)
                .iter()
                .map(|((_, b, m, k, n, _, _), c)| (c * 2 * b * m * k * n) as f64)
                .sum()
        };
        let (t, h, i, l) = (2048f64, 384f64, 1536f64, 6f64);
        // Forward x·W: 4·h² + 2·h·i per token; input gradients the same but the first block's
        // q, k, v (3·h²); attention: 6 products of seq × seq × d per head and sequence.
        let linear = 2.0 * t * (4.0 * h * h + 2.0 * h * i);
        let attention = 6.0 * 2.0 * 32.0 * 12.0 * 64.0 * 64.0 * 32.0;
        let base = l * (2.0 * linear + attention) - 2.0 * t * 3.0 * h * h;
        // LoRA r = 1: per linear 5 products of t·(in or out)·r, plus (g·Bᵀ)·Aᵀ of t·r·in.
        let per_layer: f64 = [(h, h), (h, h), (h, h), (h, h), (h, i), (i, h)]
            .iter()
            .map(|(inp, out)| 2.0 * t * (inp + out + out + out + inp + inp))
            .sum();
        let lora = l * per_layer - 3.0 * 2.0 * t * h;
        let got = flops(Some(&lora_r1));
        assert!(
            (got - (base + lora)).abs() < 1.0,
            "{got} vs {}",
            base + lora
        );
        assert!((got / 1e9 - 89.29).abs() < 0.01, "{} GFLOP", got / 1e9);
        // Full fine-tuning adds the weight gradients and the first block's q, k, v ∂x.
        let full = flops(None);
        let want = l * (3.0 * linear + attention);
        assert!((full - want).abs() < 1.0, "{full} vs {want}");
        assert!((full / 1e9 - 134.08).abs() < 0.01, "{} GFLOP", full / 1e9);
    }
}
