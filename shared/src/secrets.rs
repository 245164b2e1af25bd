//! Provider credentials: their secret values live in a `SecretStore` (Secrets Manager) under a
//! tenant-scoped name; the engine reads them through `CredentialResolver`, a TTL cache.

use crate::error::StoreError;
use crate::model::StepErrorCode;
use crate::store::SecretStore;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub const PROVIDERS: &[&str] = &["openai", "anthropic"];
/// The longest a changed or deleted secret can go unnoticed by a warm worker.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(300);

/// The secret's name: scoped by stage and tenant, so one tenant's name can never reach another's.
pub fn secret_name(stage: &str, tenant_id: &str, credential: &str) -> String {
    format!("nodeai/{stage}/{tenant_id}/{credential}")
}

/// `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`, the same rule llm.chat's `credential` field uses.
pub fn is_valid_credential_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// What a node needs to call a provider. `Debug` never prints the key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderCredential {
    pub provider: String,
    pub api_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

impl fmt::Debug for ProviderCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderCredential")
            .field("provider", &self.provider)
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Maps to the node error code `CREDENTIAL_NOT_FOUND`.
    #[error("credential '{0}' was not found")]
    NotFound(String),
    #[error("the stored credential '{0}' is not readable")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CredentialError {
    pub fn code(&self) -> StepErrorCode {
        match self {
            CredentialError::NotFound(_) => StepErrorCode::CredentialNotFound,
            CredentialError::Malformed(_) => StepErrorCode::CredentialInvalid,
            CredentialError::Store(_) => StepErrorCode::CredentialUnavailable,
        }
    }
}

/// Reads credentials through a per-instance cache keyed by (tenant, name). A changed secret is
/// picked up once its entry is older than the TTL; misses are not cached, so a credential made
/// after a failed run works at once.
pub struct CredentialResolver {
    secrets: Arc<dyn SecretStore>,
    stage: String,
    ttl: Duration,
    cache: Mutex<HashMap<(String, String), (Instant, ProviderCredential)>>,
}

impl CredentialResolver {
    pub fn new(secrets: Arc<dyn SecretStore>, stage: &str, ttl: Duration) -> Self {
        CredentialResolver { secrets, stage: stage.to_string(), ttl: ttl.min(MAX_CACHE_TTL), cache: Mutex::default() }
    }

    pub async fn resolve(&self, tenant_id: &str, name: &str) -> Result<ProviderCredential, CredentialError> {
        let key = (tenant_id.to_string(), name.to_string());
        if let Some((fetched, credential)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && fetched.elapsed() < self.ttl
        {
            return Ok(credential.clone());
        }
        let raw = self
            .secrets
            .get_secret(&secret_name(&self.stage, tenant_id, name))
            .await?
            .ok_or_else(|| CredentialError::NotFound(name.to_string()))?;
        let credential: ProviderCredential =
            serde_json::from_str(&raw).map_err(|_| CredentialError::Malformed(name.to_string()))?;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (Instant::now(), credential.clone()));
        Ok(credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn stored(provider: &str, key: &str) -> String {
        serde_json::to_string(&ProviderCredential { provider: provider.into(), api_key: key.into(), base_url: None })
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_secret_is_picked_up_after_the_ttl_and_not_before() {
        let store = Arc::new(MemoryStore::new());
        let resolver = CredentialResolver::new(store.clone(), "test", Duration::from_secs(60));
        let name = secret_name("test", "t1", "main");
        store.put_secret(&name, &stored("openai", "sk-one")).await.unwrap();
        assert_eq!(resolver.resolve("t1", "main").await.unwrap().api_key, "sk-one");
        store.put_secret(&name, &stored("openai", "sk-two")).await.unwrap();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(resolver.resolve("t1", "main").await.unwrap().api_key, "sk-one", "still cached");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(resolver.resolve("t1", "main").await.unwrap().api_key, "sk-two", "refreshed after the TTL");
    }

    #[tokio::test]
    async fn missing_credentials_are_not_found_and_tenants_do_not_share() {
        let store = Arc::new(MemoryStore::new());
        let resolver = CredentialResolver::new(store.clone(), "test", Duration::from_secs(60));
        let missing = resolver.resolve("t1", "main").await.unwrap_err();
        assert_eq!(missing.code(), StepErrorCode::CredentialNotFound);
        store.put_secret(&secret_name("test", "t1", "main"), &stored("anthropic", "sk-ant")).await.unwrap();
        assert_eq!(resolver.resolve("t1", "main").await.unwrap().provider, "anthropic");
        assert_eq!(resolver.resolve("t2", "main").await.unwrap_err().code(), StepErrorCode::CredentialNotFound);
    }

    #[test]
    fn the_ttl_is_capped_at_five_minutes_and_debug_redacts() {
        let resolver = CredentialResolver::new(Arc::new(MemoryStore::new()), "s", Duration::from_secs(3600));
        assert_eq!(resolver.ttl, MAX_CACHE_TTL);
        let credential = ProviderCredential { provider: "openai".into(), api_key: "sk-secret".into(), base_url: None };
        assert!(!format!("{credential:?}").contains("sk-secret"));
    }

    #[test]
    fn names_are_checked() {
        assert!(is_valid_credential_name("openai-main"));
        assert!(!is_valid_credential_name("-x"));
        assert!(!is_valid_credential_name("a/b"));
        assert!(!is_valid_credential_name(&"a".repeat(65)));
        assert!(!is_valid_credential_name(""));
    }
}
