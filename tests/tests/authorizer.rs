//! The REQUEST authorizer, and functions taking the tenant from its context (API Gateway in
//! AWS) or checking the key themselves (the local stack), never from a client header.

use lambda_http::aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use nodeai::api::{Route, handle};
use nodeai::auth::KeyCache;
use nodeai::authorizer::{AuthorizerError, authorize};
use nodeai::store::TenantStore;
use nodeai_tests::{Reply, TestApp, sample_definition};
use std::time::Duration;

fn event(key: &str) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../events/authorizer.json"))
        .unwrap()
        .replace("nk_dev_local_only_not_a_secret_0000000000", key);
    serde_json::from_str(&text).expect("events/authorizer.json is an API Gateway REQUEST authorizer event")
}

#[tokio::test]
async fn a_live_key_is_allowed_with_tenant_tier_and_usage_key() {
    let t = TestApp::new().await;
    assert!(t.store.update_tenant_plan(&t.tenant_id, "pro", "gw-id-1", "gw-value-1").await.unwrap());
    let cache = KeyCache::new(Duration::from_secs(30));
    let response = authorize(t.store.as_ref(), &cache, &event(&t.key)).await.expect("allowed");
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(json["principalId"], t.tenant_id.as_str());
    assert_eq!(json["usageIdentifierKey"], "gw-value-1");
    assert_eq!(json["context"]["tenant_id"], t.tenant_id.as_str());
    assert_eq!(json["context"]["tier"], "pro");
    let statement = &json["policyDocument"]["Statement"][0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Action"], serde_json::json!(["execute-api:Invoke"]));
    assert_eq!(
        statement["Resource"],
        serde_json::json!(["arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*/*"])
    );
}

#[tokio::test]
async fn unknown_malformed_revoked_and_missing_keys_are_unauthorized() {
    let t = TestApp::new().await;
    let cache = KeyCache::new(Duration::ZERO);
    for key in ["nk_unknown_0000000000000000000000", "not-a-key", ""] {
        let refused = authorize(t.store.as_ref(), &cache, &event(key)).await.unwrap_err();
        assert!(matches!(refused, AuthorizerError::Unauthorized), "{key}");
        assert_eq!(refused.to_string(), "Unauthorized", "API Gateway maps exactly this message to 401");
    }
    let record = t.store.find_api_key(&nodeai::auth::hash_key(&t.key)).await.unwrap().unwrap();
    t.store.revoke_api_key(&record.key_hash, &nodeai::model::now_rfc3339()).await.unwrap();
    let refused = authorize(t.store.as_ref(), &cache, &event(&t.key)).await.unwrap_err();
    assert!(matches!(refused, AuthorizerError::Unauthorized));
}

/// A REST (v1) event as API Gateway sends it after the authorizer allowed the request.
fn authorized_event(tenant_id: &str, workflow_id: &str, authorization: Option<&str>) -> lambda_http::Request {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../events/get-workflow.json")).unwrap();
    let mut event: serde_json::Value =
        serde_json::from_str(&text.replace("01JDX7Q5ZK3V4M8N2P6R9T0W1Y", workflow_id)).unwrap();
    event["requestContext"]["authorizer"] =
        serde_json::json!({ "principalId": tenant_id, "tenant_id": tenant_id, "tier": "free" });
    for headers in ["headers", "multiValueHeaders"] {
        let map = event[headers].as_object_mut().unwrap();
        map.remove("Authorization");
        if let Some(value) = authorization {
            map.insert(
                "Authorization".into(),
                if headers == "headers" { value.into() } else { serde_json::json!([value]) },
            );
        }
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn functions_take_the_tenant_from_the_authorizer_context() {
    let t = TestApp::new().await;
    let id = t.create_workflow(sample_definition("behind the authorizer")).await;
    // No Authorization header at all: the authorizer already checked it.
    let reply = Reply::from(handle(&t.app, Route::GetWorkflow, authorized_event(&t.tenant_id, &id, None)).await);
    assert_eq!(reply.status, 200, "{}", reply.raw);
    // The context names another tenant: that tenant's view, whatever key the header carries.
    let (other_tenant, _) = t.other_tenant().await;
    let header = format!("Bearer {}", t.key);
    let reply =
        Reply::from(handle(&t.app, Route::GetWorkflow, authorized_event(&other_tenant, &id, Some(&header))).await);
    reply.assert_error(404, "WORKFLOW_NOT_FOUND");
}
