//! Demo support: a concurrency sweep as an SVG chart: throughput and p99 latency against
//! concurrency, on one picture with two y axes.
//!
//! Hand-written SVG (a few `<polyline>`s and `<text>`s) rather than a
//! plotting crate: the chart is small, fixed in shape, and this keeps the
//! dependency tree what it was. Production: `plotters` for anything more.
//!
//! The x axis is categorical (settings are usually powers of two, evenly
//! spaced on a log scale); throughput is the solid blue line on the left
//! axis, p99 the dashed orange line on the right axis.
//!
//! ```text
//! cargo run --release --bin benchmark -- --svg target/sweep.svg
//! ```

use std::fmt::Write;

use crate::bench::SweepPoint;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 80.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const THROUGHPUT_COLOUR: &str = "#1f77b4";
const P99_COLOUR: &str = "#ff7f0e";

/// Renders `points` as a standalone SVG document titled `title`.
pub fn sweep_svg(points: &[SweepPoint], title: &str) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    // x: evenly spaced categories; a single point sits in the middle.
    let x = |i: usize| {
        if points.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (points.len() - 1) as f64
        }
    };
    let max_rps = nice_max(
        points
            .iter()
            .map(|p| p.throughput_per_s)
            .fold(0.0, f64::max),
    );
    let p99_ms = |p: &SweepPoint| p.latency.p99.as_secs_f64() * 1e3;
    let max_ms = nice_max(points.iter().map(p99_ms).fold(0.0, f64::max));
    let y = |value: f64, max: f64| TOP + plot_h * (1.0 - value / max);

    let mut svg = String::new();
    // Writing to a String cannot fail; the results are ignored below with that invariant.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Horizontal grid lines with both axes' labels at 0, 25, 50, 75, 100 %.
    for step in 0..=4 {
        let fraction = f64::from(step) / 4.0;
        let gy = TOP + plot_h * (1.0 - fraction);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{THROUGHPUT_COLOUR}">{}</text><text x="{:.1}" y="{:.1}" fill="{P99_COLOUR}">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            gy + 4.0,
            short(max_rps * fraction),
            WIDTH - RIGHT + 6.0,
            gy + 4.0,
            short(max_ms * fraction),
        );
    }
    // Axes and their titles.
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">concurrency (requests in flight)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle" fill="{THROUGHPUT_COLOUR}">throughput (requests/s)</text>"#,
        TOP + plot_h / 2.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate({:.1} {:.1}) rotate(90)" text-anchor="middle" fill="{P99_COLOUR}">p99 latency (ms)</text>"#,
        WIDTH - 18.0,
        TOP + plot_h / 2.0
    );
    for (i, point) in points.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(i),
            TOP + plot_h + 18.0,
            point.concurrency
        );
    }
    // The two series: a polyline and a dot per point.
    let series = [
        (
            THROUGHPUT_COLOUR,
            "",
            points
                .iter()
                .map(|p| y(p.throughput_per_s, max_rps))
                .collect::<Vec<_>>(),
        ),
        (
            P99_COLOUR,
            r#" stroke-dasharray="6 4""#,
            points.iter().map(|p| y(p99_ms(p), max_ms)).collect(),
        ),
    ];
    for (colour, dash, ys) in &series {
        let coords: Vec<String> = ys
            .iter()
            .enumerate()
            .map(|(i, yv)| format!("{:.1},{yv:.1}", x(i)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
            coords.join(" ")
        );
        for (i, yv) in ys.iter().enumerate() {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{yv:.1}" r="3.5" fill="{colour}"/>"#,
                x(i)
            );
        }
    }
    // Legend, top left inside the plot.
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" fill="{THROUGHPUT_COLOUR}">&#9644; throughput</text><text x="{:.1}" y="{:.1}" fill="{P99_COLOUR}">- - p99 latency</text>"#,
        LEFT + 10.0,
        TOP + 16.0,
        LEFT + 110.0,
        TOP + 16.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// Rounds an axis maximum up to 1, 2 or 5 times a power of ten (never 0).
fn nice_max(value: f64) -> f64 {
    if !(value.is_finite() && value > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

/// An axis label: 12k, 1.5k, 250, 0.5.
fn short(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1e3)
    } else if value >= 1_000.0 {
        format!("{:.1}k", value / 1e3)
    } else if value >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Escapes text for an SVG text node.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
