//! Definition validation: every rule, and every problem reported at once.

use nodeai::validation::{MAX_DEFINITION_BYTES, Problem, codes, validate_definition};
use serde_json::{Value, json};

fn problems(document: Value) -> Vec<Problem> {
    let size = document.to_string().len();
    validate_definition(&document, size).expect_err("expected problems")
}

fn has(problems: &[Problem], code: &str, path: &str) -> bool {
    problems.iter().any(|p| p.code == code && p.path == path)
}

fn node(id: &str, kind: &str, config: Value) -> Value {
    json!({ "id": id, "type": kind, "config": config })
}

fn output(id: &str, value: &str) -> Value {
    node(id, "flow.output", json!({ "value": value }))
}

fn template(id: &str, text: &str) -> Value {
    node(id, "text.template", json!({ "template": text }))
}

#[test]
fn the_readme_example_is_valid() {
    let document: Value = serde_json::from_str(include_str!("../../events/fixtures/summarize-workflow.json")).unwrap();
    let size = document.to_string().len();
    let definition = validate_definition(&document, size).expect("valid");
    assert_eq!(definition.nodes.len(), 3);
    assert_eq!(definition.edges.len(), 2);
}

#[test]
fn structural_problems_carry_json_pointer_paths() {
    let found = problems(json!({
        "name": 42,
        "nodes": [ { "id": "a", "type": "flow.output", "config": { "value": 1 }, "colour": "red" } ],
        "edges": "none",
        "extra": true
    }));
    assert!(has(&found, codes::SCHEMA_VIOLATION, "/name"), "{found:?}");
    assert!(has(&found, codes::SCHEMA_VIOLATION, "/edges"), "{found:?}");
    assert!(has(&found, codes::SCHEMA_VIOLATION, "/nodes/0"), "{found:?}");
    assert!(has(&found, codes::SCHEMA_VIOLATION, ""), "unknown top-level field: {found:?}");
}

#[test]
fn missing_required_fields_are_reported() {
    let found = problems(json!({ "description": "no name, no nodes" }));
    assert_eq!(found.iter().filter(|p| p.code == codes::SCHEMA_VIOLATION).count(), 2, "{found:?}");
}

#[test]
fn limits_have_their_own_codes() {
    let many_nodes: Vec<Value> = (0..201).map(|i| template(&format!("n{i}"), "x")).collect();
    let found = problems(json!({ "name": "big", "nodes": many_nodes }));
    assert!(has(&found, codes::TOO_MANY_NODES, "/nodes"));

    let edges: Vec<Value> = (0..1001).map(|_| json!({ "from": "a", "to": "b" })).collect();
    let found = problems(json!({ "name": "e", "nodes": [template("a", "x"), output("b", "y")], "edges": edges }));
    assert!(has(&found, codes::TOO_MANY_EDGES, "/edges"));

    let tags: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let found = problems(json!({ "name": "", "tags": tags, "nodes": [output("a", "x")] }));
    assert!(has(&found, codes::TOO_MANY_TAGS, "/tags"));
    assert!(has(&found, codes::INVALID_NAME, "/name"));

    let found = problems(json!({ "name": "x".repeat(201), "tags": ["ok", "not ok"], "nodes": [output("Bad", "x")] }));
    assert!(has(&found, codes::INVALID_NAME, "/name"));
    assert!(has(&found, codes::INVALID_TAG, "/tags/1"));
    assert!(has(&found, codes::INVALID_NODE_ID, "/nodes/0/id"));

    let found = problems(json!({ "name": "empty", "nodes": [] }));
    assert!(has(&found, codes::EMPTY_WORKFLOW, "/nodes"));
}

#[test]
fn oversized_definitions_are_refused_before_parsing_further() {
    let document = json!({ "name": "big", "nodes": [output("a", "x")] });
    let found = validate_definition(&document, MAX_DEFINITION_BYTES + 1).unwrap_err();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, codes::DEFINITION_TOO_LARGE);
}

#[test]
fn graph_problems_are_all_reported_at_once() {
    let found = problems(json!({
        "name": "broken",
        "nodes": [
            template("a", "x"),
            template("a", "dup"),
            node("c", "no.such.type", json!({})),
            node("d", "http.request", json!({ "method": "FETCH" })),
            template("lonely", "y"),
        ],
        "edges": [
            { "from": "a", "to": "ghost" },
            { "from": "a", "to": "c" },
            { "from": "a", "to": "c" },
            { "from": "c", "to": "d" },
        ]
    }));
    assert!(has(&found, codes::DUPLICATE_NODE_ID, "/nodes/1/id"), "{found:?}");
    assert!(has(&found, codes::UNKNOWN_NODE_TYPE, "/nodes/2/type"), "{found:?}");
    assert!(has(&found, codes::INVALID_NODE_CONFIG, "/nodes/3/config/method"), "{found:?}");
    assert!(has(&found, codes::INVALID_NODE_CONFIG, "/nodes/3/config"), "missing url: {found:?}");
    assert!(has(&found, codes::EDGE_UNKNOWN_NODE, "/edges/0/to"), "{found:?}");
    assert!(has(&found, codes::DUPLICATE_EDGE, "/edges/2"), "{found:?}");
    assert!(has(&found, codes::UNREACHABLE_NODE, "/nodes/4"), "{found:?}");
    assert!(found.len() >= 7);
}

#[test]
fn cycles_name_their_nodes() {
    let found = problems(json!({
        "name": "loop",
        "nodes": [template("start", "s"), template("a", "x"), template("b", "y"), template("c", "z")],
        "edges": [
            { "from": "start", "to": "a" },
            { "from": "a", "to": "b" }, { "from": "b", "to": "c" }, { "from": "c", "to": "a" }
        ]
    }));
    let cycle = found.iter().find(|p| p.code == codes::CYCLE_DETECTED).expect("cycle reported");
    assert!(cycle.message.contains("a -> b -> c -> a"), "{}", cycle.message);

    let found =
        problems(json!({ "name": "self", "nodes": [template("a", "x")], "edges": [ { "from": "a", "to": "a" } ] }));
    assert!(found.iter().any(|p| p.code == codes::CYCLE_DETECTED && p.message.contains("a -> a")));
    assert!(has(&found, codes::UNREACHABLE_NODE, "/nodes/0"), "a node only reachable from itself: {found:?}");
}

#[test]
fn condition_edges_need_when_and_others_may_not_have_it() {
    let found = problems(json!({
        "name": "branches",
        "nodes": [
            node("check", "logic.condition", json!({ "expression": "input.n > 1" })),
            template("yes", "big"),
            template("no", "small"),
            template("after", "x"),
        ],
        "edges": [
            { "from": "check", "to": "yes", "when": "true" },
            { "from": "check", "to": "no" },
            { "from": "yes", "to": "after", "when": "true" },
            { "from": "no", "to": "after", "when": "error" }
        ]
    }));
    assert!(has(&found, codes::CONDITION_EDGE_MISSING_WHEN, "/edges/1"), "{found:?}");
    assert!(has(&found, codes::INVALID_EDGE_WHEN, "/edges/2/when"), "{found:?}");
    assert!(has(&found, codes::INVALID_EDGE_WHEN, "/edges/3/when"), "error edge without on_error=branch: {found:?}");
}

#[test]
fn a_branching_workflow_with_error_edges_is_valid() {
    let document = json!({
        "name": "ok",
        "nodes": [
            node("check", "logic.condition", json!({ "expression": "input.n > 1" })),
            { "id": "call", "type": "http.request", "config": { "method": "GET", "url": "https://example.com/{{ input.n }}" },
              "on_error": "branch" },
            template("fallback", "failed: {{ nodes.call.output }}"),
            template("small", "{{ input.n }}"),
            output("done", "{{ nodes.check.output }}")
        ],
        "edges": [
            { "from": "check", "to": "call", "when": "true" },
            { "from": "check", "to": "small", "when": "false" },
            { "from": "call", "to": "fallback", "when": "error" },
            { "from": "call", "to": "done" },
            { "from": "small", "to": "done" }
        ]
    });
    let size = document.to_string().len();
    validate_definition(&document, size).expect("valid");
}

#[test]
fn on_error_branch_needs_an_error_edge() {
    let found = problems(json!({
        "name": "x",
        "nodes": [ { "id": "a", "type": "text.template", "config": { "template": "x" }, "on_error": "branch" }, output("b", "y") ],
        "edges": [ { "from": "a", "to": "b" } ]
    }));
    assert!(has(&found, codes::MISSING_ERROR_BRANCH, "/nodes/0/on_error"), "{found:?}");
}

#[test]
fn template_references_must_exist_and_be_upstream() {
    let found = problems(json!({
        "name": "refs",
        "nodes": [
            template("a", "{{ nodes.b.output.text }}"),
            template("b", "{{ nodes.a.output.text }} {{ nodes.ghost.output }} {{ secrets.key }}"),
            template("c", "{% if x %}"),
            node("d", "logic.condition", json!({ "expression": "nodes.c.output ==" })),
        ],
        "edges": [ { "from": "a", "to": "b" }, { "from": "b", "to": "c" }, { "from": "c", "to": "d" } ]
    }));
    assert!(has(&found, codes::TEMPLATE_NODE_NOT_UPSTREAM, "/nodes/0/config/template"), "{found:?}");
    assert!(has(&found, codes::TEMPLATE_UNKNOWN_NODE, "/nodes/1/config/template"), "{found:?}");
    assert!(has(&found, codes::TEMPLATE_UNKNOWN_VARIABLE, "/nodes/1/config/template"), "{found:?}");
    assert!(has(&found, codes::TEMPLATE_SYNTAX_ERROR, "/nodes/2/config/template"), "{found:?}");
    assert!(has(&found, codes::TEMPLATE_SYNTAX_ERROR, "/nodes/3/config/expression"), "{found:?}");
    assert!(
        !has(&found, codes::TEMPLATE_NODE_NOT_UPSTREAM, "/nodes/1/config/template"),
        "a is upstream of b: {found:?}"
    );
}

#[test]
fn templates_in_nested_config_are_checked_with_their_path() {
    let found = problems(json!({
        "name": "nested",
        "nodes": [
            node("call", "llm.chat", json!({ "credential": "main", "model": "m",
                "messages": [ { "role": "user", "content": "ok" }, { "role": "user", "content": "{{ nodes.later.output }}" } ] })),
            output("later", "x")
        ],
        "edges": [ { "from": "call", "to": "later" } ]
    }));
    assert!(has(&found, codes::TEMPLATE_NODE_NOT_UPSTREAM, "/nodes/0/config/messages/1/content"), "{found:?}");
}

#[test]
fn input_schema_must_be_a_valid_object_schema() {
    let found = problems(json!({ "name": "s", "input_schema": { "type": "nonsense" }, "nodes": [output("a", "x")] }));
    assert!(found.iter().any(|p| p.code == codes::INVALID_INPUT_SCHEMA), "{found:?}");
    let found = problems(json!({ "name": "s", "input_schema": { "type": "string" }, "nodes": [output("a", "x")] }));
    assert!(has(&found, codes::INVALID_INPUT_SCHEMA, "/input_schema/type"), "{found:?}");
    let found = problems(
        json!({ "name": "s", "input_schema": { "$ref": "http://169.254.169.254/latest" }, "nodes": [output("a", "x")] }),
    );
    assert!(found.iter().any(|p| p.code == codes::INVALID_INPUT_SCHEMA), "remote refs are not fetched: {found:?}");
}

#[test]
fn only_one_output_node_and_sane_retry_and_timeout() {
    let found = problems(json!({
        "name": "x",
        "nodes": [
            { "id": "a", "type": "text.template", "config": { "template": "x" },
              "retry": { "max_attempts": 0, "multiplier": 50.0 }, "timeout_ms": 0 },
            output("b", "1"), output("c", "2")
        ],
        "edges": [ { "from": "a", "to": "b" }, { "from": "a", "to": "c" } ]
    }));
    assert!(has(&found, codes::MULTIPLE_OUTPUT_NODES, "/nodes/2"), "{found:?}");
    assert!(has(&found, codes::INVALID_RETRY_POLICY, "/nodes/0/retry/max_attempts"), "{found:?}");
    assert!(has(&found, codes::INVALID_RETRY_POLICY, "/nodes/0/retry/multiplier"), "{found:?}");
    assert!(has(&found, codes::INVALID_TIMEOUT, "/nodes/0/timeout_ms"), "{found:?}");
}

#[test]
fn every_problem_code_is_documented() {
    let documented: Vec<&str> = codes::ALL.iter().map(|(code, _)| *code).collect();
    let source = include_str!("../src/validation.rs");
    for line in source.lines().filter(|l| l.trim_start().starts_with("pub const ") && l.contains(": &str")) {
        let name = line.trim_start().trim_start_matches("pub const ").split(':').next().unwrap();
        assert!(documented.contains(&name), "{name} is missing from codes::ALL");
    }
}
