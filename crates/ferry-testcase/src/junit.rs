//! JUnit XML for CI systems (`ferry test --junit FILE`): one `<testsuite>` per runbook, one
//! `<testcase>` per case, `<failure>` for failed expectations and `<error>` for a case that
//! could not run. Written by hand: the format needs a dozen elements and correct escaping.

use std::fmt::Write as _;

/// The outcome of one case, as JUnit sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every expectation passed.
    Passed,
    /// Expectations failed: the report.
    Failed(String),
    /// The case could not run (bad file, engine error): the reason.
    Error(String),
}

/// One case's result.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseReport {
    /// The suite (the runbook).
    pub suite: String,
    /// The case name.
    pub name: String,
    /// The case file.
    pub file: String,
    /// Run time in seconds.
    pub seconds: f64,
    /// What happened.
    pub outcome: Outcome,
}

/// Escape text for XML content and attribute values; characters XML 1.0 cannot carry are
/// replaced by U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The JUnit XML document for `reports` (suites in order of first appearance).
pub fn render(reports: &[CaseReport]) -> String {
    let mut suites: Vec<(&str, Vec<&CaseReport>)> = Vec::new();
    for r in reports {
        match suites.iter_mut().find(|(s, _)| *s == r.suite) {
            Some((_, list)) => list.push(r),
            None => suites.push((&r.suite, vec![r])),
        }
    }
    let count = |list: &[&CaseReport], f: fn(&Outcome) -> bool| {
        list.iter().filter(|r| f(&r.outcome)).count()
    };
    let failed = |o: &Outcome| matches!(o, Outcome::Failed(_));
    let errored = |o: &Outcome| matches!(o, Outcome::Error(_));
    let all: Vec<&CaseReport> = reports.iter().collect();
    let total: f64 = reports.iter().map(|r| r.seconds).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"ferry test\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{total:.3}\">",
        reports.len(),
        count(&all, failed),
        count(&all, errored)
    );
    for (suite, list) in &suites {
        let time: f64 = list.iter().map(|r| r.seconds).sum();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{time:.3}\">",
            escape(suite),
            list.len(),
            count(list, failed),
            count(list, errored)
        );
        for r in list {
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{:.3}\"",
                escape(suite),
                escape(&r.name),
                escape(&r.file),
                r.seconds
            );
            match &r.outcome {
                Outcome::Passed => x.push_str("/>\n"),
                Outcome::Failed(text) | Outcome::Error(text) => {
                    let tag = if failed(&r.outcome) {
                        "failure"
                    } else {
                        "error"
                    };
                    let first = text.lines().next().unwrap_or_default();
                    let _ = writeln!(
                        x,
                        ">\n      <{tag} message=\"{}\">{}</{tag}>\n    </testcase>",
                        escape(first),
                        escape(text)
                    );
                }
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_suites_cases_and_escapes() {
        let r = |name: &str, outcome| CaseReport {
            suite: "intake".into(),
            name: name.into(),
            file: "tests/intake/a.yaml".into(),
            seconds: 0.5,
            outcome,
        };
        let xml = render(&[
            r("ok", Outcome::Passed),
            r("bad <one>", Outcome::Failed("x: \"a\" & b\nmore".into())),
            r("broken", Outcome::Error("no\u{1}pe".into())),
        ]);
        assert!(
            xml.contains("<testsuites name=\"ferry test\" tests=\"3\" failures=\"1\" errors=\"1\"")
        );
        assert!(xml.contains("<testcase classname=\"intake\" name=\"ok\" file=\"tests/intake/a.yaml\" time=\"0.500\"/>"));
        assert!(xml.contains("name=\"bad &lt;one&gt;\""));
        assert!(xml.contains("<failure message=\"x: &quot;a&quot; &amp; b\">x: &quot;a&quot; &amp; b\nmore</failure>"));
        assert!(xml.contains("<error message=\"no\u{FFFD}pe\">"));
        assert_eq!(xml.matches("<testsuite ").count(), 1);
        assert!(xml.ends_with("</testsuites>\n"));
    }
}
