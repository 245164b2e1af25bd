//! Orchestration CPU per node, in-process (issue 3's benchmark, part 1): the engine running DAGs
//! of 10, 100 and 1,000 stub nodes on the in-memory store. Stub nodes answer at once, so what is
//! measured is NodeAI's own work per node: readiness, scope building, step bookkeeping, and the
//! step writes of side-effecting nodes. Target: at most 50 us per node. Run through scripts/bench.

use async_trait::async_trait;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nodeai::engine::{NodeCall, NodeExecutor, NodeFailure, NodeOutput, RunContext, RunOutcome, StopReason, run};
use nodeai::model::{EdgeSpec, NodeSpec, OnError, WorkflowDefinition};
use nodeai::store::memory::MemoryStore;
use serde_json::{Value, json};

/// Answers every node with a small output, without templating or I/O.
struct StubNode;

#[async_trait]
impl NodeExecutor for StubNode {
    fn has_side_effects(&self, node_type: &str) -> bool {
        nodeai::nodes::has_side_effects(node_type)
    }

    async fn execute(&self, call: &NodeCall<'_>) -> Result<NodeOutput, NodeFailure> {
        Ok(json!({ "id": call.node.id, "ok": true }).into())
    }
}

fn node(id: String, node_type: &str) -> NodeSpec {
    NodeSpec {
        id,
        node_type: node_type.into(),
        config: json!({}),
        retry: None,
        timeout_ms: None,
        on_error: OnError::Fail,
    }
}

/// `n` nodes in layers of 10: node i depends on node i-10, so each wave has 10 ready nodes.
/// One in `side_effect_every` nodes is side-effecting (its step is written on its own).
fn layered(n: usize, side_effect_every: usize) -> WorkflowDefinition {
    let nodes = (0..n)
        .map(|i| {
            let kind = if i % side_effect_every == 0 { "http.request" } else { "text.template" };
            node(format!("n{i}"), kind)
        })
        .collect();
    let edges = (10..n).map(|i| EdgeSpec { from: format!("n{}", i - 10), to: format!("n{i}"), when: None }).collect();
    WorkflowDefinition {
        name: format!("layered {n}"),
        description: None,
        tags: Vec::new(),
        input_schema: None,
        nodes,
        edges,
        timeout_seconds: None,
        events: None,
        max_cost_usd: None,
    }
}

fn never() -> Option<StopReason> {
    None
}

fn orchestration(c: &mut Criterion) {
    measure(c, "orchestration");
}

/// The same with the worker's telemetry as deployed: the JSON subscriber at `info` (each node
/// runs in an enabled span; lines go to a sink, not a terminal) and the EMF recorder, flushed
/// after every run as the worker flushes after every batch.
fn orchestration_with_telemetry(c: &mut Criterion) {
    nodeai::telemetry::init_with_writer("info", std::io::sink);
    nodeai::telemetry::init_metrics("bench");
    measure(c, "orchestration with telemetry");
}

fn measure(c: &mut Criterion, group_name: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let input = json!({ "x": 1 });
    let mut group = c.benchmark_group(group_name);
    group.sample_size(20);
    for (label, side_effect_every) in [("pure", usize::MAX), ("1 in 5 side-effecting", 5)] {
        for n in [10usize, 100, 1000] {
            let definition = layered(n, side_effect_every);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(label, n), &definition, |b, definition| {
                b.iter(|| {
                    let store = MemoryStore::new();
                    let ctx = RunContext {
                        request_id: "req-1",
                        tenant_id: "t1",
                        execution_id: "e1",
                        workflow_id: "wf1",
                        input: &input,
                        definition,
                        timeout_at: None,
                        checkpoint_at: None,
                        values: None,
                        waits: &[],
                        deadline_at: None,
                        callbacks: None,
                        children: None,
                        // The engine's own time; event writes are the store's (aws_requests).
                        events: &nodeai::events::EVENTS_OFF,
                        resumed: false,
                    };
                    let result = runtime.block_on(run(&ctx, &store, &StubNode, &never, 10)).unwrap();
                    assert!(matches!(result.outcome, RunOutcome::Succeeded { .. }));
                    nodeai::telemetry::flush_metrics(std::io::sink());
                    std::hint::black_box::<Value>(result.unrecorded.len().into());
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, orchestration, orchestration_with_telemetry);
criterion_main!(benches);
