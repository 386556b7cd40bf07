//! The dropout module of the encoder, the heads and the adapters. Which mask it draws, and on
//! which device how, is [`crate::kernels`]' business ([`crate::kernels::random_dropout`]).

use burn::module::{Flag, Module, Param};
use burn::tensor::{Device, Tensor};

/// Inverted dropout: in training, zeroes each element with probability `prob` and scales the
/// rest by `1/(1−prob)`; the identity in evaluation (`valid()`), on non-autodiff devices, or with
/// `prob = 0`. Same semantics as `torch.nn.Dropout` and `burn::nn::Dropout`.
#[derive(Module, Debug)]
pub struct Dropout {
    /// Probability of zeroing an element.
    pub prob: f64,
    /// Training flag (disabled by `valid()`).
    pub training: Param<Flag>,
    /// The key its masks are seeded by ([`crate::kernels::mask::module_key`] of its name).
    #[module(skip)]
    pub key: u64,
}

impl Dropout {
    /// A dropout of probability `prob`, clamped into `[0, 1)`, for the module `name` (its
    /// Hugging Face name, such as `encoder.layer.0.attention.self.dropout`): each training step
    /// draws its mask from the step's seed and this name, whatever the other modules do.
    pub fn new(prob: f64, name: &str) -> Self {
        Dropout {
            prob: if prob.is_finite() {
                prob.clamp(0.0, 0.999)
            } else {
                0.0
            },
            training: Param::from_bool(true),
            key: crate::kernels::mask::module_key(name),
        }
    }

    /// Whether this dropout changes its input (training, autodiff device, `prob > 0`).
    pub fn is_active(&self, device: &Device) -> bool {
        self.prob > 0.0 && self.training.is_enabled() && device.is_autodiff()
    }

    /// Applies dropout to `x` (any shape).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if !self.is_active(&x.device()) {
            return x;
        }
        crate::kernels::random_dropout(x, 1.0 - self.prob, self.key)
    }

    /// `dropout(p)·v` (the attention context from its probabilities): `p` `[.., m, k]`, `v`
    /// `[.., k, n]` → `[.., m, n]`. The same values, gradients and seed draws as
    /// `self.forward(p).matmul(v)`, through [`crate::kernels::random_dropout_matmul`].
    pub fn forward_matmul<const D: usize>(&self, p: Tensor<D>, v: Tensor<D>) -> Tensor<D> {
        if !self.is_active(&p.device()) {
            return crate::kernels::matmul(p, v);
        }
        crate::kernels::random_dropout_matmul(p, v, 1.0 - self.prob, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_when_inactive() {
        let d = Dropout::new(0.5, "d");
        let x = Tensor::<2>::ones([3, 4], &Device::flex());
        assert_eq!(d.forward(x.clone()).into_data(), x.into_data());
    }
}
