use super::*;
use crate::nodes::prices::{PriceTable, configured_price};
use crate::store::memory::MemoryStore;

#[test]
fn the_worst_case_is_every_prompt_byte_a_token_plus_the_output_allowed() {
    let prices = PriceTable::with_configured(vec![configured_price("m", 1.0, 2.0, None)]);
    // 1,000 bytes at $1/M + 500 output tokens at $2/M = $0.002.
    assert_eq!(worst_case_nano(&prices, "m", 1000, Some(500)), Some(2_000_000));
    // No max_tokens: the default reservation.
    assert_eq!(worst_case_nano(&prices, "m", 0, None), Some(DEFAULT_RESERVED_OUTPUT_TOKENS * 2_000));
    assert_eq!(worst_case_nano(&prices, "unpriced", 10, Some(10)), None);
}

#[tokio::test]
async fn alerts_go_out_once_per_threshold_and_month() {
    let store = MemoryStore::default();
    let budget = Budget {
        monthly_usd: 1.0,
        alert_at_percent: vec![50, 80, 100],
        on_exceed: OnExceed::StopModelCalls,
        updated_at: String::new(),
    };
    let spend = |spent: u64, sent: Vec<u32>| MonthSpend { spent_nano: spent, committed_nano: spent, alerts_sent: sent };
    let first = announce_alerts(&store, "t1", "2030-01", &budget, &spend(850_000_000, vec![])).await.unwrap();
    assert_eq!(first, [50, 80], "85% crosses 50 and 80");
    let again = announce_alerts(&store, "t1", "2030-01", &budget, &spend(900_000_000, vec![])).await.unwrap();
    assert!(again.is_empty(), "already announced this month (the store knows, whatever the caller read)");
    let full = announce_alerts(&store, "t1", "2030-01", &budget, &spend(1_000_000_000, vec![50, 80])).await.unwrap();
    assert_eq!(full, [100]);
    let next_month = announce_alerts(&store, "t1", "2030-02", &budget, &spend(500_000_000, vec![])).await.unwrap();
    assert_eq!(next_month, [50]);
}

#[test]
fn months_are_utc_calendar_months() {
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
    assert_eq!(month_of(at("2030-01-31T23:59:59.999Z")), "2030-01");
    assert_eq!(month_of(at("2030-01-31T23:30:00-01:00")), "2030-02");
}

#[tokio::test]
async fn a_reservation_settles_to_the_cost_and_one_dropped_unsettled_counts_at_its_worst_case() {
    let store: std::sync::Arc<dyn crate::store::Store> = std::sync::Arc::new(MemoryStore::default());
    let budget = Budget {
        monthly_usd: 1.0,
        alert_at_percent: vec![],
        on_exceed: OnExceed::StopModelCalls,
        updated_at: String::new(),
    };
    store.put_budget("t1", &budget).await.unwrap();
    let node: crate::model::NodeSpec =
        serde_json::from_value(serde_json::json!({ "id": "a", "type": "llm.chat", "config": {} })).unwrap();
    let scope = serde_json::json!({});
    let call = crate::engine::NodeCall {
        tenant_id: "t1",
        node: &node,
        scope: &scope,
        events: &crate::events::EVENTS_OFF,
        attempt: 1,
        spend: &crate::engine::NO_RUN_LIMIT,
    };
    let prices = PriceTable::with_configured(vec![configured_price("m", 1.0, 2.0, None)]);
    let month = month_of(chrono::Utc::now());
    // Worst case: 1,000 bytes at $1/M + 500 tokens at $2/M = $0.002; the call cost $0.0005.
    let settled = reserve_call(call.tenant_id, call.spend, Some(&store), &prices, "m", 1000, Some(500)).await.unwrap();
    assert_eq!(store.month_spend("t1", &month).await.unwrap().reserved_nano(), 2_000_000);
    settled.settle(Some(0.0005)).await;
    let spend = store.month_spend("t1", &month).await.unwrap();
    assert_eq!((spend.spent_nano, spend.reserved_nano()), (500_000, 0));
    // A node cut off mid-call drops its reservation: the call may have been billed.
    let cut = reserve_call(call.tenant_id, call.spend, Some(&store), &prices, "m", 1000, Some(500)).await.unwrap();
    drop(cut);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let spend = store.month_spend("t1", &month).await.unwrap();
    assert_eq!((spend.spent_nano, spend.reserved_nano()), (2_500_000, 0));
}
