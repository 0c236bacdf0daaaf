//! The account side: read the offering (and download its avatar and inline images), export it
//! to files, and apply a [`Plan`]. Every GraphQL call goes through the connection's
//! [`XurrentClient`] (authentication, rate limits, error classification); uploads through
//! [`ferry_xurrent::upload_action::upload_file`]; downloads carry no credentials (spec §9.4.2).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use ferry_engine::action::{ConnectionRef, Services, Signal};
use ferry_xurrent::{XurrentClient, XurrentError};
use serde::Serialize;
use serde_json::{json, Value};

use crate::graphql;
use crate::model::{self, Ids, Offering, UiExtension, UI_CONTENT_FIELDS, UI_EXTENSION_FIELDS};
use crate::plan::{self, Change, Current, Kind, Op, Plan, Resolved};
use crate::Error;

/// The longest an export or apply waits in total for a throttled (429) or unavailable
/// (502/503/504) Xurrent before it gives up with that answer.
pub const MAX_WAIT: Duration = Duration::from_secs(120);

/// One provider account, reached over an outbound `xurrent` connection.
pub struct Account<'a> {
    services: &'a Services,
    connection: &'a ConnectionRef,
    client: XurrentClient<'a>,
}

/// What an export wrote.
#[derive(Debug, Serialize)]
pub struct Exported {
    /// The offering's reference.
    pub reference: String,
    /// The offering's name.
    pub name: String,
    /// The folder.
    pub dir: String,
    /// The files written, relative to the folder.
    pub files: Vec<String>,
}

/// What an apply did.
#[derive(Debug, Serialize)]
pub struct Applied {
    /// The offering's id in the account (after the apply).
    pub offering_id: Option<String>,
    /// The changes made, in order.
    pub changes: Vec<Change>,
}

impl<'a> Account<'a> {
    /// The account of `connection` (an outbound `xurrent` connection).
    pub fn new(
        services: &'a Services,
        connection: &'a ConnectionRef,
    ) -> Result<Account<'a>, Error> {
        let client = XurrentClient::new(services, connection)
            .map_err(|e| Error::Account(format!("connection '{}': {e}", connection.name)))?;
        Ok(Account {
            services,
            connection,
            client,
        })
    }

    /// The account id of the connection.
    pub fn account_id(&self) -> &str {
        &self.client.config().account_id
    }

    async fn query(&self, context: &str, query: &str, variables: Value) -> Result<Value, Error> {
        let mut waited = Duration::ZERO;
        loop {
            match self.client.graphql(query, Some(variables.clone())).await {
                Ok(r) => return Ok(r.data),
                // Throttled or unavailable (nothing was done): wait as told, then send it again.
                Err(XurrentError::Reschedule { after, message }) if waited + after <= MAX_WAIT => {
                    tracing::info!(%message, wait_s = after.as_secs(), "xurrent.offering: waiting before sending again");
                    tokio::time::sleep(after).await;
                    waited += after;
                }
                Err(e) => return Err(Error::Account(format!("{context}: {e}"))),
            }
        }
    }

    /// Run a mutation; payload `errors` fail with `Unable to <context>: <messages>`.
    async fn mutate(
        &self,
        field: &str,
        context: &str,
        query: &str,
        input: serde_json::Map<String, Value>,
    ) -> Result<Value, Error> {
        tracing::debug!(mutation = field, "xurrent.offering: mutation");
        let data = self
            .query(
                &format!("Unable to {context}"),
                query,
                json!({ "input": input }),
            )
            .await?;
        let payload = data.get(field).cloned().unwrap_or(Value::Null);
        if let Some(errors) = payload
            .get("errors")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
        {
            let messages: Vec<String> = errors
                .iter()
                .map(|e| {
                    let msg = e.get("message").and_then(Value::as_str).unwrap_or("error");
                    match e.get("path").and_then(Value::as_array) {
                        Some(p) if !p.is_empty() => format!(
                            "{} ({msg})",
                            p.iter()
                                .map(|x| x
                                    .as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| x.to_string()))
                                .collect::<Vec<_>>()
                                .join(".")
                        ),
                        _ => msg.to_string(),
                    }
                })
                .collect();
            return Err(Error::Account(format!(
                "Unable to {context}: {}",
                messages.join("; ")
            )));
        }
        Ok(payload)
    }

    /// Upload an inline image; the storage key. A busy storage is waited for as in [`Self::query`].
    async fn upload(&self, name: &str, bytes: Vec<u8>) -> Result<String, Error> {
        let mut waited = Duration::ZERO;
        loop {
            let r = ferry_xurrent::upload_action::upload_file(
                self.services,
                self.connection,
                name,
                &plan::content_type(name),
                bytes.clone(),
            )
            .await;
            match r {
                Ok((key, _)) => return Ok(key),
                Err(Signal::Reschedule { after, message }) if waited + after <= MAX_WAIT => {
                    tracing::info!(%message, wait_s = after.as_secs(), "xurrent.offering: waiting before uploading again");
                    tokio::time::sleep(after).await;
                    waited += after;
                }
                Err(e) => {
                    return Err(Error::Account(format!(
                        "Unable to upload image '{name}': {e}"
                    )))
                }
            }
        }
    }

    /// GET a file without credentials (spec §9.4.2).
    async fn download(&self, url: &str, what: &str) -> Result<Vec<u8>, Error> {
        let request = self
            .services
            .http
            .inner()
            .get(url)
            .header("user-agent", "Ferry")
            .build()
            .map_err(|_| Error::Account(format!("URI {url} of the {what} is invalid.")))?;
        let response = self
            .services
            .http
            .execute(request)
            .await
            .map_err(|e| Error::Account(format!("Unable to download the {what}: {e}")))?;
        let body = String::from_utf8_lossy(&response.body);
        let quoted = ferry_xurrent::client::truncate(body.trim(), 300);
        match response.status {
            200 => Ok(response.body.to_vec()),
            429 => Err(Error::Account(format!("Rate limit hit. '{quoted}'"))),
            503 => Err(Error::Account(format!(
                "Avatar server not available. '{quoted}'"
            ))),
            status => Err(Error::Account(format!(
                "Unable to download the {what} ({url}): {status} '{quoted}'"
            ))),
        }
    }

    /// The unpublished offering with `reference` (spec Q1), with its files downloaded.
    pub async fn find(&self, reference: &str) -> Result<Option<(Offering, Ids)>, Error> {
        let context = format!("Unable to find App Offering with reference '{reference}'");
        let data = self
            .query(
                &context,
                &graphql::find_offering(),
                json!({ "reference": reference, "published": false }),
            )
            .await?;
        let Some(node) = data
            .pointer("/appOfferings/nodes/0")
            .filter(|n| n.is_object())
            .cloned()
        else {
            return Ok(None);
        };
        let mut files = HashMap::new();
        for url in model::downloads(&node) {
            let what = if node.get("pictureUri").and_then(Value::as_str) == Some(url.as_str()) {
                "avatar"
            } else {
                "inline image"
            };
            let bytes = self.download(&url, what).await?;
            files.insert(url, bytes);
        }
        model::from_account(&node, &files).map(Some)
    }

    /// Export the offering with `reference` into `dir`.
    pub async fn export(&self, reference: &str, dir: &Path) -> Result<Exported, Error> {
        let Some((offering, _)) = self.find(reference).await? else {
            return Err(Error::Account(format!(
                "Unable to find App Offering with reference '{reference}'."
            )));
        };
        let files = crate::files::write_dir(dir, &offering)?;
        Ok(Exported {
            reference: reference.to_string(),
            name: offering.name().to_string(),
            dir: dir.display().to_string(),
            files,
        })
    }

    /// What the account holds for the offering in the files (see [`Current`]).
    pub async fn current(&self, want: &Offering) -> Result<Current, Error> {
        let reference = want.reference();
        let offering = self.find(reference).await?;
        let mut current = Current::default();
        if want.ui_extension.is_some()
            && offering
                .as_ref()
                .is_none_or(|(_, ids)| ids.ui_extension.is_none())
        {
            let data = self
                .query(
                    "Unable to find UI Extension",
                    graphql::UI_EXTENSION_BY_SOURCE,
                    json!({ "source": plan::SOURCE, "sourceID": plan::source_id(reference) }),
                )
                .await?;
            if let Some(n) = data
                .pointer("/uiExtensions/nodes/0")
                .filter(|n| n.is_object())
            {
                let mut fields = model::pick(n, UI_EXTENSION_FIELDS);
                let version = n.get("activeVersion").cloned().unwrap_or(Value::Null);
                if let (Value::Object(f), Value::Object(c)) =
                    (&mut fields, model::pick(&version, UI_CONTENT_FIELDS))
                {
                    f.extend(c);
                }
                current.ui_by_source = Some((
                    n.get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    version
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    UiExtension {
                        fields: fields.as_object().cloned().unwrap_or_default(),
                    },
                ));
            }
        }
        let si = want
            .fields
            .get("serviceInstance")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        if let Some(name) = si {
            let unchanged = offering.as_ref().is_some_and(|(o, _)| {
                o.fields.get("serviceInstance").and_then(Value::as_str) == Some(name)
            });
            if !unchanged {
                let data = self
                    .query(
                        &format!("Unable to find Service Instance with name '{name}'"),
                        graphql::SERVICE_INSTANCE,
                        json!({ "name": name }),
                    )
                    .await?;
                current.service_instance_id = data
                    .pointer("/serviceInstances/nodes/0/id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
        }
        current.offering = offering;
        Ok(current)
    }

    /// Apply a plan made from `want` and `current`: the changes in order, each as one mutation.
    pub async fn apply(
        &self,
        want: &Offering,
        plan: &Plan,
        current: &Current,
    ) -> Result<Applied, Error> {
        let ids = current.offering.as_ref().map(|(_, ids)| ids);
        let mut resolved = Resolved {
            service_instance_id: current.service_instance_id.clone(),
            ..Resolved::default()
        };
        if let Some((id, Some(version), _)) = &current.ui_by_source {
            resolved.ui_extension = Some((id.clone(), version.clone()));
        }
        let mut offering_id = ids.map(|i| i.offering.clone());
        let mut done = Vec::new();
        for change in &plan.changes {
            match change.kind {
                Kind::UiExtension => {
                    let Some(ui) = &want.ui_extension else {
                        continue;
                    };
                    let input = plan::ui_input(ui, &plan.reference, change);
                    let name = &change.name;
                    let payload = match change.op {
                        Op::Create => {
                            self.mutate(
                                "uiExtensionCreate",
                                &format!("create UI Extension '{name}'"),
                                graphql::CREATE_UI_EXTENSION,
                                input,
                            )
                            .await?
                        }
                        _ => {
                            self.mutate(
                                "uiExtensionUpdate",
                                &format!("update UI Extension '{name}'"),
                                graphql::UPDATE_UI_EXTENSION,
                                input,
                            )
                            .await?
                        }
                    };
                    let ext = payload.get("uiExtension").cloned().unwrap_or(Value::Null);
                    let id = ext.get("id").and_then(Value::as_str);
                    let version = ext.pointer("/activeVersion/id").and_then(Value::as_str);
                    if let (Some(id), Some(version)) = (id, version) {
                        resolved.ui_extension = Some((id.to_string(), version.to_string()));
                    }
                }
                Kind::AppOffering => {
                    for name in plan::images_to_upload(want, change) {
                        let Some(image) = want.images.get(&name) else {
                            continue;
                        };
                        let key = self.upload(&name, image.bytes.clone()).await?;
                        resolved.uploads.insert(name, key);
                    }
                    let input = plan::offering_input(want, ids, change, &resolved)?;
                    let name = &change.name;
                    match change.op {
                        Op::Create => {
                            let payload = self
                                .mutate(
                                    "appOfferingCreate",
                                    &format!("create App Offering '{name}'"),
                                    graphql::CREATE_OFFERING,
                                    input,
                                )
                                .await?;
                            offering_id = payload
                                .pointer("/appOffering/id")
                                .and_then(Value::as_str)
                                .map(str::to_string);
                        }
                        _ => {
                            self.mutate(
                                "appOfferingUpdate",
                                &format!("update App Offering '{name}'"),
                                graphql::UPDATE_OFFERING,
                                input,
                            )
                            .await?;
                        }
                    }
                }
                Kind::AutomationRule => {
                    let oid = offering_id.clone().ok_or_else(|| {
                        Error::Account(
                            "Unable to change automation rules: the App Offering has no id".into(),
                        )
                    })?;
                    let input = plan::rule_input(want, change, &oid);
                    let name = &change.name;
                    match change.op {
                        Op::Create => {
                            self.mutate(
                                "appOfferingAutomationRuleCreate",
                                &format!("create Automation Rule '{name}'"),
                                graphql::CREATE_RULE,
                                input,
                            )
                            .await?
                        }
                        Op::Update => {
                            self.mutate(
                                "appOfferingAutomationRuleUpdate",
                                &format!("update Automation Rule '{name}'"),
                                graphql::UPDATE_RULE,
                                input,
                            )
                            .await?
                        }
                        Op::Delete => {
                            self.mutate(
                                "appOfferingAutomationRuleDelete",
                                &format!("delete Automation Rule '{name}'"),
                                graphql::DELETE_RULE,
                                input,
                            )
                            .await?
                        }
                    };
                }
            }
            tracing::info!(change = ?change.op, kind = ?change.kind, name = %change.name, "xurrent.offering: applied");
            done.push(change.clone());
        }
        Ok(Applied {
            offering_id,
            changes: done,
        })
    }
}

/// Read the files in `dir`, compare them with the account and, unless `dry_run`, apply the
/// difference. `reference` replaces the files' reference (e.g. another one in production).
pub async fn sync(
    services: &Services,
    connection: &ConnectionRef,
    dir: &Path,
    reference: Option<&str>,
    dry_run: bool,
) -> Result<(Plan, Option<Applied>), Error> {
    let mut want = crate::files::read_dir(dir)?;
    if let Some(r) = reference {
        want.fields.insert("reference".into(), json!(r));
    }
    let account = Account::new(services, connection)?;
    let current = account.current(&want).await?;
    let plan = plan::plan(&want, &current)?;
    if dry_run || plan.changes.is_empty() {
        return Ok((plan, None));
    }
    let applied = account.apply(&want, &plan, &current).await?;
    Ok((plan, Some(applied)))
}
