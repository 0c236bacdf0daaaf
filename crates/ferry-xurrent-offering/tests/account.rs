//! The account side against a scripted Xurrent on 127.0.0.1 (spec §14.7 scenarios 100, 113–117):
//! downloads carry no credentials, download failures and refused mutations are reported with
//! their context.

use std::sync::{Arc, Mutex};

use axum::extract::{Path as AxPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ferry_core::secrets::Secrets;
use ferry_engine::action::{ConnectionRef, Services};
use ferry_engine::http::{HttpClient, HttpLimits};
use ferry_store::{SqliteStore, Store, StoreOptions};
use ferry_xurrent_offering::{files, sync, Account};
use serde_json::{json, Value};

#[derive(Default)]
struct Script {
    /// (substring of the query, answer), first match wins.
    answers: Mutex<Vec<(String, Value)>>,
    /// Queries received.
    queries: Mutex<Vec<String>>,
    /// File answers by name: (status, body).
    files: Mutex<Vec<(String, u16, Vec<u8>)>>,
    /// Headers of file downloads.
    downloads: Mutex<Vec<HeaderMap>>,
}

async fn graphql(State(s): State<Arc<Script>>, body: axum::Json<Value>) -> Response {
    let query = body["query"].as_str().unwrap_or_default().to_string();
    s.queries.lock().unwrap().push(query.clone());
    let answers = s.answers.lock().unwrap();
    match answers.iter().find(|(k, _)| query.contains(k.as_str())) {
        Some((_, v)) => axum::Json(v.clone()).into_response(),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unscripted: {query}"),
        )
            .into_response(),
    }
}

async fn file(
    State(s): State<Arc<Script>>,
    AxPath(name): AxPath<String>,
    headers: HeaderMap,
) -> Response {
    s.downloads.lock().unwrap().push(headers);
    let files = s.files.lock().unwrap();
    match files.iter().find(|(n, _, _)| *n == name) {
        Some((_, status, body)) => {
            (StatusCode::from_u16(*status).unwrap(), body.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start(script: Arc<Script>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/graphql", post(graphql))
        .route("/files/{name}", get(file))
        .with_state(script);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

async fn services(tmp: &tempfile::TempDir) -> Services {
    let store = SqliteStore::open(&tmp.path().join("ferry.db"), StoreOptions::default())
        .await
        .unwrap();
    Services {
        http: HttpClient::new(HttpLimits::default()),
        secrets: Arc::new(Secrets::from_master_key(&[7u8; 32])),
        store: Arc::new(store) as Arc<dyn Store>,
    }
}

fn connection(base: &str) -> ConnectionRef {
    ConnectionRef {
        name: "provider".into(),
        connector: "xurrent".into(),
        config: json!({
            "credentials": {"account_id": "wdc", "personal_access_token": "secret-pat"},
            "environment": {
                "graphql_endpoint": format!("{base}/graphql"),
                "oauth2_endpoint": format!("{base}/token"),
            },
        }),
        namespace: "offering/provider".into(),
    }
}

/// The "Yoda" offering of the spec as the account answers it.
fn yoda(base: &str) -> Value {
    json!({
        "id": "app-offering-id", "name": "Yoda Translate", "reference": "yoda",
        "pictureUri": format!("{base}/files/yoda-1091030_1280.jpg"),
        "description": "Desc", "descriptionAttachments": { "nodes": [] },
        "features": null, "featuresAttachments": { "nodes": [] },
        "serviceInstance": { "name": "Conference Rooms Houston" },
        "webhookUriTemplate": "https://company.org/webhook",
        "scopes": [ { "id": "841", "actions": ["request:Read", "affected-sla:Read"], "effect": "allow", "grantType": "client_credentials" } ],
        "uiExtensionVersion": { "id": "ui-extension-version-id", "html": "Very simple UI extension", "css": null, "javascript": null, "formDefinition": null,
            "uiExtension": { "id": "ui-extension-id", "category": "app_offering", "description": null, "name": "xurrent_apps_statuscast", "title": "StatusCast Configuration" } },
        "automationRules": { "nodes": [
            { "id": "automation-rule-id", "name": "Automated note on completion", "generic": "request", "trigger": "on status update",
              "condition": "is_completed", "description": null, "expressions": [ { "name": "is_completed", "value": "status = completed" } ],
              "actions": [ { "name": "action1", "value": "add note 'Automated completion note'" } ] },
            { "id": "automation-rule-id-2", "name": "Second rule", "generic": "request", "trigger": "on status update",
              "condition": "x", "description": null, "expressions": [], "actions": [] } ] }
    })
}

struct Setup {
    script: Arc<Script>,
    base: String,
    services: Services,
    conn: ConnectionRef,
    tmp: tempfile::TempDir,
}

async fn setup() -> Setup {
    let script = Arc::new(Script::default());
    let base = start(script.clone()).await;
    let tmp = tempfile::tempdir().unwrap();
    let services = services(&tmp).await;
    let conn = connection(&base);
    script
        .files
        .lock()
        .unwrap()
        .push(("yoda-1091030_1280.jpg".into(), 200, b"JPEGBYTES".to_vec()));
    Setup {
        script,
        base,
        services,
        conn,
        tmp,
    }
}

fn answer(s: &Setup, key: &str, v: Value) {
    s.script.answers.lock().unwrap().insert(0, (key.into(), v));
}

#[tokio::test]
async fn s100_export_downloads_without_credentials_and_s117_download_failures() {
    let s = setup().await;
    answer(
        &s,
        "appOfferings(",
        json!({ "data": { "appOfferings": { "nodes": [ yoda(&s.base) ] } } }),
    );
    let account = Account::new(&s.services, &s.conn).unwrap();
    let dir = s.tmp.path().join("out");
    let exported = account.export("yoda", &dir).await.unwrap();
    assert!(
        exported
            .files
            .contains(&"yoda-1091030_1280.jpg".to_string()),
        "{:?}",
        exported.files
    );
    assert_eq!(
        std::fs::read(dir.join("yoda-1091030_1280.jpg")).unwrap(),
        b"JPEGBYTES"
    );
    // Q1 once, with the unpublished filter.
    let queries = s.script.queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 1);
    assert!(
        queries[0].contains("appOfferings(first: 1, filter: { published: $published"),
        "{}",
        queries[0]
    );
    let downloads = s.script.downloads.lock().unwrap().clone();
    assert_eq!(downloads.len(), 1);
    assert!(
        downloads[0].get("authorization").is_none(),
        "{:?}",
        downloads[0]
    );
    assert!(
        downloads[0].get("x-xurrent-account").is_none(),
        "{:?}",
        downloads[0]
    );
    // The UI extension and the rules are exported without ids.
    let rules = std::fs::read_to_string(dir.join("automation_rules.yaml")).unwrap();
    assert!(
        rules.contains("name: Second rule") && !rules.contains("automation-rule-id"),
        "{rules}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("ui_extension/extension.html")).unwrap(),
        "Very simple UI extension"
    );

    for (status, want) in [
        (429, "Rate limit hit. 'slow down'"),
        (503, "Avatar server not available. 'slow down'"),
        (500, "Unable to download the avatar"),
    ] {
        s.script.files.lock().unwrap().insert(
            0,
            (
                "yoda-1091030_1280.jpg".into(),
                status,
                b"slow down".to_vec(),
            ),
        );
        let e = account.export("yoda", &dir).await.unwrap_err().to_string();
        assert!(e.contains(want), "{status}: {e}");
        if status == 500 {
            assert!(e.ends_with(": 500 'slow down'"), "{e}");
        }
    }
}

#[tokio::test]
async fn s113_to_s116_refused_calls_name_what_failed() {
    let s = setup().await;
    let account = Account::new(&s.services, &s.conn).unwrap();
    // The files: Yoda as exported.
    answer(
        &s,
        "appOfferings(",
        json!({ "data": { "appOfferings": { "nodes": [ yoda(&s.base) ] } } }),
    );
    let dir = s.tmp.path().join("files");
    account.export("yoda", &dir).await.unwrap();

    // 113: a top-level error finding the offering.
    answer(
        &s,
        "appOfferings(",
        json!({ "errors": [ { "message": "permission denied" } ] }),
    );
    let e = sync(&s.services, &s.conn, &dir, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("Unable to find App Offering with reference 'yoda': "),
        "{e}"
    );
    assert!(e.contains("permission denied"), "{e}");

    // 113: no offering; the create is refused.
    answer(
        &s,
        "appOfferings(",
        json!({ "data": { "appOfferings": { "nodes": [] } } }),
    );
    answer(
        &s,
        "serviceInstances(",
        json!({ "data": { "serviceInstances": { "nodes": [ { "id": "513" } ] } } }),
    );
    answer(
        &s,
        "uiExtensions(",
        json!({ "data": { "uiExtensions": { "nodes": [] } } }),
    );
    answer(
        &s,
        "uiExtensionCreate(",
        json!({ "data": { "uiExtensionCreate": { "errors": null, "uiExtension": { "id": "u", "activeVersion": { "id": "v" } } } } }),
    );
    answer(
        &s,
        "appOfferingCreate(",
        json!({ "data": { "appOfferingCreate": { "errors": [ { "path": null, "message": "reference taken" } ], "appOffering": null } } }),
    );
    let e = sync(&s.services, &s.conn, &dir, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "Unable to create App Offering 'Yoda Translate': reference taken"
    );

    // 114: the UI extension create is refused.
    answer(
        &s,
        "uiExtensionCreate(",
        json!({ "data": { "uiExtensionCreate": { "errors": [ { "path": ["html"], "message": "invalid html" } ], "uiExtension": null } } }),
    );
    let e = sync(&s.services, &s.conn, &dir, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "Unable to create UI Extension 'xurrent_apps_statuscast': html (invalid html)"
    );

    // Against the existing Yoda with changed files: 114 UI update, 116 offering update, 115 rules.
    answer(
        &s,
        "appOfferings(",
        json!({ "data": { "appOfferings": { "nodes": [ yoda(&s.base) ] } } }),
    );
    std::fs::write(dir.join("ui_extension/extension.html"), "New HTML").unwrap();
    answer(
        &s,
        "uiExtensionUpdate(",
        json!({ "data": { "uiExtensionUpdate": { "errors": [ { "path": null, "message": "invalid html" } ], "uiExtension": null } } }),
    );
    let e = sync(&s.services, &s.conn, &dir, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "Unable to update UI Extension 'xurrent_apps_statuscast': invalid html"
    );
    std::fs::write(
        dir.join("ui_extension/extension.html"),
        "Very simple UI extension",
    )
    .unwrap();

    std::fs::write(dir.join("description.md"), "New description").unwrap();
    answer(
        &s,
        "appOfferingUpdate(",
        json!({ "data": { "appOfferingUpdate": { "errors": [ { "path": null, "message": "locked" } ], "appOffering": null } } }),
    );
    let e = sync(&s.services, &s.conn, &dir, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, "Unable to update App Offering 'Yoda Translate': locked");
    std::fs::write(dir.join("description.md"), "Desc").unwrap();

    let rules = std::fs::read_to_string(dir.join("automation_rules.yaml")).unwrap();
    std::fs::write(
        dir.join("automation_rules.yaml"),
        rules.replace("condition: is_completed", "condition: is_done"),
    )
    .unwrap();
    answer(
        &s,
        "appOfferingAutomationRuleUpdate(",
        json!({ "data": { "appOfferingAutomationRuleUpdate": { "errors": [ { "path": null, "message": "invalid condition" } ] } } }),
    );
    let e = sync(&s.services, &s.conn, &dir, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "Unable to update Automation Rule 'Automated note on completion': invalid condition"
    );

    // Only the first rule in the files: the second is deleted (refused), a new one created.
    let mut o = files::read_dir(&dir).unwrap();
    let first = o.automation_rules.as_ref().unwrap()[0].clone();
    let mut new_rule = first.clone();
    new_rule.insert("name".into(), json!("Brand new"));
    o.automation_rules = Some(vec![first, new_rule]);
    files::write_dir(&dir, &o).unwrap();
    answer(
        &s,
        "appOfferingAutomationRuleUpdate(",
        json!({ "data": { "appOfferingAutomationRuleUpdate": { "errors": null } } }),
    );
    answer(
        &s,
        "appOfferingAutomationRuleDelete(",
        json!({ "data": { "appOfferingAutomationRuleDelete": { "errors": [ { "path": null, "message": "in use" } ] } } }),
    );
    let e = sync(&s.services, &s.conn, &dir, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, "Unable to delete Automation Rule 'Second rule': in use");
    answer(
        &s,
        "appOfferingAutomationRuleDelete(",
        json!({ "data": { "appOfferingAutomationRuleDelete": { "errors": null } } }),
    );
    answer(
        &s,
        "appOfferingAutomationRuleCreate(",
        json!({ "data": { "appOfferingAutomationRuleCreate": { "errors": [ { "path": null, "message": "invalid condition" } ] } } }),
    );
    let e = sync(&s.services, &s.conn, &dir, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "Unable to create Automation Rule 'Brand new': invalid condition"
    );

    // The secret token never shows in a message.
    assert!(!e.contains("secret-pat"));
}
