//! The benchmark's PNG: per shape, time (µs, log scale) and the Q6_K bytes' effective bandwidth as
//! a % of the measured copy bandwidth, against M (log scale); one line per runtime and variant
//! (stream mode: the device-side throughput). Solid lines are CUDA, dashed wgpu, dotted the rest
//! (flex, metal).

use super::png::Canvas;

/// One measurement, as in the CSV.
pub struct Point {
    pub runtime: String,
    pub shape: String,
    pub m: usize,
    pub variant: String,
    pub mode: String,
    pub median_us: f64,
    pub weight_bytes: usize,
}

const PALETTE: [[u8; 3]; 8] = [
    [214, 39, 40],
    [31, 119, 180],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

fn dash(runtime: &str) -> i64 {
    match runtime {
        "cuda" => 0,
        "wgpu" => 9,
        _ => 3,
    }
}

/// Draws `points` (stream mode only) with `copy_gbs[runtime]` as each runtime's 100 %.
pub fn plot(points: &[Point], copy_gbs: &[(String, f64)]) -> Vec<u8> {
    let pts: Vec<&Point> = points
        .iter()
        .filter(|p| p.mode == "stream" && p.median_us > 0.0)
        .collect();
    let mut shapes: Vec<&str> = Vec::new();
    let mut series: Vec<(&str, &str)> = Vec::new();
    let mut variants: Vec<&str> = Vec::new();
    for p in &pts {
        if !shapes.contains(&p.shape.as_str()) {
            shapes.push(&p.shape);
        }
        if !series.contains(&(p.runtime.as_str(), p.variant.as_str())) {
            series.push((&p.runtime, &p.variant));
        }
        if !variants.contains(&p.variant.as_str()) {
            variants.push(&p.variant);
        }
    }
    let color = |v: &str| PALETTE[variants.iter().position(|x| *x == v).unwrap_or(0) % 8];
    let (pw, ph, left, top, gap) = (540i64, 300i64, 70i64, 40i64, 60i64);
    let legend_rows = series.len().div_ceil(3) as i64;
    let header = 50 + legend_rows * 16;
    let width = (2 * (left + pw) + 40) as usize;
    let height = (header + shapes.len() as i64 * (top + ph + gap) + 10) as usize;
    let mut c = Canvas::new(width, height.max(200));
    let black = [0, 0, 0];
    let grey = [220, 220, 220];
    c.text(
        10,
        10,
        "burn-gguf Q6_K matmul: stream-mode time and % of copy bandwidth vs M",
        2,
        black,
    );
    for (i, (rt, v)) in series.iter().enumerate() {
        let (x, y) = (10 + (i as i64 % 3) * 380, 36 + (i as i64 / 3) * 16);
        c.line(
            (x as f64, y as f64 + 4.0),
            (x as f64 + 40.0, y as f64 + 4.0),
            3,
            dash(rt),
            color(v),
        );
        c.text(x + 48, y, &format!("{rt} {v}"), 1, black);
    }
    let ms: Vec<usize> = {
        let mut m: Vec<usize> = pts.iter().map(|p| p.m).collect();
        m.sort_unstable();
        m.dedup();
        m
    };
    let (mlo, mhi) = (
        (*ms.first().unwrap_or(&1) as f64).ln(),
        (*ms.last().unwrap_or(&2) as f64).ln().max(1e-9),
    );
    for (si, shape) in shapes.iter().enumerate() {
        let y0 = header + si as i64 * (top + ph + gap) + top;
        let in_shape: Vec<&&Point> = pts.iter().filter(|p| p.shape == *shape).collect();
        let (tmin, tmax) = in_shape.iter().fold((f64::MAX, 0f64), |(a, b), p| {
            (a.min(p.median_us), b.max(p.median_us))
        });
        let (tlo, thi) = (
            tmin.log10().floor(),
            tmax.log10().ceil().max(tmin.log10().floor() + 1.0),
        );
        let pct = |p: &Point| {
            let copy = copy_gbs
                .iter()
                .find(|(r, _)| *r == p.runtime)
                .map_or(f64::NAN, |c| c.1);
            100.0 * (p.weight_bytes as f64 / (p.median_us * 1e-6) / 1e9) / copy
        };
        let pmax = in_shape
            .iter()
            .map(|p| pct(p))
            .filter(|v| v.is_finite())
            .fold(100f64, f64::max);
        let pmax = (pmax / 25.0).ceil() * 25.0;
        for panel in 0..2 {
            let x0 = left + panel * (left + pw + 20);
            let xpos = |m: usize| {
                x0 as f64
                    + if mhi > mlo {
                        ((m as f64).ln() - mlo) / (mhi - mlo) * pw as f64
                    } else {
                        pw as f64 / 2.0
                    }
            };
            let ypos = |v: f64| {
                let f = if panel == 0 {
                    (v.log10() - tlo) / (thi - tlo)
                } else {
                    v / pmax
                };
                (y0 + ph) as f64 - f.clamp(0.0, 1.0) * ph as f64
            };
            // grid and axes
            if panel == 0 {
                for e in tlo as i64..=thi as i64 {
                    let y = ypos(10f64.powi(e as i32));
                    c.line((x0 as f64, y), ((x0 + pw) as f64, y), 1, 0, grey);
                    let label = format!("{}", 10f64.powi(e as i32));
                    c.text(
                        x0 - 8 - Canvas::text_width(&label, 1),
                        y as i64 - 3,
                        &label,
                        1,
                        black,
                    );
                }
            } else {
                let mut v = 0.0;
                while v <= pmax {
                    let y = ypos(v);
                    c.line((x0 as f64, y), ((x0 + pw) as f64, y), 1, 0, grey);
                    let label = format!("{v}%");
                    c.text(
                        x0 - 8 - Canvas::text_width(&label, 1),
                        y as i64 - 3,
                        &label,
                        1,
                        black,
                    );
                    v += 25.0;
                }
            }
            for &m in &ms {
                let x = xpos(m);
                c.line((x, y0 as f64), (x, (y0 + ph) as f64), 1, 0, grey);
                let label = m.to_string();
                c.text(
                    x as i64 - Canvas::text_width(&label, 1) / 2,
                    y0 + ph + 6,
                    &label,
                    1,
                    black,
                );
            }
            c.line(
                (x0 as f64, y0 as f64),
                (x0 as f64, (y0 + ph) as f64),
                1,
                0,
                black,
            );
            c.line(
                (x0 as f64, (y0 + ph) as f64),
                ((x0 + pw) as f64, (y0 + ph) as f64),
                1,
                0,
                black,
            );
            let title = if panel == 0 {
                format!("{shape} (N x K): time, \u{b5}s")
            } else {
                format!("{shape}: Q6_K bytes / time, % of copy bandwidth")
            };
            c.text(x0, y0 - 16, &title, 1, black);
            c.text(x0 + pw - 60, y0 + ph + 18, "M (rows)", 1, black);
            for (rt, v) in &series {
                let mut line: Vec<(f64, f64)> = in_shape
                    .iter()
                    .filter(|p| p.runtime == *rt && p.variant == *v)
                    .map(|p| {
                        (
                            xpos(p.m),
                            ypos(if panel == 0 { p.median_us } else { pct(p) }),
                        )
                    })
                    .filter(|(_, y)| y.is_finite())
                    .collect();
                line.sort_by(|a, b| a.0.total_cmp(&b.0));
                for w in line.windows(2) {
                    c.line(w[0], w[1], 2, dash(rt), color(v));
                }
                for &(x, y) in &line {
                    c.rect(x as i64 - 2, y as i64 - 2, 5, 5, color(v));
                }
            }
        }
    }
    c.to_png()
}
