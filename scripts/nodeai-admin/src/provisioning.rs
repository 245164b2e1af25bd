//! Tenant provisioning: a tenant's API Gateway key in its tier's usage plan (so API Gateway
//! throttles each tenant in its own bucket), and its first NodeAI key. Used by `scripts/admin`.

use async_trait::async_trait;
use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::error::DisplayErrorContext;
use base64::Engine;
use nodeai::auth::provision_tenant;
use nodeai::error::StoreError;
use nodeai::model::{TIERS, Tenant};
use nodeai::store::TenantStore;
use rand::RngCore;

/// The usage plans port: API Gateway in AWS and on the emulator.
#[async_trait]
pub trait UsagePlans: Send + Sync {
    /// Creates an enabled API Gateway key; returns (id, value).
    async fn create_key(&self, name: &str, value: &str) -> Result<String, StoreError>;
    async fn attach(&self, plan_name: &str, key_id: &str) -> Result<(), StoreError>;
    async fn detach(&self, plan_name: &str, key_id: &str) -> Result<(), StoreError>;
    /// The key ids in a plan.
    async fn keys_in(&self, plan_name: &str) -> Result<Vec<String>, StoreError>;
    /// Creates missing plans `<prefix>-free|pro|enterprise` (local stack; template.yaml owns them in AWS).
    async fn ensure_plans(&self, prefix: &str) -> Result<(), StoreError>;
}

pub fn plan_name(prefix: &str, tier: &str) -> String {
    format!("{prefix}-{tier}")
}

fn check_tier(tier: &str) -> Result<(), StoreError> {
    if TIERS.contains(&tier) {
        Ok(())
    } else {
        Err(StoreError::Internal(format!("tier must be one of {}", TIERS.join(", "))))
    }
}

/// Creates the tenant with its first key, its API Gateway key, and puts that key in the tier's
/// plan. Returns the tenant and the NodeAI key (shown once).
pub async fn create_tenant(
    store: &dyn TenantStore,
    plans: &dyn UsagePlans,
    prefix: &str,
    name: &str,
    tier: &str,
    chosen_key: Option<&str>,
) -> Result<(Tenant, String), StoreError> {
    check_tier(tier)?;
    let (mut tenant, key) = provision_tenant(store, name, tier, chosen_key).await?;
    let mut bytes = [0u8; 30];
    rand::rng().fill_bytes(&mut bytes);
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let key_id = plans.create_key(&format!("nodeai-tenant-{}", tenant.tenant_id), &value).await?;
    plans.attach(&plan_name(prefix, tier), &key_id).await?;
    store.update_tenant_plan(&tenant.tenant_id, tier, &key_id, &value).await?;
    tenant.usage_key_id = Some(key_id);
    tenant.usage_key_value = Some(value);
    Ok((tenant, key))
}

/// Moves a tenant to another tier's plan.
pub async fn set_tier(
    store: &dyn TenantStore,
    plans: &dyn UsagePlans,
    prefix: &str,
    tenant_id: &str,
    tier: &str,
) -> Result<Tenant, StoreError> {
    check_tier(tier)?;
    let tenant =
        store.get_tenant(tenant_id).await?.ok_or_else(|| StoreError::Internal(format!("no tenant {tenant_id}")))?;
    let (Some(key_id), Some(value)) = (tenant.usage_key_id.clone(), tenant.usage_key_value.clone()) else {
        return Err(StoreError::Internal("the tenant has no usage plan key; it was made without one".into()));
    };
    if tenant.tier != tier {
        plans.attach(&plan_name(prefix, tier), &key_id).await?;
        plans.detach(&plan_name(prefix, &tenant.tier), &key_id).await?;
        store.update_tenant_plan(tenant_id, tier, &key_id, &value).await?;
    }
    store.get_tenant(tenant_id).await?.ok_or_else(|| StoreError::Internal("tenant vanished".into()))
}

pub struct ApiGatewayUsagePlans {
    client: Client,
}

impl ApiGatewayUsagePlans {
    pub fn new(client: Client) -> Self {
        ApiGatewayUsagePlans { client }
    }

    async fn plan_id(&self, plan_name: &str) -> Result<Option<String>, StoreError> {
        let mut position = None;
        loop {
            let out = self.client.get_usage_plans().set_position(position).limit(500).send().await.map_err(fail)?;
            if let Some(plan) = out.items().iter().find(|p| p.name() == Some(plan_name)) {
                return Ok(plan.id().map(str::to_string));
            }
            match out.position {
                Some(next) => position = Some(next),
                None => return Ok(None),
            }
        }
    }

    async fn require_plan(&self, plan_name: &str) -> Result<String, StoreError> {
        self.plan_id(plan_name).await?.ok_or_else(|| {
            StoreError::Internal(format!("usage plan {plan_name} was not found; is USAGE_PLAN_PREFIX right?"))
        })
    }
}

fn fail<E: std::error::Error + 'static>(err: E) -> StoreError {
    StoreError::Internal(DisplayErrorContext(&err).to_string())
}

#[async_trait]
impl UsagePlans for ApiGatewayUsagePlans {
    async fn create_key(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let out = self.client.create_api_key().name(name).value(value).enabled(true).send().await.map_err(fail)?;
        out.id.ok_or_else(|| StoreError::Internal("API Gateway returned no key id".into()))
    }

    async fn attach(&self, plan_name: &str, key_id: &str) -> Result<(), StoreError> {
        let plan = self.require_plan(plan_name).await?;
        self.client
            .create_usage_plan_key()
            .usage_plan_id(plan)
            .key_id(key_id)
            .key_type("API_KEY")
            .send()
            .await
            .map_err(fail)?;
        Ok(())
    }

    async fn detach(&self, plan_name: &str, key_id: &str) -> Result<(), StoreError> {
        let plan = self.require_plan(plan_name).await?;
        self.client.delete_usage_plan_key().usage_plan_id(plan).key_id(key_id).send().await.map_err(fail)?;
        Ok(())
    }

    async fn keys_in(&self, plan_name: &str) -> Result<Vec<String>, StoreError> {
        let plan = self.require_plan(plan_name).await?;
        let out = self.client.get_usage_plan_keys().usage_plan_id(plan).limit(500).send().await.map_err(fail)?;
        Ok(out.items().iter().filter_map(|k| k.id().map(str::to_string)).collect())
    }

    async fn ensure_plans(&self, prefix: &str) -> Result<(), StoreError> {
        for tier in TIERS {
            let name = plan_name(prefix, tier);
            if self.plan_id(&name).await?.is_none() {
                self.client.create_usage_plan().name(&name).send().await.map_err(fail)?;
            }
        }
        Ok(())
    }
}
