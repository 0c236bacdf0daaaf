//! Authorization Code Token (`xurrent_app.authorization_code_token`, spec §10.2): the OAuth
//! application (authorization-code grant) Xurrent created in the customer's account for the
//! App — node id, client id and the sealed client secret — for GUI / user access. No OAuth
//! flow runs and nothing is sent anywhere; nothing stored gives null outputs.

use async_trait::async_trait;
use ferry_core::schema::Schema;
use ferry_engine::action::{Action, ActionContext, ActionKind, ActionSpec, Output, Signal};
use ferry_engine::Registry;

use crate::action_support::customer_fields;
use crate::client_credentials_token::{run_token, token_output, Grant};
use crate::connection::CONNECTOR;

/// Register the action.
pub fn register(r: &mut Registry) {
    r.action(AuthorizationCodeToken::new());
}

/// The action.
pub struct AuthorizationCodeToken(ActionSpec);

impl Default for AuthorizationCodeToken {
    fn default() -> Self {
        AuthorizationCodeToken::new()
    }
}

impl AuthorizationCodeToken {
    /// The action.
    pub fn new() -> AuthorizationCodeToken {
        AuthorizationCodeToken(ActionSpec {
            name: "xurrent_app.authorization_code_token",
            description: "The customer's authorization-code OAuth application for the App",
            input: customer_fields(),
            outputs: vec![Schema::new(
                "output",
                token_output(Grant::AuthorizationCode),
            )],
            nested: false,
            kind: ActionKind::Normal,
            connection: Some(CONNECTOR),
        })
    }
}

#[async_trait]
impl Action for AuthorizationCodeToken {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }

    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<Vec<Output>, Signal> {
        run_token(ctx, Grant::AuthorizationCode).await
    }
}
