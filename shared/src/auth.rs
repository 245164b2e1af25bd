//! API keys and tenant resolution. Keys are stored only as SHA-256 hashes.

use crate::error::{ApiError, StoreError};
use crate::model::{ApiKeyRecord, Tenant, new_id, now_rfc3339, rfc3339_in};
use crate::store::TenantStore;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

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

/// Characters of a key shown in listings, so people can tell keys apart.
const DISPLAY_PREFIX_LEN: usize = 12;
/// `last_used_at` is written at most this often per key and warm instance.
const TOUCH_INTERVAL_SECONDS: i64 = 3600;
/// Bound on cached lookups per instance (a flood of random keys cannot grow memory).
const MAX_CACHED_KEYS: usize = 10_000;

/// Key lookups cached per warm instance for `ttl`, so a revoked key stops working within the
/// TTL (at most 60 s) without a DynamoDB read on every request.
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<ApiKeyRecord>)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        KeyCache { ttl, entries: Mutex::default() }
    }

    fn get(&self, key_hash: &str) -> Option<Option<ApiKeyRecord>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(key_hash).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, record)| record.clone())
    }

    fn put(&self, key_hash: &str, record: Option<ApiKeyRecord>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_CACHED_KEYS {
            entries.clear();
        }
        entries.insert(key_hash.to_string(), (Instant::now(), record));
    }

    /// Forgets a key at once on this instance (after a revoke or rotate here).
    pub fn evict(&self, key_hash: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(key_hash);
    }
}

/// The live key record for a bearer token. Unknown, revoked and expired keys are the same 401.
pub async fn verify_key(store: &dyn TenantStore, cache: &KeyCache, token: &str) -> Result<ApiKeyRecord, ApiError> {
    let key_hash = hash_key(token);
    let record = match cache.get(&key_hash) {
        Some(cached) => cached,
        None => {
            let found = store.find_api_key(&key_hash).await?;
            cache.put(&key_hash, found.clone());
            found
        }
    };
    let now = now_rfc3339();
    let record = record
        // The lookup is by hash already; the constant-time compare makes the check itself
        // independent of where two hashes first differ.
        .filter(|r| bool::from(r.key_hash.as_bytes().ct_eq(key_hash.as_bytes())))
        .filter(|r| r.is_live(&now))
        .ok_or_else(ApiError::unauthorized)?;
    let stale = record.last_used_at.as_deref().is_none_or(|used| used < rfc3339_in(-TOUCH_INTERVAL_SECONDS).as_str());
    if stale {
        match store.touch_api_key(&key_hash, &now).await {
            Ok(()) => {
                let mut touched = record.clone();
                touched.last_used_at = Some(now);
                cache.put(&key_hash, Some(touched));
            }
            Err(e) => tracing::warn!(error = %e, "could not record key use"),
        }
    }
    Ok(record)
}

/// A new key record for a tenant; returns it with the plaintext key (shown once).
pub fn new_key_record(
    tenant_id: &str,
    name: &str,
    expires_at: Option<String>,
    chosen_key: Option<&str>,
) -> (ApiKeyRecord, String) {
    let key = chosen_key.map(str::to_string).unwrap_or_else(generate_key);
    let record = ApiKeyRecord {
        key_hash: hash_key(&key),
        key_id: new_id(),
        tenant_id: tenant_id.to_string(),
        name: name.to_string(),
        display_prefix: key.chars().take(DISPLAY_PREFIX_LEN).collect(),
        created_at: now_rfc3339(),
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    (record, key)
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
    let tenant = Tenant {
        tenant_id: new_id(),
        name: name.to_string(),
        tier: tier.to_string(),
        created_at: now_rfc3339(),
        usage_key_id: None,
        usage_key_value: None,
    };
    store.create_tenant(&tenant).await?;
    let (record, key) = new_key_record(&tenant.tenant_id, "first key", None, Some(&key));
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

    fn cache() -> KeyCache {
        KeyCache::new(Duration::from_secs(30))
    }

    #[tokio::test]
    async fn provisioned_key_verifies_and_others_do_not() {
        let store = MemoryStore::new();
        let (tenant, key) = provision_tenant(&store, "Acme", "free", None).await.unwrap();
        assert_eq!(verify_key(&store, &cache(), &key).await.unwrap().tenant_id, tenant.tenant_id);
        let wrong = generate_key();
        assert_eq!(verify_key(&store, &cache(), &wrong).await.unwrap_err().code, crate::error::ErrorCode::Unauthorized);
        let stored = store.find_api_key(&hash_key(&key)).await.unwrap().unwrap();
        assert_ne!(stored.key_hash, key, "the key itself is never stored");
        assert!(stored.last_used_at.is_some(), "use is recorded");
        assert_eq!(stored.display_prefix, key[..12]);
    }

    #[tokio::test]
    async fn revoked_and_expired_keys_fail_like_unknown_ones() {
        let store = MemoryStore::new();
        let (tenant, _) = provision_tenant(&store, "Acme", "free", None).await.unwrap();
        let (revoked, revoked_key) = new_key_record(&tenant.tenant_id, "r", None, None);
        store.put_api_key(&revoked).await.unwrap();
        let (expired, expired_key) = new_key_record(&tenant.tenant_id, "e", Some(rfc3339_in(-1)), None);
        store.put_api_key(&expired).await.unwrap();
        let (future, future_key) = new_key_record(&tenant.tenant_id, "f", Some(rfc3339_in(3600)), None);
        store.put_api_key(&future).await.unwrap();
        let keys = cache();
        assert!(verify_key(&store, &keys, &revoked_key).await.is_ok());
        store.revoke_api_key(&revoked.key_hash, &now_rfc3339()).await.unwrap();
        assert!(verify_key(&store, &keys, &revoked_key).await.is_ok(), "cached within the TTL");
        keys.evict(&revoked.key_hash);
        let unknown = verify_key(&store, &keys, &generate_key()).await.unwrap_err();
        for key in [&revoked_key, &expired_key] {
            let err = verify_key(&store, &keys, key).await.unwrap_err();
            assert_eq!((err.code, err.message.clone()), (unknown.code, unknown.message.clone()));
        }
        assert!(verify_key(&store, &keys, &future_key).await.is_ok());
    }

    #[tokio::test]
    async fn a_zero_ttl_cache_sees_revocation_at_once() {
        let store = MemoryStore::new();
        let (_, key) = provision_tenant(&store, "Acme", "free", None).await.unwrap();
        let keys = KeyCache::new(Duration::ZERO);
        assert!(verify_key(&store, &keys, &key).await.is_ok());
        store.revoke_api_key(&hash_key(&key), &now_rfc3339()).await.unwrap();
        assert!(verify_key(&store, &keys, &key).await.is_err());
    }
}
