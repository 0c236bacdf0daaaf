//! The offering folder: readable, diff-friendly files kept in the solution (spec §9.1, laid
//! out for review in git rather than as the reference's three JSON blobs).
//!
//! ```text
//! app_offering/
//!   offering.yaml            attributes, serviceInstance (name), scopes, avatar file, image flags
//!   description.md           Markdown; inline images linked as images/<file>
//!   features.md
//!   avatar.jpg               the file named by `avatar:` in offering.yaml
//!   images/<file>            inline images of description.md and features.md
//!   ui_extension/
//!     ui_extension.yaml      category, name, title, description
//!     extension.html         content of the active version (each file optional)
//!     extension.css
//!     extension.js
//!     form.json              formDefinition
//!   automation_rules.yaml    the rules, in order
//! ```
//!
//! A key absent from `offering.yaml`, an absent `description.md`/`features.md`, an absent
//! `ui_extension/` folder or `automation_rules.yaml` means "not managed": apply leaves that
//! part of the account alone.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::model::{
    self, File, Image, Offering, UiExtension, ATTRIBUTES, IMAGES_DIR, RULE_FIELDS, SCOPE_FIELDS,
    TEXTS, UI_EXTENSION_FIELDS,
};
use crate::Error;

/// The attributes file.
pub const OFFERING_FILE: &str = "offering.yaml";
/// The UI extension folder.
pub const UI_DIR: &str = "ui_extension";
/// The UI extension's attributes file (inside [`UI_DIR`]).
pub const UI_FILE: &str = "ui_extension.yaml";
/// The automation rules file.
pub const RULES_FILE: &str = "automation_rules.yaml";
/// Content files of the UI extension: (file, field).
pub const UI_CONTENT_FILES: &[(&str, &str)] = &[
    ("extension.html", "html"),
    ("extension.css", "css"),
    ("extension.js", "javascript"),
    ("form.json", "formDefinition"),
];

/// Keys `offering.yaml` may have besides [`ATTRIBUTES`].
const EXTRA_KEYS: &[&str] = &["serviceInstance", "scopes", "avatar", "images"];

fn text_file(t: &str) -> String {
    format!("{t}.md")
}

/// Read an offering folder. Errors name the file (and line for YAML problems).
pub fn read_dir(dir: &Path) -> Result<Offering, Error> {
    let main = dir.join(OFFERING_FILE);
    if !main.is_file() {
        return Err(Error::Files(format!(
            "{}: not found (export the offering first: ferry xurrent app export)",
            main.display()
        )));
    }
    let doc = read_yaml(&main)?;
    let Value::Object(doc) = doc else {
        return Err(Error::Files(format!(
            "{}: must be a mapping of offering attributes",
            main.display()
        )));
    };
    let mut o = Offering::default();
    for (k, v) in &doc {
        if ATTRIBUTES.contains(&k.as_str()) {
            o.fields.insert(k.clone(), v.clone());
        } else if !EXTRA_KEYS.contains(&k.as_str()) {
            return Err(Error::Files(format!(
                "{}: unknown key '{k}' (allowed: {}, {})",
                main.display(),
                ATTRIBUTES.join(", "),
                EXTRA_KEYS.join(", ")
            )));
        }
    }
    let at = |k: &str| format!("{}: '{k}'", main.display());
    if let Some(v) = doc.get("serviceInstance") {
        if !(v.is_string() || v.is_null()) {
            return Err(Error::Files(format!(
                "{} must be the name of a service instance",
                at("serviceInstance")
            )));
        }
        o.fields.insert("serviceInstance".into(), v.clone());
    }
    if let Some(v) = doc.get("scopes") {
        let list = match v {
            Value::Null => Vec::new(),
            Value::Array(a) => a.clone(),
            _ => return Err(Error::Files(format!("{} must be a list", at("scopes")))),
        };
        let mut scopes = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let Value::Object(obj) = s else {
                return Err(Error::Files(format!(
                    "{}, item {}: must be a mapping",
                    at("scopes"),
                    i + 1
                )));
            };
            if let Some(k) = obj.keys().find(|k| !SCOPE_FIELDS.contains(&k.as_str())) {
                return Err(Error::Files(format!(
                    "{}, item {}: unknown key '{k}' (allowed: {})",
                    at("scopes"),
                    i + 1,
                    SCOPE_FIELDS.join(", ")
                )));
            }
            scopes.push(model::pick(s, SCOPE_FIELDS));
        }
        o.fields.insert("scopes".into(), Value::Array(scopes));
    }
    if let Some(v) = doc.get("avatar") {
        o.avatar = Some(match v {
            Value::Null => None,
            Value::String(name) => Some(File {
                name: model::last_segment(name),
                bytes: read_bytes(&dir.join(name))?,
            }),
            _ => {
                return Err(Error::Files(format!(
                    "{} must be the avatar's file name (or null for none)",
                    at("avatar")
                )))
            }
        });
    }
    let flags = match doc.get("images") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(Error::Files(format!(
                "{} must map image file names to {{inline: true|false}}",
                at("images")
            )))
        }
    };
    for t in TEXTS {
        let path = dir.join(text_file(t));
        if path.is_file() {
            let text = read_text(&path)?;
            for p in crate::markdown::image_paths(&text) {
                let Some(name) = p.strip_prefix(&format!("{IMAGES_DIR}/")) else {
                    continue;
                };
                if o.images.contains_key(name) {
                    continue;
                }
                let inline = flags
                    .get(name)
                    .and_then(|f| f.get("inline"))
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                o.images.insert(
                    name.to_string(),
                    Image {
                        bytes: read_bytes(&dir.join(IMAGES_DIR).join(name)).map_err(|e| {
                            Error::Files(format!("{e} (linked from {})", path.display()))
                        })?,
                        inline,
                    },
                );
            }
            o.fields.insert((*t).into(), Value::String(text));
        }
    }
    let ui = dir.join(UI_DIR);
    if ui.is_dir() {
        let file = ui.join(UI_FILE);
        let mut fields = Map::new();
        if file.is_file() {
            match read_yaml(&file)? {
                Value::Object(m) => {
                    for (k, v) in m {
                        if !UI_EXTENSION_FIELDS.contains(&k.as_str()) {
                            return Err(Error::Files(format!(
                                "{}: unknown key '{k}' (allowed: {})",
                                file.display(),
                                UI_EXTENSION_FIELDS.join(", ")
                            )));
                        }
                        fields.insert(k, v);
                    }
                }
                Value::Null => {}
                _ => {
                    return Err(Error::Files(format!(
                        "{}: must be a mapping",
                        file.display()
                    )))
                }
            }
        }
        for (name, field) in UI_CONTENT_FILES {
            let path = ui.join(name);
            let value = if !path.is_file() {
                Value::Null
            } else if *field == "formDefinition" {
                let text = read_text(&path)?;
                serde_json::from_str(&text).map_err(|e| {
                    Error::Files(format!("{}:{}: not JSON: {e}", path.display(), e.line()))
                })?
            } else {
                Value::String(read_text(&path)?)
            };
            fields.insert((*field).into(), value);
        }
        o.ui_extension = Some(UiExtension { fields });
    }
    let rules = dir.join(RULES_FILE);
    if rules.is_file() {
        let list = match read_yaml(&rules)? {
            Value::Null => Vec::new(),
            Value::Array(a) => a,
            _ => {
                return Err(Error::Files(format!(
                    "{}: must be a list of automation rules",
                    rules.display()
                )))
            }
        };
        let mut out = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let Value::Object(obj) = r else {
                return Err(Error::Files(format!(
                    "{}: rule {} must be a mapping",
                    rules.display(),
                    i + 1
                )));
            };
            if let Some(k) = obj.keys().find(|k| !RULE_FIELDS.contains(&k.as_str())) {
                return Err(Error::Files(format!(
                    "{}: rule {}: unknown key '{k}' (allowed: {})",
                    rules.display(),
                    i + 1,
                    RULE_FIELDS.join(", ")
                )));
            }
            if obj
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(Error::Files(format!(
                    "{}: rule {} has no name",
                    rules.display(),
                    i + 1
                )));
            }
            out.push(
                model::pick(r, RULE_FIELDS)
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        o.automation_rules = Some(out);
    }
    Ok(o)
}

/// Write an offering folder; files of earlier exports that no longer apply (an image that is
/// gone, a text that is now empty) are removed. Returns the written paths, relative to `dir`.
/// `webhookUriTemplate` is left out: it points at the environment's own trigger endpoint and
/// is set when the Automation Webhook trigger is provisioned (add it by hand to manage it).
pub fn write_dir(dir: &Path, o: &Offering) -> Result<Vec<String>, Error> {
    let mut written = Vec::new();
    let mut put = |rel: &str, bytes: &[u8]| -> Result<(), Error> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::Files(format!("creating {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, bytes)
            .map_err(|e| Error::Files(format!("writing {}: {e}", path.display())))?;
        written.push(rel.to_string());
        Ok(())
    };
    // Start from a clean slate for everything an export writes.
    for rel in [IMAGES_DIR, UI_DIR] {
        remove(&dir.join(rel))?;
    }
    for t in TEXTS {
        remove(&dir.join(text_file(t)))?;
    }
    remove(&dir.join(RULES_FILE))?;
    let mut doc = Map::new();
    for a in ATTRIBUTES {
        if *a == "webhookUriTemplate" {
            continue;
        }
        if let Some(v) = o.fields.get(*a) {
            doc.insert((*a).into(), v.clone());
        }
    }
    if let Some(v) = o.fields.get("serviceInstance") {
        doc.insert("serviceInstance".into(), v.clone());
    }
    if let Some(Value::Array(scopes)) = o.fields.get("scopes") {
        doc.insert(
            "scopes".into(),
            Value::Array(scopes.iter().map(model::normalize).collect()),
        );
    }
    match &o.avatar {
        None => {}
        Some(None) => {
            doc.insert("avatar".into(), Value::Null);
        }
        Some(Some(f)) => {
            let name = model::safe_file_name(&f.name);
            put(&name, &f.bytes)?;
            doc.insert("avatar".into(), Value::String(name));
        }
    }
    if !o.images.is_empty() {
        let flags: Map<String, Value> = o
            .images
            .iter()
            .map(|(n, i)| (n.clone(), serde_json::json!({ "inline": i.inline })))
            .collect();
        doc.insert("images".into(), Value::Object(flags));
        for (n, i) in &o.images {
            put(&format!("{IMAGES_DIR}/{n}"), &i.bytes)?;
        }
    }
    put(OFFERING_FILE, yaml(&Value::Object(doc))?.as_bytes())?;
    for t in TEXTS {
        if let Some(Value::String(s)) = o.fields.get(*t) {
            if !s.is_empty() {
                put(&text_file(t), s.as_bytes())?;
            }
        }
    }
    if let Some(ui) = &o.ui_extension {
        let attrs = model::normalize(&model::pick(
            &Value::Object(ui.fields.clone()),
            UI_EXTENSION_FIELDS,
        ));
        put(&format!("{UI_DIR}/{UI_FILE}"), yaml(&attrs)?.as_bytes())?;
        for (name, field) in UI_CONTENT_FILES {
            match ui.fields.get(*field) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if *field != "formDefinition" => {
                    if !s.is_empty() {
                        put(&format!("{UI_DIR}/{name}"), s.as_bytes())?;
                    }
                }
                Some(v) => {
                    let text =
                        serde_json::to_string_pretty(v).map_err(|e| Error::Files(e.to_string()))?;
                    put(&format!("{UI_DIR}/{name}"), format!("{text}\n").as_bytes())?;
                }
            }
        }
    }
    if let Some(rules) = &o.automation_rules {
        let list: Vec<Value> = rules
            .iter()
            .map(|r| model::normalize(&Value::Object(r.clone())))
            .collect();
        put(RULES_FILE, yaml(&Value::Array(list))?.as_bytes())?;
    }
    Ok(written)
}

fn remove(path: &Path) -> Result<(), Error> {
    let r = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else if path.exists() {
        std::fs::remove_file(path)
    } else {
        return Ok(());
    };
    r.map_err(|e| Error::Files(format!("removing {}: {e}", path.display())))
}

fn yaml(v: &Value) -> Result<String, Error> {
    serde_yaml::to_string(v).map_err(|e| Error::Files(format!("writing YAML: {e}")))
}

fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::Files(format!(
            "{}: cannot be read as UTF-8 text: {e}",
            path.display()
        ))
    })
}

fn read_bytes(path: &PathBuf) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Files(format!("{}: {e}", path.display())))
}

fn read_yaml(path: &Path) -> Result<Value, Error> {
    let text = read_text(path)?;
    serde_yaml::from_str(&text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(1);
        Error::Files(format!("{}:{line}: {e}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Offering {
        let mut o = Offering::default();
        for (k, v) in [
            ("name", json!("Yoda Translate")),
            ("reference", json!("yoda")),
            ("cardDescription", json!("Line one\nLine two")),
            ("webhookUriTemplate", json!("https://qa.example/hook")),
            ("policyJwtClaimExpiresIn", json!(3600)),
            ("description", json!("Hi ![x](images/x.png)\n")),
            ("serviceInstance", json!("Houston")),
            (
                "scopes",
                json!([{ "actions": ["request:Read"], "conditions": null, "effect": "allow", "grantType": "client_credentials" }]),
            ),
        ] {
            o.fields.insert(k.into(), v);
        }
        o.avatar = Some(Some(File {
            name: "yoda.jpg".into(),
            bytes: vec![1, 2, 3],
        }));
        o.images.insert(
            "x.png".into(),
            Image {
                bytes: vec![9],
                inline: false,
            },
        );
        o.ui_extension = Some(UiExtension {
            fields: json!({ "category": "app_offering", "name": "ext", "title": "T", "description": null,
                            "html": "<p/>", "css": null, "javascript": null, "formDefinition": { "fields": [] } })
                .as_object()
                .cloned()
                .unwrap(),
        });
        o.automation_rules = Some(vec![
            json!({ "name": "R", "generic": "request", "trigger": "t", "description": null,
            "condition": "c", "expressions": [ { "name": "e", "value": "v" } ], "actions": [] })
            .as_object()
            .cloned()
            .unwrap(),
        ]);
        o
    }

    #[test]
    fn a_written_folder_reads_back_the_same_offering() {
        let tmp = tempfile::tempdir().unwrap();
        let o = sample();
        let written = write_dir(tmp.path(), &o).unwrap();
        assert!(written.contains(&"images/x.png".to_string()), "{written:?}");
        assert!(written.contains(&"ui_extension/form.json".to_string()));
        let yaml = std::fs::read_to_string(tmp.path().join(OFFERING_FILE)).unwrap();
        assert!(
            yaml.contains("cardDescription: |-\n  Line one\n  Line two"),
            "{yaml}"
        );
        assert!(!yaml.contains("webhookUriTemplate"), "{yaml}");
        let back = read_dir(tmp.path()).unwrap();
        let mut want = o.clone();
        want.fields.remove("webhookUriTemplate");
        for k in ["name", "reference", "description", "serviceInstance"] {
            assert_eq!(back.fields[k], want.fields[k], "{k}");
        }
        assert!(model::same(
            back.fields.get("scopes"),
            want.fields.get("scopes")
        ));
        assert_eq!(back.avatar, want.avatar);
        assert_eq!(back.images, want.images);
        assert!(model::same(
            Some(&Value::Object(back.ui_extension.unwrap().fields)),
            Some(&Value::Object(want.ui_extension.unwrap().fields))
        ));
        assert_eq!(
            back.automation_rules.unwrap()[0]["expressions"],
            json!([{ "name": "e", "value": "v" }])
        );
        // A second export after the image was dropped removes the stale file.
        let mut o2 = o.clone();
        o2.images.clear();
        o2.fields.insert("description".into(), json!("No image"));
        write_dir(tmp.path(), &o2).unwrap();
        assert!(!tmp.path().join("images/x.png").exists());
    }

    #[test]
    fn problems_name_the_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let e = read_dir(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("offering.yaml: not found"), "{e}");
        std::fs::write(tmp.path().join(OFFERING_FILE), "name: x\nnmae: y\n").unwrap();
        let e = read_dir(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("unknown key 'nmae'"), "{e}");
        std::fs::write(tmp.path().join(OFFERING_FILE), "name: x\nscopes: [\n").unwrap();
        let e = read_dir(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("offering.yaml:"), "{e}");
        std::fs::write(tmp.path().join(OFFERING_FILE), "name: x\n").unwrap();
        std::fs::write(
            tmp.path().join("description.md"),
            "![a](images/missing.png)",
        )
        .unwrap();
        let e = read_dir(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("missing.png") && e.contains("linked from"),
            "{e}"
        );
    }
}
