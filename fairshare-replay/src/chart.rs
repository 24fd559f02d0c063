//! The chart: wait over time, FIFO against fairshare, for every tenant but the heaviest (top
//! panel) and for the heaviest tenant (bottom panel), as an SVG.
//!
//! Each point is the 99th-percentile wait of the jobs that arrived in one slice of the trace
//! (about 120 slices), drawn on a log scale so hours and milliseconds fit on one axis; waits
//! under 1 ms are drawn at 1 ms. Text is SVG `<text>`, which the viewer renders with its own
//! fonts: drawing needs no font file.

use plotters::prelude::*;

use crate::report::{Replay, human_ms};
use crate::sim::{Fate, Outcome};

/// Why the chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing the chart: {0}")]
pub struct ChartError(String);

/// Slices of the trace's arrival span.
const SLICES: u64 = 120;
/// The floor of the log scale, ms.
const FLOOR_MS: f64 = 1.0;
/// The wait axis' labelled values, ms: 1 ms to 8 h.
const Y_KEYS_MS: [f64; 9] = [1.0, 10.0, 100.0, 1e3, 1e4, 6e4, 6e5, 3.6e6, 1.44e7];

/// `(slice start in minutes from the trace's first arrival, p99 wait in ms)` of the rows of
/// the tenants that pass `keep`, per slice with any served row. The slices split the arrival
/// span of those rows.
fn series(replay: &Replay, outcome: &Outcome, keep: impl Fn(u32) -> bool) -> Vec<(f64, f64)> {
    let rows = replay.trace().rows();
    let origin = rows[0].arrival_ms;
    let mut kept = rows.iter().filter(|r| keep(r.tenant)).map(|r| r.arrival_ms);
    let Some(first) = kept.next() else {
        return Vec::new();
    };
    let last = kept.last().unwrap_or(first);
    let width = (last - first).div_ceil(SLICES).max(1);
    let mut slices: Vec<Vec<u64>> = vec![Vec::new(); ((last - first) / width + 1) as usize];
    for (r, f) in rows.iter().zip(outcome.fates()) {
        if let (true, Fate::Served { start_ms }) = (keep(r.tenant), f) {
            slices[((r.arrival_ms - first) / width) as usize].push(start_ms - r.arrival_ms);
        }
    }
    slices
        .into_iter()
        .enumerate()
        .filter(|(_, w)| !w.is_empty())
        .map(|(i, mut w)| {
            w.sort_unstable();
            let rank = (w.len() * 99).div_ceil(100).max(1);
            let x = (first - origin + i as u64 * width) as f64 / 60_000.0;
            (x, (w[rank - 1] as f64).max(FLOOR_MS))
        })
        .collect()
}

/// Draws the chart and returns the SVG document.
///
/// # Errors
///
/// [`ChartError`] if plotters fails to lay out the chart.
pub fn chart_svg(replay: &Replay) -> Result<String, ChartError> {
    let heavy = replay.heaviest_tenant();
    let name = replay.trace().tenant_name(heavy).to_string();
    let panels = [
        (
            format!("Every tenant but {name}: p99 wait by arrival time"),
            series(replay, replay.fifo(), |t| t != heavy),
            series(replay, replay.fair(), |t| t != heavy),
        ),
        (
            format!("{name} (the heaviest tenant): p99 wait by arrival time, over its arrivals"),
            series(replay, replay.fifo(), |t| t == heavy),
            series(replay, replay.fair(), |t| t == heavy),
        ),
    ];
    let y_max = panels
        .iter()
        .flat_map(|(_, a, b)| a.iter().chain(b))
        .map(|p| p.1)
        .fold(10.0 * FLOOR_MS, f64::max)
        * 2.0;
    let y_keys: Vec<f64> = Y_KEYS_MS.iter().copied().filter(|&k| k <= y_max).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 760)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| ChartError(e.to_string());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (title, body) = root.split_vertically(40);
        title
            .draw(&Text::new(
                format!(
                    "What-if replay: FIFO (the incident) against fairshare, {} workers",
                    replay.workers()
                ),
                (20, 12),
                ("sans-serif", 22).into_font(),
            ))
            .map_err(|e| err(&e))?;
        let halves = body.split_evenly((2, 1));
        let legends = [
            SeriesLabelPosition::UpperRight,
            SeriesLabelPosition::LowerRight,
        ];
        for ((area, (caption, fifo, fair)), legend) in halves.iter().zip(&panels).zip(legends) {
            // Each panel spans its own arrivals: the heaviest tenant's may be a short burst.
            let xs = fifo.iter().chain(fair).map(|p| p.0);
            let x_min = xs.clone().fold(f64::INFINITY, f64::min);
            let x_max = xs.fold(f64::NEG_INFINITY, f64::max).max(x_min + 1.0);
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(80)
                .build_cartesian_2d(
                    x_min..x_max,
                    (FLOOR_MS..y_max)
                        .log_scale()
                        .with_key_points(y_keys.clone()),
                )
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .x_desc("arrival time (h:mm from the first job)")
                .x_label_formatter(&|min| {
                    let m = min.round() as u64;
                    format!("{}:{:02}", m / 60, m % 60)
                })
                .y_desc("p99 wait")
                .y_label_formatter(&|ms| human_ms(*ms as u64))
                .draw()
                .map_err(|e| err(&e))?;
            let red = RGBColor(214, 39, 40);
            let blue = RGBColor(31, 119, 180);
            chart
                .draw_series(LineSeries::new(fifo.iter().copied(), red.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label("FIFO")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(3))
                });
            chart
                .draw_series(LineSeries::new(fair.iter().copied(), blue.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label("fairshare")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(3))
                });
            chart
                .configure_series_labels()
                .position(legend)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}
