//! `--precision` for the commands that run a trained model (`embed`, `eval`, `predict`,
//! `search`, `bench --inference`): the f16 mode of `train --precision f16`
//! ([`crate::model::Bert::into_f16`]) without the training parts.

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::Args;

use super::PrecisionArg;
use crate::model::Bert;
use crate::train::{Precision, resolve_precision};

/// `--precision` and `--exact-precision` of the inference commands.
#[derive(Args, Debug, Clone, Copy)]
pub struct InferencePrecision {
    /// Precision: f32, or f16 as `train --precision f16` (wgpu devices with shader-f16: the
    /// encoder's frozen weights and its activations in f16 storage, products and LayerNorm
    /// accumulated in f32, the last hidden states widened to f32; adapters and heads f32).
    /// Without f16 (the CPU backend) it falls back to f32 with a notice.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// With `--precision f16`: fail instead of falling back to f32.
    #[arg(long)]
    pub exact_precision: bool,
}

impl InferencePrecision {
    /// `bert` in the precision that runs on `device` ([`precision_or_refuse`]), and that precision.
    ///
    /// # Errors
    /// `--exact-precision` where the device has no f16.
    pub fn apply(&self, bert: Bert, device: &Device) -> Result<(Bert, Precision)> {
        let precision = precision_or_refuse(
            self.precision.into(),
            device,
            self.exact_precision,
            "running",
        )?;
        let bert = match precision {
            Precision::F16 => bert.into_f16(),
            Precision::F32 => bert,
        };
        Ok((bert, precision))
    }
}

/// The precision that runs on `device` for `requested`: f16 falls back to f32 with a notice
/// (printed, saying `doing` in f32: "training", "running") where the device has no f16, or with
/// `exact` is refused. `exact` with f32 requested is said to have no effect (a note, not an
/// error: a sweep passes its flags to its f32 and f16 cells alike).
///
/// # Errors
/// `exact` where the device has no f16 ([`resolve_precision`]).
pub(crate) fn precision_or_refuse(
    requested: Precision,
    device: &Device,
    exact: bool,
    doing: &str,
) -> Result<Precision> {
    if exact && requested == Precision::F32 {
        eprintln!("note: --exact-precision only applies to --precision f16; {doing} in f32");
    }
    let (precision, notice) = resolve_precision(requested, device);
    if let Some(why) = notice {
        if exact {
            bail!("--precision f16 --exact-precision: refusing to fall back to f32 ({why})");
        }
        eprintln!("note: {why}: {doing} in f32");
    }
    Ok(precision)
}
