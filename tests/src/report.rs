//! The results of a run: the pass/fail table for people (one row per test,
//! then the plain closing line `N passed, N failed, N skipped` that CI log
//! readers understand), JUnit XML for CI systems (`e2e suite --junit PATH`)
//! and JSON for scripts (`--json PATH`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use quick_xml::escape::escape;

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

/// JUnit XML as CI systems read it (GitLab, Jenkins, GitHub reporters): one
/// `testsuite` named `title`, one `testcase` per outcome with its time in
/// seconds, a `failure` element for a failure and a `skipped` element for a
/// skip, each with the reason. No timestamp: the same run gives the same file.
pub fn junit(title: &str, outcomes: &[Outcome]) -> String {
    let (_, failed, skipped) = counts(outcomes);
    let total: Duration = outcomes.iter().map(|o| o.took).sum();
    let title = xml_text(title);
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"e2e\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"{skipped}\" time=\"{}\">",
        outcomes.len(),
        seconds(total)
    );
    let _ = writeln!(
        s,
        "  <testsuite name=\"{title}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"{skipped}\" time=\"{}\">",
        outcomes.len(),
        seconds(total)
    );
    for o in outcomes {
        let _ = write!(
            s,
            "    <testcase name=\"{}\" classname=\"e2e\" time=\"{}\"",
            xml_text(o.name),
            seconds(o.took)
        );
        match &o.verdict {
            Verdict::Pass => s.push_str("/>\n"),
            Verdict::Fail(why) => {
                let _ = write!(
                    s,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml_text(first_line(why)),
                    xml_text(why)
                );
            }
            Verdict::Skip(why) => {
                let _ = write!(
                    s,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    xml_text(why)
                );
            }
        }
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

/// The outcomes as one JSON object: `{"title", "passed", "failed",
/// "skipped", "tests": [{"name", "result": "pass"|"fail"|"skip", "detail",
/// "ms"}]}`.
pub fn json(title: &str, outcomes: &[Outcome]) -> String {
    let (passed, failed, skipped) = counts(outcomes);
    let tests: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let (result, detail) = match &o.verdict {
                Verdict::Pass => ("pass", ""),
                Verdict::Fail(why) => ("fail", why.as_str()),
                Verdict::Skip(why) => ("skip", why.as_str()),
            };
            serde_json::json!({
                "name": o.name,
                "result": result,
                "detail": detail,
                "ms": o.took.as_millis() as u64,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "title": title,
        "passed": passed,
        "failed": failed,
        "skipped": skipped,
        "tests": tests,
    });
    format!("{doc:#}\n")
}

/// Write a report file (creating its directory).
pub fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Escaped for an XML attribute or text, without the characters XML 1.0
/// cannot carry at all (control characters from a console log, say).
fn xml_text(s: &str) -> String {
    let allowed: String = s
        .chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')
        })
        .collect();
    escape(allowed.as_str()).into_owned()
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

    fn sample() -> Vec<Outcome> {
        vec![
            Outcome {
                name: "health_check",
                verdict: Verdict::Pass,
                took: Duration::from_millis(1250),
            },
            Outcome {
                name: "create_sandbox",
                verdict: Verdict::Fail(
                    "CreateSandbox: INTERNAL: mount <kataShared> & \"9p\"\nsecond line\u{1b}[0m"
                        .into(),
                ),
                took: Duration::from_millis(3),
            },
            Outcome {
                name: "start_long_running",
                verdict: Verdict::Skip("needs create_sandbox".into()),
                took: Duration::ZERO,
            },
        ]
    }

    /// What `--junit` writes parses as XML (an independent parser) into the
    /// elements and attributes CI systems read.
    #[test]
    fn junit_parses_into_suites_cases_failures_and_skips() {
        let xml = junit("x86_64 <q35>", &sample());
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(root.attribute("tests"), Some("3"));
        let suite = root
            .children()
            .find(|n| n.has_tag_name("testsuite"))
            .expect("a testsuite");
        assert_eq!(suite.attribute("name"), Some("x86_64 <q35>"));
        assert_eq!(suite.attribute("tests"), Some("3"));
        assert_eq!(suite.attribute("failures"), Some("1"));
        assert_eq!(suite.attribute("skipped"), Some("1"));
        assert_eq!(suite.attribute("time"), Some("1.253"));
        let cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        let names: Vec<_> = cases.iter().filter_map(|c| c.attribute("name")).collect();
        assert_eq!(
            names,
            ["health_check", "create_sandbox", "start_long_running"]
        );
        assert_eq!(cases[0].attribute("time"), Some("1.250"));
        assert_eq!(cases[0].children().filter(|n| n.is_element()).count(), 0);
        let failure = cases[1]
            .children()
            .find(|n| n.has_tag_name("failure"))
            .expect("a failure element");
        assert_eq!(
            failure.attribute("message"),
            Some("CreateSandbox: INTERNAL: mount <kataShared> & \"9p\"")
        );
        assert_eq!(
            failure.text(),
            Some("CreateSandbox: INTERNAL: mount <kataShared> & \"9p\"\nsecond line[0m")
        );
        let skipped = cases[2]
            .children()
            .find(|n| n.has_tag_name("skipped"))
            .expect("a skipped element");
        assert_eq!(skipped.attribute("message"), Some("needs create_sandbox"));
    }

    #[test]
    fn json_has_counts_and_one_entry_per_test() {
        let text = json("x86_64", &sample());
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["title"], "x86_64");
        assert_eq!(
            (
                v["passed"].as_u64(),
                v["failed"].as_u64(),
                v["skipped"].as_u64()
            ),
            (Some(1), Some(1), Some(1))
        );
        let tests = v["tests"].as_array().expect("tests");
        assert_eq!(tests.len(), 3);
        assert_eq!(tests[0]["name"], "health_check");
        assert_eq!(tests[0]["result"], "pass");
        assert_eq!(tests[0]["ms"], 1250);
        assert_eq!(tests[1]["result"], "fail");
        assert!(tests[1]["detail"].as_str().unwrap().contains("second line"));
        assert_eq!(tests[2]["result"], "skip");
        assert_eq!(tests[2]["detail"], "needs create_sandbox");
    }

    #[test]
    fn write_creates_the_directory() {
        let dir = std::env::temp_dir().join(format!("e2e-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/junit.xml");
        write(&path, "x").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
