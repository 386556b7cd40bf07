// A copy into a new buffer: out[i] = x[i], x and out contiguous in {{ act }}. Used where a launch
// would bind one allocation twice (the Gram product A^T A): every binding of lorabert's kernels is
// read_write (wgpu tracks usage per buffer, and cubecl's pools put many tensors in one buffer, so
// a read-only binding beside a read_write one of the same buffer is refused), and WebGPU forbids
// a writable binding from overlapping another binding of the same dispatch.
// params: [n, row stride of the dispatch grid].
{{ enable }}
@group(0) @binding(0) var<storage, read_write> x: array<{{ act }}>;
@group(0) @binding(1) var<storage, read_write> out: array<{{ act }}>;
@group(0) @binding(2) var<storage, read_write> params: array<u32>;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.y * params[1] + gid.x;
    if idx >= params[0] {
        return;
    }
    out[idx] = x[idx];
}
