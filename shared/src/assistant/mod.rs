//! The workflow assistant: a conversation in which the tenant's own model proposes workflow
//! definitions that NodeAI validates (and has repaired) before anyone can apply them.
//!
//! - A session names a credential and a model (and optionally the workflow it edits). It lives
//!   `SESSION_IDLE_TTL` from its last message or apply, at most `SESSION_MAX_LIFETIME` from its
//!   creation; a tenant has at most `MAX_OPEN_SESSIONS` open at once.
//! - A turn (`converse`): the user's message, then up to `MAX_ROUNDS` model calls: each
//!   proposal is validated (`validation::validate_definition` and `check_references`, exactly as
//!   POST /v1/workflows does) and its problems are sent back for repair. Each call reserves its
//!   worst case against the tenant's budget first (`budgets::reserve_call`), and its tokens and
//!   cost count in the tenant's usage (`usage`, model and day rows).
//! - The session's `current` definition is its last valid proposal (or the workflow's draft it
//!   started from); each turn answers an RFC 6902 JSON Patch from `current` to its proposal.

use crate::error::StoreError;
use crate::model::TokenUsage;
use crate::validation::Problem;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod model;
pub mod prompt;
mod turn;

pub use turn::{TurnError, TurnOutcome, TurnSpend, converse, count_usage};

/// A session ends this long after its last message or apply (seconds): 24 hours.
pub const SESSION_IDLE_TTL_SECONDS: i64 = 24 * 3600;
/// ... and at the latest this long after its creation (seconds): 7 days. Its turns' items are
/// kept (DynamoDB TTL) until then.
pub const SESSION_MAX_LIFETIME_SECONDS: i64 = 7 * 24 * 3600;
/// The longest a turn may take, ms (API Gateway ends an integration at 29 s).
pub const MAX_TURN_MS: u64 = 25_000;
/// Open sessions per tenant.
pub const MAX_OPEN_SESSIONS: usize = 20;
/// Turns per session (each holds a message and a proposal).
pub const MAX_TURNS: u32 = 50;
/// Model calls per turn: the first proposal and at most two repairs of it.
pub const MAX_ROUNDS: u32 = 3;
/// A message's length, in characters (Unicode scalar values).
pub const MAX_MESSAGE_CHARS: usize = 5000;
/// Earlier turns sent with a new message (their messages and the assistant's words; the
/// current definition is in the system prompt).
pub const HISTORY_TURNS: usize = 10;

/// A session as stored (`T#<tenant>` / `ASSIST#<session_id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantSession {
    pub session_id: String,
    pub credential: String,
    pub model: String,
    /// The workflow an apply replaces; set by the first apply that creates one.
    pub workflow_id: Option<String>,
    /// The workflow revision `current` was read at (an apply with no `if_match` expects it).
    pub base_revision: Option<u64>,
    /// The definition the next proposal starts from.
    pub current: Option<Value>,
    /// Whether `current` is a proposal of this session that validated (what apply applies).
    pub proposal_valid: bool,
    /// Turns recorded so far.
    pub turns: u32,
    /// Raised by every write after the first (a turn, an apply): each write is conditioned on
    /// the revision it read, so a message and an apply never overwrite each other.
    #[serde(default)]
    pub revision: u64,
    pub created_at: String,
    pub updated_at: String,
    /// Unix seconds after which the session is gone (answers 404).
    pub expires_at: i64,
}

impl AssistantSession {
    /// A new session (a fresh ULID) on `credential` and `model`, opened at `now` (unix
    /// seconds): no workflow, no definition, no turns, open for `SESSION_IDLE_TTL_SECONDS`.
    pub fn open(credential: &str, model: &str, now: i64) -> AssistantSession {
        let at = chrono::DateTime::from_timestamp(now, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        AssistantSession {
            session_id: crate::model::new_id(),
            credential: credential.to_string(),
            model: model.to_string(),
            workflow_id: None,
            base_revision: None,
            current: None,
            proposal_valid: false,
            turns: 0,
            revision: 0,
            created_at: at.clone(),
            updated_at: at,
            expires_at: now + SESSION_IDLE_TTL_SECONDS,
        }
    }

    pub fn is_open(&self, now: i64) -> bool {
        now < self.expires_at
    }

    /// Unix seconds of the hard end: creation plus `SESSION_MAX_LIFETIME_SECONDS`.
    pub fn hard_end(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.created_at).map(|t| t.timestamp()).unwrap_or(0)
            + SESSION_MAX_LIFETIME_SECONDS
    }

    /// The expiry after a use at `now`: the idle TTL, never past the hard end.
    pub fn refreshed_expiry(&self, now: i64) -> i64 {
        (now + SESSION_IDLE_TTL_SECONDS).min(self.hard_end())
    }
}

/// One turn as stored (`T#<tenant>` / `ASSISTTURN#<session_id>#<seq>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantTurn {
    /// 1, 2, ...
    pub seq: u32,
    /// The user's message, exactly as sent.
    pub message: String,
    /// The assistant's words.
    pub reply: String,
    /// The last proposal of the turn (None: no round produced a definition object).
    pub proposal: Option<Value>,
    pub valid: bool,
    /// What validation found in the last proposal (`validation::Problem` as JSON).
    pub problems: Vec<Value>,
    /// RFC 6902 operations from the session's `current` before the turn to `proposal`.
    pub patch: Value,
    pub rounds: u32,
    pub usage: TokenUsage,
    /// Nano-dollars; None when some call's model has no price.
    pub cost_nano_usd: Option<u64>,
    pub created_at: String,
}

/// Where sessions and turns are kept. Every read is by key or one Query of the tenant's
/// partition: never a Scan.
#[async_trait]
pub trait AssistantStore: Send + Sync {
    /// Writes a new session unless the tenant already has `max_open` sessions open at `now`
    /// (unix seconds): false then.
    async fn create_session(
        &self,
        tenant_id: &str,
        session: &AssistantSession,
        max_open: usize,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// The session, open or not (the caller checks `is_open`).
    async fn get_session(&self, tenant_id: &str, session_id: &str) -> Result<Option<AssistantSession>, StoreError>;
    /// The session's turns in order.
    async fn list_turns(&self, tenant_id: &str, session_id: &str) -> Result<Vec<AssistantTurn>, StoreError>;
    /// Writes `turn` (absent: pass None) and `session` (its new state, `revision` raised by
    /// one) together, if the stored session is still at `session.revision - 1` and open at
    /// `now`: false otherwise (another message or apply got there first, or it ended).
    async fn save_turn(
        &self,
        tenant_id: &str,
        session: &AssistantSession,
        turn: Option<&AssistantTurn>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes the session and its turns; false if there was no session.
    async fn delete_session(&self, tenant_id: &str, session_id: &str) -> Result<bool, StoreError>;
}

/// A problem list as stored and answered.
pub fn problems_json(problems: &[Problem]) -> Vec<Value> {
    problems.iter().map(|p| serde_json::to_value(p).unwrap_or(Value::Null)).collect()
}
