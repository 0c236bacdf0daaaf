//! The App Offering as Ferry keeps it: one value read from the files ([`crate::files`]) or
//! from an account ([`from_account`]), so that the plan is a plain comparison of two values.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::markdown;

/// Offering attributes that are copied as they are (GraphQL names, in file order).
pub const ATTRIBUTES: &[&str] = &[
    "name",
    "reference",
    "cardDescription",
    "compliance",
    "configurationUriTemplate",
    "webhookUriTemplate",
    "oauthAuthorizationEndpoints",
    "policyJwtAlg",
    "policyJwtAudience",
    "policyJwtClaimExpiresIn",
    "requiresEnabledOauthPerson",
    "openidConnectDiscovery",
];

/// Markdown attributes whose inline images are kept as files (`images/<file name>`).
pub const TEXTS: &[&str] = &["description", "features"];

/// Fields of a scope that are compared and sent (its `id` is the account's).
pub const SCOPE_FIELDS: &[&str] = &["actions", "conditions", "effect", "grantType"];

/// Fields of a UI extension that live on the extension itself.
pub const UI_EXTENSION_FIELDS: &[&str] = &["category", "name", "title", "description"];

/// Fields of a UI extension that live on its (active) version: changing one makes a new version.
pub const UI_CONTENT_FIELDS: &[&str] = &["html", "css", "javascript", "formDefinition"];

/// Fields of an automation rule, in file order.
pub const RULE_FIELDS: &[&str] = &[
    "name",
    "generic",
    "trigger",
    "description",
    "condition",
    "expressions",
    "actions",
];

/// The folder inline images are kept in, relative to the offering folder.
pub const IMAGES_DIR: &str = "images";

/// A binary file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// File name (no directory).
    pub name: String,
    /// Content.
    pub bytes: Vec<u8>,
}

/// An inline image of `description` or `features`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Content.
    pub bytes: Vec<u8>,
    /// Xurrent's `inline` flag of the attachment.
    pub inline: bool,
}

/// The UI extension of an offering: [`UI_EXTENSION_FIELDS`] and [`UI_CONTENT_FIELDS`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct UiExtension {
    /// Field values by GraphQL name (absent and `null` mean the same).
    pub fields: Map<String, Value>,
}

/// An App Offering.
///
/// `fields` holds the managed attributes by GraphQL name: [`ATTRIBUTES`], the Markdown
/// [`TEXTS`] (image links as `images/<file name>`), `serviceInstance` (the service instance's
/// name) and `scopes` (a list of [`SCOPE_FIELDS`] objects). A key that is absent is not managed:
/// the plan leaves it alone. `avatar`, `ui_extension` and `automation_rules` are `None` when
/// not managed.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Offering {
    /// Managed attributes.
    pub fields: Map<String, Value>,
    /// `Some(None)`: the offering has no avatar.
    pub avatar: Option<Option<File>>,
    /// Inline images by file name.
    pub images: BTreeMap<String, Image>,
    /// The UI extension.
    pub ui_extension: Option<UiExtension>,
    /// Automation rules in order (each a [`RULE_FIELDS`] object).
    pub automation_rules: Option<Vec<Map<String, Value>>>,
}

impl Offering {
    /// The offering's `reference` (empty when absent).
    pub fn reference(&self) -> &str {
        self.fields
            .get("reference")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The offering's `name` (empty when absent).
    pub fn name(&self) -> &str {
        self.fields
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// The ids an account gave the parts of an offering (what updates and deletes need).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ids {
    /// The offering.
    pub offering: String,
    /// Scope ids in the account's order.
    pub scopes: Vec<String>,
    /// The UI extension the offering refers to.
    pub ui_extension: Option<String>,
    /// The UI extension version the offering refers to.
    pub ui_extension_version: Option<String>,
    /// Automation rule ids in the account's order (same order as `automation_rules`).
    pub rules: Vec<String>,
}

/// A value with `null`s, empty strings, empty lists and empty objects removed from objects
/// (they all mean "nothing" to Xurrent), so that a file and an account compare equal.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !is_empty(v))
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// `null`, `""`, `[]` or `{}`.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Same content for Xurrent: [`normalize`]d values are equal, trailing whitespace of texts
/// aside (an editor's final newline is not a change).
pub fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn trim(v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(s.trim_end().to_string()),
            Value::Array(a) => Value::Array(a.into_iter().map(trim).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, trim(v))).collect()),
            other => other,
        }
    }
    trim(normalize(a.unwrap_or(&Value::Null))) == trim(normalize(b.unwrap_or(&Value::Null)))
}

/// The last path segment of a URL or key, without a query string.
pub fn last_segment(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    path.rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("file")
        .to_string()
}

/// A file name safe to write in the offering folder: path separators, control characters and
/// a leading dot replaced.
pub fn safe_file_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() || c == ':' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.starts_with('.') || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

/// The URLs [`from_account`] needs the content of: the avatar (`pictureUri`, unless it is a
/// `data:` URI) and every inline image attachment (`expiringUrl`).
pub fn downloads(node: &Value) -> Vec<String> {
    let mut urls = Vec::new();
    if let Some(p) = node.get("pictureUri").and_then(Value::as_str) {
        if !p.is_empty() && !p.starts_with("data:") {
            urls.push(p.to_string());
        }
    }
    for text in TEXTS {
        for a in attachments(node, text) {
            if let Some(u) = a.get("expiringUrl").and_then(Value::as_str) {
                urls.push(u.to_string());
            }
        }
    }
    urls
}

/// The attachments of a text that its Markdown links (others are leftovers of earlier
/// versions of the text and are not part of the offering).
fn attachments<'a>(node: &'a Value, text: &str) -> impl Iterator<Item = &'a Value> {
    let linked = node
        .get(text)
        .and_then(Value::as_str)
        .map(markdown::image_paths)
        .unwrap_or_default();
    node.get(format!("{text}Attachments"))
        .and_then(|a| a.get("nodes"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |a| {
            a.get("key")
                .and_then(Value::as_str)
                .is_some_and(|k| linked.iter().any(|l| l == k))
                && a.get("expiringUrl").and_then(Value::as_str).is_some()
        })
}

/// Decode a `data:<type>;base64,<data>` URI: (extension, bytes).
pub fn decode_data_uri(uri: &str) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let rest = uri.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    let ext = match media {
        "image/jpeg" => "jpg",
        "image/svg+xml" => "svg",
        other => other.strip_prefix("image/").unwrap_or("bin"),
    };
    let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .ok()?;
    Some((ext.to_string(), bytes))
}

/// The offering of an account (a node of the full selection, [`crate::graphql::OFFERING_FIELDS`])
/// as an [`Offering`] with its [`Ids`]. `files` holds the content of the [`downloads`] by URL;
/// an avatar or image that could not be downloaded is an error naming it.
pub fn from_account(
    node: &Value,
    files: &HashMap<String, Vec<u8>>,
) -> Result<(Offering, Ids), crate::Error> {
    let mut o = Offering::default();
    let mut ids = Ids {
        offering: text(node, "id"),
        ..Ids::default()
    };
    for a in ATTRIBUTES {
        o.fields
            .insert((*a).into(), node.get(*a).cloned().unwrap_or(Value::Null));
    }
    // Inline images: the attachments of description and features, named by their file name.
    let mut by_key: HashMap<String, String> = HashMap::new();
    for t in TEXTS {
        for a in attachments(node, t) {
            let key = text(a, "key");
            if by_key.contains_key(&key) {
                continue;
            }
            let url = text(a, "expiringUrl");
            let bytes = files.get(&url).cloned().ok_or_else(|| {
                crate::Error::Account(format!("the inline image '{key}' could not be downloaded"))
            })?;
            let base = a
                .get("filename")
                .and_then(Value::as_str)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| last_segment(&key));
            let name = unique_name(&safe_file_name(&base), |n| o.images.contains_key(n));
            o.images.insert(
                name.clone(),
                Image {
                    bytes,
                    inline: a.get("inline").and_then(Value::as_bool).unwrap_or(false),
                },
            );
            by_key.insert(key, name);
        }
    }
    for t in TEXTS {
        let value = match node.get(*t) {
            Some(Value::String(s)) => Value::String(markdown::rewrite_paths(s, |p| {
                by_key.get(p).map(|n| format!("{IMAGES_DIR}/{n}"))
            })),
            other => other.cloned().unwrap_or(Value::Null),
        };
        o.fields.insert((*t).into(), value);
    }
    o.fields.insert(
        "serviceInstance".into(),
        node.get("serviceInstance")
            .and_then(|s| s.get("name"))
            .cloned()
            .unwrap_or(Value::Null),
    );
    let mut scopes = Vec::new();
    for s in node
        .get("scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        ids.scopes.push(text(s, "id"));
        scopes.push(pick(s, SCOPE_FIELDS));
    }
    o.fields.insert("scopes".into(), Value::Array(scopes));
    o.avatar = Some(match node.get("pictureUri").and_then(Value::as_str) {
        None | Some("") => None,
        Some(uri) => Some(match decode_data_uri(uri) {
            Some((ext, bytes)) => File {
                name: format!("avatar.{ext}"),
                bytes,
            },
            None => File {
                name: safe_file_name(&last_segment(uri)),
                bytes: files.get(uri).cloned().ok_or_else(|| {
                    crate::Error::Account(format!("the avatar {uri} could not be downloaded"))
                })?,
            },
        }),
    });
    if let Some(v) = node.get("uiExtensionVersion").filter(|v| v.is_object()) {
        let ext = v.get("uiExtension").cloned().unwrap_or(Value::Null);
        ids.ui_extension = ext.get("id").and_then(Value::as_str).map(str::to_string);
        ids.ui_extension_version = v.get("id").and_then(Value::as_str).map(str::to_string);
        let mut fields = pick(&ext, UI_EXTENSION_FIELDS);
        if let Value::Object(content) = pick(v, UI_CONTENT_FIELDS) {
            fields.as_object_mut().into_iter().for_each(|f| {
                f.extend(content.clone());
            });
        }
        o.ui_extension = Some(UiExtension {
            fields: fields.as_object().cloned().unwrap_or_default(),
        });
    }
    let mut rules = Vec::new();
    for r in node
        .get("automationRules")
        .and_then(|r| r.get("nodes"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        ids.rules.push(text(r, "id"));
        rules.push(
            pick(r, RULE_FIELDS)
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
    }
    o.automation_rules = Some(rules);
    Ok((o, ids))
}

/// `name`, or `name-2`, `name-3`, … (before the extension) when `taken`.
fn unique_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_string();
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (2..)
        .map(|i| format!("{stem}-{i}{ext}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| name.to_string())
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The `keys` of an object, in that order (absent ones as `null`).
pub fn pick(v: &Value, keys: &[&str]) -> Value {
    Value::Object(
        keys.iter()
            .map(|k| ((*k).to_string(), v.get(*k).cloned().unwrap_or(Value::Null)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_account_node_becomes_an_offering_with_local_image_paths() {
        let node = json!({
            "id": "o1", "name": "Yoda", "reference": "yoda",
            "description": "See ![shot](attachments/k1/shot.png){:width=10}",
            "descriptionAttachments": { "nodes": [
                { "key": "attachments/k1/shot.png", "inline": true, "expiringUrl": "http://e/1", "filename": "shot.png" } ] },
            "features": "Also ![other](attachments/k2/shot.png)",
            "featuresAttachments": { "nodes": [
                { "key": "attachments/k2/shot.png", "inline": false, "expiringUrl": "http://e/2", "filename": "shot.png" } ] },
            "pictureUri": "http://e/avatars/yoda.jpg",
            "serviceInstance": { "name": "SI" },
            "scopes": [ { "id": "s1", "actions": ["request:Read"], "effect": "allow", "grantType": "client_credentials", "conditions": null } ],
            "uiExtensionVersion": { "id": "v1", "html": "<p/>", "css": null, "javascript": null, "formDefinition": null,
                "uiExtension": { "id": "u1", "category": "app_offering", "name": "ext", "title": "T", "description": null } },
            "automationRules": { "nodes": [ { "id": "r1", "name": "R", "generic": "request", "trigger": "on update",
                "condition": "c", "description": null, "expressions": [], "actions": [ { "name": "a", "value": "b" } ] } ] }
        });
        assert_eq!(
            downloads(&node),
            vec!["http://e/avatars/yoda.jpg", "http://e/1", "http://e/2"]
        );
        let files: HashMap<String, Vec<u8>> = [
            ("http://e/avatars/yoda.jpg".to_string(), b"AV".to_vec()),
            ("http://e/1".to_string(), b"one".to_vec()),
            ("http://e/2".to_string(), b"two".to_vec()),
        ]
        .into();
        let (o, ids) = from_account(&node, &files).unwrap();
        assert_eq!(
            o.fields["description"],
            "See ![shot](images/shot.png){:width=10}"
        );
        assert_eq!(o.fields["features"], "Also ![other](images/shot-2.png)");
        assert_eq!(
            o.images["shot.png"],
            Image {
                bytes: b"one".to_vec(),
                inline: true
            }
        );
        assert_eq!(
            o.images["shot-2.png"],
            Image {
                bytes: b"two".to_vec(),
                inline: false
            }
        );
        assert_eq!(
            o.avatar,
            Some(Some(File {
                name: "yoda.jpg".into(),
                bytes: b"AV".to_vec()
            }))
        );
        assert_eq!(o.fields["serviceInstance"], "SI");
        assert_eq!(ids.scopes, vec!["s1"]);
        assert_eq!(ids.ui_extension.as_deref(), Some("u1"));
        assert_eq!(ids.ui_extension_version.as_deref(), Some("v1"));
        assert_eq!(o.ui_extension.unwrap().fields["html"], "<p/>");
        assert_eq!(ids.rules, vec!["r1"]);
        assert_eq!(
            o.automation_rules.unwrap()[0]["actions"],
            json!([{ "name": "a", "value": "b" }])
        );
        // An avatar that could not be downloaded is an error naming it.
        let e = from_account(&node, &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("could not be downloaded"), "{e}");
    }

    #[test]
    fn empty_values_compare_equal() {
        assert!(same(Some(&json!(null)), None));
        assert!(same(
            Some(&json!({"a": null, "b": 1})),
            Some(&json!({"b": 1, "c": []}))
        ));
        assert!(!same(Some(&json!("x")), None));
        assert!(same(Some(&json!("# Title\n")), Some(&json!("# Title"))));
        assert!(!same(Some(&json!("a b")), Some(&json!("ab"))));
        assert_eq!(
            decode_data_uri("data:image/jpeg;base64,QUJD"),
            Some(("jpg".into(), b"ABC".to_vec()))
        );
    }
}
