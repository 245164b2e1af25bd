//! The API Gateway REQUEST authorizer: checks the Bearer key (the same `auth::verify_key` the
//! functions use), and answers with the tenant as principal, `{tenant_id, tier}` as context, and
//! the tenant's API Gateway key as `usageIdentifierKey`, so usage plans throttle per tenant.

use crate::auth::{KeyCache, bearer_token, verify_key};
use crate::store::TenantStore;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
};
use lambda_http::aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use serde_json::json;

/// The one message API Gateway turns into a 401 (its UNAUTHORIZED gateway response).
pub const UNAUTHORIZED: &str = "Unauthorized";

#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    /// Missing, malformed, unknown, revoked or expired key: API Gateway answers 401.
    #[error("Unauthorized")]
    Unauthorized,
    /// The store failed: API Gateway answers 500 (AUTHORIZER_FAILURE), never a wrong allow.
    #[error("authorizer failure")]
    Failure,
}

/// `arn:aws:execute-api:region:account:api/stage/METHOD/path` -> `.../api/stage/*/*`, so one
/// cached decision covers every route of the stage.
fn stage_wide_arn(method_arn: &str) -> Option<String> {
    let (prefix, rest) = method_arn.split_once(":execute-api:")?;
    let mut parts = rest.splitn(3, '/');
    let api = parts.next()?;
    let stage = parts.next()?;
    Some(format!("{prefix}:execute-api:{api}/{stage}/*/*"))
}

pub async fn authorize(
    store: &dyn TenantStore,
    cache: &KeyCache,
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<ApiGatewayCustomAuthorizerResponse, AuthorizerError> {
    let header = event.headers.get("authorization").and_then(|v| v.to_str().ok());
    let token = bearer_token(header).ok_or(AuthorizerError::Unauthorized)?;
    let key = verify_key(store, cache, token).await.map_err(|e| match e.code {
        crate::error::ErrorCode::Unauthorized => AuthorizerError::Unauthorized,
        _ => AuthorizerError::Failure,
    })?;
    let tenant = match store.get_tenant(&key.tenant_id).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => return Err(AuthorizerError::Unauthorized),
        Err(e) => {
            tracing::error!(error = %e, "authorizer could not read the tenant");
            return Err(AuthorizerError::Failure);
        }
    };
    let resource = event.method_arn.as_deref().and_then(stage_wide_arn).ok_or(AuthorizerError::Unauthorized)?;
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_string()];
    statement.effect = IamPolicyEffect::Allow;
    statement.resource = vec![resource];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".to_string());
    policy.statement = vec![statement];
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    response.principal_id = Some(tenant.tenant_id.clone());
    response.policy_document = policy;
    response.context = json!({ "tenant_id": tenant.tenant_id, "tier": tenant.tier, "key_id": key.key_id });
    response.usage_identifier_key = tenant.usage_key_value;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_covers_the_whole_stage() {
        assert_eq!(
            stage_wide_arn("arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/v1/workflows/01J").as_deref(),
            Some("arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*/*")
        );
        assert_eq!(stage_wide_arn("not an arn"), None);
    }
}
