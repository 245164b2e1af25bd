//! What node executors run with: one `NodeRuntime` per warm worker (outbound HTTP settings,
//! provider credentials, circuit breakers, pooled clients, prices), built from configuration in
//! `wiring`, and the `RegistryExecutor` that implements the engine's node contract over it.

use super::{breaker, has_side_effects, outbound, runner};
use crate::engine::{NodeCall, NodeExecutor, NodeFailure, NodeOutput};
use crate::model::StepErrorCode;
use crate::secrets::CredentialResolver;
use async_trait::async_trait;
use std::sync::Arc;

/// What node executors may use besides their config: outbound HTTP settings, provider
/// credentials and the circuit breakers. One per warm instance.
#[derive(Clone)]
pub struct NodeRuntime {
    /// Hosts (`host` or `host:port`) that may resolve to non-public addresses (the SSRF guard's
    /// allow-list; tests use it for their loopback stubs).
    pub allowed_private_hosts: Vec<String>,
    /// Largest response body an outbound call reads, bytes (default: a node output's 10 MiB).
    pub max_response_bytes: usize,
    /// Provider credentials for llm.chat; None where the process has no secret store.
    pub credentials: Option<Arc<CredentialResolver>>,
    /// Per tenant and host: shared by every execution this instance runs.
    pub breakers: Arc<breaker::CircuitBreakers>,
    /// Outbound HTTP clients, kept so calls to one host reuse their connection.
    pub clients: Arc<outbound::ClientPool>,
    /// Model prices for llm.chat's `cost_usd`: built in, plus `MODEL_PRICES`.
    pub prices: Arc<super::prices::PriceTable>,
    /// The API's public base URL, for the callback URLs approvals announce.
    pub public_api_url: Option<String>,
    /// Where budgets and month spend are kept (`budgets`); None: no budget is enforced (tests).
    pub budgets: Option<Arc<dyn crate::store::Store>>,
}

impl Default for NodeRuntime {
    fn default() -> Self {
        NodeRuntime {
            allowed_private_hosts: Vec::new(),
            max_response_bytes: crate::model::values::MAX_NODE_OUTPUT_BYTES,
            credentials: None,
            breakers: Arc::new(breaker::CircuitBreakers::default()),
            clients: Arc::new(outbound::ClientPool::default()),
            prices: Arc::new(super::prices::PriceTable::default()),
            public_api_url: None,
            budgets: None,
        }
    }
}

/// Dispatches to `NodeType::execute` of the node's type.
#[derive(Clone, Default)]
pub struct RegistryExecutor {
    pub runtime: NodeRuntime,
}

#[async_trait]
impl NodeExecutor for RegistryExecutor {
    fn has_side_effects(&self, node_type: &str) -> bool {
        has_side_effects(node_type)
    }

    fn callback_url(&self, token: &str) -> String {
        crate::model::callback_url(self.runtime.public_api_url.as_deref(), token)
    }

    async fn execute(&self, call: &NodeCall<'_>) -> Result<NodeOutput, NodeFailure> {
        match runner(&call.node.node_type) {
            Some(runner) => runner.execute(call, &self.runtime).await,
            None => Err(NodeFailure::permanent(
                StepErrorCode::UnknownNodeType,
                format!("no node type '{}'", call.node.node_type),
            )),
        }
    }
}
