//! The CPU's matrix products (native builds, flex, f32): one call of the `gemm` crate per matrix,
//! written straight into the output's final allocation.
//!
//! Burn's flex `float_matmul` calls the same `gemm` crate, but allocates each output as a zeroed
//! `Vec<u8>` and then copies it into a 16-byte-aligned buffer (`Bytes::from_bytes_vec`): at the
//! training step's shapes (`[2048, 1536]` outputs, 12 MiB) the zeroing, the page faults of the
//! fresh pages and the copy took about a tenth of a MiniLM LoRA step on 2 cores (`perf record`
//! of `lorabert bench`). Here the output is a `Vec<f32>` that `gemm` writes once (`read_dst`
//! false: every element is stored, none read) and that the tensor then owns without a copy.
//!
//! Threading matches flex's: one matrix above `192³` multiply-adds splits over the rayon pool
//! (`gemm::Parallelism::Rayon`), a batch of small matrices (attention) splits over matrices.
//! Native builds enable the `gemm` crate's AVX-512 kernels (Burn's `x86-v4` feature, chosen at
//! run time where the CPU has `avx512f`); `lorabert bench --gemm` measures both routes.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape, TensorData};
use rayon::prelude::*;

/// Multiply-adds above which one matrix is split over the rayon pool (flex's threshold).
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;

/// Multiply-adds from which a product below [`PARALLEL_THRESHOLD`] is still split in two over
/// the rayon pool, by rows or by columns, whichever is longer: the thin LoRA products
/// (`[rows, in]·[in, r]`, `[rows, r]·[r, out]`, `xᵀ·(g·Bᵀ)` at r = 8), which the `gemm` crate
/// runs as single-threaded matrix-vector loops, memory-bound on one core. A vector output from
/// long dot products (`min(m, n) = 1` and `k` above `max(m, n)`, the rank-1 weight gradients
/// `xᵀ·(g·Bᵀ)` and `(x·A)ᵀ·g`) is split along `k` instead (two partial vectors, then added):
/// split by rows or columns it ran at half the unsplit rate (`bench --gemm`: 9 against
/// 17 GFLOP/s).
const SPLIT_THRESHOLD: usize = 1 << 16;

/// One product `a·b` of `m × k` and `k × n` matrices (element strides given, in elements) into
/// `dst` (row stride `dst_rs`, column stride 1), `dst = a·b`, or `dst += a·b` with `read_dst`:
/// with `threaded`, threaded by the `gemm` crate from [`PARALLEL_THRESHOLD`] multiply-adds, split
/// in two halves (one `gemm` call each, on two rayon tasks; along `k` for a vector output of long
/// dot products) from [`SPLIT_THRESHOLD`], else (and
/// always without `threaded`: a batch already split over matrices) one call on this thread.
///
/// # Safety
/// `a`, `b` and `dst` with these sizes and strides must address valid, initialised (`dst` only
/// with `read_dst`) elements, and `dst` must not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_2d(
    (m, k, n): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: isize,
    read_dst: bool,
    (a, a_rs, a_cs): (*const f32, isize, isize),
    (b, b_rs, b_cs): (*const f32, isize, isize),
    threaded: bool,
) {
    // Addresses cross into the rayon tasks as integers (the buffers outlive the calls).
    let (dst, a, b) = (dst as usize, a as usize, b as usize);
    // The block of rows `r0..r0 + rows`, columns `c0..c0 + cols` and terms `k0..k0 + kk` of the
    // product, into `out` (row stride `out_rs`) at that block, added to it with `read`.
    let block = |(r0, rows): (usize, usize),
                 (c0, cols): (usize, usize),
                 (k0, kk): (usize, usize),
                 (out, out_rs, read): (usize, isize, bool),
                 par: gemm::Parallelism| {
        let (r0, c0, k0) = (r0 as isize, c0 as isize, k0 as isize);
        // SAFETY: the caller's pointers offset inside the same matrices (`out` is `dst` or a
        // buffer of the product's shape); blocks written at once do not overlap.
        unsafe {
            gemm::gemm(
                rows,
                cols,
                kk,
                (out as *mut f32).offset(r0 * out_rs + c0),
                1,
                out_rs,
                read,
                (a as *const f32).offset(r0 * a_rs + k0 * a_cs),
                a_cs,
                a_rs,
                (b as *const f32).offset(c0 * b_cs + k0 * b_rs),
                b_cs,
                b_rs,
                if read { 1.0f32 } else { 0.0f32 },
                1.0f32,
                false,
                false,
                false,
                par,
            );
        }
    };
    let into_dst = (dst, dst_rs, read_dst);
    let call = |r0: usize, rows: usize, c0: usize, cols: usize, par: gemm::Parallelism| {
        block((r0, rows), (c0, cols), (0, k), into_dst, par)
    };
    let work = m.saturating_mul(n).saturating_mul(k);
    let none = gemm::Parallelism::None;
    let split = threaded && rayon::current_num_threads() > 1;
    if threaded && work >= PARALLEL_THRESHOLD {
        call(0, m, 0, n, gemm::Parallelism::Rayon(0));
    } else if split && work >= SPLIT_THRESHOLD && m.min(n) == 1 && k > m.max(n) {
        // A vector of long dot products: the first half of every dot product into `dst`, the
        // second into a temporary vector, then added (a fixed order for a given thread count).
        let h = k / 2;
        let mut part = vec![0f32; m * n];
        let part_at = (part.as_mut_ptr() as usize, n as isize, false);
        rayon::join(
            || block((0, m), (0, n), (0, h), into_dst, none),
            || block((0, m), (0, n), (h, k - h), part_at, none),
        );
        for (i, row) in part.chunks(n).enumerate() {
            for (j, p) in row.iter().enumerate() {
                // SAFETY: element (i, j) of the `m × n` output at row stride `dst_rs`.
                unsafe { *(dst as *mut f32).offset(i as isize * dst_rs + j as isize) += p };
            }
        }
    } else if split && work >= SPLIT_THRESHOLD && m.max(n) >= 2 {
        if m >= n {
            let h = m / 2;
            rayon::join(|| call(0, h, 0, n, none), || call(h, m - h, 0, n, none));
        } else {
            let h = n / 2;
            rayon::join(|| call(0, m, 0, h, none), || call(0, m, h, n - h, none));
        }
    } else {
        call(0, m, 0, n, none);
    }
}

/// The instruction set the `gemm` crate's f32 kernels use on this CPU: `avx512f` (x86-64 with
/// AVX-512; native builds enable those kernels), `fma` (x86-64 with AVX2 and FMA), `neon`, or
/// `scalar`.
pub fn isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("fma") {
            return "fma";
        }
    }
    #[cfg(target_arch = "aarch64")]
    return "neon";
    #[allow(unreachable_code)]
    "scalar"
}

/// Element offsets of each matrix of a batch: `dims` the leading axes, `strides` their strides,
/// `start` the tensor's offset. Row-major order over the leading axes.
fn batch_offsets(dims: &[usize], strides: &[isize], start: usize) -> Vec<isize> {
    let count = dims.iter().product::<usize>();
    (0..count)
        .map(|mut b| {
            let mut off = start as isize;
            for (d, s) in dims.iter().zip(strides).rev() {
                off += (b % d) as isize * s;
                b /= d;
            }
            off
        })
        .collect()
}

/// `a·b` over the last two axes for f32 flex tensors of equal rank with equal leading axes (any
/// strides: transposed views are read in place): `a` `[.., m, k]`, `b` `[.., k, n]` →
/// `[.., m, n]`, contiguous. `None` for other dtypes, ranks or shapes (the caller then runs
/// Burn's `float_matmul`, which also reports mismatched shapes).
pub fn matmul_f32(a: &FlexTensor, b: &FlexTensor) -> Option<FlexTensor> {
    if a.dtype() != DType::F32 || b.dtype() != DType::F32 {
        return None;
    }
    let (sa, sb) = (a.shape(), b.shape());
    let d = sa.num_dims();
    if d < 2 || sb.num_dims() != d || (0..d - 2).any(|i| sa[i] != sb[i]) || sa[d - 1] != sb[d - 2] {
        return None;
    }
    let (m, k, n) = (sa[d - 2], sa[d - 1], sb[d - 1]);
    let lead: Vec<usize> = (0..d - 2).map(|i| sa[i]).collect();
    let batch = lead.iter().product::<usize>();
    let mut out_dims = lead.clone();
    out_dims.extend([m, n]);
    let len = batch * m * n;
    if len == 0 || k == 0 {
        return Some(FlexTensor::from_data(TensorData::new(
            vec![0f32; len],
            Shape::from(out_dims),
        )));
    }
    let (la, lb) = (a.layout(), b.layout());
    let (ast, bst) = (la.strides(), lb.strides());
    let (a_rs, a_cs) = (ast[d - 2], ast[d - 1]);
    let (b_rs, b_cs) = (bst[d - 2], bst[d - 1]);
    let a_off = batch_offsets(&lead, &ast[..d - 2], la.start_offset());
    let b_off = batch_offsets(&lead, &bst[..d - 2], lb.start_offset());
    let (ap, bp) = (a.storage::<f32>().as_ptr(), b.storage::<f32>().as_ptr());
    // Raw pointers cross into the rayon closures as addresses (the tensors outlive them).
    let (ap, bp) = (ap as usize, bp as usize);
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let one = |dst: *mut f32, i: usize, threaded: bool| {
        // SAFETY: `dst` has room for the `m × n` matrix `i` (row stride `n`, written, not read);
        // `a_off[i]` and `b_off[i]` with the row and column strides address elements of `a` and
        // `b` inside their storage (their layouts say so).
        unsafe {
            gemm_2d(
                (m, k, n),
                dst,
                n as isize,
                false,
                ((ap as *const f32).offset(a_off[i]), a_rs, a_cs),
                ((bp as *const f32).offset(b_off[i]), b_rs, b_cs),
                threaded,
            );
        }
    };
    let work = m.saturating_mul(n).saturating_mul(k);
    if batch == 1 {
        one(out.spare_capacity_mut().as_mut_ptr().cast(), 0, true);
    } else if work.saturating_mul(batch) >= PARALLEL_THRESHOLD {
        out.spare_capacity_mut()
            .par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(i, c)| one(c.as_mut_ptr().cast(), i, false));
    } else {
        for (i, c) in out.spare_capacity_mut().chunks_mut(m * n).enumerate() {
            one(c.as_mut_ptr().cast(), i, false);
        }
    }
    // SAFETY: every one of the `len` elements was written by `gemm` above (`k > 0`, each
    // matrix's `m × n` block stored in full).
    unsafe { out.set_len(len) };
    Some(FlexTensor::from_data(TensorData::new(
        out,
        Shape::from(out_dims),
    )))
}

/// `c += a·b` in place for a row-major `c` `[m, n]` (its values, owned by the caller) and 2-D f32
/// flex tensors `a` `[m, k]`, `b` `[k, n]` of any strides (transposed views read in place): one
/// `gemm` call that reads each element of `c` once in its epilogue (`read_dst`, `alpha = 1`)
/// instead of a product written to a new buffer and a separate add pass over both. `false`
/// (nothing written) for other dtypes, ranks or shapes.
pub fn matmul_add_f32(c: &mut [f32], a: &FlexTensor, b: &FlexTensor) -> bool {
    if a.dtype() != DType::F32 || b.dtype() != DType::F32 {
        return false;
    }
    let (sa, sb) = (a.shape(), b.shape());
    if sa.num_dims() != 2 || sb.num_dims() != 2 || sa[1] != sb[0] {
        return false;
    }
    let (m, k, n) = (sa[0], sa[1], sb[1]);
    if c.len() != m * n {
        return false;
    }
    if k == 0 || c.is_empty() {
        return true;
    }
    let (la, lb) = (a.layout(), b.layout());
    let (ast, bst) = (la.strides(), lb.strides());
    // SAFETY: `c` holds the `m × n` output (row stride `n`), read and written; the start offsets
    // with the row and column strides address elements of `a` and `b` inside their storage
    // (their layouts say so).
    unsafe {
        gemm_2d(
            (m, k, n),
            c.as_mut_ptr(),
            n as isize,
            true,
            (
                a.storage::<f32>().as_ptr().add(la.start_offset()),
                ast[0],
                ast[1],
            ),
            (
                b.storage::<f32>().as_ptr().add(lb.start_offset()),
                bst[0],
                bst[1],
            ),
            true,
        );
    }
    true
}
