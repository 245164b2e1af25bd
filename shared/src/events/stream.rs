//! The reading side: an execution's events as a server-sent event stream
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html>).
//!
//! Each event is `id: <seq>-<index>`, `event: <type>`, `data: <one JSON line>`; comment lines
//! (`: keep-alive`) are heartbeats. The stream polls the record: every `poll` while events come
//! (tokens streaming), backing off to `idle_poll` when nothing does; it reads the execution
//! item only when a poll found no new events, so a busy run costs one Query per poll. When the
//! execution is final (read before the last Query, so nothing written before the end is
//! missed) it sends the final event and ends. It ends on its own, with a comment saying so,
//! before `max_duration` (API Gateway ends streams at 15 minutes): the client reconnects with
//! `Last-Event-ID` and loses nothing.

use super::{EventId, ExecutionEvent, FINAL_INDEX};
use crate::error::StoreError;
use crate::model::ExecutionRecord;
use crate::store::Store;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How a stream polls and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// Between polls while events come (and the first backoff step).
    pub poll: Duration,
    /// The longest pause between polls when nothing happens.
    pub idle_poll: Duration,
    /// A comment line after this long without anything sent.
    pub heartbeat: Duration,
    /// The stream ends on its own before this (`EVENTS_STREAM_MAX_SECONDS`).
    pub max_duration: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            poll: Duration::from_millis(250),
            idle_poll: Duration::from_secs(2),
            heartbeat: Duration::from_secs(15),
            max_duration: Duration::from_secs(840),
        }
    }
}

/// What a stream is for: a tenant's execution, from after `after` (the client's
/// `Last-Event-ID`; None: from the first event).
#[derive(Clone)]
pub struct Subscription {
    pub store: Arc<dyn Store>,
    pub tenant_id: String,
    pub execution_id: String,
    pub after: Option<EventId>,
    pub settings: StreamSettings,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("execution_id", &self.execution_id).field("after", &self.after).finish()
    }
}

/// The client's reconnection delay, sent first (ms).
pub const RETRY_MS: u64 = 1000;

/// One SSE event frame. `data` is one line of JSON: `{"type", "at", ...the event's fields}`.
pub fn frame(id: EventId, event: &ExecutionEvent) -> String {
    let mut data = match &event.data {
        Value::Object(fields) => fields.clone(),
        other => serde_json::Map::from_iter([("value".to_string(), other.clone())]),
    };
    data.insert("type".into(), json!(event.kind));
    data.insert("at".into(), json!(event.at));
    // serde_json writes no raw newline: the data is one line, as SSE needs.
    format!("id: {id}\nevent: {}\ndata: {}\n\n", event.kind, Value::Object(data))
}

/// The final event of an execution whose record is final: made from the record, never stored.
pub fn final_event(record: &ExecutionRecord) -> ExecutionEvent {
    let mut data = json!({ "status": record.status.as_str() });
    if let Some(error) = &record.error {
        data["error"] = json!(error);
    }
    if !record.output.is_null() {
        super::put_output(&mut data, &record.output, &record.tenant_id, &record.execution_id);
    }
    ExecutionEvent {
        kind: format!("execution.{}", record.status.as_str()),
        at: record.finished_at.clone().unwrap_or_else(crate::model::now_rfc3339),
        data,
    }
}

/// Sends the subscription's events to `out` as SSE text until the execution's final event, the
/// stream's maximum duration, or the client going away (`out` closed). A store error ends the
/// stream with a comment (the client reconnects); it is returned for the log.
pub async fn pump(subscription: Subscription, out: mpsc::Sender<String>) -> Result<(), StoreError> {
    let result = pump_events(subscription, out.clone()).await;
    if result.is_err() {
        let _ = out.send(": the events could not be read just now; reconnect with Last-Event-ID\n\n".into()).await;
    }
    result
}

async fn pump_events(subscription: Subscription, out: mpsc::Sender<String>) -> Result<(), StoreError> {
    let Subscription { store, tenant_id, execution_id, after, settings } = subscription;
    let opened = Instant::now();
    let mut cursor = after;
    // The seq to read from: the cursor's own batch again (the events after it in that batch).
    let mut from_seq = after.map(|c| c.seq).unwrap_or(1);
    let mut last_seq = after.map(|c| c.seq.saturating_sub(1)).unwrap_or(0);
    let mut last_sent = Instant::now();
    let mut pause = settings.poll;
    let send = |text: String| {
        let out = out.clone();
        async move { out.send(text).await.is_ok() }
    };
    if !send(format!("retry: {RETRY_MS}\n\n")).await {
        return Ok(());
    }
    loop {
        // Read before the events: a final status seen here means every event is written.
        let mut record: Option<ExecutionRecord> = None;
        let mut sent_any = false;
        loop {
            let batches = store.read_events(&tenant_id, &execution_id, from_seq, PAGE).await?;
            let full_page = batches.len() == PAGE;
            for batch in batches {
                for (index, event) in batch.events.iter().enumerate() {
                    let id = EventId { seq: batch.seq, index: index as u32 };
                    if cursor.is_some_and(|c| id <= c) {
                        continue;
                    }
                    if !send(frame(id, event)).await {
                        return Ok(());
                    }
                    cursor = Some(id);
                    sent_any = true;
                }
                last_seq = last_seq.max(batch.seq);
                from_seq = batch.seq + 1;
            }
            if full_page {
                continue;
            }
            if sent_any || record.is_some() {
                break;
            }
            // Nothing new: is it over? If so, read once more (events written before the end).
            match store.get_execution(&tenant_id, &execution_id).await? {
                Some(found) if found.status.is_final() => record = Some(found),
                Some(_) => break,
                None => return Ok(()),
            }
        }
        if let Some(record) = record {
            let id = EventId { seq: last_seq, index: FINAL_INDEX };
            send(frame(id, &final_event(&record))).await;
            return Ok(());
        }
        if sent_any {
            last_sent = Instant::now();
            pause = settings.poll;
        } else {
            pause = (pause * 2).min(settings.idle_poll);
            if last_sent.elapsed() >= settings.heartbeat {
                if !send(": keep-alive\n\n".to_string()).await {
                    return Ok(());
                }
                last_sent = Instant::now();
            }
        }
        if opened.elapsed() + pause >= settings.max_duration {
            send(": the stream's time is up; reconnect with Last-Event-ID\n\n".to_string()).await;
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = out.closed() => return Ok(()),
        }
    }
}

/// Batches read per Query.
const PAGE: usize = 100;

/// Whether a client that already has `after` has everything: the execution is final and `after`
/// is its final event's id, `<last seq>-FINAL_INDEX` (or later). Such a reconnect is answered
/// 204, which tells an EventSource to stop reconnecting. (A run redriven since is not final: the
/// reconnect gets the redrive's events.)
pub async fn already_complete(
    store: &dyn Store,
    record: &ExecutionRecord,
    after: Option<EventId>,
) -> Result<bool, StoreError> {
    let Some(after) = after else { return Ok(false) };
    if !record.status.is_final() {
        return Ok(false);
    }
    let last = store.last_event_seq(&record.tenant_id, &record.execution_id).await?;
    Ok(after >= EventId { seq: last, index: FINAL_INDEX })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventLog, kind};
    use crate::model::{ExecutionStatus, WorkflowDefinition};
    use crate::store::memory::MemoryStore;
    use crate::store::{ExecutionEnd, ExecutionStore, LeaseGuard};

    fn fast() -> StreamSettings {
        StreamSettings {
            poll: Duration::from_millis(5),
            idle_poll: Duration::from_millis(20),
            heartbeat: Duration::from_millis(30),
            max_duration: Duration::from_secs(10),
        }
    }

    async fn execution(store: &MemoryStore) -> ExecutionRecord {
        let definition: WorkflowDefinition = serde_json::from_value(
            json!({ "name": "w", "nodes": [ { "id": "out", "type": "flow.output", "config": { "value": 1 } } ] }),
        )
        .unwrap();
        let record = ExecutionRecord::queued("t1", "wf", None, json!({}), "r", Duration::from_secs(600));
        store.create_execution(&record, &definition).await.unwrap();
        record
    }

    /// Every frame until the stream ends.
    async fn read_all(subscription: Subscription) -> Vec<String> {
        let (out, mut frames) = mpsc::channel(1000);
        let pump = tokio::spawn(pump(subscription, out));
        let mut all = Vec::new();
        while let Some(frame) = frames.recv().await {
            all.push(frame);
        }
        pump.await.unwrap().unwrap();
        all
    }

    fn ids(frames: &[String]) -> Vec<String> {
        frames.iter().filter_map(|f| f.strip_prefix("id: ").map(|r| r.lines().next().unwrap().to_string())).collect()
    }

    #[tokio::test]
    async fn a_stream_sends_every_event_then_the_final_one_and_resumes_after_an_id() {
        let store = Arc::new(MemoryStore::new());
        let record = execution(&store).await;
        let id = record.execution_id.clone();
        let (log, writer) = EventLog::open(store.as_ref(), "t1", &id);
        let subscription = |after| Subscription {
            store: store.clone(),
            tenant_id: "t1".into(),
            execution_id: id.clone(),
            after,
            settings: fast(),
        };
        let (run_store, run_id) = (store.clone(), id.clone());
        let run = async move {
            let (store, id) = (run_store, run_id);
            log.emit(kind::EXECUTION_STARTED, json!({}));
            log.flush().await;
            log.step_started("a", "text.template");
            log.emit(kind::STEP_SUCCEEDED, json!({ "node_id": "a", "output": "line one\nline two" }));
            log.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            log.step_started("out", "flow.output");
            log.flush().await;
            let end = ExecutionEnd::now(ExecutionStatus::Succeeded, json!({ "ok": true }), None);
            let now = crate::model::now_rfc3339();
            store.finish_execution("t1", &id, end, &[], LeaseGuard::Free { now: &now }).await.unwrap();
            drop(log);
        };
        let (frames, _, _) = tokio::join!(read_all(subscription(None)), run, writer);
        assert!(frames[0].starts_with("retry: 1000"), "{frames:?}");
        assert_eq!(ids(&frames), ["1-0", "2-0", "2-1", "3-0", "3-99999"], "{frames:?}");
        let last = frames.last().unwrap();
        assert!(last.contains("event: execution.succeeded") && last.contains(r#""output":{"ok":true}"#), "{last}");
        assert!(frames[3].contains(r#"line one\nline two"#), "data stays one line: {}", frames[3]);
        // A reconnect after 2-0 gets the rest, once.
        let rest = read_all(subscription(Some("2-0".parse().unwrap()))).await;
        assert_eq!(ids(&rest), ["2-1", "3-0", "3-99999"]);
        let done = store.get_execution("t1", &id).await.unwrap().unwrap();
        assert!(already_complete(store.as_ref(), &done, Some("3-99999".parse().unwrap())).await.unwrap());
        assert!(!already_complete(store.as_ref(), &done, Some("3-0".parse().unwrap())).await.unwrap());
        // Redriven (not final any more): a reconnect after the final id gets what comes next.
        let (log, writer) = EventLog::open(store.as_ref(), "t1", &id);
        let rerun = async move {
            log.emit(kind::EXECUTION_STARTED, json!({ "redrive_count": 1 }));
            drop(log);
        };
        tokio::join!(rerun, writer);
        let mut running = done.clone();
        running.status = ExecutionStatus::Running;
        assert!(!already_complete(store.as_ref(), &running, Some("3-99999".parse().unwrap())).await.unwrap());
        let again = read_all(subscription(Some("3-99999".parse().unwrap()))).await;
        assert_eq!(ids(&again)[0], "4-0", "the redrive's start, not skipped: {again:?}");
    }

    #[tokio::test]
    async fn an_idle_stream_sends_heartbeats_and_ends_before_its_maximum_duration() {
        let store = Arc::new(MemoryStore::new());
        let record = execution(&store).await;
        let settings = StreamSettings { max_duration: Duration::from_millis(200), ..fast() };
        let subscription = Subscription {
            store: store.clone(),
            tenant_id: "t1".into(),
            execution_id: record.execution_id.clone(),
            after: None,
            settings,
        };
        let frames = read_all(subscription).await;
        assert!(frames.iter().any(|f| f == ": keep-alive\n\n"), "{frames:?}");
        assert!(frames.last().unwrap().contains("reconnect with Last-Event-ID"), "{frames:?}");
        assert!(ids(&frames).is_empty());
    }

    #[tokio::test]
    async fn another_tenants_stream_ends_at_once_with_nothing() {
        let store = Arc::new(MemoryStore::new());
        let record = execution(&store).await;
        let subscription = Subscription {
            store: store.clone(),
            tenant_id: "t2".into(),
            execution_id: record.execution_id.clone(),
            after: None,
            settings: fast(),
        };
        assert_eq!(read_all(subscription).await, ["retry: 1000\n\n"]);
    }
}
