//! Every sample event in `events/` is a real API Gateway (REST, v1) event that parses into the
//! request a function sees and gets the intended answer from its route.

use nodeai::api::{FALLBACK_FUNCTION, ROUTES, Route, handle};
use nodeai_tests::{Reply, TestApp, fail_execution, sample_definition};
use std::path::PathBuf;

/// The placeholders the sample events use: a workflow id and the local dev key.
const SAMPLE_WORKFLOW_ID: &str = "01JDX7Q5ZK3V4M8N2P6R9T0W1Y";
const SAMPLE_KEY: &str = "nk_dev_local_only_not_a_secret_0000000000";
const SAMPLE_KEY_ID: &str = "01JDX7Q5ZK3V4M8N2P6R9T0W2Z";
const SAMPLE_EXECUTION_ID: &str = "01JDX7Q5ZK3V4M8N2P6R9T0W3X";
/// The callback token of events/complete-callback.json (43 characters, as real tokens are).
const SAMPLE_CALLBACK_TOKEN: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
/// The trigger routes' placeholders, and the secret events/receive-webhook.json is signed with.
const SAMPLE_TRIGGER_ID: &str = "01JDX7Q5ZK3V4M8N2P6R9T0W4V";
const SAMPLE_HOOK_ID: &str = "9f86d081884c7d659a2feaa0c55ad015";
const SAMPLE_HOOK_SECRET: &str = "whsec_sample";
/// The assistant routes' session placeholder.
const SAMPLE_SESSION_ID: &str = "01JDX7Q5ZK3V4M8N2P6R9T0W5T";

/// The callback routes answer an approval: a workflow whose execution parks on one (`approve`).
fn approval_definition() -> serde_json::Value {
    serde_json::json!({
        "name": "approval for events",
        "nodes": [
            { "id": "approve", "type": "flow.approval", "config": {} },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.approve.output }}" } }
        ],
        "edges": [ { "from": "approve", "to": "done" } ]
    })
}

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

async fn run_event(function: &str, route: Route) -> Reply {
    let t = TestApp::new().await;
    let answers = matches!(route, Route::CompleteCallback | Route::CompleteExecutionCallback);
    let trigger_routes = [
        Route::CreateTrigger,
        Route::ListTriggers,
        Route::GetTrigger,
        Route::UpdateTrigger,
        Route::DeleteTrigger,
        Route::RotateTriggerSecret,
        Route::ReceiveWebhook,
    ];
    let definition = if answers {
        approval_definition()
    } else if trigger_routes.contains(&route) {
        // A webhook's input is {body, headers, query, method}: no input_schema to meet.
        serde_json::json!({ "name": "hooked", "nodes": [
            { "id": "out", "type": "flow.output", "config": { "value": "{{ input.body }}" } } ] })
    } else {
        sample_definition("for events")
    };
    let id = t.create_workflow(definition).await;
    if matches!(route, Route::GetVersion | Route::DeployVersion) {
        assert_eq!(t.call(Route::PublishVersion, &[("workflow_id", &id)], None).await.status, 201);
    }
    // Trigger routes: a deployed version, and (but to create one) a GitHub webhook trigger
    // signed with the sample's secret.
    let (mut trigger_id, mut hook_id) = (String::new(), String::new());
    if trigger_routes.contains(&route) {
        assert_eq!(t.call(Route::PublishVersion, &[("workflow_id", &id)], None).await.status, 201);
        let deploy = Some(serde_json::json!({ "version": 1 }));
        assert_eq!(t.call(Route::DeployVersion, &[("workflow_id", &id)], deploy).await.status, 200);
        if route != Route::CreateTrigger {
            let body = serde_json::json!({ "type": "webhook", "scheme": "github", "secret": SAMPLE_HOOK_SECRET });
            let trigger = t.call(Route::CreateTrigger, &[("workflow_id", &id)], Some(body)).await;
            assert_eq!(trigger.status, 201, "{}", trigger.raw);
            trigger_id = trigger.body["id"].as_str().unwrap().to_string();
            hook_id = trigger.body["webhook"]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
        }
    }
    if route == Route::DeleteCredential {
        let body = serde_json::json!({ "provider": "openai", "api_key": "sk-events-test-0000" });
        assert_eq!(t.call(Route::PutCredential, &[("name", "openai-main")], Some(body)).await.status, 201);
    }
    let started = t
        .call(
            Route::StartExecution,
            &[("workflow_id", &id)],
            Some(serde_json::json!({ "version": "draft", "input": { "url": "https://example.com" } })),
        )
        .await;
    let execution_id = started.body["execution_id"].as_str().expect("an execution id").to_string();
    if route == Route::RedriveExecution {
        fail_execution(&t, &execution_id).await;
    }
    let mut token = String::new();
    if answers {
        nodeai_tests::run_worker_for(&t, &Default::default(), std::time::Duration::from_secs(30)).await;
        let parked = t.call(Route::GetExecution, &[("execution_id", &execution_id)], None).await;
        let url = parked.body["waiting_on"][0]["callback_url"].as_str().unwrap_or_else(|| panic!("{}", parked.raw));
        token = url.rsplit('/').next().unwrap().to_string();
    }
    // Assistant routes: the sample's credential on a scripted model, a session, and (to apply)
    // a valid proposal in it.
    let assistant = [
        Route::CreateAssistantSession,
        Route::GetAssistantSession,
        Route::EndAssistantSession,
        Route::SendAssistantMessage,
        Route::ApplyAssistantProposal,
    ];
    let mut session_id = String::new();
    let _model = if assistant.contains(&route) {
        let replies = vec![nodeai_tests::ScriptedReply::Tool(nodeai_tests::valid_proposal("greeter"))];
        let model = nodeai_tests::ScriptedModel::start(false, replies, std::time::Duration::ZERO).await;
        let put = t.call(Route::PutCredential, &[("name", "openai-main")], Some(model.credential())).await;
        assert_eq!(put.status, 201, "{}", put.raw);
        if route != Route::CreateAssistantSession {
            let body = serde_json::json!({ "credential": "openai-main", "model": "gpt-5-mini" });
            let session = t.call(Route::CreateAssistantSession, &[], Some(body)).await;
            assert_eq!(session.status, 201, "{}", session.raw);
            session_id = session.body["session_id"].as_str().unwrap().to_string();
        }
        if route == Route::ApplyAssistantProposal {
            let body = Some(serde_json::json!({ "message": "Greet the person named in the input." }));
            let turn = t.call(Route::SendAssistantMessage, &[("session_id", &session_id)], body).await;
            assert_eq!(turn.status, 200, "{}", turn.raw);
        }
        Some(model)
    } else {
        None
    };
    let extra = t.call(Route::CreateApiKey, &[], Some(serde_json::json!({ "name": "extra" }))).await;
    let key_id = extra.body["id"].as_str().expect("a key id").to_string();
    let text = std::fs::read_to_string(events_dir().join(format!("{function}.json")))
        .unwrap_or_else(|e| panic!("events/{function}.json: {e}"))
        .replace(SAMPLE_WORKFLOW_ID, &id)
        .replace(SAMPLE_KEY_ID, &key_id)
        .replace(SAMPLE_EXECUTION_ID, &execution_id)
        .replace(SAMPLE_CALLBACK_TOKEN, &token)
        .replace(SAMPLE_TRIGGER_ID, &trigger_id)
        .replace(SAMPLE_HOOK_ID, &hook_id)
        .replace(SAMPLE_SESSION_ID, &session_id)
        .replace(SAMPLE_KEY, &t.key);
    let request =
        lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("events/{function}.json does not parse: {e}"));
    Reply::from(handle(&t.app, route, request).await)
}

#[tokio::test]
async fn every_route_event_gets_its_success_status() {
    for spec in ROUTES {
        let reply = run_event(spec.function, spec.route).await;
        let expected = match spec.route {
            Route::CreateWorkflow | Route::PublishVersion | Route::CreateApiKey | Route::RotateApiKey => 201,
            Route::CreateTrigger | Route::CreateAssistantSession | Route::ApplyAssistantProposal => 201,
            Route::EndAssistantSession => 204,
            Route::ReceiveWebhook => 202,
            Route::DeleteTrigger => 204,
            Route::PutCredential => 201,
            Route::StartExecution | Route::CancelExecution | Route::RedriveExecution => 202,
            Route::CompleteCallback | Route::CompleteExecutionCallback => 202,
            Route::DeleteWorkflow | Route::RevokeApiKey | Route::DeleteCredential => 204,
            _ => 200,
        };
        assert_eq!(reply.status, expected, "events/{}.json: {}", spec.function, reply.raw);
        assert_eq!(reply.header("x-request-id"), Some(format!("sample-{}", spec.function).as_str()));
    }
}

#[tokio::test]
async fn the_fallback_event_gets_405() {
    let reply = run_event(FALLBACK_FUNCTION, Route::Fallback).await;
    reply.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(reply.header("allow"), Some("POST, GET"));
}

#[tokio::test]
async fn the_gateway_request_id_is_used_when_the_client_sends_none() {
    let t = TestApp::new().await;
    let text = std::fs::read_to_string(events_dir().join("health-live.json")).unwrap();
    let mut event: serde_json::Value = serde_json::from_str(&text).unwrap();
    event["headers"].as_object_mut().unwrap().remove("X-Request-ID");
    event["multiValueHeaders"].as_object_mut().unwrap().remove("X-Request-ID");
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let reply = Reply::from(handle(&t.app, Route::HealthLive, request).await);
    assert_eq!(reply.header("x-request-id"), Some("c6af9ac6-7b61-11e6-9a41-93e8deadbeef"));
}
