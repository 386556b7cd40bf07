//! The BERT encoder, one struct per Hugging Face module so checkpoint names follow the structure.
//!
//! Mirrors `transformers.models.bert.modeling_bert` (`BertEmbeddings`, `BertSelfAttention`,
//! `BertSelfOutput`, `BertIntermediate`, `BertOutput`, `BertLayer`, `BertPooler`): post-LayerNorm
//! layers, exact erf GELU, additive padding mask on the attention scores.

use burn::module::{Module, Param};
use burn::tensor::module::embedding;
use burn::tensor::{DType, Device, Int, Tensor};

use super::config::BertConfig;
use super::dropout::Dropout;
use super::init::InitRng;
use super::lora::AdaptedLinear;
use super::weights::{Checkpoint, ReadBack};
use crate::error::Result;
use crate::kernels::{cast_like, to_f32};

mod source;
use source::{FromCheckpoint, ModulePath, RandomInit, WeightSource};

/// Added to attention scores of padding keys (BERT's original `-10000`); small enough in
/// magnitude to stay finite in f16.
const MASK_BIAS: f32 = -10000.0;

/// LayerNorm over the last axis (`weight` = γ, `bias` = β, both `[hidden]`), frozen.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// The Hugging Face module name (`embeddings.LayerNorm`, `encoder.layer.0.output.LayerNorm`).
    #[module(skip)]
    pub name: String,
    /// γ, `[hidden]`.
    pub weight: Param<Tensor<1>>,
    /// β, `[hidden]`.
    pub bias: Param<Tensor<1>>,
    /// ε added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// `[..., hidden]` → `[..., hidden]`, in the dtype of `x`. f16 activations are normalised in
    /// f32 (their squares can overflow f16) and narrowed again, as PyTorch's autocast runs
    /// `layer_norm` in f32.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        crate::kernels::layer_norm(x, self.weight.val(), self.bias.val(), self.eps)
    }

    /// [`forward`](Self::forward) of `y + residual` (`[..., hidden]`, one shape), as one op
    /// where the kernels fuse it ([`crate::kernels::add_layer_norm`]).
    pub fn forward_add<const D: usize>(&self, y: Tensor<D>, residual: Tensor<D>) -> Tensor<D> {
        crate::kernels::add_layer_norm(y, residual, self.weight.val(), self.bias.val(), self.eps)
    }
}

/// `nn.Embedding`: a frozen lookup table `[rows, hidden]`.
#[derive(Module, Debug)]
pub struct Embedding {
    /// The Hugging Face module name (`embeddings.word_embeddings`, ...).
    #[module(skip)]
    pub name: String,
    /// The table, `[rows, hidden]`.
    pub weight: Param<Tensor<2>>,
}

impl Embedding {
    /// Rows `ids` `[batch, seq]` of the table → `[batch, seq, hidden]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        embedding(self.weight.val(), ids)
    }
}

/// `BertEmbeddings`: word + absolute position + token-type embeddings, LayerNorm, dropout.
#[derive(Module, Debug)]
pub struct Embeddings {
    /// `word_embeddings`, `[vocab_size, hidden]`.
    pub word_embeddings: Embedding,
    /// `position_embeddings`, `[max_position_embeddings, hidden]`.
    pub position_embeddings: Embedding,
    /// `token_type_embeddings`, `[type_vocab_size, hidden]`.
    pub token_type_embeddings: Embedding,
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
        let words = self.word_embeddings.forward(input_ids);
        let types = self.token_type_embeddings.forward(token_type_ids);
        let pos = self
            .position_embeddings
            .weight
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
        let scores = crate::kernels::matmul(q, k.swap_dims(2, 3));
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
            .forward_add(self.dropout.forward(self.dense.forward(x)), residual)
    }

    /// [`forward`](Self::forward) of `gelu(u)` (`BertOutput` after `BertIntermediate`), through
    /// [`AdaptedLinear::forward_gelu`]: `u` `[batch, seq, intermediate]` → `[batch, seq, hidden]`.
    pub fn forward_gelu(&self, u: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm
            .forward_add(self.dropout.forward(self.dense.forward_gelu(u)), residual)
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
    /// The layer's linear layers: `attention.self.query`, `key`, `value`,
    /// `attention.output.dense`, `intermediate.dense`, `output.dense`.
    pub fn linears(&self) -> [&AdaptedLinear; 6] {
        let sa = &self.attention.self_attn;
        let (att, ffn) = (&self.attention.output, &self.output);
        [
            &sa.query,
            &sa.key,
            &sa.value,
            &att.dense,
            &self.intermediate.dense,
            &ffn.dense,
        ]
    }

    /// [`linears`](Self::linears), mutable.
    pub fn linears_mut(&mut self) -> [&mut AdaptedLinear; 6] {
        let Layer {
            attention:
                Attention {
                    self_attn: sa,
                    output: att,
                },
            intermediate,
            output: ffn,
        } = self;
        [
            &mut sa.query,
            &mut sa.key,
            &mut sa.value,
            &mut att.dense,
            &mut intermediate.dense,
            &mut ffn.dense,
        ]
    }

    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<2>) -> Tensor<3> {
        let ctx = self.attention.self_attn.forward(x.clone(), mask_bias);
        let attn = self.attention.output.forward(ctx, x);
        let pre = self.intermediate.dense.forward(attn.clone());
        self.output.forward_gelu(pre, attn)
    }
}

/// Converts every frozen 2-D weight of `module` (linear weights `[in, out]`, embedding tables) to
/// f16 storage; trainable parameters (heads, full fine-tuning weights), adapters
/// ([`crate::model::LoraAdapter`]: `lora_A`, `lora_B`, also where nothing trains, as in
/// inference), biases and LayerNorm parameters stay f32 (they are narrowed per use where they
/// meet f16 activations).
pub fn into_f16_storage<M: Module>(module: M) -> M {
    /// Depth inside adapter modules: their parameters keep f32.
    struct F16Storage(usize);
    impl burn::module::ModuleMapper for F16Storage {
        fn enter_module(&mut self, _: &str, container_type: &str) {
            if container_type == "Struct:LoraAdapter" {
                self.0 += 1;
            }
        }
        fn exit_module(&mut self, _: &str, container_type: &str) {
            if container_type == "Struct:LoraAdapter" {
                self.0 -= 1;
            }
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if D == 2 && self.0 == 0 && !p.is_require_grad() {
                p.map(|t| t.cast(DType::F16))
            } else {
                p
            }
        }
    }
    module.map(&mut F16Storage(0))
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

impl Bert {
    /// Builds the encoder from a parsed checkpoint. Keys may carry a `bert.` prefix (detected by
    /// [`Checkpoint::parse`]); LayerNorm parameters may be called `gamma`/`beta` (old
    /// TF-converted checkpoints); a missing pooler is tolerated; unused tensors are ignored.
    ///
    /// # Errors
    /// [`crate::Error::MissingTensor`] / [`crate::Error::BadTensor`] naming the tensor.
    pub fn from_checkpoint(cfg: &BertConfig, ck: &Checkpoint, device: &Device) -> Result<Self> {
        persistent(device, || Self::build(cfg, &FromCheckpoint { ck, device }))
    }

    /// A randomly initialised encoder of the given shape (weights `N(0, 0.02)`, LayerNorm γ = 1,
    /// β = 0, as BERT's `initializer_range`), for benchmarks and tests. No pooler.
    pub fn random(cfg: &BertConfig, device: &Device, rng: &mut InitRng) -> Self {
        let src = RandomInit {
            device,
            rng: std::sync::Mutex::new(rng),
        };
        persistent(device, || Self::build(cfg, &src))
            .unwrap_or_else(|_| unreachable!("random initialisation returns no error"))
    }

    /// The one place the module tree is built, each module named as in Hugging Face's
    /// `BertModel` (`ModulePath::pp` as candle's `VarBuilder::pp`): loading, saving and the
    /// adapters' target matching all use the names given here.
    fn build(cfg: &BertConfig, src: &dyn WeightSource) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let root = ModulePath::default();
        let enc = root.pp("encoder").pp("layer");
        // The layers before the embeddings: the order of random draws of `Bert::random`.
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = enc.pp(i);
                let (att, inter, out) = (p.pp("attention"), p.pp("intermediate"), p.pp("output"));
                let sa = att.pp("self");
                Ok(Layer {
                    attention: Attention {
                        self_attn: SelfAttention {
                            query: src.linear(&sa.pp("query"), h, h)?,
                            key: src.linear(&sa.pp("key"), h, h)?,
                            value: src.linear(&sa.pp("value"), h, h)?,
                            dropout: Dropout::new(
                                cfg.attention_probs_dropout_prob,
                                &sa.pp("dropout").0,
                            ),
                            num_heads: cfg.num_attention_heads,
                        },
                        output: DenseResidual::build(src, &att.pp("output"), h, cfg)?,
                    },
                    intermediate: Intermediate {
                        dense: src.linear(&inter.pp("dense"), h, cfg.intermediate_size)?,
                    },
                    output: DenseResidual::build(src, &out, cfg.intermediate_size, cfg)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let e = root.pp("embeddings");
        let embeddings = Embeddings {
            word_embeddings: src.embedding(&e.pp("word_embeddings"), cfg.vocab_size, h)?,
            position_embeddings: src.embedding(
                &e.pp("position_embeddings"),
                cfg.max_position_embeddings,
                h,
            )?,
            token_type_embeddings: src.embedding(
                &e.pp("token_type_embeddings"),
                cfg.type_vocab_size,
                h,
            )?,
            layer_norm: src.layer_norm(&e.pp("LayerNorm"), h, eps)?,
            dropout: Dropout::new(cfg.hidden_dropout_prob, &e.pp("dropout").0),
            f16_activations: false,
        };
        let pooler = root.pp("pooler").pp("dense");
        let pooler = match src.has_linear(&pooler) {
            true => Some(Pooler {
                dense: src.linear(&pooler, h, h)?,
            }),
            false => None,
        };
        Ok(Bert {
            embeddings,
            layers,
            pooler,
        })
    }

    /// The encoder in mixed precision, as the design's f16 mode (and PyTorch's autocast): frozen
    /// 2-D weights in f16 storage ([`into_f16_storage`]) and f16 activations from the embeddings
    /// on (matmuls, GELU, softmax and the residual stream in f16, LayerNorm in f32), while
    /// trainable parameters, gradients and optimiser state stay f32. Training in this mode needs
    /// loss scaling (the trainer's [`crate::train::LossScaler`]).
    pub fn into_f16(self) -> Self {
        let device = self.embeddings.word_embeddings.weight.device();
        let mut bert = device.memory_persistent_allocations(self, into_f16_storage);
        bert.embeddings.f16_activations = true;
        // Give back the f32 copies the conversion freed.
        device.memory_cleanup();
        bert
    }

    /// Runs the encoder: `input_ids`, `token_type_ids` `[batch, seq]` (int), `attention_mask`
    /// `[batch, seq]` (1.0 for real tokens, 0.0 for padding) → `last_hidden_state`
    /// `[batch, seq, hidden]`, always f32 (widened at the end in the f16 mode of [`Self::into_f16`]).
    ///
    /// # Panics
    /// When the three inputs differ in shape, `seq` exceeds `max_position_embeddings`, or an id
    /// is outside the vocabulary or token-type table (Burn's embedding lookup).
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
    /// (`encoder.layer.N.attention.self.query`, ..., `pooler.dense`), in model order (per
    /// encoder layer as [`Layer::linears`], then the pooler).
    pub fn visit_linears(&self, f: &mut dyn FnMut(&str, &AdaptedLinear)) {
        let pooler = self.pooler.as_ref().map(|p| &p.dense);
        for l in self.layers.iter().flat_map(Layer::linears).chain(pooler) {
            f(&l.name, l);
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
        let pooler = self.pooler.as_mut().map(|p| &mut p.dense);
        for l in self
            .layers
            .iter_mut()
            .flat_map(Layer::linears_mut)
            .chain(pooler)
        {
            let old = l.clone();
            *l = f(&old.name.clone(), old)?;
        }
        Ok(self)
    }

    /// Replaces the bias of the linear layer or LayerNorm named `module` (its Hugging Face name,
    /// e.g. `encoder.layer.0.attention.self.query`, `embeddings.LayerNorm`) with `values`,
    /// `[out]`: PEFT adapters saved with `bias="all"` or `"lora_only"` carry trained biases.
    /// The bias stays frozen.
    ///
    /// # Errors
    /// [`crate::Error::Adapter`] naming `source` when no linear layer or LayerNorm has that name,
    /// or the length differs from the module's bias.
    pub fn set_bias(mut self, module: &str, values: Vec<f32>, source: &str) -> Result<Self> {
        let device = self.embeddings.word_embeddings.weight.device();
        let n = values.len();
        let t = Tensor::<1>::from_data(burn::tensor::TensorData::new(values, [n]), &device);
        let mut found = None;
        let pooler = self.pooler.as_mut().map(|p| &mut p.dense);
        for l in self
            .layers
            .iter_mut()
            .flat_map(Layer::linears_mut)
            .chain(pooler)
        {
            if l.name == module {
                found = Some(l.dims().1);
                if found == Some(n) {
                    l.bias = Some(Param::from_tensor(t.clone()).set_require_grad(false));
                }
            }
        }
        let mut norms = vec![&mut self.embeddings.layer_norm];
        for l in &mut self.layers {
            norms.extend([&mut l.attention.output.layer_norm, &mut l.output.layer_norm]);
        }
        for ln in norms {
            if ln.name == module {
                found = Some(ln.bias.shape().num_elements());
                if found == Some(n) {
                    ln.bias = Param::from_tensor(t.clone()).set_require_grad(false);
                }
            }
        }
        match found {
            Some(want) if want == n => Ok(self),
            Some(want) => Err(crate::Error::Adapter(format!(
                "{source}: the bias of `{module}` has {n} values, the module {want}"
            ))),
            None => Err(crate::Error::Adapter(format!(
                "{source}: no linear layer or LayerNorm `{module}` to take a bias"
            ))),
        }
    }

    /// Replaces the weight (`[out, in]`, PyTorch's layout, row-major) and bias (`[out]`) of the
    /// linear layer named `module` (a module saved whole in an adapter file, such as a
    /// sequence-classification adapter's `pooler.dense`), frozen.
    ///
    /// # Errors
    /// [`crate::Error::Adapter`] naming `source` when no linear layer has that name or the sizes
    /// differ.
    pub fn set_linear(
        mut self,
        module: &str,
        weight: Vec<f32>,
        bias: Vec<f32>,
        source: &str,
    ) -> Result<Self> {
        let device = self.embeddings.word_embeddings.weight.device();
        let pooler = self.pooler.as_mut().map(|p| &mut p.dense);
        let Some(l) = self
            .layers
            .iter_mut()
            .flat_map(Layer::linears_mut)
            .chain(pooler)
            .find(|l| l.name == module)
        else {
            return Err(crate::Error::Adapter(format!(
                "{source}: the model has no linear layer `{module}` (a checkpoint without a pooler?)"
            )));
        };
        let (d_in, d_out) = l.dims();
        if weight.len() != d_in * d_out || bias.len() != d_out {
            return Err(crate::Error::Adapter(format!(
                "{source}: `{module}` has {} weights and {} biases, the layer {d_out}x{d_in}",
                weight.len(),
                bias.len()
            )));
        }
        let w = crate::model::weights::transpose(&weight, d_out, d_in);
        let w = Tensor::<2>::from_data(burn::tensor::TensorData::new(w, [d_in, d_out]), &device);
        let b = Tensor::<1>::from_data(burn::tensor::TensorData::new(bias, [d_out]), &device);
        l.weight = Param::from_tensor(w).set_require_grad(false);
        l.bias = Some(Param::from_tensor(b).set_require_grad(false));
        Ok(self)
    }

    /// Queues every weight of the encoder for read-back under its Hugging Face name, as a
    /// `BertModel` `model.safetensors` holds it (no prefix; linear weights `[out, in]`, biases,
    /// LayerNorm `weight`/`bias`, embedding tables). Adapters are included folded in when
    /// merged, and left out otherwise (merge first to include them).
    pub fn queue_weights(&self, out: &mut ReadBack) {
        let e = &self.embeddings;
        for t in [
            &e.word_embeddings,
            &e.position_embeddings,
            &e.token_type_embeddings,
        ] {
            out.push_param(&format!("{}.weight", t.name), t.weight.val());
        }
        let mut norms = vec![&e.layer_norm];
        for l in &self.layers {
            norms.extend([&l.attention.output.layer_norm, &l.output.layer_norm]);
        }
        for n in norms {
            out.push_param(&format!("{}.weight", n.name), n.weight.val());
            out.push_param(&format!("{}.bias", n.name), n.bias.val());
        }
        self.visit_linears(&mut |name, lin| {
            out.push_linear(name, lin.weight.val(), lin.bias.as_ref().map(|b| b.val()));
        });
    }
}

impl DenseResidual {
    /// `BertSelfOutput` / `BertOutput` at `p`: `dense` (`d_in → hidden`) and `LayerNorm`.
    fn build(
        src: &dyn WeightSource,
        p: &ModulePath,
        d_in: usize,
        cfg: &BertConfig,
    ) -> Result<Self> {
        Ok(DenseResidual {
            dense: src.linear(&p.pp("dense"), d_in, cfg.hidden_size)?,
            layer_norm: src.layer_norm(&p.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps)?,
            dropout: Dropout::new(cfg.hidden_dropout_prob, &p.pp("dropout").0),
        })
    }
}
