//! A small line diff (longest common subsequence) for failure reports.

/// The lines of `expected` and `actual` as a diff: unchanged lines start with two spaces,
/// lines only in `expected` with `- `, lines only in `actual` with `+ `. Texts longer than
/// 1000 lines are shown whole, one after the other.
pub fn lines(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out = Vec::new();
    if e.len() > 1000 || a.len() > 1000 {
        out.extend(e.iter().map(|l| format!("- {l}")));
        out.extend(a.iter().map(|l| format!("+ {l}")));
        return out.join("\n");
    }
    // lcs[i][j]: length of the longest common subsequence of e[i..] and a[j..].
    let mut lcs = vec![vec![0usize; a.len() + 1]; e.len() + 1];
    for i in (0..e.len()).rev() {
        for j in (0..a.len()).rev() {
            lcs[i][j] = if e[i] == a[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < e.len() || j < a.len() {
        if i < e.len() && j < a.len() && e[i] == a[j] {
            out.push(format!("  {}", e[i]));
            i += 1;
            j += 1;
        } else if i < e.len() && (j == a.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", e[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", a[j]));
            j += 1;
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn marks_removed_and_added_lines() {
        let d = super::lines("a\nb\nc", "a\nx\nc\nd");
        assert_eq!(d, "  a\n- b\n+ x\n  c\n+ d");
        assert_eq!(super::lines("same", "same"), "  same");
    }
}
