//! Line charts as SVG strings with `plotters` (SVG backend only, no native dependencies, so the
//! same code draws in the browser build).

use plotters::prelude::*;

use crate::error::{Error, Result};

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// `(x, y)` points, drawn in the given order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart: title, axis labels, series.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// Lines.
    pub series: Vec<Series>,
    /// Draw the x axis on a log2 scale (ranks 1, 2, 4, 8).
    pub log2_x: bool,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Invalid(format!("plotting failed: {e:?}"))
}

/// Height of one legend line below the plot, pixels.
const LEGEND_LINE: u32 = 16;

/// The axes' ranges of `pts` (x through `tx`): x widened to one unit when it is a single value,
/// y padded by 8 % (a flat series by ±5 % of its value, so the axis labels stay readable).
fn ranges(pts: &[(f64, f64)], tx: impl Fn(f64) -> f64) -> ([f64; 2], [f64; 2]) {
    let (mut x0, mut x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(tx(p.0)), b.max(tx(p.0)))
    });
    let (mut y0, mut y1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if x1 - x0 < 1e-12 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = if y1 - y0 < 1e-9 * y1.abs().max(1.0) {
        0.05 * y1.abs().max(1e-3)
    } else {
        (y1 - y0) * 0.08
    };
    y0 -= pad;
    y1 += pad;
    ([x0, x1], [y0, y1])
}

/// Renders `chart` as an SVG document `width` pixels wide: the plot `height` pixels high, and
/// below it the legend (one line per series, [`LEGEND_LINE`] pixels each), outside the plotting
/// area so it never covers a point. Where every x is a whole number (steps, epochs, ranks) the
/// x axis is labelled with whole numbers only.
///
/// # Errors
/// [`Error::Invalid`] when the chart has no finite points or drawing fails.
pub fn svg(chart: &Chart, width: u32, height: u32) -> Result<String> {
    let tx = |x: f64| if chart.log2_x { x.max(1e-9).log2() } else { x };
    let pts: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.is_empty() {
        return Err(Error::Invalid(format!(
            "chart `{}` has no data",
            chart.title
        )));
    }
    let ([x0, x1], [y0, y1]) = ranges(&pts, tx);
    let whole_x = pts.iter().all(|p| (p.0 - p.0.round()).abs() < 1e-9);
    let legend_h = if chart.series.is_empty() {
        0
    } else {
        LEGEND_LINE * chart.series.len() as u32 + 8
    };
    let mut out = String::new();
    {
        let root =
            SVGBackend::with_string(&mut out, (width, height + legend_h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, legend) = root.split_vertically(height);
        let mut ctx = ChartBuilder::on(&plot)
            .caption(&chart.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        let log2 = chart.log2_x;
        let fmt_x = move |v: &f64| {
            let x = if log2 { 2f64.powf(*v) } else { *v };
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round())
            } else if whole_x {
                // A step or an epoch between two whole ones has no label.
                String::new()
            } else {
                format!("{x:.2}")
            }
        };
        let span = (x1 - x0).round().max(0.0) as usize + 1;
        ctx.configure_mesh()
            .x_desc(&chart.x_label)
            .y_desc(&chart.y_label)
            .x_labels(if log2 {
                span
            } else if whole_x {
                span.min(8)
            } else {
                8
            })
            .x_label_formatter(&fmt_x)
            .draw()
            .map_err(err)?;
        for (i, s) in chart.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let line: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .map(|p| (tx(p.0), p.1))
                .collect();
            ctx.draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                .map_err(err)?;
            ctx.draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
            // The legend line of this series, below the plot.
            let y = (LEGEND_LINE * i as u32 + LEGEND_LINE / 2 + 4) as i32;
            legend
                .draw(&PathElement::new(
                    vec![(60, y), (80, y)],
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            legend
                .draw(&Text::new(
                    s.name.clone(),
                    (86, y - 7),
                    ("sans-serif", 13).into_font(),
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_lines_and_labels() {
        let c = Chart {
            title: "accuracy vs rank".into(),
            x_label: "r".into(),
            y_label: "SST acc".into(),
            series: vec![
                Series {
                    name: "LoRA".into(),
                    points: vec![(1.0, 0.45), (2.0, 0.47), (4.0, 0.48), (8.0, 0.49)],
                },
                Series {
                    name: "DoRA".into(),
                    points: vec![(1.0, 0.46), (8.0, 0.50)],
                },
            ],
            log2_x: true,
        };
        let s = svg(&c, 640, 400).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..40]);
        assert!(s.contains("accuracy vs rank") && s.contains("LoRA") && s.contains("DoRA"));
        assert!(s.matches("<circle").count() >= 6);
        for tick in ["1", "2", "4", "8"] {
            assert!(
                s.contains(&format!("\n{tick}\n</text>")),
                "x tick {tick} missing"
            );
        }
    }

    /// The legend lies below the plotting area (never over a point), and a step axis is
    /// labelled with whole steps only.
    #[test]
    fn legend_below_the_plot_and_whole_steps() {
        let c = Chart {
            title: "loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![
                Series {
                    name: "train".into(),
                    points: (1..=5).map(|i| (i as f64, 1.0 / i as f64)).collect(),
                },
                Series {
                    name: "own data".into(),
                    points: vec![(3.0, 0.9)],
                },
            ],
            log2_x: false,
        };
        let s = svg(&c, 400, 300).unwrap();
        let height = 300 + 2 * LEGEND_LINE + 8;
        assert!(s.contains(&format!("height=\"{height}\"")), "{}", &s[..200]);
        // Every legend text is drawn below y = 300 (the plot's bottom edge).
        for name in ["train", "own data"] {
            let at = s.find(&format!("\n{name}\n</text>")).expect(name);
            let open = s[..at].rfind("<text").unwrap();
            let y: f64 = s[open..at]
                .split("y=\"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .and_then(|v| v.parse().ok())
                .unwrap();
            assert!(y > 300.0, "{name} at y = {y}");
        }
        for tick in ["1.50", "2.50", "3.50", "4.50"] {
            assert!(
                !s.contains(&format!("\n{tick}\n</text>")),
                "fractional step tick {tick}"
            );
        }
    }

    #[test]
    fn empty_chart_is_an_error() {
        let c = Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![],
            log2_x: false,
        };
        assert!(svg(&c, 100, 100).is_err());
    }
}
