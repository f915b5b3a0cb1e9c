//! Machine-readable results for CI: JUnit XML (one `<testsuite>` per group,
//! one `<testcase>` per case) and JSON, written by `cargo xtask test` (its
//! stage table) and `bench vm` (one case per measured configuration).

use std::path::Path;

use anyhow::{Context, Result};

use crate::ui;

/// One test case: its group, name, time and, if it failed, why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Case {
    pub suite: String,
    pub name: String,
    pub seconds: f64,
    pub failure: Option<String>,
}

/// Every report path's directory must exist: checked before the work.
pub fn check_paths<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    for p in paths {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                crate::usage!(
                    "{}: directory {} does not exist (create it first)",
                    p.display(),
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// The cases as JUnit XML, under `<testsuites name="{title}">`.
pub fn junit(title: &str, cases: &[Case]) -> String {
    let total: f64 = cases.iter().map(|c| c.seconds).sum();
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">\n",
        escape(title),
        cases.len()
    ));
    let mut suites: Vec<&str> = cases.iter().map(|c| c.suite.as_str()).collect();
    suites.dedup();
    for suite in suites {
        let rows: Vec<&Case> = cases.iter().filter(|c| c.suite == suite).collect();
        let time: f64 = rows.iter().map(|c| c.seconds).sum();
        let failed = rows.iter().filter(|c| c.failure.is_some()).count();
        let suite = escape(suite);
        x.push_str(&format!(
            "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{failed}\" time=\"{time:.3}\">\n",
            rows.len()
        ));
        for c in rows {
            let name = escape(&c.name);
            let head = format!(
                "    <testcase classname=\"{suite}\" name=\"{name}\" time=\"{:.3}\"",
                c.seconds
            );
            match &c.failure {
                None => x.push_str(&format!("{head}/>\n")),
                Some(why) => x.push_str(&format!(
                    "{head}>\n      <failure message=\"{name} failed\">{}</failure>\n    </testcase>\n",
                    escape(why)
                )),
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Write `text` to `path` and say where.
pub fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    ui::info(format!("report written to {}", path.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases() -> Vec<Case> {
        vec![
            Case {
                suite: "cargo".into(),
                name: "cargo test --workspace".into(),
                seconds: 3.0,
                failure: None,
            },
            Case {
                suite: "vm".into(),
                name: "cargo xtask vm test --arch x86_64".into(),
                seconds: 1.5,
                failure: Some("exit <1>".into()),
            },
        ]
    }

    #[test]
    fn junit_has_one_case_per_row_and_marks_failures() {
        let x = junit("cargo xtask test", &cases());
        assert!(
            x.contains(
                "<testsuites name=\"cargo xtask test\" tests=\"2\" failures=\"1\" time=\"4.500\">"
            ),
            "{x}"
        );
        assert!(
            x.contains(
                "<testcase classname=\"cargo\" name=\"cargo test --workspace\" time=\"3.000\"/>"
            ),
            "{x}"
        );
        assert!(
            x.contains("<failure message=\"cargo xtask vm test --arch x86_64 failed\">exit &lt;1&gt;</failure>"),
            "{x}"
        );
        assert_eq!(x.matches("<testsuite ").count(), 2);
    }

    #[test]
    fn a_report_in_a_missing_directory_is_a_usage_error() {
        let err = check_paths([Path::new("/no/such/dir/r.xml")]).unwrap_err();
        assert!(err.is::<crate::Usage>());
        assert!(check_paths([Path::new("r.xml")]).is_ok());
    }
}
