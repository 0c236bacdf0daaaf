//! In-memory attachment storage behind `attachmentStorage` and the upload endpoint.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::RwLock;

/// One uploaded file.
#[derive(Clone, Debug)]
pub struct StoredFile {
    /// Storage key (what `AttachmentInput.key` refers to).
    pub key: String,
    /// Original file name.
    pub filename: String,
    /// Content type given at upload.
    pub content_type: String,
    /// The bytes.
    pub data: Bytes,
}

/// Uploaded files by key.
#[derive(Debug)]
pub struct AttachmentStore {
    files: RwLock<HashMap<String, StoredFile>>,
    secret: [u8; 32],
}

impl Default for AttachmentStore {
    fn default() -> Self {
        AttachmentStore {
            files: RwLock::default(),
            secret: rand::random(),
        }
    }
}

impl AttachmentStore {
    /// Secret used to sign upload policies.
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Keep a file.
    pub fn insert(&self, file: StoredFile) {
        self.files.write().insert(file.key.clone(), file);
    }

    /// A file by key.
    pub fn get(&self, key: &str) -> Option<StoredFile> {
        self.files.read().get(key).cloned()
    }

    /// Forget all files.
    pub fn clear(&self) {
        self.files.write().clear();
    }
}

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value as Json};
use sha2::Sha256;

use crate::{Emulator, Record};

/// Maximum upload size in bytes (reported as `sizeLimit` and enforced on upload).
pub const SIZE_LIMIT: usize = 25 * 1024 * 1024;

/// Extensions reported as `allowedExtensions` (informational; not enforced, like the
/// connector which does not check them either).
pub const ALLOWED_EXTENSIONS: &[&str] = &[
    "pdf", "png", "jpg", "jpeg", "gif", "svg", "webp", "json", "xml", "csv", "txt", "zip", "doc",
    "docx", "xls", "xlsx", "ppt", "pptx", "eml", "msg", "log",
];

/// How long an upload policy stays valid.
const POLICY_TTL_SECS: i64 = 3600;

fn sign(secret: &[u8], policy: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(policy.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Download URL of a stored file.
pub fn download_url(emu: &Emulator, key: &str) -> String {
    format!("{}/_emulator/attachments/{}", emu.base_url, key)
}

/// The `attachmentStorage` object: upload URI, provider `local`, provider parameters
/// (`key` template with `${filename}`, a signed `policy`, `success_action_status`), size
/// limit and allowed extensions.
pub(crate) fn storage_info(emu: &Emulator) -> Record {
    let prefix = format!("attachments/{}/", uuid::Uuid::new_v4().simple());
    let policy = base64::engine::general_purpose::STANDARD.encode(
        json!({
            "expiration": chrono::Utc::now().timestamp() + POLICY_TTL_SECS,
            "key_prefix": prefix,
        })
        .to_string(),
    );
    let signature = sign(emu.attachments.secret(), &policy);
    let mut o = Record::new();
    o.insert(
        "uploadUri".into(),
        format!("{}/_emulator/attachments/upload", emu.base_url).into(),
    );
    o.insert("provider".into(), "local".into());
    o.insert(
        "providerParameters".into(),
        json!({
            "key": format!("{prefix}${{filename}}"),
            "policy": policy,
            "x-emulator-signature": signature,
            "success_action_status": "201",
        }),
    );
    o.insert("sizeLimit".into(), (SIZE_LIMIT as u64).into());
    o.insert("allowedExtensions".into(), json!(ALLOWED_EXTENSIONS));
    o
}

fn upload_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({ "errors": [ { "message": message.into() } ] })),
    )
        .into_response()
}

/// `POST /_emulator/attachments/upload`: multipart form with the provider parameters,
/// `Content-Type` and `file` (no authentication, like a presigned S3 POST). Answers
/// `{"key": "..."}`.
pub(crate) async fn upload(State(emu): State<Arc<Emulator>>, mut form: Multipart) -> Response {
    let mut params: std::collections::HashMap<String, String> = Default::default();
    let mut file: Option<(String, Option<String>, bytes::Bytes)> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return upload_error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid multipart body: {e}"),
                )
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let filename = field.file_name().unwrap_or("upload").to_string();
            let ct = field.content_type().map(str::to_string);
            match field.bytes().await {
                Ok(b) => file = Some((filename, ct, b)),
                Err(e) => {
                    return upload_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("cannot read file: {e}"),
                    )
                }
            }
        } else {
            match field.text().await {
                Ok(t) => {
                    params.insert(name, t);
                }
                Err(e) => {
                    return upload_error(StatusCode::BAD_REQUEST, format!("invalid field: {e}"))
                }
            }
        }
    }
    let Some((filename, part_ct, data)) = file else {
        return upload_error(StatusCode::BAD_REQUEST, "missing 'file' part");
    };
    if data.len() > SIZE_LIMIT {
        return upload_error(StatusCode::PAYLOAD_TOO_LARGE, "file exceeds the size limit");
    }
    let (Some(policy), Some(sig), Some(key_tpl)) = (
        params.get("policy"),
        params.get("x-emulator-signature"),
        params.get("key"),
    ) else {
        return upload_error(
            StatusCode::FORBIDDEN,
            "Access Denied: missing key, policy or signature",
        );
    };
    if sign(emu.attachments.secret(), policy) != *sig {
        return upload_error(StatusCode::FORBIDDEN, "Access Denied: invalid signature");
    }
    let decoded: Option<Json> = base64::engine::general_purpose::STANDARD
        .decode(policy)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(decoded) = decoded else {
        return upload_error(StatusCode::FORBIDDEN, "Access Denied: invalid policy");
    };
    let exp = decoded
        .get("expiration")
        .and_then(Json::as_i64)
        .unwrap_or(0);
    let prefix = decoded
        .get("key_prefix")
        .and_then(Json::as_str)
        .unwrap_or_default();
    if exp < chrono::Utc::now().timestamp() {
        return upload_error(StatusCode::FORBIDDEN, "Access Denied: policy expired");
    }
    let safe_name: String = filename
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let key = key_tpl.replace("${filename}", &safe_name);
    if !key.starts_with(prefix) || key.contains("..") {
        return upload_error(
            StatusCode::FORBIDDEN,
            "Access Denied: key outside the policy prefix",
        );
    }
    let content_type = params
        .get("Content-Type")
        .cloned()
        .or(part_ct)
        .unwrap_or_else(|| "application/octet-stream".into());
    emu.attachments.insert(StoredFile {
        key: key.clone(),
        filename: safe_name,
        content_type,
        data,
    });
    let status = match params.get("success_action_status").map(String::as_str) {
        Some("200") => StatusCode::OK,
        Some("204") => StatusCode::NO_CONTENT,
        _ => StatusCode::CREATED,
    };
    tracing::debug!(%key, "attachment uploaded");
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    (status, axum::Json(json!({ "key": key }))).into_response()
}

/// `GET /_emulator/attachments/<key>`: download an uploaded file.
pub(crate) async fn download(
    State(emu): State<Arc<Emulator>>,
    Path(key): Path<String>,
) -> Response {
    match emu.attachments.get(&key) {
        Some(f) => {
            let mut resp = Response::new(Body::from(f.data));
            if let Ok(v) = f.content_type.parse() {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            resp
        }
        None => upload_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}
