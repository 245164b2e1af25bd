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
