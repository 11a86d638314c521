//! Figures over repeats: a variant run N times gives N values of each
//! figure, published as their median and range ([`Spread`]); two variants
//! are compared by the ratio of their medians and the range of the ratio
//! over *paired* repeats ([`Difference`]) — repeat k of one variant ran
//! right beside repeat k of the other (the lab interleaves them), so slow
//! drift of the machine lands on both sides of each pair alike. A
//! difference whose paired range includes 1 is "no measurable
//! difference": the lab's chapters and the dashboard never claim an
//! ordering that range does not support.

use serde::{Deserialize, Serialize};

/// One figure over a variant's repeats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Spread {
    /// Every repeat's value, in the order the repeats ran.
    pub values: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (`None` when there are none).
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            values: values.to_vec(),
            median: median_of_sorted(&sorted),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }

    /// How many repeats it holds.
    pub fn n(&self) -> usize {
        self.values.len()
    }

    /// Coefficient of variation: the sample standard deviation over the
    /// mean (0 for fewer than two values or a zero mean).
    pub fn cv(&self) -> f64 {
        let n = self.values.len();
        if n < 2 {
            return 0.0;
        }
        let mean = self.values.iter().sum::<f64>() / n as f64;
        if mean == 0.0 {
            return 0.0;
        }
        let var = self.values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        var.sqrt() / mean.abs()
    }

    /// "64 (56–72)" with `digits` decimals; the median alone for one repeat.
    pub fn text(&self, digits: usize) -> String {
        if self.n() < 2 {
            format!("{:.*}", digits, self.median)
        } else {
            format!(
                "{:.*} ({:.*}–{:.*})",
                digits, self.median, digits, self.min, digits, self.max
            )
        }
    }
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// What a comparison of B against A can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reading {
    /// Every paired repeat has B above A.
    Higher,
    /// Every paired repeat has B below A.
    Lower,
    /// The paired ratios straddle 1 (or touch it).
    NoMeasurableDifference,
    /// One repeat each: no spread to judge the difference against.
    SingleRun,
}

impl Reading {
    pub fn text(self) -> &'static str {
        match self {
            Reading::Higher => "higher",
            Reading::Lower => "lower",
            Reading::NoMeasurableDifference => "no measurable difference",
            Reading::SingleRun => "single run: not judged against noise",
        }
    }
}

/// B ÷ A for one figure: the ratio of medians and the range of the ratio
/// over paired repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    /// Median of B over median of A.
    pub ratio: f64,
    /// Lowest and highest B_k ÷ A_k over the pairs.
    pub low: f64,
    pub high: f64,
    pub pairs: usize,
    pub reading: Reading,
}

impl Difference {
    /// B against A from their values, paired by position (the repeat they
    /// ran in). Pairs with a missing or zero A are left out; `None` when no
    /// pair is left.
    pub fn of(a: &[Option<f64>], b: &[Option<f64>]) -> Option<Self> {
        let pairs: Vec<(f64, f64)> = a
            .iter()
            .zip(b)
            .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
            .filter(|(x, _)| *x > 0.0)
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let ratios: Vec<f64> = pairs.iter().map(|(x, y)| y / x).collect();
        let xs: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        let (ma, mb) = (Spread::of(&xs)?.median, Spread::of(&ys)?.median);
        let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let reading = if pairs.len() < 2 {
            Reading::SingleRun
        } else if low > 1.0 {
            Reading::Higher
        } else if high < 1.0 {
            Reading::Lower
        } else {
            Reading::NoMeasurableDifference
        };
        Some(Self {
            ratio: if ma > 0.0 { mb / ma } else { 0.0 },
            low,
            high,
            pairs: pairs.len(),
            reading,
        })
    }

    /// "1.23× (paired repeats 1.10–1.40×)".
    pub fn text(&self) -> String {
        if self.pairs < 2 {
            format!("{:.2}× (one pair)", self.ratio)
        } else {
            format!(
                "{:.2}× (paired repeats {:.2}–{:.2}×)",
                self.ratio, self.low, self.high
            )
        }
    }
}

/// The short name of what a verdict says saturated: "the app-1 host (97%
/// of …); the Postgres pool (…)" → "the app-1 host".
pub fn saturated_first(saturated: &str) -> String {
    saturated
        .split(';')
        .next()
        .and_then(|s| s.split(" (").next())
        .and_then(|s| s.split(':').next())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The short name of what broke the SLO, from a breach as `slo.rs` words
/// it: "reads p95 = 305 ms > 250 ms, …" → "reads", "error rate 1.6% > 1%"
/// → "errors"; no breach → "SLO held".
pub fn broken_on(broken_by: Option<&str>) -> &str {
    match broken_by {
        None | Some("") => "SLO held",
        Some(b) if b.starts_with("error") => "errors",
        Some(b) => b.split(' ').next().unwrap_or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_broke_is_named_by_its_class() {
        assert_eq!(
            broken_on(Some("reads p95 = 305 ms > 250 ms, ≥ 290 ms")),
            "reads"
        );
        assert_eq!(
            broken_on(Some("sign-in p95 = 1988 ms > 1000 ms")),
            "sign-in"
        );
        assert_eq!(broken_on(Some("error rate 1.56% > 1%")), "errors");
        assert_eq!(broken_on(Some("")), "SLO held");
        assert_eq!(broken_on(None), "SLO held");
    }

    #[test]
    fn a_spread_has_its_median_and_range() {
        let s = Spread::of(&[72.0, 56.0, 64.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (64.0, 56.0, 72.0));
        assert_eq!(s.values, vec![72.0, 56.0, 64.0], "kept in run order");
        assert_eq!(s.text(0), "64 (56–72)");
        let even = Spread::of(&[10.0, 20.0]).unwrap();
        assert_eq!(even.median, 15.0);
        assert_eq!(Spread::of(&[5.0]).unwrap().text(1), "5.0");
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn the_coefficient_of_variation_is_the_sample_one() {
        // mean 10, sample sd = sqrt(((−2)²+0²+2²)/2) = 2
        let s = Spread::of(&[8.0, 10.0, 12.0]).unwrap();
        assert!((s.cv() - 0.2).abs() < 1e-12, "{}", s.cv());
        assert_eq!(Spread::of(&[3.0]).unwrap().cv(), 0.0);
    }

    #[test]
    fn a_difference_is_read_from_its_paired_range() {
        let a = [Some(100.0), Some(110.0), Some(90.0)];
        let higher = Difference::of(&a, &[Some(130.0), Some(140.0), Some(120.0)]).unwrap();
        assert_eq!(higher.reading, Reading::Higher);
        assert!((higher.ratio - 1.3).abs() < 1e-12);
        assert_eq!(higher.pairs, 3);
        // One pair crosses 1: the medians differ, the noise covers it.
        let noisy = Difference::of(&a, &[Some(120.0), Some(100.0), Some(100.0)]).unwrap();
        assert_eq!(noisy.reading, Reading::NoMeasurableDifference);
        assert!(noisy.low < 1.0 && noisy.high > 1.0);
        let lower = Difference::of(&a, &[Some(50.0), Some(60.0), Some(40.0)]).unwrap();
        assert_eq!(lower.reading, Reading::Lower);
        // A missing repeat drops its pair, not the comparison.
        let gap = Difference::of(&a, &[Some(50.0), None, Some(40.0)]).unwrap();
        assert_eq!(gap.pairs, 2);
        let single = Difference::of(&[Some(1.0)], &[Some(2.0)]).unwrap();
        assert_eq!(single.reading, Reading::SingleRun);
        assert!(Difference::of(&[None], &[Some(2.0)]).is_none());
    }

    #[test]
    fn the_first_thing_saturated_is_named_short() {
        assert_eq!(
            saturated_first("the app-1 host (97% of its 0.30-core budget); the Postgres pool (x)"),
            "the app-1 host"
        );
        assert_eq!(
            saturated_first("the load generator's host (…): the server was not the limit"),
            "the load generator's host"
        );
        assert_eq!(
            saturated_first("CPU: the machine was 91% busy (server side 1.2 cores)"),
            "CPU"
        );
    }
}
