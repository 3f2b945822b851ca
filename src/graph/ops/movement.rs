//! Data movement: slice, pad, permute, concat (copies with their adjoint copies as backward).

use std::sync::Arc;

use super::infer_err;
use crate::graph::{Grads, Graph, InferResult, Io, Op, Result, TensorInfo, Value};
use crate::ops::copy;
use crate::runtime::{Dispatch, Runtime};

/// `x[r0.0..r0.1, r1.0..r1.1, ..]`: one range per axis.
#[derive(Debug, Clone)]
pub struct Slice {
    pub ranges: Vec<(usize, usize)>,
}

impl Op for Slice {
    op_header!("slice", inputs: 1);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let s = &i[0].shape;
        if self.ranges.len() != s.len()
            || self
                .ranges
                .iter()
                .zip(s)
                .any(|(&(a, b), &d)| a > b || b > d)
        {
            return infer_err(format!("ranges {:?} do not fit {s:?}", self.ranges));
        }
        Ok(vec![TensorInfo {
            shape: self.ranges.iter().map(|(a, b)| b - a).collect(),
            dtype: i[0].dtype,
        }])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let ranges: Vec<copy::Range> = self
            .ranges
            .iter()
            .map(|&(start, end)| copy::Range {
                start,
                end,
                step: 1,
            })
            .collect();
        copy::slice_into(rt, io.inputs[0], &ranges, io.outputs[0])
    }
    fn backward(&self, g: &mut Graph, x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        let shape = g.shape(x[0]).to_vec();
        let pads = self
            .ranges
            .iter()
            .zip(&shape)
            .map(|(&(a, b), &d)| (a, d - b))
            .collect();
        Ok(vec![Some(
            g.apply1(Pad { pads }, &[dy[0].expect("one output")])?,
        )])
    }
}

/// Zero padding: (before, after) per axis.
#[derive(Debug, Clone)]
pub struct Pad {
    pub pads: Vec<(usize, usize)>,
}

impl Op for Pad {
    op_header!("pad", inputs: 1);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        if self.pads.len() != i[0].shape.len() {
            return infer_err(format!(
                "{} pads for rank {}",
                self.pads.len(),
                i[0].shape.len()
            ));
        }
        Ok(vec![TensorInfo {
            shape: i[0]
                .shape
                .iter()
                .zip(&self.pads)
                .map(|(d, (a, b))| a + d + b)
                .collect(),
            dtype: i[0].dtype,
        }])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let amounts: Vec<(i64, i64)> = self
            .pads
            .iter()
            .map(|&(a, b)| (a as i64, b as i64))
            .collect();
        copy::pad_into(rt, io.inputs[0], &amounts, 0f32.to_bits(), io.outputs[0])
    }
    fn backward(&self, g: &mut Graph, x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        let shape = g.shape(x[0]).to_vec();
        let ranges = self
            .pads
            .iter()
            .zip(&shape)
            .map(|(&(a, _), &d)| (a, a + d))
            .collect();
        Ok(vec![Some(g.apply1(
            Slice { ranges },
            &[dy[0].expect("one output")],
        )?)])
    }
}

/// Axes reordered: output axis `i` is input axis `perm[i]`.
#[derive(Debug, Clone)]
pub struct Permute {
    pub perm: Vec<usize>,
}

impl Op for Permute {
    op_header!("permute", inputs: 1);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let mut seen = self.perm.clone();
        seen.sort_unstable();
        if seen != (0..i[0].shape.len()).collect::<Vec<_>>() {
            return infer_err(format!("{:?} is not a permutation of the axes", self.perm));
        }
        Ok(vec![TensorInfo {
            shape: self.perm.iter().map(|&p| i[0].shape[p]).collect(),
            dtype: i[0].dtype,
        }])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        copy::permute_into(rt, io.inputs[0], &self.perm, io.outputs[0])
    }
    fn backward(&self, g: &mut Graph, _x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        let mut inv = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inv[p] = i;
        }
        Ok(vec![Some(g.permute(dy[0].expect("one output"), &inv)?)])
    }
}

/// Inputs joined along `axis`.
#[derive(Debug, Clone)]
pub struct Concat {
    pub axis: usize,
}

impl Op for Concat {
    op_header!("concat");
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let first = i.first().ok_or("needs inputs")?;
        let ax = self.axis;
        if ax >= first.shape.len() {
            return infer_err(format!("axis {ax} past rank {}", first.shape.len()));
        }
        let mut shape = first.shape.clone();
        shape[ax] = 0;
        for t in i {
            let mut s = t.shape.clone();
            if s.len() != shape.len() || t.dtype != first.dtype {
                return infer_err("inputs differ in rank or dtype");
            }
            shape[ax] += s[ax];
            s[ax] = 0;
            if s.iter()
                .zip(&first.shape)
                .enumerate()
                .any(|(k, (a, b))| k != ax && a != b)
            {
                return infer_err(format!(
                    "{:?} differs from {:?} off axis {ax}",
                    t.shape, first.shape
                ));
            }
        }
        Ok(vec![TensorInfo {
            shape,
            dtype: first.dtype,
        }])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        copy::concat_into(rt, &io.inputs, self.axis, io.outputs[0])
    }
    fn backward(&self, g: &mut Graph, x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        let dy = dy[0].expect("one output");
        let mut start = 0;
        let mut grads = Vec::with_capacity(x.len());
        for &xi in x {
            let n = g.shape(xi)[self.axis];
            grads.push(Some(g.slice(dy, self.axis, start, start + n)?));
            start += n;
        }
        Ok(grads)
    }
}
impl Graph {
    /// `x[.., start..end, ..]` along `axis`.
    pub fn slice(&mut self, x: Value, axis: usize, start: usize, end: usize) -> Result<Value> {
        let mut ranges: Vec<(usize, usize)> = self.shape(x).iter().map(|&d| (0, d)).collect();
        if let Some(r) = ranges.get_mut(axis) {
            *r = (start, end);
        } else {
            ranges.push((start, end)); // rank mismatch: the shape rule reports it
        }
        self.apply1(Slice { ranges }, &[x])
    }
    /// Zero padding, (before, after) per axis.
    pub fn pad(&mut self, x: Value, pads: &[(usize, usize)]) -> Result<Value> {
        self.apply1(
            Pad {
                pads: pads.to_vec(),
            },
            &[x],
        )
    }
    /// Axes reordered (`perm[i]` is the input axis of output axis `i`).
    pub fn permute(&mut self, x: Value, perm: &[usize]) -> Result<Value> {
        self.apply1(
            Permute {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }
    /// `xs` joined along `axis`.
    pub fn concat(&mut self, xs: &[Value], axis: usize) -> Result<Value> {
        Ok(self.apply(Arc::new(Concat { axis }), xs)?[0])
    }
}
