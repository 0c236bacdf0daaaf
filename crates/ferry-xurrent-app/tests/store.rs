//! The customer secrets store over the real SQLite store: concurrent merges of one customer
//! keep every value, customers stay apart, and no secret reaches the database in plaintext.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_core::secrets::Secrets;
use ferry_engine::Kv;
use ferry_store::{SqliteStore, Store, StoreOptions};
use ferry_xurrent_app::{CustomerStore, OauthApplication, SecretsUpdate, WebhookPolicy};

async fn open(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open(&dir.join("t.db"), StoreOptions::default())
            .await
            .unwrap(),
    )
}

fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            bytes.extend(std::fs::read(p).unwrap());
        }
    }
    bytes
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_merges_keep_every_value_and_customers_stay_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path()).await;
    let secrets = Arc::new(Secrets::from_master_key(&[7u8; 32]));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        let secrets = secrets.clone();
        tasks.push(tokio::spawn(async move {
            let kv = Kv::new(store.as_ref(), secrets.as_ref(), "sol/rb#trigger".into());
            let cs = CustomerStore::of_solution(&kv, "sol");
            let customer = if i % 2 == 0 { "wdc" } else { "widget" };
            let mut update = SecretsUpdate {
                secrets: BTreeMap::from([(
                    format!("secret{i}"),
                    cs.seal(&format!("plain-value-{i}-{customer}")),
                )]),
                ..Default::default()
            };
            if i < 2 {
                update.client_credentials = Some(OauthApplication {
                    node_id: Some(format!("node-{customer}")),
                    client_id: Some(format!("client-{customer}")),
                    client_secret: Some(cs.seal(&format!("top-secret-client-{customer}"))),
                });
                update.policy = Some(WebhookPolicy {
                    id: Some("p".into()),
                    algorithm: "ES256".into(),
                    public_key_pem: format!("pem-{customer}"),
                    issuer: Some(format!("https://{customer}.example.com")),
                    audience: None,
                });
            }
            cs.merge("phone", customer, update).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let kv = Kv::new(store.as_ref(), secrets.as_ref(), "sol/x".into());
    let cs = CustomerStore::of_solution(&kv, "sol");
    for (customer, parity) in [("wdc", 0), ("widget", 1)] {
        let got = cs.get("phone", customer).await.unwrap().unwrap();
        assert_eq!(got.customer_account_id, customer);
        assert_eq!(
            got.secrets.len(),
            12,
            "{customer}: {:?}",
            got.secrets.keys()
        );
        for (name, sealed) in &got.secrets {
            let i: usize = name.trim_start_matches("secret").parse().unwrap();
            assert_eq!(i % 2, parity);
            assert!(sealed.starts_with("fsec1."), "{sealed}");
            assert_eq!(
                secrets.open(sealed).unwrap().as_str(),
                format!("plain-value-{i}-{customer}")
            );
        }
        let app = got.client_credentials.unwrap();
        assert_eq!(
            app.client_id.as_deref(),
            Some(format!("client-{customer}").as_str())
        );
        assert_eq!(
            secrets
                .open(app.client_secret.as_deref().unwrap())
                .unwrap()
                .as_str(),
            format!("top-secret-client-{customer}")
        );
        assert_eq!(
            got.policy.unwrap().public_key_pem,
            format!("pem-{customer}")
        );
    }
    assert!(cs.get("phone", "other").await.unwrap().is_none());
    assert!(cs.get("other", "wdc").await.unwrap().is_none());
    // Another solution has its own store.
    assert!(CustomerStore::of_solution(&kv, "sol2")
        .get("phone", "wdc")
        .await
        .unwrap()
        .is_none());
    drop(cs);
    drop(kv);
    drop(store);
    let bytes = all_bytes(tmp.path());
    for plain in [
        "top-secret-client-wdc",
        "plain-value-0-wdc",
        "client-widget",
        "pem-wdc",
    ] {
        assert!(
            !contains(&bytes, plain),
            "'{plain}' is in the database in plaintext"
        );
    }
}
