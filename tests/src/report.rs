//! The pass/fail table: one row per test, then the plain closing line
//! `N passed, N failed, N skipped` that CI log readers understand.

use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// Not run, with the reason (e.g. an earlier step it depends on failed).
    Skip(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    pub verdict: Verdict,
    pub took: Duration,
}

/// Counts of (passed, failed, skipped).
pub fn counts(outcomes: &[Outcome]) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for o in outcomes {
        match o.verdict {
            Verdict::Pass => c.0 += 1,
            Verdict::Fail(_) => c.1 += 1,
            Verdict::Skip(_) => c.2 += 1,
        }
    }
    c
}

/// Render the table for `title` (e.g. the arch).
pub fn render(title: &str, outcomes: &[Outcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut s = String::new();
    let _ = writeln!(s, "\ne2e suite: {title}");
    let _ = writeln!(
        s,
        "{:<width$}  {:<6}  {:>8}  detail",
        "test", "result", "ms"
    );
    let _ = writeln!(s, "{}", "-".repeat(width + 28));
    for o in outcomes {
        let (word, detail) = match &o.verdict {
            Verdict::Pass => ("PASS", String::new()),
            Verdict::Fail(why) => ("FAIL", why.clone()),
            Verdict::Skip(why) => ("SKIP", why.clone()),
        };
        // Keep each row on one line: error chains can be long and multi-line.
        let detail: String = detail.replace('\n', " | ").chars().take(300).collect();
        let ms = o.took.as_millis();
        let _ = writeln!(s, "{:<width$}  {word:<6}  {ms:>8}  {detail}", o.name);
    }
    let (p, f, k) = counts(outcomes);
    let _ = writeln!(s, "\n{p} passed, {f} failed, {k} skipped");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_rows_and_closing_line() {
        let outcomes = vec![
            Outcome {
                name: "health_check",
                verdict: Verdict::Pass,
                took: Duration::from_millis(12),
            },
            Outcome {
                name: "create_sandbox",
                verdict: Verdict::Fail("rpc error:\nnot implemented".into()),
                took: Duration::from_millis(3),
            },
            Outcome {
                name: "start_container",
                verdict: Verdict::Skip("needs create_sandbox".into()),
                took: Duration::ZERO,
            },
        ];
        let t = render("x86_64", &outcomes);
        let row = t.lines().find(|l| l.starts_with("health_check")).unwrap();
        assert_eq!(row.split_whitespace().nth(1), Some("PASS"));
        assert!(t.contains("FAIL"));
        assert!(t.contains("rpc error: | not implemented"));
        assert!(t.trim_end().ends_with("1 passed, 1 failed, 1 skipped"));
        assert_eq!(counts(&outcomes), (1, 1, 1));
    }
}
