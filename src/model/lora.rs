//! A frozen linear layer with an optional LoRA or DoRA adapter: the layer the encoder is built
//! from (PEFT's `tuners/lora/layer.py` and `dora.py`). Choosing which layers get adapters,
//! merging a whole model and the PEFT files are [`crate::adapter`]'s, above this module.
//!
//! Mirrors PEFT's `peft.tuners.lora.layer.Linear` (LoRA) and `peft.tuners.lora.dora.DoraLinearLayer`
//! (DoRA), with one deliberate difference: the DoRA row norm `||W + s·B·A||` is computed in Gram
//! form from `[r, out]`-sized products and never materialises the `[out, in]` matrix `W + s·B·A`.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use crate::kernels::{cast_like, dora_weight_norm, frozen_linear, to_f32};
use crate::model::dropout::Dropout;

/// A linear layer `y = x·Wᵀ + b` whose base weight and bias are frozen, optionally wrapped by a
/// LoRA or DoRA adapter.
///
/// Layouts: `weight` is stored `[in, out]` (the transpose of the Hugging Face `[out, in]` layout) so
/// the forward is a plain `x @ weight`; `bias` is `[out]`.
#[derive(Module, Debug)]
pub struct AdaptedLinear {
    /// The Hugging Face module name (`encoder.layer.0.attention.self.query`, ...): its tensors
    /// are `{name}.weight` and `{name}.bias` in a checkpoint, and PEFT's adapter tensors
    /// `base_model.model.{name}.lora_A.weight`, ... Empty for a layer made on its own.
    #[module(skip)]
    pub name: String,
    /// Frozen base weight `Wᵀ`, `[in_features, out_features]`.
    pub weight: Param<Tensor<2>>,
    /// Frozen base bias, `[out_features]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// The adapter, if this module was selected by `target_modules`.
    pub adapter: Option<LoraAdapter>,
}

/// LoRA (Hu et al. 2021, eq. 3) or DoRA (Liu et al. 2024, eq. 5) parameters of one linear layer.
///
/// Layouts (transposes of PEFT's so the forward needs no transposes): `lora_a` is `Aᵀ`,
/// `[in, r]` (PEFT `lora_A.weight` is `[r, in]`); `lora_b` is `Bᵀ`, `[r, out]` (PEFT `lora_B.weight`
/// is `[out, r]`); `lora_magnitude_vector` is `m`, `[out]`, present for DoRA only.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// `Aᵀ`, `[in, r]`; initialised Kaiming-uniform like PEFT (`U(-1/√in, 1/√in)`).
    pub lora_a: Param<Tensor<2>>,
    /// `Bᵀ`, `[r, out]`; initialised to zero so the adapted layer starts equal to the base.
    pub lora_b: Param<Tensor<2>>,
    /// DoRA magnitude `m`, `[out]`, initialised to the row norms `||W_j||` of the base weight.
    pub lora_magnitude_vector: Option<Param<Tensor<1>>>,
    /// PEFT's `lora_bias=True` (LoRA only): the bias of `lora_B`, `[out]`, scaled with `B`
    /// (`s·(B·A·x + b_B)`); initialised to zero.
    pub lora_b_bias: Option<Param<Tensor<1>>>,
    /// `lora_alpha / r`, or `lora_alpha / √r` with `use_rslora`.
    pub scaling: f64,
    /// Dropout on the adapter's input (`lora_dropout`).
    pub dropout: Dropout,
    /// Whether the adapter is currently folded into `weight` (see [`AdaptedLinear::merge`]).
    pub merged: bool,
    /// DoRA only: the row norms used by the last merge, `[out]`, needed to unmerge exactly
    /// (PEFT caches the same value).
    pub merged_weight_norm: Option<Param<Tensor<1>>>,
}

/// Which adapter to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// Low-rank adaptation.
    Lora,
    /// Weight-decomposed low-rank adaptation.
    Dora,
}

impl AdapterKind {
    /// `lora` or `dora`.
    pub fn name(self) -> &'static str {
        match self {
            AdapterKind::Lora => "lora",
            AdapterKind::Dora => "dora",
        }
    }

    /// The kind named `lora` or `dora` ([`AdapterKind::name`]); `None` for anything else.
    pub fn from_name(name: &str) -> Option<AdapterKind> {
        [AdapterKind::Lora, AdapterKind::Dora]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

impl AdaptedLinear {
    /// A frozen linear layer from a Burn-layout weight `[in, out]` and bias `[out]`, without a
    /// module name (see [`named`](Self::named)).
    pub fn frozen(weight_in_out: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        AdaptedLinear {
            name: String::new(),
            weight: Param::from_tensor(weight_in_out).set_require_grad(false),
            bias: bias.map(|b| Param::from_tensor(b).set_require_grad(false)),
            adapter: None,
        }
    }

    /// The layer under the Hugging Face module name `name`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// `(in_features, out_features)`.
    pub fn dims(&self) -> (usize, usize) {
        let [i, o] = self.weight.shape().dims();
        (i, o)
    }

    /// Attaches a freshly initialised adapter: `A` Kaiming-uniform (as PEFT's
    /// `nn.init.kaiming_uniform_(a=√5)`, i.e. `U(-1/√in, 1/√in)`), `B = 0`, and for DoRA
    /// `m = ||W_j||` per output row. `A` is drawn from `rng` on the host (the same numbers on
    /// every device for one seed).
    pub fn with_adapter(
        self,
        kind: AdapterKind,
        r: usize,
        scaling: f64,
        lora_dropout: f64,
        rng: &mut crate::model::init::InitRng,
        device: &Device,
    ) -> Self {
        let (d_in, d_out) = self.dims();
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = rng.uniform([d_in, r], -bound, bound, device);
        let b = Tensor::<2>::zeros([r, d_out], device);
        self.with_adapter_weights(kind, a, b, None, scaling, lora_dropout)
    }

    /// Attaches an adapter with given weights in Burn layout: `a` = `Aᵀ` `[in, r]`, `b` = `Bᵀ`
    /// `[r, out]`, `magnitude` `[out]` (DoRA; when `None` it is initialised to
    /// `||W_j + s·B_j·A||` as PEFT does).
    pub fn with_adapter_weights(
        mut self,
        kind: AdapterKind,
        a: Tensor<2>,
        b: Tensor<2>,
        magnitude: Option<Tensor<1>>,
        scaling: f64,
        lora_dropout: f64,
    ) -> Self {
        let lora_a = Param::from_tensor(a);
        let lora_b = Param::from_tensor(b);
        let mut adapter = LoraAdapter {
            lora_a,
            lora_b,
            lora_magnitude_vector: None,
            lora_b_bias: None,
            scaling,
            dropout: Dropout::new(lora_dropout, &format!("{}.lora_dropout", self.name)),
            merged: false,
            merged_weight_norm: None,
        };
        if kind == AdapterKind::Dora {
            let m = magnitude.unwrap_or_else(|| {
                dora_weight_norm(
                    self.weight.val(),
                    adapter.lora_a.val(),
                    adapter.lora_b.val(),
                    scaling,
                )
            });
            adapter.lora_magnitude_vector = Some(Param::from_tensor(m.detach()));
        }
        self.adapter = Some(adapter);
        self
    }

    /// Gives the adapter the bias of `lora_B` (PEFT's `lora_bias=True`), `[out]`, trainable.
    /// No-op without an adapter.
    pub fn with_lora_bias(mut self, bias: Tensor<1>) -> Self {
        if let Some(a) = self.adapter.as_mut() {
            a.lora_b_bias = Some(Param::from_tensor(bias));
        }
        self
    }

    /// Applies the layer to `x` `[..., in]`, returning `[..., out]`.
    ///
    /// - no adapter or merged: `x·Wᵀ + b`;
    /// - LoRA: `x·Wᵀ + b + s·B·A·dropout(x)` (the low-rank path is two skinny matmuls; `W + s·B·A`
    ///   is never formed);
    /// - DoRA (Liu et al. 2024, eq. 5, with the norm detached as in section 4.3 and PEFT):
    ///   `(m / ||W + s·B·A||) ⊙ (x·Wᵀ + s·B·A·x) + b`; with active `lora_dropout` the PEFT form
    ///   `x·Wᵀ + b + (m/n − 1) ⊙ (x̃·Wᵀ) + (m/n) ⊙ s·B·A·x̃`, `x̃ = dropout(x)`, is used.
    ///
    /// # Panics
    /// When the last axis of `x` is not `in_features` (Burn's matmul shape check).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.forward_with(x, None)
    }

    /// [`forward`](Self::forward) of `gelu(u)` for the pre-activation `u` `[..., in]` (BERT's
    /// `output.dense` after `intermediate`): the same values. Without adapter dropout the
    /// adapter's `A` projection is [`crate::kernels::gelu_matmul`] of `u`, which may recompute
    /// `gelu(u)` in the backward instead of keeping the `[..., in]` activation for it.
    ///
    /// # Panics
    /// When the last axis of `u` is not `in_features`.
    pub fn forward_gelu<const D: usize>(&self, u: Tensor<D>) -> Tensor<D> {
        let x = crate::kernels::gelu(u.clone());
        let from_u = self
            .adapter
            .as_ref()
            .is_some_and(|a| !a.merged && !a.dropout.is_active(&u.device()));
        self.forward_with(x, from_u.then_some(u))
    }

    /// The forward of `x`; with `pre_gelu = Some(u)` (`x = gelu(u)`, no adapter dropout) the
    /// `A` projection runs as [`crate::kernels::gelu_matmul`] of `u` and `x`. The frozen layer,
    /// LoRA ([`lora_forward`](Self::lora_forward)) or DoRA ([`dora_forward`](Self::dora_forward)),
    /// as PEFT splits `Linear.forward` from its DoRA variant; the kernels pick their path.
    fn forward_with<const D: usize>(&self, x: Tensor<D>, pre_gelu: Option<Tensor<D>>) -> Tensor<D> {
        match &self.adapter {
            Some(a) if !a.merged && a.lora_magnitude_vector.is_some() => {
                self.dora_forward(a, x, pre_gelu)
            }
            Some(a) if !a.merged => self.lora_forward(a, x, pre_gelu),
            _ => frozen_linear(x, self.weight.val(), self.bias.as_ref().map(|b| b.val())),
        }
    }

    /// `lora_A` and `s·lora_B` in the dtype of `x` (f32 adapters meet f16 activations
    /// narrowed; their gradients come back as f32), with `s·b_B` when `lora_bias`: the scaling
    /// folded into the small `[r, out]` matrix rather than applied to the `[rows, out]` product.
    fn factors<const D: usize>(
        adapter: &LoraAdapter,
        x: &Tensor<D>,
    ) -> (Tensor<2>, Tensor<2>, Option<Tensor<1>>) {
        let a = cast_like(adapter.lora_a.val(), x);
        let b = cast_like(adapter.lora_b.val(), x).mul_scalar(adapter.scaling);
        let b_bias = adapter
            .lora_b_bias
            .as_ref()
            .map(|bb| cast_like(bb.val(), x).mul_scalar(adapter.scaling));
        (a, b, b_bias)
    }

    /// LoRA: `x·Wᵀ + b + s·B·A·dropout(x)` ([`crate::kernels::lora_layer`]).
    fn lora_forward<const D: usize>(
        &self,
        adapter: &LoraAdapter,
        x: Tensor<D>,
        pre_gelu: Option<Tensor<D>>,
    ) -> Tensor<D> {
        let xd = adapter
            .dropout
            .is_active(&x.device())
            .then(|| adapter.dropout.forward(x.clone()));
        let (a, b, b_bias) = Self::factors(adapter, &x);
        let w = self.weight.val();
        let bias = self.bias.as_ref().map(|b| b.val());
        crate::kernels::lora_layer(x, xd, pre_gelu, w, bias, a, b, b_bias)
    }

    /// DoRA: `(m / ‖W + s·B·A‖) ⊙ (x·Wᵀ + s·B·A·x) + b` ([`crate::kernels::dora_layer`]); with
    /// active `lora_dropout` PEFT's form `x·Wᵀ + b + (m/n − 1) ⊙ (x̃·Wᵀ) + (m/n) ⊙ s·B·A·x̃`,
    /// `x̃ = dropout(x)`.
    fn dora_forward<const D: usize>(
        &self,
        adapter: &LoraAdapter,
        x: Tensor<D>,
        pre_gelu: Option<Tensor<D>>,
    ) -> Tensor<D> {
        let Some(m) = &adapter.lora_magnitude_vector else {
            return self.lora_forward(adapter, x, pre_gelu);
        };
        let w = self.weight.val();
        let bias = self.bias.as_ref().map(|b| b.val());
        let (a, b, b_bias) = Self::factors(adapter, &x);
        let norm = dora_weight_norm(
            w.clone(),
            adapter.lora_a.val(),
            adapter.lora_b.val(),
            adapter.scaling,
        );
        if !adapter.dropout.is_active(&x.device()) {
            return crate::kernels::dora_layer(x, pre_gelu, w, bias, a, b, b_bias, m.val(), norm);
        }
        let xd = adapter.dropout.forward(x.clone());
        let lora = crate::kernels::low_rank(xd.clone(), pre_gelu, a, b, b_bias);
        let scale = cast_like((m.val() / norm).unsqueeze::<D>(), &x);
        let base = frozen_linear(x, w.clone(), bias);
        let base_d = frozen_linear(xd, w, None);
        base + (scale.clone() - 1.0) * base_d + scale * lora
    }

    /// Folds the adapter into the base weight (PEFT `merge`): LoRA `W ← W + s·B·A` (and with
    /// `lora_bias` `b ← b + s·b_B`, which needs a base bias, as PEFT); DoRA
    /// `W ← (m / ||W + s·B·A||) ⊙ (W + s·B·A)` row-wise, bias unchanged. The norms are kept so
    /// [`unmerge`](Self::unmerge) restores `W`. A no-op without an adapter or when already merged.
    pub fn merge(mut self) -> Self {
        let Some(adapter) = self.adapter.as_mut() else {
            return self;
        };
        if adapter.merged {
            return self;
        }
        let w = self.weight.val();
        let dtype = w.dtype();
        let w = to_f32(w);
        let a = adapter.lora_a.val().detach();
        let b = adapter.lora_b.val().detach();
        let delta = a.clone().matmul(b.clone()).mul_scalar(adapter.scaling);
        let merged = match &adapter.lora_magnitude_vector {
            None => w + delta,
            Some(m) => {
                let norm = dora_weight_norm(w.clone(), a, b, adapter.scaling);
                let scale = (m.val().detach() / norm.clone()).unsqueeze::<2>();
                adapter.merged_weight_norm = Some(Param::from_tensor(norm).set_require_grad(false));
                (w + delta) * scale
            }
        };
        self.weight = self.weight.map(|_| merged.detach().cast(dtype));
        if let Some(bb) = &adapter.lora_b_bias
            && let Some(bias) = self.bias.take()
        {
            let add = bb.val().detach().mul_scalar(adapter.scaling);
            self.bias = Some(bias.map(|b| b + add));
        }
        adapter.merged = true;
        self
    }

    /// Reverses [`merge`](Self::merge) (PEFT `unmerge`): LoRA `W ← W − s·B·A`; DoRA
    /// `W ← W / (m / n) − s·B·A` with the norms `n` saved at merge time. A no-op when not merged.
    pub fn unmerge(mut self) -> Self {
        let Some(adapter) = self.adapter.as_mut() else {
            return self;
        };
        if !adapter.merged {
            return self;
        }
        let w = self.weight.val();
        let dtype = w.dtype();
        let w = to_f32(w);
        let delta = adapter
            .lora_a
            .val()
            .detach()
            .matmul(adapter.lora_b.val().detach())
            .mul_scalar(adapter.scaling);
        let restored = match (
            &adapter.lora_magnitude_vector,
            adapter.merged_weight_norm.take(),
        ) {
            (Some(m), Some(norm)) => {
                let scale = (m.val().detach() / norm.val()).unsqueeze::<2>();
                w / scale - delta
            }
            _ => w - delta,
        };
        self.weight = self.weight.map(|_| restored.detach().cast(dtype));
        if let Some(bb) = &adapter.lora_b_bias
            && let Some(bias) = self.bias.take()
        {
            let sub = bb.val().detach().mul_scalar(adapter.scaling);
            self.bias = Some(bias.map(|b| b - sub));
        }
        adapter.merged = false;
        self
    }

    /// Number of trainable adapter parameters (`r·(in + out)`, plus `out` for DoRA).
    pub fn adapter_params(&self) -> usize {
        match &self.adapter {
            None => 0,
            Some(a) => {
                a.lora_a.shape().num_elements()
                    + a.lora_b.shape().num_elements()
                    + a.lora_magnitude_vector
                        .as_ref()
                        .map_or(0, |m| m.shape().num_elements())
                    + a.lora_b_bias
                        .as_ref()
                        .map_or(0, |b| b.shape().num_elements())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AdapterKind;

    #[test]
    fn adapter_kind_names_round_trip() {
        for k in [AdapterKind::Lora, AdapterKind::Dora] {
            assert_eq!(AdapterKind::from_name(k.name()), Some(k));
        }
        assert_eq!(AdapterKind::from_name("none"), None);
        assert_eq!(AdapterKind::from_name("DoRA"), None);
    }
}
