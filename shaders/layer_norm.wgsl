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
var<workgroup> red: array<f32, {{ workgroup_size }}>;

// The sum of every invocation's `v` over the workgroup (tree reduction; all invocations call it).
fn workgroup_sum(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if t < stride {
            red[t] += red[t + stride];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let rows = params[0];
    let h = params[1];
    let eps = bitcast<f32>(params[2]);
    let row = wid.y * params[3] + wid.x;
    // Workgroups past the last row run with an empty row (no early return: the barriers of the
    // reductions must be reached by every invocation).
    let n = select(0u, h, row < rows);
    let t = lid.x;
    let base = row * h;
    var s = 0.0;
    for (var j = t; j < n; j += WG) {
        s += f32(x[base + j]);
    }
    let mean = workgroup_sum(t, s) / f32(h);
    var q = 0.0;
    for (var j = t; j < n; j += WG) {
        let c = f32(x[base + j]) - mean;
        q += c * c;
    }
    let rstd = 1.0 / sqrt(workgroup_sum(t, q) / f32(h) + eps);
    for (var j = t; j < n; j += WG) {
        y[base + j] = {{ act }}((f32(x[base + j]) - mean) * rstd * gamma[j] + beta[j]);
    }
}
