//! Endpoint resolution (`xurrent_connector.md` §2.2): the GraphQL, OAuth token and REST
//! endpoints of a connection, derived from its stage and region or given explicitly.
//!
//! | stage | domain | with region `r` |
//! |---|---|---|
//! | `Prod` (or none) | `xurrent.com` | `r.xurrent.com` |
//! | `QA` | `xurrent.qa` | `r.xurrent.qa` |
//! | `Demo` | `xurrent-demo.com` | region ignored |
//!
//! GraphQL is `https://graphql.<domain>`, OAuth `https://oauth.<domain>/token`, REST
//! `https://api.<domain>/v1`. An explicit `graphql_endpoint`, `oauth2_endpoint` or
//! `rest_endpoint` wins over the derived one (how Ferry is pointed at the emulator). The token
//! introspection URL (connection test) is `<scheme>://<host>[:<port>]/introspect` of the OAuth
//! endpoint.

use serde_json::Value;

/// A Xurrent stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Production (`xurrent.com`).
    Prod,
    /// Quality assurance (`xurrent.qa`).
    Qa,
    /// Demo (`xurrent-demo.com`, global only).
    Demo,
}

impl Stage {
    /// Every stage, as the config spells them.
    pub const ALL: [Stage; 3] = [Stage::Demo, Stage::Qa, Stage::Prod];

    /// Parse `Prod`, `QA` or `Demo` (case-insensitive).
    pub fn parse(s: &str) -> Option<Stage> {
        match s.trim().to_ascii_lowercase().as_str() {
            "prod" => Some(Stage::Prod),
            "qa" => Some(Stage::Qa),
            "demo" => Some(Stage::Demo),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Prod => "Prod",
            Stage::Qa => "QA",
            Stage::Demo => "Demo",
        }
    }

    fn base_domain(self) -> &'static str {
        match self {
            Stage::Prod => "xurrent.com",
            Stage::Qa => "xurrent.qa",
            Stage::Demo => "xurrent-demo.com",
        }
    }
}

/// A Xurrent region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Australia.
    Au,
    /// Switzerland.
    Ch,
    /// United Kingdom.
    Uk,
    /// United States.
    Us,
}

impl Region {
    /// Every region.
    pub const ALL: [Region; 4] = [Region::Au, Region::Ch, Region::Uk, Region::Us];

    /// Parse `au`, `ch`, `uk` or `us` (case-insensitive).
    pub fn parse(s: &str) -> Option<Region> {
        match s.trim().to_ascii_lowercase().as_str() {
            "au" => Some(Region::Au),
            "ch" => Some(Region::Ch),
            "uk" => Some(Region::Uk),
            "us" => Some(Region::Us),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Au => "au",
            Region::Ch => "ch",
            Region::Uk => "uk",
            Region::Us => "us",
        }
    }
}

/// The `environment` section of an outbound connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// Stage, if set.
    pub stage: Option<Stage>,
    /// Region, if set.
    pub region: Option<Region>,
    /// Explicit GraphQL endpoint.
    pub graphql_endpoint: Option<String>,
    /// Explicit OAuth token endpoint.
    pub oauth2_endpoint: Option<String>,
    /// Explicit REST API base (up to and including `/v1`).
    pub rest_endpoint: Option<String>,
}

impl Environment {
    /// Read the `environment` object of a connection config (absent → blank). Unknown stage
    /// or region values are problems for [`Environment::problems`]; here they read as unset.
    pub fn from_config(env: Option<&Value>) -> Environment {
        let s = |k: &str| {
            env.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        Environment {
            stage: s("stage").and_then(|v| Stage::parse(&v)),
            region: s("region").and_then(|v| Region::parse(&v)),
            graphql_endpoint: s("graphql_endpoint"),
            oauth2_endpoint: s("oauth2_endpoint"),
            rest_endpoint: s("rest_endpoint"),
        }
    }

    /// Problems of an `environment` object (spec §2.1 validator): blank is valid; both
    /// `graphql_endpoint` and `oauth2_endpoint` is valid; anything else needs a `stage`.
    /// Endpoints must be absolute http(s) URLs.
    pub fn problems(env: Option<&Value>) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(obj) = env.and_then(Value::as_object) else {
            return problems;
        };
        let present = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.trim().is_empty())
        };
        if let Some(stage) = obj.get("stage").and_then(Value::as_str) {
            if !stage.trim().is_empty() && Stage::parse(stage).is_none() {
                problems.push(format!(
                    "environment.stage: unknown stage '{stage}' (use Prod, QA or Demo)"
                ));
            }
        }
        if let Some(region) = obj.get("region").and_then(Value::as_str) {
            if !region.trim().is_empty() && Region::parse(region).is_none() {
                problems.push(format!(
                    "environment.region: unknown region '{region}' (use au, ch, uk or us)"
                ));
            }
        }
        for key in ["graphql_endpoint", "oauth2_endpoint", "rest_endpoint"] {
            if let Some(v) = obj.get(key).and_then(Value::as_str) {
                if !v.trim().is_empty() && !is_http_url(v.trim()) {
                    problems.push(format!(
                        "environment.{key}: '{v}' is not an absolute http(s) URL"
                    ));
                }
            }
        }
        let blank = obj.values().all(|v| match v {
            Value::Null => true,
            Value::String(s) => s.trim().is_empty(),
            _ => false,
        });
        let endpoints_only = present("graphql_endpoint") && present("oauth2_endpoint");
        if !(blank || present("stage") || endpoints_only) {
            problems.push(
                "environment: set a stage (Prod, QA or Demo), or both graphql_endpoint and oauth2_endpoint"
                    .into(),
            );
        }
        problems
    }
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .unwrap_or(false)
}

/// The domain of a stage and region: `xurrent.com`, `us.xurrent.com`, `au.xurrent.qa`,
/// `xurrent-demo.com` (the region is ignored for Demo).
pub fn xurrent_domain(stage: Option<Stage>, region: Option<Region>) -> String {
    let stage = stage.unwrap_or(Stage::Prod);
    match (stage, region) {
        (Stage::Demo, _) | (_, None) => stage.base_domain().to_string(),
        (_, Some(r)) => format!("{}.{}", r.as_str(), stage.base_domain()),
    }
}

/// The resolved endpoints of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// GraphQL endpoint (every query and mutation is a POST to it).
    pub graphql: String,
    /// OAuth 2 token endpoint.
    pub oauth2: String,
    /// REST API base, e.g. `https://api.xurrent.com/v1` (the Webhooks API is `<rest>/webhooks`).
    pub rest: String,
}

impl Endpoints {
    /// Resolve the endpoints of an environment: explicit ones verbatim, the others derived.
    pub fn resolve(env: &Environment) -> Endpoints {
        let domain = xurrent_domain(env.stage, env.region);
        Endpoints {
            graphql: env
                .graphql_endpoint
                .clone()
                .unwrap_or_else(|| format!("https://graphql.{domain}")),
            oauth2: env
                .oauth2_endpoint
                .clone()
                .unwrap_or_else(|| format!("https://oauth.{domain}/token")),
            rest: env
                .rest_endpoint
                .clone()
                .unwrap_or_else(|| format!("https://api.{domain}/v1")),
        }
    }

    /// The token introspection URL: scheme, host and (non-default) port of the OAuth endpoint
    /// with path `/introspect`.
    pub fn introspect(&self) -> Result<String, String> {
        let url = url::Url::parse(&self.oauth2)
            .map_err(|_| format!("URI {} is invalid.", self.oauth2))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("URI {} is invalid.", self.oauth2))?;
        Ok(match url.port() {
            Some(port) => format!("{}://{host}:{port}/introspect", url.scheme()),
            None => format!("{}://{host}/introspect", url.scheme()),
        })
    }

    /// `<rest>/<path>` with exactly one `/` between them.
    pub fn rest_url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.rest.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(v: Value) -> Environment {
        Environment::from_config(Some(&v))
    }

    #[test]
    fn every_stage_and_region() {
        let expected_domain = |stage: Stage, region: Option<Region>| match (stage, region) {
            (Stage::Prod, None) => "xurrent.com".to_string(),
            (Stage::Qa, None) => "xurrent.qa".to_string(),
            (Stage::Demo, _) => "xurrent-demo.com".to_string(),
            (Stage::Prod, Some(r)) => format!("{}.xurrent.com", r.as_str()),
            (Stage::Qa, Some(r)) => format!("{}.xurrent.qa", r.as_str()),
        };
        let regions = std::iter::once(None).chain(Region::ALL.into_iter().map(Some));
        for region in regions {
            for stage in Stage::ALL {
                let mut config = json!({ "stage": stage.as_str() });
                if let Some(r) = region {
                    config["region"] = json!(r.as_str());
                }
                let e = Endpoints::resolve(&env(config));
                let d = expected_domain(stage, region);
                assert_eq!(
                    e.graphql,
                    format!("https://graphql.{d}"),
                    "{stage:?} {region:?}"
                );
                assert_eq!(e.oauth2, format!("https://oauth.{d}/token"));
                assert_eq!(e.rest, format!("https://api.{d}/v1"));
                assert_eq!(
                    e.introspect().unwrap(),
                    format!("https://oauth.{d}/introspect")
                );
            }
        }
    }

    #[test]
    fn spec_examples() {
        let e = Endpoints::resolve(&env(json!({"stage": "Prod"})));
        assert_eq!(e.oauth2, "https://oauth.xurrent.com/token");
        assert_eq!(
            e.introspect().unwrap(),
            "https://oauth.xurrent.com/introspect"
        );
        let e = Endpoints::resolve(&env(json!({"stage": "Prod", "region": "us"})));
        assert_eq!(e.oauth2, "https://oauth.us.xurrent.com/token");
        let e = Endpoints::resolve(&env(json!({"stage": "Demo", "region": "us"})));
        assert_eq!(e.oauth2, "https://oauth.xurrent-demo.com/token");
        assert_eq!(e.graphql, "https://graphql.xurrent-demo.com");
        let e = Endpoints::resolve(&env(json!({"stage": "QA", "region": "au"})));
        assert_eq!(e.graphql, "https://graphql.au.xurrent.qa");
        // Blank environment: production, global.
        let e = Endpoints::resolve(&Environment::from_config(None));
        assert_eq!(e.graphql, "https://graphql.xurrent.com");
        assert_eq!(e.oauth2, "https://oauth.xurrent.com/token");
    }

    #[test]
    fn overrides_win_and_introspect_keeps_a_non_default_port() {
        let e = Endpoints::resolve(&env(json!({
            "stage": "Prod",
            "region": "uk",
            "graphql_endpoint": "https://graphql.xurrent-test.com/",
            "oauth2_endpoint": "https://oauth.custom-test.com:8443/token",
        })));
        assert_eq!(e.graphql, "https://graphql.xurrent-test.com/");
        assert_eq!(e.oauth2, "https://oauth.custom-test.com:8443/token");
        assert_eq!(e.rest, "https://api.uk.xurrent.com/v1");
        assert_eq!(
            e.introspect().unwrap(),
            "https://oauth.custom-test.com:8443/introspect"
        );
        let e = Endpoints::resolve(&env(json!({
            "graphql_endpoint": "http://127.0.0.1:4780/graphql",
            "oauth2_endpoint": "http://127.0.0.1:4780/token",
            "rest_endpoint": "http://127.0.0.1:4780/v1/",
        })));
        assert_eq!(e.introspect().unwrap(), "http://127.0.0.1:4780/introspect");
        assert_eq!(e.rest_url("/webhooks"), "http://127.0.0.1:4780/v1/webhooks");
        let e = Endpoints::resolve(&env(json!({
            "stage": "Prod",
            "oauth2_endpoint": "https://oauth.example.com:443/token",
        })));
        assert_eq!(
            e.introspect().unwrap(),
            "https://oauth.example.com/introspect"
        );
    }

    #[test]
    fn environment_validation_follows_the_spec() {
        let ok = |v: Value| Environment::problems(Some(&v));
        assert!(Environment::problems(None).is_empty());
        assert!(ok(json!({})).is_empty());
        assert!(ok(json!({"stage": "Demo"})).is_empty());
        for stage in ["Prod", "QA"] {
            for region in ["uk", "au", "ch", "us"] {
                assert!(ok(json!({"stage": stage, "region": region})).is_empty());
            }
        }
        assert!(!ok(json!({"region": "us"})).is_empty());
        assert!(!ok(json!({"graphql_endpoint": "https://g.example.com"})).is_empty());
        assert!(!ok(json!({"oauth2_endpoint": "https://o.example.com/token"})).is_empty());
        assert!(ok(json!({
            "graphql_endpoint": "https://g.example.com",
            "oauth2_endpoint": "https://o.example.com/token"
        }))
        .is_empty());
        assert!(
            ok(json!({"stage": "Prod", "graphql_endpoint": "https://g.example.com"})).is_empty()
        );
        assert!(ok(json!({"stage": "Live"}))[0].contains("unknown stage 'Live'"));
        assert!(ok(json!({"stage": "QA", "region": "eu"}))[0].contains("unknown region 'eu'"));
        assert!(ok(json!({"stage": "QA", "rest_endpoint": "ftp://x"}))[0]
            .contains("environment.rest_endpoint"));
    }
}
