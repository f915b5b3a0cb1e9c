//! The Wilcoxon signed-rank test, two-sided: do paired samples differ? The
//! test for `bench compare`'s rounds: each round boots A then B, so the two
//! boots of a round share the host's load of that moment, and a host that
//! drifts by a second over a run (seen on 2 cores) moves both alike. The
//! rank-sum test (mann_whitney.rs) treats the sides as independent and
//! drowns a steady 20 % in that drift (6 of 6 rounds faster, p = 0.18).
//! Zero differences are dropped (scipy's zero_method="wilcox"); exact
//! p-value for small samples without ties, normal approximation with tie
//! and continuity correction otherwise, as scipy.stats.wilcoxon does.

/// Above this many pairs the normal approximation is used.
const EXACT_MAX: usize = 25;

/// W+ (the rank sum of the positive differences `y - x`) and the two-sided
/// p-value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    pub w_plus: f64,
    pub p: f64,
    /// Pairs left once zero differences are dropped.
    pub n: usize,
}

/// Two-sided test of the pairs (`x[i]`, `y[i]`); None when the lengths
/// differ, a value is NaN, or no pair differs.
pub fn test(x: &[f64], y: &[f64]) -> Option<Outcome> {
    if x.len() != y.len() || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    let d: Vec<f64> = x
        .iter()
        .zip(y)
        .map(|(a, b)| b - a)
        .filter(|d| *d != 0.0)
        .collect();
    let n = d.len();
    if n == 0 {
        return None;
    }
    let (ranks, ties) = super::mann_whitney::midranks(d.iter().map(|d| d.abs()).collect());
    let w_plus: f64 = d
        .iter()
        .zip(&ranks)
        .filter(|(d, _)| **d > 0.0)
        .map(|(_, r)| r)
        .sum();
    let p = if ties == 0.0 && n <= EXACT_MAX {
        exact_p(n, w_plus)
    } else {
        normal_p(n, w_plus, ties)
    };
    Some(Outcome {
        w_plus,
        p: p.min(1.0),
        n,
    })
}

/// Exact two-sided p: the share of the 2^n sign assignments whose W+ is at
/// least as far from the mean n(n+1)/4 as the observed one. counts[s] is
/// the number of subsets of ranks 1..=n that sum to s.
fn exact_p(n: usize, w_plus: f64) -> f64 {
    let max = n * (n + 1) / 2;
    let mut counts = vec![0u64; max + 1];
    counts[0] = 1;
    for r in 1..=n {
        for s in (r..=max).rev() {
            counts[s] += counts[s - r];
        }
    }
    let total = 2f64.powi(n as i32);
    // W+ is an integer without ties; the distribution is symmetric.
    let w = w_plus.round() as usize;
    let low = w.min(max - w);
    let tail: u64 = counts[..=low].iter().sum();
    2.0 * tail as f64 / total
}

/// Normal approximation with tie and continuity correction.
fn normal_p(n: usize, w_plus: f64, ties: f64) -> f64 {
    let n = n as f64;
    let mean = n * (n + 1.0) / 4.0;
    let var = n * (n + 1.0) * (2.0 * n + 1.0) / 24.0 - ties / 48.0;
    if var <= 0.0 {
        return 1.0;
    }
    let z = ((w_plus - mean).abs() - 0.5).max(0.0) / var.sqrt();
    2.0 * super::mann_whitney::normal_sf(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    /// scipy.stats.wilcoxon's documented example (Darwin's 15 paired maize
    /// height differences, from Fisher): d = [6, 8, 14, 16, 23, 24, 28, 29,
    /// 41, -48, 49, 56, 60, -67, 75] gives statistic 24 (W-, so W+ = 96 of
    /// 120) and the exact p = 0.041259765625.
    #[test]
    fn matches_scipys_documented_example() {
        let d = [
            6.0, 8.0, 14.0, 16.0, 23.0, 24.0, 28.0, 29.0, 41.0, -48.0, 49.0, 56.0, 60.0, -67.0,
            75.0,
        ];
        let x = vec![0.0; d.len()];
        let o = test(&x, &d).unwrap();
        assert_eq!(o.n, 15);
        assert_eq!(o.w_plus, 96.0);
        assert!(close(o.p, 0.041_259_765_625, 1e-9), "{o:?}");
    }

    /// Six rounds all faster: the smallest exact two-sided p, 2/64, however
    /// much the host drifted between rounds.
    #[test]
    fn every_pair_one_way_is_significant_despite_drift() {
        let base = [1600.0, 2600.0, 1700.0, 2100.0, 1900.0, 2400.0];
        let head: Vec<f64> = base.iter().map(|b| b * 0.8).collect();
        let o = test(&base, &head).unwrap();
        assert_eq!(o.w_plus, 0.0);
        assert!(close(o.p, 2.0 / 64.0, 1e-12), "{o:?}");
        // The same samples, unpaired, are not.
        let mw = crate::bench::mann_whitney::test(&base, &head).unwrap();
        assert!(mw.p > 0.05, "{mw:?}");
    }

    #[test]
    fn mixed_signs_are_not_significant() {
        let base = [100.0, 100.0, 100.0, 100.0, 100.0, 100.0];
        let head = [101.0, 98.0, 103.0, 96.0, 102.0, 99.0];
        assert!(test(&base, &head).unwrap().p > 0.5);
    }

    #[test]
    fn ties_and_large_samples_use_the_normal_approximation() {
        // 30 pairs, all +1: W+ = 465 of 465, far in the tail.
        let base = vec![10.0; 30];
        let head = vec![11.0; 30];
        let o = test(&base, &head).unwrap();
        assert!(o.p < 1e-5, "{o:?}");
        // Tied magnitudes, both signs balanced: no evidence.
        let o = test(&[0.0; 4], &[1.0, -1.0, 1.0, -1.0]).unwrap();
        assert!(o.p > 0.9, "{o:?}");
    }

    #[test]
    fn no_verdict_without_differing_pairs_or_with_bad_input() {
        assert_eq!(test(&[1.0, 2.0], &[1.0, 2.0]), None);
        assert_eq!(test(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(test(&[f64::NAN], &[1.0]), None);
        assert_eq!(test(&[], &[]), None);
    }
}
