//! GPU time per dispatch of one run ([`Executable::profile`](super::Executable::profile)),
//! grouped by op or by module scope.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// Per-dispatch GPU times of one run.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// One per dispatch, in run order.
    pub entries: Vec<ProfileEntry>,
}

/// One dispatch's GPU time and who ran it.
#[derive(Clone, Debug)]
pub struct ProfileEntry {
    /// The graph op (or the appended work's name, e.g. `optimizer`'s kernels).
    pub op: String,
    /// The node's label (module scope).
    pub scope: String,
    /// The pipeline: `shader::entry[constants]`.
    pub kernel: String,
    pub time: Duration,
}

/// One line of a profile table.
#[derive(Clone, Debug)]
pub struct ProfileRow {
    pub name: String,
    pub count: usize,
    pub time: Duration,
    /// Fraction of the total time.
    pub share: f64,
}

impl Profile {
    pub fn total(&self) -> Duration {
        self.entries.iter().map(|e| e.time).sum()
    }

    fn group(&self, key: impl Fn(&ProfileEntry) -> String) -> Vec<ProfileRow> {
        let total = self.total().as_secs_f64().max(1e-12);
        let mut rows: Vec<ProfileRow> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for e in &self.entries {
            let k = key(e);
            let i = *index.entry(k.clone()).or_insert_with(|| {
                rows.push(ProfileRow {
                    name: k,
                    count: 0,
                    time: Duration::ZERO,
                    share: 0.0,
                });
                rows.len() - 1
            });
            rows[i].count += 1;
            rows[i].time += e.time;
        }
        for r in &mut rows {
            r.share = r.time.as_secs_f64() / total;
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.time));
        rows
    }

    /// Time per op name, most expensive first.
    pub fn by_op(&self) -> Vec<ProfileRow> {
        self.group(|e| e.op.clone())
    }

    /// Time per pipeline, named `op: shader::entry[constants]` (the same kernel under two ops
    /// is two rows), most expensive first.
    pub fn by_kernel(&self) -> Vec<ProfileRow> {
        self.group(|e| match e.kernel.strip_prefix(e.op.as_str()) {
            // Appended work (the optimizer) is named by its kernels already.
            Some("") => e.kernel.clone(),
            _ => format!("{}: {}", e.op, e.kernel),
        })
    }

    /// Time per module: the node label cut to its first `depth` dot-separated parts.
    pub fn by_scope(&self, depth: usize) -> Vec<ProfileRow> {
        self.group(|e| e.scope.split('.').take(depth).collect::<Vec<_>>().join("."))
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<40} {:>6} {:>12} {:>7}",
            "op", "count", "time", "share"
        )?;
        for r in self.by_op() {
            writeln!(
                f,
                "{:<40} {:>6} {:>9.3} ms {:>6.1}%",
                r.name,
                r.count,
                r.time.as_secs_f64() * 1e3,
                r.share * 100.0
            )?;
        }
        write!(
            f,
            "{:<40} {:>6} {:>9.3} ms",
            "total",
            self.entries.len(),
            self.total().as_secs_f64() * 1e3
        )
    }
}
