//! The report's figures, each drawn twice with plotters: a PNG to look at
//! and an SVG to scale. Text needs a TrueType font: `UORCH_FONT`, else the
//! DejaVu Sans that set-up installs (fonts-dejavu-core), else what
//! fontconfig's `fc-match sans-serif` names.

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::ranged1d::Ranged;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// A metric and its 95% interval at one x.
#[derive(Debug, Clone)]
pub struct Point {
    /// Index into the figure's x labels.
    pub x: usize,
    pub value: f64,
    pub ci: [f64; 2],
}

/// A line of points, e.g. the trials that differ only in the x axis.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
}

/// A result placed by its cost.
#[derive(Debug, Clone)]
pub struct Costed {
    pub label: String,
    pub cost: f64,
    pub value: f64,
    pub ci: [f64; 2],
}

/// What a figure shows.
pub enum Figure {
    /// A metric with its intervals along a categorical axis.
    Along { title: String, metric: String, axis: String, x: Vec<String>, series: Vec<Series> },
    /// A metric against a cost (log scale), with the Pareto front.
    Cost { title: String, metric: String, cost: String, points: Vec<Costed> },
    /// Values by step, one line per trial.
    Curves { title: String, y: String, lines: Vec<(String, Vec<(f64, f64)>)> },
}

const SIZE: (u32, u32) = (900, 560);

/// Draw `fig` to `<stem>.png` and `<stem>.svg` (each written to a temporary
/// name and renamed); returns the two paths.
pub fn write(stem: &Path, fig: &Figure) -> Result<[PathBuf; 2]> {
    font()?;
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let tmp =
        |p: &Path| p.with_file_name(format!(".{}.tmp.{}", file_stem(p), p.extension().unwrap().to_string_lossy()));
    let (png_tmp, svg_tmp) = (tmp(&png), tmp(&svg));
    render(&BitMapBackend::new(&png_tmp, SIZE).into_drawing_area(), fig)
        .with_context(|| format!("drawing {}", png.display()))?;
    render(&SVGBackend::new(&svg_tmp, SIZE).into_drawing_area(), fig)
        .with_context(|| format!("drawing {}", svg.display()))?;
    for (from, to) in [(&png_tmp, &png), (&svg_tmp, &svg)] {
        std::fs::rename(from, to).with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
    }
    Ok([png, svg])
}

fn file_stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Which of `points` (cost, value) lie on the Pareto front: no other point
/// costs as little or less and scores as much or more, one of them strictly.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<bool> {
    points.iter().map(|&(c, v)| !points.iter().any(|&(c2, v2)| c2 <= c && v2 >= v && (c2 < c || v2 > v))).collect()
}

/// A y range that holds every interval, with a margin.
fn y_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.1).max(0.02);
    (lo - pad)..(hi + pad)
}

type Drawn<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn render<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let drawn: Drawn<DB> = match fig {
        Figure::Along { title, metric, axis, x, series } => along(root, title, metric, axis, x, series),
        Figure::Cost { title, metric, cost, points } => costs(root, title, metric, cost, points),
        Figure::Curves { title, y, lines } => curves(root, title, y, lines),
    };
    drawn.map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))
}

fn along<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    metric: &str,
    axis: &str,
    x: &[String],
    series: &[Series],
) -> Drawn<DB> {
    root.fill(&WHITE)?;
    let n = x.len().max(1);
    let ys = y_range(series.iter().flat_map(|s| s.points.iter().flat_map(|p| [p.ci[0], p.ci[1], p.value])));
    let mut chart = framed(root, title).build_cartesian_2d(-0.5f64..(n as f64 - 0.5), ys)?;
    // Ticks fall on the integers among many key points; only those are named.
    let name = |v: &f64| {
        let i = v.round();
        if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < x.len() {
            x[i as usize].clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(10 * n)
        .x_label_formatter(&name)
        .x_desc(axis)
        .y_desc(format!("{metric} (95% CI)"))
        .label_style(("sans-serif", 15))
        .draw()?;
    let k = series.len().max(1) as f64;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // Side by side, so that the intervals of the series do not hide each other.
        let dx = (i as f64 - (k - 1.0) / 2.0) * (0.3 / k);
        let line: Vec<(f64, f64)> = s.points.iter().map(|p| (p.x as f64 + dx, p.value)).collect();
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))?
            .label(&s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(
            s.points
                .iter()
                .map(|p| ErrorBar::new_vertical(p.x as f64 + dx, p.ci[0], p.value, p.ci[1], color.filled(), 10)),
        )?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

fn costs<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    metric: &str,
    cost: &str,
    points: &[Costed],
) -> Drawn<DB> {
    root.fill(&WHITE)?;
    let shown: Vec<&Costed> = points.iter().filter(|p| p.cost > 0.0 && p.cost.is_finite()).collect();
    let (lo, hi) = shown.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.cost), b.max(p.cost)));
    let (lo, hi) = if lo.is_finite() { (lo / 1.6, hi * 1.6) } else { (0.1, 10.0) };
    let ys = y_range(shown.iter().flat_map(|p| [p.ci[0], p.ci[1]]));
    let mut chart = framed(root, title).build_cartesian_2d((lo..hi).log_scale(), ys)?;
    chart
        .configure_mesh()
        .x_desc(format!("{cost} (log scale)"))
        .y_desc(format!("{metric} (95% CI)"))
        .label_style(("sans-serif", 15))
        .draw()?;
    let on_front = pareto_front(&shown.iter().map(|p| (p.cost, p.value)).collect::<Vec<_>>());
    let mut front: Vec<(f64, f64)> =
        shown.iter().zip(&on_front).filter(|(_, f)| **f).map(|(p, _)| (p.cost, p.value)).collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    let grey = RGBColor(90, 90, 90);
    chart
        .draw_series(LineSeries::new(front, grey.stroke_width(1)))?
        .label("Pareto front (best for its cost)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1)));
    for (i, p) in shown.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart.draw_series(std::iter::once(ErrorBar::new_vertical(
            p.cost,
            p.ci[0],
            p.value,
            p.ci[1],
            color.filled(),
            8,
        )))?;
        let mark = if on_front[i] { "*" } else { "" };
        chart.draw_series(std::iter::once(
            EmptyElement::at((p.cost, p.value)) + Text::new(format!("{}{mark}", p.label), (6, -14), ("sans-serif", 12)),
        ))?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

fn curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y: &str,
    lines: &[(String, Vec<(f64, f64)>)],
) -> Drawn<DB> {
    root.fill(&WHITE)?;
    let xmax = lines.iter().flat_map(|(_, l)| l.iter().map(|p| p.0)).fold(1.0f64, f64::max);
    let ys = y_range(lines.iter().flat_map(|(_, l)| l.iter().map(|p| p.1)));
    let mut chart = framed(root, title).build_cartesian_2d(0f64..xmax, ys)?;
    chart.configure_mesh().x_desc("step").y_desc(y).label_style(("sans-serif", 15)).draw()?;
    for (i, (label, l)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(l.iter().copied(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        if l.len() <= 12 {
            chart.draw_series(l.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

/// A chart's frame: the title, margins, room for the axis labels.
fn framed<'a, 'b, DB: DrawingBackend>(root: &'a DrawingArea<DB, Shift>, title: &str) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 22)).margin(14).x_label_area_size(44).y_label_area_size(64);
    b
}

/// The series' labels in a box at `position`.
fn legend<'a, DB: DrawingBackend + 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Drawn<DB> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(position)
        .draw()
}

/// Register a TrueType font as "sans-serif", once per process.
fn font() -> Result<()> {
    static DONE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = find_font().map_err(|e| format!("{e:#}"))?;
        let bytes = std::fs::read(&path).map_err(|e| format!("reading the font {}: {e}", path.display()))?;
        // plotters keeps the font for the process's life.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{}: not a TrueType font plotters can read", path.display()))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

fn find_font() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("UORCH_FONT") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("UORCH_FONT={}: no such file (a .ttf font for the report's plots)", p.display());
        }
        return Ok(p);
    }
    let known = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"];
    if let Some(p) = known.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Ok(p);
    }
    let matched =
        std::process::Command::new("fc-match").args(["-f", "%{file}", "sans-serif:fontformat=TrueType"]).output();
    if let Ok(o) = matched {
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if o.status.success() && p.is_file() {
            return Ok(p);
        }
    }
    bail!("no TrueType font for the report's plots: install fonts-dejavu-core (make setup does), or point UORCH_FONT at a .ttf file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pareto_front_holds_what_nothing_beats_on_both_quality_and_cost() {
        // (cost, quality): b costs more than a for more quality; c is beaten by b
        // (costs more, scores less); d equals a; e is the cheapest.
        let pts = [(1.0, 0.5), (4.0, 0.7), (5.0, 0.6), (1.0, 0.5), (0.5, 0.1)];
        assert_eq!(pareto_front(&pts), vec![true, true, false, true, true]);
        assert_eq!(pareto_front(&[(2.0, 0.4), (1.0, 0.4)]), vec![false, true]);
    }
}
