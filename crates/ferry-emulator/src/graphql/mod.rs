//! The GraphQL half: a dynamic schema built from the SDL, generic resolvers over the
//! record store, mutations, attachments and rate limiting.
//!
//! Layers, bottom to top (a module imports only modules below it):
//! `model` (the SDL) → `coerce`, `validate`, `introspect` (pure passes over documents and the
//! schema) → `resolve`, `attachments` → `conn_list`, `mutation` (reads and writes over the
//! record store; the model comes with the per-request `Ctx`) → `schema` (the dynamic schema) → `state` (compiled
//! schema and introspection cache) → `http` (the endpoint) and `seed`. Nothing here imports the
//! REST half.

pub mod attachments;
mod coerce;
pub(crate) mod conn_list;
mod http;
mod introspect;
pub(crate) mod model;
mod mutation;
mod resolve;
mod schema;
mod seed;
mod state;
mod validate;

pub use crate::parse_seed_text;
pub use introspect::CONNECTOR_INTROSPECTION_QUERY;
pub use seed::SeedSummary;
pub(crate) use state::GraphqlState;

use std::sync::Arc;

use crate::Emulator;

/// Routes of the GraphQL half (`POST /`, `POST /graphql`, attachment upload/download).
pub fn router() -> axum::Router<Arc<Emulator>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/", post(http::graphql))
        .route("/graphql", post(http::graphql))
        .route(
            "/_emulator/attachments/upload",
            post(attachments::upload).layer(axum::extract::DefaultBodyLimit::max(
                attachments::SIZE_LIMIT + 1024 * 1024,
            )),
        )
        .route("/_emulator/attachments", get(attachments::list))
        .route(
            "/_emulator/attachment_storage",
            get(attachments::get_settings).put(attachments::put_settings),
        )
        .route(
            "/_emulator/attachment_storage/rotate_key",
            post(attachments::rotate_key),
        )
        .route("/_emulator/attachments/{*key}", get(attachments::download))
}

#[cfg(test)]
mod layering {
    /// Each module with its layer (see the module documentation) and its source.
    const MODULES: &[(&str, u8, &str)] = &[
        ("model", 0, include_str!("model.rs")),
        ("coerce", 1, include_str!("coerce.rs")),
        ("validate", 1, include_str!("validate.rs")),
        ("introspect", 1, include_str!("introspect.rs")),
        ("resolve", 2, include_str!("resolve.rs")),
        ("attachments", 2, include_str!("attachments.rs")),
        ("conn_list", 3, include_str!("conn_list.rs")),
        ("mutation", 3, include_str!("mutation.rs")),
        ("schema", 4, include_str!("schema.rs")),
        ("state", 5, include_str!("state.rs")),
        ("http", 6, include_str!("http.rs")),
        ("seed", 6, include_str!("seed.rs")),
    ];

    #[test]
    fn modules_import_only_lower_layers_and_never_the_rest_half() {
        for (name, layer, source) in MODULES {
            // Unit tests may reach anywhere; the layering is about the code itself.
            let code = source.split("#[cfg(test)]").next().unwrap_or(source);
            for (other, other_layer, _) in MODULES {
                if other != name && code.contains(&format!("super::{other}")) {
                    assert!(
                        other_layer < layer,
                        "graphql::{name} (layer {layer}) imports {other} (layer {other_layer})"
                    );
                }
            }
            for banned in ["crate::rest", "crate::bench", "crate::graphql"] {
                assert!(!code.contains(banned), "graphql::{name} uses {banned}");
            }
            if *layer < 5 {
                // The compiled state sits above the resolvers: they get the model from `Ctx`.
                assert!(
                    !code.contains(".gql"),
                    "graphql::{name} reaches into emu.gql"
                );
            }
        }
    }
}
