//! Generic mutations: `xxxCreate`, `xxxUpdate`, `xxxDelete` (and id-based mutations such as
//! `requestUpdateVisibility`, applied as updates) built from the input type of the SDL.

use std::sync::Arc;

use async_graphql::dynamic::{FieldValue, ResolverContext};
use serde_json::{json, Value as Json};

use super::model::{base_name, is_list, FieldDef, Kind, Model};
use super::resolve::{node_by_id, value_to_json, Ctx};
use crate::{Emulator, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Delete,
}

/// Everything needed to run one mutation field.
#[derive(Debug)]
pub(crate) struct MutationPlan {
    name: String,
    op: Op,
    record_type: String,
    input_type: String,
    payload_type: String,
    /// Payload field that carries the record (e.g. `request`).
    record_field: Option<String>,
}

/// Fields that must not be blank on create (the input field must exist in the SDL too).
const REQUIRED_ON_CREATE: &[(&str, &str)] = &[
    ("Request", "subject"),
    ("Problem", "subject"),
    ("Task", "subject"),
    ("Person", "name"),
    ("Team", "name"),
    ("Organization", "name"),
    ("Site", "name"),
    ("Service", "name"),
    ("Note", "text"),
];

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

impl MutationPlan {
    pub(crate) fn new(model: &Model, field: &FieldDef) -> Option<Self> {
        let input_type = field
            .args
            .iter()
            .find(|a| a.name == "input")
            .map(|a| base_name(&a.ty).to_string())?;
        let payload_type = base_name(&field.ty).to_string();
        let record_type = model
            .types
            .values()
            .filter(|t| {
                model.is_record_type(&t.name) && field.name.starts_with(&lower_first(&t.name))
            })
            .max_by_key(|t| t.name.len())?
            .name
            .clone();
        let input = model.get(&input_type)?;
        let op = if field.name.ends_with("Create") {
            Op::Create
        } else if field.name.contains("Delete") {
            Op::Delete
        } else if input.inputs.contains_key("id") {
            Op::Update
        } else {
            return None;
        };
        let record_field = model.get(&payload_type).and_then(|p| {
            p.fields
                .values()
                .find(|f| {
                    f.name != "errors"
                        && matches!(
                            model.kind(base_name(&f.ty)),
                            Some(Kind::Object | Kind::Interface)
                        )
                })
                .map(|f| f.name.clone())
        });
        Some(MutationPlan {
            name: field.name.clone(),
            op,
            record_type,
            input_type,
            payload_type,
            record_field,
        })
    }

    /// Execute; `Err` becomes a top-level GraphQL error (`Not Found` for an unknown target).
    pub(crate) fn run(
        &self,
        ctx: &Ctx,
        rctx: &ResolverContext<'_>,
    ) -> Result<Option<FieldValue<'static>>, String> {
        let input = match rctx.args.get("input") {
            Some(v) => value_to_json(v.as_value()),
            None => Json::Null,
        };
        let Json::Object(input) = input else {
            return Err("Argument 'input' is required".into());
        };
        let emu = &ctx.emu;
        let model = &ctx.model;
        let mut payload = Record::new();
        payload.insert("__typename".into(), self.payload_type.clone().into());
        if let Some(c) = input.get("clientMutationId") {
            payload.insert("clientMutationId".into(), c.clone());
        }
        let target = match self.op {
            Op::Create => None,
            Op::Update | Op::Delete => {
                let id = input.get("id").and_then(Json::as_str).unwrap_or_default();
                // Unknown ids, ids of other accounts and ids of other types are all
                // "Not Found", the message clients use to detect a vanished record.
                match node_by_id(emu, &ctx.account, id) {
                    Some(r)
                        if r.get("__typename").and_then(Json::as_str)
                            == Some(self.record_type.as_str()) =>
                    {
                        Some(r)
                    }
                    _ => return Err("Not Found".into()),
                }
            }
        };
        if self.op == Op::Delete {
            if let Some(t) = &target {
                let id = t.get("id").and_then(Json::as_str).unwrap_or_default();
                emu.delete_record(id, ctx.person_id.clone());
            }
            payload.insert("errors".into(), Json::Null);
            return Ok(Some(FieldValue::owned_any(Arc::new(payload))));
        }
        let prep = prepare(
            model,
            emu,
            &ctx.account,
            &self.record_type,
            &self.input_type,
            &input,
            self.op == Op::Create,
        );
        let prep = match prep {
            Ok(p) => p,
            Err(errors) => {
                payload.insert(
                    "errors".into(),
                    Json::Array(
                        errors
                            .into_iter()
                            .map(|(path, message)| json!({ "path": path, "message": message }))
                            .collect(),
                    ),
                );
                tracing::debug!(mutation = %self.name, "mutation rejected with payload errors");
                return Ok(Some(FieldValue::owned_any(Arc::new(payload))));
            }
        };
        let record = match &target {
            None => {
                let mut fields = prep.fields.clone();
                if self.record_type == "Note" {
                    if let Some(owner) = fields.get("owner").cloned() {
                        fields.insert("_owner".into(), owner);
                    }
                    if let Some(p) = &ctx.person_id {
                        fields.entry("person").or_insert_with(|| p.clone().into());
                    }
                }
                // A new `WebhookPolicy` gets its generated name and key material.
                crate::policy::prepare_record(&self.record_type, &mut fields);
                emu.create_record(
                    &ctx.account,
                    &self.record_type,
                    fields,
                    ctx.person_id.clone(),
                )
            }
            Some(t) => {
                let id = t.get("id").and_then(Json::as_str).unwrap_or_default();
                let mut patch = prep.fields.clone();
                merge_inline_lists(t, &mut patch, &prep.deletes);
                if self.name.ends_with("Publish") {
                    patch.insert("published".into(), true.into());
                }
                emu.update_record(id, patch, ctx.person_id.clone())
                    .ok_or_else(|| "Not Found".to_string())?
            }
        };
        let rid = record
            .get("id")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        apply_nested(emu, ctx, &rid, &prep);
        if self.record_type == "UiExtension" {
            ui_extension_version(emu, ctx, &rid, &input, target.is_none());
        }
        // Re-read so nested changes made above are visible.
        let record = emu.records.get(&rid).unwrap_or(record);
        payload.insert("errors".into(), Json::Null);
        if let Some(f) = &self.record_field {
            payload.insert(f.clone(), Json::Object(record));
        }
        Ok(Some(FieldValue::owned_any(Arc::new(payload))))
    }
}

fn is_object_list(v: &Json) -> bool {
    v.as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(|x| x.get("id").is_some()))
}

/// Inline lists of objects with ids (`customFields`, `scopes`, ...) are merged by id on
/// update: given elements replace or extend the stored ones, and ids listed in an
/// `xxxToDelete` input are removed.
fn merge_inline_lists(current: &Record, patch: &mut Record, deletes: &[String]) {
    for (k, old) in current {
        if k.starts_with('_') || !is_object_list(old) {
            continue;
        }
        let Some(old) = old.as_array() else { continue };
        let mut out: Vec<Json> = old.to_vec();
        let mut touched = false;
        if let Some(Json::Array(new)) = patch.get(k) {
            if new.iter().all(Json::is_object) {
                for n in new {
                    let id = n.get("id");
                    match out.iter_mut().find(|o| id.is_some() && o.get("id") == id) {
                        Some(Json::Object(slot)) => {
                            if let Json::Object(n) = n {
                                for (fk, fv) in n {
                                    slot.insert(fk.clone(), fv.clone());
                                }
                            }
                        }
                        _ => out.push(n.clone()),
                    }
                }
                touched = true;
            }
        }
        let before = out.len();
        out.retain(|o| {
            o.get("id")
                .and_then(Json::as_str)
                .is_none_or(|id| !deletes.iter().any(|d| d == id))
        });
        if touched || out.len() != before {
            patch.insert(k.clone(), Json::Array(out));
        }
    }
}

/// A note to create from `note` / `internalNote` input fields.
#[derive(Debug, Clone)]
struct NoteSpec {
    text: String,
    internal: bool,
    attachments: Vec<Record>,
}

/// Nested records to create under the parent.
#[derive(Debug, Clone)]
struct NestedSpec {
    typename: String,
    field: String,
    prep: Prepared,
}

#[derive(Debug, Clone, Default)]
struct Prepared {
    fields: Record,
    notes: Vec<NoteSpec>,
    nested: Vec<NestedSpec>,
    /// (connection field, attachment records)
    attachments: Vec<(String, Vec<Record>)>,
    deletes: Vec<String>,
}

type Errors = Vec<(Vec<String>, String)>;

fn not_found(id: &str) -> String {
    format!("Not Found: no record with id '{id}'")
}

fn plural_candidates(base: &str) -> Vec<String> {
    let mut v = vec![format!("{base}s"), format!("{base}es"), base.to_string()];
    if let Some(stem) = base.strip_suffix('y') {
        v.push(format!("{stem}ies"));
    }
    v
}

fn attachment_records(emu: &Emulator, key: &str, value: &Json, errors: &mut Errors) -> Vec<Record> {
    let mut out = Vec::new();
    for (i, a) in value.as_array().into_iter().flatten().enumerate() {
        let k = a.get("key").and_then(Json::as_str).unwrap_or_default();
        match emu.attachments.get(k) {
            Some(file) => {
                let mut r = Record::new();
                r.insert("filename".into(), file.filename.clone().into());
                r.insert("key".into(), file.key.clone().into());
                r.insert("size".into(), (file.data.len() as u64).into());
                r.insert(
                    "inline".into(),
                    a.get("inline")
                        .and_then(Json::as_bool)
                        .unwrap_or(false)
                        .into(),
                );
                r.insert("contentType".into(), file.content_type.clone().into());
                r.insert(
                    "expiringUrl".into(),
                    super::attachments::download_url(emu, &file.key).into(),
                );
                out.push(r);
            }
            None => errors.push((
                vec![key.to_string(), i.to_string(), "key".into()],
                format!("Attachment not found: no uploaded file with key '{k}'"),
            )),
        }
    }
    out
}

fn prepare(
    model: &Model,
    emu: &Emulator,
    account: &str,
    record_type: &str,
    input_type: &str,
    input: &serde_json::Map<String, Json>,
    create: bool,
) -> Result<Prepared, Errors> {
    let mut p = Prepared::default();
    let mut errors: Errors = Vec::new();
    let rtype = model.get(record_type);
    let has_field = |f: &str| rtype.is_some_and(|t| t.fields.contains_key(f));
    let itype = model.get(input_type);
    if create {
        for (t, f) in REQUIRED_ON_CREATE {
            if *t == record_type && itype.is_some_and(|i| i.inputs.contains_key(*f)) {
                let blank = input
                    .get(*f)
                    .and_then(Json::as_str)
                    .is_none_or(|s| s.trim().is_empty());
                if blank {
                    errors.push((
                        vec![f.to_string()],
                        format!("{} can't be blank", capitalize(f)),
                    ));
                }
            }
        }
    }
    let mut note_attachments: Vec<(bool, Vec<Record>)> = Vec::new();
    for (key, value) in input {
        if key == "id" || key == "clientMutationId" {
            continue;
        }
        let def = itype.and_then(|i| i.inputs.get(key));
        let base = def.map(|d| base_name(&d.ty)).unwrap_or("String");
        let list = def.is_some_and(|d| is_list(&d.ty));
        if key.ends_with("ToDelete") {
            p.deletes.extend(
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string)),
            );
            continue;
        }
        if base == "AttachmentInput" {
            let recs = attachment_records(emu, key, value, &mut errors);
            match key.as_str() {
                "noteAttachments" => note_attachments.push((false, recs)),
                "internalNoteAttachments" => note_attachments.push((true, recs)),
                "attachments" if !has_field("attachments") && has_field("textAttachments") => {
                    p.attachments.push(("textAttachments".into(), recs))
                }
                other => p.attachments.push((other.to_string(), recs)),
            }
            continue;
        }
        if base == "ID" && key.ends_with("Id") && !list {
            let target = key[..key.len() - 2].to_string();
            match value {
                Json::Null => {
                    p.fields.insert(target, Json::Null);
                }
                Json::String(id) => {
                    if node_by_id(emu, account, id).is_none() {
                        errors.push((vec![key.clone()], not_found(id)));
                    }
                    p.fields.insert(target, value.clone());
                }
                _ => errors.push((vec![key.clone()], "must be an id".into())),
            }
            continue;
        }
        if base == "ID" && key.ends_with("Ids") && list {
            let stem = &key[..key.len() - 3];
            let target = plural_candidates(stem)
                .into_iter()
                .find(|c| has_field(c))
                .unwrap_or_else(|| key.clone());
            for id in value.as_array().into_iter().flatten() {
                let id = id.as_str().unwrap_or_default();
                if node_by_id(emu, account, id).is_none() {
                    errors.push((vec![key.clone()], not_found(id)));
                }
            }
            p.fields.insert(target, value.clone());
            continue;
        }
        if key == "pictureUri" {
            if let Some(uri) = value.as_str().filter(|u| u.starts_with("data:")) {
                match store_picture(emu, uri) {
                    Some(url) => {
                        p.fields.insert(key.clone(), url.into());
                    }
                    None => errors.push((
                        vec![key.clone()],
                        "Picture uri is not a valid data URI (data:<type>;base64,<data>)".into(),
                    )),
                }
                continue;
            }
        }
        if (key == "note" || key == "internalNote") && has_field("notes") {
            if let Some(text) = value.as_str().filter(|t| !t.trim().is_empty()) {
                p.notes.push(NoteSpec {
                    text: text.to_string(),
                    internal: key == "internalNote",
                    attachments: Vec::new(),
                });
            }
            continue;
        }
        if model.kind(base) == Some(Kind::Input) && !value.is_null() {
            let target = if has_field(key) {
                key.clone()
            } else {
                key.strip_prefix("new")
                    .map(lower_first)
                    .filter(|t| has_field(t))
                    .unwrap_or_else(|| key.clone())
            };
            let tfield = rtype.and_then(|t| t.fields.get(&target));
            let tbase = tfield.map(|f| base_name(&f.ty)).unwrap_or_default();
            if model.is_connection(tbase) {
                let item = model.connection_item(tbase).unwrap_or_default().to_string();
                if model.is_record_type(&item) {
                    for (i, el) in value.as_array().into_iter().flatten().enumerate() {
                        let Some(obj) = el.as_object() else { continue };
                        match prepare(model, emu, account, &item, base, obj, true) {
                            Ok(nested) => p.nested.push(NestedSpec {
                                typename: item.clone(),
                                field: target.clone(),
                                prep: nested,
                            }),
                            Err(errs) => errors.extend(errs.into_iter().map(|(mut path, m)| {
                                path.insert(0, i.to_string());
                                path.insert(0, key.clone());
                                (path, m)
                            })),
                        }
                    }
                    continue;
                }
            }
            let needs_ids = model
                .get(tbase)
                .is_some_and(|t| t.kind == Kind::Object && t.fields.contains_key("id"))
                && tbase != "CustomField";
            let mut value = value.clone();
            if needs_ids {
                for el in value.as_array_mut().into_iter().flatten() {
                    if let Json::Object(o) = el {
                        if o.get("id").is_none_or(Json::is_null) {
                            let seq = u64::from(rand::random::<u32>());
                            o.insert(
                                "id".into(),
                                crate::encode_node_id(account, tbase, seq).into(),
                            );
                        }
                    }
                }
            }
            p.fields.insert(target, value);
            continue;
        }
        p.fields.insert(key.clone(), value.clone());
    }
    for (internal, recs) in note_attachments {
        match p.notes.iter_mut().find(|n| n.internal == internal) {
            Some(n) => n.attachments.extend(recs),
            None => p.attachments.push((
                if internal {
                    "internalNoteAttachments"
                } else {
                    "noteAttachments"
                }
                .into(),
                recs,
            )),
        }
    }
    if errors.is_empty() {
        Ok(p)
    } else {
        Err(errors)
    }
}

/// A `pictureUri` given as `data:<type>;base64,<data>` is stored as a file and replaced by
/// its download URL, as Xurrent hosts uploaded pictures; `None` when it cannot be decoded.
fn store_picture(emu: &Emulator, uri: &str) -> Option<String> {
    use base64::Engine as _;
    let (meta, data) = uri.strip_prefix("data:")?.split_once(',')?;
    let content_type = meta.strip_suffix(";base64")?;
    let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .ok()?;
    let ext = match content_type {
        "image/jpeg" => "jpg",
        "image/svg+xml" => "svg",
        other => other
            .strip_prefix("image/")
            .filter(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric()))
            .unwrap_or("bin"),
    };
    let filename = format!("picture.{ext}");
    let key = format!("pictures/{}/{filename}", uuid::Uuid::new_v4().simple());
    emu.attachments.insert(super::attachments::StoredFile {
        key: key.clone(),
        filename,
        content_type: content_type.to_string(),
        data: bytes.into(),
    });
    Some(super::attachments::download_url(emu, &key))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn create_attachments(emu: &Emulator, ctx: &Ctx, owner: &str, field: &str, recs: &[Record]) {
    for r in recs {
        let mut r = r.clone();
        r.insert("_owner".into(), owner.into());
        r.insert("_field".into(), field.into());
        emu.create_record(&ctx.account, "Attachment", r, ctx.person_id.clone());
    }
}

fn apply_nested(emu: &Emulator, ctx: &Ctx, parent_id: &str, prep: &Prepared) {
    for id in &prep.deletes {
        if let Some(r) = node_by_id(emu, &ctx.account, id) {
            if r.get("_owner").and_then(Json::as_str) == Some(parent_id) {
                emu.delete_record(id, ctx.person_id.clone());
            }
        }
    }
    for (field, recs) in &prep.attachments {
        create_attachments(emu, ctx, parent_id, field, recs);
    }
    for n in &prep.notes {
        let mut note = Record::new();
        note.insert("text".into(), n.text.clone().into());
        note.insert("internal".into(), n.internal.into());
        note.insert("owner".into(), parent_id.into());
        note.insert("_owner".into(), parent_id.into());
        note.insert("_field".into(), "notes".into());
        if let Some(p) = &ctx.person_id {
            note.insert("person".into(), p.clone().into());
        }
        let note = emu.create_record(&ctx.account, "Note", note, ctx.person_id.clone());
        let nid = note.get("id").and_then(Json::as_str).unwrap_or_default();
        create_attachments(emu, ctx, nid, "textAttachments", &n.attachments);
    }
    for nested in &prep.nested {
        let mut fields = nested.prep.fields.clone();
        fields.insert("_owner".into(), parent_id.into());
        fields.insert("_field".into(), nested.field.clone().into());
        let rec = emu.create_record(
            &ctx.account,
            &nested.typename,
            fields,
            ctx.person_id.clone(),
        );
        let rid = rec
            .get("id")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        apply_nested(emu, ctx, &rid, &nested.prep);
    }
}

/// Content fields of a UI extension that live on its versions.
const UI_EXTENSION_CONTENT: &[&str] = &["css", "html", "javascript", "formDefinition"];

/// `uiExtensionCreate` / `uiExtensionUpdate`: content changes create a new
/// `UiExtensionVersion` (content not given is carried over from the active version). With
/// `activate: true` it becomes `active` (the previous active version is `archived`) and the
/// extension's `activeVersion`; otherwise it is `being_prepared`.
fn ui_extension_version(
    emu: &Emulator,
    ctx: &Ctx,
    ext_id: &str,
    input: &serde_json::Map<String, Json>,
    created: bool,
) {
    let changed = UI_EXTENSION_CONTENT.iter().any(|k| input.contains_key(*k));
    let activate = input
        .get("activate")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    if !changed && !created && !activate {
        return;
    }
    let Some(ext) = emu.records.get(ext_id) else {
        return;
    };
    let previous = ext
        .get("activeVersion")
        .and_then(Json::as_str)
        .and_then(|id| emu.records.get(id));
    let versions = emu
        .records
        .list_arc(&ctx.account, "UiExtensionVersion")
        .into_iter()
        .filter(|v| v.get("uiExtension").and_then(Json::as_str) == Some(ext_id))
        .count();
    let now = crate::now_timestamp();
    let mut v = Record::new();
    for k in UI_EXTENSION_CONTENT {
        let value = input
            .get(*k)
            .or_else(|| previous.as_ref().and_then(|p| p.get(*k)))
            .cloned()
            .unwrap_or(Json::Null);
        v.insert((*k).into(), value);
    }
    v.insert("uiExtension".into(), ext_id.into());
    v.insert("versionNr".into(), (versions as u64 + 1).into());
    v.insert(
        "status".into(),
        if activate { "active" } else { "being_prepared" }.into(),
    );
    if activate {
        v.insert("activatedAt".into(), now.clone().into());
    }
    let version = emu.create_record(&ctx.account, "UiExtensionVersion", v, ctx.person_id.clone());
    if !activate {
        return;
    }
    if let Some(p) = previous {
        if let Some(pid) = p.get("id").and_then(Json::as_str) {
            let mut patch = Record::new();
            patch.insert("status".into(), "archived".into());
            patch.insert("archivedAt".into(), now.into());
            emu.update_record(pid, patch, ctx.person_id.clone());
        }
    }
    let mut patch = Record::new();
    patch.insert(
        "activeVersion".into(),
        version.get("id").cloned().unwrap_or(Json::Null),
    );
    emu.update_record(ext_id, patch, ctx.person_id.clone());
}
