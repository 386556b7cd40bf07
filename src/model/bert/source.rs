//! Where the encoder's weights come from while [`super::Bert`] is built: a Hugging Face
//! checkpoint ([`FromCheckpoint`]) or BERT's random initialisation ([`RandomInit`]), each module
//! asking for its tensors under its Hugging Face module path ([`ModulePath`]).

use burn::module::Param;
use burn::tensor::{Device, Tensor};

use super::{Embedding, LayerNorm};
use crate::error::Result;
use crate::model::lora::AdaptedLinear;
use crate::model::weights::Checkpoint;

/// A Hugging Face module path, extended one name at a time (candle's `VarBuilder::pp`).
#[derive(Debug, Clone, Default)]
pub(super) struct ModulePath(pub(super) String);

impl ModulePath {
    /// The child module `name` of this one (`encoder` → `encoder.layer`).
    pub(super) fn pp(&self, name: impl std::fmt::Display) -> ModulePath {
        if self.0.is_empty() {
            ModulePath(name.to_string())
        } else {
            ModulePath(format!("{}.{name}", self.0))
        }
    }

    /// The full name of the parameter `param` of this module (`...query` → `...query.weight`).
    pub(super) fn param(&self, param: &str) -> String {
        format!("{}.{param}", self.0)
    }
}

/// Where the weights of the modules being built come from: each module asks for its own
/// tensors under its module path.
pub(super) trait WeightSource {
    /// A frozen linear layer `d_in → d_out` (weight `[out, in]` in the checkpoint, `[in, out]`
    /// here) with its bias.
    fn linear(&self, p: &ModulePath, d_in: usize, d_out: usize) -> Result<AdaptedLinear>;
    /// A frozen LayerNorm over `n` features.
    fn layer_norm(&self, p: &ModulePath, n: usize, eps: f64) -> Result<LayerNorm>;
    /// A frozen embedding table `[rows, cols]`.
    fn embedding(&self, p: &ModulePath, rows: usize, cols: usize) -> Result<Embedding>;
    /// Whether the source has the (optional) linear layer at `p`.
    fn has_linear(&self, p: &ModulePath) -> bool;
}

pub(super) fn frozen<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(t).set_require_grad(false)
}

/// Weights from a Hugging Face checkpoint.
pub(super) struct FromCheckpoint<'a> {
    pub(super) ck: &'a Checkpoint<'a>,
    pub(super) device: &'a Device,
}

impl WeightSource for FromCheckpoint<'_> {
    fn linear(&self, p: &ModulePath, d_in: usize, d_out: usize) -> Result<AdaptedLinear> {
        let w = self
            .ck
            .linear_weight(&p.param("weight"), d_in, d_out, self.device)?;
        let b = self.ck.tensor1(&p.param("bias"), d_out, self.device)?;
        Ok(AdaptedLinear::frozen(w, Some(b)).named(&p.0))
    }

    fn layer_norm(&self, p: &ModulePath, n: usize, eps: f64) -> Result<LayerNorm> {
        // Old TF-converted checkpoints call the parameters gamma/beta.
        let (w, b) = if self.ck.contains(&p.param("weight")) || !self.ck.contains(&p.param("gamma"))
        {
            ("weight", "bias")
        } else {
            ("gamma", "beta")
        };
        Ok(LayerNorm {
            name: p.0.clone(),
            weight: frozen(self.ck.tensor1(&p.param(w), n, self.device)?),
            bias: frozen(self.ck.tensor1(&p.param(b), n, self.device)?),
            eps,
        })
    }

    fn embedding(&self, p: &ModulePath, rows: usize, cols: usize) -> Result<Embedding> {
        Ok(Embedding {
            name: p.0.clone(),
            weight: frozen(
                self.ck
                    .tensor2(&p.param("weight"), rows, cols, self.device)?,
            ),
        })
    }

    fn has_linear(&self, p: &ModulePath) -> bool {
        self.ck.contains(&p.param("weight"))
    }
}

/// BERT's initialisation (`initializer_range` 0.02) from the host generator of
/// [`crate::model::init`].
pub(super) struct RandomInit<'a> {
    pub(super) device: &'a Device,
    pub(super) rng: std::sync::Mutex<&'a mut crate::model::init::InitRng>,
}

impl RandomInit<'_> {
    fn normal(&self, shape: [usize; 2]) -> Tensor<2> {
        let mut g = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        g.normal(shape, 0.0, 0.02, self.device)
    }
}

impl WeightSource for RandomInit<'_> {
    fn linear(&self, p: &ModulePath, d_in: usize, d_out: usize) -> Result<AdaptedLinear> {
        let bias = Tensor::zeros([d_out], self.device);
        Ok(AdaptedLinear::frozen(self.normal([d_in, d_out]), Some(bias)).named(&p.0))
    }

    fn layer_norm(&self, p: &ModulePath, n: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            name: p.0.clone(),
            weight: frozen(Tensor::ones([n], self.device)),
            bias: frozen(Tensor::zeros([n], self.device)),
            eps,
        })
    }

    fn embedding(&self, p: &ModulePath, rows: usize, cols: usize) -> Result<Embedding> {
        Ok(Embedding {
            name: p.0.clone(),
            weight: frozen(self.normal([rows, cols])),
        })
    }

    fn has_linear(&self, _: &ModulePath) -> bool {
        false
    }
}
