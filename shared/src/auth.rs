//! API keys and tenant resolution. Keys are stored only as SHA-256 hashes.

use crate::error::{ApiError, StoreError};
use crate::model::{ApiKeyRecord, Tenant, new_id, now_rfc3339};
use crate::store::TenantStore;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const KEY_PREFIX: &str = "nk_";
/// Longer bearer tokens are refused before hashing.
const MAX_KEY_LEN: usize = 200;

/// A new random API key: `nk_` + 32 random bytes, base64url.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of the key, hex. The only form a key is stored in.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The token of an `Authorization: Bearer <token>` header value, if well formed.
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    let well_formed = scheme.eq_ignore_ascii_case("bearer")
        && token.starts_with(KEY_PREFIX)
        && token.len() <= MAX_KEY_LEN
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    well_formed.then_some(token)
}

/// The tenant a request's key belongs to. Every failure is the same 401.
pub async fn authenticate(store: &dyn TenantStore, authorization: Option<&str>) -> Result<String, ApiError> {
    let token = bearer_token(authorization).ok_or_else(ApiError::unauthorized)?;
    match store.find_api_key(&hash_key(token)).await? {
        Some(record) => Ok(record.tenant_id),
        None => Err(ApiError::unauthorized()),
    }
}

/// Creates a tenant and its first key; returns the key, which is shown once and never stored.
/// `chosen_key` lets the local stack use a fixed dev key (so `events/` samples work).
pub async fn provision_tenant(
    store: &dyn TenantStore,
    name: &str,
    tier: &str,
    chosen_key: Option<&str>,
) -> Result<(Tenant, String), StoreError> {
    let key = match chosen_key {
        Some(key) => key.to_string(),
        None => generate_key(),
    };
    if bearer_token(Some(&format!("Bearer {key}"))).is_none() {
        return Err(StoreError::Internal("an API key must start with nk_ and use [A-Za-z0-9_-]".into()));
    }
    let tenant =
        Tenant { tenant_id: new_id(), name: name.to_string(), tier: tier.to_string(), created_at: now_rfc3339() };
    store.create_tenant(&tenant).await?;
    let record = ApiKeyRecord {
        key_hash: hash_key(&key),
        key_id: new_id(),
        tenant_id: tenant.tenant_id.clone(),
        created_at: tenant.created_at.clone(),
    };
    store.put_api_key(&record).await?;
    Ok((tenant, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn keys_are_random_and_hashes_are_hex_sha256() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with("nk_") && a.len() == 46, "{a}");
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn bearer_parsing_is_strict() {
        assert_eq!(bearer_token(Some("Bearer nk_abc")), Some("nk_abc"));
        assert_eq!(bearer_token(Some("bearer nk_abc")), Some("nk_abc"));
        assert_eq!(bearer_token(Some("Basic nk_abc")), None);
        assert_eq!(bearer_token(Some("Bearer abc")), None);
        assert_eq!(bearer_token(Some("Bearer nk_a'b")), None);
        assert_eq!(bearer_token(Some("Bearer")), None);
        assert_eq!(bearer_token(None), None);
        assert_eq!(bearer_token(Some(&format!("Bearer nk_{}", "a".repeat(300)))), None);
    }

    #[tokio::test]
    async fn provisioned_key_authenticates_and_others_do_not() {
        let store = MemoryStore::new();
        let (tenant, key) = provision_tenant(&store, "Acme", "free", None).await.unwrap();
        let header = format!("Bearer {key}");
        assert_eq!(authenticate(&store, Some(&header)).await.unwrap(), tenant.tenant_id);
        let wrong = format!("Bearer {}", generate_key());
        assert_eq!(authenticate(&store, Some(&wrong)).await.unwrap_err().code, crate::error::ErrorCode::Unauthorized);
        assert!(authenticate(&store, None).await.is_err());
        let stored = store.find_api_key(&hash_key(&key)).await.unwrap().unwrap();
        assert_ne!(stored.key_hash, key, "the key itself is never stored");
    }
}
