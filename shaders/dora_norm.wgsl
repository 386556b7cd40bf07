// DoRA row norms in Gram form (Liu et al. 2024, eq. 5; the detached norm of section 4.3):
//   out[j] = sqrt(max(||W_j||^2 + 2 s B_j (A W_j^T) + s^2 B_j (A A^T) B_j^T, eps))
// for every output row j, without the [out, in] temporary W + s B A.
// Layouts (row-major, contiguous): w = W^T [n_in, n_out] in {{ w_elem }} (f32 or f16 storage),
// a = A^T [n_in, R] f32, b = B^T [R, n_out] f32, gram = A A^T [R, R] f32, out [n_out] f32.
// One invocation per output row j; W is read once, coalesced across j; sums accumulate in f32.
// params: [n_in, n_out, bitcast(scaling), bitcast(eps)].
{{ enable }}

@group(0) @binding(0) var<storage, read_write> w: array<{{ w_elem }}>;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> gram: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> params: array<u32>;

const R: u32 = {{ r }}u;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n_in = params[0];
    let n_out = params[1];
    let s = bitcast<f32>(params[2]);
    let eps = bitcast<f32>(params[3]);
    let j = gid.x;
    if j >= n_out {
        return;
    }
    // p[k] = (A W^T)[k, j] and ||W_j||^2, both from one pass over column j of W^T.
    var p: array<f32, {{ r }}>;
    for (var k = 0u; k < R; k++) {
        p[k] = 0.0;
    }
    var w_sq = 0.0;
    for (var i = 0u; i < n_in; i++) {
        let wij = f32(w[i * n_out + j]);
        w_sq += wij * wij;
        for (var k = 0u; k < R; k++) {
            p[k] += a[i * R + k] * wij;
        }
    }
    var cross = 0.0;
    var quad = 0.0;
    for (var k = 0u; k < R; k++) {
        let bk = b[k * n_out + j];
        cross += bk * p[k];
        var gb = 0.0;
        for (var l = 0u; l < R; l++) {
            gb += gram[k * R + l] * b[l * n_out + j];
        }
        quad += bk * gb;
    }
    let n2 = w_sq + 2.0 * s * cross + s * s * quad;
    out[j] = sqrt(max(n2, eps));
}
