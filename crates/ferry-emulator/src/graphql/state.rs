//! The compiled GraphQL half: the SDL model, the executable dynamic schema and the cache of
//! introspection answers, built once per SDL text and shared by every emulator of the process.

use std::sync::Arc;

use serde_json::Value;

use super::introspect::{Universe, CONNECTOR_INTROSPECTION_QUERY};
use super::model::{base_name, Kind, Model};
use super::schema::build_schema;
use crate::EmulatorError;

/// Key of the introspection cache.
pub(crate) fn cache_key(
    operation_name: Option<&str>,
    vars: &async_graphql::Variables,
    query: &str,
) -> String {
    // Whitespace runs are insignificant outside strings; introspection documents carry no
    // strings, so collapsing them lets formatting variants share one entry.
    let normalized = query.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("{operation_name:?}\u{0}{vars}\u{0}{normalized}")
}

/// Parsed SDL and the executable schema.
pub(crate) struct GraphqlState {
    pub(crate) model: Arc<Model>,
    pub(crate) schema: async_graphql::dynamic::Schema,
    /// Introspection data for fast answers (captured by `prewarm`).
    pub(crate) universe: std::sync::OnceLock<Arc<Universe>>,
    /// Serialized answers of introspection-only requests (the schema never changes).
    pub(crate) introspection_cache:
        parking_lot::Mutex<std::collections::HashMap<String, bytes::Bytes>>,
}

/// What one SDL text compiles to; shared by every emulator of the process built from the same
/// text (the schema is immutable, and tests build many emulators).
#[derive(Clone)]
struct Compiled {
    sdl: Arc<str>,
    model: Arc<Model>,
    schema: async_graphql::dynamic::Schema,
    /// The pre-computed answer to the connector's introspection query.
    introspection: Option<bytes::Bytes>,
    /// Introspection data for fast answers.
    universe: Option<Arc<Universe>>,
}

static COMPILED: parking_lot::Mutex<Option<Compiled>> = parking_lot::Mutex::new(None);

impl GraphqlState {
    pub(crate) fn from_sdl(sdl: &str) -> Result<Self, EmulatorError> {
        let cached = COMPILED.lock().as_ref().filter(|c| &*c.sdl == sdl).cloned();
        let compiled = match cached {
            Some(c) => c,
            None => {
                let model = Arc::new(Model::parse(sdl)?);
                let schema = build_schema(&model)?;
                let c = Compiled {
                    sdl: Arc::from(sdl),
                    model,
                    schema,
                    introspection: None,
                    universe: None,
                };
                *COMPILED.lock() = Some(c.clone());
                c
            }
        };
        let state = GraphqlState {
            model: compiled.model,
            schema: compiled.schema,
            universe: Default::default(),
            introspection_cache: Default::default(),
        };
        if let Some(u) = compiled.universe {
            let _ = state.universe.set(u);
        }
        if let Some(bytes) = compiled.introspection {
            state.insert_connector_introspection(bytes);
        }
        Ok(state)
    }

    fn insert_connector_introspection(&self, bytes: bytes::Bytes) {
        let query = CONNECTOR_INTROSPECTION_QUERY;
        let key = cache_key(None, &async_graphql::Variables::default(), query);
        self.introspection_cache.lock().insert(key, bytes);
    }

    /// Answer the connector's introspection query (xurrent_connector.md §4.1) once and keep
    /// the answer, so that the first client introspection is served from the cache.
    pub(crate) async fn prewarm(&self) {
        if self.universe.get().is_none() {
            if let Some(u) = Universe::capture(&self.schema, &self.model).await {
                let u = Arc::new(u);
                let _ = self.universe.set(u.clone());
                if let Some(c) = COMPILED.lock().as_mut() {
                    if Arc::ptr_eq(&c.model, &self.model) {
                        c.universe = Some(u);
                    }
                }
            }
        }
        let query = CONNECTOR_INTROSPECTION_QUERY;
        let key = cache_key(None, &async_graphql::Variables::default(), query);
        if self.introspection_cache.lock().contains_key(&key) {
            return;
        }
        let projected = async_graphql_parser::parse_query(query)
            .ok()
            .and_then(|doc| self.universe()?.answer(&doc, None, &Value::Null));
        let serialized = match projected {
            Some(answer) => Ok(answer),
            None => {
                let resp = self
                    .schema
                    .execute(async_graphql::Request::new(query))
                    .await;
                if !resp.errors.is_empty() {
                    tracing::warn!(errors = ?resp.errors, "introspection pre-warm failed");
                    return;
                }
                serde_json::to_vec(&resp)
            }
        };
        if let Ok(bytes) = serialized {
            let bytes = bytes::Bytes::from(bytes);
            if let Some(c) = COMPILED.lock().as_mut() {
                if Arc::ptr_eq(&c.model, &self.model) {
                    c.introspection = Some(bytes.clone());
                }
            }
            self.insert_connector_introspection(bytes);
        }
    }

    /// The captured introspection universe, if any.
    pub(crate) fn universe(&self) -> Option<&Universe> {
        self.universe.get().map(|u| u.as_ref())
    }

    /// Whether `name` is an object type with an `id` (a storable record type).
    pub(crate) fn is_record_type(&self, name: &str) -> bool {
        self.model.is_record_type(name)
    }

    /// Map `@wireValue` spellings of enum fields to their GraphQL names (other values unchanged).
    pub(crate) fn normalize_enum_value(&self, typename: &str, field: &str, v: &Value) -> Value {
        let Some(f) = self.model.get(typename).and_then(|t| t.fields.get(field)) else {
            return v.clone();
        };
        let ty = base_name(&f.ty);
        if self.model.kind(ty) != Some(Kind::Enum) {
            return v.clone();
        }
        normalize_enum_json(&self.model, ty, v)
    }
}

fn normalize_enum_json(model: &Model, enum_type: &str, v: &Value) -> Value {
    match v {
        Value::String(s) => match model.enum_name(enum_type, s) {
            Some(n) => Value::String(n.to_string()),
            None => v.clone(),
        },
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| normalize_enum_json(model, enum_type, x))
                .collect(),
        ),
        other => other.clone(),
    }
}
