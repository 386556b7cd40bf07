// Batched matrix product out[b] = lhs[b] · rhs[b]: lhs [m, k] and rhs [k, n] read through
// arbitrary element strides (so a transposed view is read in place, no copy), out [m, n]
// contiguous, every matrix in {{ act }} (f32, or f16 in the f16 mode) with f32 accumulation.
// The products whose k or n is not a multiple of 4 (shaders/matmul_vec4.wgsl takes the rest):
// LoRA's rank-1 and rank-2 products, odd sizes.
//
// Each invocation of a 256-invocation workgroup accumulates a 4 x 4 block of out: rows
// row + RS i and columns col + CS j (i, j < 4). Three layouts, chosen by the shape (template
// parameters, src/kernels/wgpu.rs):
// - square: invocation (x, y) of 16 x 16 has row = 64 wid.y + y, col = 64 wid.x + x, RS = CS = 16
//   (a 64 x 64 block per workgroup; neighbouring invocations read neighbouring columns of rhs);
// - narrow (n < 16, as x·A and g·Bᵀ at rank r): invocation t has row = 1024 wid.y + t, RS = 256,
//   and the workgroup's 4 columns col = 4 wid.x, CS = 1 (a 1024 x 4 block);
// - short (m < 16, as (x·A)ᵀ·g for ∂B): col = 1024 wid.x + t, CS = 256, and 4 rows
//   row = 4 wid.y, RS = 1 (a 4 x 1024 block).
// Rows and columns past the matrix read the last one (computed, never written), so the loop
// over k has no bounds checks. The sizes and strides are runtime parameters: one compiled
// kernel per layout and activation type serves every shape.
//
// Workgroup z is the batch index b = b0 * inner + b1 over at most two leading axes.
// params: [m, n, k, inner, lhs row stride, lhs column stride, lhs b0 stride, lhs b1 stride,
//          rhs row stride, rhs column stride, rhs b0 stride, rhs b1 stride].
{{ enable }}
@group(0) @binding(0) var<storage, read_write> lhs: array<{{ act }}>;
@group(0) @binding(1) var<storage, read_write> rhs: array<{{ act }}>;
@group(0) @binding(2) var<storage, read_write> out: array<{{ act }}>;
@group(0) @binding(3) var<storage, read_write> params: array<u32>;

const RS: u32 = {{ row_step }}u;
const CS: u32 = {{ col_step }}u;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let m = params[0];
    let n = params[1];
    let k = params[2];
    let inner = params[3];
    let b0 = wid.z / inner;
    let b1 = wid.z % inner;
    let a_row = params[4];
    let a_col = params[5];
    let b_row = params[8];
    let b_col = params[9];
    let row = {{ row }};
    let col = {{ col }};
    let last_r = max(m, 1u) - 1u;
    let last_c = max(n, 1u) - 1u;
    let a_base = b0 * params[6] + b1 * params[7];
    let b_base = b0 * params[10] + b1 * params[11];
    let a0 = a_base + min(row, last_r) * a_row;
    let a1 = a_base + min(row + RS, last_r) * a_row;
    let a2 = a_base + min(row + 2u * RS, last_r) * a_row;
    let a3 = a_base + min(row + 3u * RS, last_r) * a_row;
    let bj = vec4<u32>(
        b_base + min(col, last_c) * b_col,
        b_base + min(col + CS, last_c) * b_col,
        b_base + min(col + 2u * CS, last_c) * b_col,
        b_base + min(col + 3u * CS, last_c) * b_col,
    );

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var c = 0u; c < k; c++) {
        let ac = c * a_col;
        let bc = c * b_row;
        let a = vec4<f32>(f32(lhs[a0 + ac]), f32(lhs[a1 + ac]), f32(lhs[a2 + ac]), f32(lhs[a3 + ac]));
        let b = vec4<f32>(f32(rhs[bj.x + bc]), f32(rhs[bj.y + bc]), f32(rhs[bj.z + bc]), f32(rhs[bj.w + bc]));
        acc0 += a.x * b;
        acc1 += a.y * b;
        acc2 += a.z * b;
        acc3 += a.w * b;
    }

    let o_base = wid.z * m * n;
    store_row(o_base + row * n, row < m, col, n, acc0);
    store_row(o_base + (row + RS) * n, row + RS < m, col, n, acc1);
    store_row(o_base + (row + 2u * RS) * n, row + 2u * RS < m, col, n, acc2);
    store_row(o_base + (row + 3u * RS) * n, row + 3u * RS < m, col, n, acc3);
}

// Writes v to columns col + CS j of the output row starting at `base`, those inside the row's
// n columns, if the row is inside the matrix.
fn store_row(base: u32, inside: bool, col: u32, n: u32, v: vec4<f32>) {
    if !inside {
        return;
    }
    if col < n {
        out[base + col] = {{ act }}(v.x);
    }
    if col + CS < n {
        out[base + col + CS] = {{ act }}(v.y);
    }
    if col + 2u * CS < n {
        out[base + col + 2u * CS] = {{ act }}(v.z);
    }
    if col + 3u * CS < n {
        out[base + col + 3u * CS] = {{ act }}(v.w);
    }
}
