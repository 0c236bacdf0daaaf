//! The connection store seals values at rest, and single-flight locks reschedule contenders.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::secrets::{is_envelope, Secrets};
use ferry_engine::action::{ConnectionRef, Services, Signal};
use ferry_engine::http::{HttpClient, HttpLimits};
use ferry_store::{SqliteStore, Store, StoreOptions};
use serde_json::{json, Value};

async fn services(dir: &std::path::Path) -> Services {
    let store = SqliteStore::open(&dir.join("t.db"), StoreOptions::default())
        .await
        .unwrap();
    Services {
        http: HttpClient::new(HttpLimits::default()),
        secrets: Arc::new(Secrets::from_master_key(&[7u8; 32])),
        store: Arc::new(store) as Arc<dyn Store>,
    }
}

fn conn() -> ConnectionRef {
    ConnectionRef {
        name: "api".into(),
        connector: "http".into(),
        config: json!({}),
        namespace: "sol/api".into(),
    }
}

#[tokio::test]
async fn connection_store_values_are_sealed_at_rest_and_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let s = services(tmp.path()).await;
    let c = conn();
    s.kv_put(&c, "token", &json!({"access": "abc123"}), None)
        .await
        .unwrap();
    assert_eq!(
        s.kv_get(&c, "token").await.unwrap(),
        Some(json!({"access": "abc123"}))
    );
    let raw = s.store.kv_get("sol/api", "token").await.unwrap().unwrap();
    match raw {
        Value::String(sealed) => {
            assert!(is_envelope(&sealed));
            assert!(!sealed.contains("abc123"));
        }
        other => panic!("stored in the clear: {other}"),
    }
    s.kv_put(&c, "short", &json!(1), Some(Duration::from_millis(50)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(s.kv_get(&c, "short").await.unwrap(), None);
    assert_eq!(s.kv_get(&c, "missing").await.unwrap(), None);
}

#[tokio::test]
async fn a_held_lock_reschedules_the_second_caller_and_is_released_after() {
    let tmp = tempfile::tempdir().unwrap();
    let s = services(tmp.path()).await;
    let outer = s
        .with_lock("k", Duration::from_secs(60), || async {
            // While held, a second caller is told to come back in 2–3 s.
            let inner = s
                .with_lock("k", Duration::from_secs(60), || async { Ok(1) })
                .await;
            match inner {
                Err(Signal::Reschedule { after, message }) => {
                    assert!(after >= Duration::from_secs(2) && after <= Duration::from_secs(3));
                    assert!(message.contains("Lock held"));
                }
                other => panic!("expected a reschedule, got {other:?}"),
            }
            Ok(42)
        })
        .await
        .unwrap();
    assert_eq!(outer, 42);
    // Released: it can be taken again.
    let again = s
        .with_lock("k", Duration::from_secs(60), || async { Ok(7) })
        .await
        .unwrap();
    assert_eq!(again, 7);
}
