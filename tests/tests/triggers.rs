//! Triggers on the emulator: signed webhooks of every scheme (a good signature starts one run;
//! a wrong, missing, altered or stale one starts nothing; a repeated delivery starts nothing
//! new), sync answers, schedule triggers as EventBridge Scheduler schedules (moto) whose fires
//! the test plays, and tenancy.

use aws_sdk_scheduler::types::ScheduleState;
use nodeai::api::Route;
use nodeai::queue::TriggerScheduler;
use nodeai::store::ExecutionStore;
use nodeai::triggers::signature::hmac_hex;
use nodeai_tests::{RequestSpec, TestApp, sqs_client};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

async fn scheduler_client() -> aws_sdk_scheduler::Client {
    nodeai_tests::emulator_endpoint();
    aws_sdk_scheduler::Client::new(&aws_config::load_from_env().await)
}

/// A test app wired with Scheduler (a fresh schedule group on the emulator), and a workflow
/// whose deployed version outputs what it was given.
async fn setup(definition: Value) -> (TestApp, String, String) {
    let mut t = TestApp::new().await;
    let group = format!("triggers-{}", nodeai::model::new_id().to_lowercase());
    let client = scheduler_client().await;
    client.create_schedule_group().name(&group).send().await.expect("create the schedule group");
    let schedules = TriggerScheduler {
        client,
        group: group.clone(),
        role_arn: "arn:aws:iam::123456789012:role/nodeai-test-scheduler".into(),
        queue_arn: format!("arn:aws:sqs:us-east-1:123456789012:{}", t.queue_url.rsplit('/').next().unwrap()),
    };
    t.app = t.app.clone().with_schedules(Arc::new(schedules));
    let workflow_id = t.create_workflow(definition).await;
    let wf = [("workflow_id", workflow_id.as_str())];
    assert_eq!(t.call(Route::PublishVersion, &wf, None).await.status, 201);
    let deployed = t.call(Route::DeployVersion, &wf, Some(json!({ "version": 1 }))).await;
    assert_eq!(deployed.status, 200, "{}", deployed.raw);
    (t, workflow_id, group)
}

fn echo_workflow() -> Value {
    json!({ "name": "echo", "nodes": [
        { "id": "out", "type": "flow.output", "config": { "value": { "got": "{{ input.body }}", "event": "{{ input.headers['x-event'] }}" } } }
    ] })
}

async fn create_trigger(t: &TestApp, workflow_id: &str, body: Value) -> Value {
    let reply = t.call(Route::CreateTrigger, &[("workflow_id", workflow_id)], Some(body)).await;
    assert_eq!(reply.status, 201, "{}", reply.raw);
    reply.body
}

fn hook_id(trigger: &Value) -> String {
    trigger["webhook"]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

/// A delivery to a hook: the raw body and headers as the sender sent them.
async fn deliver(t: &TestApp, hook: &str, body: &[u8], headers: &[(&str, String)]) -> nodeai_tests::Reply {
    let mut spec = RequestSpec::new(&[("hook_id", hook)]).raw(body.to_vec()).header("content-type", "application/json");
    for (name, value) in headers {
        spec = spec.header(name, value);
    }
    t.send(Route::ReceiveWebhook, spec).await
}

/// The executions a trigger started (the listing filter).
async fn runs_of(t: &TestApp, workflow_id: &str, trigger_id: &str) -> Vec<Value> {
    let reply = t
        .send(
            Route::ListExecutions,
            RequestSpec::new(&[("workflow_id", workflow_id)]).key(&t.key).query("trigger_id", trigger_id),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    reply.body["items"].as_array().unwrap().clone()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn t_v1(secret: &str, t: i64, body: &[u8]) -> String {
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    format!("t={t},v1={}", hmac_hex(secret, &message))
}

fn slack_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut message = format!("v0:{t}:").into_bytes();
    message.extend_from_slice(body);
    format!("v0={}", hmac_hex(secret, &message))
}

/// How a sender signs: the headers for `body` signed with `secret` at `t`, with `delivery` as
/// the scheme's delivery id (GitHub's header, Stripe's and Slack's event ids are in the body).
fn signed(scheme: &str, secret: &str, t: i64, body: &[u8], delivery: &str) -> Vec<(&'static str, String)> {
    match scheme {
        "nodeai" => vec![("nodeai-signature", t_v1(secret, t, body)), ("idempotency-key", delivery.to_string())],
        "github" => vec![
            ("x-hub-signature-256", format!("sha256={}", hmac_hex(secret, body))),
            ("x-github-delivery", delivery.to_string()),
        ],
        "stripe" => vec![("stripe-signature", t_v1(secret, t, body))],
        "slack" => {
            vec![("x-slack-signature", slack_signature(secret, t, body)), ("x-slack-request-timestamp", t.to_string())]
        }
        _ => unreachable!(),
    }
}

fn delivery_body(scheme: &str, delivery: &str, n: u32) -> Vec<u8> {
    let body = match scheme {
        "stripe" => json!({ "id": delivery, "type": "invoice.paid", "n": n }),
        "slack" => json!({ "type": "event_callback", "event_id": delivery, "n": n }),
        _ => json!({ "order": n }),
    };
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn each_scheme_starts_one_run_for_a_good_signature_and_none_for_a_bad_one() {
    let (t, workflow_id, _) = setup(echo_workflow()).await;
    for scheme in ["nodeai", "github", "stripe", "slack"] {
        let given = format!("{scheme}-signing-secret-0123456789");
        let mut request = json!({ "type": "webhook", "scheme": scheme });
        if matches!(scheme, "stripe" | "slack") {
            request["secret"] = json!(given);
        }
        let trigger = create_trigger(&t, &workflow_id, request).await;
        let trigger_id = trigger["id"].as_str().unwrap().to_string();
        let secret = trigger["secret"].as_str().map(str::to_string).unwrap_or(given.clone());
        if matches!(scheme, "stripe" | "slack") {
            assert!(trigger.get("secret").is_none(), "{scheme}: a given secret is never echoed");
        } else {
            assert!(secret.starts_with("whsec_"), "{scheme}: a generated secret is shown once");
        }
        assert_eq!(trigger["webhook"]["unsigned"], false);
        let hook = hook_id(&trigger);
        let delivery = format!("{scheme}-delivery-1");
        let body = delivery_body(scheme, &delivery, 1);

        // Refused: a wrong secret, no signature, a body changed by one byte, a stale timestamp.
        let wrong = deliver(&t, &hook, &body, &signed(scheme, "not-the-secret", now(), &body, &delivery)).await;
        wrong.assert_error(401, "WEBHOOK_SIGNATURE_INVALID");
        let missing = deliver(&t, &hook, &body, &[]).await;
        missing.assert_error(401, "WEBHOOK_SIGNATURE_INVALID");
        let mut changed = body.clone();
        let last = changed.len() - 2;
        changed[last] ^= 0x01;
        let altered = deliver(&t, &hook, &changed, &signed(scheme, &secret, now(), &body, &delivery)).await;
        altered.assert_error(401, "WEBHOOK_SIGNATURE_INVALID");
        if scheme != "github" {
            let stale = deliver(&t, &hook, &body, &signed(scheme, &secret, now() - 600, &body, &delivery)).await;
            stale.assert_error(401, "WEBHOOK_TIMESTAMP_STALE");
        }
        assert!(runs_of(&t, &workflow_id, &trigger_id).await.is_empty(), "{scheme}: nothing started");

        // A good delivery starts one run; the same delivery again (a retry, re-signed) starts
        // nothing new and answers with the first run.
        let mut headers = signed(scheme, &secret, now(), &body, &delivery);
        headers.push(("x-event", "order.paid".into()));
        headers.push(("authorization", "Bearer not-for-the-workflow".into()));
        let first = deliver(&t, &hook, &body, &headers).await;
        assert_eq!(first.status, 202, "{scheme}: {}", first.raw);
        let execution_id = first.body["execution_id"].as_str().unwrap().to_string();
        assert_eq!(first.header("nodeai-execution-id"), Some(execution_id.as_str()));
        assert!(first.body.get("workflow_id").is_none(), "a hook's answer names no workflow");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let again = deliver(&t, &hook, &body, &signed(scheme, &secret, now(), &body, &delivery)).await;
        assert!(again.status == 202, "{scheme}: {}", again.raw);
        assert_eq!(again.body["execution_id"], json!(execution_id), "{scheme}: the first run answers");
        let runs = runs_of(&t, &workflow_id, &trigger_id).await;
        assert_eq!(runs.len(), 1, "{scheme}: one run for one delivery");
        // The very same signed request under another (unsigned) delivery id is a replay: refused.
        if matches!(scheme, "github" | "nodeai") {
            let mut replay = headers.clone();
            for (name, value) in replay.iter_mut() {
                if *name == "x-github-delivery" || *name == "idempotency-key" {
                    *value = format!("{scheme}-forged-delivery");
                }
            }
            deliver(&t, &hook, &body, &replay).await.assert_error(401, "WEBHOOK_SIGNATURE_INVALID");
            // ... and with the delivery id removed.
            let stripped: Vec<_> = headers
                .iter()
                .filter(|(name, _)| *name != "x-github-delivery" && *name != "idempotency-key")
                .cloned()
                .collect();
            deliver(&t, &hook, &body, &stripped).await.assert_error(401, "WEBHOOK_SIGNATURE_INVALID");
            assert_eq!(runs_of(&t, &workflow_id, &trigger_id).await.len(), 1, "{scheme}: the replay started nothing");
        }

        // The run's input: the parsed body, lower-cased headers without credentials or
        // signatures, the query, the method.
        let execution = t.store.get_execution(&t.tenant_id, &execution_id).await.unwrap().unwrap();
        assert_eq!(execution.trigger_id.as_deref(), Some(trigger_id.as_str()));
        let input = &execution.input;
        assert_eq!(input["body"], serde_json::from_slice::<Value>(&body).unwrap());
        assert_eq!(input["method"], "POST");
        assert_eq!(input["headers"]["x-event"], "order.paid");
        let headers = input["headers"].as_object().unwrap();
        for hidden in
            ["authorization", "nodeai-signature", "x-hub-signature-256", "stripe-signature", "x-slack-signature"]
        {
            assert!(!headers.contains_key(hidden), "{scheme}: {hidden} is not passed on");
        }
    }
}

#[tokio::test]
async fn a_replayed_nodeai_delivery_without_a_key_starts_nothing_new_and_text_bodies_are_text() {
    let (t, workflow_id, _) = setup(echo_workflow()).await;
    let trigger = create_trigger(&t, &workflow_id, json!({ "type": "webhook" })).await;
    let (hook, secret) = (hook_id(&trigger), trigger["secret"].as_str().unwrap().to_string());
    let body = b"name=Ada&plan=pro".to_vec();
    let signature = t_v1(&secret, now(), &body);
    let send = || {
        let spec = RequestSpec::new(&[("hook_id", hook.as_str())])
            .raw(body.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("nodeai-signature", &signature)
            .query("source", "form");
        t.send(Route::ReceiveWebhook, spec)
    };
    let first = send().await;
    assert_eq!(first.status, 202, "{}", first.raw);
    // The same signed request again (a replay inside the 5-minute tolerance): the same run.
    let replay = send().await;
    assert_eq!(replay.body["execution_id"], first.body["execution_id"]);
    // The same signed request with an Idempotency-Key added is a replay too.
    let added = RequestSpec::new(&[("hook_id", hook.as_str())])
        .raw(body.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("nodeai-signature", &signature)
        .header("idempotency-key", "a-new-key");
    t.send(Route::ReceiveWebhook, added).await.assert_error(401, "WEBHOOK_SIGNATURE_INVALID");
    let id = first.body["execution_id"].as_str().unwrap();
    let input = t.store.get_execution(&t.tenant_id, id).await.unwrap().unwrap().input;
    assert_eq!(input["body"], "name=Ada&plan=pro", "a non-JSON body is text");
    assert_eq!(input["query"]["source"], "form");
    // Declared JSON but not JSON: 400 after the signature checked out; nothing starts.
    let bad = b"{not json".to_vec();
    let spec = RequestSpec::new(&[("hook_id", hook.as_str())])
        .raw(bad.clone())
        .header("content-type", "application/json")
        .header("nodeai-signature", &t_v1(&secret, now(), &bad));
    t.send(Route::ReceiveWebhook, spec).await.assert_error(400, "INVALID_JSON");
    assert_eq!(runs_of(&t, &workflow_id, trigger["id"].as_str().unwrap()).await.len(), 1);
}

#[tokio::test]
async fn sync_mode_answers_with_the_output_of_a_quick_run_and_202_for_a_slow_one() {
    let (t, workflow_id, _) = setup(echo_workflow()).await;
    let trigger =
        create_trigger(&t, &workflow_id, json!({ "type": "webhook", "scheme": "github", "mode": "sync" })).await;
    let (hook, secret) = (hook_id(&trigger), trigger["secret"].as_str().unwrap().to_string());
    let body = br#"{"order":7}"#.to_vec();
    let headers = vec![
        ("x-hub-signature-256", format!("sha256={}", hmac_hex(&secret, &body))),
        ("x-event", "order.paid".to_string()),
    ];
    let executor = nodeai_tests::deployed_like(&t, nodeai::nodes::breaker::CircuitBreakers::default()).await;
    let worker = async {
        for _ in 0..50 {
            if nodeai_tests::run_worker_for(&t, &executor, Duration::from_secs(30)).await > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (answer, ()) = tokio::join!(deliver(&t, &hook, &body, &headers), worker);
    assert_eq!(answer.status, 200, "{}", answer.raw);
    assert_eq!(answer.body, json!({ "got": { "order": 7 }, "event": "order.paid" }), "the output, in the response");
    assert!(answer.header("nodeai-execution-id").is_some());

    // A run that waits a minute does not end within a 1-second sync timeout: 202 with its id.
    let slow = json!({ "name": "slow", "nodes": [
        { "id": "pause", "type": "flow.wait", "config": { "seconds": 60 } },
        { "id": "out", "type": "flow.output", "config": { "value": "late" } }
    ], "edges": [ { "from": "pause", "to": "out" } ] });
    let (t2, slow_id, _) = setup(slow).await;
    let trigger = create_trigger(
        &t2,
        &slow_id,
        json!({ "type": "webhook", "scheme": "none", "mode": "sync", "sync_timeout_seconds": 1 }),
    )
    .await;
    assert_eq!(trigger["webhook"]["unsigned"], true, "listed as unsigned");
    assert!(trigger.get("secret").is_none());
    let started = std::time::Instant::now();
    let answer = deliver(&t2, &hook_id(&trigger), b"{}", &[]).await;
    assert_eq!(answer.status, 202, "{}", answer.raw);
    assert_eq!(answer.body["status"], "queued");
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited for the run first");
}

#[tokio::test]
async fn a_schedule_is_a_scheduler_schedule_and_a_repeated_fire_starts_one_run() {
    let (t, workflow_id, group) = setup(json!({ "name": "report", "nodes": [
        { "id": "out", "type": "flow.output", "config": { "value": "report {{ input.kind }}" } } ] }))
    .await;
    let trigger = create_trigger(
        &t,
        &workflow_id,
        json!({ "type": "schedule", "cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin", "input": { "kind": "daily" } }),
    )
    .await;
    let trigger_id = trigger["id"].as_str().unwrap().to_string();
    assert_eq!(trigger["schedule"]["expression"], "cron(0 9 ? * MON-FRI *)");
    let next: Vec<String> =
        trigger["schedule"]["next_fire_times"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
    assert_eq!(next.len(), 5);
    for at in &next {
        assert!(!at.ends_with('Z'), "{at} is written in the trigger's time zone");
        let local = chrono::DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(local.format("%H:%M").to_string(), "09:00", "{at} is 09:00 in Berlin");
    }

    // The schedule in Scheduler: the expression, zone, target (the queue) and its message.
    let scheduler = scheduler_client().await;
    let name = format!("nodeai-trigger-{trigger_id}");
    let schedule = scheduler.get_schedule().group_name(&group).name(&name).send().await.unwrap();
    assert_eq!(schedule.schedule_expression(), Some("cron(0 9 ? * MON-FRI *)"));
    assert_eq!(schedule.schedule_expression_timezone(), Some("Europe/Berlin"));
    assert_eq!(schedule.state(), Some(&ScheduleState::Enabled));
    let target = schedule.target().unwrap();
    assert!(target.arn().ends_with(t.queue_url.rsplit('/').next().unwrap()), "the execution queue");
    let message = target.input().unwrap();
    assert!(message.contains("<aws.scheduler.scheduled-time>"), "{message}");

    // Scheduler fires (at least once): the same fire time delivered twice starts one run.
    let fired = message.replace("<aws.scheduler.scheduled-time>", "2026-11-30T08:00:00Z");
    let sqs = sqs_client().await;
    for _ in 0..2 {
        sqs.send_message().queue_url(&t.queue_url).message_body(&fired).send().await.unwrap();
    }
    let executor = nodeai_tests::deployed_like(&t, nodeai::nodes::breaker::CircuitBreakers::default()).await;
    for _ in 0..6 {
        if nodeai_tests::run_worker_for(&t, &executor, Duration::from_secs(30)).await == 0 {
            break;
        }
    }
    let runs = runs_of(&t, &workflow_id, &trigger_id).await;
    assert_eq!(runs.len(), 1, "one run per fire time: {runs:?}");
    assert_eq!(runs[0]["status"], "succeeded");
    let execution_id = runs[0]["execution_id"].as_str().unwrap();
    let done = t.store.get_execution(&t.tenant_id, execution_id).await.unwrap().unwrap();
    assert_eq!(done.output, json!("report daily"));
    // GET shows the last run and its status.
    let tp = [("workflow_id", workflow_id.as_str()), ("trigger_id", trigger_id.as_str())];
    let read = t.call(Route::GetTrigger, &tp, None).await;
    assert_eq!(read.body["last_run"]["execution_id"], json!(execution_id), "{}", read.raw);
    assert_eq!(read.body["last_run"]["status"], "succeeded");

    // Disabled: the schedule is disabled too; a fire already on its way starts nothing.
    let patched = t.call(Route::UpdateTrigger, &tp, Some(json!({ "enabled": false, "rate": null }))).await;
    assert_eq!(patched.status, 200, "{}", patched.raw);
    let schedule = scheduler.get_schedule().group_name(&group).name(&name).send().await.unwrap();
    assert_eq!(schedule.state(), Some(&ScheduleState::Disabled));
    let later = message.replace("<aws.scheduler.scheduled-time>", "2026-12-01T08:00:00Z");
    sqs.send_message().queue_url(&t.queue_url).message_body(&later).send().await.unwrap();
    nodeai_tests::run_worker_for(&t, &executor, Duration::from_secs(30)).await;
    assert_eq!(runs_of(&t, &workflow_id, &trigger_id).await.len(), 1, "a disabled trigger starts nothing");

    // Changed to a rate: Scheduler has the new expression.
    let patched = t.call(Route::UpdateTrigger, &tp, Some(json!({ "cron": null, "rate": "15 minutes" }))).await;
    assert_eq!(patched.status, 200, "{}", patched.raw);
    let schedule = scheduler.get_schedule().group_name(&group).name(&name).send().await.unwrap();
    assert_eq!(schedule.schedule_expression(), Some("rate(15 minutes)"));

    // Deleted: the schedule goes with it.
    assert_eq!(t.call(Route::DeleteTrigger, &tp, None).await.status, 204);
    assert!(scheduler.get_schedule().group_name(&group).name(&name).send().await.is_err(), "schedule deleted");
    t.call(Route::GetTrigger, &tp, None).await.assert_error(404, "TRIGGER_NOT_FOUND");
}

#[tokio::test]
async fn bad_triggers_are_422_with_paths_and_an_undeployed_workflow_is_409() {
    let (t, workflow_id, _) = setup(echo_workflow()).await;
    let wf = [("workflow_id", workflow_id.as_str())];
    let bad = t
        .call(
            Route::CreateTrigger,
            &wf,
            Some(json!({ "type": "schedule", "cron": "0 9 * * FUNDAY", "timezone": "Europe/Atlantis" })),
        )
        .await;
    let error = bad.assert_error(422, "TRIGGER_INVALID");
    let paths: Vec<&str> = error["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec!["/cron", "/timezone"]);
    let rate = t.call(Route::CreateTrigger, &wf, Some(json!({ "type": "schedule", "rate": "every day" }))).await;
    rate.assert_error(422, "TRIGGER_INVALID");
    let stripe = t.call(Route::CreateTrigger, &wf, Some(json!({ "type": "webhook", "scheme": "stripe" }))).await;
    assert_eq!(stripe.assert_error(422, "TRIGGER_INVALID")["details"][0]["path"], "/secret");
    t.call(Route::CreateTrigger, &wf, Some(json!({ "type": "webhook", "mode": "sync", "sync_timeout_seconds": 26 })))
        .await
        .assert_error(422, "TRIGGER_INVALID");

    // No deployed version: 409 when enabled, saved when disabled.
    let draft_only = t.create_workflow(echo_workflow()).await;
    let dw = [("workflow_id", draft_only.as_str())];
    let refused = t.call(Route::CreateTrigger, &dw, Some(json!({ "type": "webhook" }))).await;
    assert!(!refused.assert_error(409, "NO_DEPLOYED_VERSION")["suggestions"].as_array().unwrap().is_empty());
    let disabled = t.call(Route::CreateTrigger, &dw, Some(json!({ "type": "webhook", "enabled": false }))).await;
    assert_eq!(disabled.status, 201, "{}", disabled.raw);
    let hook = hook_id(&disabled.body);
    // A disabled hook answers as an unknown one.
    let unknown = deliver(&t, &nodeai::triggers::new_hook_id(), b"{}", &[]).await;
    let off = deliver(&t, &hook, b"{}", &[]).await;
    assert_eq!(
        unknown.assert_error(404, "HOOK_NOT_FOUND")["message"],
        off.assert_error(404, "HOOK_NOT_FOUND")["message"]
    );
    deliver(&t, "not-a-hook", b"{}", &[]).await.assert_error(404, "HOOK_NOT_FOUND");
    // Over the API's body limit: 413, before anything is read.
    let live = create_trigger(&t, &workflow_id, json!({ "type": "webhook", "scheme": "none" })).await;
    let huge = vec![b' '; nodeai::api::http::MAX_BODY_BYTES + 1];
    deliver(&t, &hook_id(&live), &huge, &[]).await.assert_error(413, "PAYLOAD_TOO_LARGE");

    // The most triggers per workflow.
    for _ in 0..nodeai::triggers::MAX_TRIGGERS_PER_WORKFLOW - 1 {
        create_trigger(&t, &draft_only, json!({ "type": "webhook", "scheme": "none", "enabled": false })).await;
    }
    let over = t.call(Route::CreateTrigger, &dw, Some(json!({ "type": "webhook", "enabled": false }))).await;
    over.assert_error(422, "TRIGGER_LIMIT_REACHED");
    // Paged listing sees all of them.
    let page = t.send(Route::ListTriggers, RequestSpec::new(&dw).key(&t.key).query("limit", "15")).await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 15);
    let token = page.body["next_token"].as_str().unwrap();
    let rest = t
        .send(Route::ListTriggers, RequestSpec::new(&dw).key(&t.key).query("limit", "15").query("next_token", token))
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn another_tenant_cannot_read_change_or_delete_a_trigger_and_deleting_the_workflow_removes_them() {
    let (t, workflow_id, group) = setup(echo_workflow()).await;
    let hook_trigger = create_trigger(&t, &workflow_id, json!({ "type": "webhook" })).await;
    let schedule_trigger = create_trigger(&t, &workflow_id, json!({ "type": "schedule", "rate": "5 minutes" })).await;
    let (_, other_key) = t.other_tenant().await;
    let trigger_id = hook_trigger["id"].as_str().unwrap();
    let tp = [("workflow_id", workflow_id.as_str()), ("trigger_id", trigger_id)];
    for (route, body) in [
        (Route::GetTrigger, None),
        (Route::UpdateTrigger, Some(json!({ "enabled": false }))),
        (Route::DeleteTrigger, None),
        (Route::RotateTriggerSecret, None),
        (Route::ListTriggers, None),
    ] {
        let reply = t.send(route, RequestSpec::new(&tp).key(&other_key).json(body)).await;
        assert_eq!(reply.status, 404, "{route:?}: {}", reply.raw);
    }
    assert_eq!(t.call(Route::GetTrigger, &tp, None).await.body["enabled"], true, "unchanged");

    // Rotation: the new secret verifies, and the old one during the grace period.
    let hook = hook_id(&hook_trigger);
    let old = hook_trigger["secret"].as_str().unwrap().to_string();
    let rotated = t.call(Route::RotateTriggerSecret, &tp, None).await;
    assert_eq!(rotated.status, 200, "{}", rotated.raw);
    let new = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(rotated.body["previous_secret_expires_at"].is_string());
    for (n, secret) in [&new, &old].into_iter().enumerate() {
        let body = serde_json::to_vec(&json!({ "n": n })).unwrap();
        let reply = deliver(&t, &hook, &body, &[("nodeai-signature", t_v1(secret, now(), &body))]).await;
        assert_eq!(reply.status, 202, "secret {n}: {}", reply.raw);
    }

    // Deleting the workflow deletes its triggers: the hook answers 404, the schedule is gone.
    assert_eq!(t.call(Route::DeleteWorkflow, &[("workflow_id", workflow_id.as_str())], None).await.status, 204);
    let body = b"{}".to_vec();
    deliver(&t, &hook, &body, &[("nodeai-signature", t_v1(&new, now(), &body))])
        .await
        .assert_error(404, "HOOK_NOT_FOUND");
    let name = format!("nodeai-trigger-{}", schedule_trigger["id"].as_str().unwrap());
    assert!(scheduler_client().await.get_schedule().group_name(&group).name(&name).send().await.is_err());
}

#[tokio::test]
async fn slack_handshakes_are_answered_failed_sync_runs_are_502_and_schedule_inputs_are_checked() {
    let definition = json!({ "name": "strict", "input_schema": { "type": "object", "required": ["body"] },
        "nodes": [
            { "id": "pause", "type": "flow.wait", "config": { "seconds": "{{ input.body.wait }}" } },
            { "id": "out", "type": "flow.output", "config": { "value": "done" } }
        ],
        "edges": [ { "from": "pause", "to": "out" } ] });
    let (t, workflow_id, _) = setup(definition).await;

    // Slack's url_verification, signed: answered with its challenge; nothing starts.
    let secret = "slack-signing-secret-0123456789";
    let slack =
        create_trigger(&t, &workflow_id, json!({ "type": "webhook", "scheme": "slack", "secret": secret })).await;
    let body = br#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
    let answer = deliver(&t, &hook_id(&slack), body, &signed("slack", secret, now(), body, "")).await;
    assert_eq!(answer.status, 200, "{}", answer.raw);
    assert_eq!(answer.body, json!({ "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" }));
    assert!(runs_of(&t, &workflow_id, slack["id"].as_str().unwrap()).await.is_empty());
    // Unsigned, the handshake is refused like any delivery.
    deliver(&t, &hook_id(&slack), body, &[]).await.assert_error(401, "WEBHOOK_SIGNATURE_INVALID");

    // A sync run that fails (its wait is not a number): 502 with the execution's id, not its error.
    let sync = create_trigger(&t, &workflow_id, json!({ "type": "webhook", "scheme": "none", "mode": "sync" })).await;
    let executor = nodeai_tests::deployed_like(&t, nodeai::nodes::breaker::CircuitBreakers::default()).await;
    let worker = async {
        for _ in 0..50 {
            if nodeai_tests::run_worker_for(&t, &executor, Duration::from_secs(30)).await > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let sync_hook = hook_id(&sync);
    let (answer, ()) = tokio::join!(deliver(&t, &sync_hook, br#"{"wait":"soon"}"#, &[]), worker);
    let error = answer.assert_error(502, "EXECUTION_FAILED");
    assert!(!error["message"].as_str().unwrap().contains("WAIT_INVALID"), "the step's error stays with the tenant");
    let id = answer.header("nodeai-execution-id").expect("names the execution").to_string();
    let failed = t.store.get_execution(&t.tenant_id, &id).await.unwrap().unwrap();
    assert_eq!(failed.status, nodeai::model::ExecutionStatus::Failed);

    // A schedule's input must match the deployed version's input_schema when it is saved.
    let wf = [("workflow_id", workflow_id.as_str())];
    let refused =
        t.call(Route::CreateTrigger, &wf, Some(json!({ "type": "schedule", "rate": "1 hour", "input": {} }))).await;
    let error = refused.assert_error(422, "TRIGGER_INVALID");
    assert!(error["details"][0]["path"].as_str().unwrap().starts_with("/input"), "{error}");
    let fine = json!({ "type": "schedule", "rate": "1 hour", "input": { "body": { "wait": 1 } } });
    assert_eq!(t.call(Route::CreateTrigger, &wf, Some(fine)).await.status, 201);
}
