//! The BERT encoder, one struct per Hugging Face module so checkpoint names follow the structure.
//!
//! Mirrors `transformers.models.bert.modeling_bert` (`BertEmbeddings`, `BertSelfAttention`,
//! `BertSelfOutput`, `BertIntermediate`, `BertOutput`, `BertLayer`, `BertPooler`): post-LayerNorm
//! layers, exact erf GELU, additive padding mask on the attention scores.

use crate::kernels::{cast_like, to_f32};
use crate::model::dropout::Dropout;
use burn::module::{Module, Param};
use burn::tensor::module::embedding;
use burn::tensor::{DType, Device, Distribution, Int, Tensor};

use super::config::BertConfig;
use super::weights::Checkpoint;
use crate::adapter::AdaptedLinear;
use crate::error::Result;

/// Added to attention scores of padding keys (BERT's original `-10000`); small enough in
/// magnitude to stay finite in f16.
const MASK_BIAS: f32 = -10000.0;

/// LayerNorm over the last axis (`weight` = γ, `bias` = β, both `[hidden]`), frozen.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// γ, `[hidden]`.
    pub weight: Param<Tensor<1>>,
    /// β, `[hidden]`.
    pub bias: Param<Tensor<1>>,
    /// ε added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    fn from_checkpoint(
        ck: &Checkpoint,
        name: &str,
        n: usize,
        eps: f64,
        device: &Device,
    ) -> Result<Self> {
        // Old TF-converted checkpoints call the parameters gamma/beta.
        let (w, b) =
            if ck.contains(&format!("{name}.weight")) || !ck.contains(&format!("{name}.gamma")) {
                ("weight", "bias")
            } else {
                ("gamma", "beta")
            };
        Ok(Self::new(
            ck.tensor1(&format!("{name}.{w}"), n, device)?,
            ck.tensor1(&format!("{name}.{b}"), n, device)?,
            eps,
        ))
    }

    fn new(weight: Tensor<1>, bias: Tensor<1>, eps: f64) -> Self {
        LayerNorm {
            weight: Param::from_tensor(weight).set_require_grad(false),
            bias: Param::from_tensor(bias).set_require_grad(false),
            eps,
        }
    }

    fn ones(n: usize, eps: f64, device: &Device) -> Self {
        Self::new(Tensor::ones([n], device), Tensor::zeros([n], device), eps)
    }

    /// `[..., hidden]` → `[..., hidden]`, in the dtype of `x`. f16 activations are normalised in
    /// f32 (their squares can overflow f16) and narrowed again, as PyTorch's autocast runs
    /// `layer_norm` in f32.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        crate::kernels::layer_norm(x, self.weight.val(), self.bias.val(), self.eps)
    }
}

/// `BertEmbeddings`: word + absolute position + token-type embeddings, LayerNorm, dropout.
#[derive(Module, Debug)]
pub struct Embeddings {
    /// `[vocab_size, hidden]`, frozen.
    pub word_embeddings: Param<Tensor<2>>,
    /// `[max_position_embeddings, hidden]`, frozen.
    pub position_embeddings: Param<Tensor<2>>,
    /// `[type_vocab_size, hidden]`, frozen.
    pub token_type_embeddings: Param<Tensor<2>>,
    /// `embeddings.LayerNorm`.
    pub layer_norm: LayerNorm,
    /// `hidden_dropout_prob`.
    pub dropout: Dropout,
    /// Whether the encoder's activations are f16 (set by [`Bert::into_f16`]); the embeddings'
    /// output is then narrowed to f16 and every later block computes in the dtype it receives.
    pub f16_activations: bool,
}

impl Embeddings {
    /// `input_ids`, `token_type_ids`: `[batch, seq]` → `[batch, seq, hidden]`, f32, or f16 with
    /// [`f16_activations`](Self::f16_activations). The sum is formed in the tables' dtype (f16
    /// for frozen tables in f16 storage) and normalised in f32.
    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, seq] = input_ids.dims();
        let words = embedding(self.word_embeddings.val(), input_ids);
        let types = embedding(self.token_type_embeddings.val(), token_type_ids);
        let pos = self
            .position_embeddings
            .val()
            .slice_dim(0, 0..seq)
            .unsqueeze::<3>();
        let x = self.layer_norm.forward(words + types + pos);
        let x = if self.f16_activations {
            x.cast(DType::F16)
        } else {
            to_f32(x)
        };
        self.dropout.forward(x)
    }
}

/// `BertSelfAttention` (the HF module `attention.self`): Q, K, V projections and scaled
/// dot-product attention with an additive padding mask.
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// `attention.self.query`.
    pub query: AdaptedLinear,
    /// `attention.self.key`.
    pub key: AdaptedLinear,
    /// `attention.self.value`.
    pub value: AdaptedLinear,
    /// `attention_probs_dropout_prob`.
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

impl SelfAttention {
    /// `x` `[batch, seq, hidden]`, `mask_bias` `[batch, seq]` (0 or `-10000` per key) →
    /// context `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<2>) -> Tensor<3> {
        let [b, s, h] = x.dims();
        let nh = self.num_heads;
        let hd = h / nh;
        let split = |t: Tensor<3>| t.reshape([b, s, nh, hd]).swap_dims(1, 2); // [b, nh, s, hd]
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let scores = q.matmul(k.swap_dims(2, 3));
        let probs = crate::kernels::attention_softmax(scores, mask_bias, 1.0 / (hd as f64).sqrt());
        self.dropout
            .forward_matmul(probs, v)
            .swap_dims(1, 2)
            .reshape([b, s, h])
    }
}

/// `BertSelfOutput` / `BertOutput`: dense, dropout, residual, LayerNorm.
#[derive(Module, Debug)]
pub struct DenseResidual {
    /// `attention.output.dense` or `output.dense`.
    pub dense: AdaptedLinear,
    /// `attention.output.LayerNorm` or `output.LayerNorm`.
    pub layer_norm: LayerNorm,
    /// `hidden_dropout_prob`.
    pub dropout: Dropout,
}

impl DenseResidual {
    /// `LayerNorm(dropout(dense(x)) + residual)`, `[batch, seq, *]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm
            .forward(self.dropout.forward(self.dense.forward(x)) + residual)
    }

    /// [`forward`](Self::forward) of `gelu(u)` (`BertOutput` after `BertIntermediate`), through
    /// [`AdaptedLinear::forward_gelu`]: `u` `[batch, seq, intermediate]` → `[batch, seq, hidden]`.
    pub fn forward_gelu(&self, u: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm
            .forward(self.dropout.forward(self.dense.forward_gelu(u)) + residual)
    }
}

/// `BertAttention`: self-attention then its output block.
#[derive(Module, Debug)]
pub struct Attention {
    /// HF `attention.self` (`self` is a Rust keyword).
    pub self_attn: SelfAttention,
    /// HF `attention.output`.
    pub output: DenseResidual,
}

/// `BertIntermediate`: dense + exact GELU.
#[derive(Module, Debug)]
pub struct Intermediate {
    /// `intermediate.dense`, `[hidden → intermediate_size]`.
    pub dense: AdaptedLinear,
}

/// `BertLayer`: attention, intermediate, output.
#[derive(Module, Debug)]
pub struct Layer {
    /// `attention`.
    pub attention: Attention,
    /// `intermediate`.
    pub intermediate: Intermediate,
    /// `output`.
    pub output: DenseResidual,
}

impl Layer {
    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<2>) -> Tensor<3> {
        let ctx = self.attention.self_attn.forward(x.clone(), mask_bias);
        let attn = self.attention.output.forward(ctx, x);
        let pre = self.intermediate.dense.forward(attn.clone());
        self.output.forward_gelu(pre, attn)
    }
}

/// Converts every frozen 2-D weight of `module` (linear weights `[in, out]`, embedding tables) to
/// f16 storage; trainable parameters (adapters, heads, full fine-tuning weights), biases and
/// LayerNorm parameters stay f32 (they are narrowed per use where they meet f16 activations).
pub fn into_f16_storage<M: Module>(module: M) -> M {
    struct F16Storage;
    impl burn::module::ModuleMapper for F16Storage {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if D == 2 && !p.is_require_grad() {
                p.map(|t| t.cast(DType::F16))
            } else {
                p
            }
        }
    }
    module.map(&mut F16Storage)
}

/// Runs `build` with the device's allocations in its persistent pool (exact-fit slices kept
/// apart from the pools of the training step), where frozen weights belong: in the step's
/// pools the word-embedding table, the largest tensor, would set their page size (Burn's
/// adaptive pools size pages to the largest allocation served), so device memory would be
/// reserved in pages of `vocab × hidden` floats.
fn persistent<T: Send>(device: &Device, build: impl Fn() -> T + Send + Sync) -> T {
    device.memory_persistent_allocations((), |()| build())
}

/// `BertPooler`: dense + tanh on the first token.
#[derive(Module, Debug)]
pub struct Pooler {
    /// `pooler.dense`.
    pub dense: AdaptedLinear,
}

/// The BERT encoder (`BertModel` without the pooler's use by default).
#[derive(Module, Debug)]
pub struct Bert {
    /// `embeddings`.
    pub embeddings: Embeddings,
    /// `encoder.layer.N`.
    pub layers: Vec<Layer>,
    /// `pooler`, when the checkpoint has one.
    pub pooler: Option<Pooler>,
}

/// Hugging Face module names of the linear layers of one encoder layer, relative to
/// `encoder.layer.N.`, in a fixed order.
pub const LAYER_LINEARS: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

impl Bert {
    /// Builds the encoder from a parsed checkpoint. Keys may carry a `bert.` prefix (detected by
    /// [`Checkpoint::parse`]); a missing pooler is tolerated; unused tensors are ignored.
    ///
    /// # Errors
    /// [`crate::Error::MissingTensor`] / [`crate::Error::BadTensor`] naming the tensor.
    pub fn from_checkpoint(cfg: &BertConfig, ck: &Checkpoint, device: &Device) -> Result<Self> {
        persistent(device, || Self::from_checkpoint_in(cfg, ck, device))
    }

    fn from_checkpoint_in(cfg: &BertConfig, ck: &Checkpoint, device: &Device) -> Result<Self> {
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let lin = |name: &str, d_in: usize, d_out: usize| -> Result<AdaptedLinear> {
            Ok(AdaptedLinear::frozen(
                ck.linear_weight(&format!("{name}.weight"), d_in, d_out, device)?,
                Some(ck.tensor1(&format!("{name}.bias"), d_out, device)?),
            ))
        };
        let frozen = |t: Tensor<2>| Param::from_tensor(t).set_require_grad(false);
        let embeddings = Embeddings {
            word_embeddings: frozen(ck.tensor2(
                "embeddings.word_embeddings.weight",
                cfg.vocab_size,
                h,
                device,
            )?),
            position_embeddings: frozen(ck.tensor2(
                "embeddings.position_embeddings.weight",
                cfg.max_position_embeddings,
                h,
                device,
            )?),
            token_type_embeddings: frozen(ck.tensor2(
                "embeddings.token_type_embeddings.weight",
                cfg.type_vocab_size,
                h,
                device,
            )?),
            layer_norm: LayerNorm::from_checkpoint(ck, "embeddings.LayerNorm", h, eps, device)?,
            dropout: Dropout::new(cfg.hidden_dropout_prob),
            f16_activations: false,
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                attention: Attention {
                    self_attn: SelfAttention {
                        query: lin(&format!("{p}.attention.self.query"), h, h)?,
                        key: lin(&format!("{p}.attention.self.key"), h, h)?,
                        value: lin(&format!("{p}.attention.self.value"), h, h)?,
                        dropout: Dropout::new(cfg.attention_probs_dropout_prob),
                        num_heads: cfg.num_attention_heads,
                    },
                    output: DenseResidual {
                        dense: lin(&format!("{p}.attention.output.dense"), h, h)?,
                        layer_norm: LayerNorm::from_checkpoint(
                            ck,
                            &format!("{p}.attention.output.LayerNorm"),
                            h,
                            eps,
                            device,
                        )?,
                        dropout: Dropout::new(cfg.hidden_dropout_prob),
                    },
                },
                intermediate: Intermediate {
                    dense: lin(&format!("{p}.intermediate.dense"), h, cfg.intermediate_size)?,
                },
                output: DenseResidual {
                    dense: lin(&format!("{p}.output.dense"), cfg.intermediate_size, h)?,
                    layer_norm: LayerNorm::from_checkpoint(
                        ck,
                        &format!("{p}.output.LayerNorm"),
                        h,
                        eps,
                        device,
                    )?,
                    dropout: Dropout::new(cfg.hidden_dropout_prob),
                },
            });
        }
        let pooler = if ck.contains("pooler.dense.weight") {
            Some(Pooler {
                dense: lin("pooler.dense", h, h)?,
            })
        } else {
            None
        };
        Ok(Bert {
            embeddings,
            layers,
            pooler,
        })
    }

    /// A randomly initialised encoder of the given shape (weights `N(0, 0.02)`, LayerNorm γ = 1,
    /// β = 0, as BERT's `initializer_range`), for benchmarks and tests. No pooler.
    pub fn random(cfg: &BertConfig, device: &Device) -> Self {
        persistent(device, || Self::random_in(cfg, device))
    }

    fn random_in(cfg: &BertConfig, device: &Device) -> Self {
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let normal =
            |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 0.02), device);
        let lin = |d_in: usize, d_out: usize| {
            AdaptedLinear::frozen(normal([d_in, d_out]), Some(Tensor::zeros([d_out], device)))
        };
        let frozen = |t: Tensor<2>| Param::from_tensor(t).set_require_grad(false);
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| Layer {
                attention: Attention {
                    self_attn: SelfAttention {
                        query: lin(h, h),
                        key: lin(h, h),
                        value: lin(h, h),
                        dropout: Dropout::new(cfg.attention_probs_dropout_prob),
                        num_heads: cfg.num_attention_heads,
                    },
                    output: DenseResidual {
                        dense: lin(h, h),
                        layer_norm: LayerNorm::ones(h, eps, device),
                        dropout: Dropout::new(cfg.hidden_dropout_prob),
                    },
                },
                intermediate: Intermediate {
                    dense: lin(h, cfg.intermediate_size),
                },
                output: DenseResidual {
                    dense: lin(cfg.intermediate_size, h),
                    layer_norm: LayerNorm::ones(h, eps, device),
                    dropout: Dropout::new(cfg.hidden_dropout_prob),
                },
            })
            .collect();
        Bert {
            embeddings: Embeddings {
                word_embeddings: frozen(normal([cfg.vocab_size, h])),
                position_embeddings: frozen(normal([cfg.max_position_embeddings, h])),
                token_type_embeddings: frozen(normal([cfg.type_vocab_size, h])),
                layer_norm: LayerNorm::ones(h, eps, device),
                dropout: Dropout::new(cfg.hidden_dropout_prob),
                f16_activations: false,
            },
            layers,
            pooler: None,
        }
    }

    /// The encoder in mixed precision, as the design's f16 mode (and PyTorch's autocast): frozen
    /// 2-D weights in f16 storage ([`into_f16_storage`]) and f16 activations from the embeddings
    /// on (matmuls, GELU, softmax and the residual stream in f16, LayerNorm in f32), while
    /// trainable parameters, gradients and optimiser state stay f32. Training in this mode needs
    /// loss scaling (the trainer's [`crate::train::LossScaler`]).
    pub fn into_f16(self) -> Self {
        let device = self.embeddings.word_embeddings.device();
        let mut bert = device.memory_persistent_allocations(self, into_f16_storage);
        bert.embeddings.f16_activations = true;
        // Give back the f32 copies the conversion freed.
        device.memory_cleanup();
        bert
    }

    /// Runs the encoder: `input_ids`, `token_type_ids` `[batch, seq]` (int), `attention_mask`
    /// `[batch, seq]` (1.0 for real tokens, 0.0 for padding) → `last_hidden_state`
    /// `[batch, seq, hidden]`, always f32 (widened at the end in the f16 mode of [`Self::into_f16`]).
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2>,
    ) -> Tensor<3> {
        let mut x = self.embeddings.forward(input_ids, token_type_ids);
        let mask_bias = cast_like((attention_mask.neg() + 1.0).mul_scalar(MASK_BIAS), &x);
        for layer in &self.layers {
            x = layer.forward(x, mask_bias.clone());
        }
        to_f32(x)
    }

    /// HF `BertPooler` output `tanh(dense(h[:, 0]))`, `[batch, hidden]`; `None` without a pooler.
    pub fn pool(&self, hidden: Tensor<3>) -> Option<Tensor<2>> {
        let p = self.pooler.as_ref()?;
        let [b, _, h] = hidden.dims();
        let first = hidden.slice([0..b, 0..1]).reshape([b, h]);
        Some(p.dense.forward(first).tanh())
    }

    /// Calls `f` on every linear layer with its full Hugging Face module name
    /// (`encoder.layer.N.attention.self.query`, ..., `pooler.dense`).
    pub fn visit_linears(&self, f: &mut dyn FnMut(&str, &AdaptedLinear)) {
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("encoder.layer.{i}");
            let mods = [
                &l.attention.self_attn.query,
                &l.attention.self_attn.key,
                &l.attention.self_attn.value,
                &l.attention.output.dense,
                &l.intermediate.dense,
                &l.output.dense,
            ];
            for (name, m) in LAYER_LINEARS.iter().zip(mods) {
                f(&format!("{p}.{name}"), m);
            }
        }
        if let Some(p) = &self.pooler {
            f("pooler.dense", &p.dense);
        }
    }

    /// Rebuilds every linear layer through `f(full_name, layer)`, in the order of
    /// [`visit_linears`](Self::visit_linears).
    ///
    /// # Errors
    /// The first error `f` returns.
    pub fn map_linears(
        mut self,
        f: &mut dyn FnMut(&str, AdaptedLinear) -> Result<AdaptedLinear>,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, mut l) in std::mem::take(&mut self.layers).into_iter().enumerate() {
            let p = format!("encoder.layer.{i}");
            let sa = &mut l.attention.self_attn;
            sa.query = f(&format!("{p}.attention.self.query"), sa.query.clone())?;
            sa.key = f(&format!("{p}.attention.self.key"), sa.key.clone())?;
            sa.value = f(&format!("{p}.attention.self.value"), sa.value.clone())?;
            l.attention.output.dense = f(
                &format!("{p}.attention.output.dense"),
                l.attention.output.dense.clone(),
            )?;
            l.intermediate.dense = f(
                &format!("{p}.intermediate.dense"),
                l.intermediate.dense.clone(),
            )?;
            l.output.dense = f(&format!("{p}.output.dense"), l.output.dense.clone())?;
            layers.push(l);
        }
        self.layers = layers;
        if let Some(mut p) = self.pooler.take() {
            p.dense = f("pooler.dense", p.dense)?;
            self.pooler = Some(p);
        }
        Ok(self)
    }
}
