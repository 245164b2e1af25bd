//! The workflow API, route by route, through the same entry point the functions use, against
//! the DynamoDB emulator.

use nodeai::api::Route;
use nodeai_tests::{RequestSpec, TestApp, sample_definition};
use serde_json::json;

#[tokio::test]
async fn create_get_update_delete_round_trip() {
    let t = TestApp::new().await;
    let created = t.call(Route::CreateWorkflow, &[], Some(sample_definition("Summarize"))).await;
    assert_eq!(created.status, 201, "{}", created.raw);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 26, "ULID ids");
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(created.header("location"), Some(format!("/v1/workflows/{id}").as_str()));
    assert_eq!(created.body["revision"], 1);
    assert_eq!(created.body["latest_version"], serde_json::Value::Null);
    assert_eq!(created.body["definition"]["nodes"][1]["id"], "summarize");
    assert!(created.body["created_at"].as_str().unwrap().ends_with('Z'));

    let fetched = t.call(Route::GetWorkflow, &[("workflow_id", &id)], None).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body["definition"], created.body["definition"]);
    assert_eq!(fetched.header("etag"), Some("\"1\""));

    let mut changed = sample_definition("Summarize v2");
    changed["tags"] = json!(["demo", "v2"]);
    let updated = t
        .send(
            Route::UpdateWorkflow,
            RequestSpec::new(&[("workflow_id", &id)]).key(&t.key).header("if-match", "\"1\"").json(Some(changed)),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.raw);
    assert_eq!(updated.body["name"], "Summarize v2");
    assert_eq!(updated.header("etag"), Some("\"2\""));
    assert_eq!(updated.body["created_at"], created.body["created_at"]);

    // The same stale ETag again: 412, and nothing changes.
    let stale = t
        .send(
            Route::UpdateWorkflow,
            RequestSpec::new(&[("workflow_id", &id)])
                .key(&t.key)
                .header("if-match", "\"1\"")
                .json(Some(sample_definition("lost update"))),
        )
        .await;
    stale.assert_error(412, "PRECONDITION_FAILED");
    let after = t.call(Route::GetWorkflow, &[("workflow_id", &id)], None).await;
    assert_eq!(after.body["name"], "Summarize v2");

    let deleted = t.call(Route::DeleteWorkflow, &[("workflow_id", &id)], None).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.raw.is_empty());
    t.call(Route::GetWorkflow, &[("workflow_id", &id)], None).await.assert_error(404, "WORKFLOW_NOT_FOUND");
    t.call(Route::DeleteWorkflow, &[("workflow_id", &id)], None).await.assert_error(404, "WORKFLOW_NOT_FOUND");
}

#[tokio::test]
async fn update_without_if_match_replaces_the_draft() {
    let t = TestApp::new().await;
    let id = t.create_workflow(sample_definition("one")).await;
    let updated = t.call(Route::UpdateWorkflow, &[("workflow_id", &id)], Some(sample_definition("two"))).await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["revision"], 2);
    let weak = t
        .send(
            Route::UpdateWorkflow,
            RequestSpec::new(&[("workflow_id", &id)])
                .key(&t.key)
                .header("if-match", "W/\"2\"")
                .json(Some(sample_definition("three"))),
        )
        .await;
    assert_eq!(weak.status, 200, "weak ETags match too: {}", weak.raw);
    let bad = t
        .send(
            Route::UpdateWorkflow,
            RequestSpec::new(&[("workflow_id", &id)])
                .key(&t.key)
                .header("if-match", "banana")
                .json(Some(sample_definition("x"))),
        )
        .await;
    bad.assert_error(400, "INVALID_REQUEST");
}

#[tokio::test]
async fn publish_list_get_and_deploy_versions() {
    let t = TestApp::new().await;
    let id = t.create_workflow(sample_definition("flow")).await;
    let wf = [("workflow_id", id.as_str())];

    t.send(Route::DeployVersion, RequestSpec::new(&wf).key(&t.key).json(Some(json!({ "version": 1 }))))
        .await
        .assert_error(404, "VERSION_NOT_FOUND");

    let v1 = t.call(Route::PublishVersion, &wf, None).await;
    assert_eq!(v1.status, 201, "{}", v1.raw);
    assert_eq!(v1.body["version"], 1);
    assert_eq!(v1.header("location"), Some(format!("/v1/workflows/{id}/versions/1").as_str()));

    // Nothing changed since: publishing again is a conflict with a suggestion.
    let again = t.call(Route::PublishVersion, &wf, None).await;
    let error = again.assert_error(409, "DRAFT_UNCHANGED");
    assert!(!error["suggestions"].as_array().unwrap().is_empty());

    t.call(Route::UpdateWorkflow, &wf, Some(sample_definition("flow v2"))).await;
    let v2 = t.call(Route::PublishVersion, &wf, None).await;
    assert_eq!(v2.body["version"], 2);
    assert_eq!(v2.body["definition"]["name"], "flow v2");

    // Versions are immutable: v1 still has the old name.
    let got = t.call(Route::GetVersion, &[("workflow_id", &id), ("version", "1")], None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["definition"]["name"], "flow");
    t.call(Route::GetVersion, &[("workflow_id", &id), ("version", "3")], None)
        .await
        .assert_error(404, "VERSION_NOT_FOUND");
    t.call(Route::GetVersion, &[("workflow_id", &id), ("version", "abc")], None)
        .await
        .assert_error(400, "INVALID_REQUEST");
    t.call(Route::GetVersion, &[("workflow_id", &id), ("version", "0")], None)
        .await
        .assert_error(400, "INVALID_REQUEST");

    let listed = t.send(Route::ListVersions, RequestSpec::new(&wf).key(&t.key).query("limit", "1")).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["items"][0]["version"], 2);
    let token = listed.body["next_token"].as_str().expect("a second page").to_string();
    let rest = t
        .send(Route::ListVersions, RequestSpec::new(&wf).key(&t.key).query("limit", "1").query("next_token", &token))
        .await;
    assert_eq!(rest.body["items"][0]["version"], 1);
    assert_eq!(rest.body["next_token"], serde_json::Value::Null);

    let deployed =
        t.send(Route::DeployVersion, RequestSpec::new(&wf).key(&t.key).json(Some(json!({ "version": 1 })))).await;
    assert_eq!(deployed.status, 200, "{}", deployed.raw);
    assert_eq!(deployed.body["deployed_version"], 1);
    assert_eq!(deployed.body["latest_version"], 2);
    // Roll forward, and back: the same call.
    let forward =
        t.send(Route::DeployVersion, RequestSpec::new(&wf).key(&t.key).json(Some(json!({ "version": 2 })))).await;
    assert_eq!(forward.body["deployed_version"], 2);
    let shown = t.call(Route::GetWorkflow, &wf, None).await;
    assert_eq!(shown.body["deployed_version"], 2);
    assert_eq!(shown.body["has_unpublished_changes"], false);

    for bad in [
        json!({ "version": 0 }),
        json!({ "version": "1" }),
        json!({}),
        json!({ "version": 1, "x": 1 }),
        json!({ "version": -1 }),
    ] {
        t.send(Route::DeployVersion, RequestSpec::new(&wf).key(&t.key).json(Some(bad.clone())))
            .await
            .assert_error(400, "INVALID_REQUEST");
    }

    // Deleting the workflow removes its versions.
    assert_eq!(t.call(Route::DeleteWorkflow, &wf, None).await.status, 204);
    t.call(Route::GetVersion, &[("workflow_id", &id), ("version", "1")], None)
        .await
        .assert_error(404, "WORKFLOW_NOT_FOUND");
    t.call(Route::ListVersions, &wf, None).await.assert_error(404, "WORKFLOW_NOT_FOUND");
}

#[tokio::test]
async fn list_is_newest_first_with_cursor_paging_and_tag_filter() {
    let t = TestApp::new().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut definition = sample_definition(&format!("wf {i}"));
        definition["tags"] = if i % 2 == 0 { json!(["even"]) } else { json!(["odd"]) };
        ids.push(t.create_workflow(definition).await);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut spec = RequestSpec::new(&[]).key(&t.key).query("limit", "2");
        if let Some(token) = &token {
            spec = spec.query("next_token", token);
        }
        let page = t.send(Route::ListWorkflows, spec).await;
        assert_eq!(page.status, 200, "{}", page.raw);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        assert!(items.iter().all(|i| i.get("definition").is_none()), "listings carry summaries only");
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_string()));
        match page.body["next_token"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let even = t.send(Route::ListWorkflows, RequestSpec::new(&[]).key(&t.key).query("tag", "even")).await;
    let even_ids: Vec<_> =
        even.body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(even_ids, vec![ids[0].clone(), ids[2].clone(), ids[4].clone()]);

    // A cursor from the unfiltered listing is refused by the filtered one.
    let first = t.send(Route::ListWorkflows, RequestSpec::new(&[]).key(&t.key).query("limit", "1")).await;
    let token = first.body["next_token"].as_str().unwrap();
    t.send(Route::ListWorkflows, RequestSpec::new(&[]).key(&t.key).query("tag", "even").query("next_token", token))
        .await
        .assert_error(400, "INVALID_CURSOR");
    // A tampered cursor is refused.
    let mut tampered = token.to_string();
    tampered.replace_range(0..1, if tampered.starts_with('A') { "B" } else { "A" });
    t.send(Route::ListWorkflows, RequestSpec::new(&[]).key(&t.key).query("next_token", &tampered))
        .await
        .assert_error(400, "INVALID_CURSOR");
    for limit in ["0", "101", "ten", "-1"] {
        t.send(Route::ListWorkflows, RequestSpec::new(&[]).key(&t.key).query("limit", limit))
            .await
            .assert_error(400, "INVALID_REQUEST");
    }
    t.send(Route::ListWorkflows, RequestSpec::new(&[]).key(&t.key).query("tag", "no spaces"))
        .await
        .assert_error(400, "INVALID_REQUEST");
}

#[tokio::test]
async fn validate_reports_problems_without_saving() {
    let t = TestApp::new().await;
    let good = t.call(Route::ValidateWorkflow, &[], Some(sample_definition("ok"))).await;
    assert_eq!(good.status, 200);
    assert_eq!(good.body, json!({ "valid": true, "problems": [] }));

    let mut bad = sample_definition("bad");
    bad["edges"] = json!([ { "from": "fetch", "to": "summarize" }, { "from": "summarize", "to": "fetch" }, { "from": "summarize", "to": "done" } ]);
    bad["nodes"][1]["config"]["model"] = json!(7);
    let checked = t.call(Route::ValidateWorkflow, &[], Some(bad.clone())).await;
    assert_eq!(checked.status, 200);
    assert_eq!(checked.body["valid"], false);
    let problems = checked.body["problems"].as_array().unwrap();
    let codes: Vec<&str> = problems.iter().map(|p| p["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"CYCLE_DETECTED"), "{codes:?}");
    assert!(
        problems.iter().any(|p| p["path"] == "/nodes/1/config/model" && p["code"] == "INVALID_NODE_CONFIG"),
        "{problems:?}"
    );

    // Saving the same definition: 422 with the same problems.
    let refused = t.call(Route::CreateWorkflow, &[], Some(bad)).await;
    let error = refused.assert_error(422, "VALIDATION_FAILED");
    assert_eq!(error["details"], checked.body["problems"]);
    let listed = t.call(Route::ListWorkflows, &[], None).await;
    assert_eq!(listed.body["items"], json!([]), "nothing was saved");
}

#[tokio::test]
async fn node_types_are_listed_with_schemas() {
    let t = TestApp::new().await;
    let reply = t.call(Route::ListNodeTypes, &[], None).await;
    assert_eq!(reply.status, 200);
    let types: Vec<&str> =
        reply.body["items"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    for expected in ["llm.chat", "http.request", "text.template", "logic.condition", "data.json", "flow.output"] {
        assert!(types.contains(&expected), "{expected} missing from {types:?}");
    }
    assert!(reply.body["items"].as_array().unwrap().iter().all(|i| i["config_schema"]["type"] == "object"));
}

#[tokio::test]
async fn health_routes_need_no_key() {
    let t = TestApp::new().await;
    let live = t.send(Route::HealthLive, RequestSpec::new(&[])).await;
    assert_eq!((live.status, live.body["status"].as_str()), (200, Some("ok")));
    let ready = t.send(Route::HealthReady, RequestSpec::new(&[])).await;
    assert_eq!(ready.status, 200, "{}", ready.raw);
    assert_eq!(ready.body["checks"][0]["name"], "dynamodb");
    assert_eq!(ready.body["checks"][0]["status"], "ok");
    assert!(ready.body["checks"][0]["latency_ms"].is_u64());
    let summary = t.send(Route::Health, RequestSpec::new(&[])).await;
    assert_eq!(summary.body["stage"], "test");
    assert_eq!(summary.body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn readiness_reports_an_unreachable_table_as_503() {
    let t = TestApp::new().await;
    let client = nodeai_tests::dynamo_client().await;
    let missing = nodeai::store::dynamo::DynamoStore::new(client, "nodeai-no-such-table");
    let app = t.app.clone().with_store(std::sync::Arc::new(missing));
    let response = nodeai::api::handle(&app, Route::HealthReady, RequestSpec::new(&[]).build(Route::HealthReady)).await;
    let reply = nodeai_tests::Reply::from(response);
    let error = reply.assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(error["details"][0]["status"], "error");
    assert!(reply.header("retry-after").is_some());
    assert!(!reply.raw.contains("ResourceNotFound"), "no AWS error text reaches the client: {}", reply.raw);
}
