//! Markdown image links (`![alt](path){:attrs}`) in an offering's `description` and
//! `features`: find them and rewrite their paths (spec §9.4.3). In the account the paths are
//! attachment keys (`attachments/…`); in the files they are `images/<file name>`.

use std::sync::OnceLock;

use regex::Regex;

fn image_link() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // The alt text may hold escaped characters but no unescaped `]`; an optional kramdown
    // attribute list `{:…}` follows the link.
    RE.get_or_init(|| {
        Regex::new(r"!\[((?:\\.|[^\]\\])*)\]\(([^)\s]+)\)(\{:[^}]*\})?").expect("valid regex")
    })
}

/// The paths of every image link, in text order.
pub fn image_paths(text: &str) -> Vec<String> {
    image_link()
        .captures_iter(text)
        .map(|c| c[2].to_string())
        .collect()
}

/// Replace the path of every image link for which `map` answers a new path; other links and
/// all other text stay as they are.
pub fn rewrite_paths(text: &str, mut map: impl FnMut(&str) -> Option<String>) -> String {
    image_link()
        .replace_all(text, |c: &regex::Captures<'_>| match map(&c[2]) {
            Some(new) => format!(
                "![{}]({new}){}",
                &c[1],
                c.get(3).map(|m| m.as_str()).unwrap_or_default()
            ),
            None => c[0].to_string(),
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_rewrites_image_links_only() {
        let text = r"Intro ![a \] b](attachments/x/one.png){:width=100} and [link](attachments/x/two.png) ![two](https://e.com/p.png)";
        assert_eq!(
            image_paths(text),
            vec!["attachments/x/one.png", "https://e.com/p.png"]
        );
        let out = rewrite_paths(text, |p| {
            p.strip_prefix("attachments/x/")
                .map(|n| format!("images/{n}"))
        });
        assert_eq!(
            out,
            r"Intro ![a \] b](images/one.png){:width=100} and [link](attachments/x/two.png) ![two](https://e.com/p.png)"
        );
    }
}
