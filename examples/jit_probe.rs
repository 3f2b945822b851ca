//! First-dispatch cost of one WGSL entry read from a file at run time (no rebuild per shader
//! edit): on lavapipe the first dispatch of a pipeline JITs its machine code. Prints the first
//! and second dispatch's wall and process CPU time; the difference is the JIT.
//!
//! `jit_probe FILE ENTRY CONSTS PARAMS NBIND LEN WORKGROUPS` with CONSTS `D4=8,WIN=7` (or `-`),
//! PARAMS the uniform's words (`7,2,0.5`: a number with a dot is an f32), NBIND storage
//! bindings (1..) of LEN zero f32s each. Use an empty `MESA_SHADER_CACHE_DIR`.

use std::time::Instant;

use mask2former::runtime::Shader;
use mask2former::Runtime;

/// Process CPU seconds (user + system) from /proc/self/stat.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // After the command: state is field 0, utime 11, stime 12 (clock ticks of 1/100 s).
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() == 7,
        "usage: FILE ENTRY CONSTS PARAMS NBIND LEN WORKGROUPS"
    );
    let source: &'static str = Box::leak(std::fs::read_to_string(&a[0])?.into_boxed_str());
    let consts: Vec<(String, f64)> = match a[2].as_str() {
        "-" => vec![],
        s => s
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("CONSTS: NAME=VALUE");
                (k.to_string(), v.parse().expect("CONSTS value"))
            })
            .collect(),
    };
    let consts: Vec<(&str, f64)> = consts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut params = [0u32; 32];
    for (i, w) in a[3].split(',').enumerate() {
        params[i] = match w.contains('.') {
            true => w.parse::<f32>()?.to_bits(),
            false => w.parse()?,
        };
    }
    let (nbind, len, wgs): (usize, usize, u32) = (a[4].parse()?, a[5].parse()?, a[6].parse()?);
    let rt = Runtime::new()?;
    let shader = Shader {
        name: "probe",
        source,
    };
    let t = Instant::now();
    let kernel = rt.kernel(&shader, &a[1], &consts)?;
    let create = t.elapsed().as_secs_f64();
    let bufs: Vec<_> = (0..nbind)
        .map(|_| rt.full(&[len], 0.0))
        .collect::<Result<_, _>>()?;
    let binds: Vec<_> = bufs.iter().map(|b| b.binding()).collect();
    rt.sync()?;
    let mut out = vec![];
    for _ in 0..2 {
        let (w0, c0) = (Instant::now(), cpu_s());
        rt.run(&[rt.dispatch(&kernel, &params, &binds, [wgs, 1, 1])]);
        rt.sync()?;
        out.push((w0.elapsed().as_secs_f64(), cpu_s() - c0));
    }
    println!(
        "{} {}: create {:.3} s; first {:.3} s wall {:.2} s CPU; second {:.3} s wall {:.2} s CPU; \
         JIT ≈ {:.3} s wall {:.2} s CPU",
        a[0],
        a[1],
        create,
        out[0].0,
        out[0].1,
        out[1].0,
        out[1].1,
        out[0].0 - out[1].0,
        out[0].1 - out[1].1
    );
    Ok(())
}
