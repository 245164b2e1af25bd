//! The request path in-process, on the in-memory store: what NodeAI's own code costs per request,
//! apart from DynamoDB and API Gateway. Run through `scripts/bench`; plain timing loops (no
//! criterion) to keep the build small. Figures: mean, p50, p99 per operation, and peak RSS.

use lambda_http::{Body, Request, RequestExt};
use nodeai::api::{App, Route, handle};
use nodeai::config::Config;
use nodeai::store::memory::MemoryStore;
use nodeai::validation::validate_definition;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn summarize_workflow() -> Value {
    serde_json::from_str(include_str!("../../events/fixtures/summarize-workflow.json")).unwrap()
}

/// The largest definition allowed: 200 nodes in a chain, each templating its predecessor.
fn max_chain() -> Value {
    let mut nodes = vec![json!({ "id": "n0", "type": "text.template", "config": { "template": "{{ input.x }}" } })];
    let mut edges = Vec::new();
    for i in 1..200 {
        nodes.push(json!({ "id": format!("n{i}"), "type": "text.template",
                           "config": { "template": format!("{{{{ nodes.n{}.output.text }}}} and more", i - 1) } }));
        edges.push(json!({ "from": format!("n{}", i - 1), "to": format!("n{i}") }));
    }
    json!({ "name": "chain", "nodes": nodes, "edges": edges })
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len();
    let mean = samples.iter().sum::<Duration>() / n as u32;
    let pct = |p: f64| samples[((n as f64 * p) as usize).min(n - 1)];
    println!(
        "{name:<42} n={n:<6} mean={:>9.1}us p50={:>9.1}us p99={:>9.1}us",
        mean.as_secs_f64() * 1e6,
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6
    );
}

fn time<F: FnMut()>(iterations: usize, mut f: F) -> Vec<Duration> {
    for _ in 0..iterations / 10 {
        f(); // warm-up
    }
    (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect()
}

fn request(method: &str, path: &str, key: &str, params: &[(&str, &str)], body: Option<&Value>) -> Request {
    let mut builder =
        lambda_http::http::Request::builder().method(method).uri(path).header("authorization", format!("Bearer {key}"));
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let body = body.map(|b| Body::Text(b.to_string())).unwrap_or(Body::Empty);
    let params: HashMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    builder.body(body).unwrap().with_path_parameters(params)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);

    let small = summarize_workflow();
    let small_len = small.to_string().len();
    report(
        "validate: README example (3 nodes)",
        time(iterations, || {
            validate_definition(&small, small_len).unwrap();
        }),
    );
    let chain = max_chain();
    let chain_len = chain.to_string().len();
    report(
        "validate: 200-node chain (max size)",
        time(iterations / 10, || {
            validate_definition(&chain, chain_len).unwrap();
        }),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let store = Arc::new(MemoryStore::new());
    let config = Config::from_lookup(|name| match name {
        "TABLE_NAME" => Some("bench".into()),
        "CURSOR_SIGNING_KEY" => Some("bench-signing-key-0123456789abcdef".into()),
        _ => None,
    })
    .unwrap();
    let app = App::new(config).with_store(store.clone()).with_secrets(store.clone());
    let key = runtime.block_on(nodeai::auth::provision_tenant(store.as_ref(), "bench", "free", None)).unwrap().1;

    let mut created = Vec::new();
    report(
        "handle: POST /v1/workflows (memory store)",
        time(iterations, || {
            let response = runtime.block_on(handle(
                &app,
                Route::CreateWorkflow,
                request("POST", "/v1/workflows", &key, &[], Some(&small)),
            ));
            assert_eq!(response.status(), 201);
            created.push(response);
        }),
    );
    let id = serde_json::from_slice::<Value>(created[0].body().as_ref()).unwrap()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/workflows/{id}");
    report(
        "handle: GET /v1/workflows/{id}",
        time(iterations, || {
            let response = runtime.block_on(handle(
                &app,
                Route::GetWorkflow,
                request("GET", &path, &key, &[("workflow_id", &id)], None),
            ));
            assert_eq!(response.status(), 200);
        }),
    );
    report(
        "handle: GET /v1/workflows (20 of many)",
        time(iterations / 4, || {
            let response =
                runtime.block_on(handle(&app, Route::ListWorkflows, request("GET", "/v1/workflows", &key, &[], None)));
            assert_eq!(response.status(), 200);
        }),
    );
    report(
        "handle: 401 (unknown key)",
        time(iterations, || {
            let response = runtime.block_on(handle(
                &app,
                Route::ListWorkflows,
                request("GET", "/v1/workflows", "nk_nope", &[], None),
            ));
            assert_eq!(response.status(), 401);
        }),
    );
    if let Some(kib) = peak_rss_kib() {
        println!(
            "peak RSS: {:.1} MiB (holding {} workflows in memory)",
            kib as f64 / 1024.0,
            created.len() + iterations / 10
        );
    }
}
