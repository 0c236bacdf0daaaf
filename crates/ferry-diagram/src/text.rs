//! Text helpers: XML escaping, approximate widths, truncation.

/// Average advance of one character of the 12 px sans-serif label font, in pixels (generous, so
/// that real fonts fit: most lowercase letters are narrower, a few capitals wider).
pub(crate) const CHAR_W: i32 = 7;
/// The same for the bold first line.
pub(crate) const BOLD_CHAR_W: i32 = 8;
/// The same for the 11 px monospace action line (0.6 em plus a margin).
pub(crate) const MONO_CHAR_W: i32 = 7;

/// How many character cells `s` takes: wide (East Asian, emoji) characters count twice.
pub(crate) fn cells(s: &str) -> i32 {
    s.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum()
}

fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115F
        | 0x2E80..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1FAFF
        | 0x20000..=0x3FFFD)
}

/// Whitespace runs (newlines included) as one space, trimmed: labels are single lines.
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// `s` on one line, cut to at most `max` cells with a trailing `…` when it was longer.
pub(crate) fn truncate(s: &str, max: i32) -> String {
    let s = one_line(s);
    if cells(&s) <= max {
        return s;
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = if is_wide(c) { 2 } else { 1 };
        if used + w > max - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    let mut out = out.trim_end().to_string();
    out.push('…');
    out
}

/// Append `s` to `out`, escaped for XML text and attribute values (both quote kinds).
/// Characters XML 1.0 does not allow (most C0 controls, U+FFFE, U+FFFF) become U+FFFD.
pub(crate) fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push(' '),
            '\r' => {}
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// `s` escaped (see [`push_escaped`]).
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push_escaped(&mut out, s);
    out
}

/// `s` reduced to characters safe in an XML `id` and a CSS selector: `A-Z a-z 0-9 _ -`; every
/// other character becomes `_`. Never empty.
pub(crate) fn id_safe(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "_".to_string()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\"\u{1}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;\u{FFFD}"
        );
        assert_eq!(escape("a\nb"), "a&#10;b");
    }

    #[test]
    fn truncates_by_cells_with_an_ellipsis() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        assert_eq!(truncate("much longer than ten", 10), "much long…");
        assert_eq!(truncate("a\n  b", 10), "a b");
        // Wide characters take two cells.
        assert_eq!(cells("日本"), 4);
        assert_eq!(truncate("日本語のテキスト", 7), "日本語…");
    }

    #[test]
    fn ids_keep_only_safe_characters() {
        assert_eq!(id_safe("my-runbook_1"), "my-runbook_1");
        assert_eq!(id_safe("a b<\"c>"), "a_b__c_");
        assert_eq!(id_safe(""), "_");
    }
}
