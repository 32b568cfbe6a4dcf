//! Line and bar charts as SVG text (plotters): axes with units, a legend, and the machine's
//! description under every chart, so a chart read on its own says where it came from.

use plotters::prelude::*;

/// The colour of series `i` (one per server, the same in every chart).
pub fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 7] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(127, 127, 127),
    ];
    COLORS[i % COLORS.len()]
}

/// One line: its name, its colour index and its points.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's text.
    pub name: String,
    /// Index into [`color`].
    pub color: usize,
    /// (x, y) points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// A chart's texts.
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    /// The title.
    pub title: &'a str,
    /// The x axis, with its unit.
    pub x: &'a str,
    /// The y axis, with its unit.
    pub y: &'a str,
    /// The machine, commit and date.
    pub footer: &'a str,
}

/// A line chart of `series` as SVG text; the y axis is logarithmic when `log_y`, the x axis
/// when `log_x`.
pub fn lines(labels: &Labels<'_>, series: &[Series], log_x: bool, log_y: bool) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, 520)).into_drawing_area();
        let _ = draw_lines(&root, labels, series, log_x, log_y);
        let _ = root.present();
    }
    svg
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Fills the chart white and writes the footer under it; returns the area above.
fn framed<'a>(
    root: &Area<'a>,
    labels: &Labels<'_>,
) -> Result<Area<'a>, Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let (area, footer) = root.split_vertically(492);
    footer.draw(&Text::new(
        labels.footer.to_owned(),
        (10, 8),
        ("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90)),
    ))?;
    Ok(area)
}

/// The label of category charts at `x`: the name of the bar group centred there (`i + 0.5`),
/// nothing elsewhere.
pub fn category(x: f64, names: &[&str]) -> String {
    let i = (x - 0.5).round();
    if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
        names
            .get(i as usize)
            .map_or(String::new(), |s| (*s).to_owned())
    } else {
        String::new()
    }
}

fn bounds(values: impl Iterator<Item = f64> + Clone, log: bool) -> (f64, f64) {
    let positive = values.filter(|v| v.is_finite() && (!log || *v > 0.0));
    let lo = positive.clone().fold(f64::MAX, f64::min);
    let hi = positive.fold(f64::MIN, f64::max);
    if lo > hi {
        return (if log { 1.0 } else { 0.0 }, 10.0);
    }
    if log {
        (lo / 1.5, hi * 1.5)
    } else {
        (0.0, hi * 1.1 + 1e-9)
    }
}

fn draw_lines(
    root: &Area<'_>,
    labels: &Labels<'_>,
    series: &[Series],
    log_x: bool,
    log_y: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let area = framed(root, labels)?;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = bounds(all().map(|p| p.0), log_x);
    let (y0, y1) = bounds(all().map(|p| p.1), log_y);
    let mut builder = ChartBuilder::on(&area);
    builder
        .caption(labels.title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70);
    macro_rules! finish {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(labels.x)
                .y_desc(labels.y)
                .draw()?;
            for s in series {
                let c = color(s.color);
                chart
                    .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2)))?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2))
                    });
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .border_style(BLACK)
                .background_style(WHITE.mix(0.85))
                .draw()?;
        }};
    }
    match (log_x, log_y) {
        (false, false) => finish!(builder.build_cartesian_2d(x0..x1, y0..y1)?),
        (false, true) => finish!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?),
        (true, false) => finish!(builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1)?),
        (true, true) => {
            finish!(builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?)
        }
    }
    Ok(())
}

/// A bar chart, one bar per (name, colour index, value), as SVG text.
pub fn bars(labels: &Labels<'_>, bars: &[(String, usize, f64)]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, 520)).into_drawing_area();
        let _ = draw_bars(&root, labels, bars);
        let _ = root.present();
    }
    svg
}

fn draw_bars(
    root: &Area<'_>,
    labels: &Labels<'_>,
    bars: &[(String, usize, f64)],
) -> Result<(), Box<dyn std::error::Error>> {
    let area = framed(root, labels)?;
    let (_, top) = bounds(bars.iter().map(|b| b.2), false);
    let names: Vec<&str> = bars.iter().map(|b| b.0.as_str()).collect();
    let n = bars.len().max(1);
    let mut chart = ChartBuilder::on(&area)
        .caption(labels.title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| category(*x, &names))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        Rectangle::new(
            [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, b.2)],
            color(b.1).filled(),
        )
    }))?;
    Ok(())
}
