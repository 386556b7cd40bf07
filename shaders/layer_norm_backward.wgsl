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
var<workgroup> red: array<f32, {{ workgroup_size }}>;
var<workgroup> red2: array<f32, {{ workgroup_size }}>;

// The sums of every invocation's `a` and `b` over the workgroup (all invocations call it).
fn workgroup_sum2(t: u32, a: f32, b: f32) -> vec2<f32> {
    red[t] = a;
    red2[t] = b;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if t < stride {
            red[t] += red[t + stride];
            red2[t] += red2[t + stride];
        }
        workgroupBarrier();
    }
    let total = vec2<f32>(red[0], red2[0]);
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
    let hf = f32(h);
    var s = 0.0;
    for (var j = t; j < n; j += WG) {
        s += f32(x[base + j]);
    }
    let mean = workgroup_sum2(t, s, 0.0).x / hf;
    var q = 0.0;
    for (var j = t; j < n; j += WG) {
        let c = f32(x[base + j]) - mean;
        q += c * c;
    }
    let rstd = 1.0 / sqrt(workgroup_sum2(t, q, 0.0).x / hf + eps);
    var sd = 0.0;
    var sdx = 0.0;
    for (var j = t; j < n; j += WG) {
        let d = f32(g[base + j]) * gamma[j];
        sd += d;
        sdx += d * (f32(x[base + j]) - mean) * rstd;
    }
    let sums = workgroup_sum2(t, sd, sdx);
    let a = sums.x / hf;
    let b = sums.y / hf;
    for (var j = t; j < n; j += WG) {
        let xhat = (f32(x[base + j]) - mean) * rstd;
        dx[base + j] = {{ act }}((f32(g[base + j]) * gamma[j] - a - xhat * b) * rstd);
    }
}
