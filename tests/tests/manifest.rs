//! The route table in shared/src/api/mod.rs is the one source of truth. These checks fail when
//! cargo-lambda's router, template.yaml, functions/ or events/ drift from it.

use nodeai::api::{FALLBACK_FUNCTION, ROUTES};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: impl AsRef<Path>) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Functions that serve no route of their own.
const NON_ROUTE_FUNCTIONS: &[&str] =
    &[FALLBACK_FUNCTION, "authorizer", "execution-worker", "execution-sweeper", "count-usage"];

fn all_functions() -> BTreeSet<String> {
    ROUTES.iter().map(|s| s.function.to_string()).chain(NON_ROUTE_FUNCTIONS.iter().map(|f| f.to_string())).collect()
}

#[test]
fn every_function_has_a_crate_that_only_wires_its_route() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(on_disk, all_functions(), "functions/ must hold exactly one crate per route plus the fallback");
    for spec in ROUTES {
        let main = read(format!("functions/{}/src/main.rs", spec.function));
        assert!(
            main.contains(&format!("Route::{:?}", spec.route)),
            "{} must serve Route::{:?}",
            spec.function,
            spec.route
        );
        assert!(main.lines().count() < 20, "{} main.rs only wires", spec.function);
    }
}

#[test]
fn the_cargo_lambda_router_matches_the_route_table() {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"].as_table().expect("router table");
    for spec in ROUTES {
        let entries =
            router.get(spec.path).and_then(|v| v.as_array()).unwrap_or_else(|| panic!("router lacks {}", spec.path));
        let target = entries
            .iter()
            .find(|e| e["method"].as_str() == Some(spec.method))
            .unwrap_or_else(|| panic!("router lacks {} {}", spec.method, spec.path));
        assert_eq!(target["function"].as_str(), Some(spec.function), "{} {}", spec.method, spec.path);
    }
    let functions = all_functions();
    for (path, value) in router {
        if let Some(entries) = value.as_array() {
            for entry in entries {
                let method = entry["method"].as_str().unwrap();
                let function = entry["function"].as_str().unwrap();
                assert!(functions.contains(function), "{method} {path} -> unknown function {function}");
                let routed = ROUTES.iter().any(|s| s.path == path && s.method == method);
                assert!(
                    routed || function == FALLBACK_FUNCTION,
                    "{method} {path} is not in ROUTES but goes to {function}"
                );
            }
        }
    }
    assert_eq!(router["/{*rest}"].as_str(), Some(FALLBACK_FUNCTION));
}

fn template_text_has(text: &str) -> bool {
    read("template.yaml").contains(text)
}

/// template.yaml split into its resources: (logical id, text).
fn template_resources() -> Vec<(String, String)> {
    let template = read("template.yaml");
    let resources = template.split("\nResources:\n").nth(1).unwrap().split("\nOutputs:").next().unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in resources.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") && line.trim_end().ends_with(':') {
            out.push((line.trim().trim_end_matches(':').to_string(), String::new()));
        } else if let Some((_, text)) = out.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

#[test]
fn template_has_a_function_and_an_api_event_for_every_route() {
    let resources = template_resources();
    for spec in ROUTES {
        let (_, text) = resources
            .iter()
            .find(|(_, text)| text.contains(&format!("Binary: {}\n", spec.function)))
            .unwrap_or_else(|| panic!("template.yaml has no function for {}", spec.function));
        assert!(text.contains("Type: AWS::Serverless::Function"));
        assert!(text.contains("BuildMethod: rust-cargolambda"));
        assert!(text.contains(&format!("Path: {}\n", spec.path)), "{}: event path", spec.function);
        assert!(text.contains(&format!("Method: {}\n", spec.method.to_lowercase())), "{}: event method", spec.function);
    }
    let functions = resources.iter().filter(|(_, text)| text.contains("Type: AWS::Serverless::Function")).count();
    assert_eq!(
        functions,
        all_functions().len(),
        "one function per route plus the fallback, authorizer, worker, sweeper"
    );
    // The events route streams (SAM's spelling; `STREAM` there would silently buffer), may run
    // to API Gateway's 15-minute streaming limit, and routes that hold `?wait=` get 29 s.
    let function = |binary: &str| {
        resources.iter().find(|(_, t)| t.contains(&format!("Binary: {binary}\n"))).map(|(_, t)| t.clone()).unwrap()
    };
    let events = function("stream-execution-events");
    assert!(events.contains("ResponseTransferMode: RESPONSE_STREAM\n"), "the events route streams");
    assert!(events.contains("Timeout: 900\n") && events.contains("TimeoutInMillis: 900000\n"));
    for binary in ["get-execution", "start-execution"] {
        assert!(function(binary).contains("Timeout: 29\n"), "{binary} holds ?wait=25 with room to answer");
    }
    let (_, worker) = resources.iter().find(|(_, t)| t.contains("Binary: execution-worker\n")).unwrap();
    assert!(worker.contains("ReportBatchItemFailures"), "partial batch failures are reported");
    assert!(worker.contains("MaximumConcurrency: !Ref WorkerMaximumConcurrency"), "the event source is capped");
    let (_, sweeper) = resources.iter().find(|(_, t)| t.contains("Binary: execution-sweeper\n")).unwrap();
    assert!(sweeper.contains("Type: ScheduleV2"), "the sweeper runs on an EventBridge Scheduler schedule");
    assert!(sweeper.contains("rate(${SweepIntervalMinutes} minutes)"), "every SweepIntervalMinutes");
    // The sweep index: sparse on sweep_pk, projecting what the sweeper reads.
    for attribute in nodeai::store::dynamo::SWEEP_PROJECTION {
        assert!(template_text_has(&format!("- {attribute}\n")), "sweep index projects {attribute}");
    }
    assert!(template_text_has("IndexName: sweep\n") && template_text_has("AttributeName: sweep_pk"));
    for alarm in ["ExecutionDeadLetterAlarm", "WorkerErrorsAlarm", "WorkerThrottlesAlarm", "StrandedExecutionsAlarm"] {
        assert!(resources.iter().any(|(id, _)| id == alarm), "alarm {alarm}");
    }
    // API functions and the authorizer: reserved concurrency from one parameter.
    assert!(template_text_has("ReservedConcurrentExecutions: !If [HasApiReservedConcurrency"));
    let template_text = read("template.yaml");
    let max_receives = format!("maxReceiveCount: {}", nodeai::worker::MAX_RECEIVES);
    assert!(template_text.contains(&max_receives) && template_text.contains("VisibilityTimeout: 1800"));
    assert!(worker.contains("Timeout: 300"), "visibility 1800 s is 6x the worker timeout");
    let template = read("template.yaml");
    for tier in ["free", "pro", "enterprise"] {
        assert!(template.contains(&format!("UsagePlanName: !Sub nodeai-${{Stage}}-{tier}")), "usage plan {tier}");
    }
    for spec in ROUTES.iter().filter(|s| s.authenticated) {
        assert!(
            template.contains(&format!("\"{}/{}\":", spec.path, spec.method)),
            "per-method throttle for {} {}",
            spec.method,
            spec.path
        );
    }
    assert!(template.contains("ApiKeySourceType: AUTHORIZER") && template.contains("FunctionPayloadType: REQUEST"));
    // Routes with no API key are throttled by the stage, per method.
    for (resource, rate) in
        [("/~1v1~1callbacks~1{token}", "CallbackRatePerSecond"), ("/~1hooks~1{hook_id}", "WebhookRatePerSecond")]
    {
        let setting = format!(
            "- ResourcePath: \"{resource}\"\n          HttpMethod: POST\n          ThrottlingRateLimit: !Ref {rate}"
        );
        assert!(template.contains(&setting), "stage throttle for {resource}");
    }
    for response in ["THROTTLED", "QUOTA_EXCEEDED", "UNAUTHORIZED", "ACCESS_DENIED", "DEFAULT_4XX", "DEFAULT_5XX"] {
        assert!(template.contains(&format!("        {response}:\n")), "gateway response {response}");
    }
}

#[test]
fn template_policies_are_least_privilege() {
    let resources = template_resources();
    let actions_of = |function: &str| -> BTreeSet<String> {
        let (_, text) = resources.iter().find(|(_, t)| t.contains(&format!("Binary: {function}\n"))).unwrap();
        text.lines().map(str::trim).filter_map(|l| l.strip_prefix("- dynamodb:")).map(|a| a.to_string()).collect()
    };
    let writes = ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"];
    for reader in [
        "get-workflow",
        "list-workflows",
        "get-version",
        "list-versions",
        "list-node-types",
        "validate-workflow",
        "get-assistant-session",
    ] {
        let actions = actions_of(reader);
        assert!(!actions.is_empty(), "{reader} reads");
        for write in writes {
            assert!(!actions.contains(write), "{reader} must not be allowed {write}");
        }
    }
    assert!(actions_of("health").is_empty() && actions_of("route-fallback").is_empty());
    assert!(actions_of("create-workflow").contains("PutItem"));
    assert!(!actions_of("create-workflow").contains("DeleteItem"));
    assert!(actions_of("delete-workflow").contains("DeleteItem"));
    let secrets_of = |function: &str| -> usize {
        let (_, text) = resources.iter().find(|(_, t)| t.contains(&format!("Binary: {function}\n"))).unwrap();
        text.matches("- secretsmanager:").count()
    };
    assert_eq!(secrets_of("put-credential"), 2);
    assert_eq!(secrets_of("delete-credential"), 1);
    assert_eq!(secrets_of("execution-worker"), 1, "the worker only reads credentials (llm.chat)");
    assert_eq!(secrets_of("send-assistant-message"), 1, "the assistant only reads the session's credential");
    // The functions that reach the stage's whole secret prefix are denied webhook secrets.
    for function in ["execution-worker", "send-assistant-message", "put-credential", "delete-credential"] {
        let (_, text) = resources.iter().find(|(_, t)| t.contains(&format!("Binary: {function}\n"))).unwrap();
        assert!(
            text.contains("Effect: Deny") && text.contains("secret:nodeai/${Stage}/*/triggers/*"),
            "{function}: no webhook secrets"
        );
    }
    // Webhook signing secrets: only under the triggers/ folder of the stage's prefix.
    let trigger_secrets = [
        ("create-trigger", 3),
        ("rotate-trigger-secret", 3),
        ("delete-trigger", 1),
        ("delete-workflow", 1),
        ("receive-webhook", 1),
    ];
    for (function, count) in trigger_secrets {
        assert_eq!(secrets_of(function), count, "{function}'s Secrets Manager actions");
        let (_, text) = resources.iter().find(|(_, t)| t.contains(&format!("Binary: {function}\n"))).unwrap();
        assert!(text.contains("secret:nodeai/${Stage}/*/triggers/*"), "{function}: webhook secrets only");
    }
    for function in all_functions().iter().filter(|f| {
        !f.contains("credential")
            && *f != "execution-worker"
            && *f != "send-assistant-message"
            && !trigger_secrets.iter().any(|(name, _)| name == &f.as_str())
    }) {
        assert_eq!(secrets_of(function), 0, "{function} has no business with Secrets Manager");
    }
    // Schedule triggers: schedules only in the stack's trigger group, sent with the role that
    // can only send to the queue.
    for function in ["create-trigger", "update-trigger", "delete-trigger", "delete-workflow"] {
        let (_, text) = resources.iter().find(|(_, t)| t.contains(&format!("Binary: {function}\n"))).unwrap();
        assert!(text.contains("schedule/${TriggerScheduleGroup}/*"), "{function}: the trigger group only");
        assert!(!text.contains("scheduler:*"), "{function}: no wildcard");
        if text.contains("iam:PassRole") {
            assert!(text.contains("iam:PassedToService: scheduler.amazonaws.com"), "{function}");
        }
    }
    let template = read("template.yaml");
    assert!(template.contains("secret:nodeai/${Stage}/*"), "secrets are scoped to the stage's prefix");
    assert!(!template.contains("dynamodb:*") && !template.contains("DynamoDBCrudPolicy"), "no wildcard grants");
    assert!(template.contains("PointInTimeRecoveryEnabled: true"));
    // Large values: only the functions that write or read them touch the bucket, under its prefix.
    let s3_of = |function: &str| -> usize {
        let (_, text) = resources.iter().find(|(_, t)| t.contains(&format!("Binary: {function}\n"))).unwrap();
        text.matches("- s3:").count()
    };
    assert_eq!(s3_of("execution-worker"), 2, "the worker writes and reads values");
    assert_eq!(s3_of("start-execution"), 1, "start-execution writes inputs");
    assert_eq!(s3_of("get-execution-value"), 1, "get-execution-value reads (signs URLs)");
    assert_eq!(s3_of("receive-webhook"), 2, "receive-webhook writes a large input and reads a sync output");
    let answers = ["complete-callback", "complete-execution-callback"];
    for function in answers {
        assert_eq!(s3_of(function), 1, "{function} writes a large answer");
    }
    for function in all_functions().iter().filter(|f| {
        !["execution-worker", "start-execution", "get-execution-value", "receive-webhook"].contains(&f.as_str())
            && !answers.contains(&f.as_str())
    }) {
        assert_eq!(s3_of(function), 0, "{function} has no business with the values bucket");
    }
    assert!(template.contains("aws:SecureTransport: \"false\"") && template.contains("RestrictPublicBuckets: true"));
    assert!(template.contains("ExpirationInDays: !Ref ExecutionRetentionDays"), "values expire with their executions");
    assert!(template.contains("Tracing: Active") && template.contains("LogFormat: JSON"));
    // Long waits: the worker creates schedules only in the stack's group, and passes only the
    // role that can do nothing but send to the execution queue.
    let (_, worker) = resources.iter().find(|(_, t)| t.contains("Binary: execution-worker\n")).unwrap();
    assert!(worker.contains("- scheduler:CreateSchedule") && worker.contains("schedule/${WaitScheduleGroup}/*"));
    assert!(worker.contains("iam:PassedToService: scheduler.amazonaws.com"));
    let (_, role) = resources.iter().find(|(id, _)| id == "WaitSchedulerRole").unwrap();
    assert!(role.contains("Action: sqs:SendMessage") && role.contains("Resource: !GetAtt ExecutionQueue.Arn"));
    assert_eq!(role.matches("Action:").count(), 2, "assume-role and SendMessage only");
}

#[test]
fn every_function_has_a_sample_event() {
    for function in all_functions() {
        let text = read(format!("events/{function}.json"));
        let event: serde_json::Value = serde_json::from_str(&text).unwrap();
        if function == "execution-worker" {
            assert!(event["Records"][0]["eventSource"] == "aws:sqs", "events/{function}.json is an SQS event");
        } else if function == "count-usage" {
            assert!(event["Records"][0]["eventSource"] == "aws:dynamodb", "events/{function}.json is a stream event");
            let parsed: aws_lambda_events::event::dynamodb::Event = serde_json::from_value(event).unwrap();
            let finishes = nodeai::store::dynamo::finishes_from_stream(&parsed);
            assert_eq!(finishes.len(), 1, "the sample is an execution's end, counted");
            assert_eq!(finishes[0].spent.models["gpt-4o-mini"].input_tokens, 1000);
        } else if function == "execution-sweeper" {
            assert!(event.is_object(), "events/{function}.json is the schedule's payload");
        } else {
            assert!(event["httpMethod"].is_string(), "events/{function}.json is an API Gateway REST event");
        }
    }
}

#[test]
fn readme_documents_every_code_variable_and_route() {
    let readme = read("README.md");
    for code in nodeai::error::ErrorCode::ALL {
        let row = format!("| `{}` | {} | {} |", code.as_str(), code.status().as_u16(), code.meaning());
        assert!(readme.contains(&row), "README lacks the row: {row}");
    }
    for (code, meaning) in nodeai::validation::codes::ALL {
        let row = format!("| `{code}` | {meaning} |");
        assert!(readme.contains(&row), "README lacks the row: {row}");
    }
    for code in nodeai::model::StepErrorCode::ALL {
        let row = format!("| `{}` | {} |", code.as_str(), code.meaning());
        assert!(readme.contains(&row), "README lacks the row: {row}");
    }
    for (variable, meaning) in nodeai::config::VARIABLES {
        let row = format!("| `{variable}` | {meaning} |");
        assert!(readme.contains(&row), "README lacks the row: {row}");
    }
    for spec in ROUTES {
        let path = spec.path.split('/').rfind(|s| !s.is_empty()).unwrap();
        assert!(readme.contains(path), "README does not mention {}", spec.path);
    }
    assert!(readme.contains("scripts/dev") && readme.contains("scripts/test"));
    assert!(readme.contains("sam build --beta-features") && readme.contains("sam deploy --guided"));
}

#[test]
fn ci_runs_scripts_test() {
    assert!(read(".ci/run").contains("scripts/test"));
}

/// The clients a function's main asks `wiring::builder()` for, as the architecture note names
/// them; the worker and the authorizer build theirs in `wiring` (their rows are checked as text).
fn clients_in_main(main: &str) -> Vec<&'static str> {
    let chain = main.split("wiring::builder()").nth(1).and_then(|rest| rest.split(".build()").next()).unwrap_or("");
    [
        (".dynamodb()", "DynamoDB"),
        (".dynamodb_with_values()", "DynamoDB, S3"),
        (".sqs()", "SQS"),
        (".secrets_manager()", "Secrets Manager"),
        (".scheduler()", "Scheduler"),
        (".model_calls()", "DynamoDB, Secrets Manager"),
    ]
    .into_iter()
    .filter(|(call, _)| chain.contains(call))
    .map(|(_, name)| name)
    .collect()
}

#[test]
fn every_function_builds_the_clients_the_architecture_note_lists() {
    let note = read("ARCHITECTURE.md");
    let row = |function: &str| {
        note.lines()
            .find(|line| line.starts_with(&format!("| {function} |")))
            .unwrap_or_else(|| panic!("ARCHITECTURE.md's client table has no row for {function}"))
            .split('|')
            .nth(2)
            .unwrap()
            .trim()
            .to_string()
    };
    for function in all_functions() {
        let main = read(format!("functions/{function}/src/main.rs"));
        if !main.contains("wiring::builder()") {
            continue;
        }
        let clients = clients_in_main(&main);
        let listed = if clients.is_empty() { "none".to_string() } else { clients.join(", ") };
        assert_eq!(row(&function), listed, "{function}: ARCHITECTURE.md vs main.rs");
    }
    assert_eq!(row("authorizer"), "DynamoDB");
    assert_eq!(row("execution-worker"), "DynamoDB, S3, SQS, Secrets Manager, EventBridge Scheduler");
    // A client the route does not use is not built: no function without a queue asks for SQS.
    assert_eq!(clients_in_main(&read("functions/health-live/src/main.rs")), Vec::<&str>::new());
    assert_eq!(clients_in_main(&read("functions/get-workflow/src/main.rs")), vec!["DynamoDB"]);
}

/// Every API Gateway response template renders JSON in the error envelope, once API Gateway has
/// put its values in: `$context.error.messageString` is a quoted JSON string, the other
/// `$context` values plain text inside quotes.
#[test]
fn every_gateway_response_template_is_an_error_envelope() {
    let template = read("template.yaml");
    let responses =
        template.split("GatewayResponses:\n").nth(1).expect("GatewayResponses").split("\n\n").next().unwrap();
    let mut seen = 0;
    for line in responses.lines().map(str::trim).filter(|l| l.starts_with("application/json:")) {
        let quoted = line.trim_start_matches("application/json:").trim();
        // A YAML single-quoted scalar: '' is one quote.
        let body =
            quoted.strip_prefix('\'').and_then(|b| b.strip_suffix('\'')).expect("single-quoted").replace("''", "'");
        let rendered = body
            .replace("$context.error.messageString", "\"Missing Authentication Token\"")
            .replace("$context.requestId", "c0ffee")
            .replace("$context.requestTime", "30/Nov/2026:01:00:00 +0000");
        assert!(!rendered.contains('$'), "an unknown variable in {line}");
        let envelope: serde_json::Value =
            serde_json::from_str(&rendered).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let error = &envelope["error"];
        assert!(error["code"].as_str().is_some_and(|c| !c.is_empty()), "{line}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty() && !m.starts_with('"')), "{line}");
        assert_eq!(
            (error["request_id"].as_str(), error["details"].as_array().map(Vec::len)),
            (Some("c0ffee"), Some(0))
        );
        seen += 1;
    }
    assert!(seen >= 10, "found only {seen} gateway response templates");
}
