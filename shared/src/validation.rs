//! Validation of workflow definitions: every problem at once, each with a JSON pointer path,
//! a stable code and a message.

use crate::model::{NodeSpec, OnError, WorkflowDefinition};
use crate::nodes;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::OnceLock;

pub const MAX_NODES: usize = 200;
pub const MAX_EDGES: usize = 1000;
pub const MAX_DEFINITION_BYTES: usize = 256 * 1024;
pub const MAX_TAGS: usize = 20;
pub const MAX_NAME_CHARS: usize = 200;

/// Problem codes: stable strings clients may match on. Listed in the README.
pub mod codes {
    pub const DEFINITION_TOO_LARGE: &str = "DEFINITION_TOO_LARGE";
    pub const SCHEMA_VIOLATION: &str = "SCHEMA_VIOLATION";
    pub const INVALID_NAME: &str = "INVALID_NAME";
    pub const TOO_MANY_TAGS: &str = "TOO_MANY_TAGS";
    pub const INVALID_TAG: &str = "INVALID_TAG";
    pub const TOO_MANY_NODES: &str = "TOO_MANY_NODES";
    pub const TOO_MANY_EDGES: &str = "TOO_MANY_EDGES";
    pub const EMPTY_WORKFLOW: &str = "EMPTY_WORKFLOW";
    pub const INVALID_NODE_ID: &str = "INVALID_NODE_ID";
    pub const DUPLICATE_NODE_ID: &str = "DUPLICATE_NODE_ID";
    pub const UNKNOWN_NODE_TYPE: &str = "UNKNOWN_NODE_TYPE";
    pub const INVALID_NODE_CONFIG: &str = "INVALID_NODE_CONFIG";
    pub const INVALID_RETRY_POLICY: &str = "INVALID_RETRY_POLICY";
    pub const INVALID_TIMEOUT: &str = "INVALID_TIMEOUT";
    pub const EDGE_UNKNOWN_NODE: &str = "EDGE_UNKNOWN_NODE";
    pub const DUPLICATE_EDGE: &str = "DUPLICATE_EDGE";
    pub const CYCLE_DETECTED: &str = "CYCLE_DETECTED";
    pub const UNREACHABLE_NODE: &str = "UNREACHABLE_NODE";
    pub const CONDITION_EDGE_MISSING_WHEN: &str = "CONDITION_EDGE_MISSING_WHEN";
    pub const INVALID_EDGE_WHEN: &str = "INVALID_EDGE_WHEN";
    pub const MISSING_ERROR_BRANCH: &str = "MISSING_ERROR_BRANCH";
    pub const MULTIPLE_OUTPUT_NODES: &str = "MULTIPLE_OUTPUT_NODES";
    pub const TEMPLATE_SYNTAX_ERROR: &str = "TEMPLATE_SYNTAX_ERROR";
    pub const TEMPLATE_UNKNOWN_VARIABLE: &str = "TEMPLATE_UNKNOWN_VARIABLE";
    pub const TEMPLATE_UNKNOWN_NODE: &str = "TEMPLATE_UNKNOWN_NODE";
    pub const TEMPLATE_NODE_NOT_UPSTREAM: &str = "TEMPLATE_NODE_NOT_UPSTREAM";
    pub const INVALID_INPUT_SCHEMA: &str = "INVALID_INPUT_SCHEMA";
    pub const INVALID_PAYLOAD_SCHEMA: &str = "INVALID_PAYLOAD_SCHEMA";
    pub const EXECUTION_TIMEOUT_TOO_LONG: &str = "EXECUTION_TIMEOUT_TOO_LONG";
    pub const WORKFLOW_REFERENCE_NOT_FOUND: &str = "WORKFLOW_REFERENCE_NOT_FOUND";
    pub const WORKFLOW_REFERENCE_NOT_DEPLOYED: &str = "WORKFLOW_REFERENCE_NOT_DEPLOYED";
    pub const WORKFLOW_REFERENCE_CYCLE: &str = "WORKFLOW_REFERENCE_CYCLE";

    /// Every problem code with its meaning, for the README.
    pub const ALL: &[(&str, &str)] = &[
        (DEFINITION_TOO_LARGE, "the definition is over 256 KB"),
        (SCHEMA_VIOLATION, "a field is missing, unknown or of the wrong type"),
        (INVALID_NAME, "name must be 1-200 characters"),
        (TOO_MANY_TAGS, "at most 20 tags"),
        (INVALID_TAG, "a tag must be 1-64 characters of [A-Za-z0-9_.:-]"),
        (TOO_MANY_NODES, "at most 200 nodes"),
        (TOO_MANY_EDGES, "at most 1,000 edges"),
        (EMPTY_WORKFLOW, "a workflow needs at least one node"),
        (INVALID_NODE_ID, "node ids match ^[a-z][a-z0-9_-]{0,63}$"),
        (DUPLICATE_NODE_ID, "two nodes share an id"),
        (UNKNOWN_NODE_TYPE, "the node type is not registered (see GET /v1/node-types)"),
        (INVALID_NODE_CONFIG, "the node's config does not match its type's schema"),
        (INVALID_RETRY_POLICY, "retry values out of range"),
        (INVALID_TIMEOUT, "timeout_ms must be 1..=900000"),
        (EDGE_UNKNOWN_NODE, "an edge names a node that does not exist"),
        (DUPLICATE_EDGE, "the same edge appears twice"),
        (CYCLE_DETECTED, "the edges form a cycle (the message names its nodes)"),
        (UNREACHABLE_NODE, "no path from an entry node reaches this node, or it has no edges at all"),
        (CONDITION_EDGE_MISSING_WHEN, "an edge leaving a logic.condition node needs \"when\": \"true\" or \"false\""),
        (INVALID_EDGE_WHEN, "\"when\" is not allowed or not valid on this edge"),
        (MISSING_ERROR_BRANCH, "on_error is \"branch\" but no edge leaves the node with \"when\": \"error\""),
        (MULTIPLE_OUTPUT_NODES, "at most one flow.output node"),
        (TEMPLATE_SYNTAX_ERROR, "a template or expression does not parse"),
        (TEMPLATE_UNKNOWN_VARIABLE, "a template uses a variable other than input, nodes or execution"),
        (TEMPLATE_UNKNOWN_NODE, "a template refers to a node that does not exist"),
        (TEMPLATE_NODE_NOT_UPSTREAM, "a template refers to a node that does not run before this one"),
        (INVALID_INPUT_SCHEMA, "input_schema is not a valid JSON Schema for an object"),
        (INVALID_PAYLOAD_SCHEMA, "a flow.approval's payload_schema is not a valid JSON Schema"),
        (
            EXECUTION_TIMEOUT_TOO_LONG,
            "timeout_seconds is over 86400 (24 h) in a workflow with no flow.wait or flow.approval (those allow 30 days)",
        ),
        (
            WORKFLOW_REFERENCE_NOT_FOUND,
            "a flow.subworkflow or flow.map names a workflow (or a pinned version) your tenant does not have",
        ),
        (
            WORKFLOW_REFERENCE_NOT_DEPLOYED,
            "a flow.subworkflow or flow.map names a workflow with no deployed version and pins none",
        ),
        (WORKFLOW_REFERENCE_CYCLE, "workflows would run each other in a cycle (the message names the path)"),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub path: String,
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Problem { path: path.into(), code, message: message.into() }
    }
}

/// The structural schema of a definition document. Limits with codes of their own (sizes,
/// id patterns) are checked in code so each gets its own code.
fn document_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| jsonschema::validator_for(&definition_schema()).expect("the definition schema is valid"))
}

/// The JSON Schema of a definition document's structure (what the assistant's system prompt
/// shows; node configs have their own schemas in the node catalogue).
pub fn definition_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "nodes"],
        "properties": {
            "name": { "type": "string" },
            "description": { "type": "string", "maxLength": 2000 },
            "tags": { "type": "array", "items": { "type": "string" } },
            "input_schema": { "type": "object" },
            "timeout_seconds": { "type": "integer", "minimum": 1, "maximum": crate::model::MAX_WAITING_EXECUTION_TIMEOUT.as_secs() },
            "events": { "type": "boolean" },
            "max_cost_usd": { "type": "number", "exclusiveMinimum": 0, "maximum": 100000 },
            "nodes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["id", "type"],
                    "properties": {
                        "id": { "type": "string" },
                        "type": { "type": "string" },
                        "config": { "type": "object" },
                        "retry": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["max_attempts"],
                            "properties": {
                                "max_attempts": { "type": "integer" },
                                "initial_delay_ms": { "type": "integer" },
                                "max_delay_ms": { "type": "integer" },
                                "multiplier": { "type": "number" },
                                "jitter": { "type": "boolean" }
                            }
                        },
                        "timeout_ms": { "type": "integer" },
                        "on_error": { "enum": ["fail", "continue", "branch"] }
                    }
                }
            },
            "edges": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["from", "to"],
                    "properties": {
                        "from": { "type": "string" },
                        "to": { "type": "string" },
                        "when": { "type": "string" }
                    }
                }
            }
        }
    })
}

/// Validates a definition given as parsed JSON (`raw_len` is its size in bytes as sent).
/// Returns the typed definition, or every problem found.
pub fn validate_definition(document: &Value, raw_len: usize) -> Result<WorkflowDefinition, Vec<Problem>> {
    if raw_len > MAX_DEFINITION_BYTES {
        return Err(vec![Problem::new(
            "",
            codes::DEFINITION_TOO_LARGE,
            format!("the definition is {raw_len} bytes; the limit is {MAX_DEFINITION_BYTES}"),
        )]);
    }
    let mut problems: Vec<Problem> = document_validator()
        .iter_errors(document)
        .map(|e| Problem::new(e.instance_path().as_str(), codes::SCHEMA_VIOLATION, e.to_string()))
        .collect();
    check_limits(document, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let definition: WorkflowDefinition = match serde_json::from_value(document.clone()) {
        // The size that counts is the size stored: re-serialised numbers can be longer than
        // sent (`1e15` is stored as `1000000000000000.0`).
        Ok(definition) => match serde_json::to_string(&definition).map(|t| t.len()) {
            Ok(stored) if stored > MAX_DEFINITION_BYTES => {
                return Err(vec![Problem::new(
                    "",
                    codes::DEFINITION_TOO_LARGE,
                    format!("the definition is {stored} bytes as stored; the limit is {MAX_DEFINITION_BYTES}"),
                )]);
            }
            _ => definition,
        },
        // The schema above mirrors the types, so this is a safety net rather than a path.
        Err(e) => {
            return Err(vec![Problem::new("", codes::SCHEMA_VIOLATION, e.to_string())]);
        }
    };
    check_semantics(&definition, &mut problems);
    if problems.is_empty() { Ok(definition) } else { Err(problems) }
}

/// Size and naming limits, on the raw document so they are reported alongside schema problems.
fn check_limits(document: &Value, problems: &mut Vec<Problem>) {
    if let Some(name) = document.get("name").and_then(Value::as_str) {
        let chars = name.trim().chars().count();
        if chars == 0 || name.chars().count() > MAX_NAME_CHARS {
            problems.push(Problem::new(
                "/name",
                codes::INVALID_NAME,
                format!("name must be 1-{MAX_NAME_CHARS} characters and not blank"),
            ));
        }
    }
    if let Some(tags) = document.get("tags").and_then(Value::as_array) {
        if tags.len() > MAX_TAGS {
            problems.push(Problem::new(
                "/tags",
                codes::TOO_MANY_TAGS,
                format!("{} tags; the limit is {MAX_TAGS}", tags.len()),
            ));
        }
        for (i, tag) in tags.iter().enumerate() {
            if let Some(tag) = tag.as_str()
                && !is_valid_tag(tag)
            {
                problems.push(Problem::new(
                    format!("/tags/{i}"),
                    codes::INVALID_TAG,
                    format!("tag {tag:?} must be 1-64 characters of letters, digits, '_', '.', ':' or '-'"),
                ));
            }
        }
    }
    let nodes = document.get("nodes").and_then(Value::as_array);
    if let Some(nodes) = nodes {
        if nodes.is_empty() {
            problems.push(Problem::new("/nodes", codes::EMPTY_WORKFLOW, "a workflow needs at least one node"));
        }
        if nodes.len() > MAX_NODES {
            problems.push(Problem::new(
                "/nodes",
                codes::TOO_MANY_NODES,
                format!("{} nodes; the limit is {MAX_NODES}", nodes.len()),
            ));
        }
        for (i, node) in nodes.iter().enumerate() {
            if let Some(id) = node.get("id").and_then(Value::as_str)
                && !is_valid_node_id(id)
            {
                problems.push(Problem::new(
                    format!("/nodes/{i}/id"),
                    codes::INVALID_NODE_ID,
                    format!("node id {id:?} must match ^[a-z][a-z0-9_-]{{0,63}}$"),
                ));
            }
        }
    }
    if let Some(edges) = document.get("edges").and_then(Value::as_array)
        && edges.len() > MAX_EDGES
    {
        problems.push(Problem::new(
            "/edges",
            codes::TOO_MANY_EDGES,
            format!("{} edges; the limit is {MAX_EDGES}", edges.len()),
        ));
    }
}

pub fn is_valid_node_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some('a'..='z'))
        && id.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

pub fn is_valid_tag(tag: &str) -> bool {
    (1..=64).contains(&tag.len())
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

fn check_semantics(definition: &WorkflowDefinition, problems: &mut Vec<Problem>) {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, node) in definition.nodes.iter().enumerate() {
        if let Some(first) = index.get(node.id.as_str()) {
            problems.push(Problem::new(
                format!("/nodes/{i}/id"),
                codes::DUPLICATE_NODE_ID,
                format!("node id '{}' is already used by /nodes/{first}", node.id),
            ));
        } else {
            index.insert(&node.id, i);
        }
        check_node(i, node, problems);
        check_payload_schema(i, node, problems);
    }
    let outputs: Vec<usize> =
        (0..definition.nodes.len()).filter(|&i| definition.nodes[i].node_type == "flow.output").collect();
    if outputs.len() > 1 {
        problems.push(Problem::new(
            format!("/nodes/{}", outputs[1]),
            codes::MULTIPLE_OUTPUT_NODES,
            "a workflow has at most one flow.output node",
        ));
    }

    // Edges: endpoints, duplicates, `when` rules.
    let mut seen_edges = HashSet::new();
    let mut successors: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut predecessors: HashMap<&str, Vec<&str>> = HashMap::new();
    for (i, edge) in definition.edges.iter().enumerate() {
        let mut endpoints_ok = true;
        for (field, id) in [("from", &edge.from), ("to", &edge.to)] {
            if !index.contains_key(id.as_str()) {
                endpoints_ok = false;
                problems.push(Problem::new(
                    format!("/edges/{i}/{field}"),
                    codes::EDGE_UNKNOWN_NODE,
                    format!("edge {field} '{id}', which is not a node of this workflow"),
                ));
            }
        }
        if !seen_edges.insert((edge.from.as_str(), edge.to.as_str(), edge.when.as_deref())) {
            problems.push(Problem::new(
                format!("/edges/{i}"),
                codes::DUPLICATE_EDGE,
                format!("edge {} -> {} appears more than once", edge.from, edge.to),
            ));
        }
        if !endpoints_ok {
            continue;
        }
        let source = &definition.nodes[index[edge.from.as_str()]];
        let is_condition = nodes::find(&source.node_type).is_some_and(|k| k.is_condition());
        match (edge.when.as_deref(), is_condition) {
            (None, true) => problems.push(Problem::new(
                format!("/edges/{i}"),
                codes::CONDITION_EDGE_MISSING_WHEN,
                format!(
                    "edge {} -> {} leaves a condition and needs \"when\": \"true\" or \"false\"",
                    edge.from, edge.to
                ),
            )),
            (Some("true" | "false"), true) | (None, false) => {}
            (Some("error"), _) if source.on_error == OnError::Branch => {}
            (Some("error"), _) => problems.push(Problem::new(
                format!("/edges/{i}/when"),
                codes::INVALID_EDGE_WHEN,
                format!("\"when\": \"error\" needs node '{}' to have \"on_error\": \"branch\"", edge.from),
            )),
            (Some(other), _) => problems.push(Problem::new(
                format!("/edges/{i}/when"),
                codes::INVALID_EDGE_WHEN,
                if is_condition {
                    format!("\"when\" must be \"true\", \"false\" or \"error\", not {other:?}")
                } else {
                    format!("node '{}' is not a condition; \"when\": {other:?} is not allowed here", edge.from)
                },
            )),
        }
        successors.entry(&edge.from).or_default().push(&edge.to);
        predecessors.entry(&edge.to).or_default().push(&edge.from);
    }
    for (i, node) in definition.nodes.iter().enumerate() {
        if node.on_error == OnError::Branch
            && !definition.edges.iter().any(|e| e.from == node.id && e.when.as_deref() == Some("error"))
        {
            problems.push(Problem::new(
                format!("/nodes/{i}/on_error"),
                codes::MISSING_ERROR_BRANCH,
                format!("node '{}' branches on error but no edge leaves it with \"when\": \"error\"", node.id),
            ));
        }
    }

    let ids: Vec<&str> = definition.nodes.iter().map(|n| n.id.as_str()).collect();
    if let Some(cycle) = find_cycle(&ids, &successors) {
        problems.push(Problem::new(
            "/edges",
            codes::CYCLE_DETECTED,
            format!("the edges form a cycle: {}", cycle.join(" -> ")),
        ));
    }

    // Reachability: from the entry nodes (no incoming edge).
    let entries: Vec<&str> = ids.iter().copied().filter(|id| !predecessors.contains_key(id)).collect();
    let reachable = walk(&entries, &successors);
    for (i, id) in ids.iter().enumerate() {
        let isolated = ids.len() > 1 && !predecessors.contains_key(id) && !successors.contains_key(id);
        if !reachable.contains(id) || isolated {
            problems.push(Problem::new(
                format!("/nodes/{i}"),
                codes::UNREACHABLE_NODE,
                if isolated {
                    format!("node '{id}' has no edges, so nothing connects it to the workflow")
                } else {
                    format!("node '{id}' cannot be reached from any entry node")
                },
            ));
        }
    }

    for (i, node) in definition.nodes.iter().enumerate() {
        let upstream = walk(&[node.id.as_str()], &predecessors);
        check_templates(i, node, &index, &upstream, problems);
    }

    if let Some(schema) = &definition.input_schema {
        check_input_schema(schema, problems);
    }
    let waits = definition.nodes.iter().any(|n| nodes::parks(&n.node_type).is_some());
    let max = crate::model::MAX_EXECUTION_TIMEOUT.as_secs();
    if !waits && definition.timeout_seconds.is_some_and(|t| t > max) {
        problems.push(Problem::new(
            "/timeout_seconds",
            codes::EXECUTION_TIMEOUT_TOO_LONG,
            format!(
                "timeout_seconds is at most {max} (24 h) unless the workflow waits (flow.wait, flow.approval: up to 30 days)"
            ),
        ));
    }
}

/// A flow.approval's `payload_schema` must compile: a callback is checked against it.
fn check_payload_schema(i: usize, node: &NodeSpec, problems: &mut Vec<Problem>) {
    let Some(schema) = crate::nodes::flow_approval::payload_schema(node) else { return };
    let problem = jsonschema::meta::validate(schema)
        .map_err(|e| e.to_string())
        .and_then(|()| jsonschema::validator_for(schema).map(|_| ()).map_err(|e| e.to_string()));
    if let Err(e) = problem {
        problems.push(Problem::new(
            format!("/nodes/{i}/config/payload_schema"),
            codes::INVALID_PAYLOAD_SCHEMA,
            format!("payload_schema is not a valid JSON Schema: {e}"),
        ));
    }
}

fn check_node(i: usize, node: &NodeSpec, problems: &mut Vec<Problem>) {
    match nodes::config_validator(&node.node_type) {
        None => problems.push(Problem::new(
            format!("/nodes/{i}/type"),
            codes::UNKNOWN_NODE_TYPE,
            format!(
                "unknown node type '{}'; known types: {}",
                node.node_type,
                nodes::NODE_TYPES.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
            ),
        )),
        Some(validator) => {
            for error in validator.iter_errors(&node.config) {
                problems.push(Problem::new(
                    format!("/nodes/{i}/config{}", error.instance_path().as_str()),
                    codes::INVALID_NODE_CONFIG,
                    error.to_string(),
                ));
            }
        }
    }
    if let Some(retry) = &node.retry {
        let mut bad = |field: &str, message: &str| {
            problems.push(Problem::new(format!("/nodes/{i}/retry/{field}"), codes::INVALID_RETRY_POLICY, message))
        };
        if !(1..=10).contains(&retry.max_attempts) {
            bad("max_attempts", "max_attempts must be 1..=10");
        }
        if retry.initial_delay_ms.is_some_and(|d| d > 60_000) {
            bad("initial_delay_ms", "initial_delay_ms must be at most 60000");
        }
        if retry.max_delay_ms.is_some_and(|d| d > 300_000) {
            bad("max_delay_ms", "max_delay_ms must be at most 300000");
        }
        if retry.multiplier.is_some_and(|m| !(1.0..=10.0).contains(&m)) {
            bad("multiplier", "multiplier must be 1.0..=10.0");
        }
    }
    if node.timeout_ms.is_some_and(|t| !(1..=900_000).contains(&t)) {
        problems.push(Problem::new(
            format!("/nodes/{i}/timeout_ms"),
            codes::INVALID_TIMEOUT,
            "timeout_ms must be 1..=900000 (15 minutes)",
        ));
    }
}

/// Every node reachable from `start` along `graph` (including `start`).
fn walk<'a>(start: &[&'a str], graph: &HashMap<&'a str, Vec<&'a str>>) -> HashSet<&'a str> {
    let mut seen: HashSet<&str> = start.iter().copied().collect();
    let mut queue: VecDeque<&str> = start.iter().copied().collect();
    while let Some(id) = queue.pop_front() {
        for next in graph.get(id).into_iter().flatten() {
            if seen.insert(next) {
                queue.push_back(next);
            }
        }
    }
    seen
}

/// A cycle as a list of node ids (first repeated at the end), found by depth-first search.
fn find_cycle<'a>(ids: &[&'a str], successors: &HashMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnStack,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = ids.iter().map(|id| (*id, Mark::Unvisited)).collect();
    for &root in ids {
        if marks[root] != Mark::Unvisited {
            continue;
        }
        // Iterative DFS: (node, index of the next successor to try).
        let mut stack: Vec<(&str, usize)> = vec![(root, 0)];
        marks.insert(root, Mark::OnStack);
        while let Some((node, next)) = stack.last().copied() {
            let succ = successors.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if next < succ.len() {
                stack.last_mut().expect("stack is not empty").1 += 1;
                let child = succ[next];
                match marks.get(child).copied() {
                    Some(Mark::Unvisited) => {
                        marks.insert(child, Mark::OnStack);
                        stack.push((child, 0));
                    }
                    Some(Mark::OnStack) => {
                        let start = stack.iter().position(|(n, _)| *n == child).expect("on stack");
                        let mut cycle: Vec<&str> = stack[start..].iter().map(|(n, _)| *n).collect();
                        cycle.push(child);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                marks.insert(node, Mark::Done);
                stack.pop();
            }
        }
    }
    None
}

const TEMPLATE_ROOTS: &[&str] = &["input", "nodes", "execution"];

/// Parses every template and expression in a node's config and checks what it refers to.
fn check_templates(
    i: usize,
    node: &NodeSpec,
    index: &HashMap<&str, usize>,
    upstream: &HashSet<&str>,
    problems: &mut Vec<Problem>,
) {
    let kind = nodes::find(&node.node_type);
    let expression_fields = kind.map(|k| k.expression_fields()).unwrap_or(&[]);
    let literal_fields = kind.map(|k| k.literal_fields()).unwrap_or(&[]);
    let extra_roots = kind.map(|k| k.extra_template_roots()).unwrap_or(&[]);
    let env = crate::template::environment();
    let mut strings = Vec::new();
    collect_strings(&node.config, String::new(), &mut strings);
    for (pointer, source) in strings {
        if literal_fields.iter().any(|field| pointer == *field || pointer.starts_with(&format!("{field}/"))) {
            continue;
        }
        let path = format!("/nodes/{i}/config{pointer}");
        let variables = if expression_fields.contains(&pointer.as_str()) {
            env.compile_expression(source).map(|e| e.undeclared_variables(true))
        } else if source.contains("{{") || source.contains("{%") || source.contains("{#") {
            env.template_from_str(source).map(|t| t.undeclared_variables(true))
        } else {
            continue;
        };
        let variables: BTreeSet<String> = match variables {
            Ok(v) => v.into_iter().collect(),
            Err(e) => {
                problems.push(Problem::new(path, codes::TEMPLATE_SYNTAX_ERROR, template_error_message(&e)));
                continue;
            }
        };
        for variable in variables {
            let mut parts = variable.split('.');
            let root = parts.next().unwrap_or_default();
            if !TEMPLATE_ROOTS.contains(&root) && !extra_roots.contains(&root) {
                problems.push(Problem::new(
                    &path,
                    codes::TEMPLATE_UNKNOWN_VARIABLE,
                    format!("'{root}' is not defined; templates see input, nodes.<id>.output and execution"),
                ));
                continue;
            }
            if root != "nodes" {
                continue;
            }
            let Some(target) = parts.next() else { continue };
            if !index.contains_key(target) {
                problems.push(Problem::new(
                    &path,
                    codes::TEMPLATE_UNKNOWN_NODE,
                    format!("'nodes.{target}' refers to a node that does not exist"),
                ));
            } else if target == node.id || !upstream.contains(target) {
                problems.push(Problem::new(
                    &path,
                    codes::TEMPLATE_NODE_NOT_UPSTREAM,
                    format!("'nodes.{target}' does not run before node '{}'; add an edge path from it", node.id),
                ));
            }
        }
    }
}

fn template_error_message(e: &minijinja::Error) -> String {
    // The Display of a minijinja error names the template "<string>"; keep kind, detail and line.
    match (e.detail(), e.line()) {
        (Some(detail), Some(line)) => format!("{} on line {line}: {detail}", e.kind()),
        (Some(detail), None) => format!("{}: {detail}", e.kind()),
        _ => e.kind().to_string(),
    }
}

/// Every string leaf of a JSON value with its JSON pointer.
fn collect_strings<'a>(value: &'a Value, pointer: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((pointer, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_strings(item, format!("{pointer}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                collect_strings(item, format!("{pointer}/{escaped}"), out);
            }
        }
        _ => {}
    }
}

/// Where `instance` does not match `schema`: `{"path": "<root><pointer>", "message"}` for each
/// problem (none: it matches). None when the schema cannot be compiled.
pub fn instance_problems(schema: &Value, instance: &Value, root: &str) -> Option<Vec<Value>> {
    let validator = jsonschema::validator_for(schema).ok()?;
    Some(
        validator
            .iter_errors(instance)
            .map(|e| json!({ "path": format!("{root}{}", e.instance_path().as_str()), "message": e.to_string() }))
            .collect(),
    )
}

fn check_input_schema(schema: &Value, problems: &mut Vec<Problem>) {
    if let Err(e) = jsonschema::meta::validate(schema) {
        problems.push(Problem::new(
            format!("/input_schema{}", e.instance_path().as_str()),
            codes::INVALID_INPUT_SCHEMA,
            format!("input_schema is not a valid JSON Schema: {e}"),
        ));
        return;
    }
    if let Err(e) = jsonschema::validator_for(schema) {
        problems.push(Problem::new(
            "/input_schema",
            codes::INVALID_INPUT_SCHEMA,
            format!("input_schema cannot be used: {e}"),
        ));
        return;
    }
    if let Some(kind) = schema.get("type")
        && kind != "object"
    {
        problems.push(Problem::new(
            "/input_schema/type",
            codes::INVALID_INPUT_SCHEMA,
            "execution input is a JSON object, so input_schema must have \"type\": \"object\"",
        ));
    }
}

/// The nodes of a definition that run another workflow: (index, workflow id, pinned version).
fn child_references(definition: &WorkflowDefinition) -> Vec<(usize, String, Option<u32>)> {
    definition
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.node_type == "flow.subworkflow" || n.node_type == "flow.map")
        .filter_map(|(i, n)| {
            let id = n.config.get("workflow_id")?.as_str()?.to_string();
            Some((i, id, n.config.get("version").and_then(Value::as_u64).map(|v| v as u32)))
        })
        .collect()
}

/// What a saved definition's flow.subworkflow and flow.map nodes name, checked against the
/// tenant's workflows (the structural checks cannot see them): the workflow exists, the pinned
/// version exists or a version is deployed, and, for a workflow saved as `self_id`, no chain of
/// deployed (or pinned) versions leads back to it. A cycle that appears later (a deploy) is
/// stopped at run time by the depth limit.
pub async fn check_references(
    store: &dyn crate::store::WorkflowStore,
    tenant_id: &str,
    self_id: Option<&str>,
    definition: &WorkflowDefinition,
) -> Result<Vec<Problem>, crate::error::StoreError> {
    let mut problems = Vec::new();
    for (i, workflow_id, pinned) in child_references(definition) {
        let path = format!("/nodes/{i}/config/workflow_id");
        if self_id == Some(workflow_id.as_str()) {
            problems.push(Problem::new(path, codes::WORKFLOW_REFERENCE_CYCLE, "a workflow cannot run itself"));
            continue;
        }
        let Some(workflow) = store.get_workflow(tenant_id, &workflow_id).await? else {
            problems.push(Problem::new(
                path,
                codes::WORKFLOW_REFERENCE_NOT_FOUND,
                format!("workflow '{workflow_id}' does not exist"),
            ));
            continue;
        };
        let Some(version) = pinned.or(workflow.deployed_version) else {
            problems.push(Problem::new(
                path,
                codes::WORKFLOW_REFERENCE_NOT_DEPLOYED,
                format!("workflow '{workflow_id}' has no deployed version; deploy one or pin \"version\""),
            ));
            continue;
        };
        let Some(runnable) = store.get_version(tenant_id, &workflow_id, version).await? else {
            problems.push(Problem::new(
                format!("/nodes/{i}/config/version"),
                codes::WORKFLOW_REFERENCE_NOT_FOUND,
                format!("workflow '{workflow_id}' has no version {version}"),
            ));
            continue;
        };
        let Some(self_id) = self_id else { continue };
        // Follow what it runs, as deployed today, up to the run-time depth limit.
        let mut frontier = vec![(runnable.definition, vec![workflow_id.clone()])];
        for _ in 0..crate::model::MAX_CHILD_DEPTH {
            let mut next = Vec::new();
            for (definition, path_so_far) in frontier {
                for (_, id, pinned) in child_references(&definition) {
                    let chain = [path_so_far.clone(), vec![id.clone()]].concat();
                    if id == self_id {
                        problems.push(Problem::new(
                            &path,
                            codes::WORKFLOW_REFERENCE_CYCLE,
                            format!("{self_id} -> {} runs this workflow again", chain.join(" -> ")),
                        ));
                        return Ok(problems);
                    }
                    let Some(workflow) = store.get_workflow(tenant_id, &id).await? else { continue };
                    let Some(version) = pinned.or(workflow.deployed_version) else { continue };
                    if let Some(found) = store.get_version(tenant_id, &id, version).await? {
                        next.push((found.definition, chain));
                    }
                }
            }
            frontier = next;
        }
    }
    Ok(problems)
}
