//! Helpers on backend primitives shared by the backend extensions ([`super::fused`],
//! [`super::dora`], the WGSL launches).

use burn::backend::{Backend, TensorMetadata, tensor::FloatTensor};
use burn::tensor::DType;

/// `t` cast to `dtype` (a no-op when it already has it).
pub(crate) fn cast_to<B: Backend>(t: FloatTensor<B>, dtype: DType) -> FloatTensor<B> {
    if t.dtype() == dtype {
        t
    } else {
        B::float_cast(t, dtype.into())
    }
}
