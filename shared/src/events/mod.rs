//! Execution events: what a run did, in order, for clients that watch it live
//! (`GET /v1/executions/{id}/events`, server-sent events).
//!
//! **Record.** The worker that holds an execution's lease is its only writer. It appends events
//! in *batches*: one DynamoDB item per batch (`T#<tenant>#EX#<execution>` / `EV#<10-digit seq>`),
//! holding every event that came while the previous batch was being written. Batches are written
//! one after another (each conditional on its seq being free), so a reader that sees batch `n`
//! has seen every batch before it: a strongly consistent Query from a cursor never skips one.
//! A run of a few nodes costs one write per wave boundary rather than one per event.
//!
//! **Ids.** An event's id is `<seq>-<index>` (its batch and its place in it); a client that
//! reconnects with `Last-Event-ID` gets the events after it and nothing twice. The final event
//! (`execution.succeeded|failed|cancelled|timed_out`) is not written: the stream makes it from
//! the execution record once the record is final and every batch is read, so an end written by
//! the API (a cancel) or the sweeper (a timeout) ends the stream too. Its id is
//! `<last seq>-99999` (`FINAL_INDEX`, an index no batch reaches): it names no stored event, and
//! a reconnect after it on a run that was redriven since continues with the redrive's events.
//!
//! **Off.** A workflow with `"events": false` records none (bulk jobs); its stream only says how
//! the run ended.

pub mod stream;

use crate::error::StoreError;
use crate::model::StepRecord;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Event types, as the stream's `event:` field names them.
pub mod kind {
    pub const EXECUTION_STARTED: &str = "execution.started";
    pub const EXECUTION_WAITING: &str = "execution.waiting";
    pub const EXECUTION_RESUMED: &str = "execution.resumed";
    pub const STEP_STARTED: &str = "step.started";
    pub const STEP_RETRYING: &str = "step.retrying";
    pub const STEP_DELTA: &str = "step.delta";
    pub const STEP_SUCCEEDED: &str = "step.succeeded";
    pub const STEP_FAILED: &str = "step.failed";
    pub const STEP_SKIPPED: &str = "step.skipped";
}

/// A step's output is inline in its `step.succeeded` event up to this many bytes of JSON; a
/// larger one is a reference to read it from (`output_ref`).
pub const EVENT_INLINE_OUTPUT_BYTES: usize = 2048;

/// A batch item holds at most this much event JSON (an item holds 400 KB): more pending events
/// are split over several batches.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// One event: its type (`kind`), when it happened (RFC 3339, ms) and its data (an object whose
/// fields depend on the type; see README "Watching a run").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub at: String,
    pub data: Value,
}

impl ExecutionEvent {
    pub fn now(kind: &str, data: Value) -> Self {
        ExecutionEvent { kind: kind.to_string(), at: crate::model::now_rfc3339(), data }
    }
}

/// Events written together, under their batch's sequence number (from 1, no gaps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    pub seq: u64,
    pub events: Vec<ExecutionEvent>,
    /// Which log wrote it (random per run): a put whose first attempt succeeded unseen and whose
    /// retry found the seq taken recognises its own batch instead of writing it again.
    #[serde(default)]
    pub writer: String,
}

/// The index of the final event's id (`<last seq>-99999`): a batch holds at most
/// `MAX_BATCH_BYTES` of events, a few thousand, so no stored event has it.
pub const FINAL_INDEX: u32 = 99_999;

/// An event's id: its batch and its index in the batch; shown as `<seq>-<index>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventId {
    pub seq: u64,
    pub index: u32,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.seq, self.index)
    }
}

impl std::str::FromStr for EventId {
    type Err = ();
    /// `<seq>-<index>`, both decimal (seq at most 10 digits, index at most 5).
    fn from_str(text: &str) -> Result<Self, ()> {
        let (seq, index) = text.trim().split_once('-').ok_or(())?;
        fn digits(part: &str, max: usize) -> bool {
            !part.is_empty() && part.len() <= max && part.bytes().all(|b| b.is_ascii_digit())
        }
        if !digits(seq, 10) || !digits(index, 5) {
            return Err(());
        }
        Ok(EventId { seq: seq.parse().map_err(|_| ())?, index: index.parse().map_err(|_| ())? })
    }
}

/// Where event batches are kept (the execution's own partition in DynamoDB).
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Writes a batch unless its seq is taken (ConditionFailed then: another writer got there,
    /// or this one, in an attempt whose answer was lost).
    async fn append_events(&self, tenant_id: &str, execution_id: &str, batch: &EventBatch) -> Result<(), StoreError>;
    /// Batches with seq >= `from_seq`, in order, at most `limit` (strongly consistent; fewer
    /// than `limit` only when there are no more).
    async fn read_events(
        &self,
        tenant_id: &str,
        execution_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventBatch>, StoreError>;
    /// The last batch's seq; 0 when there is none.
    async fn last_event_seq(&self, tenant_id: &str, execution_id: &str) -> Result<u64, StoreError>;
}

/// A log that records nothing, for runs that hold a reference (unit tests).
pub static EVENTS_OFF: EventLog = EventLog::off();

#[derive(Debug)]
enum Entry {
    Event(ExecutionEvent),
    /// Answered once every event sent before it is written.
    Flush(oneshot::Sender<()>),
}

/// The run's side of the record: emits events to the writer (`EventLog::open`). Cheap to clone;
/// `EventLog::off()` drops everything (events off, unit tests).
#[derive(Clone, Default, Debug)]
pub struct EventLog {
    sender: Option<mpsc::UnboundedSender<Entry>>,
    /// An event held back until the run emits another (`hold`).
    held: Option<std::sync::Arc<std::sync::Mutex<Option<ExecutionEvent>>>>,
}

impl EventLog {
    /// A log that records nothing.
    pub const fn off() -> Self {
        EventLog { sender: None, held: None }
    }

    /// Whether events are recorded (a node skips building what nobody reads).
    pub fn is_on(&self) -> bool {
        self.sender.is_some()
    }

    /// A log and the future that writes its batches; run the writer beside the run (it ends
    /// once every clone of the log is dropped and what they emitted is written).
    pub fn open<'s>(
        store: &'s dyn EventStore,
        tenant_id: &'s str,
        execution_id: &'s str,
    ) -> (EventLog, impl std::future::Future<Output = ()> + 's) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let target = Target { store, tenant_id, execution_id, writer: crate::model::new_id() };
        let held = Some(std::sync::Arc::new(std::sync::Mutex::new(None)));
        (EventLog { sender: Some(sender), held }, write_batches(target, receiver))
    }

    pub fn emit(&self, kind: &str, data: Value) {
        if let Some(sender) = &self.sender {
            if let Some(held) = self.take_held() {
                let _ = sender.send(Entry::Event(held));
            }
            // The writer outlives every sender: a send cannot fail while the run goes on.
            let _ = sender.send(Entry::Event(ExecutionEvent::now(kind, data)));
        }
    }

    /// Holds an event back until the run emits another, which it then precedes: a resume that
    /// changes nothing (an early wake-up, the sweeper's backstop) writes no `resumed`/`waiting`
    /// pair.
    pub fn hold(&self, kind: &str, data: Value) {
        if let Some(held) = &self.held {
            *held.lock().unwrap_or_else(|p| p.into_inner()) = Some(ExecutionEvent::now(kind, data));
        }
    }

    /// Drops the held event; true if it was still held (the run emitted nothing since).
    pub fn drop_held(&self) -> bool {
        self.take_held().is_some()
    }

    fn take_held(&self) -> Option<ExecutionEvent> {
        self.held.as_ref().and_then(|held| held.lock().unwrap_or_else(|p| p.into_inner()).take())
    }

    /// Waits until every event emitted before is written (or given up): called before an
    /// execution's status changes, so a reader that sees the new status finds the events that
    /// led to it.
    pub async fn flush(&self) {
        if let Some(sender) = &self.sender {
            let (done, written) = oneshot::channel();
            if sender.send(Entry::Flush(done)).is_ok() {
                let _ = written.await;
            }
        }
    }

    /// `step.started` for a node.
    pub fn step_started(&self, node_id: &str, node_type: &str) {
        self.emit(kind::STEP_STARTED, json!({ "node_id": node_id, "node_type": node_type }));
    }

    /// `step.retrying`: attempt `attempt` failed with `code`/`message`; the next starts after `wait`.
    pub fn step_retrying(&self, node_id: &str, attempt: u32, wait: Duration, code: &str, message: &str) {
        self.emit(
            kind::STEP_RETRYING,
            json!({
                "node_id": node_id,
                "attempt": attempt,
                "wait_ms": wait.as_millis() as u64,
                "reason": { "code": code, "message": crate::redact::error_message(message) },
            }),
        );
    }

    /// `step.succeeded`, `step.failed` or `step.skipped` for a final step as stored (a value kept
    /// in S3 is a reference): the output inline up to `EVENT_INLINE_OUTPUT_BYTES`, else
    /// `output_ref` with the link that reads it.
    pub fn step_finished(&self, tenant_id: &str, execution_id: &str, node_type: &str, step: &StepRecord) {
        use crate::model::StepStatus;
        if !self.is_on() {
            return;
        }
        let kind = match step.status {
            StepStatus::Succeeded => kind::STEP_SUCCEEDED,
            StepStatus::Failed => kind::STEP_FAILED,
            StepStatus::Skipped => kind::STEP_SKIPPED,
            _ => return,
        };
        let mut data = json!({ "node_id": step.node_id, "node_type": node_type });
        if step.status == StepStatus::Skipped {
            return self.emit(kind, data);
        }
        data["attempts"] = json!(step.attempts);
        if let Some(error) = &step.error {
            data["error"] = json!(error);
        }
        if let Some(usage) = step.usage {
            data["usage"] = json!(usage);
        }
        if let Some(cost) = step.cost_usd {
            data["cost_usd"] = json!(cost);
        }
        if step.status == StepStatus::Succeeded {
            put_output(&mut data, &step.output, tenant_id, execution_id);
        }
        self.emit(kind, data);
    }
}

/// An output as events carry it (a step's, the execution's): `output` inline up to
/// `EVENT_INLINE_OUTPUT_BYTES` of JSON, else `output_ref {href, size_bytes}`: the value's own
/// link when it is kept in S3, the execution's when it is only too large to repeat here.
pub(crate) fn put_output(data: &mut Value, output: &Value, tenant_id: &str, execution_id: &str) {
    use crate::model::values::{execution_link, shown};
    let shown = shown(output.clone(), tenant_id, execution_id);
    if shown == *output && !crate::model::limits::json_size_over(&shown, EVENT_INLINE_OUTPUT_BYTES) {
        data["output"] = shown;
        return;
    }
    let size = || serde_json::to_vec(&shown).map(|b| b.len() as u64).unwrap_or(0);
    let href = shown.get("ref").and_then(Value::as_str).map(str::to_string);
    data["output_ref"] = json!({
        "href": href.unwrap_or_else(|| execution_link(execution_id)),
        "size_bytes": shown.get("size_bytes").and_then(Value::as_u64).unwrap_or_else(size),
    });
}

/// Writes what the log receives, one batch at a time: all that came while the previous batch
/// was written goes into the next. A batch that cannot be written is logged and dropped (the
/// run's own records are unaffected; a watcher misses those events).
/// Where a log writes: the execution's batches, as this writer.
struct Target<'s> {
    store: &'s dyn EventStore,
    tenant_id: &'s str,
    execution_id: &'s str,
    writer: String,
}

async fn write_batches(target: Target<'_>, mut receiver: mpsc::UnboundedReceiver<Entry>) {
    // Read on the first write, so a run that emits nothing costs no read.
    let mut next_seq: Option<u64> = None;
    while let Some(first) = receiver.recv().await {
        let mut entries = vec![first];
        while let Ok(more) = receiver.try_recv() {
            entries.push(more);
        }
        let mut events = Vec::new();
        let mut flushes = Vec::new();
        for entry in entries {
            match entry {
                Entry::Event(event) => events.push(event),
                Entry::Flush(done) => flushes.push(done),
            }
        }
        for chunk in split_by_size(events) {
            if let Err(e) = append(&target, &mut next_seq, chunk).await {
                tracing::warn!(error = %e, "execution events not recorded");
                metrics::counter!(crate::telemetry::metric::EVENTS_DROPPED).increment(1);
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Appends one batch at the next free seq; a seq taken meanwhile (a writer whose lease this
/// run took over) moves to the one after the last.
async fn append(
    target: &Target<'_>,
    next_seq: &mut Option<u64>,
    events: Vec<ExecutionEvent>,
) -> Result<(), StoreError> {
    let Target { store, tenant_id, execution_id, writer } = target;
    for _ in 0..3 {
        let seq = match *next_seq {
            Some(seq) => seq,
            None => store.last_event_seq(tenant_id, execution_id).await? + 1,
        };
        let batch = EventBatch { seq, events: events.clone(), writer: writer.clone() };
        match store.append_events(tenant_id, execution_id, &batch).await {
            Ok(()) => {
                *next_seq = Some(seq + 1);
                return Ok(());
            }
            Err(StoreError::ConditionFailed) => {
                // Ours already (an attempt that succeeded unseen, then retried by the SDK)?
                let there = store.read_events(tenant_id, execution_id, seq, 1).await?;
                if there.first().is_some_and(|b| b.seq == seq && b.writer == *writer) {
                    *next_seq = Some(seq + 1);
                    return Ok(());
                }
                *next_seq = None;
            }
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Internal("event batch seq kept being taken".into()))
}

/// Events in batches of at most `MAX_BATCH_BYTES` of JSON (an event alone is one batch).
fn split_by_size(events: Vec<ExecutionEvent>) -> Vec<Vec<ExecutionEvent>> {
    let mut batches: Vec<Vec<ExecutionEvent>> = Vec::new();
    let mut size = 0;
    for event in events {
        let event_size = serde_json::to_vec(&event).map(|b| b.len()).unwrap_or(0);
        match batches.last_mut() {
            Some(batch) if size + event_size <= MAX_BATCH_BYTES => batch.push(event),
            _ => {
                batches.push(vec![event]);
                size = 0;
            }
        }
        size += event_size;
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn event_ids_read_back_and_refuse_anything_else() {
        let id: EventId = "12-3".parse().unwrap();
        assert_eq!((id, id.to_string()), (EventId { seq: 12, index: 3 }, "12-3".to_string()));
        for bad in ["", "12", "-3", "12-", "a-1", "1-b", "1-2-3", "99999999999-0", "1-999999", "+1-2"] {
            assert!(bad.parse::<EventId>().is_err(), "{bad}");
        }
        assert!(EventId { seq: 2, index: 0 } > EventId { seq: 1, index: 9 });
    }

    #[tokio::test]
    async fn events_written_together_share_a_batch_and_batches_follow_each_other() {
        let store = MemoryStore::new();
        let (log, writer) = EventLog::open(&store, "t1", "e1");
        let run = async {
            log.emit(kind::EXECUTION_STARTED, json!({}));
            log.step_started("a", "text.template");
            log.flush().await;
            log.step_started("b", "text.template");
            log.flush().await;
            drop(log);
        };
        tokio::join!(run, writer);
        let batches = store.read_events("t1", "e1", 1, 10).await.unwrap();
        let seqs: Vec<u64> = batches.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(batches[0].events.len(), 2, "emitted before one flush: one batch");
        assert_eq!(batches[1].events[0].data["node_id"], "b");
        assert_eq!(store.last_event_seq("t1", "e1").await.unwrap(), 2);
        assert!(store.read_events("t2", "e1", 1, 10).await.unwrap().is_empty(), "another tenant sees none");
    }

    #[tokio::test]
    async fn a_second_writer_continues_after_the_first_writers_batches() {
        let store = MemoryStore::new();
        for node in ["a", "b"] {
            let (log, writer) = EventLog::open(&store, "t1", "e1");
            tokio::join!(
                async move {
                    log.step_started(node, "x");
                },
                writer
            );
        }
        let batches = store.read_events("t1", "e1", 2, 10).await.unwrap();
        assert_eq!((batches.len(), batches[0].seq, batches[0].events[0].data["node_id"].as_str()), (1, 2, Some("b")));
    }

    #[tokio::test]
    async fn a_held_event_goes_before_the_next_one_or_not_at_all() {
        let store = MemoryStore::new();
        let (log, writer) = EventLog::open(&store, "t1", "e1");
        let run = async move {
            log.hold(kind::EXECUTION_RESUMED, json!({}));
            log.step_started("a", "x");
            log.hold(kind::EXECUTION_RESUMED, json!({}));
            assert!(log.drop_held(), "nothing came after the second: dropped");
            assert!(!log.drop_held());
            drop(log);
        };
        tokio::join!(run, writer);
        let kinds: Vec<String> = store
            .read_events("t1", "e1", 1, 10)
            .await
            .unwrap()
            .into_iter()
            .flat_map(|b| b.events)
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [kind::EXECUTION_RESUMED, kind::STEP_STARTED]);
    }

    #[test]
    fn large_event_sets_split_into_batches_an_item_can_hold() {
        let big = "x".repeat(100 * 1024);
        let events: Vec<ExecutionEvent> =
            (0..5).map(|i| ExecutionEvent::now(kind::STEP_DELTA, json!({ "i": i, "text": big }))).collect();
        let batches = split_by_size(events);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    }
}
