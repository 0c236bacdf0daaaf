//! The Xurrent connector's outbound side through the real binary, against an emulator on a
//! loopback port: `ferry connectors` / `ferry validate` know the connector, `ferry connections
//! test` answers success / failed / error, and `ferry xurrent webhooks …` /
//! `ferry xurrent webhook-policies …` round-trip through the Webhooks API.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use serde_json::{json, Value};

struct Emu {
    emu: Arc<ferry_emulator::Emulator>,
    base: String,
}

async fn emulator() -> Emu {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let emu = ferry_emulator::build(ferry_emulator::EmulatorConfig {
        listen: addr,
        ..Default::default()
    })
    .await
    .unwrap();
    let app = ferry_emulator::router(emu.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Emu {
        emu,
        base: format!("http://{addr}"),
    }
}

impl Emu {
    fn scoped_pat(&self, token: &str) {
        let account = self.emu.account("wdc").unwrap();
        self.emu.tokens.insert(
            token.into(),
            ferry_emulator::TokenInfo {
                account: "wdc".into(),
                person_id: Some(account.admin_person_id),
                admin: true,
                scopes: vec!["webhook:CRUD".into(), "webhook-policy:CRUD".into()],
                expires_at: None,
                client_id: None,
            },
        );
    }

    async fn oauth_app(&self) -> (String, String) {
        let app: Value = reqwest::Client::new()
            .post(format!("{}/_emulator/oauth_applications", self.base))
            .json(&json!({"account": "wdc", "scopes": ["webhook:CRUD"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            app["client_id"].as_str().unwrap().into(),
            app["client_secret"].as_str().unwrap().into(),
        )
    }
}

/// A solution with outbound xurrent connections; secrets come from the environment.
fn xurrent_solution(root: &Path, base: &str, client_id: &str) -> PathBuf {
    let env = |oauth: &str| {
        format!(
            "      environment:\n        graphql_endpoint: {base}/graphql\n        oauth2_endpoint: {oauth}\n        rest_endpoint: {base}/v1\n"
        )
    };
    let conn = |name: &str, credentials: &str, environment: &str| {
        format!(
            "  {name}:\n    connector: xurrent\n    direction: outbound\n    config:\n      credentials:\n        account_id: wdc\n{credentials}{environment}"
        )
    };
    let pat = "        personal_access_token: \"{{ env.PAT }}\"\n";
    let oauth = format!(
        "        client_id: {client_id}\n        client_secret: \"{{{{ env.SECRET }}}}\"\n"
    );
    let good_env = env(&format!("{base}/token"));
    let yaml = [
        "name: xo\nenv:\n  PAT: { secret: true, from_env: TEST_XURRENT_PAT }\n  SECRET: { secret: true, from_env: TEST_XURRENT_SECRET }\nconnections:\n".to_string(),
        conn("pat", pat, &good_env),
        conn("oauth", &oauth, &good_env),
        conn("refused", "        personal_access_token: not-a-token\n", &good_env),
        conn("down", pat, &env("http://127.0.0.1:9/token")),
        "  intake:\n    connector: json_endpoint\n    direction: inbound\n    config:\n      api_key: { key: x-k, value: plain-inbound-key }\n".to_string(),
    ]
    .concat();
    solution(
        root,
        "xo",
        &yaml,
        &[(
            "r",
            "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: a, action: debug.log_message, input: { message: hi } }\n",
        )],
    )
}

const PAT: &str = "xurrent-e2e-pat";

fn envs(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TEST_XURRENT_PAT", PAT.to_string()),
        ("TEST_XURRENT_SECRET", secret.to_string()),
    ]
}

fn run(args: &[&str], secret: &str) -> (i32, String, String) {
    let envs = envs(secret);
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = ferry(args, &envs);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_validate_and_connection_tests() {
    let emu = emulator().await;
    emu.scoped_pat(PAT);
    let (client_id, secret) = emu.oauth_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = xurrent_solution(tmp.path(), &emu.base, &client_id);

    let (code, out, _) = run(&["connectors"], "");
    assert_eq!(code, 0);
    assert!(out.contains("xurrent"), "{out}");
    assert!(out.contains("credentials (required), environment"), "{out}");

    let (code, out, err) = run(&["validate", sol.to_str().unwrap()], &secret);
    assert_eq!(code, 0, "{out}{err}");

    // A connection config the connector refuses names the file and line.
    let bad = solution(
        tmp.path(),
        "bad",
        "name: bad\nconnections:\n  x:\n    connector: xurrent\n    direction: outbound\n    config:\n      credentials:\n        account_id: wdc\n        personal_access_token: t\n      environment:\n        region: us\n",
        &[],
    );
    let (code, out, _) = run(&["validate", bad.to_str().unwrap()], "");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("solution.yaml:"), "{out}");
    assert!(out.contains("set a stage"), "{out}");

    let data = tmp.path().join("data");
    let envs = envs(&secret);
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(&data, &[&sol], &envs);
    let test = |name: &str| {
        let out = ferry(
            &[
                "connections",
                "test",
                "xo",
                name,
                "--server",
                &server.url(""),
                "--token",
                TOKEN,
            ],
            &[],
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    assert_eq!(
        test("pat"),
        (
            0,
            "xo/pat: success: Connection successful. Token scopes: webhook:CRUD, webhook-policy:CRUD."
                .to_string()
        )
    );
    assert_eq!(
        test("oauth"),
        (
            0,
            "xo/oauth: success: Connection successful. Token scopes: webhook:CRUD.".to_string()
        )
    );
    assert_eq!(
        test("refused"),
        (
            1,
            "xo/refused: failed: Xurrent rejected the credentials (HTTP 401).".to_string()
        )
    );
    let (code, out) = test("down");
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("xo/down: error: "), "{out}");
    // Secrets never reach the log.
    assert!(!server.logs().contains(&secret));
    assert!(!server.logs().contains(PAT));
}

fn cli(sol: &Path, secret: &str, args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<&str> = vec!["xurrent"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--solution", sol.to_str().unwrap()]);
    run(&all, secret)
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_cli_round_trip() {
    let emu = emulator().await;
    emu.scoped_pat(PAT);
    let (client_id, secret) = emu.oauth_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let sol = xurrent_solution(tmp.path(), &emu.base, &client_id);

    // Policies over the OAuth connection.
    let (code, out, err) = cli(
        &sol,
        &secret,
        &[
            "webhook-policies",
            "create",
            "--jwt-alg",
            "es256",
            "--audience",
            "ferry",
            "--connection",
            "oauth",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let policy = json_of(&out);
    assert!(policy["public_key_pem"]
        .as_str()
        .unwrap()
        .contains("PUBLIC KEY"));
    let policy_id = policy["id"].to_string();
    let (code, out, err) = cli(
        &sol,
        &secret,
        &[
            "webhook-policies",
            "list",
            "--connection",
            "oauth",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let listed = json_of(&out);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == json!(policy_id.parse::<u64>().unwrap()) && p["jwt_alg"] == "es256"));
    let (code, out, _) = cli(
        &sol,
        &secret,
        &[
            "webhook-policies",
            "show",
            &policy_id,
            "--connection",
            "oauth",
        ],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("jwt_audience") && out.contains("ferry"),
        "{out}"
    );

    // Webhooks over the PAT connection.
    let (code, out, err) = cli(
        &sol,
        &secret,
        &[
            "webhooks",
            "create",
            "--event",
            "request.create",
            "--uri",
            "http://127.0.0.1:9/hook",
            "--name",
            "Ferry e2e",
            "--policy",
            &policy_id,
            "--connection",
            "pat",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let created = json_of(&out);
    let id = created["id"].to_string();
    assert_eq!(created["event"], "request.create");

    let (code, out, _) = cli(&sol, &secret, &["webhooks", "list", "--connection", "pat"]);
    assert_eq!(code, 0);
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("ID") && header.contains("EVENT"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with(&id) && l.contains("Ferry e2e") && l.contains("request.create")),
        "{out}"
    );

    let (code, out, _) = cli(
        &sol,
        &secret,
        &["webhooks", "show", &id, "--connection", "pat", "--json"],
    );
    assert_eq!(code, 0);
    assert_eq!(json_of(&out)["name"], "Ferry e2e");

    let (code, out, err) = cli(
        &sol,
        &secret,
        &[
            "webhooks",
            "update",
            &id,
            "--name",
            "Renamed",
            "--disabled",
            "--connection",
            "pat",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let updated = json_of(&out);
    assert_eq!(updated["name"], "Renamed");
    assert_eq!(updated["disabled"], true);
    let (_, out, _) = cli(
        &sol,
        &secret,
        &[
            "webhooks",
            "list",
            "--filter",
            "disabled",
            "--connection",
            "pat",
            "--json",
        ],
    );
    assert!(json_of(&out)
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["id"] == json!(id.parse::<u64>().unwrap())));

    let (code, out, err) = cli(
        &sol,
        &secret,
        &["webhooks", "test", &id, "--connection", "pat"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("test message"), "{out}");
    // The emulator records the test delivery (object_id 12345).
    let mut delivered = false;
    for _ in 0..100 {
        let deliveries: Value = reqwest::Client::new()
            .get(format!("{}/_emulator/deliveries?webhook={id}", emu.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if deliveries.to_string().contains("12345") {
            delivered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(delivered, "no test delivery recorded");

    let (code, out, _) = cli(
        &sol,
        &secret,
        &["webhooks", "delete", &id, "--connection", "pat"],
    );
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("Deleted webhook {id}"));
    let (code, _, err) = cli(
        &sol,
        &secret,
        &["webhooks", "show", &id, "--connection", "pat"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("HTTP 404"), "{err}");

    let (code, _, err) = cli(
        &sol,
        &secret,
        &[
            "webhook-policies",
            "delete",
            &policy_id,
            "--connection",
            "oauth",
        ],
    );
    assert_eq!(code, 0, "{err}");

    // Errors name what is wrong.
    let (code, _, err) = cli(
        &sol,
        &secret,
        &["webhooks", "list", "--connection", "intake"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("not an outbound xurrent connection"), "{err}");
    let (code, _, err) = cli(&sol, &secret, &["webhooks", "list", "--connection", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("no connection 'nope'"), "{err}");
    let (code, _, err) = cli(
        &sol,
        &secret,
        &["webhooks", "list", "--connection", "refused"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("HTTP 401"), "{err}");
}
