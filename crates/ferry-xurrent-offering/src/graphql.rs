//! The GraphQL documents (spec §12), sent through [`ferry_xurrent::XurrentClient`]. The full
//! offering selection is §12.1's, plus each attachment's `filename` (to name the image files)
//! and each scope's `conditions`.

/// The full App Offering selection.
pub const OFFERING_FIELDS: &str = "id name reference cardDescription description descriptionAttachments(first: 100) { nodes { key inline expiringUrl filename } } pictureUri features featuresAttachments(first: 100) { nodes { key inline expiringUrl filename } } compliance serviceInstance { name } webhookUriTemplate configurationUriTemplate oauthAuthorizationEndpoints policyJwtAlg policyJwtAudience policyJwtClaimExpiresIn requiresEnabledOauthPerson openidConnectDiscovery scopes { id actions conditions effect grantType } uiExtensionVersion { id css html javascript formDefinition uiExtension { id category description name title } } automationRules(first: 100) { nodes { actions { name value } id condition description expressions { name value } generic name trigger } }";

/// Q1: the unpublished offering with a reference (variables `reference`, `published: false`).
pub fn find_offering() -> String {
    format!("query($reference: String, $published: Boolean) {{ appOfferings(first: 1, filter: {{ published: $published, reference: {{ values: [$reference] }} }} ) {{ nodes {{ {OFFERING_FIELDS} }} }} }}")
}

/// Q5: a service instance by name (variable `name`).
pub const SERVICE_INSTANCE: &str = "query($name: String!) { serviceInstances(first: 1, filter: { name: { values: [$name] } }) { nodes { id } } }";

/// Q6: the UI extension with a source stamp (variables `source`, `sourceID`), with the content
/// of its active version so that it can be compared.
pub const UI_EXTENSION_BY_SOURCE: &str = "query($source: String!, $sourceID: String!) { uiExtensions(first: 1, filter: { source: { values: [$source] }, sourceID: { values: [$sourceID] } }) { nodes { id category description name title activeVersion { id css html javascript formDefinition } } } }";

/// M7: create the offering.
pub const CREATE_OFFERING: &str = "mutation($input: AppOfferingCreateInput!) { appOfferingCreate(input: $input) { errors { path message } appOffering { id } } }";

/// M2: update the offering.
pub const UPDATE_OFFERING: &str = "mutation($input: AppOfferingUpdateInput!) { appOfferingUpdate(input: $input) { appOffering { id } errors { path message } } }";

/// M8: create the UI extension.
pub const CREATE_UI_EXTENSION: &str = "mutation($input: UiExtensionCreateInput!) { uiExtensionCreate(input: $input) { errors { path message } uiExtension { id activeVersion { id } } } }";

/// M8: update the UI extension.
pub const UPDATE_UI_EXTENSION: &str = "mutation($input: UiExtensionUpdateInput!) { uiExtensionUpdate(input: $input) { errors { path message } uiExtension { id activeVersion { id } } } }";

/// M9: create an automation rule.
pub const CREATE_RULE: &str = "mutation($input: AppOfferingAutomationRuleCreateInput!) { appOfferingAutomationRuleCreate(input: $input) { errors { path message } } }";

/// M9: update an automation rule.
pub const UPDATE_RULE: &str = "mutation($input: AppOfferingAutomationRuleUpdateInput!) { appOfferingAutomationRuleUpdate(input: $input) { errors { path message } } }";

/// M9: delete an automation rule.
pub const DELETE_RULE: &str = "mutation($input: AppOfferingAutomationRuleDeleteMutationInput!) { appOfferingAutomationRuleDelete(input: $input) { errors { path message } } }";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_parse() {
        for doc in [
            find_offering().as_str(),
            SERVICE_INSTANCE,
            UI_EXTENSION_BY_SOURCE,
            CREATE_OFFERING,
            UPDATE_OFFERING,
            CREATE_UI_EXTENSION,
            UPDATE_UI_EXTENSION,
            CREATE_RULE,
            UPDATE_RULE,
            DELETE_RULE,
        ] {
            async_graphql_parser::parse_query(doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
        }
    }
}
