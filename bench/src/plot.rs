//! The RTT-percentile plot of the fixed-rate scenarios (PNG, plotters'
//! bitmap backend). Text is drawn with a TrueType font read at run time, so
//! nothing needs fontconfig.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::{Results, PEERS};

/// Fonts tried in order (Debian's fonts-dejavu-core is on most machines).
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// One per entry of `PEERS`, in its order.
const COLORS: [RGBColor; PEERS.len()] = [
    RGBColor(120, 120, 120),
    RGBColor(0, 150, 60),
    RGBColor(130, 200, 90),
    RGBColor(30, 90, 200),
    RGBColor(210, 40, 40),
    RGBColor(240, 150, 40),
];

/// Percentile as "nines": 90% → 1, 99% → 2, 99.9% → 3.
fn nines(p: f64) -> f64 {
    -(1.0 - p / 100.0).max(1e-6).log10()
}

fn register_font() -> Result<(), String> {
    let path = FONTS
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            format!("no TrueType font found (tried {FONTS:?}); install fonts-dejavu-core")
        })?;
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    // plotters keeps the font for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{path}: not a usable font"))
}

/// One (label, [(nines, ms)]) series per peer that ran `scenario`.
fn series(results: &Results, scenario: &str) -> Vec<(usize, Vec<(f64, f64)>)> {
    PEERS
        .iter()
        .enumerate()
        .filter_map(|(i, (label, _))| {
            let v = results.get(&(label.to_string(), scenario.to_owned()))?;
            let points = v["latency_us"]["spectrum"]
                .as_array()?
                .iter()
                .filter_map(|pair| {
                    let p = pair.get(0)?.as_f64()?;
                    let us = pair.get(1)?.as_f64()?;
                    (p < 100.0).then(|| (nines(p), us / 1e3))
                })
                .collect::<Vec<_>>();
            (!points.is_empty()).then_some((i, points))
        })
        .collect()
}

pub fn latency(results: &Results, path: &Path) -> Result<(), String> {
    register_font()?;
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((1, 2));
    let scenarios = [
        ("rate128", "128 B text at 20,000 msgs/s, 200 conns, ws://"),
        (
            "rate128-tls",
            "128 B text at 20,000 msgs/s, 200 conns, wss://",
        ),
    ];
    for (area, (scenario, title)) in panels.iter().zip(scenarios) {
        let data = series(results, scenario);
        let (lo, hi) = data
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
            .fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
        if data.is_empty() {
            continue;
        }
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                0.25f64..5.0f64,
                ((lo * 0.8).max(0.001)..hi * 1.25).log_scale(),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("RTT from scheduled send, ms (log)")
            .x_labels(6)
            .x_label_formatter(&|x| {
                let p = 100.0 * (1.0 - 10f64.powf(-x));
                format!("{}%", (p * 1000.0).round() / 1000.0)
            })
            .y_label_formatter(&|y| format!("{y}"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, pts) in data {
            let color = COLORS[i];
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(PEERS[i].1)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_scale() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
    }
}
