//! The store conformance suite: one behaviour spec that every adapter must pass. Run it with
//! `store_conformance_tests!(async { make_store() })`, which expands to one test per check.

use super::{DeployOutcome, ExecutionEnd, LeaseGuard, SecretStore, Store};
use crate::error::StoreError;
use crate::model::{CredentialRecord, Tenant, VersionRecord, WorkflowDefinition, WorkflowRecord, new_id, now_rfc3339};
use serde_json::json;

#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@tests $make;
            create_never_overwrites_and_reads_back,
            other_tenants_see_nothing,
            list_is_newest_first_and_pages,
            list_filters_by_tag_across_pages,
            replace_draft_checks_revision,
            publish_is_sequential_and_checks_revision,
            deploy_needs_an_existing_version,
            delete_removes_versions,
            tenants_and_api_keys,
            api_key_lifecycle,
            credentials_are_tenant_scoped_and_paged,
            steps_are_recorded_once_per_node,
            executions_lifecycle_and_lease,
            sweep_index_holds_unfinished_executions_until_they_progress,
            run_slots_hold_a_tenants_limit_and_free_themselves,
            concurrent_claims_have_one_winner,
            redrive_requeues_only_failed_executions_and_keeps_only_succeeded_steps_recorded_alone,
            executions_list_newest_first_with_status_filter,
            idempotency_keys_hold_for_their_window,
            parked_executions_hold_no_lease_and_resume_cancel_or_end,
            callback_tokens_are_found_by_hash_and_never_overwritten,
            child_batches_count_each_end_once_and_list_children_in_item_order,
            triggers_are_counted_per_tenant_found_by_hook_and_changed_by_revision,
            execution_events_append_once_per_seq_and_read_in_order,
            usage_rows_add_once_per_finish_and_list_by_day_range,
            budget_reservations_never_overspend_and_settle_to_the_real_cost,
            assistant_sessions_hold_their_limit_turns_in_order_and_one_writer,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let store = $make.await;
                $crate::store::conformance::$name(&store).await;
            }
        )*
    };
}

fn definition(name: &str, tags: &[&str]) -> WorkflowDefinition {
    serde_json::from_value(json!({
        "name": name,
        "tags": tags,
        "nodes": [ { "id": "out", "type": "flow.output", "config": { "value": "{{ input.x }}" } } ]
    }))
    .expect("test definition parses")
}

fn workflow(tenant_id: &str, name: &str, tags: &[&str]) -> WorkflowRecord {
    WorkflowRecord::new_draft(tenant_id, definition(name, tags))
}

fn version_of(record: &WorkflowRecord, version: u32) -> VersionRecord {
    VersionRecord {
        tenant_id: record.tenant_id.clone(),
        workflow_id: record.workflow_id.clone(),
        version,
        definition: record.definition.clone(),
        source_revision: record.revision,
        created_at: now_rfc3339(),
    }
}

/// ULIDs made in the same millisecond are random within it; space them so order is creation order.
async fn next_millisecond() {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
}

pub async fn create_never_overwrites_and_reads_back(store: &dyn Store) {
    let tenant = new_id();
    let record = workflow(&tenant, "first", &["a"]);
    store.create_workflow(&record).await.unwrap();
    assert_eq!(store.get_workflow(&tenant, &record.workflow_id).await.unwrap(), Some(record.clone()));
    let mut clash = workflow(&tenant, "second", &[]);
    clash.workflow_id = record.workflow_id.clone();
    assert!(matches!(store.create_workflow(&clash).await, Err(StoreError::ConditionFailed)));
    let kept = store.get_workflow(&tenant, &record.workflow_id).await.unwrap().unwrap();
    assert_eq!(kept.definition.name, "first", "a failed create must not overwrite");
    assert_eq!(store.get_workflow(&tenant, &new_id()).await.unwrap(), None);
}

pub async fn other_tenants_see_nothing(store: &dyn Store) {
    let (owner, other) = (new_id(), new_id());
    let record = workflow(&owner, "private", &["t"]);
    store.create_workflow(&record).await.unwrap();
    store.publish_version(&version_of(&record, 1)).await.unwrap();
    let id = &record.workflow_id;
    assert_eq!(store.get_workflow(&other, id).await.unwrap(), None);
    assert!(store.list_workflows(&other, None, 10, None).await.unwrap().items.is_empty());
    assert!(store.list_workflows(&other, None, 10, Some("t")).await.unwrap().items.is_empty());
    assert_eq!(store.get_version(&other, id, 1).await.unwrap(), None);
    assert!(store.list_versions(&other, id, None, 10).await.unwrap().items.is_empty());
    let replaced = store.replace_draft(&other, id, &definition("stolen", &[]), 2, &now_rfc3339()).await.unwrap();
    assert_eq!(replaced, None);
    assert_eq!(
        store.set_deployed_version(&other, id, 1, &now_rfc3339()).await.unwrap(),
        DeployOutcome::WorkflowMissing
    );
    let mut foreign_version = version_of(&record, 2);
    foreign_version.tenant_id = other.clone();
    assert!(store.publish_version(&foreign_version).await.is_err());
    assert!(!store.delete_workflow(&other, id).await.unwrap());
    let kept = store.get_workflow(&owner, id).await.unwrap().expect("owner still has it");
    assert_eq!(kept.definition.name, "private");
    assert_eq!(kept.deployed_version, None);
    assert_eq!(kept.latest_version, 1);
}

pub async fn list_is_newest_first_and_pages(store: &dyn Store) {
    let tenant = new_id();
    let mut ids = Vec::new();
    for i in 0..5 {
        let record = workflow(&tenant, &format!("wf{i}"), &[]);
        store.create_workflow(&record).await.unwrap();
        ids.push(record.workflow_id);
        next_millisecond().await;
    }
    // Versions of a workflow must not show up in the workflow listing.
    let first = store.get_workflow(&tenant, &ids[0]).await.unwrap().unwrap();
    store.publish_version(&version_of(&first, 1)).await.unwrap();
    ids.reverse();
    let page1 = store.list_workflows(&tenant, None, 2, None).await.unwrap();
    let names: Vec<_> = page1.items.iter().map(|s| s.workflow_id.clone()).collect();
    assert_eq!(names, ids[0..2]);
    let after = page1.next_after.expect("more pages");
    let page2 = store.list_workflows(&tenant, Some(&after), 2, None).await.unwrap();
    assert_eq!(page2.items.iter().map(|s| s.workflow_id.clone()).collect::<Vec<_>>(), ids[2..4]);
    let page3 = store.list_workflows(&tenant, page2.next_after.as_deref(), 2, None).await.unwrap();
    assert_eq!(page3.items.iter().map(|s| s.workflow_id.clone()).collect::<Vec<_>>(), ids[4..5]);
    assert_eq!(page3.next_after, None);
    assert_eq!(page3.items[0].latest_version, 1);
    let all = store.list_workflows(&tenant, None, 100, None).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.next_after, None);
}

pub async fn list_filters_by_tag_across_pages(store: &dyn Store) {
    let tenant = new_id();
    let mut tagged = Vec::new();
    for i in 0..7 {
        let tags: &[&str] = if i % 3 == 0 { &["keep", "x"] } else { &["other"] };
        let record = workflow(&tenant, &format!("wf{i}"), tags);
        store.create_workflow(&record).await.unwrap();
        if i % 3 == 0 {
            tagged.push(record.workflow_id);
        }
        next_millisecond().await;
    }
    tagged.reverse();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let page = store.list_workflows(&tenant, after.as_deref(), 1, Some("keep")).await.unwrap();
        assert!(page.items.len() <= 1);
        seen.extend(page.items.iter().map(|s| s.workflow_id.clone()));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, tagged);
    assert!(store.list_workflows(&tenant, None, 10, Some("none")).await.unwrap().items.is_empty());
}

pub async fn replace_draft_checks_revision(store: &dyn Store) {
    let tenant = new_id();
    let record = workflow(&tenant, "v1", &[]);
    store.create_workflow(&record).await.unwrap();
    let updated = store
        .replace_draft(&tenant, &record.workflow_id, &definition("v2", &["n"]), 1, "2030-01-01T00:00:00.000Z")
        .await
        .unwrap()
        .expect("exists");
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.definition.name, "v2");
    assert_eq!(updated.updated_at, "2030-01-01T00:00:00.000Z");
    assert_eq!(updated.created_at, record.created_at);
    let stale = store.replace_draft(&tenant, &record.workflow_id, &definition("v3", &[]), 1, &now_rfc3339()).await;
    assert!(matches!(stale, Err(StoreError::ConditionFailed)));
    assert_eq!(store.get_workflow(&tenant, &record.workflow_id).await.unwrap().unwrap().definition.name, "v2");
    let missing = store.replace_draft(&tenant, &new_id(), &definition("x", &[]), 1, &now_rfc3339()).await.unwrap();
    assert_eq!(missing, None);
}

pub async fn publish_is_sequential_and_checks_revision(store: &dyn Store) {
    let tenant = new_id();
    let record = workflow(&tenant, "pub", &[]);
    store.create_workflow(&record).await.unwrap();
    store.publish_version(&version_of(&record, 1)).await.unwrap();
    // The same number again, a gap, or a stale draft revision all lose.
    assert!(matches!(store.publish_version(&version_of(&record, 1)).await, Err(StoreError::ConditionFailed)));
    assert!(matches!(store.publish_version(&version_of(&record, 3)).await, Err(StoreError::ConditionFailed)));
    let current = store
        .replace_draft(&tenant, &record.workflow_id, &definition("pub2", &[]), 1, &now_rfc3339())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(store.publish_version(&version_of(&record, 2)).await, Err(StoreError::ConditionFailed)));
    store.publish_version(&version_of(&current, 2)).await.unwrap();
    let after = store.get_workflow(&tenant, &record.workflow_id).await.unwrap().unwrap();
    assert_eq!((after.latest_version, after.published_revision), (2, 2));
    let v1 = store.get_version(&tenant, &record.workflow_id, 1).await.unwrap().unwrap();
    assert_eq!(v1.definition.name, "pub");
    assert_eq!(v1.source_revision, 1);
    assert_eq!(store.get_version(&tenant, &record.workflow_id, 3).await.unwrap(), None);
    let page = store.list_versions(&tenant, &record.workflow_id, None, 1).await.unwrap();
    assert_eq!(page.items.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2]);
    assert_eq!(page.items[0].name, "pub2");
    let rest = store.list_versions(&tenant, &record.workflow_id, page.next_after.as_deref(), 1).await.unwrap();
    assert_eq!(rest.items.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1]);
    assert_eq!(rest.next_after, None);
}

pub async fn deploy_needs_an_existing_version(store: &dyn Store) {
    let tenant = new_id();
    let record = workflow(&tenant, "dep", &[]);
    store.create_workflow(&record).await.unwrap();
    let now = now_rfc3339();
    assert_eq!(
        store.set_deployed_version(&tenant, &record.workflow_id, 1, &now).await.unwrap(),
        DeployOutcome::VersionMissing
    );
    store.publish_version(&version_of(&record, 1)).await.unwrap();
    assert_eq!(
        store.set_deployed_version(&tenant, &record.workflow_id, 1, &now).await.unwrap(),
        DeployOutcome::Deployed
    );
    assert_eq!(
        store.set_deployed_version(&tenant, &record.workflow_id, 2, &now).await.unwrap(),
        DeployOutcome::VersionMissing
    );
    assert_eq!(store.set_deployed_version(&tenant, &new_id(), 1, &now).await.unwrap(), DeployOutcome::WorkflowMissing);
    let after = store.get_workflow(&tenant, &record.workflow_id).await.unwrap().unwrap();
    assert_eq!(after.deployed_version, Some(1));
}

pub async fn delete_removes_versions(store: &dyn Store) {
    let tenant = new_id();
    let record = workflow(&tenant, "del", &[]);
    store.create_workflow(&record).await.unwrap();
    store.publish_version(&version_of(&record, 1)).await.unwrap();
    assert!(store.delete_workflow(&tenant, &record.workflow_id).await.unwrap());
    assert_eq!(store.get_workflow(&tenant, &record.workflow_id).await.unwrap(), None);
    assert_eq!(store.get_version(&tenant, &record.workflow_id, 1).await.unwrap(), None);
    assert!(!store.delete_workflow(&tenant, &record.workflow_id).await.unwrap());
}

pub async fn tenants_and_api_keys(store: &dyn Store) {
    let tenant = Tenant {
        tenant_id: new_id(),
        name: "Acme".into(),
        tier: "free".into(),
        created_at: now_rfc3339(),
        usage_key_id: None,
        usage_key_value: None,
    };
    store.create_tenant(&tenant).await.unwrap();
    assert!(matches!(store.create_tenant(&tenant).await, Err(StoreError::ConditionFailed)));
    assert_eq!(store.get_tenant(&tenant.tenant_id).await.unwrap(), Some(tenant.clone()));
    assert_eq!(store.get_tenant(&new_id()).await.unwrap(), None);
    assert!(store.update_tenant_plan(&tenant.tenant_id, "pro", "gw-key-id", "gw-key-value").await.unwrap());
    let upgraded = store.get_tenant(&tenant.tenant_id).await.unwrap().unwrap();
    assert_eq!(
        (upgraded.tier.as_str(), upgraded.usage_key_id.as_deref(), upgraded.usage_key_value.as_deref()),
        ("pro", Some("gw-key-id"), Some("gw-key-value"))
    );
    assert!(!store.update_tenant_plan(&new_id(), "pro", "a", "b").await.unwrap());

    let (key, _) = crate::auth::new_key_record(&tenant.tenant_id, "ci", None, None);
    store.put_api_key(&key).await.unwrap();
    assert!(matches!(store.put_api_key(&key).await, Err(StoreError::ConditionFailed)));
    assert_eq!(store.find_api_key(&key.key_hash).await.unwrap(), Some(key.clone()));
    assert_eq!(store.find_api_key(&crate::auth::hash_key("nk_unknown")).await.unwrap(), None);
}

pub async fn api_key_lifecycle(store: &dyn Store) {
    let (tenant, other) = (new_id(), new_id());
    let (first, _) = crate::auth::new_key_record(&tenant, "first", None, None);
    next_millisecond().await;
    let (second, _) = crate::auth::new_key_record(&tenant, "second", Some("2099-01-01T00:00:00.000Z".into()), None);
    let (foreign, _) = crate::auth::new_key_record(&other, "theirs", None, None);
    for key in [&first, &second, &foreign] {
        store.put_api_key(key).await.unwrap();
    }
    let listed: Vec<String> =
        store.list_api_keys(&tenant, None, 10).await.unwrap().items.into_iter().map(|k| k.key_id).collect();
    assert_eq!(listed, vec![second.key_id.clone(), first.key_id.clone()], "newest first, own keys only");
    let page = store.list_api_keys(&tenant, None, 1).await.unwrap();
    assert_eq!((page.items.len(), page.next_after.as_deref()), (1, Some(second.key_id.as_str())));
    let rest = store.list_api_keys(&tenant, Some(&second.key_id), 1).await.unwrap();
    assert_eq!(rest.items.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(), vec![first.key_id.as_str()]);
    assert_eq!(rest.next_after, None);
    assert_eq!(store.count_live_api_keys(&tenant, "2030-01-01T00:00:00.000Z").await.unwrap(), 2);
    assert_eq!(store.count_live_api_keys(&tenant, "2100-01-01T00:00:00.000Z").await.unwrap(), 1, "second expired");
    assert_eq!(store.find_api_key_by_id(&tenant, &second.key_id).await.unwrap(), Some(second.clone()));
    assert_eq!(store.find_api_key_by_id(&other, &second.key_id).await.unwrap(), None, "not by another tenant");

    store.revoke_api_key(&first.key_hash, "2030-01-01T00:00:00.000Z").await.unwrap();
    store.revoke_api_key(&first.key_hash, "2031-01-01T00:00:00.000Z").await.unwrap();
    let revoked = store.find_api_key(&first.key_hash).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at.as_deref(), Some("2030-01-01T00:00:00.000Z"), "the first revocation stays");
    assert_eq!(store.count_live_api_keys(&tenant, "2030-01-01T00:00:00.000Z").await.unwrap(), 1, "revoked");

    store.expire_api_key(&second.key_hash, "2040-01-01T00:00:00.000Z").await.unwrap();
    store.expire_api_key(&second.key_hash, "2050-01-01T00:00:00.000Z").await.unwrap();
    let expiring = store.find_api_key(&second.key_hash).await.unwrap().unwrap();
    assert_eq!(expiring.expires_at.as_deref(), Some("2040-01-01T00:00:00.000Z"), "expiry only moves earlier");

    store.touch_api_key(&second.key_hash, "2030-06-01T00:00:00.000Z").await.unwrap();
    let touched = store.find_api_key(&second.key_hash).await.unwrap().unwrap();
    assert_eq!(touched.last_used_at.as_deref(), Some("2030-06-01T00:00:00.000Z"));
    // Updates to a key that does not exist create nothing.
    store.revoke_api_key(&crate::auth::hash_key("nk_none"), "2030-01-01T00:00:00.000Z").await.unwrap();
    assert_eq!(store.find_api_key(&crate::auth::hash_key("nk_none")).await.unwrap(), None);
}

pub async fn credentials_are_tenant_scoped_and_paged(store: &dyn Store) {
    let (tenant, other) = (new_id(), new_id());
    let record = |tenant: &str, name: &str, when: &str| CredentialRecord {
        tenant_id: tenant.into(),
        name: name.into(),
        provider: "openai".into(),
        base_url: Some("https://api.openai.com/v1".into()),
        last4: "abcd".into(),
        created_at: when.into(),
        updated_at: when.into(),
    };
    for name in ["c-main", "a-main", "b-main"] {
        store.put_credential(&record(&tenant, name, "2030-01-01T00:00:00.000Z")).await.unwrap();
    }
    store.put_credential(&record(&other, "a-main", "2030-01-01T00:00:00.000Z")).await.unwrap();
    let mut replaced = record(&tenant, "a-main", "2031-01-01T00:00:00.000Z");
    replaced.base_url = None;
    replaced.provider = "anthropic".into();
    let stored = store.put_credential(&replaced).await.unwrap();
    assert_eq!(stored.created_at, "2030-01-01T00:00:00.000Z", "a replace keeps created_at");
    assert_eq!((stored.updated_at.as_str(), stored.base_url.clone()), ("2031-01-01T00:00:00.000Z", None));
    assert_eq!(store.get_credential(&tenant, "a-main").await.unwrap().unwrap().provider, "anthropic");

    let page = store.list_credentials(&tenant, None, 2).await.unwrap();
    assert_eq!(page.items.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a-main", "b-main"]);
    let rest = store.list_credentials(&tenant, page.next_after.as_deref(), 2).await.unwrap();
    assert_eq!(rest.items.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["c-main"]);
    assert_eq!(rest.next_after, None);

    assert!(store.delete_credential(&tenant, "a-main").await.unwrap());
    assert!(!store.delete_credential(&tenant, "a-main").await.unwrap());
    assert_eq!(store.get_credential(&tenant, "a-main").await.unwrap(), None);
    assert!(store.get_credential(&other, "a-main").await.unwrap().is_some(), "the other tenant's is untouched");
}

/// The secret store suite: `secret_store_conformance_tests!(async { make() })`.
pub async fn secrets_put_get_replace_delete(store: &dyn SecretStore) {
    let name = format!("nodeai/test/{}/main", new_id());
    assert_eq!(store.get_secret(&name).await.unwrap(), None);
    store.put_secret(&name, "first").await.unwrap();
    assert_eq!(store.get_secret(&name).await.unwrap().as_deref(), Some("first"));
    store.put_secret(&name, "second").await.unwrap();
    assert_eq!(store.get_secret(&name).await.unwrap().as_deref(), Some("second"));
    store.delete_secret(&name).await.unwrap();
    assert_eq!(store.get_secret(&name).await.unwrap(), None);
    store.delete_secret(&name).await.expect("deleting a missing secret is not an error");
    store.put_secret(&name, "again").await.unwrap();
    assert_eq!(store.get_secret(&name).await.unwrap().as_deref(), Some("again"), "a deleted name can be reused");
}

#[macro_export]
macro_rules! secret_store_conformance_tests {
    ($make:expr) => {
        #[tokio::test]
        async fn secrets_put_get_replace_delete() {
            let store = $make.await;
            $crate::store::conformance::secrets_put_get_replace_delete(&store).await;
        }
    };
}

pub async fn steps_are_recorded_once_per_node(store: &dyn Store) {
    use crate::model::{StepError, StepRecord, StepStatus, TokenUsage};
    let (tenant, execution) = (new_id(), new_id());
    let ok = StepRecord {
        node_id: "fetch".into(),
        status: StepStatus::Succeeded,
        attempts: 2,
        started_at: Some("2030-01-01T00:00:00.000Z".into()),
        finished_at: Some("2030-01-01T00:00:01.000Z".into()),
        output: json!({ "status": 200, "body": { "items": [1, 2, 3] } }),
        error: None,
        input: json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "Hi" }] }),
        usage: Some(TokenUsage { cached_input_tokens: 4, ..TokenUsage::new(12, 30) }),
        cost_usd: Some(0.0000198),
        model: Some("gpt-4o-mini".into()),
    };
    let failed = StepRecord {
        node_id: "summarize".into(),
        status: StepStatus::Failed,
        attempts: 1,
        started_at: None,
        finished_at: Some("2030-01-01T00:00:02.000Z".into()),
        output: serde_json::Value::Null,
        error: Some(StepError { code: "HTTP_401".into(), message: "bad key".into() }),
        ..StepRecord::default()
    };
    store.record_step(&tenant, &execution, &ok).await.unwrap();
    store.record_step(&tenant, &execution, &failed).await.unwrap();
    let mut replay = ok.clone();
    replay.output = json!("second result");
    assert!(matches!(store.record_step(&tenant, &execution, &replay).await, Err(StoreError::ConditionFailed)));
    let mut steps = store.load_steps(&tenant, &execution).await.unwrap();
    steps.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    assert_eq!(steps, vec![ok, failed], "the first result stays, exactly as written");
    assert!(store.load_steps(&new_id(), &execution).await.unwrap().is_empty(), "scoped by tenant");
}

/// Two deliveries of one message may claim at the same instant; the lease must go to exactly one
/// (a conditional write is atomic per item). Several rounds, since a race shows up only sometimes.
pub async fn concurrent_claims_have_one_winner(store: &dyn Store) {
    use crate::model::ExecutionRecord;
    let tenant = new_id();
    let (now, later) = ("2030-01-01T00:00:00.000Z", "2030-01-01T00:05:00.000Z");
    for round in 0..20 {
        let duration = std::time::Duration::from_secs(900);
        let record = ExecutionRecord::queued(&tenant, &new_id(), Some(1), json!({}), "req", duration);
        store.create_execution(&record, &definition("race", &[])).await.unwrap();
        let owners: Vec<String> = (0..6).map(|n| format!("worker-{n}")).collect();
        let claims = owners.iter().map(|owner| store.claim_lease(&tenant, &record.execution_id, owner, later, now));
        let won: Vec<bool> =
            futures_util::future::join_all(claims).await.into_iter().map(|claimed| claimed.unwrap()).collect();
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}: claims {won:?}");
    }
}

pub async fn executions_lifecycle_and_lease(store: &dyn Store) {
    use crate::model::{ExecutionRecord, ExecutionStatus};
    let tenant = new_id();
    let record = ExecutionRecord::queued(
        &tenant,
        &new_id(),
        Some(3),
        json!({ "url": "https://example.com" }),
        "req-1",
        std::time::Duration::from_secs(900),
    );
    let snapshot = definition("snap", &["x"]);
    store.create_execution(&record, &snapshot).await.unwrap();
    assert!(matches!(store.create_execution(&record, &snapshot).await, Err(StoreError::ConditionFailed)));
    // Nor under another definition: an execution's snapshot is written once.
    let other_definition = definition("other", &["y"]);
    assert!(matches!(store.create_execution(&record, &other_definition).await, Err(StoreError::ConditionFailed)));
    let id = record.execution_id.as_str();
    assert_eq!(store.get_execution(&tenant, id).await.unwrap(), Some(record.clone()));
    assert_eq!(store.get_execution_definition(&tenant, id).await.unwrap(), Some(snapshot));
    assert_eq!(store.get_execution(&new_id(), id).await.unwrap(), None, "scoped by tenant");

    // The lease: one holder at a time, re-entrant for its owner, free again once expired or released.
    let (now, later) = ("2030-01-01T00:00:00.000Z", "2030-01-01T00:05:00.000Z");
    assert!(store.claim_lease(&tenant, id, "worker-a", later, now).await.unwrap());
    assert!(!store.claim_lease(&tenant, id, "worker-b", later, now).await.unwrap());
    assert!(store.claim_lease(&tenant, id, "worker-a", later, now).await.unwrap());
    assert!(
        store
            .claim_lease(&tenant, id, "worker-b", "2030-01-01T00:10:00.000Z", "2030-01-01T00:06:00.000Z")
            .await
            .unwrap()
    );
    let pure = |node: &str, output: serde_json::Value| crate::model::StepRecord {
        node_id: node.into(),
        status: crate::model::StepStatus::Succeeded,
        attempts: 1,
        output,
        ..Default::default()
    };
    // Not the holder: no effect, and its steps are not kept.
    store.release_lease(&tenant, id, "worker-a", &[pure("lost", json!(0))]).await.unwrap();
    assert!(!store.claim_lease(&tenant, id, "worker-c", later, now).await.unwrap());
    // The holder's checkpoint frees the lease and keeps its steps, in one request.
    store.release_lease(&tenant, id, "worker-b", &[pure("p", json!("from a checkpoint"))]).await.unwrap();
    assert!(store.claim_lease(&tenant, id, "worker-c", later, "2030-01-01T00:07:00.000Z").await.unwrap());
    assert!(
        !store.claim_lease(&new_id(), id, "worker-c", later, now).await.unwrap(),
        "no lease on a missing execution"
    );
    let running = store.get_execution(&tenant, id).await.unwrap().unwrap();
    assert_eq!(running.status, ExecutionStatus::Running, "claiming the lease starts the execution");
    assert_eq!(running.started_at.as_deref(), Some(now), "the first start is kept");

    assert!(store.request_cancel(&tenant, id).await.unwrap());
    assert!(store.get_execution(&tenant, id).await.unwrap().unwrap().cancel_requested);
    let error = crate::model::StepError { code: "X".into(), message: "y".into() };
    let failed_at = "2030-01-01T00:00:09.000Z";
    let bulk = [pure("q", json!({ "n": 1 })), pure("alone", json!("bulk copy"))];
    store.record_step(&tenant, id, &pure("alone", json!("recorded alone"))).await.unwrap();
    let end = |status, output, error, at: &str| ExecutionEnd {
        status,
        output,
        error,
        at: at.to_string(),
        child_of: None,
        usage: Default::default(),
    };
    let failed = end(ExecutionStatus::Failed, json!(null), Some(error.clone()), failed_at);
    // Only the lease's holder writes the end: not a worker whose lease was taken, nor the API.
    assert!(!store.finish_execution(&tenant, id, failed.clone(), &bulk, LeaseGuard::Held("worker-b")).await.unwrap());
    assert!(!store.finish_execution(&tenant, id, failed.clone(), &bulk, LeaseGuard::Free { now }).await.unwrap());
    assert!(store.finish_execution(&tenant, id, failed, &bulk, LeaseGuard::Held("worker-c")).await.unwrap());
    let mut steps = store.load_steps(&tenant, id).await.unwrap();
    steps.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let outputs: Vec<(String, serde_json::Value)> = steps.into_iter().map(|s| (s.node_id, s.output)).collect();
    assert_eq!(
        outputs,
        vec![
            ("alone".to_string(), json!("recorded alone")),
            ("p".to_string(), json!("from a checkpoint")),
            ("q".to_string(), json!({ "n": 1 }))
        ],
        "bulk steps from the checkpoint and the finish; a step recorded alone wins"
    );
    // A final execution does not change again, and its lease is gone with the finish.
    let late = end(ExecutionStatus::Succeeded, json!(1), None, "2031-01-01T00:00:00.000Z");
    let later_now = LeaseGuard::Free { now: "2031-01-01T00:00:00.000Z" };
    assert!(!store.finish_execution(&tenant, id, late, &[], later_now).await.unwrap(), "final already");
    assert!(!store.claim_lease(&tenant, id, "worker-d", later, "2031-01-01T00:00:00.000Z").await.unwrap());
    let done = store.get_execution(&tenant, id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.error, done.finished_at.as_deref()),
        (ExecutionStatus::Failed, Some(error), Some(failed_at))
    );
    let other =
        ExecutionRecord::queued(&tenant, &new_id(), None, json!({}), "req-2", std::time::Duration::from_secs(60));
    store.create_execution(&other, &definition("snap", &[])).await.unwrap();
    let succeeded = end(ExecutionStatus::Succeeded, json!({ "a": 1 }), None, now);
    assert!(
        store.finish_execution(&tenant, &other.execution_id, succeeded, &[], LeaseGuard::Free { now }).await.unwrap()
    );
    assert!(
        !store.request_cancel(&tenant, &other.execution_id).await.unwrap(),
        "a finished execution cannot be cancelled"
    );
    assert!(!store.request_cancel(&tenant, &new_id()).await.unwrap());
    assert_eq!(store.get_execution(&tenant, &other.execution_id).await.unwrap().unwrap().output, json!({ "a": 1 }));
}

/// The sweep index: an unfinished execution shows up once it went `SWEEP_GRACE` without a
/// worker, or its lease expired; a sweep pushes it back; a checkpoint starts its count again;
/// the end takes it out.
pub async fn sweep_index_holds_unfinished_executions_until_they_progress(store: &dyn Store) {
    use crate::model::{ExecutionRecord, ExecutionStatus, rfc3339_in};
    let tenant = new_id();
    let record =
        ExecutionRecord::queued(&tenant, &new_id(), Some(1), json!({}), "req-s", std::time::Duration::from_secs(900));
    let id = record.execution_id.as_str();
    store.create_execution(&record, &definition("s", &[])).await.unwrap();
    let tenant_ref = tenant.as_str();
    let ours = |now: String| async move {
        let found = store.stranded_executions(&now, 1000).await.unwrap();
        found.into_iter().find(|e| e.tenant_id == tenant_ref && e.execution_id == id)
    };
    let minutes = |m: i64| rfc3339_in(m * 60);
    assert_eq!(ours(minutes(1)).await, None, "queued a minute ago: not stranded yet");
    let found = ours(minutes(6)).await.expect("queued past the grace");
    assert_eq!(
        (found.status, found.sweep_count, found.request_id.as_str(), found.lease_expired),
        (ExecutionStatus::Queued, 0, "req-s", false)
    );
    // Never claimed (waiting in the queue): swept, not counted.
    assert!(store.mark_swept(&tenant, id, &minutes(11), &minutes(6), false).await.unwrap());
    assert!(!store.mark_swept(&tenant, id, &minutes(11), &minutes(6), false).await.unwrap(), "not due again yet");
    assert_eq!(ours(minutes(10)).await, None);
    assert_eq!(ours(minutes(12)).await.map(|e| e.sweep_count), Some(0));
    // Leased: stranded only once the lease has expired, and never swept while it holds.
    assert!(store.claim_lease(&tenant, id, "w", &minutes(20), &minutes(12)).await.unwrap());
    assert_eq!(ours(minutes(19)).await, None, "a live lease is not stranded");
    assert!(!store.mark_swept(&tenant, id, &minutes(30), &minutes(19), true).await.unwrap());
    let crashed = ours(minutes(21)).await.expect("its lease expired");
    assert_eq!((crashed.status, crashed.lease_expired), (ExecutionStatus::Running, true));
    assert!(store.mark_swept(&tenant, id, &minutes(26), &minutes(21), true).await.unwrap());
    assert_eq!(ours(minutes(27)).await.map(|e| e.sweep_count), Some(1), "a crash is counted");
    // The sweeper's end needs it still due: not once a worker moved it on.
    let failed = ExecutionEnd::failed(crate::model::StepError { code: "WORKER_FAILED".into(), message: "x".into() });
    let too_early = LeaseGuard::Stranded { now: &minutes(25) };
    assert!(!store.finish_execution(&tenant, id, failed, &[], too_early).await.unwrap(), "not due at 25");
    // A checkpoint is progress: the count starts again, and the lease is gone.
    assert!(store.claim_lease(&tenant, id, "w", &minutes(40), &minutes(27)).await.unwrap());
    store.release_lease(&tenant, id, "w", &[]).await.unwrap();
    assert_eq!(ours(minutes(1)).await, None);
    let checkpointed = ours(minutes(6)).await.expect("due after its grace");
    assert_eq!((checkpointed.sweep_count, checkpointed.lease_expired), (0, false));
    // Waiting for a tenant slot: the reason shows, and the sweeper looks later.
    store.set_waiting(&tenant, id, Some("limit reached"), &minutes(40)).await.unwrap();
    assert_eq!(
        store.get_execution(&tenant, id).await.unwrap().unwrap().waiting_reason.as_deref(),
        Some("limit reached")
    );
    assert_eq!(ours(minutes(39)).await, None);
    // Claiming clears the reason; the end takes the execution out of the index.
    assert!(store.claim_lease(&tenant, id, "w2", &minutes(50), &now_rfc3339()).await.unwrap());
    assert_eq!(store.get_execution(&tenant, id).await.unwrap().unwrap().waiting_reason, None);
    let end = ExecutionEnd::now(ExecutionStatus::Succeeded, json!(1), None);
    assert!(store.finish_execution(&tenant, id, end, &[], LeaseGuard::Held("w2")).await.unwrap());
    assert_eq!(ours(minutes(24 * 60)).await, None, "a final execution is never stranded");
    assert!(!store.mark_swept(&tenant, id, &minutes(24 * 61), &minutes(24 * 60), true).await.unwrap());
}

/// Run slots: at most `limit` per tenant at once, renewed (not doubled) for the same execution,
/// freed by a release or by their expiry; concurrent acquires never pass the limit.
pub async fn run_slots_hold_a_tenants_limit_and_free_themselves(store: &dyn Store) {
    let (tenant, other_tenant) = (new_id(), new_id());
    let (now, until, later) = ("2030-01-01T00:00:00.000Z", "2030-01-01T00:05:00.000Z", "2030-01-01T00:06:00.000Z");
    assert!(store.acquire_run_slot(&tenant, "a", until, now, 2).await.unwrap());
    assert!(store.acquire_run_slot(&tenant, "a", until, now, 2).await.unwrap(), "renewed, not a second slot");
    assert!(store.acquire_run_slot(&tenant, "b", until, now, 2).await.unwrap());
    assert!(!store.acquire_run_slot(&tenant, "c", until, now, 2).await.unwrap(), "limit reached");
    assert!(store.acquire_run_slot(&other_tenant, "c", until, now, 2).await.unwrap(), "per tenant");
    store.release_run_slot(&tenant, "a").await.unwrap();
    store.release_run_slot(&tenant, "a").await.unwrap();
    store.release_run_slot(&new_id(), "a").await.unwrap();
    assert!(store.acquire_run_slot(&tenant, "c", until, now, 2).await.unwrap(), "a release frees one");
    assert!(!store.acquire_run_slot(&tenant, "d", until, now, 2).await.unwrap());
    assert!(store.acquire_run_slot(&tenant, "d", later, later, 2).await.unwrap(), "expired slots are freed");
    // Many acquires at once, limit 3: exactly 3 win.
    let racing = new_id();
    let ids: Vec<String> = (0..8).map(|i| format!("e{i}")).collect();
    let won = futures_util::future::join_all(ids.iter().map(|id| store.acquire_run_slot(&racing, id, until, now, 3)))
        .await
        .into_iter()
        .filter(|won| matches!(won, Ok(true)))
        .count();
    assert_eq!(won, 3);
}

pub async fn executions_list_newest_first_with_status_filter(store: &dyn Store) {
    use crate::model::{ExecutionRecord, ExecutionStatus};
    let (tenant, workflow) = (new_id(), new_id());
    let mut ids = Vec::new();
    for i in 0..5 {
        let record = ExecutionRecord::queued(
            &tenant,
            &workflow,
            Some(1),
            json!({ "i": i }),
            "r",
            std::time::Duration::from_secs(60),
        );
        store.create_execution(&record, &definition("d", &[])).await.unwrap();
        if i % 2 == 0 {
            let end = ExecutionEnd::now(ExecutionStatus::Succeeded, json!(i), None);
            let now = now_rfc3339();
            store
                .finish_execution(&tenant, &record.execution_id, end, &[], LeaseGuard::Free { now: &now })
                .await
                .unwrap();
        }
        ids.push(record.execution_id);
        next_millisecond().await;
    }
    let other_workflow =
        ExecutionRecord::queued(&tenant, &new_id(), None, json!({}), "r", std::time::Duration::from_secs(60));
    store.create_execution(&other_workflow, &definition("d", &[])).await.unwrap();
    ids.reverse();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page =
            store.list_executions(&tenant, Some(&workflow), &Default::default(), after.as_deref(), 2).await.unwrap();
        seen.extend(page.items.iter().map(|e| e.execution_id.clone()));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "newest first, this workflow only");
    let succeeded =
        store.list_executions(&tenant, Some(&workflow), &status(ExecutionStatus::Succeeded), None, 10).await.unwrap();
    assert_eq!(
        succeeded.items.iter().map(|e| e.execution_id.clone()).collect::<Vec<_>>(),
        vec![ids[0].clone(), ids[2].clone(), ids[4].clone()]
    );
    assert!(
        store
            .list_executions(&new_id(), Some(&workflow), &Default::default(), None, 10)
            .await
            .unwrap()
            .items
            .is_empty(),
        "scoped by tenant"
    );
    // With no workflow: every execution of the tenant, newest first, the other workflow's too.
    let all = store.list_executions(&tenant, None, &Default::default(), None, 100).await.unwrap();
    let all_ids: Vec<String> = all.items.iter().map(|e| e.execution_id.clone()).collect();
    assert_eq!(all_ids, [vec![other_workflow.execution_id.clone()], ids.clone()].concat());
    let first = store.list_executions(&tenant, None, &status(ExecutionStatus::Queued), None, 1).await.unwrap();
    assert_eq!(first.items[0].execution_id, other_workflow.execution_id);
    let rest = store
        .list_executions(&tenant, None, &status(ExecutionStatus::Queued), first.next_after.as_deref(), 10)
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|e| e.execution_id.clone()).collect::<Vec<_>>(),
        vec![ids[1].clone(), ids[3].clone()]
    );
    // A trigger's runs: only the executions it started, in a workflow's listing and the tenant's.
    let triggered = ExecutionRecord {
        trigger_id: Some("01TRIGGER".into()),
        ..ExecutionRecord::queued(&tenant, &workflow, Some(1), json!({}), "r", std::time::Duration::from_secs(60))
    };
    store.create_execution(&triggered, &definition("d", &[])).await.unwrap();
    let by_trigger = super::ExecutionFilter { trigger_id: Some("01TRIGGER".into()), ..Default::default() };
    for workflow_id in [Some(workflow.as_str()), None] {
        let page = store.list_executions(&tenant, workflow_id, &by_trigger, None, 10).await.unwrap();
        assert_eq!(page.items.len(), 1, "{workflow_id:?}");
        assert_eq!(page.items[0].execution_id, triggered.execution_id);
        assert_eq!(page.items[0].trigger_id.as_deref(), Some("01TRIGGER"), "the trigger is stored");
    }
    let queued_of_trigger = super::ExecutionFilter { status: Some(ExecutionStatus::Succeeded), ..by_trigger };
    assert!(store.list_executions(&tenant, None, &queued_of_trigger, None, 10).await.unwrap().items.is_empty());
}

fn status(status: crate::model::ExecutionStatus) -> super::ExecutionFilter {
    super::ExecutionFilter { status: Some(status), ..Default::default() }
}

pub async fn idempotency_keys_hold_for_their_window(store: &dyn Store) {
    use super::IdempotencyClaim;
    let tenant = new_id();
    let (now, later, much_later) = ("2030-01-01T00:00:00.000Z", "2030-01-02T00:00:00.000Z", "2030-01-03T00:00:00.000Z");
    assert_eq!(
        store.claim_idempotency_key(&tenant, "k1", "body-a", "ex-1", later, now).await.unwrap(),
        IdempotencyClaim::New
    );
    let again = store.claim_idempotency_key(&tenant, "k1", "body-b", "ex-2", later, now).await.unwrap();
    assert_eq!(again, IdempotencyClaim::Existing { body_hash: "body-a".into(), execution_id: "ex-1".into() });
    assert_eq!(
        store.claim_idempotency_key(&new_id(), "k1", "body-b", "ex-3", later, now).await.unwrap(),
        IdempotencyClaim::New,
        "per tenant"
    );
    let expired = store
        .claim_idempotency_key(&tenant, "k1", "body-c", "ex-4", "2030-01-04T00:00:00.000Z", much_later)
        .await
        .unwrap();
    assert_eq!(expired, IdempotencyClaim::New, "an expired key is free again");
}

pub async fn redrive_requeues_only_failed_executions_and_keeps_only_succeeded_steps_recorded_alone(store: &dyn Store) {
    use crate::model::{ExecutionRecord, ExecutionStatus};
    use crate::model::{StepError, StepRecord, StepStatus};
    let tenant = new_id();
    let minute = std::time::Duration::from_secs(60);
    let record = ExecutionRecord::queued(&tenant, &new_id(), Some(1), json!({}), "req-1", minute);
    let id = record.execution_id.as_str();
    store.create_execution(&record, &definition("snap", &["a", "b"])).await.unwrap();
    let (hold, now, hold_until) = ("redrive/r", "2030-01-01T00:00:10.000Z", "2030-01-01T00:01:10.000Z");
    let redrive = |tenant: String, id: String, deadline: &'static str, now: &'static str| async move {
        store.redrive_execution(&tenant, &id, deadline, hold, hold_until, now, &Default::default()).await.unwrap()
    };
    assert!(!redrive(tenant.clone(), id.into(), "2031-01-01T00:00:00.000Z", now).await, "queued: no redrive");
    let error = StepError { code: "HTTP_500".into(), message: "down".into() };
    let failed = ExecutionEnd {
        status: ExecutionStatus::Failed,
        output: json!(null),
        error: Some(error),
        at: "2030-01-01T00:00:09.000Z".into(),
        child_of: None,
        usage: Default::default(),
    };
    let pure = [StepRecord { node_id: "pure".into(), status: StepStatus::Succeeded, ..StepRecord::default() }];
    assert!(store.finish_execution(&tenant, id, failed, &pure, LeaseGuard::Free { now }).await.unwrap());
    for (node, status) in [("a", StepStatus::Succeeded), ("b", StepStatus::Failed), ("c", StepStatus::Skipped)] {
        let step = StepRecord { node_id: node.into(), status, attempts: 1, ..StepRecord::default() };
        store.record_step(&tenant, id, &step).await.unwrap();
    }
    assert_eq!(store.load_steps(&tenant, id).await.unwrap().len(), 4);
    store.reset_steps_for_redrive(&tenant, id).await.unwrap();
    let kept: Vec<String> = store.load_steps(&tenant, id).await.unwrap().into_iter().map(|s| s.node_id).collect();
    assert_eq!(kept, vec!["a".to_string()]);
    assert!(redrive(tenant.clone(), id.into(), "2031-01-01T00:00:00.000Z", now).await);
    let again = store.get_execution(&tenant, id).await.unwrap().unwrap();
    assert_eq!(
        (again.status, again.error, again.finished_at, again.deadline_at.as_str(), again.redrive_count),
        (ExecutionStatus::Queued, None, None, "2031-01-01T00:00:00.000Z", 1)
    );
    // The redrive holds the lease until it lets go: no stale delivery runs it meanwhile.
    assert!(!store.claim_lease(&tenant, id, "worker", "2030-01-01T00:05:00.000Z", now).await.unwrap());
    store.release_lease(&tenant, id, hold, &[]).await.unwrap();
    assert!(store.claim_lease(&tenant, id, "worker", "2030-01-01T00:05:00.000Z", now).await.unwrap());
    assert!(!redrive(tenant.clone(), id.into(), "2032-01-01T00:00:00.000Z", now).await, "running again");
    assert!(!redrive(new_id(), id.into(), "2032-01-01T00:00:00.000Z", now).await, "scoped by tenant");
    assert!(!redrive(tenant.clone(), new_id(), "2032-01-01T00:00:00.000Z", now).await, "unknown id");
    // Failed while a worker still holds a live lease (a give-up raced a redelivery): no
    // redrive until the lease has expired.
    let failed = ExecutionEnd::failed(StepError { code: "WORKER_FAILED".into(), message: "x".into() });
    let leased = ExecutionRecord::queued(&tenant, &new_id(), Some(1), json!({}), "req-2", minute);
    store.create_execution(&leased, &definition("snap", &["a"])).await.unwrap();
    let leased_id = leased.execution_id.clone();
    assert!(store.claim_lease(&tenant, &leased_id, "w", "2030-01-01T00:05:00.000Z", now).await.unwrap());
    assert!(store.finish_execution(&tenant, &leased_id, failed, &[], LeaseGuard::Held("w")).await.unwrap());
    assert!(
        redrive(tenant.clone(), leased_id.clone(), "2032-01-01T00:00:00.000Z", now).await,
        "a finish frees the lease"
    );
}

pub async fn parked_executions_hold_no_lease_and_resume_cancel_or_end(store: &dyn Store) {
    use crate::model::{ExecutionRecord, ExecutionStatus, StepRecord, StepStatus, Wait, WaitKind};
    let tenant = new_id();
    let new_execution =
        || ExecutionRecord::queued(&tenant, &new_id(), None, json!({}), "req-1", std::time::Duration::from_secs(900));
    let record = new_execution();
    store.create_execution(&record, &definition("park", &[])).await.unwrap();
    let id = record.execution_id.as_str();
    let (now, later) = ("2030-01-01T00:00:00.000Z", "2030-01-01T00:05:00.000Z");
    let waits = vec![Wait {
        node_id: "approve".into(),
        kind: WaitKind::Approval,
        since: now.into(),
        until: Some("2030-01-02T00:00:00.000Z".into()),
        callback_token: Some("t".repeat(43)),
    }];
    let pure = StepRecord {
        node_id: "fetch".into(),
        status: StepStatus::Succeeded,
        output: json!(1),
        ..StepRecord::default()
    };
    // Only the lease holder parks, and only a running execution.
    assert!(!store.park_execution(&tenant, id, "worker-a", &waits, &[], later).await.unwrap(), "not claimed yet");
    assert!(store.claim_lease(&tenant, id, "worker-a", later, now).await.unwrap());
    assert!(!store.park_execution(&tenant, id, "worker-b", &waits, &[], later).await.unwrap(), "not the holder");
    assert!(
        store
            .park_execution(&tenant, id, "worker-a", &waits, std::slice::from_ref(&pure), "2030-01-02T00:05:00.000Z")
            .await
            .unwrap()
    );
    let parked = store.get_execution(&tenant, id).await.unwrap().unwrap();
    assert_eq!((parked.status, parked.waits.clone()), (ExecutionStatus::Waiting, waits.clone()));
    assert!(store.load_steps(&tenant, id).await.unwrap().contains(&pure), "the park keeps the run's pure steps");
    // Not due for the sweeper until a grace after its wake-up.
    let due = |at: &'static str| async move {
        store.stranded_executions(at, 1000).await.unwrap().iter().any(|s| s.execution_id == id)
    };
    assert!(!due("2030-01-02T00:04:00.000Z").await);
    assert!(due("2030-01-02T00:06:00.000Z").await);
    // No lease is held: any worker resumes it (running again, the waits kept for the run).
    assert!(store.claim_lease(&tenant, id, "worker-b", later, now).await.unwrap());
    let resumed = store.get_execution(&tenant, id).await.unwrap().unwrap();
    assert_eq!((resumed.status, resumed.waits.len()), (ExecutionStatus::Running, 1));
    let end = ExecutionEnd::now(ExecutionStatus::Succeeded, json!("done"), None);
    assert!(store.finish_execution(&tenant, id, end, &[], LeaseGuard::Held("worker-b")).await.unwrap());
    let done = store.get_execution(&tenant, id).await.unwrap().unwrap();
    assert!(done.waits.is_empty(), "a finished execution waits on nothing");

    // A parked execution can be asked to cancel, and ended with no lease (the API's cancel).
    let other = new_execution();
    store.create_execution(&other, &definition("park", &[])).await.unwrap();
    let other_id = other.execution_id.as_str();
    assert!(store.claim_lease(&tenant, other_id, "worker-a", later, now).await.unwrap());
    assert!(store.park_execution(&tenant, other_id, "worker-a", &waits, &[], later).await.unwrap());
    assert!(store.request_cancel(&tenant, other_id).await.unwrap());
    let cancelled = ExecutionEnd::now(ExecutionStatus::Cancelled, json!(null), None);
    assert!(store.finish_execution(&tenant, other_id, cancelled, &[], LeaseGuard::Free { now }).await.unwrap());
    assert_eq!(store.get_execution(&tenant, other_id).await.unwrap().unwrap().status, ExecutionStatus::Cancelled);

    // A redrive forgets the waits: nodes not yet recorded wait afresh.
    let failed = new_execution();
    store.create_execution(&failed, &definition("park", &[])).await.unwrap();
    let failed_id = failed.execution_id.as_str();
    assert!(store.claim_lease(&tenant, failed_id, "worker-a", later, now).await.unwrap());
    assert!(store.park_execution(&tenant, failed_id, "worker-a", &waits, &[], later).await.unwrap());
    let error = crate::model::StepError { code: "X".into(), message: "x".into() };
    assert!(
        store
            .finish_execution(&tenant, failed_id, ExecutionEnd::failed(error), &[], LeaseGuard::Free { now })
            .await
            .unwrap()
    );
    assert!(
        store
            .redrive_execution(&tenant, failed_id, "2030-01-03T00:00:00.000Z", "hold", later, now, &Default::default())
            .await
            .unwrap()
    );
    assert!(store.get_execution(&tenant, failed_id).await.unwrap().unwrap().waits.is_empty());
}

pub async fn callback_tokens_are_found_by_hash_and_never_overwritten(store: &dyn Store) {
    use crate::model::CallbackRecord;
    let record = CallbackRecord {
        token_hash: crate::auth::hash_key(&new_id()),
        tenant_id: new_id(),
        execution_id: new_id(),
        node_id: "approve".into(),
        expires_at: "2030-01-01T00:00:00.000Z".into(),
    };
    assert_eq!(store.find_callback(&record.token_hash).await.unwrap(), None);
    store.put_callback(&record).await.unwrap();
    assert_eq!(store.find_callback(&record.token_hash).await.unwrap(), Some(record.clone()));
    let hijack = CallbackRecord { tenant_id: new_id(), ..record.clone() };
    assert!(matches!(store.put_callback(&hijack).await, Err(StoreError::ConditionFailed)));
    assert_eq!(store.find_callback(&record.token_hash).await.unwrap(), Some(record));
}

pub async fn child_batches_count_each_end_once_and_list_children_in_item_order(store: &dyn Store) {
    use crate::model::{ChildBatch, ExecutionRecord, ExecutionStatus, ParentLink, child_execution_id};
    let tenant = new_id();
    let parent = new_id();
    let batch = ChildBatch {
        tenant_id: tenant.clone(),
        parent_execution_id: parent.clone(),
        node_id: "each".into(),
        workflow_id: new_id(),
        version: 2,
        inputs: json!([{ "item": "a" }, { "item": "b" }, { "item": "c" }]),
        total: 3,
        concurrency: 2,
        tolerated_failures: 1,
        depth: 1,
        request_id: "req-1".into(),
        retention_seconds: 3600,
        succeeded: 0,
        failed: 0,
        generation: 0,
    };
    assert_eq!(store.get_child_batch(&tenant, &parent, "each").await.unwrap(), None);
    assert!(store.put_child_batch(&batch).await.unwrap());
    assert!(!store.put_child_batch(&ChildBatch { total: 9, ..batch.clone() }).await.unwrap(), "never replaced");
    assert_eq!(store.get_child_batch(&tenant, &parent, "each").await.unwrap(), Some(batch.clone()));
    // Children, created out of order; one unrelated execution of the tenant.
    let (now, later) = ("2030-01-01T00:00:00.000Z", "2030-01-01T00:05:00.000Z");
    for index in [2u32, 0, 1] {
        let mut child = ExecutionRecord::queued(
            &tenant,
            &batch.workflow_id,
            Some(2),
            json!({}),
            "req-1",
            std::time::Duration::from_secs(60),
        );
        child.execution_id = child_execution_id(&parent, "each", index);
        child.parent = Some(ParentLink { execution_id: parent.clone(), node_id: "each".into(), index });
        child.depth = 1;
        store.create_execution(&child, &definition("child", &[])).await.unwrap();
    }
    let unrelated =
        ExecutionRecord::queued(&tenant, &new_id(), None, json!({}), "r", std::time::Duration::from_secs(60));
    store.create_execution(&unrelated, &definition("other", &[])).await.unwrap();
    let listed = store.list_children(&tenant, &parent, "each", 0, 10).await.unwrap();
    let indices: Vec<u32> = listed.iter().map(|c| c.parent.as_ref().unwrap().index).collect();
    assert_eq!(indices, vec![0, 1, 2], "item order, only the node's children");
    assert_eq!(listed[0].depth, 1);
    assert_eq!(store.list_children(&tenant, &parent, "each", 1, 1).await.unwrap().len(), 1, "from an index, bounded");
    assert!(store.list_children(&tenant, &parent, "other", 0, 10).await.unwrap().is_empty());
    // Each end is counted in the batch by the finish itself; a second finish writes nothing.
    let link = |index| Some(ParentLink { execution_id: parent.clone(), node_id: "each".into(), index });
    let ends = [(0, ExecutionStatus::Succeeded), (1, ExecutionStatus::Failed), (2, ExecutionStatus::Succeeded)];
    for (index, status) in ends {
        let id = child_execution_id(&parent, "each", index);
        assert!(store.claim_lease(&tenant, &id, "w", later, now).await.unwrap());
        let end = ExecutionEnd::now(status, json!(index), None).counted_for(link(index).as_ref());
        assert!(store.finish_execution(&tenant, &id, end.clone(), &[], LeaseGuard::Held("w")).await.unwrap());
        assert!(!store.finish_execution(&tenant, &id, end, &[], LeaseGuard::Held("w")).await.unwrap());
    }
    let counted = store.get_child_batch(&tenant, &parent, "each").await.unwrap().unwrap();
    assert_eq!((counted.succeeded, counted.failed), (2, 1));
    assert!(counted.complete());
    // A redriven child takes its failure back out of the count, in the same write.
    let failed = child_execution_id(&parent, "each", 1);
    let link1 = link(1).unwrap();
    let succeeded = child_execution_id(&parent, "each", 0);
    let redrive_at = "2030-01-01T00:10:00.000Z";
    assert!(
        !store
            .redrive_child(
                &tenant,
                &succeeded,
                &link(0).unwrap(),
                redrive_at,
                "h",
                later,
                redrive_at,
                &Default::default()
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .redrive_child(
                &tenant,
                &failed,
                &link1,
                redrive_at,
                "h",
                "2030-01-01T00:11:00.000Z",
                redrive_at,
                &Default::default()
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .redrive_child(&tenant, &failed, &link1, redrive_at, "h", later, redrive_at, &Default::default())
            .await
            .unwrap(),
        "once"
    );
    let after = store.get_child_batch(&tenant, &parent, "each").await.unwrap().unwrap();
    assert_eq!((after.succeeded, after.failed), (2, 0));
    assert_eq!(store.get_execution(&tenant, &failed).await.unwrap().unwrap().status, ExecutionStatus::Queued);
    store.set_batch_generation(&tenant, &parent, "each", 1).await.unwrap();
    assert_eq!(store.get_child_batch(&tenant, &parent, "each").await.unwrap().unwrap().generation, 1);
}

pub async fn triggers_are_counted_per_tenant_found_by_hook_and_changed_by_revision(store: &dyn Store) {
    use crate::triggers::{TriggerRecord, TriggerRun, TriggerSource, WebhookSettings};
    let (tenant, workflow) = (new_id(), new_id());
    let trigger = |hook: Option<&str>| TriggerRecord {
        tenant_id: tenant.clone(),
        workflow_id: workflow.clone(),
        trigger_id: new_id(),
        enabled: true,
        description: None,
        source: match hook {
            Some(hook_id) => TriggerSource::Webhook(WebhookSettings {
                hook_id: hook_id.to_string(),
                scheme: crate::triggers::SignatureScheme::Github,
                mode: crate::triggers::ResponseMode::Async,
                sync_timeout_seconds: 10,
            }),
            None => TriggerSource::Schedule(crate::triggers::ScheduleSettings {
                cron: None,
                rate: Some("5 minutes".into()),
                timezone: "UTC".into(),
                input: json!({ "n": 1 }),
                start_at: None,
                end_at: None,
            }),
        },
        created_at: now_rfc3339(),
        updated_at: now_rfc3339(),
        revision: 1,
        retention_seconds: 86_400,
        last_run: None,
    };
    let hook_id = crate::triggers::new_hook_id();
    let webhook = trigger(Some(&hook_id));
    assert!(store.create_trigger(&webhook, 5, 2).await.unwrap());
    next_millisecond().await;
    let schedule = trigger(None);
    assert!(store.create_trigger(&schedule, 5, 2).await.unwrap());
    // The tenant's limit holds, whatever the workflow.
    let mut elsewhere = trigger(None);
    elsewhere.workflow_id = new_id();
    assert!(!store.create_trigger(&elsewhere, 5, 2).await.unwrap(), "a third trigger over a limit of 2");
    assert!(store.get_trigger(&tenant, &elsewhere.workflow_id, &elsewhere.trigger_id).await.unwrap().is_none());
    assert_eq!(store.count_triggers(&tenant, &workflow).await.unwrap(), 2);
    assert_eq!(store.count_triggers(&new_id(), &workflow).await.unwrap(), 0, "scoped by tenant");

    // Found by its hook id, one read; another hook id finds nothing.
    assert_eq!(store.find_hook(&hook_id).await.unwrap().as_ref(), Some(&webhook));
    assert!(store.find_hook(&crate::triggers::new_hook_id()).await.unwrap().is_none());

    // Listed oldest first, a page at a time.
    let first = store.list_triggers(&tenant, &workflow, None, 1).await.unwrap();
    assert_eq!(first.items, vec![webhook.clone()]);
    let rest = store.list_triggers(&tenant, &workflow, first.next_after.as_deref(), 10).await.unwrap();
    assert_eq!((rest.items, rest.next_after), (vec![schedule.clone()], None));

    // A change needs the revision it read; the hook's copy follows it.
    let disabled = TriggerRecord { enabled: false, revision: 2, ..webhook.clone() };
    assert!(store.replace_trigger(&disabled, 1).await.unwrap());
    assert!(!store.replace_trigger(&TriggerRecord { revision: 3, ..webhook.clone() }, 1).await.unwrap(), "stale");
    assert!(!store.find_hook(&hook_id).await.unwrap().unwrap().enabled);

    // The last run is kept on the trigger, and a change made from an older read keeps it.
    let run = TriggerRun { at: now_rfc3339(), execution_id: Some(new_id()), error: None };
    store.record_trigger_run(&webhook, &run).await.unwrap();
    let read = store.get_trigger(&tenant, &workflow, &webhook.trigger_id).await.unwrap().unwrap();
    assert_eq!(read.last_run, Some(run.clone()));
    let described = TriggerRecord { description: Some("nightly".into()), revision: 3, ..disabled.clone() };
    assert!(store.replace_trigger(&described, 2).await.unwrap());
    let read = store.get_trigger(&tenant, &workflow, &webhook.trigger_id).await.unwrap().unwrap();
    assert_eq!((read.description.as_deref(), read.last_run.clone()), (Some("nightly"), Some(run)));

    // Deleting frees the tenant's count and the hook id.
    assert!(store.delete_trigger(&read).await.unwrap());
    assert!(!store.delete_trigger(&read).await.unwrap(), "already gone");
    assert!(store.find_hook(&hook_id).await.unwrap().is_none());
    assert!(store.create_trigger(&elsewhere, 5, 2).await.unwrap(), "room again after a delete");
    // The workflow's own limit, whatever the tenant's.
    let mut third = trigger(None);
    third.trigger_id = new_id();
    assert!(!store.create_trigger(&third, 1, 10).await.unwrap(), "the workflow has 1 already");
    assert_eq!(store.count_triggers(&tenant, &workflow).await.unwrap(), 1);
}

pub async fn execution_events_append_once_per_seq_and_read_in_order(store: &dyn Store) {
    use crate::events::{EventBatch, ExecutionEvent};
    let (tenant, execution) = (format!("t-{}", new_id()), new_id());
    assert_eq!(store.last_event_seq(&tenant, &execution).await.unwrap(), 0, "none yet");
    let batch = |seq: u64, n: usize| EventBatch {
        seq,
        writer: format!("w{seq}"),
        events: (0..n)
            .map(|i| ExecutionEvent::now("step.started", json!({ "node_id": format!("n{seq}-{i}") })))
            .collect(),
    };
    // 9 and 10 must read in number order; 11's events are large enough to be stored deflated.
    for (seq, n) in [(1, 2), (9, 1), (10, 1), (11, 40)] {
        store.append_events(&tenant, &execution, &batch(seq, n)).await.unwrap();
    }
    assert!(
        matches!(store.append_events(&tenant, &execution, &batch(10, 1)).await, Err(StoreError::ConditionFailed)),
        "a seq is written once"
    );
    let all = store.read_events(&tenant, &execution, 1, 100).await.unwrap();
    assert_eq!(all.iter().map(|b| b.seq).collect::<Vec<_>>(), [1, 9, 10, 11]);
    let data = |b: &EventBatch| b.events.iter().map(|e| (e.kind.clone(), e.data.clone())).collect::<Vec<_>>();
    assert_eq!(data(&all[0]), data(&batch(1, 2)));
    assert_eq!(all[1].writer, "w9", "the writer is kept");
    assert_eq!(all[3].events.len(), 40);
    assert_eq!(all[3].events[39].data["node_id"], "n11-39");
    let from = store.read_events(&tenant, &execution, 10, 1).await.unwrap();
    assert_eq!(from.iter().map(|b| b.seq).collect::<Vec<_>>(), [10], "from a seq, at most the limit");
    assert_eq!(store.last_event_seq(&tenant, &execution).await.unwrap(), 11);
    assert!(store.read_events("another", &execution, 1, 100).await.unwrap().is_empty(), "tenant-scoped");
    assert_eq!(store.last_event_seq("another", &execution).await.unwrap(), 0);
}

/// Usage rows: a transaction that marks a finish already counted writes nothing (however its
/// batch was cut), rows list by day range and page, and another tenant's rows stay apart.
pub async fn usage_rows_add_once_per_finish_and_list_by_day_range(store: &dyn Store) {
    use crate::usage::{UsageCounters, UsageGroup, UsageRow};
    let (tenant, other) = (new_id(), new_id());
    let row = |tenant: &str, group, day: &str, name: Option<String>, calls| UsageRow {
        tenant_id: tenant.to_string(),
        day: day.to_string(),
        group,
        name,
        counters: UsageCounters { llm_calls: calls, input_tokens: 10 * calls, ..UsageCounters::default() },
    };
    // 150 workflow rows on one day: two transactions' worth.
    let mut rows: Vec<UsageRow> =
        (0..150).map(|i| row(&tenant, UsageGroup::Workflow, "2030-02-01", Some(format!("wf-{i:03}")), 1)).collect();
    rows.push(row(&tenant, UsageGroup::Day, "2030-01-31", None, 2));
    rows.push(row(&tenant, UsageGroup::Day, "2030-02-01", None, 3));
    rows.push(row(&other, UsageGroup::Day, "2030-02-01", None, 7));
    rows.sort_by_key(|r| (r.tenant_id.clone(), r.group, crate::usage::row_key(r)));
    // One finish marker with each transaction's worth of rows (at most 100 items in all).
    let marked = |n: usize| vec![format!("{tenant}#EX{n}#2030-02-01T00:00:00.000Z")];
    for (n, chunk) in rows.chunks(99).enumerate() {
        assert!(store.add_usage(&marked(n), chunk).await.unwrap());
        assert!(!store.add_usage(&marked(n), chunk).await.unwrap(), "a finish counted again is refused whole");
    }
    let days = store.list_usage(&tenant, UsageGroup::Day, "2030-01-01", "2030-12-31", None, 10).await.unwrap();
    let seen: Vec<_> =
        days.items.iter().map(|r| (r.day.as_str(), r.counters.llm_calls, r.counters.input_tokens)).collect();
    assert_eq!(seen, [("2030-01-31", 2, 20), ("2030-02-01", 3, 30)], "a retried batch adds nothing");
    // Another batch adds to the same rows.
    let again = [row(&tenant, UsageGroup::Day, "2030-02-01", None, 1)];
    assert!(store.add_usage(&marked(7), &again).await.unwrap());
    let both = [marked(7)[0].clone(), marked(8)[0].clone()];
    assert!(!store.add_usage(&both, &again).await.unwrap(), "one counted finish cancels the others too");
    let one = store.list_usage(&tenant, UsageGroup::Day, "2030-02-01", "2030-02-01", None, 10).await.unwrap();
    assert_eq!(one.items.iter().map(|r| r.counters.llm_calls).collect::<Vec<_>>(), [4]);
    // 150 named rows, paged by 100.
    let first = store.list_usage(&tenant, UsageGroup::Workflow, "2030-02-01", "2030-02-01", None, 100).await.unwrap();
    assert_eq!(first.items.len(), 100);
    let after = first.next_after.clone().expect("a second page");
    let second =
        store.list_usage(&tenant, UsageGroup::Workflow, "2030-02-01", "2030-02-01", Some(&after), 100).await.unwrap();
    assert_eq!(second.items.len(), 50);
    assert!(second.next_after.is_none());
    assert_eq!(second.items.last().and_then(|r| r.name.as_deref()), Some("wf-149"));
    assert!(second.items.iter().all(|r| r.counters.llm_calls == 1), "every row added once");
    assert!(
        store
            .list_usage(&tenant, UsageGroup::Workflow, "2030-02-02", "2030-03-01", None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let theirs = store.list_usage(&other, UsageGroup::Day, "2030-01-01", "2030-12-31", None, 10).await.unwrap();
    assert_eq!(theirs.items.iter().map(|r| r.counters.llm_calls).collect::<Vec<_>>(), [7]);
}

/// Budgets: two reservations that do not both fit, made at once, get exactly one through;
/// settling returns the unspent part; alerts are marked once; the budget reads back.
pub async fn budget_reservations_never_overspend_and_settle_to_the_real_cost(store: &dyn Store) {
    use crate::budgets::{Budget, OnExceed};
    let tenant = new_id();
    let month = "2030-05";
    let limit = 10_000_000; // $0.01
    let (a, b) =
        tokio::join!(store.reserve(&tenant, month, 8_000_000, limit), store.reserve(&tenant, month, 8_000_000, limit));
    assert_eq!([a.unwrap(), b.unwrap()].iter().filter(|x| **x).count(), 1, "exactly one $0.008 fits in $0.01");
    assert_eq!(store.month_spend(&tenant, month).await.unwrap().committed_nano, 8_000_000);
    // The call cost $0.003: $0.005 returns to the budget, and now another $0.007 fits.
    let settled = store.settle(&tenant, month, 8_000_000, 3_000_000).await.unwrap();
    assert_eq!((settled.spent_nano, settled.committed_nano, settled.reserved_nano()), (3_000_000, 3_000_000, 0));
    assert!(store.reserve(&tenant, month, 7_000_000, limit).await.unwrap());
    assert!(!store.reserve(&tenant, month, 1, limit).await.unwrap(), "full to the nano-dollar");
    assert!(!store.reserve(&tenant, month, limit + 1, limit).await.unwrap(), "larger than the budget");
    assert!(store.reserve(&tenant, "2030-06", 8_000_000, limit).await.unwrap(), "a new month starts empty");
    assert!(store.mark_alert(&tenant, month, 50).await.unwrap());
    assert!(!store.mark_alert(&tenant, month, 50).await.unwrap(), "once per month");
    assert!(store.mark_alert(&tenant, month, 80).await.unwrap());
    let mut sent = store.month_spend(&tenant, month).await.unwrap().alerts_sent;
    sent.sort();
    assert_eq!(sent, [50, 80]);
    assert!(store.get_budget(&tenant).await.unwrap().is_none());
    let budget = Budget {
        monthly_usd: 50.0,
        alert_at_percent: vec![50, 80, 100],
        on_exceed: OnExceed::BlockNewRuns,
        updated_at: "2030-05-01T00:00:00.000Z".into(),
    };
    store.put_budget(&tenant, &budget).await.unwrap();
    assert_eq!(store.get_budget(&tenant).await.unwrap(), Some(budget));
    assert!(store.get_budget(&new_id()).await.unwrap().is_none(), "another tenant has none");
}

/// Assistant sessions: the open-session limit counts only open ones; a turn is saved only
/// against the turn count it was read at; turns list in order; delete removes both.
pub async fn assistant_sessions_hold_their_limit_turns_in_order_and_one_writer(store: &dyn Store) {
    use crate::assistant::{AssistantSession, AssistantTurn};
    let tenant = new_id();
    let now = 1_900_000_000;
    let session = |expires_at: i64| AssistantSession { expires_at, ..AssistantSession::open("c", "m", now - 100) };
    let expired = session(now - 1);
    assert!(store.create_session(&tenant, &expired, 2, now - 10).await.unwrap());
    let (a, b) = (session(now + 100), session(now + 100));
    assert!(store.create_session(&tenant, &a, 2, now).await.unwrap());
    assert!(store.create_session(&tenant, &b, 2, now).await.unwrap(), "the expired one does not count");
    assert!(!store.create_session(&tenant, &session(now + 100), 2, now).await.unwrap(), "two open: full");
    assert!(store.create_session(&new_id(), &session(now + 100), 2, now).await.unwrap(), "per tenant");
    assert_eq!(store.get_session(&tenant, &a.session_id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_session(&new_id(), &a.session_id).await.unwrap(), None);
    let turn = |seq: u32| AssistantTurn {
        seq,
        message: format!("message {seq} <&>"),
        reply: "r".into(),
        proposal: Some(serde_json::json!({ "name": "w", "nodes": [] })),
        valid: false,
        problems: vec![],
        patch: serde_json::json!([]),
        rounds: 1,
        usage: Default::default(),
        cost_nano_usd: Some(7),
        created_at: "2030-03-17T17:46:41Z".into(),
    };
    for seq in 1..=3 {
        let next = AssistantSession { turns: seq, revision: seq as u64, ..a.clone() };
        assert!(store.save_turn(&tenant, &next, Some(&turn(seq)), now).await.unwrap());
    }
    // A writer that read revision 2 (an apply racing the third message) is refused.
    let stale = AssistantSession { turns: 3, revision: 3, workflow_id: Some(new_id()), ..a.clone() };
    assert!(!store.save_turn(&tenant, &stale, None, now).await.unwrap(), "read at revision 2: refused");
    let expired_next = AssistantSession { revision: 1, ..expired.clone() };
    assert!(!store.save_turn(&tenant, &expired_next, None, now).await.unwrap(), "an expired session takes nothing");
    let gone = AssistantSession { revision: 1, ..session(now + 100) };
    assert!(!store.save_turn(&tenant, &gone, None, now).await.unwrap(), "a session never created takes nothing");
    let turns = store.list_turns(&tenant, &a.session_id).await.unwrap();
    assert_eq!(turns, vec![turn(1), turn(2), turn(3)]);
    let stored = store.get_session(&tenant, &a.session_id).await.unwrap().unwrap();
    assert_eq!((stored.turns, stored.revision, stored.workflow_id), (3, 3, None));
    assert!(store.delete_session(&tenant, &a.session_id).await.unwrap());
    assert_eq!(store.get_session(&tenant, &a.session_id).await.unwrap(), None);
    assert!(store.list_turns(&tenant, &a.session_id).await.unwrap().is_empty());
    assert!(!store.delete_session(&tenant, &a.session_id).await.unwrap());
}
