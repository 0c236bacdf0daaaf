//! Ferry diagrams: a runbook drawn as an SVG picture, server-side. Pure: no I/O.
//!
//! [`render_svg`] draws the loaded runbook model ([`ferry_core::model::Runbook`]): the trigger
//! at the top, then the step tree top-down —
//!
//! - a chain of steps as boxes joined by arrows (bold step id, the action type, one line about
//!   what the step does: the condition of an if-then-else, the object of a query, …);
//! - the branches of a nested step side by side under it, each labelled (`true`/`false`, a
//!   case's `= value`/`else`, other output names), joined again below them; a missing branch
//!   of an if-then-else or a case's `else` is drawn as a pass-through;
//! - a branch that runs once per output (`flow.loop`, `flow.batch`, `xurrent.query` per record
//!   or per page, any other `each:`) in a frame labelled `for each …`, with a loop-back edge;
//! - a try-catch as a `try` lane and a red `catch (on error)` lane, with an `on error` edge
//!   between them; sections and the branch after a wait in dashed frames;
//! - `flow.fail`, `flow.finish` and `flow.retry` as stops (pills) that no edge leaves; the job's
//!   `End` at the bottom when the top-level chain can reach it.
//!
//! The layout is deterministic (integer coordinates, text widths approximated from character
//! counts, long labels cut with `…` and whole in the tooltip) and linear in the number of steps.
//! Every user string is XML-escaped. The SVG needs no fonts, scripts or style sheets: colours are
//! presentation attributes (so a page's Content Security Policy does not matter, and a page's
//! CSS can still override them through the classes). For assistive technology the root is
//! `<svg role="img">` labelled by its `<title>` (the runbook) and `<desc>` (the whole tree as
//! text); each step is a `<g class="node …" data-step="<step id>">` with a `<title>`, optionally
//! wrapped in a link ([`Labeller::step_href`]). Ids are `<prefix>-…` with a prefix made of
//! `A-Za-z0-9_-` only ([`Options::id_prefix`]; by default `fd-<runbook name>`), so several
//! diagrams can share a page.

mod layout;
mod text;
mod tree;

use ferry_core::model::Runbook;

/// Extra labels and links the caller knows and the runbook model does not (the console: the
/// registry's action descriptions, the job page's anchors, step statuses). Every method has a
/// default that adds nothing. A closure `Fn(&str) -> Option<String>` is a labeller giving
/// [`Labeller::action_title`].
pub trait Labeller {
    /// A human title of an action type (`"debug.log_message"` → `"Log a message"`), added to the
    /// tooltip of every step of that type.
    fn action_title(&self, action: &str) -> Option<String> {
        let _ = action;
        None
    }

    /// A link for a step (by its id), e.g. to its section on a job page. Only relative links
    /// (starting with `/`, `#`, `?` or `.`) and `http(s)://` links are used; others are dropped.
    fn step_href(&self, step_id: &str) -> Option<String> {
        let _ = step_id;
        None
    }

    /// Extra classes for a step's group, e.g. its status on a job page (`"failed"`). Only
    /// `A-Za-z0-9_-` and spaces are kept.
    fn step_class(&self, step_id: &str) -> Option<String> {
        let _ = step_id;
        None
    }
}

/// A labeller that adds nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLabels;

impl Labeller for NoLabels {}

impl<F> Labeller for F
where
    F: Fn(&str) -> Option<String>,
{
    fn action_title(&self, action: &str) -> Option<String> {
        self(action)
    }
}

/// Options of [`render_svg_with`].
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// Prefix of every `id` in the SVG (reduced to `A-Za-z0-9_-`). Default: `fd-<runbook name>`.
    /// Give each diagram on one page its own.
    pub id_prefix: Option<&'a str>,
    /// Extra labels and links; default: none.
    pub labeller: Option<&'a dyn Labeller>,
}

/// The runbook as an SVG document (a complete `<svg>` element, fit to be served as
/// `image/svg+xml` or embedded in HTML).
pub fn render_svg(runbook: &Runbook) -> String {
    render_svg_with(runbook, &Options::default())
}

/// [`render_svg`] with options.
pub fn render_svg_with(runbook: &Runbook, options: &Options<'_>) -> String {
    let labeller = Sanitized(options.labeller.unwrap_or(&NoLabels));
    let tree = tree::build(runbook, &labeller);
    let prefix = match options.id_prefix {
        Some(p) => text::id_safe(p),
        None => format!("fd-{}", text::id_safe(&runbook.name)),
    };
    layout::render(
        &tree,
        &runbook.name,
        runbook.description.as_deref(),
        &prefix,
    )
}

/// Applies the rules of [`Labeller`] to what a caller's labeller answers.
struct Sanitized<'a>(&'a dyn Labeller);

impl Labeller for Sanitized<'_> {
    fn action_title(&self, action: &str) -> Option<String> {
        self.0.action_title(action)
    }

    fn step_href(&self, step_id: &str) -> Option<String> {
        let href = self.0.step_href(step_id)?;
        let lower = href.trim_start().to_ascii_lowercase();
        let allowed = ["/", "#", "?", "."].iter().any(|p| lower.starts_with(p))
            || lower.starts_with("https://")
            || lower.starts_with("http://");
        allowed.then_some(href)
    }

    fn step_class(&self, step_id: &str) -> Option<String> {
        let class: String = self
            .0
            .step_class(step_id)?
            .split_whitespace()
            .map(text::id_safe)
            .collect::<Vec<_>>()
            .join(" ");
        (!class.is_empty()).then_some(class)
    }
}
