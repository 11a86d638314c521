//! The charts of an experiment's chapter (docs/experiments/NAME.md): from
//! the newest lab run of that experiment, throughput and p95 against the
//! load for each variant, as SVG files beside the chapter, so the chapter
//! shows its result as a picture on any Markdown viewer.
//!
//! A variant run several times (`loadtests lab --repeat N`) is drawn as
//! its median repeat, with its other repeats as thin lines of the same
//! colour (or, at a fixed load, a whisker from the lowest to the highest
//! repeat over its bar): the spread is in the picture, not only in the
//! tables.
//!
//! `dashboard report` writes them wherever a chapter holds a
//! `<!-- report:charts:NAME -->` block (and with `--check` fails if one
//! differs from what the result files give). A chart shows at most
//! [`SERIES_PER_CHART`] variants, the baseline in each, with the legend
//! beside the plot rather than over the data. Drawn with plotters, as the
//! dashboard's charts are.

use plotters::prelude::*;

use crate::model::{Run, Step};

/// Variants on one chart at most (the baseline and three changes).
pub const SERIES_PER_CHART: usize = 4;

const COLORS: [RGBColor; SERIES_PER_CHART] = [
    RGBColor(90, 90, 90),
    RGBColor(11, 87, 208),
    RGBColor(227, 116, 0),
    RGBColor(24, 128, 56),
];

/// One chart file of a chapter.
pub struct ChartFile {
    /// The file name, beside the chapter (`NAME-p95.svg`).
    pub file: String,
    /// What the picture shows, for the Markdown's alt text.
    pub alt: String,
    pub svg: String,
}

/// What a chart plots of a step.
struct Measure {
    slug: &'static str,
    what: &'static str,
    unit: &'static str,
    value: fn(&Step) -> f64,
}

const MEASURES: [Measure; 2] = [
    Measure {
        slug: "throughput",
        what: "throughput",
        unit: "req/s",
        value: |s| s.rps,
    },
    Measure {
        slug: "p95",
        what: "p95 latency",
        unit: "ms",
        value: |s| s.p95_ms,
    },
];

/// A variant's runs: the one that stands for it (its median repeat)
/// first, then its other repeats.
pub type Repeats<'a> = Vec<&'a Run>;

/// The chart files of `experiment`'s chapter from the runs of one lab run,
/// its baseline first (empty without runs).
pub fn for_experiment(experiment: &str, runs: &[Repeats]) -> anyhow::Result<Vec<ChartFile>> {
    let Some((baseline, changes)) = runs.split_first() else {
        return Ok(Vec::new());
    };
    let groups: Vec<Vec<&Repeats>> = if changes.is_empty() {
        vec![vec![baseline]]
    } else {
        changes
            .chunks(SERIES_PER_CHART - 1)
            .map(|c| std::iter::once(baseline).chain(c.iter()).collect())
            .collect()
    };
    let mut files = Vec::new();
    for m in &MEASURES {
        for (i, group) in groups.iter().enumerate() {
            let part = if groups.len() > 1 {
                format!("-{}", i + 1)
            } else {
                String::new()
            };
            let one_step = group
                .iter()
                .flat_map(|r| r.iter())
                .all(|r| r.steps.len() <= 1);
            let title = format!("{experiment}: {} ({})", m.what, m.unit);
            let svg = if one_step {
                bars(&title, m, group)?
            } else {
                lines(&title, m, group)?
            };
            let names: Vec<String> = group.iter().map(|r| variant(r[0])).collect();
            files.push(ChartFile {
                file: format!("{experiment}-{}{part}.svg", m.slug),
                alt: if one_step {
                    format!(
                        "{} per variant at the same load: {}",
                        m.what,
                        names.join(", ")
                    )
                } else {
                    format!("{} against the load: {}", m.what, names.join(", "))
                },
                svg,
            });
        }
    }
    Ok(files)
}

fn variant(r: &Run) -> String {
    r.experiment
        .as_ref()
        .map_or_else(|| r.stage.clone(), |e| e.variant.clone())
}

const SIZE: (u32, u32) = (760, 320);
/// The plot's width; the rest of the picture is the legend.
const PLOT_WIDTH: u32 = 560;

/// A line per variant: the measure at each step of its search.
fn lines(title: &str, m: &Measure, variants: &[&Repeats]) -> anyhow::Result<String> {
    let runs: Vec<&Run> = variants.iter().flat_map(|r| r.iter().copied()).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_horizontally(PLOT_WIDTH);
        let open = runs.iter().any(|r| r.is_open());
        let levels = || {
            runs.iter()
                .flat_map(|r| r.steps.iter().map(|s| s.level().max(1.0)))
        };
        let max_x = levels().fold(2.0f64, f64::max);
        let min_x = levels().fold(max_x, f64::min);
        let max_y = y_top(runs.iter().flat_map(|r| r.steps.iter().map(m.value)));
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d((min_x / 1.2..max_x * 1.2).log_scale(), 0f64..max_y)?;
        chart
            .configure_mesh()
            .x_desc(if open {
                "visits started per second"
            } else {
                "users"
            })
            .y_desc(m.unit)
            .draw()?;
        let curve = |run: &Run| {
            let mut points: Vec<(f64, f64)> = run
                .steps
                .iter()
                .map(|s| (s.level().max(1.0), (m.value)(s)))
                .collect();
            // The bisection revisits levels: draw the curve in load order.
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            points
        };
        for (i, repeats) in variants.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            // The other repeats first, thin and faint, under the median one.
            for other in repeats.iter().skip(1) {
                chart.draw_series(LineSeries::new(
                    curve(other),
                    color.mix(0.35).stroke_width(1),
                ))?;
            }
            let points = curve(repeats[0]);
            chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
        }
        let shown: Vec<&Run> = variants.iter().map(|r| r[0]).collect();
        draw_legend(&legend, &shown)?;
        root.present()?;
    }
    Ok(svg)
}

/// A bar per variant: fixed-load experiments measure one step each.
fn bars(title: &str, m: &Measure, variants: &[&Repeats]) -> anyhow::Result<String> {
    let runs: Vec<&Run> = variants.iter().map(|r| r[0]).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_horizontally(PLOT_WIDTH);
        let value = |r: &Run| r.steps.last().map_or(0.0, m.value);
        let max_y = y_top(variants.iter().flat_map(|r| r.iter()).map(|r| value(r)));
        let n = runs.len() as f64;
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..n, 0f64..max_y)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc("variant (same load)")
            .y_desc(m.unit)
            .draw()?;
        for (i, run) in runs.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let x = i as f64;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.2, 0.0), (x + 0.8, value(run))],
                color.filled(),
            )))?;
            // The range over the repeats, as a whisker over the bar.
            let values: Vec<f64> = variants[i].iter().map(|r| value(r)).collect();
            if values.len() > 1 {
                let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let ink = BLACK.stroke_width(2);
                chart.draw_series([
                    PathElement::new(vec![(x + 0.5, lo), (x + 0.5, hi)], ink),
                    PathElement::new(vec![(x + 0.4, lo), (x + 0.6, lo)], ink),
                    PathElement::new(vec![(x + 0.4, hi), (x + 0.6, hi)], ink),
                ])?;
            }
        }
        draw_legend(&legend, &runs)?;
        root.present()?;
    }
    Ok(svg)
}

/// The top of a value axis: a little above the highest value.
fn y_top(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0f64, f64::max).max(1e-9) * 1.1
}

/// The variants' colours and names, beside the plot.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    runs: &[&Run],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    for (i, run) in runs.iter().enumerate() {
        let y = 48 + 22 * i as i32;
        let color = COLORS[i % COLORS.len()];
        area.draw(&Rectangle::new([(8, y - 5), (26, y + 5)], color.filled()))
            .map_err(|e| anyhow::anyhow!("drawing the legend: {e:?}"))?;
        area.draw(&Text::new(variant(run), (32, y - 7), ("sans-serif", 13)))
            .map_err(|e| anyhow::anyhow!("drawing the legend: {e:?}"))?;
    }
    Ok(())
}
