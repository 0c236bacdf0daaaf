//! The `xurrent.upload_attachment` action (spec §7): upload a file to the account's
//! attachment storage, so that a later mutation can attach it by its storage key
//! (`noteAttachments: [{key: …}]`, `attachments: [{key: …}]`, …).
//!
//! - Input: `file_name` (required), the file as `file_content` (Ferry's `binary` type: the text
//!   is uploaded as its UTF-8 bytes) or `file_content_base64` (Ferry's `base64` type: decoded
//!   before the upload, for files that are not text) — exactly one of the two — and an optional
//!   `content_type` (derived from the file name's extension when blank, [`content_type_for`]).
//! - Run: the `attachmentStorage` GraphQL query over the outbound connection (through
//!   [`XurrentClient::graphql`]: authenticated, rate-limited, 429/502/503/504 reschedule); its
//!   answer is cached for 60 s in the connection's key/value store ([`STORAGE_CACHE_TTL`]).
//!   The storage's `sizeLimit` and `allowedExtensions` are enforced **before** anything is
//!   uploaded ([`StorageInfo::check_file`]; the reference connector fetches but ignores them).
//!   Then a `multipart/form-data` POST to the storage's `uploadUri` **without** Xurrent
//!   credentials (no `Authorization`, no `X-Xurrent-Account`): a `Content-Type` field, the
//!   provider parameters in the order the storage gave them (values as text), then the `file`
//!   part. 200/201/204 succeed; the storage key is the first `<Key>…</Key>` of the answer for
//!   provider `s3`, else the answer's JSON `key` ([`storage_key`]).
//! - Output (`upload_result`): `storage_key`, `file_name`, `content_type`, `size` (bytes),
//!   `provider`, and `ratelimit`/`request_id` of the `attachmentStorage` answer (null when the
//!   storage information came from the cache: no GraphQL request was made).

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use ferry_core::schema::{Field, FieldType, Schema as FieldSchema};
use ferry_engine::action::{
    Action, ActionContext, ActionKind, ActionSpec, ConnectionRef, Output, Services, Signal,
};
use ferry_engine::http::HttpError;
use serde_json::{json, Map, Value};
use sha2::Digest as _;

use crate::client::{truncate, XurrentClient};
use crate::connection::CONNECTOR;
use crate::transport::metadata_fields;

/// The action's registry name.
pub const ACTION: &str = "xurrent.upload_attachment";

/// The reference of the action's output schema.
pub const OUTPUT: &str = "upload_result";

/// The `attachmentStorage` query (spec §7 step 2).
pub const STORAGE_QUERY: &str =
    "query { attachmentStorage { uploadUri provider providerParameters sizeLimit allowedExtensions } }";

/// How long the storage information stays cached in the connection's store (spec: 60 s).
pub const STORAGE_CACHE_TTL: Duration = Duration::from_secs(60);

/// Largest file Ferry uploads whatever the storage allows (the file passes through the step
/// input, which the job records).
pub const MAX_FILE_BYTES: usize = 100 * 1024 * 1024;

/// Time allowed for the upload request.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(75);

/// Longest part of an upload answer quoted in a failure.
const MAX_QUOTED: usize = 500;

/// The content type for a file name (spec §7 step 1, extended with a few office and text
/// formats): the text after the last `.`, lower-cased; `application/octet-stream` otherwise.
pub fn content_type_for(file_name: &str) -> &'static str {
    match extension(file_name).as_deref() {
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("webp") => "image/webp",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("csv") => "text/csv",
        Some("txt" | "log") => "text/plain",
        Some("zip") => "application/zip",
        Some("html" | "htm") => "text/html",
        Some("eml") => "message/rfc822",
        Some("doc") => "application/msword",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xls") => "application/vnd.ms-excel",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("ppt") => "application/vnd.ms-powerpoint",
        Some("pptx") => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        _ => "application/octet-stream",
    }
}

/// The lower-cased text after the last `.` of a file name, when there is one.
pub fn extension(file_name: &str) -> Option<String> {
    let (_, ext) = file_name.rsplit_once('.')?;
    (!ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// `n` bytes for messages: `1.5 MiB (1572864 bytes)`.
fn human_size(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    let h = if f >= KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else if f >= KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        return format!("{n} bytes");
    };
    format!("{h} ({n} bytes)")
}

/// What `attachmentStorage` answered (the part the upload needs).
#[derive(Clone, Debug, PartialEq)]
pub struct StorageInfo {
    /// Where the file is POSTed.
    pub upload_uri: String,
    /// `s3`, `local`, …
    pub provider: String,
    /// Form fields, in the order the storage gave them, values as text.
    pub parameters: Vec<(String, String)>,
    /// Largest file the storage accepts, in bytes.
    pub size_limit: Option<u64>,
    /// File extensions the storage accepts (lower-cased); `None` or empty: any.
    pub allowed_extensions: Option<Vec<String>>,
}

impl StorageInfo {
    /// Read the `attachmentStorage` object of a GraphQL answer's `data` (spec §7 step 2).
    pub fn from_data(data: &Value) -> Result<StorageInfo, String> {
        let storage = data
            .get("attachmentStorage")
            .filter(|s| s.is_object())
            .ok_or("No attachment storage info returned")?;
        StorageInfo::from_storage(storage)
    }

    /// Read an `attachmentStorage` object (or its cached copy).
    pub fn from_storage(storage: &Value) -> Result<StorageInfo, String> {
        let upload_uri = storage
            .get("uploadUri")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or("No upload URI returned")?
            .to_string();
        let provider = storage
            .get("provider")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let parameters = match storage.get("providerParameters") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), as_text(v))).collect(),
            // Some servers send the JSON scalar as a string holding an object.
            Some(Value::String(s)) if s.trim().is_empty() => Vec::new(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), as_text(v))).collect(),
                _ => return Err(format!("providerParameters is not an object: {s}")),
            },
            Some(other) => return Err(format!("providerParameters is not an object: {other}")),
        };
        let size_limit = match storage.get("sizeLimit") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .ok_or_else(|| format!("sizeLimit is not a number of bytes: {v}"))?,
            ),
        };
        let allowed_extensions = match storage.get("allowedExtensions") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect(),
            ),
            Some(other) => return Err(format!("allowedExtensions is not a list: {other}")),
        };
        Ok(StorageInfo {
            upload_uri,
            provider,
            parameters,
            size_limit,
            allowed_extensions,
        })
    }

    /// The object [`StorageInfo::from_storage`] reads back (for the cache; parameter order kept).
    pub fn to_json(&self) -> Value {
        let params: Map<String, Value> = self
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "uploadUri": self.upload_uri,
            "provider": self.provider,
            "providerParameters": params,
            "sizeLimit": self.size_limit,
            "allowedExtensions": self.allowed_extensions,
        })
    }

    /// Refuse a file the storage would not take, before uploading it (beyond the reference,
    /// spec §10.11): more bytes than `sizeLimit`, or an extension not in `allowedExtensions`.
    pub fn check_file(&self, file_name: &str, size: usize) -> Result<(), String> {
        if let Some(limit) = self.size_limit {
            if size as u64 > limit {
                return Err(format!(
                    "File '{file_name}' is {}, larger than the attachment storage's size limit of {} (sizeLimit); nothing was uploaded",
                    human_size(size as u64),
                    human_size(limit)
                ));
            }
        }
        if let Some(allowed) = self.allowed_extensions.as_ref().filter(|a| !a.is_empty()) {
            let ext = extension(file_name);
            if !ext.as_ref().is_some_and(|e| allowed.contains(e)) {
                let what = match &ext {
                    Some(e) => format!("has the extension '{e}'"),
                    None => "has no extension".to_string(),
                };
                return Err(format!(
                    "File '{file_name}' {what}, which the attachment storage does not accept (allowedExtensions: {}); nothing was uploaded",
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The storage key in an upload answer (spec §7 step 5): for provider `s3` the text of the
/// first `<Key>…</Key>`, otherwise the `key` of the JSON body; blank is none.
pub fn storage_key(provider: &str, body: &[u8]) -> Option<String> {
    let key = if provider == "s3" {
        let text = String::from_utf8_lossy(body);
        let start = text.find("<Key>")? + "<Key>".len();
        let len = text[start..].find("</Key>")?;
        xml_unescape(&text[start..start + len])
    } else {
        let v: Value = serde_json::from_slice(body).ok()?;
        v.get("key")?.as_str()?.to_string()
    };
    let key = key.trim().to_string();
    (!key.is_empty()).then_some(key)
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The file's bytes from the step input: `file_content` (text, uploaded as UTF-8) or
/// `file_content_base64` (decoded); exactly one of them.
pub fn file_bytes(input: &Value) -> Result<Vec<u8>, String> {
    let text = input.get("file_content").filter(|v| !v.is_null());
    let b64 = input.get("file_content_base64").filter(|v| !v.is_null());
    match (text, b64) {
        (Some(_), Some(_)) => Err(
            "Input invalid: give the file as either `file_content` or `file_content_base64`, not both".into(),
        ),
        (Some(Value::String(s)), None) => Ok(s.as_bytes().to_vec()),
        (None, Some(Value::String(s))) => {
            let joined: String = s.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(joined.as_bytes())
                .map_err(|e| format!("Input invalid: `file_content_base64` is not Base64: {e}"))
        }
        (Some(_), None) => Err("Input invalid: `file_content` must be text".into()),
        (None, Some(_)) => Err("Input invalid: `file_content_base64` must be text".into()),
        (None, None) => Err(
            "Input invalid: the file is missing: give `file_content` (text) or `file_content_base64` (Base64)".into(),
        ),
    }
}

/// The upload URI must be `https`, or `http` when the connection's GraphQL endpoint is itself
/// plain `http` (the emulator, a test setup): never a weaker transport than the API's.
pub fn check_upload_uri(upload_uri: &str, graphql_endpoint: &str) -> Result<(), String> {
    let u = url::Url::parse(upload_uri).map_err(|e| {
        format!("The attachment storage's upload URI '{upload_uri}' is invalid: {e}")
    })?;
    let api_http = url::Url::parse(graphql_endpoint).is_ok_and(|g| g.scheme() == "http");
    match u.scheme() {
        "https" => Ok(()),
        "http" if api_http => Ok(()),
        other => Err(format!(
            "The attachment storage's upload URI '{upload_uri}' uses {other}; only https is accepted (http only when the GraphQL endpoint is http too)"
        )),
    }
}

fn input_fields() -> Vec<Field> {
    vec![
        Field::new("file_name", FieldType::String)
            .label("File name")
            .required()
            .hint("The file's name, e.g. report.pdf; its extension gives the content type when none is given"),
        Field::new("file_content", FieldType::Binary)
            .label("File content")
            .hint("The file as text (uploaded as UTF-8); or give `file_content_base64`"),
        Field::new("file_content_base64", FieldType::Base64)
            .label("File content (Base64)")
            .hint("The file's bytes in Base64, for files that are not text; or give `file_content`"),
        Field::new("content_type", FieldType::String)
            .label("Content type")
            .hint("e.g. application/pdf; derived from the file name when blank"),
    ]
}

fn output_fields() -> Vec<Field> {
    let mut out = vec![
        Field::new("storage_key", FieldType::String)
            .label("Storage key")
            .required()
            .hint("Pass it as the `key` of an attachment input, e.g. noteAttachments: [{key: …}]"),
        Field::new("file_name", FieldType::String).label("File name"),
        Field::new("content_type", FieldType::String).label("Content type"),
        Field::new("size", FieldType::Integer).label("File size"),
        Field::new("provider", FieldType::String).label("Storage provider"),
    ];
    out.extend(
        metadata_fields()
            .into_iter()
            .filter(|f| f.id == "ratelimit" || f.id == "request_id"),
    );
    out
}

/// The `xurrent.upload_attachment` action.
pub struct UploadAttachmentAction(ActionSpec);

impl UploadAttachmentAction {
    /// The action with its (static) schemas.
    pub fn new() -> UploadAttachmentAction {
        UploadAttachmentAction(ActionSpec {
            name: ACTION,
            description: "Upload a file to the Xurrent attachment storage; its storage key feeds a mutation's attachment input",
            input: input_fields(),
            outputs: vec![FieldSchema::new(OUTPUT, output_fields())],
            nested: false,
            kind: ActionKind::Normal,
            connection: Some(CONNECTOR),
        })
    }
}

impl Default for UploadAttachmentAction {
    fn default() -> Self {
        UploadAttachmentAction::new()
    }
}

/// The cache key of a connection's storage information: the GraphQL endpoint and account
/// (hashed), so a connection pointed at another account never reuses it.
fn cache_key(graphql: &str, account: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{graphql}\n{account}").as_bytes());
    format!("attachment_storage/{}", &hex::encode(digest)[..16])
}

/// Storage information and, when it was fetched now, the answer's metadata.
pub struct Storage {
    /// The storage information.
    pub info: StorageInfo,
    /// The `attachmentStorage` answer's metadata; `None` when it came from the cache.
    pub meta: Option<Value>,
}

async fn storage(
    services: &Services,
    connection: &ConnectionRef,
    client: &XurrentClient<'_>,
    key: &str,
    use_cache: bool,
) -> Result<Storage, Signal> {
    if use_cache {
        if let Some(cached) = services.kv_get(connection, key).await? {
            match StorageInfo::from_storage(&cached) {
                Ok(info) => return Ok(Storage { info, meta: None }),
                Err(e) => {
                    tracing::warn!(error = %e, "xurrent.upload_attachment: cached storage info unreadable; fetching it again")
                }
            }
        }
    }
    let response = client.graphql(STORAGE_QUERY, None).await?;
    let info = StorageInfo::from_data(&response.data).map_err(Signal::Fail)?;
    services
        .kv_put(connection, key, &info.to_json(), Some(STORAGE_CACHE_TTL))
        .await?;
    Ok(Storage {
        info,
        meta: Some(response.meta.to_json()),
    })
}

/// What one upload attempt ended with.
#[derive(Debug)]
enum Uploaded {
    Key(String),
    /// The storage refused the request (400/403): with cached storage information, fetch it
    /// again once (its policy may have expired).
    Refused(String),
}

async fn upload(
    services: &Services,
    info: &StorageInfo,
    file_name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Result<Uploaded, Signal> {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(file_name.to_string())
        .mime_str(content_type)
        .map_err(|_| {
            Signal::Fail(format!(
                "Input invalid: content type '{content_type}' is not a valid media type"
            ))
        })?;
    let mut form = reqwest::multipart::Form::new().text("Content-Type", content_type.to_string());
    for (k, v) in &info.parameters {
        form = form.text(k.clone(), v.clone());
    }
    form = form.part("file", part);
    // The storage is not Xurrent: no Authorization and no X-Xurrent-Account header.
    let request = services
        .http
        .inner()
        .post(&info.upload_uri)
        .multipart(form)
        .timeout(UPLOAD_TIMEOUT)
        .build()
        .map_err(|_| Signal::Fail(format!("URI {} is invalid.", info.upload_uri)))?;
    let response = match services.http.execute(request).await {
        Ok(r) => r,
        Err(HttpError::Timeout(url)) => {
            return Err(Signal::Fail(format!(
                "Upload failed ({}): the upload to {url} timed out after {} s",
                info.provider,
                UPLOAD_TIMEOUT.as_secs()
            )))
        }
        Err(e) => {
            return Err(Signal::Fail(format!(
                "Upload failed ({}): {e}",
                info.provider
            )))
        }
    };
    read_upload_answer(
        &info.provider,
        response.status,
        response.header("retry-after"),
        &response.body,
    )
}

/// What the storage's answer to the upload means (spec §7 steps 4–5): 200/201/204 → the
/// storage key ([`storage_key`], or `Could not extract storage key …`); 429/503 → reschedule
/// after `Retry-After` (60 s when absent); 400/403 → refused (`Upload failed (<provider>):
/// <status> <body>`, retried once by the caller with fresh storage information); any other
/// status fails with the same message.
fn read_upload_answer(
    provider: &str,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Result<Uploaded, Signal> {
    let text = String::from_utf8_lossy(body);
    let quoted = truncate(text.trim(), MAX_QUOTED);
    match status {
        200 | 201 | 204 => {}
        429 | 503 => {
            let after = ferry_engine::http::retry_after_seconds(retry_after, 60);
            return Err(Signal::Reschedule {
                after: Duration::from_secs(after),
                message: format!(
                    "Attachment storage busy ({provider}): {status} {quoted}; retrying in {after} s"
                ),
            });
        }
        status => {
            let message = format!("Upload failed ({provider}): {status} {quoted}");
            if matches!(status, 400 | 403) {
                return Ok(Uploaded::Refused(message));
            }
            return Err(Signal::Fail(message));
        }
    }
    storage_key(provider, body)
        .map(Uploaded::Key)
        .ok_or_else(|| {
            Signal::Fail(format!(
            "Could not extract storage key from upload response ({provider} {status}): '{quoted}'"
        ))
        })
}

/// Upload `bytes` as `file_name` to the attachment storage of `connection` (the action's run
/// without the step around it, also used by `ferry-xurrent-offering` for inline images): the
/// storage information (cached 60 s), the size and extension checks, the credential-free
/// multipart POST, one retry with fresh storage information when a cached policy is refused.
/// Returns the storage key and the storage information (with the answer's metadata when it
/// was fetched now).
pub async fn upload_file(
    services: &Services,
    connection: &ConnectionRef,
    file_name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Result<(String, Storage), Signal> {
    let client = XurrentClient::new(services, connection)?;
    let key = cache_key(
        &client.config().endpoints.graphql,
        &client.config().account_id,
    );
    let mut store = storage(services, connection, &client, &key, true).await?;
    let size = bytes.len();
    let storage_key = loop {
        check_upload_uri(&store.info.upload_uri, &client.config().endpoints.graphql)
            .map_err(Signal::Fail)?;
        store
            .info
            .check_file(file_name, size)
            .map_err(Signal::Fail)?;
        match upload(
            services,
            &store.info,
            file_name,
            content_type,
            bytes.clone(),
        )
        .await?
        {
            Uploaded::Key(k) => break k,
            Uploaded::Refused(message) if store.meta.is_none() => {
                // Cached information may be stale (an expired upload policy): fetch it once more.
                tracing::info!(%message, "xurrent.upload_attachment: upload refused with cached storage info; fetching it again");
                services.kv(connection).delete(&key).await?;
                store = storage(services, connection, &client, &key, false).await?;
            }
            Uploaded::Refused(message) => return Err(Signal::Fail(message)),
        }
    };
    Ok((storage_key, store))
}

#[async_trait]
impl Action for UploadAttachmentAction {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    fn check(&self, raw_input: &Value, _variables: &[Field]) -> Vec<String> {
        let has = |k: &str| raw_input.get(k).is_some_and(|v| !v.is_null());
        match (has("file_content"), has("file_content_base64")) {
            (true, true) => vec![
                "give the file as either `file_content` or `file_content_base64`, not both".into(),
            ],
            (false, false) => vec![
                "the file is missing: give `file_content` (text) or `file_content_base64` (Base64)"
                    .into(),
            ],
            _ => Vec::new(),
        }
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        let connection = ctx
            .connection
            .ok_or_else(|| Signal::Fail("An outbound xurrent connection is required.".into()))?;
        let file_name = ctx
            .input_str("file_name")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Signal::Fail("Input invalid: Field 'file_name' is required.".into()))?
            .to_string();
        // The content may be a sealed secret; only the upload sees the plain text.
        let revealed =
            ctx.services.secrets.reveal_value(&ctx.input).map_err(|e| {
                Signal::Fail(format!("Unable to decrypt a secret in the input: {e}"))
            })?;
        let bytes = file_bytes(&revealed).map_err(Signal::Fail)?;
        drop(revealed);
        if bytes.len() > MAX_FILE_BYTES {
            return Err(Signal::Fail(format!(
                "File '{file_name}' is {}, larger than Ferry uploads ({}); nothing was uploaded",
                human_size(bytes.len() as u64),
                human_size(MAX_FILE_BYTES as u64)
            )));
        }
        let content_type = ctx
            .input_str("content_type")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| content_type_for(&file_name).to_string());
        let services = ctx.services;
        let size = bytes.len();
        let (storage_key, store) =
            upload_file(services, connection, &file_name, &content_type, bytes).await?;
        let meta = store.meta.clone();
        let cached = meta.is_none();
        ctx.log(format!(
            "Uploaded '{file_name}' ({}, {content_type}) to the {} attachment storage{}: {storage_key}",
            human_size(size as u64),
            store.info.provider,
            if cached { " (storage info from the cache)" } else { "" }
        ));
        let meta = meta.unwrap_or(Value::Null);
        Ok(vec![Output::new(
            OUTPUT,
            json!({
                "storage_key": storage_key,
                "file_name": file_name,
                "content_type": content_type,
                "size": size,
                "provider": store.info.provider,
                "ratelimit": meta.get("ratelimit").cloned().unwrap_or(Value::Null),
                "request_id": meta.get("request_id").cloned().unwrap_or(Value::Null),
            }),
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_storage() -> Value {
        json!({"attachmentStorage": {
            "uploadUri": "https://s3.example.com/upload",
            "provider": "s3",
            "providerParameters": {"key": "uploads/${filename}", "success_action_status": 201},
            "sizeLimit": 10485760,
            "allowedExtensions": ["pdf", "png", "jpg"],
        }})
    }

    #[test]
    fn schemas_follow_the_spec() {
        let a = UploadAttachmentAction::new();
        let spec = a.spec();
        let file_name = spec.input.iter().find(|f| f.id == "file_name").unwrap();
        assert!(file_name.required);
        let content = spec.input.iter().find(|f| f.id == "file_content").unwrap();
        assert_eq!(content.ty, FieldType::Binary);
        let b64 = spec
            .input
            .iter()
            .find(|f| f.id == "file_content_base64")
            .unwrap();
        assert_eq!(b64.ty, FieldType::Base64);
        let out = &spec.outputs[0];
        assert_eq!(out.reference, OUTPUT);
        assert!(out.field("storage_key").unwrap().required);
        assert_eq!(out.field("size").unwrap().ty, FieldType::Integer);
        for id in ["ratelimit", "request_id", "file_name", "content_type"] {
            assert!(out.field(id).is_some(), "{id}");
        }
        assert!(out.field("costlimit").is_none());
    }

    #[test]
    fn content_type_comes_from_the_extension() {
        assert_eq!(content_type_for("photo.png"), "image/png");
        assert_eq!(content_type_for("Report.PDF"), "application/pdf");
        assert_eq!(content_type_for("a.b.JPEG"), "image/jpeg");
        assert_eq!(content_type_for("data.csv"), "text/csv");
        assert_eq!(content_type_for("notes.txt"), "text/plain");
        assert_eq!(
            content_type_for("archive.tar.gz"),
            "application/octet-stream"
        );
        assert_eq!(content_type_for("README"), "application/octet-stream");
        assert_eq!(content_type_for("trailing."), "application/octet-stream");
        assert_eq!(extension(".env").as_deref(), Some("env"));
    }

    #[test]
    fn storage_info_is_read_in_order_and_round_trips() {
        let info = StorageInfo::from_data(&s3_storage()).unwrap();
        assert_eq!(info.upload_uri, "https://s3.example.com/upload");
        assert_eq!(
            info.parameters,
            vec![
                ("key".to_string(), "uploads/${filename}".to_string()),
                ("success_action_status".to_string(), "201".to_string()),
            ]
        );
        assert_eq!(info.size_limit, Some(10_485_760));
        assert_eq!(StorageInfo::from_storage(&info.to_json()).unwrap(), info);
        // Errors of the reference (§9 N 178).
        assert_eq!(
            StorageInfo::from_data(&json!({"attachmentStorage": null})).unwrap_err(),
            "No attachment storage info returned"
        );
        let mut no_uri = s3_storage();
        no_uri["attachmentStorage"]["uploadUri"] = Value::Null;
        assert_eq!(
            StorageInfo::from_data(&no_uri).unwrap_err(),
            "No upload URI returned"
        );
        let mut no_params = s3_storage();
        no_params["attachmentStorage"]["providerParameters"] = Value::Null;
        assert!(StorageInfo::from_data(&no_params)
            .unwrap()
            .parameters
            .is_empty());
    }

    #[test]
    fn size_limit_and_extensions_are_enforced() {
        let info = StorageInfo::from_data(&s3_storage()).unwrap();
        assert!(info.check_file("report.pdf", 19).is_ok());
        assert!(info.check_file("Photo.PNG", 10_485_760).is_ok());
        let e = info.check_file("report.pdf", 10_485_761).unwrap_err();
        assert!(
            e.contains("size limit of 10.0 MiB (10485760 bytes) (sizeLimit)"),
            "{e}"
        );
        assert!(e.contains("nothing was uploaded"), "{e}");
        let e = info.check_file("tool.exe", 3).unwrap_err();
        assert_eq!(
            e,
            "File 'tool.exe' has the extension 'exe', which the attachment storage does not accept (allowedExtensions: pdf, png, jpg); nothing was uploaded"
        );
        let e = info.check_file("README", 3).unwrap_err();
        assert!(e.contains("has no extension"), "{e}");
        let open = StorageInfo {
            size_limit: None,
            allowed_extensions: Some(vec![]),
            ..info
        };
        assert!(open.check_file("tool.exe", usize::MAX / 2).is_ok());
    }

    #[test]
    fn storage_key_extraction() {
        assert_eq!(
            storage_key(
                "s3",
                b"<PostResponse><Key>uploads/report.pdf</Key><Key>x</Key></PostResponse>"
            )
            .as_deref(),
            Some("uploads/report.pdf")
        );
        assert_eq!(
            storage_key("s3", b"<Key>a &amp; b.pdf</Key>").as_deref(),
            Some("a & b.pdf")
        );
        assert_eq!(storage_key("s3", b"<Response>no key here</Response>"), None);
        assert_eq!(
            storage_key("local", br#"{"key":"local/report.pdf"}"#).as_deref(),
            Some("local/report.pdf")
        );
        assert_eq!(storage_key("local", b"<Key>x</Key>"), None);
        assert_eq!(storage_key("local", br#"{"key":"  "}"#), None);
        assert_eq!(storage_key("local", b""), None);
    }

    #[test]
    fn upload_answers_n173_n179_n180() {
        let key = |r: Result<Uploaded, Signal>| match r {
            Ok(Uploaded::Key(k)) => k,
            other => panic!("{other:?}"),
        };
        // N 173 / 174: the key from S3's XML or the local provider's JSON.
        assert_eq!(
            key(read_upload_answer(
                "s3",
                201,
                None,
                b"<Key>uploads/report.pdf</Key>"
            )),
            "uploads/report.pdf"
        );
        assert_eq!(
            key(read_upload_answer(
                "local",
                200,
                None,
                br#"{"key":"local/report.pdf"}"#
            )),
            "local/report.pdf"
        );
        // N 179: 403 Access Denied.
        match read_upload_answer("s3", 403, None, b"Access Denied") {
            Ok(Uploaded::Refused(m)) => assert_eq!(m, "Upload failed (s3): 403 Access Denied"),
            other => panic!("{other:?}"),
        }
        match read_upload_answer("s3", 500, None, b"oops") {
            Err(Signal::Fail(m)) => assert_eq!(m, "Upload failed (s3): 500 oops"),
            other => panic!("{other:?}"),
        }
        // N 180: no key in the answer.
        match read_upload_answer("s3", 201, None, b"<Response>no key here</Response>") {
            Err(Signal::Fail(m)) => assert!(
                m.starts_with("Could not extract storage key from upload response (s3 201)"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        // A busy storage reschedules after Retry-After.
        match read_upload_answer("s3", 503, Some("7"), b"SlowDown") {
            Err(Signal::Reschedule { after, message }) => {
                assert_eq!(after, Duration::from_secs(7));
                assert!(message.contains("503 SlowDown"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn file_content_as_text_or_base64() {
        assert_eq!(
            file_bytes(&json!({"file_content": "binary-content-here"}))
                .unwrap()
                .len(),
            19
        );
        assert_eq!(
            file_bytes(&json!({"file_content": "é"})).unwrap(),
            "é".as_bytes()
        );
        assert_eq!(
            file_bytes(&json!({"file_content_base64": "AAEC\n/w=="})).unwrap(),
            vec![0, 1, 2, 255]
        );
        assert!(
            file_bytes(&json!({"file_content": "a", "file_content_base64": "YQ=="}))
                .unwrap_err()
                .contains("not both")
        );
        assert!(file_bytes(&json!({"file_name": "x"}))
            .unwrap_err()
            .contains("the file is missing"));
        assert!(file_bytes(&json!({"file_content_base64": "***"}))
            .unwrap_err()
            .contains("not Base64"));
        let a = UploadAttachmentAction::new();
        assert!(a
            .check(&json!({"file_name": "a.txt", "file_content": "x"}), &[])
            .is_empty());
        assert_eq!(a.check(&json!({"file_name": "a.txt"}), &[]).len(), 1);
    }

    #[test]
    fn upload_uri_needs_https_unless_the_api_is_http() {
        assert!(
            check_upload_uri("https://s3.example.com/u", "https://graphql.xurrent.com").is_ok()
        );
        assert!(check_upload_uri("http://127.0.0.1:9/u", "http://127.0.0.1:9/graphql").is_ok());
        let e =
            check_upload_uri("http://s3.example.com/u", "https://graphql.xurrent.com").unwrap_err();
        assert!(e.contains("only https"), "{e}");
        assert!(check_upload_uri("not a uri", "https://graphql.xurrent.com").is_err());
        assert_ne!(
            cache_key("https://graphql.xurrent.com", "a"),
            cache_key("https://graphql.xurrent.com", "b")
        );
    }
}
