//! The Universal Scalability Law (Gunther), fitted to measured throughput
//! against load:
//!
//! ```text
//! X(N) = λ·N / (1 + σ·(N − 1) + κ·N·(N − 1))
//! ```
//!
//! λ is the throughput of one user alone, σ the share of work that
//! serialises (contention: a lock, one SQLite writer, a hash queue) and κ
//! the cost of keeping shared state coherent (crosstalk), which makes
//! throughput fall past a peak at N* = √((1 − σ)/κ).
//!
//! The fit minimises squared error over a grid of (σ, κ), refined around
//! the best cell, with λ solved exactly for each pair (X is linear in λ).
//! Here N is the number of simulated users of a closed-loop load test
//! with think times, not a measured concurrency: σ and κ describe the
//! whole system under that journey mix, and the peak is a prediction
//! that is only as good as the points near it.

use serde::{Deserialize, Serialize};

/// A fitted curve and how well it fits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UslFit {
    pub lambda: f64,
    pub sigma: f64,
    pub kappa: f64,
    /// Coefficient of determination of the fit over the points (1 = exact).
    pub r2: f64,
    /// Users at the predicted peak (None when κ = 0: no retrograde region).
    pub peak_users: Option<f64>,
    /// Predicted throughput at the peak (or the asymptote λ/σ).
    pub peak_rps: f64,
    pub points: usize,
    /// The largest N measured: a peak far beyond it is not a prediction
    /// (0 in reports written before it was recorded).
    #[serde(default)]
    pub max_load: f64,
}

impl UslFit {
    pub fn predict(&self, n: f64) -> f64 {
        throughput(self.lambda, self.sigma, self.kappa, n)
    }

    /// A fit that says nothing about scaling: no contention and no
    /// coherency cost found (σ = κ = 0, throughput simply proportional over
    /// the points), or one that explains less than 80% of the variation.
    pub fn is_degenerate(&self) -> bool {
        (self.sigma == 0.0 && self.kappa == 0.0) || self.r2 < 0.8
    }

    /// The predicted peak (N, throughput), only when the fit supports it:
    /// not degenerate, and within twice the measured range.
    pub fn supported_peak(&self) -> Option<(f64, f64)> {
        let n = self.peak_users?;
        (!self.is_degenerate() && n <= 2.0 * self.max_load).then_some((n, self.peak_rps))
    }

    /// What to print instead of a peak the fit does not support.
    pub fn peak_caveat(&self) -> String {
        if self.is_degenerate() {
            format!(
                "degenerate fit (σ = {:.4}, κ = {:.6}, R² = {:.2}): no peak predicted",
                self.sigma, self.kappa, self.r2
            )
        } else if self.peak_users.is_none() {
            "no retrograde region (κ = 0): no peak predicted".into()
        } else {
            format!(
                "beyond twice the measured range (N ≤ {:.0}): not predicted",
                self.max_load
            )
        }
    }
}

fn throughput(lambda: f64, sigma: f64, kappa: f64, n: f64) -> f64 {
    lambda * shape(sigma, kappa, n)
}

fn shape(sigma: f64, kappa: f64, n: f64) -> f64 {
    n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
}

/// The best λ for (σ, κ) and the squared error it leaves.
fn solve(points: &[(f64, f64)], sigma: f64, kappa: f64) -> (f64, f64) {
    let (mut xf, mut ff) = (0.0, 0.0);
    for &(n, x) in points {
        let f = shape(sigma, kappa, n);
        xf += x * f;
        ff += f * f;
    }
    let lambda = if ff > 0.0 { xf / ff } else { 0.0 };
    let sse = points
        .iter()
        .map(|&(n, x)| (x - lambda * shape(sigma, kappa, n)).powi(2))
        .sum();
    (lambda, sse)
}

/// Fits the USL to `(users, throughput)` points; None with fewer than
/// three distinct loads (three parameters).
pub fn fit(points: &[(f64, f64)]) -> Option<UslFit> {
    let points: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(n, x)| *n >= 1.0 && x.is_finite() && *x >= 0.0)
        .collect();
    let mut loads: Vec<u64> = points.iter().map(|(n, _)| *n as u64).collect();
    loads.sort_unstable();
    loads.dedup();
    if loads.len() < 3 {
        return None;
    }
    // κ on a log scale (with 0), σ linear in [0, 1].
    let kappas: Vec<f64> = std::iter::once(0.0)
        .chain((0..=140).map(|i| 10f64.powf(-9.0 + i as f64 * 0.05)))
        .collect();
    let sigmas: Vec<f64> = (0..=200).map(|i| i as f64 / 200.0).collect();
    let mut best = (f64::INFINITY, 0.0, 0.0, 0.0);
    for &k in &kappas {
        for &s in &sigmas {
            let (l, e) = solve(&points, s, k);
            if e < best.0 {
                best = (e, l, s, k);
            }
        }
    }
    // Refine around the best cell.
    let (mut sse, mut lambda, mut sigma, mut kappa) = best;
    let (mut ds, mut dk) = (0.005, if kappa > 0.0 { kappa * 0.12 } else { 1e-9 });
    for _ in 0..60 {
        let mut improved = false;
        for (s, k) in [
            (sigma + ds, kappa),
            (sigma - ds, kappa),
            (sigma, kappa + dk),
            (sigma, kappa - dk),
        ] {
            if !(0.0..=1.0).contains(&s) || k < 0.0 {
                continue;
            }
            let (l, e) = solve(&points, s, k);
            if e < sse {
                (sse, lambda, sigma, kappa) = (e, l, s, k);
                improved = true;
            }
        }
        if !improved {
            ds /= 2.0;
            dk /= 2.0;
        }
    }
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let total: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    let r2 = if total > 0.0 { 1.0 - sse / total } else { 1.0 };
    let peak_users = (kappa > 0.0).then(|| ((1.0 - sigma) / kappa).sqrt());
    let peak_rps = match peak_users {
        Some(n) => throughput(lambda, sigma, kappa, n),
        None if sigma > 0.0 => lambda / sigma,
        None => f64::INFINITY,
    };
    Some(UslFit {
        lambda,
        sigma,
        kappa,
        r2,
        peak_users,
        peak_rps,
        points: points.len(),
        max_load: points.iter().map(|p| p.0).fold(0.0, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_known_parameters() {
        let (l, s, k) = (3.0, 0.02, 0.0004);
        let points: Vec<(f64, f64)> = [1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
            .iter()
            .map(|&n| (n, throughput(l, s, k, n)))
            .collect();
        let f = fit(&points).unwrap();
        assert!((f.lambda - l).abs() / l < 0.02, "{f:?}");
        assert!((f.sigma - s).abs() < 0.005, "{f:?}");
        assert!((f.kappa - k).abs() / k < 0.1, "{f:?}");
        assert!(f.r2 > 0.999);
        let peak = ((1.0 - s) / k).sqrt();
        assert!((f.peak_users.unwrap() - peak).abs() / peak < 0.05, "{f:?}");
    }

    #[test]
    fn linear_scaling_has_no_contention() {
        let points: Vec<(f64, f64)> = [8.0, 16.0, 32.0, 64.0]
            .iter()
            .map(|&n| (n, 2.5 * n))
            .collect();
        let f = fit(&points).unwrap();
        assert!(f.sigma < 0.01 && f.kappa < 1e-6, "{f:?}");
        assert!((f.predict(128.0) - 320.0).abs() < 5.0);
    }

    #[test]
    fn needs_three_loads() {
        assert!(fit(&[(8.0, 10.0), (16.0, 19.0)]).is_none());
        assert!(fit(&[(8.0, 10.0), (8.0, 11.0), (16.0, 19.0)]).is_none());
    }
}
