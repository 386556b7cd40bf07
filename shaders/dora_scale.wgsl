// Fused DoRA output (Liu et al. 2024, eq. 5, PEFT's DoraLinearLayer without dropout):
//   out[n, j] = (m[j] / norm[j]) * (base[n, j] + s * lora[n, j]) + bias[j]
// for a batch of rows: base = x W^T [rows, n_out], lora = (x A^T) B^T [rows, n_out] (unscaled),
// both contiguous in the activation type {{ act }} (f32, or f16 in the f16 mode), as is out;
// m, norm, bias [n_out] f32. Computed in f32 and rounded once. One invocation per element,
// replacing four element-wise passes (scale, add, multiply, bias) with one.
// params: [rows * n_out, n_out, bitcast(scaling), row stride of the dispatch grid].
{{ enable }}
@group(0) @binding(0) var<storage, read_write> base: array<{{ act }}>;
@group(0) @binding(1) var<storage, read_write> lora: array<{{ act }}>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> norm: array<f32>;
@group(0) @binding(4) var<storage, read_write> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<{{ act }}>;
@group(0) @binding(6) var<storage, read_write> params: array<u32>;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let total = params[0];
    let n_out = params[1];
    let s = bitcast<f32>(params[2]);
    let idx = gid.y * params[3] + gid.x;
    if idx >= total {
        return;
    }
    let j = idx % n_out;
    out[idx] = {{ act }}((m[j] / norm[j]) * (f32(base[idx]) + s * f32(lora[idx])) + bias[j]);
}
