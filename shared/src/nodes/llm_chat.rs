//! llm.chat: one chat completion through the provider the tenant's credential names: `openai`
//! (any OpenAI-compatible `base_url`: OpenAI, vLLM, Ollama, LM Studio) or `anthropic` (Messages
//! API). Records tokens and `cost_usd` from `prices`.

use super::{NodeRun, NodeType};
use crate::engine::{Billed, NodeCall, NodeFailure, NodeOutput, with_sent_input};
use crate::model::StepErrorCode;
use crate::model::TokenUsage;
use crate::nodes::NodeRuntime;
use crate::nodes::outbound::{ChunkObserver, OutboundBody, OutboundRequest, OutboundResponse, send_observed};
use crate::nodes::sse::SseParser;
use crate::secrets::ProviderCredential;
use crate::template::{off_executor, render_value};
use serde_json::{Value, json};

pub struct LlmChat;

const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic requires max_tokens; used when the node does not set it.
const ANTHROPIC_DEFAULT_MAX_TOKENS: u64 = 1024;

impl NodeType for LlmChat {
    fn name(&self) -> &'static str {
        "llm.chat"
    }
    fn has_side_effects(&self) -> bool {
        true
    }
    fn description(&self) -> &'static str {
        "Calls a chat model (OpenAI-compatible or Anthropic) with templated messages, using a tenant credential."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["credential", "model", "messages"],
            "properties": {
                "credential": { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                                "description": "Name of a tenant credential (PUT /v1/credentials/{name})." },
                "model": { "type": "string", "minLength": 1, "maxLength": 200 },
                "system": { "type": "string", "description": "System prompt (template)." },
                "messages": {
                    "type": "array", "minItems": 1, "maxItems": 100,
                    "items": {
                        "type": "object", "additionalProperties": false, "required": ["role", "content"],
                        "properties": {
                            "role": { "enum": ["system", "user", "assistant"] },
                            "content": { "type": "string", "description": "Template." }
                        }
                    }
                },
                "temperature": { "type": "number", "minimum": 0, "maximum": 2 },
                "max_tokens": { "type": "integer", "minimum": 1, "maximum": 200000 },
                "response_format": { "enum": ["text", "json"], "description": "json: the reply is parsed into the node output." },
                "stream": { "type": "boolean", "description": "Call the provider's streaming API and publish the text as it arrives (step.delta events, at most every 250 ms); the output, usage and cost are the same." }
            }
        })
    }
}

/// The executor: only the worker links it (through `nodes::runner`).
#[async_trait::async_trait]
impl NodeRun for LlmChat {
    async fn execute(&self, call: &NodeCall<'_>, runtime: &NodeRuntime) -> Result<NodeOutput, NodeFailure> {
        let (config, scope) = (call.node.config.clone(), call.scope.clone());
        let config = off_executor(move || render_value(&config, &scope)).await?;
        let credential_name = config["credential"].as_str().unwrap_or_default();
        let resolver = runtime.credentials.as_ref().ok_or_else(|| {
            NodeFailure::permanent(StepErrorCode::CredentialUnavailable, "this worker has no access to credentials")
        })?;
        let credential = resolver.resolve(call.tenant_id, credential_name).await.map_err(|e| {
            let failure = NodeFailure::permanent(e.code(), e.to_string());
            // A Secrets Manager outage passes; a missing or unreadable credential does not.
            NodeFailure { retryable: e.code() == StepErrorCode::CredentialUnavailable, ..failure }
        })?;
        let chat = Chat::from_config(&config);
        let (mut request, rendered_input) = match credential.provider.as_str() {
            "openai" => chat.openai_request(&credential)?,
            "anthropic" => chat.anthropic_request(&credential)?,
            other => {
                return Err(NodeFailure::permanent(
                    StepErrorCode::CredentialInvalid,
                    format!("credential '{credential_name}' names provider '{other}'; use openai or anthropic"),
                ));
            }
        };
        request.timeout = crate::nodes::outbound::request_timeout(call.node.timeout_ms);
        let anthropic = credential.provider == "anthropic";
        // Before the money is spent: the call's worst case against the budgets.
        let prompt_bytes = match &request.body {
            crate::nodes::outbound::OutboundBody::Json(body) => serde_json::to_vec(body).map(|b| b.len()).unwrap_or(0),
            _ => 0,
        } as u64;
        let max_output = chat.max_tokens.or(anthropic.then_some(ANTHROPIC_DEFAULT_MAX_TOKENS));
        let reservation = crate::budgets::reserve_call(
            call.tenant_id,
            call.spend,
            runtime.budgets.as_ref(),
            &runtime.prices,
            &chat.model,
            prompt_bytes,
            max_output,
        )
        .await
        .map_err(|failure| failure.with_input(&rendered_input))?;
        let answered = async {
            let mut assembly = StreamAssembly { anthropic, ..StreamAssembly::default() };
            let mut deltas = DeltaPublisher::new(call);
            let mut observe = |chunk: &[u8]| {
                for text in assembly.feed(chunk) {
                    deltas.push(&text);
                }
            };
            let on_chunk = chat.stream.then_some(&mut observe as &mut ChunkObserver<'_>);
            let sent = send_observed(runtime, call.tenant_id, request, on_chunk).await;
            // What came is published before the step ends, whatever the outcome.
            deltas.flush();
            let response = sent.map_err(|failure| assembly.billed(failure, &runtime.prices, &chat.model))?;
            // Some OpenAI-compatible servers label their stream otherwise: its events tell.
            let streamed = chat.stream && response.status < 400 && (response.is_event_stream() || assembly.seen);
            if streamed && !assembly.ended {
                let failure = NodeFailure::retryable(
                    StepErrorCode::LlmStreamCut,
                    format!("'{}' ended the streamed answer before its end event", response.host),
                );
                return Err(assembly.billed(failure, &runtime.prices, &chat.model));
            }
            let reply: Value = if streamed { assembly.reply() } else { response.json().unwrap_or(Value::Null) };
            let usage = usage_of(anthropic, &reply);
            let model = reply["model"].as_str().map(str::to_string).unwrap_or_else(|| chat.model.clone());
            // The provider's model name (a dated snapshot) first, else the node's: a proxy's
            // or fine-tune's name the table does not know still costs what the node's model does.
            let cost_usd =
                runtime.prices.cost_usd(&model, &usage).or_else(|| runtime.prices.cost_usd(&chat.model, &usage));
            // Usage is counted under the model as the node names it (a provider's dated
            // snapshot name would split one model's counters).
            let bill = || Box::new(Billed { usage, cost_usd, model: chat.model.clone() });
            // Every token a provider reports is counted, whatever the outcome.
            let billed =
                |failure: NodeFailure| NodeFailure { billed: (usage != TokenUsage::default()).then(bill), ..failure };
            let detail = |text: &str| provider_words(text, &credential.api_key);
            if let Some(failure) = status_failure(&response, &reply, &credential.api_key) {
                return Err(billed(failure));
            }
            let read = if anthropic { Answer::from_anthropic(&reply) } else { Answer::from_openai(&reply) };
            let answer = read.map_err(|problem| billed(problem.failure(&response.host, detail)))?;
            let mut output = json!({ "text": answer.text, "model": model, "finish_reason": answer.finish_reason });
            let answer = Answer { usage, ..answer };
            if chat.wants_json {
                let Some(parsed) = parse_json_reply(&answer.text) else {
                    // The call was paid for: its tokens count although the node failed.
                    let message = "the model was asked for JSON and answered something else";
                    let failure = NodeFailure::permanent(StepErrorCode::LlmInvalidJson, message);
                    return Err(NodeFailure { billed: Some(bill()), ..failure });
                };
                output["json"] = parsed;
            }
            Ok(NodeOutput {
                output,
                input: Value::Null,
                usage: Some(answer.usage),
                cost_usd,
                model: Some(chat.model.clone()),
            })
        };
        let result = answered.await;
        let cost = match &result {
            Ok(produced) => produced.cost_usd,
            Err(failure) => failure.billed.as_ref().and_then(|b| b.cost_usd),
        };
        reservation.settle(cost).await;
        with_sent_input(rendered_input, result)
    }
}

/// The rendered chat, whatever the provider.
struct Chat {
    model: String,
    system: Option<String>,
    messages: Vec<(String, String)>,
    temperature: Option<f64>,
    max_tokens: Option<u64>,
    wants_json: bool,
    stream: bool,
}

impl Chat {
    fn from_config(config: &Value) -> Chat {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Chat {
            model: text(&config["model"]),
            system: config.get("system").map(text),
            messages: config["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| (text(&m["role"]), text(&m["content"])))
                .collect(),
            temperature: config.get("temperature").and_then(Value::as_f64),
            max_tokens: config.get("max_tokens").and_then(Value::as_u64),
            wants_json: config.get("response_format").and_then(Value::as_str) == Some("json"),
            stream: config.get("stream").and_then(Value::as_bool) == Some(true),
        }
    }

    /// What the step shows as the node's input: the rendered chat, never the key.
    fn shown(&self, provider: &str) -> Value {
        let messages: Vec<Value> =
            self.messages.iter().map(|(role, content)| json!({ "role": role, "content": content })).collect();
        json!({
            "provider": provider, "model": self.model, "system": self.system, "messages": messages,
            "temperature": self.temperature, "max_tokens": self.max_tokens,
            "response_format": if self.wants_json { "json" } else { "text" },
            "stream": self.stream,
        })
    }

    fn openai_request(&self, credential: &ProviderCredential) -> Result<(OutboundRequest, Value), NodeFailure> {
        let mut messages: Vec<Value> = Vec::new();
        if let Some(system) = &self.system {
            messages.push(json!({ "role": "system", "content": system }));
        }
        messages.extend(self.messages.iter().map(|(role, content)| json!({ "role": role, "content": content })));
        let mut body = json!({ "model": self.model, "messages": messages });
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = self.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if self.wants_json {
            body["response_format"] = json!({ "type": "json_object" });
        }
        if self.stream {
            // The usage comes in a last chunk only when asked for.
            body["stream"] = json!(true);
            body["stream_options"] = json!({ "include_usage": true });
        }
        let (url, headers) = openai_target(credential)?;
        let request = OutboundRequest {
            method: reqwest::Method::POST,
            url,
            headers,
            body: OutboundBody::Json(body),
            timeout: None,
        };
        Ok((request, self.shown("openai")))
    }

    fn anthropic_request(&self, credential: &ProviderCredential) -> Result<(OutboundRequest, Value), NodeFailure> {
        // The Messages API takes system text apart from the turns.
        let system: Vec<&str> = self
            .system
            .iter()
            .map(String::as_str)
            .chain(self.messages.iter().filter(|(role, _)| role == "system").map(|(_, c)| c.as_str()))
            .collect();
        let messages: Vec<Value> = self
            .messages
            .iter()
            .filter(|(role, _)| role != "system")
            .map(|(role, content)| json!({ "role": role, "content": content }))
            .collect();
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens.unwrap_or(ANTHROPIC_DEFAULT_MAX_TOKENS),
        });
        if !system.is_empty() {
            body["system"] = json!(system.join("\n\n"));
        }
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t.min(1.0));
        }
        if self.stream {
            body["stream"] = json!(true);
        }
        let (url, headers) = anthropic_target(credential)?;
        let request = OutboundRequest {
            method: reqwest::Method::POST,
            url,
            headers,
            body: OutboundBody::Json(body),
            timeout: None,
        };
        Ok((request, self.shown("anthropic")))
    }
}

/// Where a request goes and the headers that authenticate it.
pub(crate) type Target = (reqwest::Url, Vec<(String, String)>);

/// OpenAI Chat Completions on the credential's `base_url` (default OpenAI's), with its key as
/// a bearer token.
pub(crate) fn openai_target(credential: &ProviderCredential) -> Result<Target, NodeFailure> {
    let url = endpoint(credential.base_url.as_deref().unwrap_or(OPENAI_BASE_URL), "chat/completions")?;
    Ok((url, vec![("authorization".to_string(), format!("Bearer {}", credential.api_key))]))
}

/// Anthropic Messages on the credential's `base_url` (default Anthropic's), with `x-api-key`
/// and the API version this code speaks.
pub(crate) fn anthropic_target(credential: &ProviderCredential) -> Result<Target, NodeFailure> {
    let url = endpoint(credential.base_url.as_deref().unwrap_or(ANTHROPIC_BASE_URL), "v1/messages")?;
    let headers = vec![
        ("x-api-key".to_string(), credential.api_key.clone()),
        ("anthropic-version".to_string(), ANTHROPIC_VERSION.to_string()),
    ];
    Ok((url, headers))
}

/// The provider's own words, bounded to 300 characters; providers sometimes echo the key they
/// were given, so it is redacted.
pub(crate) fn provider_words(text: &str, api_key: &str) -> String {
    text.replace(api_key, "<redacted>").chars().take(300).collect()
}

/// A reply with an error status as its failure, the provider's `error.message` appended.
pub(crate) fn status_failure(response: &OutboundResponse, reply: &Value, api_key: &str) -> Option<NodeFailure> {
    let mut failure = response.status_failure(StepErrorCode::LlmStatus)?;
    if let Some(said) = reply.pointer("/error/message").and_then(Value::as_str) {
        failure.message = format!("{}: {}", failure.message, provider_words(said, api_key));
    }
    Some(failure)
}

fn endpoint(base_url: &str, path: &str) -> Result<reqwest::Url, NodeFailure> {
    format!("{}/{path}", base_url.trim_end_matches('/')).parse().map_err(|_| {
        NodeFailure::permanent(StepErrorCode::CredentialInvalid, "the credential's base_url is not a valid URL")
    })
}

/// The parts of a provider's reply the node keeps.
struct Answer {
    text: String,
    finish_reason: Option<String>,
    usage: TokenUsage,
}

/// Why a 2xx reply holds no answer.
#[derive(Debug, PartialEq)]
enum ReplyProblem {
    /// The body is an error object (`{"error": {...}}`, Anthropic's `{"type": "error"}`): the
    /// provider's message, and whether its kind is transient (overloaded, rate limit, server).
    ProviderError { message: String, transient: bool },
    /// The model declined (a refusal, a content filter): its words if it gave any.
    Refused(String),
    /// The model asked to call tools; llm.chat offers none and runs none.
    ToolCalls,
    /// No choice, no text, or not a chat reply at all: what was missing.
    Unreadable(&'static str),
}

impl ReplyProblem {
    fn failure(self, host: &str, detail: impl Fn(&str) -> String) -> NodeFailure {
        match self {
            ReplyProblem::ProviderError { message, transient } => {
                let failure = NodeFailure::permanent(
                    StepErrorCode::LlmProviderError,
                    format!("'{host}' answered with an error: {}", detail(&message)),
                );
                NodeFailure { retryable: transient, ..failure }
            }
            ReplyProblem::Refused(said) if said.is_empty() => NodeFailure::permanent(
                StepErrorCode::LlmRefused,
                "the model declined to answer (refusal or content filter)",
            ),
            ReplyProblem::Refused(said) => NodeFailure::permanent(
                StepErrorCode::LlmRefused,
                format!("the model declined to answer: {}", detail(&said)),
            ),
            ReplyProblem::ToolCalls => NodeFailure::permanent(
                StepErrorCode::LlmBadResponse,
                "the model answered with tool calls instead of text; llm.chat offers no tools",
            ),
            ReplyProblem::Unreadable(what) => {
                NodeFailure::permanent(StepErrorCode::LlmBadResponse, format!("'{host}' answered {what}"))
            }
        }
    }
}

/// Error kinds (OpenAI `type`/`code`, Anthropic `error.type`) that pass with time.
fn transient_kind(kind: &str) -> bool {
    ["overloaded", "rate_limit", "server_error", "api_error", "timeout", "unavailable"].iter().any(|k| kind.contains(k))
}

/// A 2xx reply that is an error object, as the failure llm.chat reports for it.
pub(crate) fn provider_error(reply: &Value, host: &str, detail: impl Fn(&str) -> String) -> Option<NodeFailure> {
    error_object(reply).map(|problem| problem.failure(host, detail))
}

fn error_object(reply: &Value) -> Option<ReplyProblem> {
    let error = reply.get("error").filter(|e| e.is_object())?;
    let message = error["message"].as_str().unwrap_or("no message").to_string();
    let kind = [&error["type"], &error["code"]].iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" ");
    Some(ReplyProblem::ProviderError { message, transient: transient_kind(&kind.to_ascii_lowercase()) })
}

/// OpenAI Chat Completions `usage`: `prompt_tokens` (cached ones included, counted in
/// `prompt_tokens_details.cached_tokens`) and `completion_tokens` (reasoning ones included);
/// `total_tokens` fills a missing side.
fn openai_usage(reply: &Value) -> TokenUsage {
    let count = |name: &str| reply.pointer(&format!("/usage/{name}")).and_then(Value::as_u64);
    let (input, output, total) = (count("prompt_tokens"), count("completion_tokens"), count("total_tokens"));
    let input_tokens = input.or_else(|| Some(total?.saturating_sub(output.unwrap_or(0)))).unwrap_or(0);
    TokenUsage {
        input_tokens,
        output_tokens: output.or_else(|| Some(total?.saturating_sub(input.unwrap_or(0)))).unwrap_or(0),
        // Never more than the input it is part of (a server's inconsistent report).
        cached_input_tokens: count("prompt_tokens_details/cached_tokens").unwrap_or(0).min(input_tokens),
        cache_write_input_tokens: 0,
    }
}

/// The usage a provider's reply reports, by its format.
pub(crate) fn usage_of(anthropic: bool, reply: &Value) -> TokenUsage {
    if anthropic { anthropic_usage(reply) } else { openai_usage(reply) }
}

/// Anthropic Messages `usage`: input counts fresh, cache-write and cache-read input tokens
/// (each is billed); output is `output_tokens`.
fn anthropic_usage(reply: &Value) -> TokenUsage {
    let count = |name: &str| reply.pointer(&format!("/usage/{name}")).and_then(Value::as_u64).unwrap_or(0);
    let (cache_write, cache_read) = (count("cache_creation_input_tokens"), count("cache_read_input_tokens"));
    TokenUsage {
        input_tokens: count("input_tokens") + cache_write + cache_read,
        output_tokens: count("output_tokens"),
        cached_input_tokens: cache_read,
        cache_write_input_tokens: cache_write,
    }
}

impl Answer {
    /// OpenAI Chat Completions (platform.openai.com/docs/api-reference/chat/object):
    /// `choices[0].message.content` is a string, null, or a list of parts (`{type: "text", text}`,
    /// `{type: "refusal", refusal}`); `message.refusal` holds a refusal; `message.tool_calls` a
    /// request to call tools; `finish_reason` is stop, length, content_filter, tool_calls.
    fn from_openai(reply: &Value) -> Result<Answer, ReplyProblem> {
        if let Some(problem) = error_object(reply) {
            return Err(problem);
        }
        let choices =
            reply["choices"].as_array().ok_or(ReplyProblem::Unreadable("without a chat reply (no choices)"))?;
        let choice = choices.first().ok_or(ReplyProblem::Unreadable("with no choices"))?;
        let message = &choice["message"];
        let finish_reason = choice["finish_reason"].as_str().map(str::to_string);
        let (mut text, mut refusal) = (String::new(), message["refusal"].as_str().unwrap_or_default().to_string());
        match &message["content"] {
            Value::String(content) => text.push_str(content),
            Value::Array(parts) => {
                for part in parts {
                    match part["type"].as_str() {
                        Some("text") | Some("output_text") => text.push_str(part["text"].as_str().unwrap_or_default()),
                        Some("refusal") => refusal.push_str(part["refusal"].as_str().unwrap_or_default()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if !text.is_empty() {
            return Ok(Answer { text, finish_reason, usage: TokenUsage::default() });
        }
        if !refusal.is_empty() || finish_reason.as_deref() == Some("content_filter") {
            return Err(ReplyProblem::Refused(refusal));
        }
        if message["tool_calls"].as_array().is_some_and(|calls| !calls.is_empty())
            || message["function_call"].is_object()
        {
            return Err(ReplyProblem::ToolCalls);
        }
        Err(ReplyProblem::Unreadable("with an empty message"))
    }

    /// Anthropic Messages (docs.anthropic.com/en/api/messages): `content` is a list of blocks
    /// (`text`, `tool_use`, `thinking`, `redacted_thinking`); `stop_reason` is end_turn,
    /// max_tokens, stop_sequence, tool_use, pause_turn or refusal; an error is
    /// `{type: "error", error: {type, message}}`.
    fn from_anthropic(reply: &Value) -> Result<Answer, ReplyProblem> {
        if let Some(problem) = error_object(reply) {
            return Err(problem);
        }
        let blocks = reply["content"].as_array().ok_or(ReplyProblem::Unreadable("without a message (no content)"))?;
        let text: String = blocks.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect();
        let finish_reason = reply["stop_reason"].as_str().map(str::to_string);
        if finish_reason.as_deref() == Some("refusal") {
            return Err(ReplyProblem::Refused(text));
        }
        if !text.is_empty() {
            return Ok(Answer { text, finish_reason, usage: TokenUsage::default() });
        }
        if blocks.iter().any(|b| b["type"] == "tool_use") {
            return Err(ReplyProblem::ToolCalls);
        }
        Err(ReplyProblem::Unreadable("with no text"))
    }
}

/// How often a streamed answer's text is published (`step.delta`): a 30 s answer is at most
/// about 120 events.
pub const DELTA_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Publishes a streamed answer's text as `step.delta` events, at most every `DELTA_INTERVAL`
/// (the first piece at once); `flush` sends what is left.
struct DeltaPublisher<'a> {
    call: &'a NodeCall<'a>,
    pending: String,
    last: Option<std::time::Instant>,
}

impl<'a> DeltaPublisher<'a> {
    fn new(call: &'a NodeCall<'a>) -> Self {
        DeltaPublisher { call, pending: String::new(), last: None }
    }
    fn push(&mut self, text: &str) {
        self.pending.push_str(text);
        if self.last.is_none_or(|at| at.elapsed() >= DELTA_INTERVAL) {
            self.flush();
        }
    }
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.pending);
        // The attempt tells a client to start over when a retried call streams again.
        let data = json!({ "node_id": self.call.node.id, "attempt": self.call.attempt, "text": text });
        self.call.events.emit(crate::events::kind::STEP_DELTA, data);
        self.last = Some(std::time::Instant::now());
    }
}

/// A streamed answer read as it comes, turned back into the provider's whole reply so the same
/// readers (`Answer`, `*_usage`) apply. Wire formats: OpenAI Chat Completions chunks
/// (`choices[0].delta`, a last chunk with `usage` when `stream_options.include_usage`, then
/// `data: [DONE]`; platform.openai.com/docs/api-reference/chat-streaming) and Anthropic
/// Messages events (`message_start` with input usage, `content_block_delta` text,
/// `message_delta` with the stop reason and output usage, `message_stop`, `error`;
/// docs.anthropic.com/en/api/messages-streaming).
#[derive(Default)]
struct StreamAssembly {
    anthropic: bool,
    parser: SseParser,
    model: Option<String>,
    text: String,
    refusal: String,
    tool_calls: bool,
    finish_reason: Option<String>,
    /// The usage object as the provider reports it (Anthropic's is merged over its events).
    usage: serde_json::Map<String, Value>,
    error: Option<Value>,
    /// The provider's end (`[DONE]`, `message_stop`) or an error event came.
    ended: bool,
    /// Some event with JSON data came.
    seen: bool,
}

impl StreamAssembly {
    /// Reads a chunk; answers the text pieces it held.
    fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut pieces = Vec::new();
        for message in self.parser.feed(chunk) {
            if message.data == "[DONE]" {
                self.ended = true;
                continue;
            }
            let Ok(event) = serde_json::from_str::<Value>(&message.data) else { continue };
            self.seen = true;
            let piece = if self.anthropic { self.anthropic_event(&event) } else { self.openai_chunk(&event) };
            if let Some(piece) = piece.filter(|p| !p.is_empty()) {
                self.text.push_str(&piece);
                pieces.push(piece);
            }
        }
        pieces
    }

    fn openai_chunk(&mut self, chunk: &Value) -> Option<String> {
        if chunk.get("error").is_some_and(Value::is_object) {
            self.error = Some(chunk.clone());
            self.ended = true;
            return None;
        }
        if let Some(model) = chunk["model"].as_str() {
            self.model = Some(model.to_string());
        }
        if let Some(usage) = chunk.get("usage").and_then(Value::as_object) {
            self.usage = usage.clone();
        }
        let choice = chunk["choices"].get(0)?;
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_string());
        }
        let delta = &choice["delta"];
        if let Some(refusal) = delta["refusal"].as_str() {
            self.refusal.push_str(refusal);
        }
        if delta["tool_calls"].as_array().is_some_and(|calls| !calls.is_empty()) {
            self.tool_calls = true;
        }
        delta["content"].as_str().map(str::to_string)
    }

    fn anthropic_event(&mut self, event: &Value) -> Option<String> {
        let merge = |usage: &mut serde_json::Map<String, Value>, from: &Value| {
            for (name, value) in from.as_object().into_iter().flatten() {
                if value.is_number() {
                    usage.insert(name.clone(), value.clone());
                }
            }
        };
        match event["type"].as_str()? {
            "message_start" => {
                self.model = event["message"]["model"].as_str().map(str::to_string);
                merge(&mut self.usage, &event["message"]["usage"]);
                None
            }
            "content_block_start" => {
                let block = &event["content_block"];
                if block["type"] == "tool_use" {
                    self.tool_calls = true;
                }
                (block["type"] == "text").then(|| block["text"].as_str().unwrap_or_default().to_string())
            }
            "content_block_delta" if event["delta"]["type"] == "text_delta" => {
                event["delta"]["text"].as_str().map(str::to_string)
            }
            "message_delta" => {
                if let Some(reason) = event["delta"]["stop_reason"].as_str() {
                    self.finish_reason = Some(reason.to_string());
                }
                // Cumulative counts: the last one wins.
                merge(&mut self.usage, &event["usage"]);
                None
            }
            "message_stop" => {
                self.ended = true;
                None
            }
            "error" => {
                self.error = Some(event.clone());
                self.ended = true;
                None
            }
            _ => None,
        }
    }

    /// The whole reply the provider would have sent unstreamed.
    fn reply(&self) -> Value {
        if let Some(error) = &self.error {
            // With what was billed before it: the failure counts those tokens.
            let mut error = error.clone();
            error["usage"] = Value::Object(self.usage.clone());
            return error;
        }
        let (model, usage) = (json!(self.model), Value::Object(self.usage.clone()));
        if self.anthropic {
            let mut content = vec![json!({ "type": "text", "text": self.text })];
            if self.tool_calls {
                content.push(json!({ "type": "tool_use" }));
            }
            return json!({ "model": model, "content": content, "stop_reason": self.finish_reason, "usage": usage });
        }
        let mut message = json!({ "role": "assistant", "content": self.text });
        if !self.refusal.is_empty() {
            message["refusal"] = json!(self.refusal);
        }
        if self.tool_calls {
            message["tool_calls"] = json!([{}]);
        }
        json!({ "model": model, "choices": [{ "message": message, "finish_reason": self.finish_reason }], "usage": usage })
    }

    /// A failed streamed call still counts the tokens the provider reported before it failed
    /// (Anthropic's input tokens arrive first).
    fn billed(&self, failure: NodeFailure, prices: &crate::nodes::prices::PriceTable, model: &str) -> NodeFailure {
        let usage = usage_of(self.anthropic, &json!({ "usage": Value::Object(self.usage.clone()) }));
        if usage == TokenUsage::default() || failure.billed.is_some() {
            return failure;
        }
        let priced = self.model.as_deref().unwrap_or(model);
        let cost_usd = prices.cost_usd(priced, &usage).or_else(|| prices.cost_usd(model, &usage));
        NodeFailure { billed: Some(Box::new(Billed { usage, cost_usd, model: model.to_string() })), ..failure }
    }
}

/// Models wrap JSON in Markdown fences more often than not; accept that.
pub(crate) fn parse_json_reply(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.trim_end().strip_suffix("```"))
        .unwrap_or(trimmed);
    serde_json::from_str(unfenced.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeSpec;
    use crate::secrets::{CredentialResolver, secret_name};
    use crate::store::SecretStore;
    use crate::store::memory::MemoryStore;
    use std::sync::Arc;
    use std::time::Duration;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    async fn runtime_with(provider: &str, base_url: &str) -> NodeRuntime {
        let store = Arc::new(MemoryStore::new());
        let credential = ProviderCredential {
            provider: provider.into(),
            api_key: "sk-test-secret".into(),
            base_url: Some(base_url.into()),
        };
        store
            .put_secret(&secret_name("test", "t1", "main"), &serde_json::to_string(&credential).unwrap())
            .await
            .unwrap();
        NodeRuntime {
            allowed_private_hosts: vec!["127.0.0.1".into()],
            credentials: Some(Arc::new(CredentialResolver::new(store, "test", Duration::from_secs(60)))),
            ..Default::default()
        }
    }

    fn node(extra: Value) -> NodeSpec {
        let mut config = json!({
            "credential": "main", "model": "gpt-4o-mini", "system": "You are terse.",
            "messages": [ { "role": "user", "content": "Summarize: {{ input.text }}" } ],
        });
        config.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        serde_json::from_value(json!({ "id": "ask", "type": "llm.chat", "config": config })).unwrap()
    }

    async fn run(node: &NodeSpec, runtime: &NodeRuntime) -> Result<NodeOutput, NodeFailure> {
        let scope = json!({ "input": { "text": "a long story" } });
        LlmChat
            .execute(
                &NodeCall {
                    tenant_id: "t1",
                    node,
                    scope: &scope,
                    events: &crate::events::EVENTS_OFF,
                    attempt: 1,
                    spend: &crate::engine::NO_RUN_LIMIT,
                },
                runtime,
            )
            .await
    }

    #[tokio::test]
    async fn openai_compatible_chat_records_tokens_and_cost() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", "Bearer sk-test-secret"))
            .and(body_partial_json(json!({
                "model": "gpt-4o-mini", "temperature": 0.2,
                "messages": [ { "role": "system", "content": "You are terse." },
                              { "role": "user", "content": "Summarize: a long story" } ] })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
                "choices": [ { "index": 0, "message": { "role": "assistant", "content": "A story." }, "finish_reason": "stop" } ],
                "usage": { "prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                           "prompt_tokens_details": { "cached_tokens": 600 } } })))
            .expect(1)
            .mount(&server)
            .await;
        let runtime = runtime_with("openai", &format!("{}/v1", server.uri())).await;
        let produced = run(&node(json!({ "temperature": 0.2 })), &runtime).await.unwrap();
        assert_eq!(produced.output["text"], "A story.");
        assert_eq!(produced.output["finish_reason"], "stop");
        assert_eq!(produced.usage, Some(TokenUsage { cached_input_tokens: 600, ..TokenUsage::new(1000, 500) }));
        assert_eq!(
            produced.cost_usd,
            Some(0.000405),
            "gpt-4o-mini: 400 x 0.15/M + 600 cached x 0.075/M + 500 x 0.60/M"
        );
        assert_eq!(produced.model.as_deref(), Some("gpt-4o-mini"), "counted under the model the node names");
        assert_eq!(produced.input["messages"][0]["content"], "Summarize: a long story");
        assert!(!produced.input.to_string().contains("sk-test-secret"), "the key never reaches the step");
    }

    #[tokio::test]
    async fn anthropic_messages_api_with_json_output_and_unknown_price() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .and(header("x-api-key", "sk-test-secret"))
            .and(header("anthropic-version", "2023-06-01"))
            .and(body_partial_json(json!({ "model": "claude-next", "system": "You are terse.", "max_tokens": 1024,
                                           "messages": [ { "role": "user", "content": "Summarize: a long story" } ] })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-next",
                "content": [ { "type": "text", "text": "```json\n{\"summary\": \"short\"}\n```" } ],
                "stop_reason": "end_turn", "usage": { "input_tokens": 20, "output_tokens": 7 } })))
            .expect(2)
            .mount(&server)
            .await;
        let runtime = runtime_with("anthropic", &server.uri()).await;
        let produced =
            run(&node(json!({ "model": "claude-next", "response_format": "json" })), &runtime).await.unwrap();
        assert_eq!(produced.output["json"], json!({ "summary": "short" }));
        assert_eq!(produced.usage, Some(TokenUsage::new(20, 7)));
        assert_eq!(produced.cost_usd, None, "an unknown model is unpriced, not free");
        // Priced once the deployment lists it (MODEL_PRICES): 20 in at $1/M + 7 out at $5/M.
        let prices = super::super::prices::PriceTable::with_configured(vec![super::super::prices::configured_price(
            "claude-next",
            1.0,
            5.0,
            None,
        )]);
        let priced = NodeRuntime { prices: Arc::new(prices), ..runtime };
        let produced = run(&node(json!({ "model": "claude-next", "response_format": "json" })), &priced).await.unwrap();
        assert_eq!(produced.cost_usd, Some(0.000055));
    }

    #[tokio::test]
    async fn provider_errors_are_classified_and_bad_json_is_refused() {
        let server = MockServer::start().await;
        Mock::given(path("/v1/chat/completions"))
            .and(body_partial_json(json!({ "model": "busy" })))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "2")
                    .set_body_json(json!({ "error": { "message": "Rate limit reached", "type": "requests" } })),
            )
            .mount(&server)
            .await;
        Mock::given(path("/v1/chat/completions"))
            .and(body_partial_json(json!({ "model": "denied" })))
            .respond_with(
                ResponseTemplate::new(401).set_body_json(json!({ "error": { "message": "Incorrect API key" } })),
            )
            .mount(&server)
            .await;
        Mock::given(path("/v1/chat/completions"))
            .and(body_partial_json(json!({ "model": "gpt-4o-mini" })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "model": "gpt-4o-mini", "choices": [ { "message": { "content": "not json" }, "finish_reason": "stop" } ],
                "usage": { "prompt_tokens": 1000, "completion_tokens": 100 } })))
            .mount(&server)
            .await;
        let runtime = runtime_with("openai", &format!("{}/v1", server.uri())).await;
        let busy = run(&node(json!({ "model": "busy" })), &runtime).await.unwrap_err();
        assert_eq!(
            (busy.code.as_str(), busy.retryable, busy.retry_after),
            ("LLM_429", true, Some(Duration::from_secs(2)))
        );
        assert!(busy.message.contains("Rate limit reached"), "{}", busy.message);
        let denied = run(&node(json!({ "model": "denied" })), &runtime).await.unwrap_err();
        assert_eq!((denied.code.as_str(), denied.retryable), ("LLM_401", false));
        assert!(!denied.message.contains("sk-test-secret"), "an echoed key is redacted: {}", denied.message);
        assert_eq!(denied.input["model"], "denied", "a failed call keeps the rendered chat it sent");
        assert!(!denied.input.to_string().contains("sk-test-secret"));
        let prose =
            run(&node(json!({ "model": "gpt-4o-mini", "response_format": "json" })), &runtime).await.unwrap_err();
        assert_eq!(prose.code, "LLM_INVALID_JSON");
        // A reply that does not parse was still billed: 1000 in at $0.15/M + 100 out at $0.60/M.
        let billed = Billed { usage: TokenUsage::new(1000, 100), cost_usd: Some(0.00021), model: "gpt-4o-mini".into() };
        assert_eq!(prose.billed.as_deref(), Some(&billed));
    }

    #[tokio::test]
    async fn credentials_are_checked_and_base_urls_pass_the_ssrf_guard() {
        let missing =
            NodeSpec { config: json!({ "credential": "nope", "model": "m", "messages": [] }), ..node(json!({})) };
        let runtime = runtime_with("openai", "http://169.254.169.254/v1").await;
        assert_eq!(run(&missing, &runtime).await.unwrap_err().code, "CREDENTIAL_NOT_FOUND");
        assert_eq!(run(&node(json!({})), &runtime).await.unwrap_err().code, "SSRF_BLOCKED");
        let odd = runtime_with("cohere", "https://api.example.com").await;
        assert_eq!(run(&node(json!({})), &odd).await.unwrap_err().code, "CREDENTIAL_INVALID");
    }

    /// One reply per shape the provider references document, each from a loopback stub: what
    /// the node makes of it (text, or the failure code) and the tokens it counts either way.
    #[tokio::test]
    async fn every_documented_reply_shape_is_read_or_fails_with_a_clear_code() {
        let usage = json!({ "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10 });
        let choice = |message: Value, finish: &str| {
            json!({ "model": "gpt-4o-mini", "usage": usage,
            "choices": [ { "index": 0, "message": message, "finish_reason": finish } ] })
        };
        let openai: Vec<(&str, Value, Result<&str, &str>, u64)> = vec![
            ("string content", choice(json!({ "role": "assistant", "content": "hi" }), "stop"), Ok("hi"), 10),
            (
                "a list of parts",
                choice(
                    json!({ "role": "assistant", "content": [
                { "type": "text", "text": "a" }, { "type": "text", "text": "b" } ] }),
                    "stop",
                ),
                Ok("ab"),
                10,
            ),
            ("cut at max tokens", choice(json!({ "content": "partial" }), "length"), Ok("partial"), 10),
            (
                "a refusal",
                choice(json!({ "content": null, "refusal": "I can't help with that." }), "stop"),
                Err("LLM_REFUSED"),
                10,
            ),
            (
                "a refusal part",
                choice(json!({ "content": [ { "type": "refusal", "refusal": "No." } ] }), "stop"),
                Err("LLM_REFUSED"),
                10,
            ),
            ("content filter", choice(json!({ "content": null }), "content_filter"), Err("LLM_REFUSED"), 10),
            (
                "tool calls",
                choice(
                    json!({ "content": null, "tool_calls": [ { "id": "c1", "type": "function",
                "function": { "name": "f", "arguments": "{}" } } ] }),
                    "tool_calls",
                ),
                Err("LLM_BAD_RESPONSE"),
                10,
            ),
            ("null content", choice(json!({ "content": null }), "stop"), Err("LLM_BAD_RESPONSE"), 10),
            ("empty string", choice(json!({ "content": "" }), "stop"), Err("LLM_BAD_RESPONSE"), 10),
            (
                "a total below its parts",
                json!({ "usage": { "completion_tokens": 10, "total_tokens": 5 },
                        "choices": [ { "message": { "content": "ok" }, "finish_reason": "stop" } ] }),
                Ok("ok"),
                10,
            ),
            (
                "no choices",
                json!({ "choices": [], "usage": { "prompt_tokens": 7, "completion_tokens": 0 } }),
                Err("LLM_BAD_RESPONSE"),
                7,
            ),
            (
                "an error object",
                json!({ "error": { "message": "overloaded", "type": "server_error" } }),
                Err("LLM_PROVIDER_ERROR"),
                0,
            ),
            ("not a chat reply", json!({ "hello": "world" }), Err("LLM_BAD_RESPONSE"), 0),
        ];
        let blocks = |content: Value, stop: &str| {
            json!({ "type": "message", "model": "claude-x", "content": content,
            "stop_reason": stop, "usage": { "input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 3 } })
        };
        let anthropic: Vec<(&str, Value, Result<&str, &str>, u64)> = vec![
            (
                "text blocks",
                blocks(
                    json!([ { "type": "thinking", "thinking": "hmm" }, { "type": "text", "text": "ok" } ]),
                    "end_turn",
                ),
                Ok("ok"),
                10,
            ),
            ("max tokens", blocks(json!([ { "type": "text", "text": "par" } ]), "max_tokens"), Ok("par"), 10),
            ("a refusal", blocks(json!([]), "refusal"), Err("LLM_REFUSED"), 10),
            (
                "tool use",
                blocks(json!([ { "type": "tool_use", "id": "t", "name": "f", "input": {} } ]), "tool_use"),
                Err("LLM_BAD_RESPONSE"),
                10,
            ),
            ("no text", blocks(json!([]), "end_turn"), Err("LLM_BAD_RESPONSE"), 10),
            (
                "an error event",
                json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }),
                Err("LLM_PROVIDER_ERROR"),
                0,
            ),
        ];
        for (provider, cases) in [("openai", openai), ("anthropic", anthropic)] {
            for (shape, body, expected, tokens) in cases {
                let server = MockServer::start().await;
                Mock::given(method("POST"))
                    .respond_with(ResponseTemplate::new(200).set_body_json(&body))
                    .mount(&server)
                    .await;
                let runtime = runtime_with(provider, &format!("{}/v1", server.uri())).await;
                let runtime =
                    if provider == "anthropic" { runtime_with(provider, &server.uri()).await } else { runtime };
                let result = run(&node(json!({})), &runtime).await;
                match (expected, result) {
                    (Ok(text), Ok(produced)) => {
                        assert_eq!(produced.output["text"], text, "{provider} {shape}");
                        let counted = produced.usage.map(|u| u.input_tokens + u.output_tokens);
                        assert_eq!(counted, Some(tokens), "{provider} {shape}");
                    }
                    (Err(code), Err(failure)) => {
                        assert_eq!(failure.code.to_string(), code, "{provider} {shape}: {}", failure.message);
                        let counted = failure.billed.map(|b| b.usage.input_tokens + b.usage.output_tokens).unwrap_or(0);
                        assert_eq!(counted, tokens, "{provider} {shape}: tokens count whatever the outcome");
                    }
                    (expected, got) => panic!("{provider} {shape}: expected {expected:?}, got {got:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn a_provider_error_in_a_200_keeps_its_message_and_transient_kinds_are_retried() {
        let server = MockServer::start().await;
        let body = json!({ "error": { "message": "overloaded, try sk-test-secret later", "type": "server_error", "code": null } });
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_body_json(body)).mount(&server).await;
        let runtime = runtime_with("openai", &format!("{}/v1", server.uri())).await;
        let failure = run(&node(json!({})), &runtime).await.unwrap_err();
        assert_eq!((failure.code.to_string().as_str(), failure.retryable), ("LLM_PROVIDER_ERROR", true));
        assert!(failure.message.contains("overloaded"), "{}", failure.message);
        assert!(!failure.message.contains("sk-test-secret"), "{}", failure.message);
        let server = MockServer::start().await;
        let body = json!({ "error": { "message": "model not found", "type": "invalid_request_error" } });
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_body_json(body)).mount(&server).await;
        let runtime = runtime_with("openai", &format!("{}/v1", server.uri())).await;
        let failure = run(&node(json!({})), &runtime).await.unwrap_err();
        assert_eq!((failure.code.to_string().as_str(), failure.retryable), ("LLM_PROVIDER_ERROR", false));
    }

    /// OpenAI Chat Completions streaming chunks for `words`, with the usage chunk and [DONE].
    pub(crate) fn openai_stream(words: &[&str], usage: (u64, u64), done: bool) -> String {
        let mut body = String::new();
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                        "choices": [ { "index": 0, "delta": delta, "finish_reason": finish } ], "usage": null })
            )
        };
        body.push_str(&chunk(json!({ "role": "assistant", "content": "" }), Value::Null));
        for word in words {
            body.push_str(&chunk(json!({ "content": word }), Value::Null));
        }
        body.push_str(&chunk(json!({}), json!("stop")));
        if done {
            let usage =
                json!({ "prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0 + usage.1 });
            body.push_str(&format!(
                "data: {}\n\ndata: [DONE]\n\n",
                json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [], "usage": usage })
            ));
        }
        body
    }

    /// Anthropic Messages stream events for `words`.
    pub(crate) fn anthropic_stream(words: &[&str], usage: (u64, u64)) -> String {
        let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut body = event(
            "message_start",
            json!({ "type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-next",
            "stop_reason": null, "usage": { "input_tokens": usage.0, "output_tokens": 1 } } }),
        );
        body.push_str(&event(
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
        ));
        body.push_str(&event("ping", json!({ "type": "ping" })));
        for word in words {
            body.push_str(&event(
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": word } }),
            ));
        }
        body.push_str(&event("content_block_stop", json!({ "type": "content_block_stop", "index": 0 })));
        body.push_str(&event("message_delta", json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn", "stop_sequence": null }, "usage": { "output_tokens": usage.1 } })));
        body.push_str(&event("message_stop", json!({ "type": "message_stop" })));
        body
    }

    /// Runs the node with a recorded event log; answers its result and the events it emitted.
    async fn run_recorded(node: &NodeSpec, runtime: &NodeRuntime) -> (Result<NodeOutput, NodeFailure>, Vec<Value>) {
        use crate::events::{EventLog, EventStore};
        let store = MemoryStore::new();
        let (log, writer) = EventLog::open(&store, "t1", "e1");
        let scope = json!({ "input": { "text": "a long story" } });
        let run = async move {
            let result = LlmChat
                .execute(
                    &NodeCall {
                        tenant_id: "t1",
                        node,
                        scope: &scope,
                        events: &log,
                        attempt: 1,
                        spend: &crate::engine::NO_RUN_LIMIT,
                    },
                    runtime,
                )
                .await;
            drop(log);
            result
        };
        let (result, ()) = tokio::join!(run, writer);
        let batches = store.read_events("t1", "e1", 1, 100).await.unwrap();
        let events =
            batches.into_iter().flat_map(|b| b.events).map(|e| json!({ "type": e.kind, "data": e.data })).collect();
        (result, events)
    }

    fn delta_text(events: &[Value]) -> String {
        events
            .iter()
            .filter(|e| e["type"] == "step.delta")
            .map(|e| e["data"]["text"].as_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_streamed_answer_publishes_deltas_and_ends_with_the_same_output_usage_and_cost() {
        let words = ["Once", " upon", " a", " time", ", é", " the end."];
        let server = MockServer::start().await;
        Mock::given(path("/v1/chat/completions"))
            .and(body_partial_json(json!({ "stream": true, "stream_options": { "include_usage": true } })))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "text/event-stream")
                    .set_body_string(openai_stream(&words, (1000, 500), true)),
            )
            .mount(&server)
            .await;
        Mock::given(path("/v1/messages"))
            .and(body_partial_json(json!({ "stream": true })))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "text/event-stream")
                    .set_body_string(anthropic_stream(&words, (20, 7))),
            )
            .mount(&server)
            .await;
        let whole = words.concat();
        let openai = runtime_with("openai", &format!("{}/v1", server.uri())).await;
        let (result, events) = run_recorded(&node(json!({ "stream": true })), &openai).await;
        let produced = result.unwrap();
        assert_eq!(produced.output["text"], whole.as_str());
        assert_eq!(produced.output["finish_reason"], "stop");
        assert_eq!(produced.usage, Some(TokenUsage::new(1000, 500)));
        assert_eq!(produced.cost_usd, Some(0.00045), "priced as the unstreamed call");
        assert_eq!(delta_text(&events), whole, "the deltas add up to the answer");
        assert!(events.iter().all(|e| e["data"]["node_id"] == "ask"), "{events:?}");
        assert_eq!(produced.input["stream"], true);

        let anthropic = runtime_with("anthropic", &server.uri()).await;
        let (result, events) = run_recorded(&node(json!({ "model": "claude-next", "stream": true })), &anthropic).await;
        let produced = result.unwrap();
        assert_eq!(produced.output["text"], whole.as_str());
        assert_eq!(produced.output["finish_reason"], "end_turn");
        assert_eq!(produced.usage, Some(TokenUsage::new(20, 7)));
        assert_eq!(delta_text(&events), whole);
    }

    #[tokio::test]
    async fn a_stream_cut_before_its_end_is_a_retryable_failure_that_counts_what_was_billed() {
        let server = MockServer::start().await;
        let cut = anthropic_stream(&["half"], (20, 7));
        let cut = cut[..cut.find("event: message_delta").unwrap()].to_string();
        Mock::given(path("/v1/messages"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(cut, "text/event-stream"))
            .mount(&server)
            .await;
        let runtime = runtime_with("anthropic", &server.uri()).await;
        let (result, events) = run_recorded(&node(json!({ "model": "claude-next", "stream": true })), &runtime).await;
        let failure = result.unwrap_err();
        assert_eq!((failure.code.as_str(), failure.retryable), ("LLM_STREAM_CUT", true));
        assert_eq!(failure.billed.unwrap().usage.input_tokens, 20, "the input tokens were billed at the start");
        assert_eq!(delta_text(&events), "half", "what came was published");
        // An error event mid-stream is the provider's error, transient when overloaded.
        let server = MockServer::start().await;
        let mut errored = anthropic_stream(&["half"], (20, 7));
        errored = errored[..errored.find("event: message_delta").unwrap()].to_string();
        errored.push_str("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        Mock::given(path("/v1/messages"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(errored, "text/event-stream"))
            .mount(&server)
            .await;
        let runtime = runtime_with("anthropic", &server.uri()).await;
        let (result, _) = run_recorded(&node(json!({ "model": "claude-next", "stream": true })), &runtime).await;
        let failure = result.unwrap_err();
        assert_eq!((failure.code.as_str(), failure.retryable), ("LLM_PROVIDER_ERROR", true), "{}", failure.message);
        assert_eq!(failure.billed.unwrap().usage.input_tokens, 20, "an error event keeps what was billed before it");
    }
}
