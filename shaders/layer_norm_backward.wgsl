// The input gradient of shaders/layer_norm.wgsl (PyTorch's native_layer_norm_backward), one
// workgroup per row, from the input alone (the statistics are recomputed):
//   xhat = (x - mean) / sigma,  d = g * gamma,
//   dx = (d - mean(d) - xhat * mean(d * xhat)) / sigma
// x, g, dx [rows, h] contiguous in {{ act }}; gamma [h] f32; all arithmetic in f32. gamma and
// beta's own gradients (needed only when LayerNorm is trained) are not computed here.
// params: [rows, h, bitcast(eps), workgroups per dispatch row].
{{ enable }}
@group(0) @binding(0) var<storage, read_write> x: array<{{ act }}>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<{{ act }}>;
@group(0) @binding(3) var<storage, read_write> dx: array<{{ act }}>;
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
    var sd = 0.0;
    var sdx = 0.0;
    for (var j = t; j < n; j += WG) {
        let d = f32(g[base + j]) * gamma[j];
        sd += d;
        sdx += d * (f32(x[base + j]) - mean) * rstd;
    }
    let sums = workgroup_sum2(t, sd, sdx);
    let a = sums.x / f32(r.h);
    let b = sums.y / f32(r.h);
    for (var j = t; j < n; j += WG) {
        let xhat = (f32(x[base + j]) - mean) * rstd;
        dx[base + j] = {{ act }}((f32(g[base + j]) * gamma[j] - a - xhat * b) * rstd);
    }
}
