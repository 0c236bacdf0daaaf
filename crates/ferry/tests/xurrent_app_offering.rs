//! App Offering as files (issue 9, spec §9) through the real binary against the real
//! `ferry emulator`: an offering with UI extension (and form), automation rules, scopes, avatar
//! and an inline image is built in a "QA" provider account, exported to files
//! (`ferry xurrent app export`), planned against a second "prod" provider account
//! (`apply --dry-run`: the plan is printed and nothing changes), applied (everything created),
//! applied again (no changes), exported back from prod (the same files), then one file is
//! changed at a time (exactly one update each). `ferry serve` applies the files when the
//! solution says so and refuses to start when they cannot be applied.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

const QA_TOKEN: &str = ferry_emulator::DEFAULT_TOKEN;
const AVATAR: &[u8] = b"\x89PNG fake avatar bytes";
const SHOT: &[u8] = b"\xff\xd8\xff fake jpeg screenshot";

async fn gql(base: &str, account: &str, token: &str, query: &str, variables: Value) -> Value {
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .header("x-xurrent-account", account)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v.get("errors").is_none(), "{v}");
    v["data"].clone()
}

async fn post(base: &str, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn get_bytes(url: &str) -> Vec<u8> {
    reqwest::get(url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// Upload a file to the account's attachment storage as a Xurrent client would; the key.
async fn upload(base: &str, account: &str, token: &str, name: &str, bytes: &[u8]) -> String {
    let d = gql(
        base,
        account,
        token,
        "{ attachmentStorage { uploadUri providerParameters } }",
        json!({}),
    )
    .await;
    let s = &d["attachmentStorage"];
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in s["providerParameters"].as_object().unwrap() {
        form = form.text(k.clone(), v.as_str().unwrap().to_string());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_string()),
    );
    let r: Value = reqwest::Client::new()
        .post(s["uploadUri"].as_str().unwrap())
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["key"].as_str().unwrap().to_string()
}

/// The QA offering "yoda": built with the same mutations a provider's UI would use.
async fn seed_qa(base: &str) {
    let si = post(
        base,
        "/_emulator/seed?account=wdc",
        json!({ "records": { "ServiceInstance": [ { "ref": "si", "name": "Conference Rooms Houston" } ] } }),
    )
    .await["refs"]["si"]
        .clone();
    let ui = gql(base, "wdc", QA_TOKEN,
        "mutation($i: UiExtensionCreateInput!) { uiExtensionCreate(input: $i) { errors { message } uiExtension { id activeVersion { id } } } }",
        json!({ "i": { "category": "app_offering", "name": "yoda_config", "title": "Yoda Configuration",
                       "html": "<p>Configure Yoda</p>\n", "css": ".yoda { color: green; }\n",
                       "formDefinition": { "fields": [ { "id": "language", "type": "text" } ] }, "activate": true } }),
    ).await["uiExtensionCreate"]["uiExtension"].clone();
    let key = upload(base, "wdc", QA_TOKEN, "screenshot.jpg", SHOT).await;
    use base64::Engine as _;
    let avatar = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(AVATAR)
    );
    let o = gql(base, "wdc", QA_TOKEN,
        "mutation($i: AppOfferingCreateInput!) { appOfferingCreate(input: $i) { errors { path message } appOffering { id } } }",
        json!({ "i": {
            "name": "Yoda Translate", "reference": "yoda", "cardDescription": "Translates like Yoda.",
            "description": format!("# Yoda\n\nSpeaks backwards.\n\n![Screenshot]({key})\n"),
            "descriptionAttachments": [ { "key": key, "inline": true } ],
            "features": "* Translation\n* Wisdom\n",
            "compliance": "No data is kept.",
            "serviceInstanceId": si,
            "webhookUriTemplate": "https://qa.example.com/hook?customer_account_id={account}",
            "configurationUriTemplate": "https://qa.example.com/configure",
            "policyJwtAlg": "es256", "policyJwtClaimExpiresIn": 3600, "requiresEnabledOauthPerson": false,
            "newScopes": [
                { "actions": ["request:Read", "affected-sla:Read"], "effect": "allow", "grantType": "client_credentials" },
                { "actions": ["person:Read"], "effect": "allow", "grantType": "authorization_code" } ],
            "pictureUri": avatar,
            "uiExtensionId": ui["id"], "uiExtensionVersionId": ui["activeVersion"]["id"] } }),
    ).await;
    let oid = o["appOfferingCreate"]["appOffering"]["id"].clone();
    assert!(oid.is_string(), "{o}");
    for (name, condition) in [
        ("Automated note on completion", "is_completed"),
        ("Escalate on breach", "is_breached"),
    ] {
        let r = gql(base, "wdc", QA_TOKEN,
            "mutation($i: AppOfferingAutomationRuleCreateInput!) { appOfferingAutomationRuleCreate(input: $i) { errors { message } } }",
            json!({ "i": { "appOfferingId": oid, "name": name, "generic": "request", "trigger": "on status update",
                           "condition": condition,
                           "expressions": [ { "name": condition, "value": "status = completed" } ],
                           "actions": [ { "name": "action1", "value": "add note 'Automated'" } ] } }),
        ).await;
        assert_eq!(
            r["appOfferingAutomationRuleCreate"]["errors"],
            Value::Null,
            "{r}"
        );
    }
}

/// A second provider account with its own token and the same service instance.
async fn prod_account(base: &str) -> String {
    post(
        base,
        "/_emulator/accounts",
        json!({ "id": "prod", "name": "Production" }),
    )
    .await;
    post(
        base,
        "/_emulator/seed?account=prod",
        json!({ "records": { "ServiceInstance": [ { "name": "Conference Rooms Houston" } ] } }),
    )
    .await;
    post(base, "/_emulator/tokens", json!({ "account": "prod" })).await["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn connection(name: &str, base: &str, account: &str, token: &str) -> String {
    format!("  {name}:\n    connector: xurrent\n    direction: outbound\n    config:\n      credentials:\n        account_id: {account}\n        personal_access_token: {token}\n      environment:\n        graphql_endpoint: {base}/graphql\n        oauth2_endpoint: {base}/token\n        rest_endpoint: {base}/v1\n")
}

fn write_solution(root: &Path, base: &str, prod_token: &str, app_offering: &str) -> PathBuf {
    // `qa_app`: the App Connector's connection to the same account, also usable.
    let app = connection("qa_app", base, "wdc", QA_TOKEN)
        .replace("connector: xurrent\n", "connector: xurrent_app\n")
        .replace("direction: outbound", "direction: inbound");
    let yaml = format!(
        "name: yoda\nconnections:\n{}{}{app}{app_offering}",
        connection("qa", base, "wdc", QA_TOKEN),
        connection("prod", base, "prod", prod_token)
    );
    solution(root, "yoda", &yaml, &[])
}

/// `ferry xurrent app …` in a blocking task: (exit code, stdout, stderr).
async fn app(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut all = vec!["xurrent".to_string(), "app".to_string()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = ferry(&refs, &[]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn apply_json(sol: &Path, extra: &[&str]) -> Value {
    let mut a = args(&[
        "apply",
        "--solution",
        sol.to_str().unwrap(),
        "--connection",
        "prod",
        "--json",
    ]);
    a.extend(args(extra));
    let (code, out, err) = app(a).await;
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

const PROD_OFFERING: &str = "{ appOfferings(first: 5, filter: { published: false, reference: { values: [\"yoda\"] } }) { totalCount nodes { id name cardDescription description descriptionAttachments(first: 10) { nodes { key inline expiringUrl } } features pictureUri serviceInstance { name } webhookUriTemplate configurationUriTemplate scopes { id actions effect grantType } uiExtensionVersion { id html css formDefinition uiExtension { id name title } } automationRules(first: 10) { nodes { id name condition } } } } }";

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn export_plan_apply_and_exact_updates_between_two_accounts() {
    let emu = start_emulator();
    let base = emu.base.clone();
    seed_qa(&base).await;
    let prod_token = prod_account(&base).await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = write_solution(tmp.path(), &base, &prod_token, "");
    let s = sol.to_str().unwrap().to_string();

    // Export from QA into the solution's default folder.
    let (code, out, err) = app(args(&[
        "export",
        "--solution",
        &s,
        "--connection",
        "qa",
        "--reference",
        "yoda",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Exported App Offering 'Yoda Translate' (yoda) from account wdc"),
        "{out}"
    );
    let dir = sol.join("app_offering");
    let offering = std::fs::read_to_string(dir.join("offering.yaml")).unwrap();
    for want in [
        "name: Yoda Translate",
        "reference: yoda",
        "serviceInstance: Conference Rooms Houston",
        "configurationUriTemplate: https://qa.example.com/configure",
        "avatar: picture.png",
        "screenshot.jpg:",
        "inline: true",
        "- request:Read",
        "grantType: authorization_code",
    ] {
        assert!(offering.contains(want), "{want}\n{offering}");
    }
    // The environment's own webhook URI does not travel.
    assert!(!offering.contains("webhookUriTemplate"), "{offering}");
    let description = std::fs::read_to_string(dir.join("description.md")).unwrap();
    assert_eq!(
        description,
        "# Yoda\n\nSpeaks backwards.\n\n![Screenshot](images/screenshot.jpg)\n"
    );
    assert_eq!(
        std::fs::read(dir.join("images/screenshot.jpg")).unwrap(),
        SHOT
    );
    assert_eq!(std::fs::read(dir.join("picture.png")).unwrap(), AVATAR);
    assert_eq!(
        std::fs::read_to_string(dir.join("features.md")).unwrap(),
        "* Translation\n* Wisdom\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("ui_extension/extension.html")).unwrap(),
        "<p>Configure Yoda</p>\n"
    );
    let form: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ui_extension/form.json")).unwrap())
            .unwrap();
    assert_eq!(
        form,
        json!({ "fields": [ { "id": "language", "type": "text" } ] })
    );
    let ui = std::fs::read_to_string(dir.join("ui_extension/ui_extension.yaml")).unwrap();
    assert!(
        ui.contains("category: app_offering") && ui.contains("title: Yoda Configuration"),
        "{ui}"
    );
    let rules = std::fs::read_to_string(dir.join("automation_rules.yaml")).unwrap();
    assert!(
        rules.contains("name: Automated note on completion")
            && rules.contains("condition: is_breached"),
        "{rules}"
    );
    assert!(!rules.contains("id:"), "{rules}");

    // Dry run: the plan is printed, prod is untouched.
    let (code, out, err) = app(args(&[
        "apply",
        "--solution",
        &s,
        "--connection",
        "prod",
        "--dry-run",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "Plan for App Offering 'yoda' in account prod",
        "+ create UI extension 'yoda_config': category, name, title, html, css, formDefinition",
        "+ create App Offering 'Yoda Translate': name, reference, cardDescription, compliance, configurationUriTemplate, policyJwtAlg, policyJwtClaimExpiresIn, requiresEnabledOauthPerson, description, features, serviceInstance, scopes, avatar, uiExtension",
        "+ create automation rule 'Automated note on completion' (request)",
        "+ create automation rule 'Escalate on breach' (request)",
        "4 change(s) planned; dry run, nothing was changed.",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }
    let d = gql(&base, "prod", &prod_token, PROD_OFFERING, json!({})).await;
    assert_eq!(d["appOfferings"]["totalCount"], 0, "{d}");
    let d = gql(
        &base,
        "prod",
        &prod_token,
        "{ uiExtensions(first: 5) { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(d["uiExtensions"]["totalCount"], 0);

    // Apply: everything is created in prod.
    let (code, out, err) = app(args(&["apply", "--solution", &s, "--connection", "prod"])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Applied 4 change(s)."), "{out}");
    let d = gql(&base, "prod", &prod_token, PROD_OFFERING, json!({})).await;
    assert_eq!(d["appOfferings"]["totalCount"], 1, "{d}");
    let o = &d["appOfferings"]["nodes"][0];
    assert_eq!(o["name"], "Yoda Translate");
    assert_eq!(o["serviceInstance"]["name"], "Conference Rooms Houston");
    assert_eq!(o["webhookUriTemplate"], Value::Null);
    assert_eq!(o["scopes"].as_array().unwrap().len(), 2);
    assert_eq!(o["uiExtensionVersion"]["html"], "<p>Configure Yoda</p>\n");
    assert_eq!(o["uiExtensionVersion"]["formDefinition"], form);
    assert_eq!(o["automationRules"]["nodes"].as_array().unwrap().len(), 2);
    // The inline image was uploaded to prod's storage and the Markdown points at its new key.
    let att = &o["descriptionAttachments"]["nodes"][0];
    let new_key = att["key"].as_str().unwrap();
    assert_eq!(att["inline"], true);
    assert_eq!(
        o["description"],
        format!("# Yoda\n\nSpeaks backwards.\n\n![Screenshot]({new_key})\n")
    );
    assert_eq!(get_bytes(att["expiringUrl"].as_str().unwrap()).await, SHOT);
    assert_eq!(get_bytes(o["pictureUri"].as_str().unwrap()).await, AVATAR);
    let offering_id = o["id"].clone();
    let version_id = o["uiExtensionVersion"]["id"].clone();

    // A second apply has nothing to do.
    let v = apply_json(&sol, &[]).await;
    assert_eq!(v["changes"], json!([]), "{v}");
    assert_eq!(v["applied"], 0);

    // Exported back from prod, the files are the same.
    let back = tmp.path().join("back");
    let (code, out, err) = app(args(&[
        "export",
        "--solution",
        &s,
        "--connection",
        "prod",
        "--reference",
        "yoda",
        "--out",
        back.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(files_of(&back), files_of(&dir));

    // One file changed, one update: the description.
    std::fs::write(
        dir.join("description.md"),
        "# Yoda\n\nSpeaks backwards, he does.\n\n![Screenshot](images/screenshot.jpg)\n",
    )
    .unwrap();
    let v = apply_json(&sol, &[]).await;
    assert_eq!(
        v["changes"],
        json!([{ "op": "update", "kind": "app_offering", "id": offering_id, "name": "Yoda Translate", "fields": ["description"] }]),
        "{v}"
    );
    assert_eq!(v["applied"], 1);
    let d = gql(&base, "prod", &prod_token, PROD_OFFERING, json!({})).await;
    let o = &d["appOfferings"]["nodes"][0];
    assert!(
        o["description"]
            .as_str()
            .unwrap()
            .contains("Speaks backwards, he does."),
        "{o}"
    );
    assert_eq!(o["uiExtensionVersion"]["id"], version_id);

    // One rule changed, one rule update with only the condition.
    let rules = std::fs::read_to_string(dir.join("automation_rules.yaml")).unwrap();
    std::fs::write(
        dir.join("automation_rules.yaml"),
        rules.replace("condition: is_breached", "condition: is_breached_twice"),
    )
    .unwrap();
    let v = apply_json(&sol, &["--dry-run"]).await;
    assert_eq!(v["changes"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["changes"][0]["kind"], "automation_rule");
    assert_eq!(v["changes"][0]["op"], "update");
    assert_eq!(v["changes"][0]["fields"], json!(["condition"]));
    assert_eq!(v["applied"], 0);
    let v = apply_json(&sol, &[]).await;
    assert_eq!(v["applied"], 1, "{v}");
    let d = gql(&base, "prod", &prod_token, PROD_OFFERING, json!({})).await;
    let conditions: Vec<&str> = d["appOfferings"]["nodes"][0]["automationRules"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["condition"].as_str().unwrap())
        .collect();
    assert_eq!(conditions, vec!["is_completed", "is_breached_twice"]);

    // A removed scope and a new UI text: the scope is deleted in place, the UI extension gets a
    // new version the offering then refers to.
    let offering = std::fs::read_to_string(dir.join("offering.yaml")).unwrap();
    let start = offering
        .find("- actions:\n  - person:Read")
        .expect(&offering);
    let end = offering[start..]
        .find("grantType: authorization_code\n")
        .unwrap()
        + start
        + "grantType: authorization_code\n".len();
    std::fs::write(
        dir.join("offering.yaml"),
        format!("{}{}", &offering[..start], &offering[end..]),
    )
    .unwrap();
    std::fs::write(
        dir.join("ui_extension/extension.html"),
        "<p>Configure Yoda, you will</p>\n",
    )
    .unwrap();
    let v = apply_json(&sol, &[]).await;
    let summary: Vec<(String, String, Value)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap().into(),
                c["kind"].as_str().unwrap().into(),
                c["fields"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("update".into(), "ui_extension".into(), json!(["html"])),
            (
                "update".into(),
                "app_offering".into(),
                json!(["scopes", "uiExtension"])
            ),
        ],
        "{v}"
    );
    let d = gql(&base, "prod", &prod_token, PROD_OFFERING, json!({})).await;
    let o = &d["appOfferings"]["nodes"][0];
    assert_eq!(o["scopes"].as_array().unwrap().len(), 1, "{o}");
    assert_eq!(
        o["uiExtensionVersion"]["html"],
        "<p>Configure Yoda, you will</p>\n"
    );
    assert_ne!(o["uiExtensionVersion"]["id"], version_id);
    let v = apply_json(&sol, &[]).await;
    assert_eq!(v["changes"], json!([]), "{v}");

    // The App Connector's `xurrent_app` connection reaches the provider account too.
    let again = tmp.path().join("again");
    let (code, out, err) = app(args(&[
        "export",
        "--solution",
        &s,
        "--connection",
        "qa_app",
        "--reference",
        "yoda",
        "--out",
        again.to_str().unwrap(),
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["account"], "wdc");
    assert_eq!(
        std::fs::read(again.join("images/screenshot.jpg")).unwrap(),
        SHOT
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_applies_the_files_when_the_solution_says_so_and_refuses_to_start_when_it_cannot() {
    let emu = start_emulator();
    let base = emu.base.clone();
    seed_qa(&base).await;
    let prod_token = prod_account(&base).await;
    let tmp = tempfile::tempdir().unwrap();
    let setting = "app_offering:\n  connection: prod\n  dir: offering\n  apply_on_serve: true\n";
    let sol = write_solution(tmp.path(), &base, &prod_token, setting);
    let s = sol.to_str().unwrap().to_string();
    // Export uses the setting's folder; the connection is given (the setting's is prod).
    let (code, out, err) = app(args(&[
        "export",
        "--solution",
        &s,
        "--connection",
        "qa",
        "--reference",
        "yoda",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(sol.join("offering/offering.yaml").is_file());

    // A service instance prod does not have: the start fails, naming the cause.
    let offering = std::fs::read_to_string(sol.join("offering/offering.yaml")).unwrap();
    std::fs::write(
        sol.join("offering/offering.yaml"),
        offering.replace("Conference Rooms Houston", "Conference Rooms Dallas"),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let (d, s2) = (data.to_str().unwrap().to_string(), s.clone());
    let out = tokio::task::spawn_blocking(move || {
        ferry(
            &["serve", "--listen", "127.0.0.1:0", "--data", &d, &s2],
            &[],
        )
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("solution 'yoda': applying the App Offering files in"),
        "{err}"
    );
    assert!(
        err.contains("Unable to find Service Instance with name 'Conference Rooms Dallas'."),
        "{err}"
    );
    assert!(err.contains("nothing was started"), "{err}");
    let d = gql(&base, "prod", &prod_token, PROD_OFFERING, json!({})).await;
    assert_eq!(d["appOfferings"]["totalCount"], 0);

    // Fixed: the server starts with the offering applied (apply without --connection uses the
    // setting's connection and folder; it now has nothing left to do).
    std::fs::write(sol.join("offering/offering.yaml"), &offering).unwrap();
    let server = Server::start(&data, &[&sol], &[]);
    let d = gql(&base, "prod", &prod_token, PROD_OFFERING, json!({})).await;
    assert_eq!(d["appOfferings"]["totalCount"], 1, "{}", server.logs());
    assert_eq!(
        d["appOfferings"]["nodes"][0]["automationRules"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (code, out, err) = app(args(&["apply", "--solution", &s, "--json"])).await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["account"], "prod");
    assert_eq!(v["changes"], json!([]), "{v}");
    // Under another reference it is a new offering (with its own UI extension).
    let (code, out, err) = app(args(&[
        "apply",
        "--solution",
        &s,
        "--reference",
        "yoda-beta",
        "--dry-run",
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["reference"], "yoda-beta");
    let ops: Vec<String> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["op"].as_str().unwrap(),
                c["kind"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            "create ui_extension",
            "create app_offering",
            "create automation_rule",
            "create automation_rule"
        ]
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_files_and_unknown_offerings_are_reported_clearly() {
    let emu = start_emulator();
    let base = emu.base.clone();
    let prod_token = prod_account(&base).await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = write_solution(tmp.path(), &base, &prod_token, "");
    let s = sol.to_str().unwrap().to_string();
    let (code, _, err) = app(args(&[
        "export",
        "--solution",
        &s,
        "--connection",
        "qa",
        "--reference",
        "nope",
    ]))
    .await;
    assert_ne!(code, 0);
    assert!(
        err.contains("Unable to find App Offering with reference 'nope'."),
        "{err}"
    );
    let (code, _, err) = app(args(&["apply", "--solution", &s, "--connection", "prod"])).await;
    assert_ne!(code, 0);
    assert!(err.contains("offering.yaml: not found"), "{err}");
    std::fs::create_dir_all(sol.join("app_offering")).unwrap();
    std::fs::write(
        sol.join("app_offering/offering.yaml"),
        "name: X\nreference: x\ncolour: red\n",
    )
    .unwrap();
    let (code, _, err) = app(args(&[
        "apply",
        "--solution",
        &s,
        "--connection",
        "prod",
        "--dry-run",
    ]))
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("offering.yaml: unknown key 'colour'"), "{err}");
    let (code, _, err) = app(args(&["apply", "--solution", &s])).await;
    assert_ne!(code, 0);
    assert!(err.contains("--connection NAME is required"), "{err}");
    // `ferry validate` reads the folder of a declared `app_offering`, and checks the connection.
    let declared = write_solution(
        &tmp.path().join("three"),
        &base,
        &prod_token,
        "app_offering:\n  connection: prod\n",
    );
    std::fs::create_dir_all(declared.join("app_offering")).unwrap();
    std::fs::write(
        declared.join("app_offering/offering.yaml"),
        "name: X\nreference: x\ncolour: red\n",
    )
    .unwrap();
    let (code, text) = validate(&declared, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("solution.yaml:"), "{text}");
    assert!(
        text.contains("app_offering: ") && text.contains("offering.yaml: unknown key 'colour'"),
        "{text}"
    );
    std::fs::write(
        declared.join("app_offering/offering.yaml"),
        "name: X\nreference: x\n",
    )
    .unwrap();
    let (code, text) = validate(&declared, &[]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = validate(
        &write_solution(
            &tmp.path().join("four"),
            &base,
            &prod_token,
            "app_offering:\n  connection: qa_app\n  apply_on_serve: true\n",
        ),
        &[],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("offering.yaml: not found"), "{text}");
    let sol5 = solution(&tmp.path().join("five"), "yoda", "name: yoda\nconnections:\n  hook:\n    connector: json_endpoint\n    direction: inbound\n    config: {}\napp_offering:\n  connection: hook\n", &[]);
    let (code, text) = validate(&sol5, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("app_offering.connection 'hook' must be an outbound xurrent connection or an xurrent_app connection (it is inbound json_endpoint)"), "{text}");
    // The setting is checked by `ferry validate`.
    let sol2 = write_solution(
        &tmp.path().join("two"),
        &base,
        &prod_token,
        "app_offering:\n  connection: nowhere\n  apply_on_serve: yes please\n",
    );
    let (code, text) = validate(&sol2, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("app_offering.connection 'nowhere' is not a connection of this solution"),
        "{text}"
    );
    assert!(
        text.contains("app_offering.apply_on_serve must be true or false"),
        "{text}"
    );
}

/// `ferry xurrent app setup-link`: the provider's "quick setup" link (spec §4.6, §14.1 23–26),
/// from the solution's `xurrent_app` connection, as text and JSON; no network.
#[test]
fn setup_link_prints_the_provider_oauth_application_form() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = "name: acme-ipaas\nconnections:\n  provider:\n    connector: xurrent_app\n    direction: inbound\n    config:\n      credentials:\n        account_id: acme\n        personal_access_token: t\n      environment:\n        stage: QA\n";
    let dir = solution(tmp.path(), "acme", yaml, &[]);
    let dir_s = dir.to_str().unwrap();
    let out = ferry(
        &[
            "xurrent",
            "app",
            "setup-link",
            "--solution",
            dir_s,
            "--connection",
            "provider",
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let href = v["href"].as_str().unwrap();
    assert!(
        href.starts_with("https://acme.xurrent.qa/oauth_applications/new?"),
        "{href}"
    );
    // The solution's name (special characters are form-encoded: unit tests of `setup`).
    assert!(
        href.contains("?name=acme-ipaas&grant_type=client_credentials&scopes=account%3AR%2C"),
        "{href}"
    );
    assert_eq!(v["scopes"].as_array().unwrap().len(), 10);

    let out = ferry(
        &[
            "xurrent",
            "app",
            "setup-link",
            "--solution",
            dir_s,
            "--connection",
            "provider",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(href), "{text}");
    assert!(
        text.contains("   - App Offering Automation Rule (Create, Read, Update, Delete)"),
        "{text}"
    );

    // An unknown connection: a clear error, exit non-zero.
    let out = ferry(
        &[
            "xurrent",
            "app",
            "setup-link",
            "--solution",
            dir_s,
            "--connection",
            "nope",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no connection 'nope'"), "{err}");
}
