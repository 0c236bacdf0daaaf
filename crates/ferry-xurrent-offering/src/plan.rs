//! The plan: what must change in an account so that it matches the files (pure). Only what
//! differs is planned and, when applied, sent: an unchanged part is never touched, a changed
//! attribute is the only attribute in its update.
//!
//! Matching follows spec §9.4: the UI extension is the one the offering refers to, else the one
//! carrying Ferry's source stamp ([`SOURCE`], `sourceID` = `app_offering:<reference>`); scopes
//! are reconciled by position (§9.4.5); automation rules by `generic` and case-insensitive
//! `name` (§9.4.7).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::markdown;
use crate::model::{
    is_empty, normalize, same, Ids, Offering, UiExtension, ATTRIBUTES, IMAGES_DIR, RULE_FIELDS,
    TEXTS, UI_CONTENT_FIELDS, UI_EXTENSION_FIELDS,
};
use crate::Error;

/// `source` stamped on UI extensions Ferry creates, to find them again.
pub const SOURCE: &str = "Ferry";

/// `sourceID` stamped on the UI extension of offering `reference`.
pub fn source_id(reference: &str) -> String {
    format!("app_offering:{reference}")
}

/// What the account holds now.
#[derive(Clone, Debug, Default)]
pub struct Current {
    /// The unpublished offering with the reference, and its ids.
    pub offering: Option<(Offering, Ids)>,
    /// When the offering refers to no UI extension (or does not exist): the UI extension with
    /// Ferry's source stamp, (id, its active version's id, fields of that version).
    pub ui_by_source: Option<(String, Option<String>, UiExtension)>,
    /// The id of the service instance named in the files, when it had to be looked up
    /// (creating the offering, or another service instance than the current one).
    pub service_instance_id: Option<String>,
}

/// Create, update or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Create.
    Create,
    /// Update.
    Update,
    /// Delete.
    Delete,
}

/// What a change applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The UI extension.
    UiExtension,
    /// The App Offering.
    AppOffering,
    /// An automation rule of the offering.
    AutomationRule,
}

/// One change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// Create, update or delete.
    pub op: Op,
    /// What.
    pub kind: Kind,
    /// The account's id (updates and deletes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its name.
    pub name: String,
    /// The fields set (create) or changed (update), in file terms: offering attributes,
    /// `description`, `features`, `serviceInstance`, `scopes`, `avatar`, `uiExtension`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// For rules: the rule's `generic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generic: Option<String>,
    /// For created and updated rules: the index in the files' rule list.
    #[serde(skip)]
    pub index: Option<usize>,
}

/// The changes, in the order they are applied: UI extension, offering, rules.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// The offering's reference.
    pub reference: String,
    /// The changes; empty when the account matches the files.
    pub changes: Vec<Change>,
}

impl Plan {
    /// The change of `kind`, if any (the first one).
    pub fn find(&self, kind: Kind) -> Option<&Change> {
        self.changes.iter().find(|c| c.kind == kind)
    }

    /// Readable lines: `+ create …`, `~ update …: fields`, `- delete …`.
    pub fn lines(&self) -> Vec<String> {
        self.changes
            .iter()
            .map(|c| {
                let (sign, verb) = match c.op {
                    Op::Create => ('+', "create"),
                    Op::Update => ('~', "update"),
                    Op::Delete => ('-', "delete"),
                };
                let what = match c.kind {
                    Kind::UiExtension => "UI extension",
                    Kind::AppOffering => "App Offering",
                    Kind::AutomationRule => "automation rule",
                };
                let generic = c
                    .generic
                    .as_deref()
                    .map(|g| format!(" ({g})"))
                    .unwrap_or_default();
                let fields = if c.fields.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.fields.join(", "))
                };
                format!("{sign} {verb} {what} '{}'{generic}{fields}", c.name)
            })
            .collect()
    }
}

fn s(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Whether a Markdown text or one of the images it links differs.
fn text_changed(key: &str, want: &Offering, have: &Offering) -> bool {
    if !same(want.fields.get(key), have.fields.get(key)) {
        return true;
    }
    linked_images(want, key)
        .iter()
        .any(|n| want.images.get(n) != have.images.get(n))
}

/// The file names of the images a text links (`images/<name>`) that the offering has.
pub fn linked_images(o: &Offering, key: &str) -> Vec<String> {
    let Some(text) = o.fields.get(key).and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for p in markdown::image_paths(text) {
        if let Some(n) = p.strip_prefix(&format!("{IMAGES_DIR}/")) {
            if o.images.contains_key(n) && !out.iter().any(|x| x == n) {
                out.push(n.to_string());
            }
        }
    }
    out
}

/// Compare the files (`want`) with the account (`have`).
pub fn plan(want: &Offering, have: &Current) -> Result<Plan, Error> {
    let reference = want.reference().to_string();
    if reference.is_empty() {
        return Err(Error::Plan(
            "offering.yaml: 'reference' is required (it identifies the offering in the account)"
                .into(),
        ));
    }
    let mut changes = Vec::new();
    let existing = have.offering.as_ref();
    // The UI extension.
    let mut link_ui = false;
    if let Some(ui) = &want.ui_extension {
        let name = s(ui.fields.get("name"));
        let target = match existing {
            Some((o, ids)) if ids.ui_extension.is_some() => o
                .ui_extension
                .clone()
                .map(|u| (ids.ui_extension.clone().unwrap_or_default(), u, false)),
            _ => have.ui_by_source.clone().map(|(id, _, u)| (id, u, true)),
        };
        match target {
            None => {
                link_ui = true;
                changes.push(Change {
                    op: Op::Create,
                    kind: Kind::UiExtension,
                    id: None,
                    name,
                    fields: set_fields(
                        &ui.fields,
                        UI_EXTENSION_FIELDS.iter().chain(UI_CONTENT_FIELDS),
                    ),
                    generic: None,
                    index: None,
                });
            }
            Some((id, cur, found_by_source)) => {
                // `category` cannot be changed once the extension exists.
                let fields: Vec<String> = UI_EXTENSION_FIELDS
                    .iter()
                    .filter(|f| **f != "category")
                    .chain(UI_CONTENT_FIELDS)
                    .filter(|f| !same(ui.fields.get(**f), cur.fields.get(**f)))
                    .map(|f| f.to_string())
                    .collect();
                if found_by_source
                    || fields
                        .iter()
                        .any(|f| UI_CONTENT_FIELDS.contains(&f.as_str()))
                {
                    link_ui = true;
                }
                if !fields.is_empty() {
                    changes.push(Change {
                        op: Op::Update,
                        kind: Kind::UiExtension,
                        id: Some(id),
                        name,
                        fields,
                        generic: None,
                        index: None,
                    });
                }
            }
        }
    }
    // The offering.
    let name = want.name().to_string();
    let need_si = |fields: &[String]| -> Result<(), Error> {
        if fields.iter().any(|f| f == "serviceInstance") && have.service_instance_id.is_none() {
            return Err(Error::Plan(format!(
                "Unable to find Service Instance with name '{}'.",
                s(want.fields.get("serviceInstance"))
            )));
        }
        Ok(())
    };
    match existing {
        None => {
            if name.is_empty() {
                return Err(Error::Plan(format!(
                    "offering.yaml: 'name' is required to create App Offering '{reference}'"
                )));
            }
            if is_empty(want.fields.get("serviceInstance").unwrap_or(&Value::Null)) {
                return Err(Error::Plan(format!(
                    "offering.yaml: 'serviceInstance' (a service instance name) is required to create App Offering '{reference}'"
                )));
            }
            let mut fields = set_fields(&want.fields, offering_keys(want).iter());
            if matches!(want.avatar, Some(Some(_))) {
                fields.push("avatar".into());
            }
            if link_ui {
                fields.push("uiExtension".into());
            }
            need_si(&fields)?;
            changes.push(Change {
                op: Op::Create,
                kind: Kind::AppOffering,
                id: None,
                name,
                fields,
                generic: None,
                index: None,
            });
        }
        Some((cur, ids)) => {
            let mut fields = Vec::new();
            for k in offering_keys(want) {
                let changed = if TEXTS.contains(&k.as_str()) {
                    text_changed(&k, want, cur)
                } else if k == "scopes" {
                    !scopes_equal(want.fields.get(&k), cur.fields.get(&k))
                } else {
                    !same(want.fields.get(&k), cur.fields.get(&k))
                };
                if changed {
                    fields.push(k);
                }
            }
            if let Some(avatar) = &want.avatar {
                let bytes = |a: &Option<crate::model::File>| a.as_ref().map(|f| f.bytes.clone());
                if bytes(avatar) != cur.avatar.as_ref().and_then(bytes) {
                    fields.push("avatar".into());
                }
            }
            if link_ui {
                fields.push("uiExtension".into());
            }
            need_si(&fields)?;
            if !fields.is_empty() {
                changes.push(Change {
                    op: Op::Update,
                    kind: Kind::AppOffering,
                    id: Some(ids.offering.clone()),
                    name: if name.is_empty() {
                        cur.name().to_string()
                    } else {
                        name
                    },
                    fields,
                    generic: None,
                    index: None,
                });
            }
        }
    }
    // Automation rules.
    if let Some(rules) = &want.automation_rules {
        let (cur_rules, cur_ids) = match existing {
            Some((o, ids)) => (
                o.automation_rules.clone().unwrap_or_default(),
                ids.rules.clone(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let slots = match_rules(&cur_rules, rules);
        for (i, slot) in slots.iter().enumerate() {
            let cur = &cur_rules[i];
            let id = cur_ids.get(i).cloned();
            let generic = Some(s(cur.get("generic")));
            match slot {
                Some(j) => {
                    let want_rule = &rules[*j];
                    let fields: Vec<String> = RULE_FIELDS
                        .iter()
                        .filter(|f| !same(want_rule.get(**f), cur.get(**f)))
                        .map(|f| f.to_string())
                        .collect();
                    if !fields.is_empty() {
                        changes.push(Change {
                            op: Op::Update,
                            kind: Kind::AutomationRule,
                            id,
                            name: s(want_rule.get("name")),
                            fields,
                            generic,
                            index: Some(*j),
                        });
                    }
                }
                None => changes.push(Change {
                    op: Op::Delete,
                    kind: Kind::AutomationRule,
                    id,
                    name: s(cur.get("name")),
                    fields: Vec::new(),
                    generic,
                    index: None,
                }),
            }
        }
        for (j, r) in rules.iter().enumerate() {
            if slots.contains(&Some(j)) {
                continue;
            }
            changes.push(Change {
                op: Op::Create,
                kind: Kind::AutomationRule,
                id: None,
                name: s(r.get("name")),
                fields: set_fields(r, RULE_FIELDS.iter()),
                generic: Some(s(r.get("generic"))),
                index: Some(j),
            });
        }
    }
    Ok(Plan { reference, changes })
}

/// The offering keys the files manage, in file order.
fn offering_keys(o: &Offering) -> Vec<String> {
    ATTRIBUTES
        .iter()
        .chain(TEXTS)
        .chain(["serviceInstance", "scopes"].iter())
        .filter(|k| o.fields.contains_key(**k))
        .map(|k| k.to_string())
        .collect()
}

/// The keys of `fields` among `keys` that have a value.
fn set_fields<S: AsRef<str>>(
    fields: &Map<String, Value>,
    keys: impl IntoIterator<Item = S>,
) -> Vec<String> {
    keys.into_iter()
        .filter(|k| fields.get(k.as_ref()).is_some_and(|v| !is_empty(v)))
        .map(|k| k.as_ref().to_string())
        .collect()
}

fn scopes_equal(a: Option<&Value>, b: Option<&Value>) -> bool {
    let list = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().map(normalize).collect())
            .unwrap_or_default()
    };
    list(a) == list(b)
}

/// Spec §9.4.7: for each existing rule (in order) the index of the file rule that updates it
/// (`None`: delete it). File rules not in the result are created. Rules are matched within
/// their `generic` by case-insensitive name; a later file rule with the same name replaces an
/// earlier one in the slot (the earlier one is then created).
pub fn match_rules(
    existing: &[Map<String, Value>],
    want: &[Map<String, Value>],
) -> Vec<Option<usize>> {
    let key = |r: &Map<String, Value>| (s(r.get("generic")), s(r.get("name")).to_lowercase());
    let mut slots: Vec<Option<usize>> = vec![None; existing.len()];
    // The first existing rule with the same key, per key.
    let mut first: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, r) in existing.iter().enumerate() {
        first.entry(key(r)).or_insert(i);
    }
    for (j, r) in want.iter().enumerate() {
        if let Some(i) = first.get(&key(r)) {
            slots[*i] = Some(j);
        }
    }
    slots
}

/// Results of the steps before the offering, needed to build its input.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// The UI extension and its active version, when the offering must refer to them.
    pub ui_extension: Option<(String, String)>,
    /// Storage keys of the uploaded images, by file name.
    pub uploads: HashMap<String, String>,
    /// The service instance's id.
    pub service_instance_id: Option<String>,
}

/// The images an offering change uploads: those linked by a changed text.
pub fn images_to_upload(want: &Offering, change: &Change) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in TEXTS {
        if change.fields.iter().any(|f| f == t) {
            for n in linked_images(want, t) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// The content type of a file name (spec §9.4.1).
pub fn content_type(file_name: &str) -> String {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" => "image/jpeg".into(),
        "svg" => "image/svg+xml".into(),
        "" => "application/octet-stream".into(),
        other => format!("image/{other}"),
    }
}

/// The `AppOfferingCreateInput` / `AppOfferingUpdateInput` of an offering change: only the
/// change's fields, in Xurrent's terms.
pub fn offering_input(
    want: &Offering,
    have: Option<&Ids>,
    change: &Change,
    r: &Resolved,
) -> Result<Map<String, Value>, Error> {
    use base64::Engine as _;
    let mut input = Map::new();
    if let Some(id) = &change.id {
        input.insert("id".into(), json!(id));
    }
    for f in &change.fields {
        let value = want.fields.get(f).cloned().unwrap_or(Value::Null);
        match f.as_str() {
            t if TEXTS.contains(&t) => {
                let mut attachments: Vec<Value> = Vec::new();
                let text = value.as_str().map(|text| {
                    markdown::rewrite_paths(text, |p| {
                        let name = p.strip_prefix(&format!("{IMAGES_DIR}/"))?;
                        let key = r.uploads.get(name)?;
                        let inline = want.images.get(name).is_none_or(|i| i.inline);
                        if !attachments.iter().any(|a| a["key"] == json!(key)) {
                            attachments.push(json!({ "key": key, "inline": inline }));
                        }
                        Some(key.clone())
                    })
                });
                input.insert(t.into(), text.map(Value::String).unwrap_or(Value::Null));
                input.insert(format!("{t}Attachments"), Value::Array(attachments));
            }
            "serviceInstance" => {
                let id = r.service_instance_id.clone().ok_or_else(|| {
                    Error::Plan(format!(
                        "Unable to find Service Instance with name '{}'.",
                        s(Some(&value))
                    ))
                })?;
                input.insert("serviceInstanceId".into(), json!(id));
            }
            "scopes" => {
                let new: Vec<Value> = value
                    .as_array()
                    .map(|a| a.iter().map(normalize).collect())
                    .unwrap_or_default();
                let old = have.map(|i| i.scopes.clone()).unwrap_or_default();
                let (new, delete) = reconcile_scopes(new, &old);
                input.insert("newScopes".into(), Value::Array(new));
                if !delete.is_empty() {
                    input.insert("scopesToDelete".into(), json!(delete));
                }
            }
            "avatar" => {
                let uri = match &want.avatar {
                    Some(Some(file)) => Value::String(format!(
                        "data:{};base64,{}",
                        content_type(&file.name),
                        base64::engine::general_purpose::STANDARD.encode(&file.bytes)
                    )),
                    _ => Value::Null,
                };
                input.insert("pictureUri".into(), uri);
            }
            "uiExtension" => {
                if let Some((id, version)) = &r.ui_extension {
                    input.insert("uiExtensionId".into(), json!(id));
                    input.insert("uiExtensionVersionId".into(), json!(version));
                }
            }
            other => {
                input.insert(other.into(), value);
            }
        }
    }
    Ok(input)
}

/// Spec §9.4.5: scope `i` of the files takes the id of the account's scope `i`; the account's
/// scopes beyond the files' are deleted.
pub fn reconcile_scopes(mut new: Vec<Value>, old: &[String]) -> (Vec<Value>, Vec<String>) {
    for (i, scope) in new.iter_mut().enumerate() {
        if let (Some(id), Value::Object(o)) = (old.get(i), scope) {
            o.insert("id".into(), json!(id));
        }
    }
    let delete = old.iter().skip(new.len()).cloned().collect();
    (new, delete)
}

/// The `UiExtensionCreateInput` / `UiExtensionUpdateInput` of a UI extension change.
pub fn ui_input(want: &UiExtension, reference: &str, change: &Change) -> Map<String, Value> {
    let mut input = Map::new();
    match &change.id {
        None => {
            for (k, v) in &want.fields {
                if !is_empty(v) {
                    input.insert(k.clone(), v.clone());
                }
            }
            input.insert("activate".into(), json!(true));
            input.insert("source".into(), json!(SOURCE));
            input.insert("sourceID".into(), json!(source_id(reference)));
        }
        Some(id) => {
            input.insert("id".into(), json!(id));
            for f in &change.fields {
                input.insert(
                    f.clone(),
                    want.fields.get(f).cloned().unwrap_or(Value::Null),
                );
            }
            if change
                .fields
                .iter()
                .any(|f| UI_CONTENT_FIELDS.contains(&f.as_str()))
            {
                input.insert("activate".into(), json!(true));
            }
        }
    }
    input
}

/// The input of a rule change (`appOfferingId` for a create).
pub fn rule_input(want: &Offering, change: &Change, offering_id: &str) -> Map<String, Value> {
    let mut input = Map::new();
    let rule = change
        .index
        .and_then(|i| want.automation_rules.as_ref()?.get(i).cloned())
        .unwrap_or_default();
    match change.op {
        Op::Create => {
            for (k, v) in &rule {
                if !is_empty(v) {
                    input.insert(k.clone(), v.clone());
                }
            }
            input.insert("appOfferingId".into(), json!(offering_id));
        }
        Op::Update => {
            input.insert("id".into(), json!(change.id));
            for f in &change.fields {
                input.insert(f.clone(), rule.get(f).cloned().unwrap_or(Value::Null));
            }
        }
        Op::Delete => {
            input.insert("id".into(), json!(change.id));
        }
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{File, Image};

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn rule(name: &str, condition: &str) -> Map<String, Value> {
        obj(
            json!({ "name": name, "generic": "request", "trigger": "on status update", "description": null,
                    "condition": condition, "expressions": [ { "name": "x", "value": "status = completed" } ],
                    "actions": [ { "name": "a", "value": "add note 'done'" } ] }),
        )
    }

    fn offering() -> Offering {
        let mut o = Offering {
            fields: obj(json!({
                "name": "Yoda Translate", "reference": "yoda", "cardDescription": "Card",
                "description": "Hi ![s](images/shot.png)", "serviceInstance": "Houston",
                "scopes": [ { "actions": ["request:Read"], "effect": "allow", "grantType": "client_credentials" } ]
            })),
            ..Offering::default()
        };
        o.avatar = Some(Some(File {
            name: "yoda.jpg".into(),
            bytes: vec![1, 2],
        }));
        o.images.insert(
            "shot.png".into(),
            Image {
                bytes: vec![7],
                inline: true,
            },
        );
        o.ui_extension = Some(UiExtension {
            fields: obj(
                json!({ "category": "app_offering", "name": "ext", "title": "T", "html": "<p/>" }),
            ),
        });
        o.automation_rules = Some(vec![rule("Note on completion", "x")]);
        o
    }

    /// The account as it would be right after applying `o` (ids assigned).
    fn applied(o: &Offering) -> Current {
        let mut cur = o.clone();
        cur.fields
            .insert("webhookUriTemplate".into(), json!("https://prod/hook"));
        Current {
            offering: Some((
                cur,
                Ids {
                    offering: "O".into(),
                    scopes: vec!["S1".into()],
                    ui_extension: Some("U".into()),
                    ui_extension_version: Some("V".into()),
                    rules: vec!["R1".into()],
                },
            )),
            ui_by_source: None,
            service_instance_id: None,
        }
    }

    #[test]
    fn a_new_offering_is_created_with_its_ui_extension_and_rules() {
        let o = offering();
        let p = plan(
            &o,
            &Current {
                service_instance_id: Some("SI".into()),
                ..Current::default()
            },
        )
        .unwrap();
        assert_eq!(
            p.lines(),
            vec![
                "+ create UI extension 'ext': category, name, title, html",
                "+ create App Offering 'Yoda Translate': name, reference, cardDescription, description, serviceInstance, scopes, avatar, uiExtension",
                "+ create automation rule 'Note on completion' (request): name, generic, trigger, condition, expressions, actions",
            ]
        );
        let r = Resolved {
            ui_extension: Some(("U".into(), "V".into())),
            uploads: [("shot.png".to_string(), "attachments/k/shot.png".to_string())].into(),
            service_instance_id: Some("SI".into()),
        };
        let change = p.find(Kind::AppOffering).unwrap();
        assert_eq!(images_to_upload(&o, change), vec!["shot.png"]);
        let input = offering_input(&o, None, change, &r).unwrap();
        assert_eq!(input["description"], "Hi ![s](attachments/k/shot.png)");
        assert_eq!(
            input["descriptionAttachments"],
            json!([{ "key": "attachments/k/shot.png", "inline": true }])
        );
        assert_eq!(input["serviceInstanceId"], "SI");
        assert_eq!(input["pictureUri"], "data:image/jpeg;base64,AQI=");
        assert_eq!(input["uiExtensionId"], "U");
        assert_eq!(input["uiExtensionVersionId"], "V");
        assert_eq!(
            input["newScopes"],
            json!([{ "actions": ["request:Read"], "effect": "allow", "grantType": "client_credentials" }])
        );
        assert!(input.get("id").is_none() && input.get("scopesToDelete").is_none());
        let ui = ui_input(
            o.ui_extension.as_ref().unwrap(),
            "yoda",
            p.find(Kind::UiExtension).unwrap(),
        );
        assert_eq!(ui["sourceID"], "app_offering:yoda");
        assert_eq!(ui["activate"], true);
        let rule = rule_input(&o, p.find(Kind::AutomationRule).unwrap(), "O");
        assert_eq!(rule["appOfferingId"], "O");
        assert!(rule.get("description").is_none());
    }

    #[test]
    fn an_applied_offering_plans_nothing_and_one_change_plans_one_update() {
        let o = offering();
        assert_eq!(plan(&o, &applied(&o)).unwrap().changes, vec![]);
        // One text changed: one offering update with only that text.
        let mut changed = o.clone();
        changed
            .fields
            .insert("cardDescription".into(), json!("New card"));
        let p = plan(&changed, &applied(&o)).unwrap();
        assert_eq!(
            p.lines(),
            vec!["~ update App Offering 'Yoda Translate': cardDescription"]
        );
        let input = offering_input(&changed, None, &p.changes[0], &Resolved::default()).unwrap();
        assert_eq!(
            input,
            obj(json!({ "id": "O", "cardDescription": "New card" }))
        );
        // A changed image (same Markdown) is a description change.
        let mut changed = o.clone();
        changed.images.insert(
            "shot.png".into(),
            Image {
                bytes: vec![8],
                inline: true,
            },
        );
        assert_eq!(
            plan(&changed, &applied(&o)).unwrap().lines(),
            vec!["~ update App Offering 'Yoda Translate': description"]
        );
        // A changed rule condition: one rule update with only the condition.
        let mut changed = o.clone();
        changed.automation_rules = Some(vec![rule("NOTE ON COMPLETION", "y")]);
        let p = plan(&changed, &applied(&o)).unwrap();
        assert_eq!(
            p.lines(),
            vec!["~ update automation rule 'NOTE ON COMPLETION' (request): name, condition"]
        );
        assert_eq!(
            rule_input(&changed, &p.changes[0], "O"),
            obj(json!({ "id": "R1", "name": "NOTE ON COMPLETION", "condition": "y" }))
        );
        // New UI content: a new version the offering must refer to.
        let mut changed = o.clone();
        changed
            .ui_extension
            .as_mut()
            .unwrap()
            .fields
            .insert("html".into(), json!("<b/>"));
        let p = plan(&changed, &applied(&o)).unwrap();
        assert_eq!(
            p.lines(),
            vec![
                "~ update UI extension 'ext': html",
                "~ update App Offering 'Yoda Translate': uiExtension"
            ]
        );
        assert_eq!(
            ui_input(
                changed.ui_extension.as_ref().unwrap(),
                "yoda",
                &p.changes[0]
            ),
            obj(json!({ "id": "U", "html": "<b/>", "activate": true }))
        );
        // The avatar removed.
        let mut changed = o.clone();
        changed.avatar = Some(None);
        let p = plan(&changed, &applied(&o)).unwrap();
        assert_eq!(
            offering_input(&changed, None, &p.changes[0], &Resolved::default()).unwrap()
                ["pictureUri"],
            Value::Null
        );
        // Keys that are not in the files are not managed (webhookUriTemplate differs here).
        assert!(!p.changes[0]
            .fields
            .contains(&"webhookUriTemplate".to_string()));
    }

    #[test]
    fn scopes_are_reconciled_by_position() {
        let o = offering();
        let mut cur = applied(&o);
        if let Some((c, ids)) = cur.offering.as_mut() {
            c.fields.insert("scopes".into(), json!([
                { "actions": ["request:Read"], "effect": "allow", "grantType": "client_credentials" },
                { "actions": ["x"], "effect": "deny", "grantType": "client_credentials" } ]));
            ids.scopes = vec!["841".into(), "842".into()];
        }
        let p = plan(&o, &cur).unwrap();
        assert_eq!(
            p.lines(),
            vec!["~ update App Offering 'Yoda Translate': scopes"]
        );
        let ids = cur.offering.as_ref().map(|(_, i)| i);
        let input = offering_input(&o, ids, &p.changes[0], &Resolved::default()).unwrap();
        assert_eq!(input["newScopes"][0]["id"], "841");
        assert_eq!(input["scopesToDelete"], json!(["842"]));
    }

    #[test]
    fn rules_match_by_generic_and_name_and_extra_ones_are_deleted() {
        let existing = vec![rule("A", "x"), rule("Second rule", "x"), rule("a", "z")];
        let want = vec![rule("a", "x"), rule("New", "x")];
        // `a` matches the first `A`; the second lowercase `a` is deleted.
        assert_eq!(match_rules(&existing, &want), vec![Some(0), None, None]);
        let mut o = offering();
        o.automation_rules = Some(want);
        let mut cur = applied(&offering());
        if let Some((c, ids)) = cur.offering.as_mut() {
            c.automation_rules = Some(existing);
            ids.rules = vec!["R1".into(), "R2".into(), "R3".into()];
        }
        let p = plan(&o, &cur).unwrap();
        assert_eq!(p.lines(), vec![
            "~ update automation rule 'a' (request): name",
            "- delete automation rule 'Second rule' (request)",
            "- delete automation rule 'a' (request)",
            "+ create automation rule 'New' (request): name, generic, trigger, condition, expressions, actions",
        ]);
    }

    #[test]
    fn missing_service_instance_and_required_fields_fail_the_plan() {
        let o = offering();
        let e = plan(&o, &Current::default()).unwrap_err().to_string();
        assert_eq!(e, "Unable to find Service Instance with name 'Houston'.");
        let mut nameless = o.clone();
        nameless.fields.remove("name");
        let e = plan(&nameless, &Current::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("'name' is required"), "{e}");
        // Another service instance on an existing offering needs the lookup too.
        let mut moved = o.clone();
        moved
            .fields
            .insert("serviceInstance".into(), json!("Dallas"));
        let e = plan(&moved, &applied(&o)).unwrap_err().to_string();
        assert_eq!(e, "Unable to find Service Instance with name 'Dallas'.");
        // A UI extension found by its source stamp is updated and linked.
        let mut cur = Current {
            service_instance_id: Some("SI".into()),
            ..Current::default()
        };
        cur.ui_by_source = Some((
            "U9".into(),
            Some("V9".into()),
            o.ui_extension.clone().unwrap(),
        ));
        let p = plan(&o, &cur).unwrap();
        assert!(p.find(Kind::UiExtension).is_none());
        assert!(p
            .find(Kind::AppOffering)
            .unwrap()
            .fields
            .contains(&"uiExtension".to_string()));
        assert_eq!(content_type("a.PNG"), "image/png");
        assert_eq!(content_type("a.svg"), "image/svg+xml");
    }
}
