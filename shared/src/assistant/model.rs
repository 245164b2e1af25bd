//! One call of the session's model, through the same credential, SSRF guard, circuit breaker
//! and pooled clients as `llm.chat` (`nodes::outbound::send`), asking for the
//! `propose_workflow` tool:
//! - OpenAI Chat Completions (platform.openai.com/docs/guides/function-calling): `tools` with
//!   one function and `tool_choice` naming it; the reply's
//!   `choices[0].message.tool_calls[0].function.arguments` is a JSON string.
//! - Anthropic Messages (docs.anthropic.com/en/docs/build-with-claude/tool-use): `tools` with
//!   `input_schema` and `tool_choice: {"type": "tool"}`; the reply's `content` holds a `tool_use`
//!   block whose `input` is the object.
//!
//! A server that ignores tools (some OpenAI-compatible ones) may answer the JSON object as text:
//! that is accepted too (`nodes::llm_chat::parse_json_reply`).

use super::prompt::{PROPOSE_TOOL, propose_tool_schema};
use crate::engine::NodeFailure;
use crate::model::{StepErrorCode, TokenUsage};
use crate::nodes::NodeRuntime;
use crate::nodes::llm_chat::{
    anthropic_target, openai_target, parse_json_reply, provider_error, provider_words, status_failure, usage_of,
};
use crate::nodes::outbound::{OutboundBody, OutboundRequest, send};
use crate::secrets::ProviderCredential;
use serde_json::{Value, json};
use std::time::Duration;

/// Output tokens one assistant call may use: a definition of a few dozen nodes fits.
pub const MAX_OUTPUT_TOKENS: u64 = 8192;

/// A chat turn sent to the model: `user` or `assistant`.
#[derive(Debug, Clone)]
pub struct ChatTurn {
    pub role: &'static str,
    pub content: String,
}

/// What one call answered.
#[derive(Debug, Clone, Default)]
pub struct ModelAnswer {
    /// The assistant's words (the tool input's `message`, else the reply's text).
    pub message: String,
    /// The proposed definition, when the reply held one (an object).
    pub definition: Option<Value>,
    /// What the model sent, as text, to show it back in a repair round.
    pub raw: String,
    pub usage: TokenUsage,
}

/// The request one call sends: the body and its size in bytes (the budget's bound on the
/// prompt's tokens).
pub fn request(
    credential: &ProviderCredential,
    model: &str,
    system: &str,
    turns: &[ChatTurn],
) -> Result<(OutboundRequest, u64), NodeFailure> {
    let messages: Vec<Value> = turns.iter().map(|t| json!({ "role": t.role, "content": t.content })).collect();
    let description = "Propose the complete workflow definition and explain it to the user.";
    let (url, headers, body) = match credential.provider.as_str() {
        "openai" => {
            let mut all = vec![json!({ "role": "system", "content": system })];
            all.extend(messages);
            let body = json!({
                "model": model,
                "messages": all,
                "max_tokens": MAX_OUTPUT_TOKENS,
                "tools": [{ "type": "function", "function": {
                    "name": PROPOSE_TOOL, "description": description, "parameters": propose_tool_schema() } }],
                "tool_choice": { "type": "function", "function": { "name": PROPOSE_TOOL } },
            });
            let (url, headers) = openai_target(credential)?;
            (url, headers, body)
        }
        "anthropic" => {
            let body = json!({
                "model": model,
                "system": system,
                "messages": messages,
                "max_tokens": MAX_OUTPUT_TOKENS,
                "tools": [{ "name": PROPOSE_TOOL, "description": description, "input_schema": propose_tool_schema() }],
                "tool_choice": { "type": "tool", "name": PROPOSE_TOOL },
            });
            let (url, headers) = anthropic_target(credential)?;
            (url, headers, body)
        }
        other => {
            return Err(NodeFailure::permanent(
                StepErrorCode::CredentialInvalid,
                format!("the credential names provider '{other}'; use openai or anthropic"),
            ));
        }
    };
    let size = serde_json::to_vec(&body).map(|b| b.len() as u64).unwrap_or(0);
    let request =
        OutboundRequest { method: reqwest::Method::POST, url, headers, body: OutboundBody::Json(body), timeout: None };
    Ok((request, size))
}

/// Sends one call (at most `timeout`) and reads its answer. Tokens a failed reply reports are
/// kept in the failure's `billed`.
pub async fn call(
    runtime: &NodeRuntime,
    tenant_id: &str,
    credential: &ProviderCredential,
    mut request: OutboundRequest,
    timeout: Duration,
) -> Result<ModelAnswer, NodeFailure> {
    request.timeout = Some(timeout);
    let anthropic = credential.provider == "anthropic";
    let response = send(runtime, tenant_id, request).await?;
    let reply = response.json().unwrap_or(Value::Null);
    let usage = usage_of(anthropic, &reply);
    let billed = |failure: NodeFailure| NodeFailure {
        billed: (usage != TokenUsage::default())
            .then(|| Box::new(crate::engine::Billed { usage, cost_usd: None, model: String::new() })),
        ..failure
    };
    if let Some(failure) = status_failure(&response, &reply, &credential.api_key) {
        return Err(billed(failure));
    }
    if let Some(failure) = provider_error(&reply, &response.host, |text| provider_words(text, &credential.api_key)) {
        return Err(billed(failure));
    }
    let (text, tool_input) = if anthropic { anthropic_parts(&reply) } else { openai_parts(&reply) };
    let object = tool_input.or_else(|| parse_json_reply(&text)).filter(Value::is_object);
    let raw = match &object {
        Some(object) => object.to_string(),
        None => text.clone(),
    };
    let (message, definition) = match object {
        Some(mut object) => {
            let message = object["message"].as_str().map(str::to_string).unwrap_or_else(|| text.clone());
            // The tool's shape, or a bare definition.
            let definition = match object.get_mut("definition").map(Value::take) {
                Some(definition) => Some(definition),
                None if object.get("nodes").is_some() => Some(object),
                None => None,
            };
            (message, definition.filter(Value::is_object))
        }
        None => (text, None),
    };
    Ok(ModelAnswer { message, definition, raw, usage })
}

/// OpenAI: the message's text and the first tool call's arguments (a JSON string).
fn openai_parts(reply: &Value) -> (String, Option<Value>) {
    let message = &reply["choices"][0]["message"];
    let text = match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""),
        _ => String::new(),
    };
    let arguments = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|call| call["function"]["name"] == PROPOSE_TOOL)
        .and_then(|call| call["function"]["arguments"].as_str())
        .and_then(|arguments| serde_json::from_str(arguments).ok());
    (text, arguments)
}

/// Anthropic: the text blocks and the `propose_workflow` tool_use block's input.
fn anthropic_parts(reply: &Value) -> (String, Option<Value>) {
    let blocks = reply["content"].as_array().cloned().unwrap_or_default();
    let text = blocks.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect::<Vec<_>>();
    let input =
        blocks.iter().find(|b| b["type"] == "tool_use" && b["name"] == PROPOSE_TOOL).map(|b| b["input"].clone());
    (text.join(""), input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_text_json_and_bare_definitions_are_read() {
        let openai = json!({ "choices": [{ "message": { "content": null, "tool_calls": [{ "type": "function",
            "function": { "name": PROPOSE_TOOL, "arguments": "{\"message\":\"hi\",\"definition\":{\"name\":\"x\"}}" } }] } }] });
        assert_eq!(openai_parts(&openai).1, Some(json!({ "message": "hi", "definition": { "name": "x" } })));
        let anthropic = json!({ "content": [{ "type": "text", "text": "Here." },
            { "type": "tool_use", "id": "t", "name": PROPOSE_TOOL, "input": { "message": "m", "definition": {} } }] });
        let (text, input) = anthropic_parts(&anthropic);
        assert_eq!((text.as_str(), input), ("Here.", Some(json!({ "message": "m", "definition": {} }))));
        let fenced =
            json!({ "choices": [{ "message": { "content": "```json\n{\"name\":\"y\",\"nodes\":[]}\n```" } }] });
        let (text, input) = openai_parts(&fenced);
        assert_eq!((input, parse_json_reply(&text)), (None, Some(json!({ "name": "y", "nodes": [] }))));
    }
}
