//! One turn: the model proposes, NodeAI validates, problems go back for repair (at most
//! `MAX_ROUNDS` calls), every call reserved against the budget and counted in the usage.

use super::model::{self, ChatTurn, MAX_OUTPUT_TOKENS};
use super::{AssistantSession, AssistantTurn, HISTORY_TURNS, MAX_ROUNDS, prompt};
use crate::budgets::reserve_call;
use crate::engine::{NodeFailure, RunSpend};
use crate::error::StoreError;
use crate::model::TokenUsage;
use crate::model::nano_usd;
use crate::nodes::NodeRuntime;
use crate::secrets::CredentialError;
use crate::store::Store;
use crate::usage::{UsageCounters, UsageGroup, UsageRow};
use crate::validation::{self, Problem};
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a turn's calls spent so far; kept outside the turn's future so a turn cut off by its
/// time budget still counts what it was billed.
#[derive(Debug, Default, Clone)]
pub struct TurnSpend {
    pub calls: u64,
    pub usage: TokenUsage,
    pub cost_nano_usd: u64,
    /// Calls whose model has no price.
    pub unpriced_calls: u64,
}

/// A turn that produced a definition (valid or not).
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    pub reply: String,
    pub proposal: Value,
    pub problems: Vec<Problem>,
    pub rounds: u32,
}

#[derive(Debug)]
pub enum TurnError {
    /// The session's credential is missing or unusable.
    Credential(CredentialError),
    /// A call failed: the provider's answer, the SSRF guard, an open circuit, a budget.
    Call(NodeFailure),
    /// No round's reply held a definition object: the last reply's words.
    NoDefinition {
        rounds: u32,
        said: String,
    },
    Store(StoreError),
}

impl From<StoreError> for TurnError {
    fn from(e: StoreError) -> Self {
        TurnError::Store(e)
    }
}

/// Runs one turn for `message` on `session` (with its recorded `history`), every call ending by
/// `deadline`. `spend` collects what each call was billed.
#[allow(clippy::too_many_arguments)]
pub async fn converse(
    runtime: &NodeRuntime,
    store: &dyn Store,
    tenant_id: &str,
    session: &AssistantSession,
    history: &[AssistantTurn],
    message: &str,
    deadline: Instant,
    spend: &Mutex<TurnSpend>,
) -> Result<TurnOutcome, TurnError> {
    let resolver = runtime.credentials.as_ref().ok_or_else(|| {
        TurnError::Call(NodeFailure::permanent(
            crate::model::StepErrorCode::CredentialUnavailable,
            "this function has no access to credentials",
        ))
    })?;
    let credential = resolver.resolve(tenant_id, &session.credential).await.map_err(TurnError::Credential)?;
    let system = prompt::system_prompt(session.current.as_ref());
    let mut turns = Vec::new();
    for earlier in history.iter().rev().take(HISTORY_TURNS).rev() {
        turns.push(ChatTurn { role: "user", content: earlier.message.clone() });
        turns.push(ChatTurn { role: "assistant", content: nonempty(&earlier.reply) });
    }
    turns.push(ChatTurn { role: "user", content: message.to_string() });
    let mut last: Option<TurnOutcome> = None;
    let mut said = String::new();
    for round in 1..=MAX_ROUNDS {
        let answer = call_once(runtime, tenant_id, &credential, session, &system, &turns, deadline, spend).await?;
        let problems = match &answer.definition {
            None => vec![Problem::new(
                "",
                "NOT_A_DEFINITION",
                "the reply held no workflow definition: call propose_workflow with the complete definition",
            )],
            Some(definition) => problems_of(store, tenant_id, session, definition).await?,
        };
        said = answer.message.clone();
        if let Some(definition) = answer.definition.clone() {
            let outcome = TurnOutcome {
                reply: answer.message.clone(),
                proposal: definition,
                problems: problems.clone(),
                rounds: round,
            };
            if problems.is_empty() {
                return Ok(outcome);
            }
            last = Some(outcome);
        }
        turns.push(ChatTurn {
            role: "assistant",
            content: nonempty(&answer.raw.chars().take(60_000).collect::<String>()),
        });
        turns.push(ChatTurn { role: "user", content: repair_request(&problems) });
    }
    match last {
        Some(outcome) => Ok(TurnOutcome { rounds: MAX_ROUNDS, ..outcome }),
        None => Err(TurnError::NoDefinition { rounds: MAX_ROUNDS, said }),
    }
}

fn nonempty(text: &str) -> String {
    if text.trim().is_empty() { "(no text)".to_string() } else { text.to_string() }
}

/// The repair round's message: every problem, with its path and code.
fn repair_request(problems: &[Problem]) -> String {
    let mut text = String::from(
        "NodeAI rejected that definition. Fix every problem below and call propose_workflow again with the complete corrected definition:\n",
    );
    for problem in problems {
        text.push_str(&format!("- {} at '{}': {}\n", problem.code, problem.path, problem.message));
    }
    text
}

/// Every problem POST /v1/workflows would answer for `definition`.
async fn problems_of(
    store: &dyn Store,
    tenant_id: &str,
    session: &AssistantSession,
    definition: &Value,
) -> Result<Vec<Problem>, StoreError> {
    let size = serde_json::to_vec(definition).map(|b| b.len()).unwrap_or(usize::MAX);
    match validation::validate_definition(definition, size) {
        Ok(typed) => validation::check_references(store, tenant_id, session.workflow_id.as_deref(), &typed).await,
        Err(problems) => Ok(problems),
    }
}

/// One model call, reserved against the budget first and settled to its cost; one more attempt
/// when the failure is retryable (429, 5xx, a timeout) and time is left.
#[allow(clippy::too_many_arguments)]
async fn call_once(
    runtime: &NodeRuntime,
    tenant_id: &str,
    credential: &crate::secrets::ProviderCredential,
    session: &AssistantSession,
    system: &str,
    turns: &[ChatTurn],
    deadline: Instant,
    spend: &Mutex<TurnSpend>,
) -> Result<model::ModelAnswer, TurnError> {
    let run = RunSpend::new(None, 0);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (request, prompt_bytes) =
            model::request(credential, &session.model, system, turns).map_err(TurnError::Call)?;
        let reservation = reserve_call(
            tenant_id,
            &run,
            runtime.budgets.as_ref(),
            &runtime.prices,
            &session.model,
            prompt_bytes,
            Some(MAX_OUTPUT_TOKENS),
        )
        .await
        .map_err(TurnError::Call)?;
        let left = deadline.saturating_duration_since(Instant::now());
        // Counted before it is sent: a call cut off by the turn's timeout was still made.
        spend.lock().unwrap_or_else(|e| e.into_inner()).calls += 1;
        let result = model::call(runtime, tenant_id, credential, request, left).await;
        let usage = match &result {
            Ok(answer) => answer.usage,
            Err(failure) => failure.billed.as_ref().map(|b| b.usage).unwrap_or_default(),
        };
        let cost = runtime.prices.cost_usd(&session.model, &usage);
        reservation.settle(cost).await;
        {
            let mut spent = spend.lock().unwrap_or_else(|e| e.into_inner());
            spent.usage = spent.usage.plus(usage);
            match cost {
                Some(cost) => spent.cost_nano_usd += nano_usd(cost),
                None => spent.unpriced_calls += 1,
            }
        }
        match result {
            Ok(answer) => return Ok(answer),
            Err(failure) => {
                let wait = failure.retry_after.unwrap_or(Duration::from_millis(500)).min(Duration::from_secs(5));
                let left = deadline.saturating_duration_since(Instant::now());
                if failure.retryable && attempt < 2 && left > wait + Duration::from_secs(1) {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(TurnError::Call(failure));
            }
        }
    }
}

/// Counts a turn's calls in the tenant's usage (its day row and the model's), once:
/// `marker` names the turn.
pub async fn count_usage(
    store: &dyn Store,
    tenant_id: &str,
    model: &str,
    marker: &str,
    spent: &TurnSpend,
) -> Result<(), StoreError> {
    if spent.calls == 0 {
        return Ok(());
    }
    let counters = UsageCounters {
        llm_calls: spent.calls,
        input_tokens: spent.usage.input_tokens,
        output_tokens: spent.usage.output_tokens,
        cached_input_tokens: spent.usage.cached_input_tokens,
        model_cost_nano_usd: spent.cost_nano_usd,
        unpriced_calls: spent.unpriced_calls,
        ..UsageCounters::default()
    };
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let row = |group, name: Option<String>| UsageRow {
        tenant_id: tenant_id.to_string(),
        day: day.clone(),
        group,
        name,
        counters,
    };
    let rows = [row(UsageGroup::Day, None), row(UsageGroup::Model, Some(model.to_string()))];
    store.add_usage(&[format!("{tenant_id}#assistant#{marker}")], &rows).await.map(|_| ())
}
