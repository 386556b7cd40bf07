// Shared by the LayerNorm kernels (inserted at their `{{ row_stats }}`), which declare WG (the
// workgroup size, a power of two), `x` (their rows) and `params` ([rows, h, bitcast(eps),
// workgroups per dispatch row]).

// The row of workgroup `wid`: `base` its first element, `n` its length `h`, or 0 for a
// workgroup past the last row (which then runs on an empty row instead of returning early:
// every invocation must reach the reductions' barriers).
struct Row {
    base: u32,
    n: u32,
    h: u32,
    eps: f32,
}

fn this_row(wid: vec3<u32>) -> Row {
    let rows = params[0];
    let h = params[1];
    let row = wid.y * params[3] + wid.x;
    return Row(row * h, select(0u, h, row < rows), h, bitcast<f32>(params[2]));
}

var<workgroup> red_a: array<f32, WG>;
var<workgroup> red_b: array<f32, WG>;

// The sums of every invocation's `a` and `b` over the workgroup, by tree reduction in workgroup
// memory. Every invocation of the workgroup must call it (it holds barriers).
fn workgroup_sum2(t: u32, a: f32, b: f32) -> vec2<f32> {
    red_a[t] = a;
    red_b[t] = b;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if t < stride {
            red_a[t] += red_a[t + stride];
            red_b[t] += red_b[t + stride];
        }
        workgroupBarrier();
    }
    let total = vec2<f32>(red_a[0], red_b[0]);
    workgroupBarrier();
    return total;
}

// (mean, 1/sqrt(var + eps)) of row `r` of `x`, in f32, in two passes (mean, then the centred
// sum of squares; biased variance, as PyTorch). Invocation `t` reads elements t, t + WG, ...
fn row_stats(t: u32, r: Row) -> vec2<f32> {
    let base = r.base;
    let n = r.n;
    let h = r.h;
    var s = 0.0;
    for (var j = t; j < n; j += WG) {
        s += f32(x[base + j]);
    }
    let mean = workgroup_sum2(t, s, 0.0).x / f32(h);
    var q = 0.0;
    for (var j = t; j < n; j += WG) {
        let c = f32(x[base + j]) - mean;
        q += c * c;
    }
    return vec2<f32>(mean, 1.0 / sqrt(workgroup_sum2(t, q, 0.0).x / f32(h) + r.eps));
}
