// Batched matrix product out[b] = lhs[b] · rhs[b] for contiguous row-major operands whose k and n
// are multiples of 4, read and written as vec4: lhs [batch, m, k], rhs [batch, k, n], out
// [batch, m, n], all in {{ act }} (f32, or f16 in the f16 mode), accumulated in f32.
//
// Invocation (x, y) of a 16 x 16 workgroup computes the vec4 of columns 4x' .. 4x' + 3
// (x' = 16 wid.x + x) for rows y + 16i, i < R, of the workgroup's 16 R rows. Per 4 steps of k
// it loads R vec4 of lhs (R rows x 4 k) and four of rhs (4 k x 4 columns) for 16 R
// multiply-adds. R is a template parameter: src/kernels/wgpu.rs writes R lines at each of the
// four placeholders below (row addresses, accumulators, products, stores), R = 16 for tall
// products and 4 for short ones. Rows past m read the last row (computed, not written), so the
// loop has no bounds checks.
// params: [m, n / 4, k / 4].
{{ enable }}
@group(0) @binding(0) var<storage, read_write> lhs: array<vec4<{{ act }}>>;
@group(0) @binding(1) var<storage, read_write> rhs: array<vec4<{{ act }}>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<{{ act }}>>;
@group(0) @binding(3) var<storage, read_write> params: array<u32>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = params[0];
    let n4 = params[1];
    let k4 = params[2];
    let row = wid.y * {{ tile_rows }}u + lid.y;
    let cv = wid.x * 16u + lid.x;
    let last_r = max(m, 1u) - 1u;
    let cvc = min(cv, max(n4, 1u) - 1u);
    let a_batch = wid.z * m * k4;
    let b_batch = wid.z * k4 * 4u * n4;
{{ addresses }}
{{ accumulators }}
    for (var c = 0u; c < k4; c++) {
        let rb = b_batch + 4u * c * n4 + cvc;
        let b0 = vec4<f32>(rhs[rb]);
        let b1 = vec4<f32>(rhs[rb + n4]);
        let b2 = vec4<f32>(rhs[rb + 2u * n4]);
        let b3 = vec4<f32>(rhs[rb + 3u * n4]);
{{ products }}
    }

    if cv >= n4 {
        return;
    }
    let o = wid.z * m;
{{ stores }}
}
