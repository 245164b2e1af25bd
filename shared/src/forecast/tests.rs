use super::*;
use crate::model::TokenUsage;
use crate::nodes::prices::configured_price;

fn definition(value: Value) -> WorkflowDefinition {
    serde_json::from_value(value).unwrap()
}

fn chat(id: &str, model: &str, content: &str, max_tokens: u64) -> Value {
    json!({ "id": id, "type": "llm.chat", "config": { "credential": "c", "model": model, "max_tokens": max_tokens,
            "system": "You are terse.", "messages": [ { "role": "user", "content": content } ] } })
}

fn step(node: &str, status: StepStatus, output_tokens: u64, output: Value) -> StepRecord {
    StepRecord {
        node_id: node.into(),
        status,
        output,
        usage: (status == StepStatus::Succeeded).then_some(TokenUsage::new(50, output_tokens)),
        ..StepRecord::default()
    }
}

#[test]
fn prompt_tokens_are_the_tokenizers_count_of_the_rendered_chat() {
    let workflow =
        definition(json!({ "name": "one", "nodes": [chat("ask", "gpt-4o-mini", "Summarize: {{ input.text }}", 200)] }));
    let input = json!({ "text": "NodeAI runs AI workflows durably." });
    let result = forecast(&workflow, &input, &[], &PriceTable::default());
    let node = &result.nodes[0];
    let bpe = tiktoken_rs::o200k_base_singleton();
    let count = |text: &str| bpe.encode_with_special_tokens(text).len() as u64;
    assert_eq!(count("hello world"), 2, "o200k_base, as OpenAI's tokenizer counts it");
    let expected = (3 + count("system") + count("You are terse."))
        + (3 + count("user") + count("Summarize: NodeAI runs AI workflows durably."))
        + 3;
    assert_eq!((node.tokenizer, node.tokenizer_exact, node.input_tokens), ("o200k_base", true, expected));
    assert_eq!((node.input_complete, node.max_output_tokens), (true, 200));
    // gpt-4o-mini: input at $0.15/M; high adds 200 output tokens at $0.60/M; no history: expected = high.
    let cost = node.cost_usd.unwrap();
    assert_eq!(cost.low, crate::model::round_usd(expected as f64 * 0.15 / 1e6));
    assert_eq!(cost.high, crate::model::round_usd((expected as f64 * 0.15 + 200.0 * 0.60) / 1e6));
    assert_eq!(cost.expected, cost.high);
    assert_eq!(result.total_cost_usd.high, crate::model::round_usd(cost.high + result.aws_cost_usd));
    // Another family: an approximation, said so; gpt-4 takes cl100k_base.
    assert!(!tokenizer_for("claude-haiku-4-5").2);
    assert_eq!(tokenizer_for("gpt-4-turbo").0, "cl100k_base");
    assert_eq!(tokenizer_for("gpt-5.4-mini").0, "o200k_base");
}

#[test]
fn with_history_the_median_and_p95_are_the_recorded_executions() {
    let workflow = definition(json!({ "name": "one", "nodes": [chat("ask", "gpt-4o-mini", "hi", 1000)] }));
    let history: Vec<Vec<StepRecord>> =
        [10, 100, 30, 20, 40].iter().map(|&n| vec![step("ask", StepStatus::Succeeded, n, json!({}))]).collect();
    let result = forecast(&workflow, &json!({}), &history, &PriceTable::default());
    let observed = result.nodes[0].observed.clone().unwrap();
    assert_eq!((observed.executions, observed.ran), (5, 5));
    assert_eq!((observed.output_tokens_min, observed.output_tokens_median, observed.output_tokens_p95), (10, 30, 100));
    let input = result.nodes[0].input_tokens;
    let cost = result.nodes[0].cost_usd.unwrap();
    let price = |output: u64| crate::model::round_usd((input as f64 * 0.15 + output as f64 * 0.60) / 1e6);
    assert_eq!((cost.low, cost.expected, cost.high), (price(10), price(30), price(1000)));
    assert_eq!(result.history_executions, 5);
}

#[test]
fn a_branchy_workflow_gives_a_range_and_an_unpriced_model_is_named() {
    let prices = PriceTable::with_configured(vec![configured_price("priced", 1.0, 10.0, None)]);
    let workflow = definition(json!({
        "name": "branches",
        "nodes": [
            { "id": "check", "type": "logic.condition", "config": { "expression": "input.long" } },
            chat("long", "priced", "Write at length", 1000),
            chat("short", "priced", "Be brief", 10),
            chat("after", "priced", "Wrap up: {{ nodes.long.output.text }}", 100),
            chat("odd", "zzz-unlisted", "x", 10)
        ],
        "edges": [
            { "from": "check", "to": "long", "when": "true" },
            { "from": "check", "to": "short", "when": "false" },
            { "from": "long", "to": "after" }
        ]
    }));
    let result = forecast(&workflow, &json!({ "long": true }), &[], &prices);
    let node = |id: &str| result.nodes.iter().find(|n| n.node_id == id).unwrap().clone();
    assert!(node("long").may_be_skipped && node("short").may_be_skipped && node("after").may_be_skipped);
    assert!(!node("odd").may_be_skipped);
    assert_eq!(node("long").cost_usd.unwrap().low, 0.0, "a skippable node is left out of low");
    assert!(result.model_cost_usd.low < result.model_cost_usd.high);
    assert_eq!(result.unpriced_nodes, ["odd"]);
    assert!(node("odd").cost_usd.is_none());
    // `after` uses `long`'s output, which no past run shows.
    assert!(!node("after").input_complete, "{}", node("after").input_basis);
    assert!(node("after").input_basis.contains("long"));
    // With a run that shows it, the prompt is rendered with it and counted whole.
    let text = "word ".repeat(300);
    let history = vec![vec![
        step("check", StepStatus::Succeeded, 0, json!(true)),
        step("long", StepStatus::Succeeded, 400, json!({ "text": text })),
        step("short", StepStatus::Skipped, 0, Value::Null),
        step("after", StepStatus::Succeeded, 20, json!({ "text": "done" })),
    ]];
    let informed = forecast(&workflow, &json!({ "long": true }), &history, &prices);
    let after = informed.nodes.iter().find(|n| n.node_id == "after").unwrap();
    assert!(after.input_complete, "{}", after.input_basis);
    assert!(after.input_tokens > node("after").input_tokens + 250, "the long output counts");
    let short = informed.nodes.iter().find(|n| n.node_id == "short").unwrap();
    assert_eq!(short.cost_usd.unwrap().expected, 0.0, "it ran in none of the past runs");
}
