//! Circuit breakers per tenant and provider host: after `threshold` consecutive failures the
//! circuit opens and calls fail fast with `CIRCUIT_OPEN`; after `cool_down` one trial call is let
//! through (half-open): success closes the circuit, failure opens it again.
//!
//! State lives in the warm instance's memory: each Lambda instance learns on its own, and a cold
//! start begins closed. That is the documented limit; it still stops one instance from hammering
//! a failing provider with every retry of every execution.

use super::NodeFailure;
use crate::model::StepErrorCode;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub const DEFAULT_THRESHOLD: u32 = 5;
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is in flight; everyone else fails fast until it reports, or until
    /// `trial_until` (a trial that never reports does not hold the circuit half-open).
    HalfOpen {
        trial_until: Instant,
    },
}

#[derive(Debug)]
pub struct CircuitBreakers {
    threshold: u32,
    cool_down: Duration,
    circuits: Mutex<HashMap<(String, String), State>>,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        CircuitBreakers::new(DEFAULT_THRESHOLD, DEFAULT_COOL_DOWN)
    }
}

impl CircuitBreakers {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        CircuitBreakers { threshold: threshold.max(1), cool_down, circuits: Mutex::default() }
    }

    fn circuits(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), State>> {
        self.circuits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks to call `host` for `tenant_id`: a permit to go ahead (report the outcome with
    /// `Permit::record`), or the fail-fast `CIRCUIT_OPEN` failure. A half-open trial's permit
    /// dropped unreported (its call was abandoned) counts as a failure, so the circuit never
    /// stays half-open; other abandoned calls count nothing (the run was cut off at a
    /// checkpoint, not failed by the host: a hung host is a timeout, which `send` records).
    pub fn admit(&self, tenant_id: &str, host: &str) -> Result<Permit<'_>, NodeFailure> {
        let trial = self.admit_call(tenant_id, host)?;
        Ok(Permit { breakers: self, tenant_id: tenant_id.to_string(), host: host.to_string(), trial, recorded: false })
    }

    /// Ok(whether the call is the half-open trial).
    fn admit_call(&self, tenant_id: &str, host: &str) -> Result<bool, NodeFailure> {
        let mut circuits = self.circuits();
        let state = circuits
            .entry((tenant_id.to_string(), host.to_string()))
            .or_insert(State::Closed { consecutive_failures: 0 });
        match *state {
            State::Closed { .. } => Ok(false),
            State::Open { until } | State::HalfOpen { trial_until: until } if Instant::now() >= until => {
                *state = State::HalfOpen { trial_until: Instant::now() + self.cool_down };
                Ok(true)
            }
            State::Open { until } => Err(open_failure(host, until.saturating_duration_since(Instant::now()))),
            State::HalfOpen { trial_until } => {
                Err(open_failure(host, trial_until.saturating_duration_since(Instant::now())))
            }
        }
    }

    /// Reports how an admitted call went. Only provider trouble counts as a failure (connection
    /// errors, timeouts, 408, 429, 5xx); a 4xx about the request itself does not.
    fn record(&self, tenant_id: &str, host: &str, provider_failed: bool) {
        let mut circuits = self.circuits();
        let state = circuits
            .entry((tenant_id.to_string(), host.to_string()))
            .or_insert(State::Closed { consecutive_failures: 0 });
        *state = match (*state, provider_failed) {
            (_, false) => State::Closed { consecutive_failures: 0 },
            (State::HalfOpen { .. }, true) | (State::Open { .. }, true) => {
                State::Open { until: Instant::now() + self.cool_down }
            }
            (State::Closed { consecutive_failures }, true) if consecutive_failures + 1 >= self.threshold => {
                tracing::warn!(host, threshold = self.threshold, "circuit opened");
                metrics::counter!(crate::telemetry::metric::CIRCUITS_OPENED).increment(1);
                State::Open { until: Instant::now() + self.cool_down }
            }
            (State::Closed { consecutive_failures }, true) => {
                State::Closed { consecutive_failures: consecutive_failures + 1 }
            }
        };
    }
}

/// Leave to make one call; see `CircuitBreakers::admit`.
#[derive(Debug)]
pub struct Permit<'a> {
    breakers: &'a CircuitBreakers,
    tenant_id: String,
    host: String,
    trial: bool,
    recorded: bool,
}

impl Permit<'_> {
    /// Reports how the call went. Only provider trouble counts as a failure (connection errors,
    /// timeouts, 408, 429, 5xx); a 4xx about the request itself does not.
    pub fn record(mut self, provider_failed: bool) {
        self.recorded = true;
        self.breakers.record(&self.tenant_id, &self.host, provider_failed);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded && self.trial {
            // The trial was abandoned: the host did not show it is healthy; open again.
            self.breakers.record(&self.tenant_id, &self.host, true);
        }
    }
}

fn open_failure(host: &str, retry_in: Duration) -> NodeFailure {
    NodeFailure::permanent(
        StepErrorCode::CircuitOpen,
        format!(
            "calls to '{host}' are paused after repeated failures; the next trial is in {} s",
            retry_in.as_secs().max(1)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_fails_fast_then_half_opens_after_the_cool_down() {
        let breakers = CircuitBreakers::new(3, Duration::from_secs(30));
        for _ in 0..2 {
            breakers.admit("t1", "api.example").unwrap().record(true);
        }
        breakers.admit("t1", "api.example").expect("two failures: still closed").record(true);
        assert_eq!(breakers.admit("t1", "api.example").unwrap_err().code, "CIRCUIT_OPEN");
        assert!(breakers.admit("t2", "api.example").is_ok(), "another tenant's circuit is its own");
        assert!(breakers.admit("t1", "other.example").is_ok(), "another host's circuit is its own");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(breakers.admit("t1", "api.example").is_err(), "still cooling down");
        tokio::time::advance(Duration::from_secs(2)).await;
        let trial = breakers.admit("t1", "api.example").expect("half-open: one trial");
        assert!(breakers.admit("t1", "api.example").is_err(), "only one trial at a time");
        trial.record(false);
        assert!(breakers.admit("t1", "api.example").is_ok(), "a good trial closes it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_reopens_and_a_success_resets_the_count() {
        let breakers = CircuitBreakers::new(2, Duration::from_secs(10));
        breakers.record("t", "h", true);
        breakers.record("t", "h", false);
        breakers.record("t", "h", true);
        assert!(breakers.admit("t", "h").is_ok(), "the success in between reset the count");
        breakers.record("t", "h", true);
        assert!(breakers.admit("t", "h").is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
        breakers.admit("t", "h").unwrap().record(true);
        assert!(breakers.admit("t", "h").is_err(), "a failed trial opens the circuit again");
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_trial_counts_as_a_failure_and_the_circuit_keeps_cycling() {
        let breakers = CircuitBreakers::new(1, Duration::from_secs(10));
        breakers.admit("t", "h").unwrap().record(true);
        tokio::time::advance(Duration::from_secs(10)).await;
        // The trial's node times out: its permit is dropped without a result.
        drop(breakers.admit("t", "h").expect("trial"));
        assert!(breakers.admit("t", "h").is_err(), "abandoned: open again");
        tokio::time::advance(Duration::from_secs(10)).await;
        breakers.admit("t", "h").expect("the next cool-down brings the next trial").record(false);
        breakers.admit("t", "h").expect("and a healthy host closes it").record(false);
        // An abandoned call on a closed circuit (a checkpoint cut the run off) counts nothing.
        drop(breakers.admit("t", "h").unwrap());
        breakers.admit("t", "h").expect("still closed").record(false);
        // A trial that neither reports nor is dropped (leaked) holds the circuit only until
        // its trial window ends.
        breakers.admit("t", "h").unwrap().record(true);
        tokio::time::advance(Duration::from_secs(10)).await;
        std::mem::forget(breakers.admit("t", "h").unwrap());
        tokio::time::advance(Duration::from_secs(10)).await;
        breakers.admit("t", "h").expect("a new trial after the window").record(false);
    }
}
