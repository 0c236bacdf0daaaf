//! In-memory attachment storage behind `attachmentStorage` and the upload endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// What `attachmentStorage` announces and the upload endpoint enforces; changed with
/// `PUT /_emulator/attachment_storage` (tests use a small size limit).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// `local` (the upload answers `{"key": …}`) or `s3` (the upload answers S3's XML
    /// `PostResponse` with `<Key>`).
    pub provider: String,
    /// `sizeLimit` in bytes, enforced on upload.
    pub size_limit: u64,
    /// `allowedExtensions`, enforced on upload (case-insensitive).
    pub allowed_extensions: Vec<String>,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            provider: "local".into(),
            size_limit: SIZE_LIMIT as u64,
            allowed_extensions: ALLOWED_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }
    }
}

/// Uploaded files by key, the storage settings and request counters.
#[derive(Debug)]
pub struct AttachmentStore {
    files: RwLock<HashMap<String, StoredFile>>,
    secret: RwLock<[u8; 32]>,
    settings: RwLock<StorageSettings>,
    /// `attachmentStorage` resolutions since the start (or the last reset).
    storage_queries: AtomicU64,
    /// Requests to the upload endpoint, refused ones included.
    upload_requests: AtomicU64,
}

impl Default for AttachmentStore {
    fn default() -> Self {
        AttachmentStore {
            files: RwLock::default(),
            secret: RwLock::new(rand::random()),
            settings: RwLock::default(),
            storage_queries: AtomicU64::new(0),
            upload_requests: AtomicU64::new(0),
        }
    }
}

impl AttachmentStore {
    /// Secret used to sign upload policies.
    pub(crate) fn secret(&self) -> [u8; 32] {
        *self.secret.read()
    }

    /// Replace the policy signing key: every storage policy handed out so far stops working
    /// (as when a storage's presigning credentials expire).
    pub fn rotate_key(&self) {
        *self.secret.write() = rand::random();
    }

    /// Keep a file.
    pub fn insert(&self, file: StoredFile) {
        self.files.write().insert(file.key.clone(), file);
    }

    /// A file by key.
    pub fn get(&self, key: &str) -> Option<StoredFile> {
        self.files.read().get(key).cloned()
    }

    /// Forget all files, restore the default settings and zero the counters.
    pub fn clear(&self) {
        self.files.write().clear();
        *self.settings.write() = StorageSettings::default();
        self.storage_queries.store(0, Ordering::Relaxed);
        self.upload_requests.store(0, Ordering::Relaxed);
    }

    /// The storage settings in force.
    pub fn settings(&self) -> StorageSettings {
        self.settings.read().clone()
    }

    /// Replace the storage settings.
    pub fn set_settings(&self, s: StorageSettings) {
        *self.settings.write() = s;
    }

    /// `(attachmentStorage resolutions, upload requests)` so far.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.storage_queries.load(Ordering::Relaxed),
            self.upload_requests.load(Ordering::Relaxed),
        )
    }

    /// Every stored file, ordered by key.
    pub fn list(&self) -> Vec<StoredFile> {
        let mut v: Vec<StoredFile> = self.files.read().values().cloned().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }
}

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value as Json};
use sha2::{Digest as _, Sha256};

use crate::{Emulator, Record};

/// Default maximum upload size in bytes (reported as `sizeLimit` and enforced on upload).
pub const SIZE_LIMIT: usize = 25 * 1024 * 1024;

/// Extensions reported as `allowedExtensions` by default (enforced on upload).
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
    emu.attachments
        .storage_queries
        .fetch_add(1, Ordering::Relaxed);
    let settings = emu.attachments.settings();
    let prefix = format!("attachments/{}/", uuid::Uuid::new_v4().simple());
    let policy = base64::engine::general_purpose::STANDARD.encode(
        json!({
            "expiration": chrono::Utc::now().timestamp() + POLICY_TTL_SECS,
            "key_prefix": prefix,
        })
        .to_string(),
    );
    let signature = sign(&emu.attachments.secret(), &policy);
    let mut o = Record::new();
    o.insert(
        "uploadUri".into(),
        format!("{}/_emulator/attachments/upload", emu.base_url).into(),
    );
    o.insert("provider".into(), settings.provider.clone().into());
    o.insert(
        "providerParameters".into(),
        json!({
            "key": format!("{prefix}${{filename}}"),
            "policy": policy,
            "x-emulator-signature": signature,
            "success_action_status": "201",
        }),
    );
    o.insert("sizeLimit".into(), settings.size_limit.into());
    o.insert(
        "allowedExtensions".into(),
        json!(settings.allowed_extensions),
    );
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
/// `Content-Type` and `file` (no authentication, like a presigned S3 POST: the signed policy
/// is the authorisation). Like S3, fields after the `file` part are ignored. A request that
/// carries Xurrent API credentials (`Authorization`, `X-Xurrent-Account`) is refused with 400:
/// they do not belong at a storage provider. Answers `{"key": "..."}` (provider `local`) or
/// S3's XML `PostResponse` with its `<Key>` (provider `s3`).
pub(crate) async fn upload(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    emu.attachments
        .upload_requests
        .fetch_add(1, Ordering::Relaxed);
    for h in ["authorization", "x-xurrent-account"] {
        if headers.contains_key(h) {
            return upload_error(
                StatusCode::BAD_REQUEST,
                format!("InvalidArgument: the upload carries the Xurrent API header '{h}'; the attachment storage accepts only the signed policy"),
            );
        }
    }
    let settings = emu.attachments.settings();
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
        if file.is_some() {
            // S3: "Any fields below the file are ignored."
            continue;
        }
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
    if data.len() as u64 > settings.size_limit {
        return upload_error(
            StatusCode::BAD_REQUEST,
            format!(
                "EntityTooLarge: the file has {} bytes; the size limit is {}",
                data.len(),
                settings.size_limit
            ),
        );
    }
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if !settings.allowed_extensions.is_empty()
        && !settings
            .allowed_extensions
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&ext))
    {
        return upload_error(
            StatusCode::FORBIDDEN,
            format!("Access Denied: the extension '{ext}' is not allowed"),
        );
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
    if sign(&emu.attachments.secret(), policy) != *sig {
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
    let etag = hex::encode(&Sha256::digest(&data)[..16]);
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
    if settings.provider == "s3" {
        let location = download_url(&emu, &key);
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location><Bucket>emulator</Bucket><Key>{}</Key><ETag>\"{}\"</ETag></PostResponse>",
            xml_escape(&location),
            xml_escape(&key),
            etag,
        );
        return (status, [(header::CONTENT_TYPE, "application/xml")], xml).into_response();
    }
    (status, axum::Json(json!({ "key": key }))).into_response()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /_emulator/attachments`: the stored files (key, file name, content type, size) and
/// the counters `storage_queries` (`attachmentStorage` resolutions) and `upload_requests`.
pub(crate) async fn list(State(emu): State<Arc<Emulator>>) -> axum::Json<Json> {
    let (storage_queries, upload_requests) = emu.attachments.counters();
    let files: Vec<Json> = emu
        .attachments
        .list()
        .into_iter()
        .map(|f| {
            json!({"key": f.key, "filename": f.filename, "content_type": f.content_type, "size": f.data.len()})
        })
        .collect();
    axum::Json(json!({
        "files": files,
        "storage_queries": storage_queries,
        "upload_requests": upload_requests,
    }))
}

/// `POST /_emulator/attachment_storage/rotate_key`: a new policy signing key; uploads with
/// storage information fetched before are refused (`403 Access Denied: invalid signature`).
pub(crate) async fn rotate_key(State(emu): State<Arc<Emulator>>) -> StatusCode {
    emu.attachments.rotate_key();
    StatusCode::NO_CONTENT
}

/// `GET /_emulator/attachment_storage`: the storage settings.
pub(crate) async fn get_settings(State(emu): State<Arc<Emulator>>) -> axum::Json<StorageSettings> {
    axum::Json(emu.attachments.settings())
}

/// `PUT /_emulator/attachment_storage`: change the keys it names (`provider`, `size_limit`,
/// `allowed_extensions`).
pub(crate) async fn put_settings(
    State(emu): State<Arc<Emulator>>,
    axum::Json(patch): axum::Json<Json>,
) -> Response {
    let mut current = match serde_json::to_value(emu.attachments.settings()) {
        Ok(v) => v,
        Err(e) => return upload_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(patch) = patch.as_object() else {
        return upload_error(StatusCode::UNPROCESSABLE_ENTITY, "expected a JSON object");
    };
    for (k, v) in patch {
        current[k] = v.clone();
    }
    match serde_json::from_value::<StorageSettings>(current) {
        Ok(s) if s.provider == "local" || s.provider == "s3" => {
            emu.attachments.set_settings(s.clone());
            axum::Json(s).into_response()
        }
        Ok(s) => upload_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("provider '{}' is not one of local, s3", s.provider),
        ),
        Err(e) => upload_error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
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
