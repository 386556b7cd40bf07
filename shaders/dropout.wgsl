// Inverted dropout with a counter-based mask: out[i] = x[i] * (keep_i ? 1/keep : 0), where
// keep_i = hash(i, seed) < threshold, hash = two rounds of the PCG hash (Jarzynski and Olano,
// "Hash Functions for GPU Rendering", JCGT 2020) keyed by the 64-bit seed. The mask is a pure
// function of (seed, i), so the backward regenerates it instead of storing it (the host mirror
// is lorabert::model::dropout::device_mask_keeps). x, out contiguous in {{ act }}.
// params: [n, seed_lo, seed_hi, threshold, bitcast(1/keep), row stride of the dispatch grid].
{{ enable }}
@group(0) @binding(0) var<storage, read_write> x: array<{{ act }}>;
@group(0) @binding(1) var<storage, read_write> out: array<{{ act }}>;
@group(0) @binding(2) var<storage, read_write> params: array<u32>;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = params[0];
    let idx = gid.y * params[5] + gid.x;
    if idx >= n {
        return;
    }
    let key = pcg(params[1] ^ pcg(params[2]));
    let h = pcg(pcg(idx ^ key) ^ (key * 2654435769u));
    let scale = select(0.0, bitcast<f32>(params[4]), h < params[3]);
    out[idx] = {{ act }}(f32(x[idx]) * scale);
}
