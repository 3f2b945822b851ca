//! Probe: how fast are storage-buffer, uniform-buffer and texture loads on this adapter, for a GEMM?
use std::time::Instant;
use wgpu::util::DeviceExt;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let src = std::fs::read_to_string(&args[1]).unwrap();
    let entry = args[2].clone();
    let (m, n, k, tm, tn): (u32, u32, u32, u32, u32) = (
        args[3].parse().unwrap(),
        args[4].parse().unwrap(),
        args[5].parse().unwrap(),
        args[6].parse().unwrap(),
        args[7].parse().unwrap(),
    );
    let inst = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(inst.request_adapter(&Default::default())).unwrap();
    let limits = adapter.limits();
    eprintln!(
        "{:?} max ubo {} max tex2d {}",
        adapter.get_info().name,
        limits.max_uniform_buffer_binding_size,
        limits.max_texture_dimension_2d
    );
    let (dev, q) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: limits.clone(),
        required_features: adapter.features() & wgpu::Features::SUBGROUP,
        ..Default::default()
    }))
    .unwrap();
    let mut s = 0x9e3779b97f4a7c15u64;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::UNIFORM;
    let ba = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&a),
        usage,
    });
    let bb = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&b),
        usage,
    });
    let bc = dev.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (m * n * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let dims: [u32; 4] = [m, n, k, 0];
    let bp = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&dims),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let tex = |data: &[f32], rows: u32, cols: u32| {
        let t = dev.create_texture(&wgpu::TextureDescriptor {
            label: None,
            size: wgpu::Extent3d {
                width: cols / 4,
                height: rows,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::STORAGE_BINDING
                | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        q.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &t,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            bytemuck::cast_slice(data),
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(cols * 4),
                rows_per_image: Some(rows),
            },
            wgpu::Extent3d {
                width: cols / 4,
                height: rows,
                depth_or_array_layers: 1,
            },
        );
        t.create_view(&Default::default())
    };
    let ta = tex(&a, m, k);
    let tb = tex(&b, k, n);
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(src.into()),
    });
    let t0 = Instant::now();
    let pipe = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some(&entry),
        compilation_options: Default::default(),
        cache: None,
    });
    let layout = pipe.get_bind_group_layout(0);
    let mut entries = vec![];
    let want: Vec<u32> = args[8].split(',').map(|x| x.parse().unwrap()).collect();
    for &w in &want {
        let res = match w {
            0 => bp.as_entire_binding(),
            1 => ba.as_entire_binding(),
            2 => bb.as_entire_binding(),
            3 => bc.as_entire_binding(),
            4 => wgpu::BindingResource::TextureView(&ta),
            5 => wgpu::BindingResource::TextureView(&tb),
            _ => panic!(),
        };
        entries.push(wgpu::BindGroupEntry {
            binding: w,
            resource: res,
        });
    }
    let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &layout,
        entries: &entries,
    });
    let run = || {
        let mut enc = dev.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipe);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(n.div_ceil(tn), m.div_ceil(tm), 1);
        }
        q.submit([enc.finish()]);
        dev.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    };
    run();
    eprintln!("create+first {:.2}s", t0.elapsed().as_secs_f64());
    // check
    let rb = dev.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (m * n * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = dev.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(&bc, 0, &rb, 0, (m * n * 4) as u64);
    q.submit([enc.finish()]);
    rb.slice(..).map_async(wgpu::MapMode::Read, |_| {});
    dev.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let got: Vec<f32> = bytemuck::cast_slice(&rb.slice(..).get_mapped_range().unwrap()).to_vec();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for i in 0..64usize {
        let idx = (i * 2654435761) % (m * n) as usize;
        let (r, c) = (idx / n as usize, idx % n as usize);
        let want: f64 = (0..k as usize)
            .map(|j| a[r * k as usize + j] as f64 * b[j * n as usize + c] as f64)
            .sum();
        num += (got[idx] as f64 - want).powi(2);
        den += want * want;
    }
    eprintln!("rel L2 {:.2e}", (num / den).sqrt());
    let cpu = || {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<f64> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        (f[11] + f[12]) / 100.0
    };
    for _ in 0..3 {
        let (t, c0) = (Instant::now(), cpu());
        run();
        run();
        let w = t.elapsed().as_secs_f64() / 2.0;
        let c = (cpu() - c0) / 2.0;
        let fl = 2.0 * (m as f64) * (n as f64) * (k as f64);
        eprintln!(
            "{entry}: {w:.3}s {:.2} GFLOP/s wall, clean-equivalent {:.2}",
            fl / w / 1e9,
            fl / (c / 2.0) / 1e9
        );
    }
}
