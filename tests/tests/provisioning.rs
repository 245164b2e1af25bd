//! Tenant provisioning against the emulator's API Gateway: the tenant's usage key lands in its
//! tier's plan, and set-tier moves it.

use nodeai::store::TenantStore;
use nodeai_admin::provisioning::{ApiGatewayUsagePlans, UsagePlans, create_tenant, plan_name, set_tier};
use nodeai_tests::{emulator_endpoint, fresh_store};

async fn plans() -> ApiGatewayUsagePlans {
    emulator_endpoint();
    let sdk = aws_config::load_from_env().await;
    ApiGatewayUsagePlans::new(aws_sdk_apigateway::Client::new(&sdk))
}

fn prefix() -> String {
    format!("nodeai-t{}", ulid::Ulid::new().to_string().to_lowercase())
}

#[tokio::test]
async fn a_new_tenant_gets_a_usage_key_in_its_tiers_plan() {
    let (store, plans, prefix) = (fresh_store().await, plans().await, prefix());
    plans.ensure_plans(&prefix).await.unwrap();
    plans.ensure_plans(&prefix).await.expect("idempotent");
    let (tenant, key) = create_tenant(&store, &plans, &prefix, "Acme", "pro", None).await.unwrap();
    assert!(key.starts_with("nk_"));
    let usage_key = tenant.usage_key_id.clone().expect("a usage key");
    assert!(tenant.usage_key_value.as_ref().is_some_and(|v| v.len() >= 30));
    assert_eq!(plans.keys_in(&plan_name(&prefix, "pro")).await.unwrap(), vec![usage_key.clone()]);
    assert!(plans.keys_in(&plan_name(&prefix, "free")).await.unwrap().is_empty());
    let stored = store.get_tenant(&tenant.tenant_id).await.unwrap().unwrap();
    assert_eq!(stored, tenant, "the table knows the tier and usage key the authorizer returns");

    let moved = set_tier(&store, &plans, &prefix, &tenant.tenant_id, "enterprise").await.unwrap();
    assert_eq!(moved.tier, "enterprise");
    assert!(plans.keys_in(&plan_name(&prefix, "pro")).await.unwrap().is_empty());
    assert_eq!(plans.keys_in(&plan_name(&prefix, "enterprise")).await.unwrap(), vec![usage_key]);
}

#[tokio::test]
async fn unknown_tiers_and_missing_plans_are_refused() {
    let (store, plans, prefix) = (fresh_store().await, plans().await, prefix());
    assert!(create_tenant(&store, &plans, &prefix, "Acme", "platinum", None).await.is_err());
    let missing = create_tenant(&store, &plans, &prefix, "Acme", "free", None).await.unwrap_err();
    assert!(missing.to_string().contains("USAGE_PLAN_PREFIX"), "{missing}");
}
