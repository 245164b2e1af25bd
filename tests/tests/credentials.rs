//! Provider credentials: stored in Secrets Manager (the emulator) under tenant-scoped names,
//! listed without values, and never visible in any response or log line.

use nodeai::api::Route;
use nodeai::secrets::{CredentialResolver, secret_name};
use nodeai::store::SecretStore;
use nodeai_tests::{CapturedLogs, Reply, RequestSpec, TestApp};
use serde_json::json;
use std::time::Duration;

const SECRET_A: &str = "sk-test-SECRET-a1b2c3d4e5f6";
const SECRET_B: &str = "sk-ant-test-SECRET-99887766";

#[tokio::test]
async fn put_list_replace_delete_round_trip() {
    let t = TestApp::new().await;
    let created = t
        .call(
            Route::PutCredential,
            &[("name", "openai-main")],
            Some(json!({ "provider": "openai", "api_key": SECRET_A, "base_url": "https://api.openai.com/v1" })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.raw);
    assert_eq!(created.body["api_key_last4"], "e5f6");
    assert_eq!(created.header("location"), Some("/v1/credentials/openai-main"));

    // The value sits in Secrets Manager under a tenant-scoped name.
    let stored = t.secrets.get_secret(&secret_name("test", &t.tenant_id, "openai-main")).await.unwrap().unwrap();
    assert!(stored.contains(SECRET_A));

    let replaced = t
        .call(
            Route::PutCredential,
            &[("name", "openai-main")],
            Some(json!({ "provider": "anthropic", "api_key": SECRET_B })),
        )
        .await;
    assert_eq!(replaced.status, 200);
    assert_eq!(replaced.body["provider"], "anthropic");
    assert_eq!(replaced.body["base_url"], serde_json::Value::Null);
    assert_eq!(replaced.body["created_at"], created.body["created_at"]);

    // The engine's view: through the TTL cache, from Secrets Manager.
    let resolver = CredentialResolver::new(t.secrets.clone(), "test", Duration::from_secs(60));
    let credential = resolver.resolve(&t.tenant_id, "openai-main").await.unwrap();
    assert_eq!((credential.provider.as_str(), credential.api_key.as_str()), ("anthropic", SECRET_B));
    let (other_tenant, _) = t.other_tenant().await;
    assert_eq!(
        resolver.resolve(&other_tenant, "openai-main").await.unwrap_err().code().as_str(),
        "CREDENTIAL_NOT_FOUND"
    );

    for name in ["b-two", "c-three"] {
        let reply = t
            .call(Route::PutCredential, &[("name", name)], Some(json!({ "provider": "openai", "api_key": SECRET_A })))
            .await;
        assert_eq!(reply.status, 201);
    }
    let page = t.send(Route::ListCredentials, RequestSpec::new(&[]).key(&t.key).query("limit", "2")).await;
    assert_eq!(page.status, 200);
    let names: Vec<&str> = page.body["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b-two", "c-three"]);
    let token = page.body["next_token"].as_str().unwrap();
    let rest = t.send(Route::ListCredentials, RequestSpec::new(&[]).key(&t.key).query("next_token", token)).await;
    assert_eq!(rest.body["items"][0]["name"], "openai-main");

    assert_eq!(t.call(Route::DeleteCredential, &[("name", "openai-main")], None).await.status, 204);
    assert_eq!(t.secrets.get_secret(&secret_name("test", &t.tenant_id, "openai-main")).await.unwrap(), None);
    t.call(Route::DeleteCredential, &[("name", "openai-main")], None).await.assert_error(404, "CREDENTIAL_NOT_FOUND");
    assert_eq!(
        resolver.resolve(&t.tenant_id, "b-two").await.unwrap().api_key,
        SECRET_A,
        "other credentials are untouched"
    );
}

#[tokio::test]
async fn bad_credentials_are_400() {
    let t = TestApp::new().await;
    for body in [
        json!({ "provider": "cohere", "api_key": "sk-xxxxxxxxxx" }),
        json!({ "provider": "openai", "api_key": "short" }),
        json!({ "provider": "openai", "api_key": "has spaces in it" }),
        json!({ "provider": "openai", "api_key": "sk-xxxxxxxxxx", "base_url": "ftp://x" }),
        json!({ "provider": "openai", "api_key": "sk-xxxxxxxxxx", "base_url": "https://" }),
        json!({ "provider": "openai" }),
        json!({ "provider": "openai", "api_key": "sk-xxxxxxxxxx", "extra": 1 }),
    ] {
        t.call(Route::PutCredential, &[("name", "main")], Some(body.clone()))
            .await
            .assert_error(400, "INVALID_REQUEST");
    }
    for name in ["-bad", "a/b", "x".repeat(65).as_str()] {
        t.call(
            Route::PutCredential,
            &[("name", name)],
            Some(json!({ "provider": "openai", "api_key": "sk-xxxxxxxxxx" })),
        )
        .await
        .assert_error(400, "INVALID_REQUEST");
    }
    let listed = t.call(Route::ListCredentials, &[], None).await;
    assert_eq!(listed.body["items"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn another_tenants_credential_is_404_and_untouched() {
    let t = TestApp::new().await;
    let body = json!({ "provider": "openai", "api_key": SECRET_A });
    assert_eq!(t.call(Route::PutCredential, &[("name", "shared-name")], Some(body)).await.status, 201);
    let (_, other_key) = t.other_tenant().await;
    let foreign = t.send(Route::DeleteCredential, RequestSpec::new(&[("name", "shared-name")]).key(&other_key)).await;
    foreign.assert_error(404, "CREDENTIAL_NOT_FOUND");
    let theirs = t.send(Route::ListCredentials, RequestSpec::new(&[]).key(&other_key)).await;
    assert_eq!(theirs.body["items"], json!([]));
    let stored = t.secrets.get_secret(&secret_name("test", &t.tenant_id, "shared-name")).await.unwrap();
    assert!(stored.is_some(), "the owner's secret survives");
}

#[tokio::test]
async fn no_secret_appears_in_any_response_or_log_line() {
    let logs = CapturedLogs::default();
    nodeai::telemetry::init_with_writer("trace", logs.clone());

    let t = TestApp::new().await;
    let mut replies: Vec<Reply> = Vec::new();
    let put = |body: serde_json::Value| RequestSpec::new(&[("name", "main")]).key(&t.key).json(Some(body));
    replies.push(t.send(Route::PutCredential, put(json!({ "provider": "openai", "api_key": SECRET_A }))).await);
    replies.push(t.send(Route::PutCredential, put(json!({ "provider": "anthropic", "api_key": SECRET_B }))).await);
    // Bad requests that carry a secret: the error must not quote it.
    replies.push(t.send(Route::PutCredential, put(json!({ "provider": SECRET_A, "api_key": SECRET_B }))).await);
    replies.push(
        t.send(Route::PutCredential, put(json!({ "provider": "openai", "api_key": SECRET_A, SECRET_B: 1 }))).await,
    );
    replies.push(t.send(Route::PutCredential, put(json!({ "provider": "openai", "api_key": [SECRET_A] }))).await);
    replies.push(
        t.send(Route::PutCredential, put(json!({ "provider": "openai", "api_key": SECRET_A, "base_url": SECRET_B })))
            .await,
    );
    let raw = format!("{{\"provider\": \"openai\", \"api_key\": \"{SECRET_A}\" oops");
    replies.push(
        t.send(
            Route::PutCredential,
            RequestSpec::new(&[("name", "main")]).key(&t.key).header("content-type", "application/json").raw(raw),
        )
        .await,
    );
    replies.push(t.call(Route::ListCredentials, &[], None).await);
    replies.push(t.send(Route::ListCredentials, RequestSpec::new(&[]).key(SECRET_A)).await);
    replies.push(t.call(Route::DeleteCredential, &[("name", "main")], None).await);
    replies.push(t.call(Route::DeleteCredential, &[("name", "main")], None).await);
    assert!(replies.iter().any(|r| r.status == 201) && replies.iter().any(|r| r.status == 400));

    let resolver = CredentialResolver::new(t.secrets.clone(), "test", Duration::from_secs(60));
    t.secrets.put_secret(&secret_name("test", &t.tenant_id, "x"), "{not json").await.unwrap();
    let malformed = resolver.resolve(&t.tenant_id, "x").await.unwrap_err();
    tracing::error!(error = %malformed, "resolver error as the engine would log it");

    let log_text = logs.text();
    assert!(log_text.contains("request completed"), "the capture sees the request log lines");
    for secret in [SECRET_A, SECRET_B] {
        for reply in &replies {
            assert!(!reply.raw.contains(secret), "a response contains a secret: {}", reply.raw);
            for (name, value) in &reply.headers {
                assert!(!value.contains(secret), "header {name} contains a secret");
            }
        }
        assert!(!log_text.contains(secret), "a log line contains a secret");
    }
}
