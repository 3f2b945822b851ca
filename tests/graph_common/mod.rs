//! Test-only ops for exercising the graph machinery (planner, executor, autodiff) independently
//! of the kernel library: tiny f32 kernels for add, mul, scale, sum and broadcast, each with its
//! backward rule. They also show that an op plugs into the graph with one `Op` impl.
#![allow(dead_code)]

use mask2former::graph::{Graph, Io, Op, Result, TensorInfo, Value};
use mask2former::runtime::{Dispatch, Runtime, Shader};

const WGSL: &str = r#"
struct P { n: u32, c: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * 64u; }

@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n) { o[i] = a[i] + b[i]; }
}

@compute @workgroup_size(64)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n) { o[i] = a[i] * b[i]; }
}
"#;

const WGSL_UNARY: &str = r#"
struct P { n: u32, c: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * 64u; }

@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n) { o[i] = p.c * a[i]; }
}

// Sum of all n inputs into o[0] (one thread: test sizes only).
@compute @workgroup_size(1)
fn sum(@builtin(global_invocation_id) gid: vec3<u32>) {
    var s = 0.0;
    for (var i = 0u; i < p.n; i++) { s += a[i]; }
    o[0] = s;
}

// o[i] = a[0] for n outputs.
@compute @workgroup_size(64)
fn broadcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n) { o[i] = a[0]; }
}
"#;

const WGSL_INPLACE: &str = r#"
struct P { n: u32, c: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;

@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i < p.n) { o[i] = p.c * o[i]; }
}
"#;

const BINARY: Shader = Shader {
    name: "test_binary",
    source: WGSL,
};
const UNARY: Shader = Shader {
    name: "test_unary",
    source: WGSL_UNARY,
};
const INPLACE: Shader = Shader {
    name: "test_inplace",
    source: WGSL_INPLACE,
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct P {
    n: u32,
    c: f32,
}

fn launch(
    rt: &Runtime,
    shader: &Shader,
    entry: &str,
    n: usize,
    c: f32,
    io: &Io<'_>,
    single: bool,
) -> mask2former::Result<Vec<Dispatch>> {
    let k = rt.kernel(shader, entry, &[])?;
    let mut bindings: Vec<_> = io.inputs.iter().map(|t| t.binding()).collect();
    bindings.push(io.outputs[0].binding());
    let grid = if single {
        [1, 1, 1]
    } else {
        rt.grid(n as u64, 64)
    };
    Ok(vec![rt.dispatch(
        &k,
        &P { n: n as u32, c },
        &bindings,
        grid,
    )])
}

fn same(inputs: &[&TensorInfo], n: usize) -> std::result::Result<Vec<TensorInfo>, String> {
    if inputs.len() != n {
        return Err(format!("takes {n} inputs, got {}", inputs.len()));
    }
    if inputs.iter().any(|i| i.shape != inputs[0].shape) {
        return Err("shapes differ".into());
    }
    Ok(vec![inputs[0].clone()])
}

#[derive(Debug)]
pub struct TAdd;
impl Op for TAdd {
    fn name(&self) -> &str {
        "t_add"
    }
    fn infer(&self, i: &[&TensorInfo]) -> std::result::Result<Vec<TensorInfo>, String> {
        same(i, 2)
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> mask2former::Result<Vec<Dispatch>> {
        launch(rt, &BINARY, "add", io.outputs[0].numel(), 0.0, io, false)
    }
    fn backward(
        &self,
        _g: &mut Graph,
        _x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        Ok(vec![dy[0], dy[0]])
    }
}

#[derive(Debug)]
pub struct TMul;
impl Op for TMul {
    fn name(&self) -> &str {
        "t_mul"
    }
    fn infer(&self, i: &[&TensorInfo]) -> std::result::Result<Vec<TensorInfo>, String> {
        same(i, 2)
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> mask2former::Result<Vec<Dispatch>> {
        launch(rt, &BINARY, "mul", io.outputs[0].numel(), 0.0, io, false)
    }
    fn backward(
        &self,
        g: &mut Graph,
        x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        let dy = dy[0].expect("one output");
        Ok(vec![
            Some(g.apply1(TMul, &[dy, x[1]])?),
            Some(g.apply1(TMul, &[dy, x[0]])?),
        ])
    }
}

/// `c * x`, in place over `x` when the planner allows.
#[derive(Debug)]
pub struct TScale(pub f32);
impl Op for TScale {
    fn name(&self) -> &str {
        "t_scale"
    }
    fn infer(&self, i: &[&TensorInfo]) -> std::result::Result<Vec<TensorInfo>, String> {
        same(i, 1)
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> mask2former::Result<Vec<Dispatch>> {
        let n = io.outputs[0].numel();
        if io.inplace == Some(0) {
            let k = rt.kernel(&INPLACE, "scale", &[])?;
            let p = P {
                n: n as u32,
                c: self.0,
            };
            return Ok(vec![rt.dispatch(
                &k,
                &p,
                &[io.outputs[0].binding()],
                rt.grid(n as u64, 64),
            )]);
        }
        launch(rt, &UNARY, "scale", n, self.0, io, false)
    }
    fn backward(
        &self,
        g: &mut Graph,
        _x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        Ok(vec![Some(g.apply1(TScale(self.0), &[dy[0].unwrap()])?)])
    }
    fn inplace(&self) -> Option<usize> {
        Some(0)
    }
}

/// Sum of all elements, shape [1].
#[derive(Debug)]
pub struct TSum;
impl Op for TSum {
    fn name(&self) -> &str {
        "t_sum"
    }
    fn infer(&self, i: &[&TensorInfo]) -> std::result::Result<Vec<TensorInfo>, String> {
        same(i, 1)?;
        Ok(vec![TensorInfo::f32(&[1])])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> mask2former::Result<Vec<Dispatch>> {
        launch(rt, &UNARY, "sum", io.inputs[0].numel(), 0.0, io, true)
    }
    fn backward(
        &self,
        g: &mut Graph,
        x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        let shape = g.shape(x[0]).to_vec();
        Ok(vec![Some(g.apply1(TBroadcast(shape), &[dy[0].unwrap()])?)])
    }
}

/// A one-element tensor repeated to `shape`.
#[derive(Debug)]
pub struct TBroadcast(pub Vec<usize>);
impl Op for TBroadcast {
    fn name(&self) -> &str {
        "t_broadcast"
    }
    fn infer(&self, i: &[&TensorInfo]) -> std::result::Result<Vec<TensorInfo>, String> {
        match i {
            [x] if x.numel() == 1 => Ok(vec![TensorInfo::f32(&self.0)]),
            _ => Err("takes one one-element input".into()),
        }
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> mask2former::Result<Vec<Dispatch>> {
        launch(
            rt,
            &UNARY,
            "broadcast",
            io.outputs[0].numel(),
            0.0,
            io,
            false,
        )
    }
    fn backward(
        &self,
        g: &mut Graph,
        _x: &[Value],
        _y: &[Value],
        dy: &[Option<Value>],
    ) -> Result<Vec<Option<Value>>> {
        Ok(vec![Some(g.apply1(TSum, &[dy[0].unwrap()])?)])
    }
}

/// A graph whose gradients are summed with the test add kernel.
pub fn graph() -> Graph {
    let mut g = Graph::new();
    g.set_grad_accumulator(std::sync::Arc::new(TAdd));
    g
}
