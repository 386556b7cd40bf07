// LayerNorm over the last axis (PyTorch's layer_norm, biased variance), one workgroup per row:
//   y[i, j] = (x[i, j] - mean_i) / sqrt(var_i + eps) * gamma[j] + beta[j]
// x, y [rows, h] contiguous in {{ act }} (f32, or f16 in the f16 mode); gamma, beta [h] f32.
// Statistics in f32 (two passes over the row: mean, then the centred sum of squares), as
// autocast runs layer_norm in f32; y rounded once. No [rows, h] temporary.
// params: [rows, h, bitcast(eps), workgroups per dispatch row].
{{ enable }}
@group(0) @binding(0) var<storage, read_write> x: array<{{ act }}>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<{{ act }}>;
@group(0) @binding(4) var<storage, read_write> params: array<u32>;

const WG: u32 = {{ workgroup_size }}u;
{{ row_stats }}

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = this_row(wid);
    let base = r.base;
    let n = r.n;
    let t = lid.x;
    let stats = row_stats(t, r);
    let mean = stats.x;
    let rstd = stats.y;
    for (var j = t; j < n; j += WG) {
        y[base + j] = {{ act }}((f32(x[base + j]) - mean) * rstd * gamma[j] + beta[j]);
    }
}
