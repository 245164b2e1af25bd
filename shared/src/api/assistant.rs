//! The workflow assistant's routes (`crate::assistant`): sessions, messages, apply.

use super::views::{
    AssistantApplyRequest, AssistantMessageRequest, AssistantSessionRequest, AssistantSessionView, AssistantTurnView,
};
use super::workflows::{
    load, location, parse_etag, problems_error, references_resolve, replace_checked, workflow_view,
};
use super::{Call, truncate};
use crate::api::http::{self, Reply};
use crate::assistant::{
    self, AssistantSession, AssistantTurn, MAX_MESSAGE_CHARS, MAX_OPEN_SESSIONS, MAX_TURNS, TurnError, TurnSpend,
};
use crate::error::{ApiError, ErrorCode};
use crate::model::{StepErrorCode, WorkflowRecord, now_rfc3339};
use crate::secrets::{CredentialError, is_valid_credential_name};
use serde_json::{Value, json};
use std::sync::Mutex;

/// How long before the turn's budget its model calls must end (a quarter of it when shorter).
const TURN_MARGIN: std::time::Duration = std::time::Duration::from_millis(1500);
/// The assistant's words kept per turn, characters.
const MAX_REPLY_CHARS: usize = 4000;

fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

fn not_found(session_id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AssistantSessionNotFound,
        format!("assistant session '{}' does not exist or has ended", truncate(session_id, 64)),
    )
    .suggest("Start a new session with POST /v1/assistant/sessions.")
}

/// The session id the path names; one that is not a canonical ULID cannot exist: 404.
fn session_id(call: &Call<'_>) -> Result<String, ApiError> {
    http::ulid_param(call.req, "session_id").map_err(|raw| not_found(&raw))
}

/// The open session `id`, or 404 (another tenant's, ended or expired).
async fn open_session(call: &Call<'_>, id: &str) -> Result<AssistantSession, ApiError> {
    match call.app.store()?.get_session(call.tenant_id, id).await? {
        Some(session) if session.is_open(now_seconds()) => Ok(session),
        _ => Err(not_found(id)),
    }
}

/// A workflow id given in a body; one that is not a canonical ULID cannot exist: 404.
fn body_workflow_id(raw: &str) -> Result<String, ApiError> {
    if http::is_canonical_ulid(raw) {
        Ok(raw.to_string())
    } else {
        Err(ApiError::workflow_not_found(&truncate(raw, 64)))
    }
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A turn as answered; `detailed: false` leaves its proposal and patch out.
fn turn_view(session_id: &str, turn: &AssistantTurn, detailed: bool) -> AssistantTurnView {
    AssistantTurnView {
        session_id: session_id.to_string(),
        turn: turn.seq,
        message: turn.message.clone(),
        reply: turn.reply.clone(),
        proposal: turn.proposal.clone().filter(|_| detailed),
        valid: turn.valid,
        problems: turn.problems.clone(),
        patch: Some(turn.patch.clone()).filter(|_| detailed && turn.proposal.is_some()),
        rounds: turn.rounds,
        usage: turn.usage,
        cost_usd: turn.cost_nano_usd.map(|nano| nano as f64 / 1e9),
        created_at: turn.created_at.clone(),
    }
}

fn session_view(session: &AssistantSession, turns: &[AssistantTurn]) -> AssistantSessionView {
    AssistantSessionView {
        session_id: session.session_id.clone(),
        credential: session.credential.clone(),
        model: session.model.clone(),
        workflow_id: session.workflow_id.clone(),
        definition: session.current.clone(),
        proposal_valid: session.proposal_valid,
        created_at: session.created_at.clone(),
        updated_at: session.updated_at.clone(),
        expires_at: rfc3339(session.expires_at),
        turns: turns
            .iter()
            .enumerate()
            .map(|(i, t)| turn_view(&session.session_id, t, i + assistant::HISTORY_TURNS >= turns.len()))
            .collect(),
    }
}

/// POST /v1/assistant/sessions: opens a session (201). 404 `CREDENTIAL_NOT_FOUND` or
/// `WORKFLOW_NOT_FOUND` for what it names; 409 `ASSISTANT_LIMIT_REACHED` at 20 open sessions.
pub async fn create(call: &Call<'_>) -> Result<Reply, ApiError> {
    let request: AssistantSessionRequest = http::typed_body(call.req)?;
    if !is_valid_credential_name(&request.credential) {
        return Err(ApiError::invalid_request(
            "credential must be a credential name: 1-64 characters of letters, digits, '_' or '-'",
        ));
    }
    let model_chars = request.model.chars().count();
    if !(1..=200).contains(&model_chars) || request.model.chars().any(char::is_control) {
        return Err(ApiError::invalid_request("model must be 1 to 200 characters, without control characters"));
    }
    let store = call.app.store()?;
    if store.get_credential(call.tenant_id, &request.credential).await?.is_none() {
        return Err(ApiError::new(
            ErrorCode::CredentialNotFound,
            format!("credential '{}' does not exist", request.credential),
        )
        .suggest("Create it with PUT /v1/credentials/{name}."));
    }
    let (workflow_id, base_revision, current) = match &request.workflow_id {
        None => (None, None, None),
        Some(id) => {
            let record = load(call, &body_workflow_id(id)?).await?;
            let definition = serde_json::to_value(&record.definition).map_err(|e| {
                tracing::error!(error = %e, "a stored definition does not serialize");
                ApiError::new(ErrorCode::InternalError, "an internal error occurred")
            })?;
            (Some(record.workflow_id.clone()), Some(record.revision), Some(definition))
        }
    };
    let now = now_seconds();
    let session = AssistantSession {
        workflow_id,
        base_revision,
        current,
        ..AssistantSession::open(&request.credential, &request.model, now)
    };
    if !store.create_session(call.tenant_id, &session, MAX_OPEN_SESSIONS, now).await? {
        return Err(ApiError::new(
            ErrorCode::AssistantLimitReached,
            format!("the tenant already has {MAX_OPEN_SESSIONS} open assistant sessions"),
        )
        .suggest("End one with DELETE /v1/assistant/sessions/{session_id}, or wait for one to expire."));
    }
    let location = format!("/v1/assistant/sessions/{}", session.session_id);
    Ok(Reply::created(session_view(&session, &[]), location))
}

/// GET /v1/assistant/sessions/{session_id}: the session and its conversation.
pub async fn get(call: &Call<'_>) -> Result<Reply, ApiError> {
    let session = open_session(call, &session_id(call)?).await?;
    let turns = call.app.store()?.list_turns(call.tenant_id, &session.session_id).await?;
    Ok(Reply::ok(session_view(&session, &turns)))
}

/// DELETE /v1/assistant/sessions/{session_id}: ends the session and deletes its turns (204).
pub async fn delete(call: &Call<'_>) -> Result<Reply, ApiError> {
    let session = open_session(call, &session_id(call)?).await?;
    if !call.app.store()?.delete_session(call.tenant_id, &session.session_id).await? {
        return Err(not_found(&session.session_id));
    }
    Ok(Reply::no_content())
}

/// POST /v1/assistant/sessions/{session_id}/messages: one turn (see `assistant`). 200 with the
/// proposal, valid or not; 422 for a message outside 1-5,000 characters; 504 past the turn's
/// time budget; 502 when the provider fails or never answers with a definition. Only a
/// completed turn is recorded: a failed one leaves the session as it was.
pub async fn message(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = session_id(call)?;
    let request: AssistantMessageRequest = http::typed_body(call.req)?;
    let session = open_session(call, &id).await?;
    let chars = request.message.chars().count();
    if !(1..=MAX_MESSAGE_CHARS).contains(&chars) {
        return Err(ApiError::new(
            ErrorCode::AssistantMessageInvalid,
            format!("message must be 1 to {MAX_MESSAGE_CHARS} characters; this one has {chars}"),
        ));
    }
    if session.turns >= MAX_TURNS {
        return Err(ApiError::new(
            ErrorCode::AssistantLimitReached,
            format!("the session has had its {MAX_TURNS} turns"),
        )
        .suggest("Apply the proposal, then start a new session on the workflow."));
    }
    let (store, runtime) = (call.app.store()?, call.app.models()?);
    let history = store.list_turns(call.tenant_id, &session.session_id).await?;
    let budget = call.app.config.assistant_turn_timeout;
    let started = std::time::Instant::now();
    // Model calls end a margin before the budget, so that their reservations settle and the
    // turn answers within it; the outer timeout is the backstop.
    let deadline = started + budget.saturating_sub(budget / 4).max(budget.saturating_sub(TURN_MARGIN));
    let spend = Mutex::new(TurnSpend::default());
    let turn =
        assistant::converse(runtime, store, call.tenant_id, &session, &history, &request.message, deadline, &spend);
    let result = tokio::time::timeout(budget, turn).await;
    // What the calls were billed counts whatever the outcome (a cut-off call's reservation
    // settles at its worst case on its own: `budgets::CallReservation`). Each attempt counts
    // under its own id: nothing else could count it.
    let spent = spend.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let marker = format!("{}#{}", session.session_id, ulid::Ulid::new());
    if let Err(e) = assistant::count_usage(store, call.tenant_id, &session.model, &marker, &spent).await {
        tracing::warn!(error = %e, "an assistant turn's usage was not counted");
    }
    let timed_out = || {
        ApiError::new(
            ErrorCode::AssistantTimeout,
            format!("the assistant did not finish within {} ms; nothing was recorded", budget.as_millis()),
        )
        .suggest("Retry, or ask for a smaller change.")
    };
    let outcome = match result {
        Err(_) => return Err(timed_out()),
        // A call cut off by the turn's deadline is the turn's timeout, not the provider's fault.
        Ok(Err(TurnError::Call(failure)))
            if failure.code == StepErrorCode::HttpTimeout.as_str() && std::time::Instant::now() >= deadline =>
        {
            return Err(timed_out());
        }
        Ok(Err(e)) => return Err(turn_error(e, &session)),
        Ok(Ok(outcome)) => outcome,
    };
    let seq = session.turns + 1;
    let base = session.current.clone().unwrap_or_else(|| json!({}));
    let valid = outcome.problems.is_empty();
    // An invalid proposal over the definition size limit is not kept (its problems are).
    let keep = valid
        || serde_json::to_vec(&outcome.proposal).map(|b| b.len()).unwrap_or(usize::MAX)
            <= crate::validation::MAX_DEFINITION_BYTES;
    let patch = if keep {
        serde_json::to_value(json_patch::diff(&base, &outcome.proposal)).unwrap_or(Value::Null)
    } else {
        json!([])
    };
    let at = now_rfc3339();
    let turn = AssistantTurn {
        seq,
        message: request.message,
        reply: truncate(&outcome.reply, MAX_REPLY_CHARS),
        proposal: Some(outcome.proposal.clone()).filter(|_| keep),
        valid,
        problems: assistant::problems_json(&outcome.problems),
        patch,
        rounds: outcome.rounds,
        usage: spent.usage,
        cost_nano_usd: (spent.unpriced_calls == 0).then_some(spent.cost_nano_usd),
        created_at: at.clone(),
    };
    let now = now_seconds();
    let mut next = AssistantSession {
        turns: seq,
        revision: session.revision + 1,
        updated_at: at,
        expires_at: session.refreshed_expiry(now),
        ..session
    };
    if valid {
        next.current = Some(outcome.proposal);
        next.proposal_valid = true;
    }
    if !store.save_turn(call.tenant_id, &next, Some(&turn), now).await? {
        return Err(ApiError::new(
            ErrorCode::ConcurrentModification,
            "another message or apply on this session finished first, or the session ended",
        )
        .suggest("GET the session, then send the message again."));
    }
    Ok(Reply::ok(turn_view(&next.session_id, &turn, true)))
}

/// A failed turn as the client sees it: never the provider's raw body or an AWS error.
fn turn_error(error: TurnError, session: &AssistantSession) -> ApiError {
    match error {
        TurnError::Credential(CredentialError::NotFound(_)) => ApiError::new(
            ErrorCode::CredentialNotFound,
            format!("the session's credential '{}' no longer exists", session.credential),
        )
        .suggest("Create it again with PUT /v1/credentials/{name}, or start a session with another."),
        TurnError::Credential(CredentialError::Malformed(_)) => ApiError::new(
            ErrorCode::CredentialInvalid,
            format!("the stored credential '{}' is not readable", session.credential),
        ),
        TurnError::Credential(CredentialError::Store(e)) => e.into(),
        TurnError::Store(e) => e.into(),
        TurnError::NoDefinition { rounds, said } => ApiError::new(
            ErrorCode::AssistantNoDefinition,
            format!(
                "the model answered without a workflow definition in {rounds} rounds; it said: {}",
                truncate(&said, 300)
            ),
        ),
        TurnError::Call(failure) => {
            let code = match failure.code.as_str() {
                c if c == StepErrorCode::BudgetExceeded.as_str() => ErrorCode::BudgetExceeded,
                c if c == StepErrorCode::ModelUnpriced.as_str() => ErrorCode::ModelUnpriced,
                c if c == StepErrorCode::BudgetUnavailable.as_str() => ErrorCode::ServiceUnavailable,
                c if [StepErrorCode::SsrfBlocked, StepErrorCode::CredentialInvalid]
                    .iter()
                    .any(|code| c == code.as_str()) =>
                {
                    ErrorCode::CredentialInvalid
                }
                _ => ErrorCode::ModelCallFailed,
            };
            let error = ApiError::new(code, format!("{}: {}", failure.code, failure.message));
            match failure.retry_after {
                Some(after) if code == ErrorCode::ModelCallFailed => {
                    error.with_header("retry-after", after.as_secs().max(1).to_string())
                }
                _ => error,
            }
        }
    }
}

/// POST /v1/assistant/sessions/{session_id}/apply: creates a workflow from the session's last
/// valid proposal (201), or replaces a draft with it (200) under `if_match` (412 when stale).
/// 409 `NO_VALID_PROPOSAL` when no proposal of the session validated.
pub async fn apply(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = session_id(call)?;
    // No body at all is `{}`: nothing to name.
    let request: AssistantApplyRequest =
        if call.req.body().is_empty() { AssistantApplyRequest::default() } else { http::typed_body(call.req)? };
    let mut session = open_session(call, &id).await?;
    let Some(proposal) = session.current.clone().filter(|_| session.proposal_valid) else {
        return Err(ApiError::new(ErrorCode::NoValidProposal, "no proposal of this session has validated")
            .suggest("Send a message; apply once an answer has \"valid\": true."));
    };
    // Validated again: a workflow it references may have changed since the turn.
    let size = serde_json::to_vec(&proposal).map(|b| b.len()).unwrap_or(usize::MAX);
    let definition = crate::validation::validate_definition(&proposal, size).map_err(problems_error)?;
    let target = match &request.workflow_id {
        Some(raw) => Some(body_workflow_id(raw)?),
        None => session.workflow_id.clone(),
    };
    let (reply, record) = match target {
        None => {
            references_resolve(call, None, &definition).await?;
            let record = WorkflowRecord::new_draft(call.tenant_id, definition);
            call.app.store()?.create_workflow(&record).await?;
            let reply = Reply::created(workflow_view(&record), location(&record.workflow_id));
            (reply, record)
        }
        Some(id) => {
            let expected = match &request.if_match {
                Some(raw) => parse_etag(raw)?,
                None if session.workflow_id.as_deref() == Some(id.as_str()) => session.base_revision,
                None => {
                    return Err(ApiError::invalid_request(
                        "if_match is required to replace a workflow this session did not start from",
                    ));
                }
            };
            let record = replace_checked(call, &id, &definition, expected).await?;
            (Reply::ok(workflow_view(&record)), record)
        }
    };
    let now = now_seconds();
    let created = session.workflow_id.is_none() && request.workflow_id.is_none();
    session.workflow_id = Some(record.workflow_id.clone());
    session.base_revision = Some(record.revision);
    session.revision += 1;
    session.updated_at = now_rfc3339();
    session.expires_at = session.refreshed_expiry(now);
    if !call.app.store()?.save_turn(call.tenant_id, &session, None, now).await? {
        // A message or another apply changed the session meanwhile: a workflow this apply
        // created is taken back (the session would not know it), and the client retries.
        if created && let Err(e) = call.app.store()?.delete_workflow(call.tenant_id, &record.workflow_id).await {
            tracing::error!(error = %e, workflow_id = %record.workflow_id, "a raced apply's workflow was not removed");
        }
        return Err(ApiError::new(
            ErrorCode::ConcurrentModification,
            "a message or another apply changed the session while this apply ran",
        )
        .suggest("GET the session, then apply again."));
    }
    Ok(reply.with_header("etag", record.etag()))
}
