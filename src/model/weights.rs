//! safetensors in memory, both ways: reading tensors out of a Hugging Face `model.safetensors`
//! ([`Checkpoint`]) and writing named f32 tensors read back from the device ([`ReadBack`],
//! [`f32_safetensors`]).

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// A parsed safetensors checkpoint (borrowing the file's bytes) with name lookup that accepts
/// keys with or without a model prefix such as `bert.`.
pub struct Checkpoint<'a> {
    tensors: SafeTensors<'a>,
    source: String,
    prefix: String,
}

impl<'a> Checkpoint<'a> {
    /// Parses the safetensors header of `bytes`. `source_name` (e.g. the file path) is quoted in
    /// every error. `prefixes` are the optional key prefixes to detect (for BERT: `["bert."]`);
    /// the first under which `probe` exists is used for every later lookup.
    ///
    /// # Errors
    /// [`Error::Safetensors`] when the header or data offsets are invalid (a truncated file,
    /// a header claiming more bytes than the file holds, ...).
    pub fn parse(
        bytes: &'a [u8],
        source_name: &str,
        prefixes: &[&str],
        probe: &str,
    ) -> Result<Self> {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        let prefix = prefixes
            .iter()
            .find(|p| tensors.tensor(&format!("{p}{probe}")).is_ok())
            .map(|p| p.to_string())
            .unwrap_or_default();
        Ok(Checkpoint {
            tensors,
            source: source_name.to_string(),
            prefix,
        })
    }

    /// The detected key prefix (`""` or e.g. `"bert."`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The file name used in errors.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether a tensor `name` (without prefix) exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.tensor(&self.full(name)).is_ok()
    }

    /// All tensor names in the file, as stored.
    pub fn names(&self) -> Vec<String> {
        self.tensors
            .names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    fn full(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// Reads tensor `name` as f32 values, checking its shape against `expected`.
    /// f32, f16 and bf16 storage are accepted (converted to f32).
    ///
    /// # Errors
    /// [`Error::MissingTensor`] when absent; [`Error::BadTensor`] on a shape or dtype mismatch.
    pub fn f32_values(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        self.read(self.full(name), expected)
    }

    fn read(&self, key: String, expected: &[usize]) -> Result<Vec<f32>> {
        let view = self
            .tensors
            .tensor(&key)
            .map_err(|_| Error::MissingTensor {
                source_name: self.source.clone(),
                tensor: key.clone(),
                hint: if self.prefix.is_empty() {
                    String::new()
                } else {
                    format!(" (looked up with prefix `{}`)", self.prefix)
                },
            })?;
        if view.shape() != expected {
            return Err(Error::BadTensor {
                source_name: self.source.clone(),
                tensor: key,
                found: format!("shape {:?} ({:?})", view.shape(), view.dtype()),
                expected: format!("shape {expected:?}"),
            });
        }
        let data = view.data();
        let values = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::BadTensor {
                    source_name: self.source.clone(),
                    tensor: key,
                    found: format!("dtype {other:?}"),
                    expected: "F32, F16 or BF16".into(),
                });
            }
        };
        Ok(values)
    }

    /// Like [`f32_values`](Self::f32_values) but with `name` taken verbatim (no prefix).
    ///
    /// # Errors
    /// As [`f32_values`](Self::f32_values).
    pub fn f32_values_raw(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        self.read(name.to_string(), expected)
    }

    /// Shape of tensor `name` (verbatim), if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.tensor(name).ok().map(|v| v.shape().to_vec())
    }

    /// Reads a 1-D tensor `[n]`.
    ///
    /// # Errors
    /// As [`f32_values`](Self::f32_values).
    pub fn tensor1(&self, name: &str, n: usize, device: &Device) -> Result<Tensor<1>> {
        let v = self.f32_values(name, &[n])?;
        Ok(Tensor::from_data(TensorData::new(v, [n]), device))
    }

    /// Reads a 2-D tensor stored `[rows, cols]`.
    ///
    /// # Errors
    /// As [`f32_values`](Self::f32_values).
    pub fn tensor2(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let v = self.f32_values(name, &[rows, cols])?;
        Ok(Tensor::from_data(TensorData::new(v, [rows, cols]), device))
    }

    /// Reads a Hugging Face linear weight stored `[out, in]` and returns it transposed to Burn's
    /// `[in, out]` layout (materialised contiguous).
    ///
    /// # Errors
    /// As [`f32_values`](Self::f32_values).
    pub fn linear_weight(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let v = self.f32_values(name, &[d_out, d_in])?;
        Ok(Tensor::from_data(
            TensorData::new(transpose(&v, d_out, d_in), [d_in, d_out]),
            device,
        ))
    }
}

/// Tensors queued for an asynchronous read-back into named f32 values for safetensors. The
/// module visitors are synchronous, so they queue tensors here and [`ReadBack::read`] reads
/// them with `into_data_async` (the only read-back the browser's WebGPU allows).
#[derive(Default)]
pub struct ReadBack {
    items: Vec<Queued>,
}

/// Named f32 tensors: `name → (shape, row-major values)`, as [`ReadBack::read`] returns them
/// and [`f32_safetensors`] writes them.
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// A queued tensor: name, stored shape, flattened values, optional transpose `(rows, cols)`.
type Queued = (String, Vec<usize>, Tensor<1>, Option<(usize, usize)>);

impl ReadBack {
    /// Queues `t` under `name` with the stored `shape`; `transpose = Some((rows, cols))` stores
    /// the transpose of the row-major `[rows, cols]` values (Burn `[in, out]` to PyTorch
    /// `[out, in]`).
    pub fn push<const D: usize>(
        &mut self,
        name: String,
        shape: Vec<usize>,
        t: Tensor<D>,
        transpose: Option<(usize, usize)>,
    ) {
        let n = t.shape().num_elements();
        self.items.push((name, shape, t.reshape([n]), transpose));
    }

    /// Queues `t` under `name` as it is stored (shape and layout unchanged).
    pub fn push_param<const D: usize>(&mut self, name: &str, t: Tensor<D>) {
        let shape = t.dims().to_vec();
        self.push(name.to_string(), shape, t, None);
    }

    /// Queues a linear layer as PyTorch stores it: `{name}.weight` `[out, in]` from Burn's
    /// `weight` `[in, out]`, and `{name}.bias` `[out]` when present.
    pub fn push_linear(&mut self, name: &str, weight: Tensor<2>, bias: Option<Tensor<1>>) {
        let [d_in, d_out] = weight.dims();
        self.push(
            format!("{name}.weight"),
            vec![d_out, d_in],
            weight,
            Some((d_in, d_out)),
        );
        if let Some(b) = bias {
            self.push(format!("{name}.bias"), vec![d_out], b, None);
        }
    }

    /// Reads every queued tensor back to the host.
    ///
    /// # Errors
    /// [`Error::ReadBack`] when a device read-back fails.
    pub async fn read(self) -> Result<Tensors> {
        let mut out = BTreeMap::new();
        for (name, shape, t, tr) in self.items {
            let v = crate::kernels::read_f32(t).await?;
            let v = match tr {
                Some((rows, cols)) => transpose(&v, rows, cols),
                None => v,
            };
            out.insert(name, (shape, v));
        }
        Ok(out)
    }
}

/// Serialises named f32 tensors (`name → (shape, values)`) as safetensors bytes.
///
/// # Errors
/// [`Error::Invalid`] when a shape does not match its values.
pub fn f32_safetensors(tensors: &Tensors) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (shape, v))| {
            (
                k.clone(),
                shape.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(k, shape, b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::Invalid(format!("tensor {k}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::Invalid(format!("safetensors: {e}")))
}

/// Tensor `name` of safetensors bytes as `(shape, values)`, when it is stored as f32.
///
/// # Errors
/// [`Error::Invalid`] when the bytes are not safetensors, or the tensor is absent or not f32.
pub fn read_f32_tensor(bytes: &[u8], name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::Invalid(format!("safetensors: {e}")))?;
    let t = st
        .tensor(name)
        .map_err(|e| Error::Invalid(format!("tensor {name}: {e}")))?;
    if t.dtype() != Dtype::F32 {
        return Err(Error::Invalid(format!("tensor {name} is not f32")));
    }
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((t.shape().to_vec(), v))
}

/// Row-major transpose of a `[rows, cols]` buffer into `[cols, rows]`.
pub fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}
