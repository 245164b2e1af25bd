//! The OpenAPI document: the committed `openapi.json` is exactly what the code generates, GET
//! /openapi.json serves it without a key, and what the routes really answer matches the schemas
//! it documents (each response below is validated against its status's schema).

use nodeai::api::openapi;
use nodeai::api::{ROUTES, Route, spec_of};
use nodeai_tests::{Reply, RequestSpec, TestApp, sample_definition};
use serde_json::{Value, json};

fn committed_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi.json")
}

#[test]
fn the_committed_document_is_what_the_code_generates() {
    let generated = openapi::render();
    if std::env::var_os("NODEAI_WRITE_OPENAPI").is_some() {
        std::fs::write(committed_path(), &generated).unwrap();
    }
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json differs from what the code generates: run \
         `NODEAI_WRITE_OPENAPI=1 cargo nextest run -p nodeai-tests --test openapi` and commit it"
    );
}

/// Checks `reply` against the schema the document gives for its route and status.
fn assert_documented(document: &Value, route: Route, reply: &Reply) {
    let spec = spec_of(route).unwrap();
    let responses = &document["paths"][spec.path][spec.method.to_lowercase()]["responses"];
    let response = &responses[reply.status.to_string()];
    assert!(
        response.is_object(),
        "{} {} does not document status {}: {}",
        spec.method,
        spec.path,
        reply.status,
        reply.raw
    );
    let Some(schema) = response["content"]["application/json"]["schema"].as_object() else {
        assert!(reply.raw.is_empty(), "{}: status {} documents no body", spec.function, reply.status);
        return;
    };
    // The schema with the document's components beside it, so its $refs resolve.
    let mut root = Value::Object(schema.clone());
    root["components"] = document["components"].clone();
    let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("{}: {e}", spec.function));
    let errors: Vec<String> =
        validator.iter_errors(&reply.body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{} {}: {errors:#?}\n{}", spec.function, reply.status, reply.raw);
    if reply.status >= 400 {
        let codes = response["x-error-codes"].as_array().unwrap();
        assert!(codes.contains(&reply.body["error"]["code"]), "{}: undocumented {}", spec.function, reply.raw);
    }
}

#[tokio::test]
async fn the_document_is_served_without_a_key() {
    let t = TestApp::new().await;
    let reply = t.send(Route::OpenApi, RequestSpec::new(&[])).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(reply.body["openapi"], "3.1.0");
    assert_eq!(reply.body, openapi::build());
    assert_eq!(reply.body["paths"].as_object().unwrap().len(), {
        let mut paths: Vec<&str> = ROUTES.iter().map(|s| s.path).collect();
        paths.dedup();
        paths.iter().collect::<std::collections::BTreeSet<_>>().len()
    });
}

#[tokio::test]
async fn every_answer_of_a_walk_through_matches_its_documented_schema() {
    let t = TestApp::new().await;
    let document = openapi::build();
    let check = |route: Route, reply: Reply| {
        assert_documented(&document, route, &reply);
        reply
    };
    check(Route::Health, t.send(Route::Health, RequestSpec::new(&[])).await);
    check(Route::HealthLive, t.send(Route::HealthLive, RequestSpec::new(&[])).await);
    check(Route::HealthReady, t.send(Route::HealthReady, RequestSpec::new(&[])).await);
    check(Route::ListNodeTypes, t.call(Route::ListNodeTypes, &[], None).await);
    check(
        Route::ValidateWorkflow,
        t.call(Route::ValidateWorkflow, &[], Some(json!({ "name": "x", "nodes": [] }))).await,
    );
    check(Route::CreateWorkflow, t.call(Route::CreateWorkflow, &[], Some(json!({ "name": "x", "nodes": [] }))).await);
    let created =
        check(Route::CreateWorkflow, t.call(Route::CreateWorkflow, &[], Some(sample_definition("Doc"))).await);
    let id = created.body["id"].as_str().unwrap().to_string();
    let wf = [("workflow_id", id.as_str())];
    check(Route::GetWorkflow, t.call(Route::GetWorkflow, &wf, None).await);
    check(Route::ListWorkflows, t.call(Route::ListWorkflows, &[], None).await);
    check(Route::UpdateWorkflow, t.call(Route::UpdateWorkflow, &wf, Some(sample_definition("Doc 2"))).await);
    check(Route::PublishVersion, t.call(Route::PublishVersion, &wf, None).await);
    check(Route::PublishVersion, t.call(Route::PublishVersion, &wf, None).await);
    check(Route::ListVersions, t.call(Route::ListVersions, &wf, None).await);
    check(Route::GetVersion, t.call(Route::GetVersion, &[("workflow_id", &id), ("version", "1")], None).await);
    check(Route::GetVersion, t.call(Route::GetVersion, &[("workflow_id", &id), ("version", "9")], None).await);
    check(Route::DeployVersion, t.call(Route::DeployVersion, &wf, Some(json!({ "version": 1 }))).await);
    check(Route::StartExecution, t.call(Route::StartExecution, &wf, Some(json!({ "input": [] }))).await);
    let started = check(
        Route::StartExecution,
        t.call(Route::StartExecution, &wf, Some(json!({ "input": { "url": "http://127.0.0.1:9/" } }))).await,
    );
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    let ex = [("execution_id", execution_id.as_str())];
    check(Route::GetExecution, t.call(Route::GetExecution, &ex, None).await);
    check(Route::ListExecutions, t.call(Route::ListExecutions, &wf, None).await);
    check(Route::CancelExecution, t.call(Route::CancelExecution, &ex, None).await);
    check(Route::RedriveExecution, t.call(Route::RedriveExecution, &ex, None).await);
    // A failed execution is redriven: 202 with its own schema (the one above was cancelled
    // while queued, so it ended at once).
    let started = t.call(Route::StartExecution, &wf, Some(json!({ "input": { "url": "http://127.0.0.1:9/" } }))).await;
    let failing_id = started.body["execution_id"].as_str().unwrap().to_string();
    nodeai_tests::fail_execution(&t, &failing_id).await;
    let failing = [("execution_id", failing_id.as_str())];
    let redriven = check(Route::RedriveExecution, t.call(Route::RedriveExecution, &failing, None).await);
    assert_eq!(redriven.status, 202, "{}", redriven.raw);
    let key = check(Route::CreateApiKey, t.call(Route::CreateApiKey, &[], Some(json!({ "name": "doc" }))).await);
    let key_id = key.body["id"].as_str().unwrap().to_string();
    check(Route::ListApiKeys, t.call(Route::ListApiKeys, &[], None).await);
    check(Route::RotateApiKey, t.call(Route::RotateApiKey, &[("key_id", &key_id)], None).await);
    check(Route::RevokeApiKey, t.call(Route::RevokeApiKey, &[("key_id", &key_id)], None).await);
    let credential = json!({ "provider": "openai", "api_key": "sk-doc-00000001" });
    check(Route::PutCredential, t.call(Route::PutCredential, &[("name", "doc")], Some(credential.clone())).await);
    check(Route::PutCredential, t.call(Route::PutCredential, &[("name", "doc")], Some(credential)).await);
    check(Route::ListCredentials, t.call(Route::ListCredentials, &[], None).await);
    check(Route::DeleteCredential, t.call(Route::DeleteCredential, &[("name", "doc")], None).await);
    check(Route::DeleteWorkflow, t.call(Route::DeleteWorkflow, &wf, None).await);
    check(Route::GetWorkflow, t.call(Route::GetWorkflow, &wf, None).await);
    check(Route::ListWorkflows, t.send(Route::ListWorkflows, RequestSpec::new(&[])).await);
}
