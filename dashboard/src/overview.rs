//! What the page answers first: "where does each stage break, and why?"
//! (the newest `stage1-vs-stage2` lab run as one picture and one sentence)
//! and then one section per experiment (its newest lab run: question,
//! charts, the verdict per variant, the hosts it ran on, its chapter).
//! Everything is read from the lab reports and the runs they name; older
//! runs stay in the page's history section.

use plotters::prelude::*;

use crate::chapter_charts::{self, ChartFile};
use crate::model::{LabFile, Results, Run};

/// The experiment the first screen answers from.
pub const HEADLINE_EXPERIMENT: &str = "stage1-vs-stage2";

/// One variant's verdict: where it broke, on what, and what saturated.
pub struct Verdict {
    pub variant: String,
    pub stage: String,
    pub hosts: String,
    /// The breaking point's level (visits/s or users), or the highest level
    /// measured when the SLO held.
    pub level: f64,
    pub held_text: String,
    pub rps: f64,
    pub p95_ms: f64,
    pub broken_by: String,
    /// Everything the verdict named as saturated, and its first item.
    pub saturated: String,
    pub saturated_first: String,
    /// p95 (ms) of each request at the key step (folded on the page).
    pub requests: Vec<(String, f64)>,
}

/// One experiment's section.
pub struct Section {
    pub name: String,
    pub question: String,
    pub change: String,
    /// Machine, commit, date and report file: said once per section.
    pub caption: String,
    pub file: String,
    pub charts: Vec<ChartFile>,
    pub verdicts: Vec<Verdict>,
}

/// The first screen.
pub struct Headline {
    pub section: Section,
    pub sentence: String,
    pub svg: String,
}

/// The newest report of each experiment, by experiment name.
pub fn newest_reports(results: &Results) -> Vec<&LabFile> {
    let mut newest: std::collections::BTreeMap<&str, &LabFile> = Default::default();
    for r in &results.lab_reports {
        // Files are loaded in name order and names end in their time.
        newest.insert(&r.report.experiment, r);
    }
    newest.into_values().collect()
}

/// The runs a report names, in its order (the baseline first).
pub fn runs_of<'a>(results: &'a Results, lab: &LabFile) -> Vec<&'a Run> {
    lab.report
        .variants
        .iter()
        .filter_map(|v| v.result_file.as_deref())
        .filter_map(|f| results.runs.iter().find(|r| r.file == f))
        .collect()
}

/// Each variant's runs of a report, in its order: the run its figures come
/// from (the median repeat) first, then its other repeats (reports from
/// before repeats: that one run).
pub fn repeats_of<'a>(results: &'a Results, lab: &LabFile) -> Vec<Vec<&'a Run>> {
    let find = |f: &str| results.runs.iter().find(|r| r.file == f);
    lab.report
        .variants
        .iter()
        .filter_map(|v| {
            let main = find(v.result_file.as_deref()?)?;
            let others = v
                .repeats
                .iter()
                .filter(|r| Some(r.result_file.as_str()) != v.result_file.as_deref())
                .filter_map(|r| find(&r.result_file));
            Some(std::iter::once(main).chain(others).collect())
        })
        .collect()
}

fn verdict(run: &Run) -> Verdict {
    let key = run.key_step();
    let (level, held_text, broken_by, saturated) = match &run.breaking_point {
        Some(bp) => (
            bp.level(),
            bp.level_text(),
            bp.broken_by.clone(),
            bp.saturated.clone(),
        ),
        None => (
            run.steps.iter().map(|s| s.level()).fold(0.0, f64::max),
            "SLO held at every step".into(),
            String::new(),
            String::new(),
        ),
    };
    let saturated_first = measure::spread::saturated_first(&saturated);
    Verdict {
        variant: match &run.experiment {
            // "baseline" alone does not say which stage it was.
            Some(e) if !e.variant.starts_with(&run.stage) => {
                format!("{} ({})", run.stage, e.variant)
            }
            Some(e) => e.variant.clone(),
            None => run.stage.clone(),
        },
        stage: run.stage.clone(),
        hosts: run.hosts(),
        level,
        held_text,
        rps: key.map_or(0.0, |s| s.rps),
        p95_ms: key.map_or(0.0, |s| s.p95_ms),
        broken_by,
        saturated,
        saturated_first,
        requests: key
            .map(|s| {
                s.requests
                    .iter()
                    .map(|(n, r)| (n.clone(), r.p95_ms))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn section(results: &Results, lab: &LabFile) -> anyhow::Result<Section> {
    let runs = runs_of(results, lab);
    let report = &lab.report;
    let dataset = runs
        .first()
        .map_or_else(String::new, |r| r.dataset.describe());
    Ok(Section {
        name: report.experiment.clone(),
        question: report.question.clone(),
        change: report.change.clone(),
        caption: format!(
            "{}; {}; {}; commit {} ({}); {}; {}; {}",
            runs_text(report),
            test_bed(report),
            report.machine.describe(),
            report.commit.get(..12).unwrap_or(&report.commit),
            results.age_of(&lab.file),
            report.date(),
            dataset,
            lab.file
        ),
        file: lab.file.clone(),
        charts: chapter_charts::for_experiment(&report.experiment, &repeats_of(results, lab))?,
        verdicts: runs.iter().map(|r| verdict(r)).collect(),
    })
}

/// Where the variants ran: simulated hosts (CPU budgets, named in the
/// hosts table) or the shared box.
pub fn test_bed(report: &measure::schema::LabReport) -> &'static str {
    if report.on_hosts() {
        "on simulated hosts (CPU budgets)"
    } else {
        "on the shared box (every process on the same cores)"
    }
}

/// How many times each variant ran: said on every section, so figures of
/// a single run are never read as if they had a spread.
fn runs_text(report: &measure::schema::LabReport) -> String {
    match report.repeats {
        0 | 1 => "single run (no spread measured)".into(),
        n => format!(
            "{n} repeats per variant, interleaved; each variant shown by its median repeat (ranges and differences in the chapter)"
        ),
    }
}

/// One section per experiment, the newest run of each, by name; the
/// headline's experiment is not repeated here.
pub fn sections(results: &Results) -> anyhow::Result<Vec<Section>> {
    newest_reports(results)
        .into_iter()
        .filter(|r| r.report.experiment != HEADLINE_EXPERIMENT)
        .map(|r| section(results, r))
        .collect()
}

/// The first screen, if results/ holds a stage1-vs-stage2 run.
pub fn headline(results: &Results) -> anyhow::Result<Option<Headline>> {
    let Some(report) = newest_reports(results)
        .into_iter()
        .find(|r| r.report.experiment == HEADLINE_EXPERIMENT)
    else {
        return Ok(None);
    };
    let section = section(results, report)?;
    let parts: Vec<String> = section
        .verdicts
        .iter()
        .map(|v| {
            let why = if v.saturated_first.is_empty() {
                "nothing saturated".to_owned()
            } else {
                format!("{} saturated first", v.saturated_first)
            };
            format!(
                "{} broke at {} ({:.0} req/s): {why}",
                v.variant, v.held_text, v.rps
            )
        })
        .collect();
    let sentence = format!(
        "{} On the hosts below, {}.",
        section.question,
        parts.join("; ")
    );
    let svg = bars_svg(&section.verdicts)?;
    Ok(Some(Headline {
        section,
        sentence,
        svg,
    }))
}

/// A horizontal bar per variant: its breaking point, with what saturated
/// written beside the bar.
fn bars_svg(verdicts: &[Verdict]) -> anyhow::Result<String> {
    const WIDTH: u32 = 900;
    const ROW: i32 = 64;
    const BAR_MAX: f64 = 420.0;
    let height = 30 + ROW as u32 * verdicts.len() as u32;
    let max = verdicts.iter().map(|v| v.level).fold(1e-9, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let draw_err = |e| anyhow::anyhow!("drawing the headline: {e:?}");
        for (i, v) in verdicts.iter().enumerate() {
            let top = 20 + ROW * i as i32;
            let len = (v.level / max * BAR_MAX).max(2.0) as i32;
            let color = if v.stage == "stage-1" {
                RGBColor(90, 90, 90)
            } else {
                RGBColor(11, 87, 208)
            };
            root.draw(&Text::new(
                format!("{} · {}", v.variant, v.hosts),
                (10, top),
                ("sans-serif", 14),
            ))
            .map_err(draw_err)?;
            root.draw(&Rectangle::new(
                [(10, top + 20), (10 + len, top + 46)],
                color.filled(),
            ))
            .map_err(draw_err)?;
            let label = if v.saturated_first.is_empty() {
                format!("{} · {:.0} req/s", v.held_text, v.rps)
            } else {
                format!(
                    "{} · {:.0} req/s · saturated: {}",
                    v.held_text, v.rps, v.saturated_first
                )
            };
            root.draw(&Text::new(label, (18 + len, top + 26), ("sans-serif", 14)))
                .map_err(draw_err)?;
        }
        root.present()?;
    }
    // Marks for tests and readers: one bar per stage variant.
    Ok(svg.replacen("<svg", "<svg class=\"headline-bars\"", 1))
}
