//! POST /v1/workflows/{workflow_id}/forecast: what one execution will cost, before it runs
//! (`crate::forecast`). No model is called and nothing is written.

use super::executions::{api_error, version_choice, version_error};
use super::views::{ForecastView, StartExecutionRequest, VersionRef};
use super::{Call, workflows};
use crate::api::http::{self, Reply};
use crate::error::ApiError;
use crate::executions::start::{check_input, definition_of};
use crate::forecast::{HISTORY_EXECUTIONS, forecast};
use crate::model::ExecutionStatus;
use crate::store::ExecutionFilter;
use serde_json::json;

/// The body is a start's (`input`, `version`): the forecast is of that start.
pub async fn workflow(call: &Call<'_>) -> Result<Reply, ApiError> {
    let request: StartExecutionRequest = http::typed_body(call.req)?;
    let workflow_id = workflows::workflow_id(call)?;
    let workflow = workflows::load(call, &workflow_id).await?;
    let choice = version_choice(request.version.as_ref())?;
    let store = call.app.store()?;
    let (version, definition) =
        definition_of(store, &workflow, choice).await.map_err(|e| version_error(&workflow_id, e))?;
    let input = request.input.unwrap_or_else(|| json!({}));
    check_input(&definition, &input).map_err(api_error)?;
    // The latest succeeded executions: one Query, then one per execution for its steps.
    let filter = ExecutionFilter { status: Some(ExecutionStatus::Succeeded), trigger_id: None };
    let recent = store.list_executions(call.tenant_id, Some(&workflow_id), &filter, None, HISTORY_EXECUTIONS).await?;
    let mut history = Vec::with_capacity(recent.items.len());
    for execution in &recent.items {
        history.push(store.load_steps(call.tenant_id, &execution.execution_id).await?);
    }
    let prices = crate::nodes::prices::PriceTable::with_configured(call.app.config.model_prices.clone());
    Ok(Reply::ok(ForecastView {
        workflow_id,
        version: VersionRef(version),
        forecast: forecast(&definition, &input, &history, &prices),
    }))
}
