//! Workflow routes: validate, create, list, get, replace, delete, publish, versions, deploy.

use super::views::{
    DeployRequest, Page, ValidationReport, VersionSummaryView, VersionView, WorkflowSummaryView, WorkflowView,
};
use super::{Call, paging, truncate};
use crate::api::http::{self, Reply};
use crate::cursor;
use crate::error::{ApiError, ErrorCode, StoreError};
use crate::model::{VersionRecord, WorkflowRecord, now_rfc3339};
use crate::store::{DeployOutcome, VersionSummary, WorkflowSummary};
use crate::validation::{self, Problem, is_valid_tag};

use serde_json::Value;

pub(super) fn problems_error(problems: Vec<Problem>) -> ApiError {
    let count = problems.len();
    let details = problems.into_iter().map(|p| serde_json::to_value(p).unwrap_or(Value::Null)).collect();
    ApiError::new(
        ErrorCode::ValidationFailed,
        format!("the workflow definition has {count} problem{}", if count == 1 { "" } else { "s" }),
    )
    .with_details(details)
    .suggest("Fix every problem listed in details; POST /v1/workflows/validate checks a definition without saving it.")
}

/// The workflow id from the path. An id that is not a canonical ULID cannot exist: 404.
pub(super) fn workflow_id(call: &Call) -> Result<String, ApiError> {
    http::ulid_param(call.req, "workflow_id").map_err(|raw| ApiError::workflow_not_found(&truncate(&raw, 64)))
}

pub(super) fn workflow_view(record: &WorkflowRecord) -> WorkflowView {
    let d = &record.definition;
    WorkflowView {
        id: record.workflow_id.clone(),
        name: d.name.clone(),
        description: d.description.clone(),
        tags: d.tags.clone(),
        revision: record.revision,
        etag: record.etag(),
        latest_version: (record.latest_version > 0).then_some(record.latest_version),
        deployed_version: record.deployed_version,
        has_unpublished_changes: record.revision != record.published_revision,
        created_at: record.created_at.clone(),
        updated_at: record.updated_at.clone(),
        definition: d.clone(),
    }
}

fn summary_view(summary: &WorkflowSummary) -> WorkflowSummaryView {
    WorkflowSummaryView {
        id: summary.workflow_id.clone(),
        name: summary.name.clone(),
        description: summary.description.clone(),
        tags: summary.tags.clone(),
        revision: summary.revision,
        latest_version: (summary.latest_version > 0).then_some(summary.latest_version),
        deployed_version: summary.deployed_version,
        created_at: summary.created_at.clone(),
        updated_at: summary.updated_at.clone(),
    }
}

fn version_view(version: &VersionRecord) -> VersionView {
    VersionView {
        workflow_id: version.workflow_id.clone(),
        version: version.version,
        source_revision: version.source_revision,
        created_at: version.created_at.clone(),
        definition: version.definition.clone(),
    }
}

fn version_summary_view(workflow_id: &str, version: &VersionSummary) -> VersionSummaryView {
    VersionSummaryView {
        workflow_id: workflow_id.to_string(),
        version: version.version,
        name: version.name.clone(),
        source_revision: version.source_revision,
        created_at: version.created_at.clone(),
    }
}

pub(super) fn location(workflow_id: &str) -> String {
    format!("/v1/workflows/{workflow_id}")
}

/// 422 when the workflows its flow.subworkflow and flow.map nodes name cannot run.
pub(super) async fn references_resolve(
    call: &Call<'_>,
    self_id: Option<&str>,
    definition: &crate::model::WorkflowDefinition,
) -> Result<(), ApiError> {
    let problems = validation::check_references(call.app.store()?, call.tenant_id, self_id, definition).await?;
    if problems.is_empty() { Ok(()) } else { Err(problems_error(problems)) }
}

pub async fn validate(call: &Call<'_>) -> Result<Reply, ApiError> {
    let (document, size) = http::json_body(call.req)?;
    let problems = match validation::validate_definition(&document, size) {
        Ok(definition) => validation::check_references(call.app.store()?, call.tenant_id, None, &definition).await?,
        Err(problems) => problems,
    };
    Ok(Reply::ok(ValidationReport { valid: problems.is_empty(), problems }))
}

pub async fn create(call: &Call<'_>) -> Result<Reply, ApiError> {
    let (document, size) = http::json_body(call.req)?;
    let definition = validation::validate_definition(&document, size).map_err(problems_error)?;
    references_resolve(call, None, &definition).await?;
    let record = WorkflowRecord::new_draft(call.tenant_id, definition);
    call.app.store()?.create_workflow(&record).await?;
    Ok(Reply::created(workflow_view(&record), location(&record.workflow_id)).with_header("etag", record.etag()))
}

pub async fn list(call: &Call<'_>) -> Result<Reply, ApiError> {
    let tag = http::query_param(call.req, "tag");
    if let Some(tag) = &tag
        && !is_valid_tag(tag)
    {
        return Err(ApiError::invalid_request("tag must be 1-64 characters of letters, digits, '_', '.', ':' or '-'"));
    }
    let scope = format!("workflows|{}|{}", call.tenant_id, tag.as_deref().unwrap_or(""));
    let (limit, after) = paging(call, &scope)?;
    let page = call.app.store()?.list_workflows(call.tenant_id, after.as_deref(), limit, tag.as_deref()).await?;
    let key = &call.app.config.cursor_signing_key;
    Ok(Reply::ok(Page {
        items: page.items.iter().map(summary_view).collect(),
        next_token: page.next_after.map(|after| cursor::encode(key, &scope, &after)),
    }))
}

pub(super) async fn load(call: &Call<'_>, workflow_id: &str) -> Result<WorkflowRecord, ApiError> {
    call.app
        .store()?
        .get_workflow(call.tenant_id, workflow_id)
        .await?
        .ok_or_else(|| ApiError::workflow_not_found(workflow_id))
}

pub async fn get(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = workflow_id(call)?;
    let record = load(call, &id).await?;
    Ok(Reply::ok(workflow_view(&record)).with_header("etag", record.etag()))
}

/// The revision an `If-Match` header names: `"3"`, `W/"3"` or `3`. `*` means any.
fn if_match(call: &Call) -> Result<Option<u64>, ApiError> {
    match http::header(call.req, "if-match") {
        Some(raw) => parse_etag(raw),
        None => Ok(None),
    }
}

/// The revision an ETag names: `"3"`, `W/"3"` or `3`; None for `*` (any).
pub(super) fn parse_etag(raw: &str) -> Result<Option<u64>, ApiError> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u64>()
        .map(Some)
        .map_err(|_| ApiError::invalid_request("If-Match must be an ETag returned by this API, such as \"3\""))
}

pub async fn update(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = workflow_id(call)?;
    let expected = if_match(call)?;
    let (document, size) = http::json_body(call.req)?;
    let definition = validation::validate_definition(&document, size).map_err(problems_error)?;
    let record = replace_checked(call, &id, &definition, expected).await?;
    Ok(Reply::ok(workflow_view(&record)).with_header("etag", record.etag()))
}

/// Replaces a draft with a valid definition whose references resolve, if the workflow is at
/// revision `expected` (any: None). 412 when it is not, 404 when it is gone.
pub(super) async fn replace_checked(
    call: &Call<'_>,
    id: &str,
    definition: &crate::model::WorkflowDefinition,
    expected: Option<u64>,
) -> Result<WorkflowRecord, ApiError> {
    references_resolve(call, Some(id), definition).await?;
    let current = load(call, id).await?;
    let stale = || {
        ApiError::new(
            ErrorCode::PreconditionFailed,
            format!("the workflow is at revision {}, not the one If-Match names", current.revision),
        )
        .suggest("GET the workflow again, reapply your change and send its new ETag.")
    };
    if expected.is_some_and(|e| e != current.revision) {
        return Err(stale());
    }
    match call.app.store()?.replace_draft(call.tenant_id, id, definition, current.revision, &now_rfc3339()).await {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(ApiError::workflow_not_found(id)),
        Err(StoreError::ConditionFailed) if expected.is_some() => Err(stale()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the workflow, its versions and its triggers (each with its schedule and secret, so
/// none fires or answers again).
pub async fn delete(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = workflow_id(call)?;
    let store = call.app.store()?;
    loop {
        let page = store.list_triggers(call.tenant_id, &id, None, super::MAX_PAGE_SIZE).await?;
        for trigger in &page.items {
            super::triggers::remove(call.app, trigger).await?;
        }
        if page.next_after.is_none() {
            break;
        }
    }
    if store.delete_workflow(call.tenant_id, &id).await? {
        Ok(Reply::no_content())
    } else {
        Err(ApiError::workflow_not_found(&id))
    }
}

pub async fn publish(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = workflow_id(call)?;
    let current = load(call, &id).await?;
    if current.latest_version > 0 && current.published_revision == current.revision {
        return Err(ApiError::new(
            ErrorCode::DraftUnchanged,
            format!("the draft has not changed since version {} was published", current.latest_version),
        )
        .suggest(format!("Deploy it with PUT /v1/workflows/{id}/deployment, or change the draft first.")));
    }
    let version = VersionRecord {
        tenant_id: call.tenant_id.to_string(),
        workflow_id: id.clone(),
        version: current.latest_version + 1,
        definition: current.definition,
        source_revision: current.revision,
        created_at: now_rfc3339(),
    };
    call.app.store()?.publish_version(&version).await?;
    Ok(Reply::created(version_view(&version), format!("{}/versions/{}", location(&id), version.version)))
}

pub async fn list_versions(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = workflow_id(call)?;
    let scope = format!("versions|{}|{id}", call.tenant_id);
    let (limit, after) = paging(call, &scope)?;
    load(call, &id).await?;
    let page = call.app.store()?.list_versions(call.tenant_id, &id, after.as_deref(), limit).await?;
    let key = &call.app.config.cursor_signing_key;
    Ok(Reply::ok(Page {
        items: page.items.iter().map(|v| version_summary_view(&id, v)).collect(),
        next_token: page.next_after.map(|after| cursor::encode(key, &scope, &after)),
    }))
}

pub async fn get_version(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = workflow_id(call)?;
    let raw = http::path_param(call.req, "version").unwrap_or_default();
    let number = match raw.parse::<u32>() {
        Ok(n) if n >= 1 => n,
        _ => {
            return Err(ApiError::invalid_request(format!(
                "version must be a positive integer, not {:?}",
                truncate(&raw, 32)
            )));
        }
    };
    load(call, &id).await?;
    let version = call
        .app
        .store()?
        .get_version(call.tenant_id, &id, number)
        .await?
        .ok_or_else(|| ApiError::version_not_found(&id, number))?;
    Ok(Reply::ok(version_view(&version)))
}

pub async fn deploy(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = workflow_id(call)?;
    let request: DeployRequest = http::typed_body(call.req)?;
    if request.version == 0 {
        return Err(ApiError::invalid_request("version must be a positive integer"));
    }
    match call.app.store()?.set_deployed_version(call.tenant_id, &id, request.version, &now_rfc3339()).await? {
        DeployOutcome::Deployed => {
            let record = load(call, &id).await?;
            Ok(Reply::ok(workflow_view(&record)).with_header("etag", record.etag()))
        }
        DeployOutcome::WorkflowMissing => Err(ApiError::workflow_not_found(&id)),
        DeployOutcome::VersionMissing => Err(ApiError::version_not_found(&id, request.version)),
    }
}
