//! API key lifecycle: created once in plaintext, listed without it, revoked within the cache
//! TTL, rotated with a grace period; revoked and expired keys fail exactly like unknown ones.

use nodeai::api::{Route, handle};
use nodeai_tests::{Reply, RequestSpec, TestApp};
use serde_json::json;

async fn create_key(t: &TestApp, name: &str) -> Reply {
    t.call(Route::CreateApiKey, &[], Some(json!({ "name": name }))).await
}

async fn list_with(_: &TestApp, app: &nodeai::api::App, key: &str) -> Reply {
    Reply::from(handle(app, Route::ListWorkflows, RequestSpec::new(&[]).key(key).build(Route::ListWorkflows)).await)
}

#[tokio::test]
async fn a_new_key_is_shown_once_and_works() {
    let t = TestApp::new().await;
    let created = t
        .call(Route::CreateApiKey, &[], Some(json!({ "name": "ci", "expires_at": "2099-01-01T00:00:00+02:00" })))
        .await;
    assert_eq!(created.status, 201, "{}", created.raw);
    let key = created.body["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("nk_") && key.len() >= 3 + 43, "prefix plus 32 random bytes: {key}");
    assert_eq!(created.body["prefix"].as_str().unwrap(), &key[..12]);
    assert_eq!(created.body["expires_at"], "2098-12-31T22:00:00.000Z", "normalised to UTC");
    assert_eq!(created.body["status"], "active");

    assert_eq!(list_with(&t, &t.app, &key).await.status, 200, "the new key works at once");
    let listed = t.call(Route::ListApiKeys, &[], None).await;
    assert_eq!(listed.status, 200);
    assert!(!listed.raw.contains(&key), "a listing never shows a key");
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "the first key and the new one");
    let mine = items.iter().find(|i| i["id"] == created.body["id"]).unwrap();
    assert_eq!(mine["name"], "ci");
    assert!(mine["last_used_at"].is_string(), "use is recorded: {mine}");
    assert!(mine.get("key").is_none());
}

#[tokio::test]
async fn bad_create_requests_are_400() {
    let t = TestApp::new().await;
    for body in [
        json!({}),
        json!({ "name": "" }),
        json!({ "name": "x".repeat(101) }),
        json!({ "name": "x", "expires_at": "tomorrow" }),
        json!({ "name": "x", "expires_at": "2001-01-01T00:00:00Z" }),
        json!({ "name": "x", "scopes": ["all"] }),
        json!({ "name": 7 }),
    ] {
        t.call(Route::CreateApiKey, &[], Some(body.clone())).await.assert_error(400, "INVALID_REQUEST");
    }
}

#[tokio::test]
async fn revoked_keys_stop_within_the_cache_ttl_and_fail_like_unknown_keys() {
    // A zero TTL: other warm instances see the revocation at once.
    let t = TestApp::with_settings(&[("KEY_CACHE_TTL_SECONDS", "0")]).await;
    let created = create_key(&t, "temp").await;
    let (id, key) =
        (created.body["id"].as_str().unwrap().to_string(), created.body["key"].as_str().unwrap().to_string());
    let other_instance = t.another_instance();
    assert_eq!(list_with(&t, &other_instance, &key).await.status, 200);

    let revoked = t.call(Route::RevokeApiKey, &[("key_id", &id)], None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.raw);
    let after = list_with(&t, &other_instance, &key).await;
    let unknown = list_with(&t, &other_instance, "nk_never_issued_0000000000000000").await;
    after.assert_error(401, "UNAUTHORIZED");
    assert_eq!(after.body["error"]["message"], unknown.body["error"]["message"]);
    assert_eq!(after.body["error"]["suggestions"], unknown.body["error"]["suggestions"]);
    let listed = t.call(Route::ListApiKeys, &[], None).await;
    let entry = listed.body["items"].as_array().unwrap().iter().find(|i| i["id"] == id.as_str()).unwrap().clone();
    assert_eq!(entry["status"], "revoked");
    assert!(entry["revoked_at"].is_string());
}

#[tokio::test]
async fn within_the_ttl_another_instance_may_still_accept_a_revoked_key() {
    // The documented bound, not a bug: the cache trusts a lookup for KEY_CACHE_TTL_SECONDS.
    let t = TestApp::with_settings(&[("KEY_CACHE_TTL_SECONDS", "60")]).await;
    let created = create_key(&t, "cached").await;
    let (id, key) =
        (created.body["id"].as_str().unwrap().to_string(), created.body["key"].as_str().unwrap().to_string());
    let other_instance = t.another_instance();
    assert_eq!(list_with(&t, &other_instance, &key).await.status, 200);
    assert_eq!(t.call(Route::RevokeApiKey, &[("key_id", &id)], None).await.status, 204);
    assert_eq!(list_with(&t, &other_instance, &key).await.status, 200, "cached on the other instance");
    list_with(&t, &t.app, &key).await.assert_error(401, "UNAUTHORIZED"); // the revoking instance forgot it at once
}

#[tokio::test]
async fn rotation_keeps_the_old_key_for_the_grace_period_only() {
    let t = TestApp::with_settings(&[("KEY_CACHE_TTL_SECONDS", "0")]).await;
    let created = create_key(&t, "service").await;
    let (id, old_key) =
        (created.body["id"].as_str().unwrap().to_string(), created.body["key"].as_str().unwrap().to_string());
    let rotated = t.call(Route::RotateApiKey, &[("key_id", &id)], None).await;
    assert_eq!(rotated.status, 201, "{}", rotated.raw);
    let new_key = rotated.body["key"].as_str().unwrap().to_string();
    assert_ne!(new_key, old_key);
    assert_eq!(rotated.body["name"], "service");
    assert_eq!(rotated.body["replaces"]["id"], id.as_str());
    assert!(rotated.body["replaces"]["expires_at"].as_str().unwrap() > nodeai::model::now_rfc3339().as_str());
    assert_eq!(list_with(&t, &t.app, &new_key).await.status, 200);
    assert_eq!(list_with(&t, &t.app, &old_key).await.status, 200, "the old key works during the grace period");

    // With no grace period the old key stops at once.
    let strict = TestApp::with_settings(&[("KEY_CACHE_TTL_SECONDS", "0"), ("KEY_ROTATION_GRACE_SECONDS", "0")]).await;
    let created = create_key(&strict, "service").await;
    let (id, old_key) =
        (created.body["id"].as_str().unwrap().to_string(), created.body["key"].as_str().unwrap().to_string());
    assert_eq!(strict.call(Route::RotateApiKey, &[("key_id", &id)], None).await.status, 201);
    list_with(&strict, &strict.app, &old_key).await.assert_error(401, "UNAUTHORIZED");
    // A key that no longer works cannot be rotated again.
    strict.call(Route::RotateApiKey, &[("key_id", &id)], None).await.assert_error(409, "API_KEY_NOT_ACTIVE");
}

#[tokio::test]
async fn unknown_foreign_and_malformed_key_ids_are_404() {
    let t = TestApp::new().await;
    let created = create_key(&t, "mine").await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let (_, other_key) = t.other_tenant().await;
    for route in [Route::RevokeApiKey, Route::RotateApiKey] {
        let foreign = t.send(route, RequestSpec::new(&[("key_id", &id)]).key(&other_key)).await;
        foreign.assert_error(404, "API_KEY_NOT_FOUND");
        t.call(route, &[("key_id", "01ARZ3NDEKTSV4RRFFQ69G5FAV")], None).await.assert_error(404, "API_KEY_NOT_FOUND");
        t.call(route, &[("key_id", "not-an-id")], None).await.assert_error(404, "API_KEY_NOT_FOUND");
    }
    // The owner's key still works.
    let key = created.body["key"].as_str().unwrap();
    assert_eq!(list_with(&t, &t.app, key).await.status, 200);
}

#[tokio::test]
async fn a_tenant_holds_at_most_fifty_live_keys() {
    let t = TestApp::new().await;
    for i in 1..50 {
        assert_eq!(create_key(&t, &format!("k{i}")).await.status, 201, "key {i}");
    }
    let refused = create_key(&t, "one too many").await;
    refused.assert_error(409, "KEY_LIMIT_REACHED");
    let listed = t.call(Route::ListApiKeys, &[], None).await;
    let victim = listed.body["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(t.call(Route::RevokeApiKey, &[("key_id", &victim)], None).await.status, 204);
    assert_eq!(create_key(&t, "fits again").await.status, 201);
}

/// Issue 10 item 7: API Gateway caches the authorizer's answer and the authorizer caches its
/// lookup, so a revoked key may still pass for a while; it must not mint, rotate or revoke keys
/// meanwhile (those routes read the key uncached).
#[tokio::test]
async fn a_revoked_key_cannot_manage_keys_while_caches_still_accept_it() {
    let t = TestApp::with_settings(&[("KEY_CACHE_TTL_SECONDS", "60")]).await;
    let created = create_key(&t, "leaked").await;
    let (id, key) =
        (created.body["id"].as_str().unwrap().to_string(), created.body["key"].as_str().unwrap().to_string());
    let other_instance = t.another_instance();
    assert_eq!(list_with(&t, &other_instance, &key).await.status, 200, "warm in the other instance's cache");
    assert_eq!(t.call(Route::RevokeApiKey, &[("key_id", &id)], None).await.status, 204);
    assert_eq!(list_with(&t, &other_instance, &key).await.status, 200, "still cached there (documented bound)");
    let (app, key_ref) = (&other_instance, key.as_str());
    let mint = |spec: RequestSpec| async move {
        let request = spec.key(key_ref).json(Some(json!({ "name": "minted" }))).build(Route::CreateApiKey);
        Reply::from(handle(app, Route::CreateApiKey, request).await)
    };
    mint(RequestSpec::new(&[])).await.assert_error(401, "UNAUTHORIZED");
    // Even when the request carries a cached authorizer answer naming the tenant.
    mint(RequestSpec::new(&[]).authorized_as(&t.tenant_id)).await.assert_error(401, "UNAUTHORIZED");
    for route in [Route::RotateApiKey, Route::RevokeApiKey] {
        let request = RequestSpec::new(&[("key_id", &id)]).key(&key).authorized_as(&t.tenant_id).build(route);
        Reply::from(handle(&other_instance, route, request).await).assert_error(401, "UNAUTHORIZED");
    }
    // Other routes keep trusting the authorizer's answer.
    let request = RequestSpec::new(&[]).key(&key).authorized_as(&t.tenant_id).build(Route::ListWorkflows);
    assert_eq!(Reply::from(handle(&other_instance, Route::ListWorkflows, request).await).status, 200);
}

/// Issue 10 item 7: the listing pages through every key, and the live-key limit counts live
/// keys only, however many revoked ones a tenant has (was: the 100 oldest were read, so live
/// keys vanished behind revoked ones and the limit stopped holding).
#[tokio::test]
async fn with_many_revoked_keys_the_listing_pages_and_the_live_limit_holds() {
    let t = TestApp::new().await;
    for i in 0..110 {
        let created = create_key(&t, &format!("old{i}")).await;
        assert_eq!(created.status, 201, "{}", created.raw);
        let id = created.body["id"].as_str().unwrap().to_string();
        assert_eq!(t.call(Route::RevokeApiKey, &[("key_id", &id)], None).await.status, 204);
    }
    // The tenant's own key plus 49 new ones: 50 live.
    for i in 1..50 {
        assert_eq!(create_key(&t, &format!("live{i}")).await.status, 201, "live key {i}");
    }
    create_key(&t, "one too many").await.assert_error(409, "KEY_LIMIT_REACHED");
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut spec = RequestSpec::new(&[]).key(&t.key).query("limit", "100");
        if let Some(token) = &next {
            spec = spec.query("next_token", token);
        }
        let page = Reply::from(handle(&t.app, Route::ListApiKeys, spec.build(Route::ListApiKeys)).await);
        assert_eq!(page.status, 200, "{}", page.raw);
        seen.extend(page.body["items"].as_array().unwrap().iter().map(|k| k["status"].as_str().unwrap().to_string()));
        match page.body["next_token"].as_str() {
            Some(token) => next = Some(token.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 160, "every key, across pages");
    assert_eq!(seen.iter().filter(|s| *s == "active").count(), 50);
    assert_eq!(seen.iter().filter(|s| *s == "revoked").count(), 110);
}
