//! The backward launcher: dq/dk/dv and the per-pair scratch (`bwd_query`, `bwd_key`), the
//! relative-position table's gradient (summed over windows, in two passes where long) and the
//! padding tokens' key/value gradients.

use super::*;

/// Gradients of window attention. All are overwritten by the backward pass.
pub struct WindowAttentionGrads {
    /// [B, H, W, C] each.
    pub dq: Tensor,
    pub dk: Tensor,
    pub dv: Tensor,
    /// d relative_position_bias_table [(2w−1)², heads].
    pub d_table: Tensor,
    /// Gradients of `pad_k` / `pad_v` ([C] each; add them to the key / value bias gradients),
    /// present exactly when the forward had padding values.
    pub d_pad: Option<(Tensor, Tensor)>,
}

/// Scratch of the backward pass for one call shape: per-pair probabilities and score gradients
/// [B, nW, heads, w², w², 2], their sum over windows [heads, w², w²], and per-padding-token key
/// and value gradients; where those sums are long for their few outputs (a GPU, or llvmpipe's
/// loop budget), segment partials of each, summed in a second pass. Keep it alive until the
/// recorded dispatches have run.
pub struct WindowAttentionWorkspace {
    pds: Tensor,
    dsum: Tensor,
    dpad: Tensor,
    /// `[S, heads, w², w²]` partial table sums, when S > 1.
    pub(super) table_part: Option<Tensor>,
    /// `[S, 2, C]` partial padding gradients, when S > 1.
    pub(super) pad_part: Option<Tensor>,
    shape: Vec<usize>,
    opts: WindowAttentionOptions,
}

/// Shortest segment of the two-pass sums (windows, or padding rows).
const MIN_SEGMENT: usize = 16;

impl WindowAttentionWorkspace {
    pub fn new(
        rt: &Runtime,
        x: &WindowAttentionInputs,
        opts: &WindowAttentionOptions,
    ) -> Result<Self> {
        let g = geometry(rt, x, opts)?;
        let pds_shape = [g.batch, g.nw, g.heads, g.n, g.n, 2];
        check::binding_of(
            rt,
            OP,
            "the backward workspace (p, dscore per pair)",
            &pds_shape,
            4,
        )?;
        let policy = crate::ops::policy::policy(rt);
        let table = policy.sum_segments(g.heads * g.n * g.n, g.batch * g.nw, MIN_SEGMENT, 1);
        let pad = policy.sum_segments(g.channels / 4, g.batch * g.n_pad, MIN_SEGMENT, 1);
        let part = |s: usize, shape: &[usize]| -> Result<Option<Tensor>> {
            let mut full = vec![s];
            full.extend_from_slice(shape);
            (s > 1).then(|| rt.empty(&full, DType::F32)).transpose()
        };
        Ok(Self {
            pds: rt.empty(&pds_shape, DType::F32)?,
            dsum: rt.empty(&[g.heads, g.n, g.n], DType::F32)?,
            dpad: rt.empty(&[(g.batch * g.n_pad * 2 * g.channels).max(4)], DType::F32)?,
            table_part: part(table, &[g.heads, g.n, g.n])?,
            pad_part: part(pad, &[2, g.channels])?,
            shape: x.q.shape().to_vec(),
            opts: *opts,
        })
    }
}

impl WindowAttentionGrads {
    /// Uninitialised gradient tensors for these inputs.
    pub fn new(
        rt: &Runtime,
        x: &WindowAttentionInputs,
        opts: &WindowAttentionOptions,
    ) -> Result<Self> {
        let g = geometry(rt, x, opts)?;
        let s = x.q.shape();
        let d_pad = match x.pad_k {
            Some(_) => Some((
                rt.empty(&[g.channels], DType::F32)?,
                rt.empty(&[g.channels], DType::F32)?,
            )),
            None => None,
        };
        Ok(Self {
            dq: rt.empty(s, DType::F32)?,
            dk: rt.empty(s, DType::F32)?,
            dv: rt.empty(s, DType::F32)?,
            d_table: rt.empty(&[g.table_len(), g.heads], DType::F32)?,
            d_pad,
        })
    }
}

/// Validates the backward's tensors against the forward's geometry and the workspace.
#[allow(clippy::too_many_arguments)]
fn check_backward(
    g: &Geometry,
    x: &WindowAttentionInputs,
    out: &Tensor,
    lse: &Tensor,
    dout: &Tensor,
    grads: &WindowAttentionGrads,
    ws: &WindowAttentionWorkspace,
    opts: &WindowAttentionOptions,
) -> Result<()> {
    let s = x.q.shape();
    if ws.shape != s || ws.opts != *opts {
        return Err(crate::shape_err!(
            OP,
            "workspace was made for q {:?} and {:?}, the call has q {s:?} and {opts:?}",
            ws.shape,
            ws.opts
        ));
    }
    for (t, name) in [
        (out, "out"),
        (dout, "dout"),
        (&grads.dq, "dq"),
        (&grads.dk, "dk"),
        (&grads.dv, "dv"),
    ] {
        check::f32_shape(OP, name, t, s)?;
    }
    check::f32_shape(OP, "lse", lse, &g.lse_shape())?;
    check::f32_shape(OP, "d_table", &grads.d_table, &[g.table_len(), g.heads])?;
    let has_pad = x.pad_k.is_some();
    match &grads.d_pad {
        Some((k, v)) if has_pad => {
            check::f32_shape(OP, "d_pad_k", k, &[g.channels])?;
            check::f32_shape(OP, "d_pad_v", v, &[g.channels])?;
        }
        None if !has_pad => {}
        _ => {
            return Err(crate::shape_err!(
                OP,
                "d_pad must be given exactly when pad_k / pad_v are (pad given: {has_pad})"
            ))
        }
    }
    Ok(())
}

/// Records the backward pass: from the forward's inputs, its `out` and `lse`, and the output
/// gradient `dout`, overwrites every tensor of `grads`.
#[allow(clippy::too_many_arguments)]
pub fn window_attention_backward_into(
    rt: &Runtime,
    x: &WindowAttentionInputs,
    out: &Tensor,
    lse: &Tensor,
    dout: &Tensor,
    grads: &WindowAttentionGrads,
    ws: &WindowAttentionWorkspace,
    opts: &WindowAttentionOptions,
) -> Result<Vec<Dispatch>> {
    // Over ~80 lines: the backward's passes (query, key, table sum, padding) recorded in order.
    let g = geometry(rt, x, opts)?;
    check_backward(&g, x, out, lse, dout, grads, ws, opts)?;
    let has_pad = x.pad_k.is_some();
    let shader = crate::shader!("window_attention_backward");
    let c = g.constants();
    let params = g.params(has_pad);
    let pad_k = x.pad_k.unwrap_or(x.k);
    let pad_v = x.pad_v.unwrap_or(x.v);
    let rows = rt.grid(g.rows() as u64, WG);
    // On CPU adapters both passes read their inner loops' operands from texel views: a query
    // row walks its window's keys and values, a key column the queries and their dO.
    let mut ds = vec![
        texel::dispatch(
            rt,
            shader,
            &QUERY_TEXEL,
            "bwd_query",
            &c,
            &params,
            &[
                x.q, x.k, x.v, x.table, pad_k, pad_v, out, lse, dout, &grads.dq, &ws.pds,
            ],
            [1, 2],
            rows,
        )?,
        texel::dispatch(
            rt,
            shader,
            &KEY_TEXEL,
            "bwd_key",
            &c,
            &params,
            &[x.q, dout, &ws.pds, &grads.dk, &grads.dv, &ws.dpad],
            [0, 1],
            rows,
        )?,
    ];
    ds.extend(table_sum(rt, &g, &params, ws)?);
    ds.push(rt.dispatch(
        &rt.kernel(&shader, "bwd_table", &c)?,
        &params,
        &[ws.dsum.binding(), grads.d_table.binding()],
        rt.grid((g.table_len() * g.heads) as u64, WG),
    ));
    if let Some((dk, dv)) = &grads.d_pad {
        let pad = rt.kernel(&shader, "bwd_pad", &c)?;
        let c4 = g.channels / 4;
        match &ws.pad_part {
            None => ds.push(rt.dispatch(
                &pad,
                &params,
                &[ws.dpad.binding(), dk.binding(), dv.binding()],
                rt.grid(c4 as u64, WG),
            )),
            Some(part) => {
                let segments = part.shape()[0];
                let rows = g.batch * g.n_pad;
                let first = Params {
                    seg: rows.div_ceil(segments) as u32,
                    ..params
                };
                ds.push(rt.dispatch(
                    &rt.kernel(&shader, "bwd_pad_partial", &c)?,
                    &first,
                    &[ws.dpad.binding(), part.binding()],
                    rt.grid((segments * c4) as u64, WG),
                ));
                let second = Params {
                    pad_rows: segments as u32,
                    ..params
                };
                ds.push(rt.dispatch(
                    &pad,
                    &second,
                    &[part.binding(), dk.binding(), dv.binding()],
                    rt.grid(c4 as u64, WG),
                ));
            }
        }
    }
    Ok(ds)
}

/// `bwd_query`'s texel form: keys and values from views.
static QUERY_TEXEL: texel::Form = texel::Form::new("window_attention_backward+texel_q", ["k", "v"]);
/// `bwd_key`'s texel form: queries and output gradients from views.
static KEY_TEXEL: texel::Form =
    texel::Form::new("window_attention_backward+texel_k", ["kq", "kdout"]);

/// The relative-position table's score gradients summed over windows into `ws.dsum`: one pass,
/// or segment partials and their sum (`reduce`'s kernel).
fn table_sum(
    rt: &Runtime,
    g: &Geometry,
    params: &Params,
    ws: &WindowAttentionWorkspace,
) -> Result<Vec<Dispatch>> {
    let k = rt.kernel(
        &crate::shader!("window_attention_backward"),
        "bwd_table_sum",
        &g.constants(),
    )?;
    let outputs = g.heads * g.n * g.n;
    let Some(part) = &ws.table_part else {
        let grid = rt.grid(outputs as u64, WG);
        return Ok(vec![rt.dispatch(
            &k,
            params,
            &[ws.pds.binding(), ws.dsum.binding()],
            grid,
        )]);
    };
    let segments = part.shape()[0];
    let first = Params {
        seg: (g.batch * g.nw).div_ceil(segments) as u32,
        ..*params
    };
    let grid = rt.grid((segments * outputs) as u64, WG);
    let mut ds = vec![rt.dispatch(&k, &first, &[ws.pds.binding(), part.binding()], grid)];
    ds.extend(crate::ops::reduce::reduce_into(
        rt,
        crate::ops::reduce::Reduce::Sum,
        &part.reshape(&[segments, outputs])?,
        0,
        &ws.dsum.reshape(&[outputs])?,
        crate::ops::reduce::Variant::Auto,
    )?);
    Ok(ds)
}

/// Backward pass; returns fresh gradients (see [`window_attention_backward_into`]).
pub fn window_attention_backward(
    rt: &Runtime,
    x: &WindowAttentionInputs,
    out: &Tensor,
    lse: &Tensor,
    dout: &Tensor,
    opts: &WindowAttentionOptions,
) -> Result<WindowAttentionGrads> {
    let ws = WindowAttentionWorkspace::new(rt, x, opts)?;
    let grads = WindowAttentionGrads::new(rt, x, opts)?;
    rt.run(&window_attention_backward_into(
        rt, x, out, lse, dout, &grads, &ws, opts,
    )?);
    Ok(grads)
}
