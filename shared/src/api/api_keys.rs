//! API key routes: create (the plaintext key is shown once), list, revoke, rotate.

use super::views::{ApiKeyView, CreateApiKeyRequest, NewApiKeyView, Page, ReplacedKey};
use super::{Call, paging, truncate};
use crate::api::http::{self, Reply};
use crate::auth::new_key_record;
use crate::error::{ApiError, ErrorCode};
use crate::model::{ApiKeyRecord, normalize_rfc3339, now_rfc3339, rfc3339_in};
use crate::store::MAX_KEYS_PER_TENANT;

fn status(record: &ApiKeyRecord, now: &str) -> &'static str {
    if record.revoked_at.is_some() {
        "revoked"
    } else if record.is_live(now) {
        "active"
    } else {
        "expired"
    }
}

fn key_view(record: &ApiKeyRecord) -> ApiKeyView {
    ApiKeyView {
        id: record.key_id.clone(),
        name: record.name.clone(),
        prefix: record.display_prefix.clone(),
        status: status(record, &now_rfc3339()),
        created_at: record.created_at.clone(),
        last_used_at: record.last_used_at.clone(),
        expires_at: record.expires_at.clone(),
        revoked_at: record.revoked_at.clone(),
    }
}

/// The view of a new key: the one time its plaintext appears.
fn new_key_view(record: &ApiKeyRecord, key: &str) -> NewApiKeyView {
    NewApiKeyView { view: key_view(record), key: key.to_string(), replaces: None }
}

fn key_not_found(key_id: &str) -> ApiError {
    ApiError::new(ErrorCode::ApiKeyNotFound, format!("API key '{}' was not found", truncate(key_id, 64)))
        .suggest("List your keys with GET /v1/api-keys.")
}

async fn load_key(call: &Call<'_>) -> Result<ApiKeyRecord, ApiError> {
    let key_id = http::ulid_param(call.req, "key_id").map_err(|raw| key_not_found(&raw))?;
    call.app.store()?.find_api_key_by_id(call.tenant_id, &key_id).await?.ok_or_else(|| key_not_found(&key_id))
}

async fn ensure_room(call: &Call<'_>) -> Result<(), ApiError> {
    let live = call.app.store()?.count_live_api_keys(call.tenant_id, &now_rfc3339()).await?;
    if live >= MAX_KEYS_PER_TENANT {
        return Err(ApiError::new(
            ErrorCode::KeyLimitReached,
            format!("the tenant already has {live} live API keys; the limit is {MAX_KEYS_PER_TENANT}"),
        )
        .suggest("Revoke a key you no longer use with DELETE /v1/api-keys/{key_id}."));
    }
    Ok(())
}

pub async fn create(call: &Call<'_>) -> Result<Reply, ApiError> {
    let request: CreateApiKeyRequest = http::typed_body(call.req)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid_request("name must be 1-100 characters"));
    }
    let expires_at = match request.expires_at.as_deref() {
        None => None,
        Some(raw) => {
            let at = normalize_rfc3339(raw).ok_or_else(|| {
                ApiError::invalid_request("expires_at must be an RFC 3339 timestamp such as 2027-01-01T00:00:00Z")
            })?;
            if at <= now_rfc3339() {
                return Err(ApiError::invalid_request("expires_at must be in the future"));
            }
            Some(at)
        }
    };
    ensure_room(call).await?;
    let (record, key) = new_key_record(call.tenant_id, name, expires_at, None);
    call.app.store()?.put_api_key(&record).await?;
    Ok(Reply::created(new_key_view(&record, &key), format!("/v1/api-keys/{}", record.key_id)))
}

/// Every key, live, revoked and expired, newest first, a page at a time (`limit`,
/// `next_token`): revoked keys accumulate, so one page cannot hold them all.
pub async fn list(call: &Call<'_>) -> Result<Reply, ApiError> {
    let scope = format!("api-keys|{}", call.tenant_id);
    let (limit, after) = paging(call, &scope)?;
    let page = call.app.store()?.list_api_keys(call.tenant_id, after.as_deref(), limit).await?;
    let key = &call.app.config.cursor_signing_key;
    Ok(Reply::ok(Page {
        items: page.items.iter().map(key_view).collect(),
        next_token: page.next_after.map(|after| crate::cursor::encode(key, &scope, &after)),
    }))
}

pub async fn revoke(call: &Call<'_>) -> Result<Reply, ApiError> {
    let record = load_key(call).await?;
    call.app.store()?.revoke_api_key(&record.key_hash, &now_rfc3339()).await?;
    call.app.keys.evict(&record.key_hash);
    Ok(Reply::no_content())
}

pub async fn rotate(call: &Call<'_>) -> Result<Reply, ApiError> {
    let old = load_key(call).await?;
    if !old.is_live(&now_rfc3339()) {
        return Err(ApiError::new(ErrorCode::ApiKeyNotActive, "a revoked or expired key cannot be rotated")
            .suggest("Create a new key with POST /v1/api-keys."));
    }
    ensure_room(call).await?;
    let (record, key) = new_key_record(call.tenant_id, &old.name, old.expires_at.clone(), None);
    call.app.store()?.put_api_key(&record).await?;
    let grace_ends = rfc3339_in(call.app.config.key_rotation_grace.as_secs() as i64);
    call.app.store()?.expire_api_key(&old.key_hash, &grace_ends).await?;
    call.app.keys.evict(&old.key_hash);
    let previous = call.app.store()?.find_api_key(&old.key_hash).await?.unwrap_or(old);
    let mut view = new_key_view(&record, &key);
    view.replaces = Some(ReplacedKey { id: previous.key_id, expires_at: previous.expires_at });
    Ok(Reply::created(view, format!("/v1/api-keys/{}", record.key_id)))
}
