//! Labels from GraphQL names (spec §4.2 "humanize").

use std::sync::LazyLock;

use regex::Regex;

static CAPS_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([A-Z]+)([A-Z][a-z])").expect("valid regex"));
static LOWER_UPPER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([a-z\d])([A-Z])").expect("valid regex"));

/// A label for a GraphQL name: `requestCreate` → `Request Create`, `sourceID` → `Source ID`,
/// `URLValue` → `URL Value`, `supportDomain` → `Support Domain`.
///
/// Words are split before a capital that follows a lower-case letter or digit, between a run
/// of capitals and a capital followed by a lower-case letter, and at underscores; an all
/// upper-case word is kept as it is, any other word is capitalised.
pub fn humanize(name: &str) -> String {
    let s = CAPS_RUN.replace_all(name, "$1 $2");
    let s = LOWER_UPPER.replace_all(&s, "$1 $2");
    let s = s.replace('_', " ");
    s.split_whitespace()
        .map(|w| {
            if w == w.to_uppercase() {
                w.to_string()
            } else {
                let mut cs = w.chars();
                match cs.next() {
                    Some(c) => c
                        .to_uppercase()
                        .chain(cs.flat_map(char::to_lowercase))
                        .collect(),
                    None => String::new(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The default input type of a mutation without a declared `input` argument (spec §6.1):
/// `unknownMutation` → `UnknownMutationInput`.
pub fn default_input_type(mutation: &str) -> String {
    let mut cs = mutation.chars();
    match cs.next() {
        Some(c) => format!("{}{}Input", c.to_uppercase(), cs.as_str()),
        None => "Input".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_examples_of_the_spec() {
        for (name, label) in [
            ("people", "People"),
            ("me", "Me"),
            ("requestCreate", "Request Create"),
            ("personUpdate", "Person Update"),
            ("supportDomain", "Support Domain"),
            ("createdAt", "Created At"),
            ("updatedAt", "Updated At"),
            ("asc", "Asc"),
            ("sourceID", "Source ID"),
            ("URLValue", "URL Value"),
            ("current_account", "Current Account"),
            ("_12_5", "12 5"),
        ] {
            assert_eq!(humanize(name), label, "{name}");
        }
    }

    #[test]
    fn default_input_type_upper_cases_the_first_letter() {
        assert_eq!(
            default_input_type("unknownMutation"),
            "UnknownMutationInput"
        );
        assert_eq!(default_input_type("requestCreate"), "RequestCreateInput");
    }
}
