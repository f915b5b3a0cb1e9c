//! The Mann-Whitney U test (Wilcoxon rank-sum), two-sided: is one sample
//! stochastically larger than the other? Non-parametric, so a few slow
//! outliers of a loaded host do not decide the verdict as they would a
//! t-test's. Exact p-value for small samples without ties (the counts of
//! every U over all arrangements), normal approximation with tie and
//! continuity correction otherwise, as scipy.stats.mannwhitneyu does.

/// U of the first sample and the two-sided p-value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    pub u: f64,
    pub p: f64,
}

/// Above this many arrangements' worth of work the exact count is skipped.
const EXACT_MAX: usize = 50;

/// Two-sided test of `x` against `y`; None when either sample is empty or
/// holds a NaN.
pub fn test(x: &[f64], y: &[f64]) -> Option<Outcome> {
    if x.is_empty() || y.is_empty() || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    let (m, n) = (x.len(), y.len());
    let (ranks, ties) = midranks(x.iter().chain(y).copied().collect());
    let r1: f64 = ranks[..m].iter().sum();
    let u = r1 - (m * (m + 1)) as f64 / 2.0;
    let p = if ties == 0.0 && m.max(n) <= EXACT_MAX {
        exact_p(m, n, u)
    } else {
        normal_p(m, n, u, ties)
    };
    Some(Outcome { u, p: p.min(1.0) })
}

/// Rank of every value (ties get the mean of their ranks) and the tie term
/// sum(t^3 - t) over groups of t equal values (also the paired test's,
/// wilcoxon.rs, over the differences' magnitudes).
pub(super) fn midranks(values: Vec<f64>) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) share ranks i+1..=j+1.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    (ranks, ties)
}

/// Exact two-sided p: 2 * min(P(U <= u), P(U >= u)) under H0, from the
/// number of arrangements of m x's and n y's with each U.
fn exact_p(m: usize, n: usize, u: f64) -> f64 {
    let counts = u_counts(m, n);
    let total: f64 = counts.iter().sum();
    let u = u.round() as usize;
    let below: f64 = counts[..=u].iter().sum();
    let above: f64 = counts[u..].iter().sum();
    2.0 * below.min(above) / total
}

/// counts[u] = arrangements of m x's and n y's where U = u (U counts the
/// (x, y) pairs with x > y). Recurrence on the largest value: it is an x
/// (adds n to U) or a y (adds nothing).
fn u_counts(m: usize, n: usize) -> Vec<f64> {
    // table[i][j] = counts for i x's and j y's.
    let mut table: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); n + 1]; m + 1];
    for i in 0..=m {
        for j in 0..=n {
            let mut c = vec![0.0; i * j + 1];
            if i == 0 || j == 0 {
                c[0] = 1.0;
            } else {
                for (u, v) in table[i - 1][j].iter().enumerate() {
                    c[u + j] += v;
                }
                for (u, v) in table[i][j - 1].iter().enumerate() {
                    c[u] += v;
                }
            }
            table[i][j] = c;
        }
    }
    std::mem::take(&mut table[m][n])
}

/// Normal approximation with the tie-corrected variance and a continuity
/// correction of 0.5.
fn normal_p(m: usize, n: usize, u: f64, ties: f64) -> f64 {
    let (mf, nf) = (m as f64, n as f64);
    let total = mf + nf;
    let mean = mf * nf / 2.0;
    let var = mf * nf / 12.0 * ((total + 1.0) - ties / (total * (total - 1.0)));
    if var <= 0.0 {
        // Every value equal: nothing tells the samples apart.
        return 1.0;
    }
    let z = ((u - mean).abs() - 0.5).max(0.0) / var.sqrt();
    2.0 * normal_sf(z)
}

/// P(Z > z) for a standard normal Z (also the paired test's, wilcoxon.rs).
pub(super) fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// erfc by the Numerical Recipes Chebyshev fit (relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// R's ?wilcox.test example (Hollander & Wolfe, depression scale):
    /// `wilcox.test(x, y, alternative = "greater")` gives W = 35,
    /// p = 0.1272; the two-sided p is twice that.
    #[test]
    fn matches_r_wilcox_example() {
        let x = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46];
        let y = [1.15, 0.88, 0.90, 0.74, 1.21];
        let o = test(&x, &y).unwrap();
        assert_eq!(o.u, 35.0);
        assert!(close(o.p, 2.0 * 0.1272, 1e-3), "{o:?}");
    }

    /// scipy.stats.mannwhitneyu docs: males [19, 22, 16, 29, 24] against
    /// females [20, 11, 17, 12] gives U = 17, exact p = 0.1111, asymptotic
    /// (continuity-corrected) p = 0.11134688653314041.
    #[test]
    fn matches_scipy_docs_exact_and_asymptotic() {
        let males = [19.0, 22.0, 16.0, 29.0, 24.0];
        let females = [20.0, 11.0, 17.0, 12.0];
        let o = test(&males, &females).unwrap();
        assert_eq!(o.u, 17.0);
        assert!(close(o.p, 1.0 / 9.0, 1e-12), "{o:?}");
        let (_, ties) = midranks(males.iter().chain(&females).copied().collect());
        assert!(close(normal_p(5, 4, 17.0, ties), 0.111_346_886_5, 1e-6));
    }

    /// Counts by hand: of the 20 orders of 3 x's and 3 y's, U = 0..9 occur
    /// 1,1,2,3,3,3,3,2,1,1 times.
    #[test]
    fn exact_distribution_of_three_and_three() {
        assert_eq!(
            u_counts(3, 3),
            vec![1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 2.0, 1.0, 1.0]
        );
        let o = test(&[1.0, 3.0, 5.0], &[2.0, 4.0, 6.0]).unwrap();
        assert_eq!(o.u, 3.0);
        assert!(close(o.p, 0.7, 1e-12), "{o:?}");
    }

    /// Five rounds apart completely: the smallest p five against five can
    /// give, 2/252, which is what an A/B compare of 5 rounds can reach.
    #[test]
    fn complete_separation_of_five_rounds() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [6.0, 7.0, 8.0, 9.0, 10.0];
        let o = test(&a, &b).unwrap();
        assert_eq!(o.u, 0.0);
        assert!(close(o.p, 2.0 / 252.0, 1e-12), "{o:?}");
        assert_eq!(test(&b, &a).unwrap().u, 25.0);
        assert!(close(test(&b, &a).unwrap().p, o.p, 1e-12));
    }

    /// Ties take midranks; all-equal samples cannot differ.
    #[test]
    fn ties_and_degenerate_input() {
        let (ranks, ties) = midranks(vec![2.0, 1.0, 2.0, 3.0]);
        assert_eq!(ranks, vec![2.5, 1.0, 2.5, 4.0]);
        assert_eq!(ties, 6.0);
        assert_eq!(test(&[1.0, 1.0], &[1.0, 1.0]).unwrap().p, 1.0);
        assert_eq!(test(&[], &[1.0]), None);
        assert_eq!(test(&[f64::NAN], &[1.0]), None);
    }

    #[test]
    fn erfc_known_values() {
        assert!(close(erfc(0.0), 1.0, 1e-7));
        assert!(close(erfc(1.0), 0.157_299_207, 1e-7));
        assert!(close(erfc(-1.0), 1.842_700_793, 1e-7));
        assert!(close(normal_sf(1.959_964), 0.025, 1e-6));
    }
}
