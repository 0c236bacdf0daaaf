//! A runbook's trigger and step tree as nested HTML lists: `each:` chains and named branches
//! nested under their step. The runbook page shows it as is (also the fallback of the
//! diagram); the job page hangs each step's runs under it.

use ferry_core::model::{Runbook, StepDef};
use maud::{html, Markup};

/// The tree of `rb`; `extra(step)` is rendered inside each step's item (after its head) and
/// `class(step)` adds a class to the item.
pub(crate) fn step_tree(
    rb: &Runbook,
    extra: &dyn Fn(&StepDef) -> Markup,
    class: &dyn Fn(&StepDef) -> Option<&'static str>,
) -> Markup {
    html! {
        ol.tree #step-tree data-testid="step-tree" aria-label="Trigger and steps" {
            li.trigger data-testid="tree-trigger" {
                span.step-head {
                    "Trigger "
                    code { (rb.trigger.connector) "." (rb.trigger.kind) }
                    @if let Some(c) = &rb.trigger.connection { " via " code { (c) } }
                    @if let Some(d) = &rb.trigger.description { " — " (d) }
                }
            }
            (chain(&rb.steps, extra, class))
        }
    }
}

fn chain(
    steps: &[StepDef],
    extra: &dyn Fn(&StepDef) -> Markup,
    class: &dyn Fn(&StepDef) -> Option<&'static str>,
) -> Markup {
    html! {
        @for step in steps {
            li id={ "step-" (step.id) } class=[class(step)] data-step=(step.id)
                data-testid={ "step-" (step.id) } {
                span.step-head {
                    code { (step.id) } " "
                    span.action { (step.action) }
                    @if let Some(c) = &step.connection { " via " code { (c) } }
                    @if let Some(d) = &step.description { " — " span.muted { (d) } }
                }
                (extra(step))
                @if !step.each.is_empty() {
                    ol aria-label={ "For each output of " (step.id) } {
                        li.branch { "for each output" }
                        (chain(&step.each, extra, class))
                    }
                }
                @for (name, branch) in &step.branches {
                    ol aria-label={ "Branch " (name) " of " (step.id) } data-branch=(name) {
                        li.branch { "branch " code { (name) } }
                        (chain(branch, extra, class))
                    }
                }
            }
        }
    }
}
