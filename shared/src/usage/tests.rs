use super::*;
use crate::model::{ExecutionUsage, ModelUsage};
use crate::store::memory::MemoryStore;

fn spent(node_runs: u64, calls: &[(&str, u64, u64, u64)]) -> ExecutionUsage {
    ExecutionUsage {
        node_runs,
        models: calls
            .iter()
            .map(|&(model, input, output, cost)| {
                let used = ModelUsage {
                    calls: 1,
                    input_tokens: input,
                    output_tokens: output,
                    cost_nano_usd: cost,
                    ..ModelUsage::default()
                };
                (model.to_string(), used)
            })
            .collect(),
    }
}

fn finish(tenant: &str, workflow: &str, status: ExecutionStatus, at: &str, spent: ExecutionUsage) -> FinishedExecution {
    FinishedExecution {
        tenant_id: tenant.into(),
        execution_id: ulid::Ulid::new().to_string(),
        workflow_id: workflow.into(),
        status,
        finished_at: at.into(),
        spent,
    }
}

async fn rows(store: &MemoryStore, group: UsageGroup, from: &str, to: &str) -> Vec<UsageRow> {
    store.list_usage("t1", group, from, to, None, 1000).await.unwrap().items
}

/// Ten executions over two workflows and two models: the counters are exact, by day, workflow
/// and model.
#[tokio::test]
async fn ten_executions_over_two_workflows_and_two_models_give_exact_counters() {
    let store = MemoryStore::default();
    let at = "2030-03-04T10:00:00.000Z";
    let mut finishes = Vec::new();
    for i in 0..10u64 {
        let (workflow, model) = if i < 6 { ("wf-a", "gpt-4o-mini") } else { ("wf-b", "claude-haiku-4-5") };
        let status = if i % 5 == 4 { ExecutionStatus::Failed } else { ExecutionStatus::Succeeded };
        finishes.push(finish("t1", workflow, status, at, spent(3, &[(model, 100 + i, 10, 1_000 * (i + 1))])));
    }
    // One batch of 4 and one of 6, as the stream may cut them.
    assert_eq!(count_finishes(&store, &finishes[..4]).await.unwrap(), 4);
    assert_eq!(count_finishes(&store, &finishes[4..]).await.unwrap(), 6);
    let day = rows(&store, UsageGroup::Day, "2030-03-04", "2030-03-04").await;
    assert_eq!(day.len(), 1);
    let total = day[0].counters;
    assert_eq!((total.executions_succeeded, total.executions_failed, total.executions()), (8, 2, 10));
    assert_eq!((total.node_runs, total.llm_calls), (30, 10));
    assert_eq!((total.input_tokens, total.output_tokens), (1045, 100), "100+..+109 in, 10 x 10 out");
    assert_eq!(total.model_cost_nano_usd, 55_000, "1+..+10 thousand");
    assert_eq!(total.aws_cost_nano_usd, 10 * AWS_COST_PER_EXECUTION_NANO_USD);
    let workflows = rows(&store, UsageGroup::Workflow, "2030-03-04", "2030-03-04").await;
    let names: Vec<_> = workflows.iter().map(|r| r.name.clone().unwrap()).collect();
    assert_eq!(names, ["wf-a", "wf-b"]);
    let (a, b) = (workflows[0].counters, workflows[1].counters);
    assert_eq!((a.executions(), a.executions_failed, a.input_tokens, a.model_cost_nano_usd), (6, 1, 615, 21_000));
    assert_eq!((b.executions(), b.executions_failed, b.input_tokens, b.model_cost_nano_usd), (4, 1, 430, 34_000));
    let models = rows(&store, UsageGroup::Model, "2030-03-04", "2030-03-04").await;
    let by_model: Vec<_> = models.iter().map(|r| (r.name.clone().unwrap(), r.counters.llm_calls)).collect();
    assert_eq!(by_model, [("claude-haiku-4-5".to_string(), 4), ("gpt-4o-mini".to_string(), 6)]);
    assert_eq!(models[0].counters.executions(), 0, "model rows count calls, not executions");
}

#[tokio::test]
async fn a_redelivered_batch_counts_once_and_a_finish_is_counted_on_its_day() {
    let store = MemoryStore::default();
    let late = finish("t1", "wf", ExecutionStatus::Succeeded, "2030-03-04T23:59:59.999Z", spent(1, &[("m", 5, 5, 7)]));
    let early = finish("t1", "wf", ExecutionStatus::Cancelled, "2030-03-05T00:00:00.000Z", spent(2, &[]));
    let batch = [late.clone(), early];
    assert_eq!(count_finishes(&store, &batch).await.unwrap(), 2);
    // Lambda retries a batch whose invocation failed: the same records, or more of them.
    assert_eq!(count_finishes(&store, &batch).await.unwrap(), 0, "both were counted");
    let later = finish("t1", "wf", ExecutionStatus::Failed, "2030-03-05T00:00:01.000Z", spent(1, &[]));
    assert_eq!(count_finishes(&store, &[later, late]).await.unwrap(), 1, "only the new one counts");
    let days = rows(&store, UsageGroup::Day, "2030-03-01", "2030-03-31").await;
    let split: Vec<_> = days.iter().map(|r| (r.day.as_str(), r.counters.executions(), r.counters.node_runs)).collect();
    assert_eq!(split, [("2030-03-04", 1, 1), ("2030-03-05", 2, 3)], "once each, on the day it ended");
    assert_eq!(days[1].counters.executions_cancelled, 1);
    assert_eq!(rows(&store, UsageGroup::Day, "2030-03-05", "2030-03-05").await.len(), 1, "the range is by day");
    assert!(
        store.list_usage("t2", UsageGroup::Day, "2030-01-01", "2030-12-31", None, 10).await.unwrap().items.is_empty()
    );
}

#[test]
fn a_redriven_finish_counts_only_what_it_spent_since() {
    // The stream's old image holds what the redrive kept; the new one all the run spent.
    let kept = spent(2, &[("m", 100, 10, 1_000)]);
    let now = ExecutionUsage {
        node_runs: 3,
        models: [(
            "m".to_string(),
            ModelUsage { calls: 2, input_tokens: 160, output_tokens: 20, cost_nano_usd: 1_600, ..Default::default() },
        )]
        .into(),
    };
    let since = now.minus(&kept);
    let rows = aggregate(&[finish("t1", "wf", ExecutionStatus::Succeeded, "2030-01-01T00:00:00Z", since)]);
    let day = rows.iter().find(|r| r.group == UsageGroup::Day).unwrap();
    assert_eq!((day.counters.node_runs, day.counters.llm_calls, day.counters.input_tokens), (1, 1, 60));
    assert_eq!(day.counters.model_cost_nano_usd, 600);
}

#[tokio::test]
async fn a_large_batch_splits_into_transactions_that_fit() {
    let store = MemoryStore::default();
    // 300 finishes over 150 workflows: more markers and rows than one transaction holds.
    let finishes: Vec<_> = (0..300)
        .map(|i| {
            let workflow = format!("wf-{:03}", i % 150);
            finish("t1", &workflow, ExecutionStatus::Succeeded, "2030-04-01T12:00:00Z", spent(1, &[("m", 1, 1, 1)]))
        })
        .collect();
    for chunk in chunks(&finishes) {
        assert!(chunk.len() + aggregate(chunk).len() <= MAX_TRANSACTION_ITEMS);
    }
    assert_eq!(count_finishes(&store, &finishes).await.unwrap(), 300);
    let day = rows(&store, UsageGroup::Day, "2030-04-01", "2030-04-01").await;
    assert_eq!((day[0].counters.executions(), day[0].counters.llm_calls), (300, 300));
    assert_eq!(rows(&store, UsageGroup::Workflow, "2030-04-01", "2030-04-01").await.len(), 150);
}
