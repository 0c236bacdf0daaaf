//! The provider's "quick setup" (spec §4.6, §4.7): the OAuth application the provider creates in
//! its Xurrent account for the App Connector, as a link that opens Xurrent's form with the name,
//! the grant type and the scopes filled in, and the scopes as a readable list. Pure; printed by
//! `ferry xurrent app setup-link`.

use url::form_urlencoded;

use crate::connection::AppSettings;

/// The scopes the provider's OAuth application needs (spec §4.7): model and permitted
/// operations (C = create, R = read, U = update, D = delete).
pub const PROVIDER_SCOPES: [&str; 10] = [
    "account:R",
    "app-instance:RU",
    "app-offering:CRU",
    "app-offering-automation-rule:CRUD",
    "app-offering-scope:CRU",
    "attachment:R",
    "service-instance:R",
    "ui-extension:CRU",
    "webhook:CRU",
    "webhook-policy:CRU",
];

/// The application name used when the solution has none.
pub const DEFAULT_NAME: &str = "iPaaS Integration";

/// What the link is for, to print next to it.
pub const HINT: &str = "Opens Xurrent with the application name, grant type, and required scopes \
                        pre-filled. Press Save in Xurrent, then copy the Client ID and Client \
                        Secret into the connection's credentials.";

/// The link to Xurrent's "new OAuth application" form of the provider account, with the name
/// (the solution's, else [`DEFAULT_NAME`]), `grant_type=client_credentials` and the scopes
/// (comma-separated) form-encoded; `None` when the connection names no account.
pub fn setup_link(settings: &AppSettings, solution_name: Option<&str>) -> Option<String> {
    if settings.provider_account.trim().is_empty() {
        return None;
    }
    let name = solution_name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAME);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("name", name)
        .append_pair("grant_type", "client_credentials")
        .append_pair("scopes", &PROVIDER_SCOPES.join(","))
        .finish();
    Some(format!(
        "{}/oauth_applications/new?{query}",
        settings.provider_url().trim_end_matches('/')
    ))
}

/// The scopes as lines for people: `   - Ui Extension (Create, Read, Update)`.
pub fn scope_lines() -> Vec<String> {
    PROVIDER_SCOPES
        .iter()
        .map(|scope| {
            let (model, ops) = scope.split_once(':').unwrap_or((scope, ""));
            let title: Vec<String> = model
                .split('-')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().chain(c).collect())
                        .unwrap_or_default()
                })
                .collect();
            let ops: Vec<&str> = ops
                .chars()
                .filter_map(|c| match c {
                    'C' => Some("Create"),
                    'R' => Some("Read"),
                    'U' => Some("Update"),
                    'D' => Some("Delete"),
                    _ => None,
                })
                .collect();
            format!("   - {} ({})", title.join(" "), ops.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(config: serde_json::Value) -> AppSettings {
        AppSettings::from_config(&config)
    }

    fn query_of(link: &str) -> Vec<(String, String)> {
        let (_, q) = link.split_once('?').unwrap();
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn the_link_opens_the_provider_accounts_form_with_name_grant_and_scopes() {
        // Spec §14.1 23: account `acme`, stage Prod.
        let s = settings(json!({"credentials": {"account_id": "acme"}}));
        let link = setup_link(&s, Some("Acme iPaaS")).unwrap();
        assert!(
            link.starts_with("https://acme.xurrent.com/oauth_applications/new?"),
            "{link}"
        );
        let q = query_of(&link);
        assert_eq!(
            q,
            [
                ("name".to_string(), "Acme iPaaS".to_string()),
                ("grant_type".into(), "client_credentials".into()),
                ("scopes".into(), PROVIDER_SCOPES.join(",")),
            ]
        );
        assert_eq!(PROVIDER_SCOPES.len(), 10);
        // Without a solution name.
        let link = setup_link(&s, None).unwrap();
        assert_eq!(query_of(&link)[0].1, DEFAULT_NAME);
    }

    #[test]
    fn the_host_follows_stage_region_and_template() {
        // Spec §14.1 24 (Ferry has no "system account": without an account there is no link).
        assert_eq!(setup_link(&settings(json!({})), Some("x")), None);
        let host = |env: serde_json::Value| {
            let link = setup_link(
                &settings(json!({"credentials": {"account_id": "acme"}, "environment": env})),
                None,
            )
            .unwrap();
            link.split("/oauth_applications")
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(host(json!({"stage": "QA"})), "https://acme.xurrent.qa");
        assert_eq!(
            host(json!({"stage": "Demo"})),
            "https://acme.xurrent-demo.com"
        );
        assert_eq!(
            host(json!({"stage": "Prod", "region": "us"})),
            "https://acme.us.xurrent.com"
        );
        assert_eq!(
            host(json!({"stage": "Demo", "region": "us"})),
            "https://acme.xurrent-demo.com"
        );
        // The emulator: the account URL template.
        let s = settings(json!({"credentials": {"account_id": "wdc"},
            "account_url_template": "http://127.0.0.1:9/accounts/{account}"}));
        assert!(setup_link(&s, None)
            .unwrap()
            .starts_with("http://127.0.0.1:9/accounts/wdc/oauth_applications/new?"));
    }

    #[test]
    fn special_characters_in_the_name_are_encoded_and_decode_back() {
        // Spec §14.1 25.
        let s = settings(json!({"credentials": {"account_id": "acme"}}));
        let link = setup_link(&s, Some("Acme & Co = test")).unwrap();
        assert!(link.contains("%26") && link.contains("%3D"), "{link}");
        assert_eq!(query_of(&link)[0].1, "Acme & Co = test");
    }

    #[test]
    fn scopes_read_as_models_and_operations() {
        // Spec §14.1 26.
        let lines = scope_lines();
        assert!(lines.contains(&"   - Ui Extension (Create, Read, Update)".to_string()));
        assert!(lines.contains(
            &"   - App Offering Automation Rule (Create, Read, Update, Delete)".to_string()
        ));
        assert_eq!(lines.len(), 10);
    }
}
