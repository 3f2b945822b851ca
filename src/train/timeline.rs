//! Where a training step's time goes: host wall time per phase every step, and on timeline
//! steps (every `TrainConfig::timeline_every`) the device time of the forward, the backward and
//! the optimizer from GPU timestamps, with the bytes moved between host and device.
//!
//! The phases follow the step's order: wait for the batch, run the forward, read the logits
//! back, score them on the host (matching and losses), upload the logits' gradients, run the
//! backward and the optimizer. A phase's wall time includes waiting for the device where it
//! ends with a read (the forward is waited for before its readback is timed).

use std::fmt;
use std::time::{Duration, Instant};

use crate::graph::Profile;

/// Device time of one step's parts, from GPU timestamps around every dispatch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceTimes {
    pub forward: Duration,
    pub backward: Duration,
    pub optimizer: Duration,
    /// The costliest kernels of the whole step: (`op: shader::entry`, dispatches, device
    /// time), most expensive first, at most [`TOP_OPS`].
    pub top_ops: Vec<(String, usize, Duration)>,
}

/// How many kernels a timeline step names.
pub const TOP_OPS: usize = 8;

impl DeviceTimes {
    /// The forward's, backward's and optimizer's profiles of one step.
    pub fn from_profiles(forward: &Profile, backward: &Profile, optimizer: &Profile) -> Self {
        let all = Profile {
            entries: [forward, backward, optimizer]
                .iter()
                .flat_map(|p| p.entries.iter().cloned())
                .collect(),
        };
        Self {
            forward: forward.total(),
            backward: backward.total(),
            optimizer: optimizer.total(),
            top_ops: all
                .by_kernel()
                .into_iter()
                .take(TOP_OPS)
                .map(|r| (r.name, r.count, r.time))
                .collect(),
        }
    }
}

/// One step's time by phase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepTimes {
    /// Waiting for the prefetched batch.
    pub data: Duration,
    /// Uploading the pixels, running the forward and waiting for it.
    pub forward: Duration,
    /// Reading the logits back.
    pub readback: Duration,
    /// The host criterion: matching, point sampling, losses and their gradients.
    pub criterion: Duration,
    /// Uploading the logits' gradients (the backward's seeds).
    pub upload: Duration,
    /// The backward, gradient norm and AdamW, until the gradient norm is read.
    pub backward: Duration,
    /// Bytes read from the device (logits, the gradient norm).
    pub bytes_read: u64,
    /// Bytes written to the device (pixels, the backward's seeds).
    pub bytes_uploaded: u64,
    /// Present on timeline steps where the adapter has timestamps.
    pub device: Option<DeviceTimes>,
    /// The gradients' all-reduce over data-parallel ranks (none in a single process).
    pub allreduce: Option<super::grad_sync::SyncTimes>,
}

impl StepTimes {
    pub fn total(&self) -> Duration {
        let sync = self
            .allreduce
            .map_or(Duration::ZERO, |a| a.transfer + a.reduce);
        self.data
            + self.forward
            + self.readback
            + self.criterion
            + self.upload
            + self.backward
            + sync
    }

    /// The step's fields for `metrics.jsonl`, in seconds and bytes.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "data": self.data.as_secs_f64(),
            "forward": self.forward.as_secs_f64(),
            "readback": self.readback.as_secs_f64(),
            "criterion": self.criterion.as_secs_f64(),
            "upload": self.upload.as_secs_f64(),
            "backward": self.backward.as_secs_f64(),
            "bytes_read": self.bytes_read,
            "bytes_uploaded": self.bytes_uploaded,
        });
        if let Some(a) = &self.allreduce {
            v["allreduce"] = serde_json::json!({
                "seconds": a.reduce.as_secs_f64(),
                "transfer": a.transfer.as_secs_f64(),
                "bytes": a.bytes,
            });
        }
        if let Some(d) = &self.device {
            v["device"] = serde_json::json!({
                "forward": d.forward.as_secs_f64(),
                "backward": d.backward.as_secs_f64(),
                "optimizer": d.optimizer.as_secs_f64(),
                "top_ops": d.top_ops.iter().map(|(op, n, t)| serde_json::json!({
                    "op": op, "dispatches": n, "seconds": t.as_secs_f64(),
                })).collect::<Vec<_>>(),
            });
        }
        v
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

impl fmt::Display for StepTimes {
    /// One line: each phase's wall time and share of the step, then the device times.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total().as_secs_f64().max(1e-12);
        let share = |d: Duration| 100.0 * d.as_secs_f64() / total;
        write!(f, "{} =", ms(self.total()))?;
        for (name, d) in [
            ("data", self.data),
            ("forward", self.forward),
            ("readback", self.readback),
            ("criterion (host)", self.criterion),
            ("upload", self.upload),
            ("backward+optimizer", self.backward),
        ] {
            write!(f, " {name} {} ({:.0}%),", ms(d), share(d))?;
        }
        if let Some(a) = &self.allreduce {
            write!(
                f,
                " all-reduce {} ({:.0}%) of {} + device copies {} ({:.0}%),",
                ms(a.reduce),
                share(a.reduce),
                mb(a.bytes),
                ms(a.transfer),
                share(a.transfer)
            )?;
        }
        write!(
            f,
            " read {} uploaded {}",
            mb(self.bytes_read),
            mb(self.bytes_uploaded)
        )?;
        let Some(d) = &self.device else {
            return Ok(());
        };
        write!(
            f,
            "; device: forward {}, backward {}, optimizer {}",
            ms(d.forward),
            ms(d.backward),
            ms(d.optimizer)
        )?;
        let device = (d.forward + d.backward + d.optimizer)
            .as_secs_f64()
            .max(1e-12);
        for (i, (op, n, t)) in d.top_ops.iter().enumerate() {
            let sep = if i == 0 { "; top kernels:" } else { "," };
            let pct = 100.0 * t.as_secs_f64() / device;
            write!(f, "{sep} {op} {} ({pct:.0}%, {n}×)", ms(*t))?;
        }
        Ok(())
    }
}

/// Lap timer: each call returns the time since the previous one.
pub(super) struct Laps(Instant);

impl Laps {
    pub(super) fn start() -> Self {
        Self(Instant::now())
    }
    pub(super) fn lap(&mut self) -> Duration {
        let now = Instant::now();
        let d = now - self.0;
        self.0 = now;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_and_print_with_device_times() {
        let t = StepTimes {
            data: Duration::from_millis(10),
            forward: Duration::from_millis(300),
            readback: Duration::from_millis(20),
            criterion: Duration::from_millis(150),
            upload: Duration::from_millis(20),
            backward: Duration::from_millis(500),
            bytes_read: 2_500_000,
            bytes_uploaded: 3_000_000,
            device: Some(DeviceTimes {
                forward: Duration::from_millis(280),
                backward: Duration::from_millis(400),
                optimizer: Duration::from_millis(50),
                top_ops: vec![(
                    "matmul: matmul::tiled".into(),
                    12,
                    Duration::from_millis(365),
                )],
            }),
            allreduce: None,
        };
        assert_eq!(t.total(), Duration::from_millis(1000));
        let line = t.to_string();
        assert!(line.starts_with("1000 ms = data 10 ms (1%),"), "{line}");
        assert!(line.contains("criterion (host) 150 ms (15%)"), "{line}");
        assert!(line.contains("read 2.50 MB uploaded 3.00 MB"), "{line}");
        assert!(line.contains("device: forward 280 ms, backward 400 ms, optimizer 50 ms"));
        assert!(
            line.ends_with("; top kernels: matmul: matmul::tiled 365 ms (50%, 12×)"),
            "{line}"
        );
        let j = t.to_json();
        assert_eq!(j["device"]["top_ops"][0]["dispatches"], 12);
        assert_eq!(j["bytes_read"], 2_500_000);
        assert!((j["device"]["optimizer"].as_f64().unwrap() - 0.05).abs() < 1e-12);
        let plain = StepTimes {
            device: None,
            ..t.clone()
        };
        assert!(!plain.to_string().contains("device"));
        assert!(plain.to_json().get("device").is_none());
    }
}
