//! Provider credential routes. The value goes to the secret store under a tenant-scoped name;
//! the table keeps only what a listing shows. No response ever contains the value.

use super::views::{CredentialView, Page, PutCredentialRequest};
use super::{Call, paging, truncate};
use crate::api::http::{self, Reply};
use crate::cursor;
use crate::error::{ApiError, ErrorCode};
use crate::model::{CredentialRecord, now_rfc3339};
use crate::secrets::{PROVIDERS, ProviderCredential, is_valid_credential_name, secret_name};

fn view(record: &CredentialRecord) -> CredentialView {
    CredentialView {
        name: record.name.clone(),
        provider: record.provider.clone(),
        base_url: record.base_url.clone(),
        api_key_last4: record.last4.clone(),
        created_at: record.created_at.clone(),
        updated_at: record.updated_at.clone(),
    }
}

fn name_param(call: &Call<'_>) -> Result<String, ApiError> {
    let name = http::path_param(call.req, "name").unwrap_or_default();
    if is_valid_credential_name(&name) {
        Ok(name)
    } else {
        Err(ApiError::invalid_request(format!(
            "credential name {:?} must match ^[A-Za-z0-9][A-Za-z0-9_-]{{0,63}}$",
            truncate(&name, 64)
        )))
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::CredentialNotFound, format!("credential '{name}' was not found"))
        .suggest("List your credentials with GET /v1/credentials.")
}

/// A base URL must be absolute http(s) with a host; where it may point is the engine's SSRF
/// guard's call at request time.
fn check_base_url(url: &str) -> Result<(), ApiError> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    let ok = url.len() <= 2048
        && host.is_some_and(|h| !h.is_empty())
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_request("base_url must be an absolute http(s) URL of at most 2048 characters"))
    }
}

pub async fn put(call: &Call<'_>) -> Result<Reply, ApiError> {
    let name = name_param(call)?;
    // Not typed_body: serde's messages may quote the value they choke on, and that could be the key.
    let (body, _) = http::json_body(call.req)?;
    let shape_error = || {
        ApiError::invalid_request(
            "the body must be {\"provider\": \"openai\" | \"anthropic\", \"api_key\": string, \"base_url\"?: string}",
        )
    };
    if !body.is_object() {
        return Err(shape_error());
    }
    let request: PutCredentialRequest = serde_json::from_value(body).map_err(|_| shape_error())?;
    if !PROVIDERS.contains(&request.provider.as_str()) {
        return Err(ApiError::invalid_request(format!("provider must be one of: {}", PROVIDERS.join(", "))));
    }
    let key_ok = (8..=4096).contains(&request.api_key.len())
        && !request.api_key.chars().any(|c| c.is_whitespace() || c.is_control());
    if !key_ok {
        return Err(ApiError::invalid_request("api_key must be 8-4096 characters without spaces"));
    }
    if let Some(url) = &request.base_url {
        check_base_url(url)?;
    }
    let last4: String = request.api_key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    let credential = ProviderCredential {
        provider: request.provider.clone(),
        api_key: request.api_key,
        base_url: request.base_url.clone(),
    };
    let value = serde_json::to_string(&credential)
        .map_err(|_| ApiError::new(ErrorCode::InternalError, "an internal error occurred"))?;
    // The secret first: metadata never points at a value that was not stored.
    call.app.secrets()?.put_secret(&secret_name(&call.app.config.stage, call.tenant_id, &name), &value).await?;
    let now = now_rfc3339();
    let existed = call.app.store()?.get_credential(call.tenant_id, &name).await?.is_some();
    let record = CredentialRecord {
        tenant_id: call.tenant_id.to_string(),
        name: name.clone(),
        provider: request.provider,
        base_url: request.base_url,
        last4,
        created_at: now.clone(),
        updated_at: now,
    };
    let stored = call.app.store()?.put_credential(&record).await?;
    if existed {
        Ok(Reply::ok(view(&stored)))
    } else {
        Ok(Reply::created(view(&stored), format!("/v1/credentials/{name}")))
    }
}

pub async fn list(call: &Call<'_>) -> Result<Reply, ApiError> {
    let scope = format!("credentials|{}", call.tenant_id);
    let (limit, after) = paging(call, &scope)?;
    let page = call.app.store()?.list_credentials(call.tenant_id, after.as_deref(), limit).await?;
    let key = &call.app.config.cursor_signing_key;
    Ok(Reply::ok(Page {
        items: page.items.iter().map(view).collect(),
        next_token: page.next_after.map(|after| cursor::encode(key, &scope, &after)),
    }))
}

pub async fn delete(call: &Call<'_>) -> Result<Reply, ApiError> {
    let name = name_param(call)
        .map_err(|_| not_found(&truncate(&http::path_param(call.req, "name").unwrap_or_default(), 64)))?;
    if call.app.store()?.get_credential(call.tenant_id, &name).await?.is_none() {
        return Err(not_found(&name));
    }
    // The value first, so a half-finished delete never leaves a secret behind unlisted.
    call.app.secrets()?.delete_secret(&secret_name(&call.app.config.stage, call.tenant_id, &name)).await?;
    call.app.store()?.delete_credential(call.tenant_id, &name).await?;
    Ok(Reply::no_content())
}
