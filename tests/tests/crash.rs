//! Crash test through the real local path (issue 10): cargo lambda watch hosting the worker,
//! the SQS event-source poller (scripts/sqs_poller.py) and the emulator run a 10-node workflow
//! with 3 side-effecting nodes against a loopback stub that counts calls; the worker process is
//! killed with SIGKILL (with its host, as a dead Lambda sandbox takes nothing with it) at node
//! boundaries in turn, and the host is started again. Every execution ends `succeeded` and the
//! stub counts each side effect exactly once.
//!
//! The test runs its own worker host, queue and poller: a killed cargo-lambda instance stays
//! "busy" for good in its watcher, so the host is restarted, not the shared stack's. Ignored in a
//! plain `cargo test`; scripts/test runs it after the other end-to-end tests (it needs
//! AWS_ENDPOINT_URL, TABLE_NAME and VALUES_BUCKET from that stack, and cargo-lambda on PATH).

use nodeai::executions::start::{StartCommand, Started, VersionChoice, start};
use nodeai::store::dynamo::DynamoStore;
use nodeai::store::{ExecutionStore, StepStore, WorkflowStore};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The chain: pure, effect 1, pure, pure, effect 2, pure, pure, effect 3, pure, output. Each
/// pure node renders a nested loop over the input (about half a second in a debug build), so
/// a kill timed inside one lands between the side effects, where the boundaries are.
fn workflow(stub: &str) -> Value {
    let burn = "{% for i in input.n %}{% for j in input.n %}{% endfor %}{% endfor %}";
    let pure = |id: &str, after: &str| json!({ "id": id, "type": "text.template", "config": { "template": format!("{burn}{after}") } });
    let effect = |k: u32| {
        json!({ "id": format!("effect{k}"), "type": "http.request",
                "config": { "method": "POST", "url": format!("{stub}/effect/{k}/{{{{ execution.id }}}}") } })
    };
    let nodes = vec![
        pure("p1", "a"),
        effect(1),
        pure("p2", "b"),
        pure("p3", "c"),
        effect(2),
        pure("p4", "d"),
        pure("p5", "e"),
        effect(3),
        pure("p6", "{{ nodes.p1.output.text }}{{ nodes.p5.output.text }}"),
        json!({ "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.p6.output.text }}" } }),
    ];
    let order = ["p1", "effect1", "p2", "p3", "effect2", "p4", "p5", "effect3", "p6", "done"];
    let edges: Vec<Value> = order.windows(2).map(|w| json!({ "from": w[0], "to": w[1] })).collect();
    json!({ "name": "crash test", "nodes": nodes, "edges": edges })
}

/// Where a kill lands.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Once the execution runs: inside p1, before any side effect.
    Running(Duration),
    /// After effect k's step is recorded, plus this much: inside one of the pure nodes after it.
    Recorded(u32, Duration),
}

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name}: run through scripts/test"))
}

/// The worker's host: cargo lambda watch (its own process group) and the poller feeding it.
struct WorkerHost {
    watch: Child,
    poller: Child,
}

impl WorkerHost {
    async fn start(queue_url: &str, run: usize) -> WorkerHost {
        let port = free_port();
        let variables = [
            ("TABLE_NAME", env("TABLE_NAME")),
            ("CURSOR_SIGNING_KEY", "crash-test-signing-key-0123456789abcdef".to_string()),
            ("STAGE", "crash".to_string()),
            ("EXECUTION_QUEUE_URL", queue_url.to_string()),
            ("VALUES_BUCKET", env("VALUES_BUCKET")),
            ("HTTP_ALLOWED_PRIVATE_HOSTS", "127.0.0.1".to_string()),
            ("WORKER_TIMEOUT_SECONDS", "12".to_string()),
            ("AWS_ENDPOINT_URL", env("AWS_ENDPOINT_URL")),
            ("AWS_REGION", env("AWS_REGION")),
            ("AWS_ACCESS_KEY_ID", env("AWS_ACCESS_KEY_ID")),
            ("AWS_SECRET_ACCESS_KEY", env("AWS_SECRET_ACCESS_KEY")),
        ];
        let env_var = variables.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let log = |name: &str| {
            let dir = std::env::var("NODEAI_RUN_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
            std::fs::File::create(format!("{dir}/crash-{name}-{run}.log")).unwrap()
        };
        let watch = Command::new("cargo")
            .args(["lambda", "watch", "-A", "127.0.0.1", "-P", &port.to_string(), "--ignore-changes"])
            .args(["--env-var", &env_var])
            .current_dir(root())
            .process_group(0)
            .stdout(Stdio::from(log("watch")))
            .stderr(Stdio::from(log("watch-err")))
            .spawn()
            .expect("cargo lambda on PATH (scripts/test puts it there)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(120), "cargo lambda watch did not listen");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let invoke = format!("http://127.0.0.1:{port}/2015-03-31/functions/execution-worker/invocations");
        let poller = Command::new("python")
            .arg(root().join("scripts/sqs_poller.py"))
            .args([queue_url, &invoke])
            .env("AWS_DEFAULT_REGION", env("AWS_REGION"))
            .env("NODEAI_POLLER_VISIBILITY_SECONDS", "10")
            .env("NODEAI_POLLER_INVOKE_TIMEOUT_SECONDS", "30")
            .process_group(0)
            .stdout(Stdio::from(log("poller")))
            .stderr(Stdio::from(log("poller-err")))
            .spawn()
            .expect("python on PATH");
        WorkerHost { watch, poller }
    }

    /// SIGKILL: the worker process first (what a dead Lambda is), then its host and poller.
    /// Returns how many worker processes were killed.
    fn kill(mut self) -> usize {
        let watch_group = self.watch.id();
        let workers: Vec<u32> = descendants(watch_group)
            .into_iter()
            .filter(|pid| command_of(*pid).contains("target/debug/execution-worker"))
            .collect();
        for pid in &workers {
            signal(&pid.to_string());
        }
        signal(&format!("-{watch_group}"));
        signal(&format!("-{}", self.poller.id()));
        let _ = self.watch.wait();
        let _ = self.poller.wait();
        workers.len()
    }
}

fn signal(target: &str) {
    let _ = Command::new("bash").args(["-c", &format!("kill -KILL -- {target} 2>/dev/null")]).status();
}

fn command_of(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ")
}

/// Every process below `ancestor`, from /proc.
fn descendants(ancestor: u32) -> Vec<u32> {
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect();
    pids.into_iter()
        .filter(|pid| {
            let mut current = *pid;
            for _ in 0..32 {
                match parent_of(current) {
                    Some(parent) if parent == ancestor => return true,
                    Some(parent) if parent > 1 => current = parent,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// Waits (bounded) until `ready` holds for the execution; returns it with its steps.
async fn wait_for(
    store: &DynamoStore,
    tenant_id: &str,
    execution_id: &str,
    what: &str,
    ready: impl Fn(&nodeai::model::ExecutionRecord, &[nodeai::model::StepRecord]) -> bool,
) -> (nodeai::model::ExecutionRecord, Vec<nodeai::model::StepRecord>) {
    let started = Instant::now();
    loop {
        let execution = store.get_execution(tenant_id, execution_id).await.unwrap().unwrap();
        let steps = store.load_steps(tenant_id, execution_id).await.unwrap();
        if ready(&execution, &steps) {
            return (execution, steps);
        }
        assert!(started.elapsed() < Duration::from_secs(180), "waited 3 minutes for {what}: {execution:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn recorded(steps: &[nodeai::model::StepRecord], node: &str) -> bool {
    steps.iter().any(|s| s.node_id == node && s.status == nodeai::model::StepStatus::Succeeded)
}

#[tokio::test]
#[ignore = "needs the local stack's emulator and cargo-lambda: run through scripts/test"]
async fn a_worker_killed_at_node_boundaries_never_repeats_a_side_effect() {
    let stub = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/effect/[123]/[0-9A-Z]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_string("done"))
        .mount(&stub)
        .await;
    let store = DynamoStore::new(nodeai_tests::dynamo_client().await, env("TABLE_NAME"));
    let (tenant, _) = nodeai::auth::provision_tenant(&store, "crash", "enterprise", None).await.unwrap();
    let definition = nodeai::validation::validate_definition(&workflow(&stub.uri()), 100_000).unwrap();
    let record = nodeai::model::WorkflowRecord::new_draft(&tenant.tenant_id, definition);
    store.create_workflow(&record).await.unwrap();
    let (queue, queue_url) = nodeai_tests::fresh_queue().await;
    let input = json!({ "n": (0..900).collect::<Vec<u32>>() });
    // Each execution is killed twice, at different boundaries; together they cover the start,
    // the moment after each side effect is recorded, and the middle of pure stretches.
    let plans: [[KillAt; 2]; 3] = [
        [KillAt::Running(Duration::from_millis(200)), KillAt::Recorded(2, Duration::ZERO)],
        [KillAt::Recorded(1, Duration::ZERO), KillAt::Recorded(3, Duration::ZERO)],
        [KillAt::Recorded(1, Duration::from_millis(700)), KillAt::Recorded(2, Duration::from_millis(700))],
    ];
    let (mut kills, mut runs) = (0, 0);
    let mut host = WorkerHost::start(&queue_url, runs).await;
    let mut executions = Vec::new();
    for plan in plans {
        let command = StartCommand {
            tenant_id: &tenant.tenant_id,
            workflow: &record,
            version: VersionChoice::Draft,
            input: Some(input.clone()),
            idempotency_key: None,
            request_id: "crash-test",
            retention: Duration::from_secs(3 * 24 * 3600),
            trigger: None,
        };
        let Started::New(execution) = start(&store, &queue, command).await.unwrap() else { panic!("a new execution") };
        let id = execution.execution_id.clone();
        for kill in plan {
            match kill {
                KillAt::Running(after) => {
                    wait_for(&store, &tenant.tenant_id, &id, "running", |e, _| e.status.as_str() == "running").await;
                    tokio::time::sleep(after).await;
                }
                KillAt::Recorded(k, after) => {
                    let node = format!("effect{k}");
                    wait_for(&store, &tenant.tenant_id, &id, &node, |_, steps| recorded(steps, &node)).await;
                    tokio::time::sleep(after).await;
                }
            }
            let killed = host.kill();
            assert!(killed >= 1, "a worker process to kill at {kill:?}");
            kills += killed;
            runs += 1;
            host = WorkerHost::start(&queue_url, runs).await;
        }
        executions.push(id);
    }
    for id in &executions {
        let (done, _) = wait_for(&store, &tenant.tenant_id, id, "the end", |e, _| e.status.is_final()).await;
        assert_eq!((done.status.as_str(), &done.output), ("succeeded", &json!("ae")), "{done:?}");
    }
    host.kill();
    let received = stub.received_requests().await.unwrap_or_default();
    for id in &executions {
        for k in 1..=3 {
            let calls = received.iter().filter(|r| r.url.path() == format!("/effect/{k}/{id}")).count();
            assert_eq!(calls, 1, "effect {k} of {id} ran once, across {kills} kills");
        }
    }
}

/// Issue 11: a map whose worker is killed mid-map (SIGKILL, through the local path), twice,
/// each time just after an item's side effect was recorded. Every item's effect still runs
/// exactly once, every item is counted once, and the map's output keeps item order. One item
/// runs at a time (`concurrency: 1`), so each kill lands at a node boundary of the only item
/// in flight: a call cut off mid-flight may be made again (at least once), a recorded one never.
#[tokio::test]
#[ignore = "needs the local stack's emulator and cargo-lambda: run through scripts/test"]
async fn a_worker_killed_mid_map_still_runs_every_item_once() {
    let stub = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/item/[0-9]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_string("done"))
        .mount(&stub)
        .await;
    let store = DynamoStore::new(nodeai_tests::dynamo_client().await, env("TABLE_NAME"));
    let (tenant, _) = nodeai::auth::provision_tenant(&store, "crash map", "enterprise", None).await.unwrap();
    let tenant_id = tenant.tenant_id.as_str();
    // The item: its side effect, then half a second of pure work (where a kill lands), then out.
    let burn = "{% for i in input.item %}{% for j in input.item %}{% endfor %}{% endfor %}";
    let item = json!({ "name": "item", "nodes": [
        { "id": "effect", "type": "http.request",
          "config": { "method": "POST", "url": format!("{}/item/{{{{ input.index }}}}", stub.uri()) } },
        { "id": "burn", "type": "text.template", "config": { "template": format!("{burn}{{{{ input.index }}}}") } },
        { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.burn.output.text }}" } } ],
        "edges": [ { "from": "effect", "to": "burn" }, { "from": "burn", "to": "done" } ] });
    let item_definition = nodeai::validation::validate_definition(&item, 100_000).unwrap();
    let item_record = nodeai::model::WorkflowRecord::new_draft(tenant_id, item_definition.clone());
    store.create_workflow(&item_record).await.unwrap();
    let version = nodeai::model::VersionRecord {
        tenant_id: tenant_id.to_string(),
        workflow_id: item_record.workflow_id.clone(),
        version: 1,
        definition: item_definition,
        source_revision: item_record.revision,
        created_at: nodeai::model::now_rfc3339(),
    };
    store.publish_version(&version).await.unwrap();
    store.set_deployed_version(tenant_id, &item_record.workflow_id, 1, &nodeai::model::now_rfc3339()).await.unwrap();
    let parent = json!({ "name": "map", "nodes": [
        { "id": "each", "type": "flow.map",
          "config": { "workflow_id": item_record.workflow_id, "items": "{{ input.rows }}", "concurrency": 1 } },
        { "id": "out", "type": "flow.output", "config": { "value": "{{ nodes.each.output }}" } } ],
        "edges": [ { "from": "each", "to": "out" } ] });
    let parent_definition = nodeai::validation::validate_definition(&parent, 100_000).unwrap();
    let parent_record = nodeai::model::WorkflowRecord::new_draft(tenant_id, parent_definition);
    store.create_workflow(&parent_record).await.unwrap();
    let (queue, queue_url) = nodeai_tests::fresh_queue().await;
    let burn_size: Vec<u32> = (0..900).collect();
    let rows: Vec<Value> = (0..8).map(|_| json!(burn_size)).collect();
    let command = StartCommand {
        tenant_id,
        workflow: &parent_record,
        version: VersionChoice::Draft,
        input: Some(json!({ "rows": rows })),
        idempotency_key: None,
        request_id: "crash-map",
        retention: Duration::from_secs(3 * 24 * 3600),
        trigger: None,
    };
    let mut host = WorkerHost::start(&queue_url, 100).await;
    let Started::New(execution) = start(&store, &queue, command).await.unwrap() else { panic!("a new execution") };
    let id = execution.execution_id.clone();
    let mut kills = 0;
    for (run, index) in [1u32, 5].into_iter().enumerate() {
        let child = nodeai::model::child_execution_id(&id, "each", index);
        let what = format!("item {index}'s effect");
        let started = Instant::now();
        // The child exists once the window reaches it; then its effect is recorded.
        loop {
            if store.get_execution(tenant_id, &child).await.unwrap().is_some() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(180), "the map never reached item {index}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        wait_for(&store, tenant_id, &child, &what, |_, steps| recorded(steps, "effect")).await;
        kills += host.kill();
        host = WorkerHost::start(&queue_url, 101 + run).await;
    }
    assert!(kills >= 2, "a worker process was killed each time");
    let (done, _) = wait_for(&store, tenant_id, &id, "the map's end", |e, _| e.status.is_final()).await;
    host.kill();
    assert_eq!(done.status.as_str(), "succeeded", "{done:?}");
    let expected: Vec<Value> = (0..8).map(|i| json!(i.to_string())).collect();
    assert_eq!(done.output, Value::Array(expected), "every item's output, in item order");
    let received = stub.received_requests().await.unwrap_or_default();
    for index in 0..8 {
        let calls = received.iter().filter(|r| r.url.path() == format!("/item/{index}")).count();
        assert_eq!(calls, 1, "item {index}'s effect ran once across {kills} kills");
    }
    let batch = store.get_child_batch(tenant_id, &id, "each").await.unwrap().unwrap();
    assert_eq!((batch.succeeded, batch.failed), (8, 0), "each item counted once");
}
