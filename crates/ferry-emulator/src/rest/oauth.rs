//! OAuth 2: `POST /token` (client credentials, authorization code, refresh token),
//! `GET /authorize` (auto-approving authorization endpoint), `GET|POST /introspect`, and the
//! control endpoints that create OAuth applications and personal access tokens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::common::ApiError;
use crate::policy::random_hex;
use crate::{Emulator, TokenInfo};

/// Grant type of OAuth applications that use the client credentials grant.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// Grant type of OAuth applications that use the authorization code grant.
pub const AUTHORIZATION_CODE: &str = "authorization_code";

/// An OAuth application of an account.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OauthApp {
    /// Node id of the application.
    #[serde(rename = "nodeID")]
    pub node_id: String,
    /// Account the application (and its tokens) belong to.
    pub account: String,
    /// Display name.
    pub name: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// `client_credentials` or `authorization_code`.
    pub grant_type: String,
    /// Scopes granted to tokens.
    pub scopes: Vec<String>,
    /// Whether tokens have administrator rights (needed for the Webhooks REST API).
    pub admin: bool,
    /// Allowed redirect URIs (authorization code); empty allows any.
    pub redirect_uris: Vec<String>,
    /// Disabled applications cannot obtain tokens.
    pub disabled: bool,
}

#[derive(Clone, Debug)]
struct CodeGrant {
    client_id: String,
    person_id: Option<String>,
    redirect_uri: Option<String>,
    expires: Instant,
}

#[derive(Clone, Debug)]
struct RefreshGrant {
    client_id: String,
    person_id: Option<String>,
}

/// OAuth applications, authorization codes and refresh tokens.
#[derive(Debug, Default)]
pub struct OauthState {
    apps: RwLock<HashMap<String, OauthApp>>,
    codes: Mutex<HashMap<String, CodeGrant>>,
    refresh: Mutex<HashMap<String, RefreshGrant>>,
    issued: Mutex<HashMap<String, Vec<String>>>,
    next_id: AtomicU64,
}

impl OauthState {
    /// Forget everything.
    pub fn clear(&self) {
        self.apps.write().clear();
        self.codes.lock().clear();
        self.refresh.lock().clear();
        self.issued.lock().clear();
    }

    /// An application by client id.
    pub fn app(&self, client_id: &str) -> Option<OauthApp> {
        self.apps.read().get(client_id).cloned()
    }

    /// All applications of an account.
    pub fn apps_of(&self, account: &str) -> Vec<OauthApp> {
        let mut v: Vec<OauthApp> = self
            .apps
            .read()
            .values()
            .filter(|a| a.account == account)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v
    }

    /// Remove an application; its tokens are revoked by the caller.
    pub fn remove(&self, client_id: &str) -> Option<OauthApp> {
        self.refresh.lock().retain(|_, g| g.client_id != client_id);
        self.codes.lock().retain(|_, g| g.client_id != client_id);
        self.apps.write().remove(client_id)
    }
}

/// Create an OAuth application in `account` (which must exist).
pub fn create_app(
    emu: &Emulator,
    account: &str,
    name: &str,
    grant_type: &str,
    scopes: Vec<String>,
    admin: bool,
    redirect_uris: Vec<String>,
) -> OauthApp {
    let n = emu.rest.oauth.next_id.fetch_add(1, Ordering::SeqCst) + 1;
    let app = OauthApp {
        node_id: crate::encode_node_id(account, "OauthApplication", n),
        account: account.to_string(),
        name: name.to_string(),
        client_id: random_hex(16),
        client_secret: random_hex(32),
        grant_type: grant_type.to_string(),
        scopes,
        admin,
        redirect_uris,
        disabled: false,
    };
    emu.rest
        .oauth
        .apps
        .write()
        .insert(app.client_id.clone(), app.clone());
    app
}

/// Revoke every token issued to `client_id` and remove the application.
pub fn delete_app(emu: &Emulator, client_id: &str) -> Option<OauthApp> {
    let app = emu.rest.oauth.remove(client_id)?;
    let issued = emu.rest.oauth.issued.lock().remove(client_id);
    for token in issued.unwrap_or_default() {
        emu.tokens.revoke(&token);
    }
    Some(app)
}

/// The routes of this module.
pub(crate) fn routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/token", post(token))
        .route("/oauth/token", post(token))
        .route("/authorize", get(authorize))
        .route("/oauth/authorize", get(authorize))
        .route("/introspect", get(introspect_get).post(introspect_post))
        .route(
            "/_emulator/oauth_applications",
            post(control_create_app).get(control_list_apps),
        )
        .route("/_emulator/tokens", post(control_create_token))
}

/// An RFC 6749 §5.2 error answer: `{error, error_description}`, not cacheable. The statuses
/// follow §5.2 as Doorkeeper (Xurrent's OAuth server) applies it: 400 for `invalid_request`,
/// `invalid_grant`, `unauthorized_client`, `unsupported_grant_type` and `invalid_scope`; 401 for
/// `invalid_client`.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// `401 invalid_client`; when the client authenticated with HTTP Basic, the answer names that
/// scheme in `WWW-Authenticate` (RFC 6749 §5.2: MUST).
fn invalid_client(headers: &HeaderMap, description: &str) -> Response {
    let mut resp = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    if used_basic_auth(headers) {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"OAuth\""),
        );
    }
    resp
}

fn used_basic_auth(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case("basic "))
}

fn parse_params(headers: &HeaderMap, body: &Bytes) -> HashMap<String, String> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json {
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
            return m
                .into_iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k, s)),
                    Value::Null => None,
                    other => Some((k, other.to_string())),
                })
                .collect();
        }
        return HashMap::new();
    }
    form_urlencoded::parse(body).into_owned().collect()
}

/// Client credentials from HTTP Basic auth or the form.
fn client_credentials(
    headers: &HeaderMap,
    p: &HashMap<String, String>,
) -> Option<(String, String)> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(b64) = v
            .strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (id, secret) = text.split_once(':')?;
            return Some((id.to_string(), secret.to_string()));
        }
    }
    Some((p.get("client_id")?.clone(), p.get("client_secret")?.clone()))
}

/// Issue an access token for `app` (and optionally a refresh token).
fn issue(emu: &Emulator, app: &OauthApp, person_id: Option<String>, refresh: bool) -> Response {
    let expires_in = emu.rest.settings().token_expires_in;
    let access = random_hex(32);
    let person = person_id.or_else(|| emu.account(&app.account).map(|a| a.admin_person_id));
    emu.rest
        .oauth
        .issued
        .lock()
        .entry(app.client_id.clone())
        .or_default()
        .push(access.clone());
    emu.tokens.insert(
        access.clone(),
        TokenInfo {
            account: app.account.clone(),
            person_id: person.clone(),
            admin: app.admin,
            scopes: app.scopes.clone(),
            expires_at: Some(chrono::Utc::now() + chrono::Duration::seconds(expires_in as i64)),
            client_id: Some(app.client_id.clone()),
        },
    );
    let mut body = json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": expires_in,
        "scope": app.scopes.join(" "),
        "created_at": chrono::Utc::now().timestamp(),
    });
    if refresh {
        let rt = random_hex(32);
        emu.rest.oauth.refresh.lock().insert(
            rt.clone(),
            RefreshGrant {
                client_id: app.client_id.clone(),
                person_id: person,
            },
        );
        body["refresh_token"] = json!(rt);
    }
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response()
}

async fn token(State(emu): State<Arc<Emulator>>, headers: HeaderMap, body: Bytes) -> Response {
    let p = parse_params(&headers, &body);
    let Some(grant) = p.get("grant_type").filter(|g| !g.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: grant_type",
        );
    };
    if !matches!(
        grant.as_str(),
        CLIENT_CREDENTIALS | AUTHORIZATION_CODE | "refresh_token"
    ) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server.",
        );
    }
    let Some((client_id, secret)) = client_credentials(&headers, &p) else {
        return invalid_client(
            &headers,
            "Client authentication failed: no client credentials were sent.",
        );
    };
    let app = match emu.rest.oauth.app(&client_id) {
        Some(a) if a.client_secret == secret && !a.disabled => a,
        _ => return invalid_client(
            &headers,
            "Client authentication failed: unknown client, wrong secret or disabled application.",
        ),
    };
    // A requested scope must be one the application was given (RFC 6749 §3.3).
    if let Some(requested) = p.get("scope").filter(|s| !s.trim().is_empty()) {
        if let Some(extra) = requested
            .split_whitespace()
            .find(|s| !app.scopes.iter().any(|a| a == s))
        {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                &format!("The requested scope '{extra}' is not granted to this application."),
            );
        }
    }
    match grant.as_str() {
        CLIENT_CREDENTIALS => {
            if app.grant_type != CLIENT_CREDENTIALS {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    "The client is not authorized to use the client_credentials grant.",
                );
            }
            issue(&emu, &app, None, false)
        }
        AUTHORIZATION_CODE => {
            let Some(code) = p.get("code").filter(|c| !c.is_empty()) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: code",
                );
            };
            let grant = emu.rest.oauth.codes.lock().remove(code);
            let valid = grant.filter(|g| {
                g.client_id == app.client_id
                    && g.expires > Instant::now()
                    && (g.redirect_uri.is_none()
                        || g.redirect_uri.as_ref() == p.get("redirect_uri"))
            });
            match valid {
                Some(g) => issue(&emu, &app, g.person_id, true),
                None => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.",
                ),
            }
        }
        _ => {
            let Some(rt) = p.get("refresh_token").filter(|c| !c.is_empty()) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: refresh_token",
                );
            };
            let grant = emu.rest.oauth.refresh.lock().remove(rt);
            match grant.filter(|g| g.client_id == app.client_id) {
                Some(g) => issue(&emu, &app, g.person_id, true),
                None => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The provided refresh token is invalid, expired or revoked.",
                ),
            }
        }
    }
}

async fn authorize(
    State(emu): State<Arc<Emulator>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("response_type").map(String::as_str) != Some("code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
            "Only response_type=code is supported.",
        );
    }
    let app = match q.get("client_id").and_then(|c| emu.rest.oauth.app(c)) {
        Some(a) if a.grant_type == AUTHORIZATION_CODE && !a.disabled => a,
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "Unknown client or not an authorization code application.",
            )
        }
    };
    let redirect = q.get("redirect_uri").cloned();
    if let Some(r) = &redirect {
        if !app.redirect_uris.is_empty() && !app.redirect_uris.contains(r) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The redirect_uri is not registered for this client.",
            );
        }
    }
    let person = q
        .get("person_id")
        .cloned()
        .or_else(|| emu.account(&app.account).map(|a| a.admin_person_id));
    let code = random_hex(20);
    emu.rest.oauth.codes.lock().insert(
        code.clone(),
        CodeGrant {
            client_id: app.client_id.clone(),
            person_id: person,
            redirect_uri: redirect.clone(),
            expires: Instant::now() + Duration::from_secs(600),
        },
    );
    let state = q.get("state").cloned();
    match redirect {
        Some(r) => {
            let mut url = match url::Url::parse(&r) {
                Ok(u) => u,
                Err(_) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "The redirect_uri is not a valid URI.",
                    )
                }
            };
            url.query_pairs_mut().append_pair("code", &code);
            if let Some(s) = &state {
                url.query_pairs_mut().append_pair("state", s);
            }
            (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
        }
        None => Json(json!({ "code": code, "state": state })).into_response(),
    }
}

fn introspection(emu: &Emulator, token: Option<&str>) -> Option<Value> {
    let info = emu.tokens.validate(token?)?;
    Some(json!({
        "active": true,
        "account": info.account,
        "scope": info.scopes.join(" "),
        "scopes": info.scopes,
        "client_id": info.client_id,
        "person_id": info.person_id,
        "admin": info.admin,
        "exp": info.expires_at.map(|e| e.timestamp()),
        "expires_at": info.expires_at.map(|e| e.to_rfc3339()),
        "token_type": "bearer",
    }))
}

async fn introspect_get(State(emu): State<Arc<Emulator>>, headers: HeaderMap) -> Response {
    match introspection(&emu, crate::bearer_token(&headers)) {
        Some(v) => Json(v).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "active": false, "error": "invalid_token" })),
        )
            .into_response(),
    }
}

async fn introspect_post(
    State(emu): State<Arc<Emulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = parse_params(&headers, &body);
    let token = p
        .get("token")
        .map(String::as_str)
        .or_else(|| crate::bearer_token(&headers));
    Json(introspection(&emu, token).unwrap_or_else(|| json!({ "active": false }))).into_response()
}

/// Body of `POST /_emulator/oauth_applications`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateAppInput {
    account: Option<String>,
    name: Option<String>,
    grant_type: Option<String>,
    scopes: Vec<String>,
    admin: Option<bool>,
    redirect_uris: Vec<String>,
}

async fn control_create_app(
    State(emu): State<Arc<Emulator>>,
    body: Bytes,
) -> Result<Json<OauthApp>, ApiError> {
    let input: CreateAppInput = if body.is_empty() {
        CreateAppInput::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    let account = input.account.unwrap_or_else(|| emu.config.account.clone());
    let grant = input
        .grant_type
        .unwrap_or_else(|| CLIENT_CREDENTIALS.to_string());
    if grant != CLIENT_CREDENTIALS && grant != AUTHORIZATION_CODE {
        return Err(ApiError::invalid(
            "grant_type must be client_credentials or authorization_code",
        ));
    }
    emu.ensure_account(&account, &account);
    let app = create_app(
        &emu,
        &account,
        input.name.as_deref().unwrap_or("Emulator application"),
        &grant,
        input.scopes,
        input.admin.unwrap_or(true),
        input.redirect_uris,
    );
    Ok(Json(app))
}

async fn control_list_apps(
    State(emu): State<Arc<Emulator>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Vec<OauthApp>> {
    let account = q
        .get("account")
        .cloned()
        .unwrap_or_else(|| emu.config.account.clone());
    Json(emu.rest.oauth.apps_of(&account))
}

/// Body of `POST /_emulator/tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateTokenInput {
    account: Option<String>,
    admin: Option<bool>,
    person_id: Option<String>,
    expires_in: Option<u64>,
    token: Option<String>,
}

async fn control_create_token(
    State(emu): State<Arc<Emulator>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let input: CreateTokenInput = if body.is_empty() {
        CreateTokenInput::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    let account_id = input.account.unwrap_or_else(|| emu.config.account.clone());
    let account = emu.ensure_account(&account_id, &account_id);
    let token = input.token.unwrap_or_else(|| random_hex(32));
    let admin = input.admin.unwrap_or(true);
    let person = input.person_id.unwrap_or(account.admin_person_id);
    let expires_at = input
        .expires_in
        .map(|s| chrono::Utc::now() + chrono::Duration::seconds(s as i64));
    emu.tokens.insert(
        token.clone(),
        TokenInfo {
            account: account.id.clone(),
            person_id: Some(person.clone()),
            admin,
            scopes: Vec::new(),
            expires_at,
            client_id: None,
        },
    );
    Ok(Json(json!({
        "token": token,
        "account": account.id,
        "admin": admin,
        "person_id": person,
        "expires_at": expires_at.map(|e| e.to_rfc3339()),
    })))
}
