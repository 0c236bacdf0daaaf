//! Webhook event names: the valid `WebhookEvent` wire values and the mapping from record changes
//! to events.

use serde_json::Value;

/// Every valid webhook event name, in its wire spelling (the 83 `WebhookEvent` values of the SDL).
pub const WEBHOOK_EVENTS: &[&str] = &[
    "app_instance.create",
    "app_instance.delete",
    "app_instance.secrets-update",
    "app_instance.update",
    "automation_rule",
    "broadcast.create",
    "broadcast.update",
    "ci.create",
    "ci.update",
    "contract.create",
    "contract.update",
    "flsa.create",
    "flsa.update",
    "knowledge_article.create",
    "knowledge_article.update",
    "organization.create",
    "organization.update",
    "out_of_office_period.create",
    "out_of_office_period.delete",
    "out_of_office_period.update",
    "person.create",
    "person.update",
    "problem.create",
    "problem.manager-changed",
    "problem.member-changed",
    "problem.note-added",
    "problem.status-changed",
    "problem.team-changed",
    "problem.update",
    "product.create",
    "product.update",
    "project.create",
    "project.manager-changed",
    "project.note-added",
    "project.status-changed",
    "project.update",
    "project_task.create",
    "project_task.delete",
    "project_task.note-added",
    "project_task.status-changed",
    "project_task.update",
    "release.create",
    "release.manager-changed",
    "release.note-added",
    "release.update",
    "request.agile-board-column-changed",
    "request.create",
    "request.major-incident-status-changed",
    "request.member-changed",
    "request.note-added",
    "request.status-changed",
    "request.team-changed",
    "request.update",
    "risk.create",
    "risk.manager-changed",
    "risk.note-added",
    "risk.status-changed",
    "risk.update",
    "service.create",
    "service.update",
    "service_instance.create",
    "service_instance.update",
    "service_offering.create",
    "service_offering.update",
    "sla.create",
    "sla.update",
    "task.create",
    "task.member-changed",
    "task.note-added",
    "task.status-changed",
    "task.team-changed",
    "task.update",
    "team.create",
    "team.update",
    "time_entry.create",
    "time_entry.delete",
    "time_entry.update",
    "webhook.verify",
    "workflow.create",
    "workflow.manager-changed",
    "workflow.note-added",
    "workflow.status-changed",
    "workflow.update",
];

/// Is `event` a valid webhook event name (wire spelling)?
pub fn is_valid_event(event: &str) -> bool {
    WEBHOOK_EVENTS.contains(&event)
}

/// The GraphQL enum name of a wire event (`request.team-changed` → `request_team_changed`).
pub fn graphql_event_name(wire: &str) -> String {
    wire.replace(['.', '-'], "_")
}

/// Normalises an event given in wire spelling or as its GraphQL enum name to the wire spelling.
pub fn normalize_event(event: &str) -> Option<&'static str> {
    WEBHOOK_EVENTS
        .iter()
        .copied()
        .find(|w| *w == event || graphql_event_name(w) == event)
}

/// GraphQL record types that have webhook events, with the event noun.
const NOUNS: &[(&str, &str)] = &[
    ("AppInstance", "app_instance"),
    ("Broadcast", "broadcast"),
    ("ConfigurationItem", "ci"),
    ("Contract", "contract"),
    ("FirstLineSupportAgreement", "flsa"),
    ("KnowledgeArticle", "knowledge_article"),
    ("Organization", "organization"),
    ("OutOfOfficePeriod", "out_of_office_period"),
    ("Person", "person"),
    ("Problem", "problem"),
    ("Product", "product"),
    ("Project", "project"),
    ("ProjectTask", "project_task"),
    ("Release", "release"),
    ("Request", "request"),
    ("Risk", "risk"),
    ("Service", "service"),
    ("ServiceInstance", "service_instance"),
    ("ServiceOffering", "service_offering"),
    ("ServiceLevelAgreement", "sla"),
    ("Task", "task"),
    ("Team", "team"),
    ("TimeEntry", "time_entry"),
    ("Workflow", "workflow"),
];

/// The event noun of a GraphQL type (`ConfigurationItem` → `ci`), if it has events.
pub fn noun_for_type(typename: &str) -> Option<&'static str> {
    NOUNS.iter().find(|(t, _)| *t == typename).map(|(_, n)| *n)
}

/// The REST collection name of a GraphQL type, used in `Link` headers (`Request` → `requests`).
pub fn rest_collection(typename: &str) -> String {
    let noun = noun_for_type(typename)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let mut out = String::new();
            for (i, c) in typename.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            }
            out
        });
    match noun.as_str() {
        "ci" => "cis".into(),
        "sla" => "slas".into(),
        "flsa" => "flsas".into(),
        n if n.ends_with('y') => format!("{}ies", &n[..n.len() - 1]),
        n => format!("{n}s"),
    }
}

/// Record fields whose change fires a `<noun>.<suffix>` event (when the SDL has that event).
pub const FIELD_EVENTS: &[(&str, &str)] = &[
    ("status", "status-changed"),
    ("team", "team-changed"),
    ("manager", "manager-changed"),
    ("member", "member-changed"),
    ("majorIncidentStatus", "major-incident-status-changed"),
    ("agileBoardColumn", "agile-board-column-changed"),
];

/// The kind of a record change, independent of the state module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A record was created.
    Created,
    /// A record was updated.
    Updated,
    /// A record was deleted.
    Deleted,
}

/// The events fired by one change of a record of `typename`, each with the record field that
/// caused it (`None` for create/update/delete). Only events valid in the SDL are returned.
pub fn change_events(
    typename: &str,
    kind: Kind,
    before: Option<&serde_json::Map<String, Value>>,
    after: Option<&serde_json::Map<String, Value>>,
) -> Vec<(&'static str, Option<&'static str>)> {
    let Some(noun) = noun_for_type(typename) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |name: String, field: Option<&'static str>| {
        if let Some(e) = normalize_event(&name) {
            out.push((e, field));
        }
    };
    match kind {
        Kind::Created => push(format!("{noun}.create"), None),
        Kind::Deleted => push(format!("{noun}.delete"), None),
        Kind::Updated => {
            push(format!("{noun}.update"), None);
            if let (Some(b), Some(a)) = (before, after) {
                for (field, suffix) in FIELD_EVENTS {
                    let old = b.get(*field).unwrap_or(&Value::Null);
                    let new = a.get(*field).unwrap_or(&Value::Null);
                    if old != new {
                        push(format!("{noun}.{suffix}"), Some(field));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn event_list_and_names() {
        assert_eq!(WEBHOOK_EVENTS.len(), 83);
        assert!(is_valid_event("request.team-changed"));
        assert!(is_valid_event("automation_rule"));
        assert!(!is_valid_event("request.deleted"));
        assert_eq!(
            normalize_event("app_instance_secrets_update"),
            Some("app_instance.secrets-update")
        );
        assert_eq!(normalize_event("webhook.verify"), Some("webhook.verify"));
        assert_eq!(normalize_event("nope"), None);
        assert_eq!(
            graphql_event_name("request.agile-board-column-changed"),
            "request_agile_board_column_changed"
        );
    }

    #[test]
    fn nouns_and_collections() {
        assert_eq!(noun_for_type("ConfigurationItem"), Some("ci"));
        assert_eq!(noun_for_type("Note"), None);
        assert_eq!(rest_collection("Request"), "requests");
        assert_eq!(rest_collection("ConfigurationItem"), "cis");
        assert_eq!(rest_collection("KnowledgeArticle"), "knowledge_articles");
        assert_eq!(rest_collection("WebhookPolicy"), "webhook_policies");
    }

    #[test]
    fn change_to_events() {
        assert_eq!(
            change_events("Request", Kind::Created, None, None),
            vec![("request.create", None)]
        );
        // request has no delete event, time_entry does
        assert!(change_events("Request", Kind::Deleted, None, None).is_empty());
        assert_eq!(
            change_events("TimeEntry", Kind::Deleted, None, None),
            vec![("time_entry.delete", None)]
        );
        let b = obj(json!({"status": "assigned", "team": "T1", "subject": "a"}));
        let a = obj(json!({"status": "in_progress", "team": "T2", "subject": "b"}));
        let ev = change_events("Request", Kind::Updated, Some(&b), Some(&a));
        assert_eq!(
            ev,
            vec![
                ("request.update", None),
                ("request.status-changed", Some("status")),
                ("request.team-changed", Some("team"))
            ]
        );
        // project has no team-changed event
        let ev = change_events("Project", Kind::Updated, Some(&b), Some(&a));
        assert_eq!(
            ev,
            vec![
                ("project.update", None),
                ("project.status-changed", Some("status"))
            ]
        );
        assert!(change_events("Note", Kind::Created, None, None).is_empty());
    }
}
