//! Every key format of the table, in one place (ARCHITECTURE.md's key design table). Every
//! tenant-owned partition starts with `T#<tenant_id>`, so no request can name another tenant's
//! item.

use super::{Item, s};
use crate::store::version_sort_key;
use std::collections::HashMap;

/// Sort key prefixes that listings query with `begins_with`.
pub(super) const WORKFLOW_PREFIX: &str = "WF#";
pub(super) const VERSION_PREFIX: &str = "V#";
pub(super) const API_KEY_GSI_PREFIX: &str = "APIKEY#";
pub(super) const CREDENTIAL_PREFIX: &str = "CRED#";
pub(super) const EXECUTION_PREFIX: &str = "EX#";
pub(super) const STEP_PREFIX: &str = "STEP#";
pub(super) const TRIGGER_PREFIX: &str = "TRG#";
pub(super) const EVENT_PREFIX: &str = "EV#";
/// The largest event batch seq (10 digits, as keys hold it).
pub(super) const MAX_EVENT_SEQ: u64 = 9_999_999_999;

/// Partitions of the sparse sweep index: unfinished executions spread over this many keys, so
/// no one partition takes every start's write.
pub(super) const SWEEP_SHARDS: u32 = 4;

/// The sweep index partition of an execution (its ULID's last character picks one).
pub(super) fn sweep_pk(execution_id: &str) -> String {
    let shard = execution_id.bytes().last().map(u32::from).unwrap_or(0) % SWEEP_SHARDS;
    format!("SWEEP#{shard}")
}

/// An approval's callback token, in a partition named by the token's hash (one GetItem per
/// callback; the tenant comes from the item, never from the caller).
pub(super) fn callback_key(token_hash: &str) -> Item {
    key(format!("CB#{token_hash}"), "CB".into())
}

/// A parent node's child batch, beside the parent's steps (never on the parent's item).
pub(super) fn child_batch_key(tenant_id: &str, parent_execution_id: &str, node_id: &str) -> Item {
    key(execution_items_pk(tenant_id, parent_execution_id), format!("BATCH#{node_id}"))
}

/// The item holding a tenant's run slots (execution id -> expiry).
pub(super) fn run_slots_key(tenant_id: &str) -> Item {
    key(tenant_pk(tenant_id), "RUNNING".to_string())
}

/// A workflow's triggers: their own partition, so a workflow's raw delete never removes one
/// behind the trigger routes' back (its hook item and schedule go with it, there).
pub(super) fn triggers_pk(tenant_id: &str, workflow_id: &str) -> String {
    format!("T#{tenant_id}#TRG#{workflow_id}")
}
pub(super) fn trigger_sk(trigger_id: &str) -> String {
    format!("{TRIGGER_PREFIX}{trigger_id}")
}
pub(super) fn trigger_key(tenant_id: &str, workflow_id: &str, trigger_id: &str) -> Item {
    key(triggers_pk(tenant_id, workflow_id), trigger_sk(trigger_id))
}
/// A webhook's hook id, in a partition named by it (one GetItem per delivery; the tenant comes
/// from the item, never from the caller).
pub(super) fn hook_key(hook_id: &str) -> Item {
    key(format!("HOOK#{hook_id}"), "HOOK".into())
}
/// A workflow's trigger count, beside its triggers (`TRG#` listings never see it).
pub(super) fn workflow_trigger_count_key(tenant_id: &str, workflow_id: &str) -> Item {
    key(triggers_pk(tenant_id, workflow_id), "COUNT".into())
}
/// The tenant's trigger count (checked against the tenant limit in each create).
pub(super) fn trigger_count_key(tenant_id: &str) -> Item {
    key(tenant_pk(tenant_id), "TRIGGERS".into())
}

/// An item key from its partition and sort key.
pub(super) fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

/// The tenant's own partition: the tenant item, its workflows, credentials and executions.
pub(super) fn tenant_pk(tenant_id: &str) -> String {
    format!("T#{tenant_id}")
}
pub(super) fn tenant_key(tenant_id: &str) -> Item {
    key(tenant_pk(tenant_id), "TENANT".into())
}
pub(super) fn workflow_sk(workflow_id: &str) -> String {
    format!("{WORKFLOW_PREFIX}{workflow_id}")
}
/// A workflow's versions; also the gsi1 partition of its executions.
pub(super) fn versions_pk(tenant_id: &str, workflow_id: &str) -> String {
    format!("T#{tenant_id}#WF#{workflow_id}")
}
pub(super) fn workflow_executions_pk(tenant_id: &str, workflow_id: &str) -> String {
    versions_pk(tenant_id, workflow_id)
}
pub(super) fn version_sk(version: u32) -> String {
    format!("{VERSION_PREFIX}{}", version_sort_key(version))
}
/// An API key's item, in a partition named by its hash (one GetItem per request).
pub(super) fn api_key_key(key_hash: &str) -> Item {
    key(format!("KEY#{key_hash}"), "KEY".into())
}
pub(super) fn api_key_gsi_sk(key_id: &str) -> String {
    format!("{API_KEY_GSI_PREFIX}{key_id}")
}
pub(super) fn credential_sk(name: &str) -> String {
    format!("{CREDENTIAL_PREFIX}{name}")
}
pub(super) fn credential_key(tenant_id: &str, name: &str) -> Item {
    key(tenant_pk(tenant_id), credential_sk(name))
}
pub(super) fn execution_sk(execution_id: &str) -> String {
    format!("{EXECUTION_PREFIX}{execution_id}")
}
pub(super) fn execution_key(tenant_id: &str, execution_id: &str) -> Item {
    key(tenant_pk(tenant_id), execution_sk(execution_id))
}
/// An execution's own partition: its definition snapshot and its steps.
pub(super) fn execution_items_pk(tenant_id: &str, execution_id: &str) -> String {
    format!("T#{tenant_id}#EX#{execution_id}")
}
pub(super) fn snapshot_key(tenant_id: &str, execution_id: &str) -> Item {
    key(execution_items_pk(tenant_id, execution_id), "DEF".into())
}
pub(super) fn step_sk(node_id: &str) -> String {
    format!("{STEP_PREFIX}{node_id}")
}
/// An execution event batch, beside its steps: the 10-digit seq sorts as a number.
pub(super) fn event_sk(seq: u64) -> String {
    format!("{EVENT_PREFIX}{:010}", seq.min(MAX_EVENT_SEQ))
}
/// The seq an event batch's sort key holds (`event_sk`'s inverse).
pub(super) fn event_seq(sk: &str) -> Option<u64> {
    sk.strip_prefix(EVENT_PREFIX)?.parse().ok()
}
/// Bulk steps: `~` cannot start a node id, so these never collide with a step's key.
pub(super) fn bulk_step_sk(id: &str) -> String {
    format!("{STEP_PREFIX}~{id}")
}
pub(super) fn idempotency_key(tenant_id: &str, key_hash: &str) -> Item {
    key(format!("T#{tenant_id}#IDEM#{key_hash}"), "IDEM".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_formats_match_the_documented_design() {
        assert_eq!(tenant_pk("t1"), "T#t1");
        assert_eq!(versions_pk("t1", "w1"), "T#t1#WF#w1");
        assert_eq!(version_sk(7), format!("V#{}", version_sort_key(7)));
        assert_eq!(api_key_key("abc")["pk"], s("KEY#abc"));
        assert_eq!(snapshot_key("t1", "e1")["pk"], s("T#t1#EX#e1"));
        assert_eq!(bulk_step_sk("01X"), "STEP#~01X");
        assert!(bulk_step_sk("01X").starts_with(STEP_PREFIX) && step_sk("a").starts_with(STEP_PREFIX));
        assert_eq!(idempotency_key("t1", "h")["pk"], s("T#t1#IDEM#h"));
        assert_eq!(event_sk(12), "EV#0000000012");
        assert_eq!((event_seq(&event_sk(12)), event_seq("STEP#a")), (Some(12), None));
        assert!(event_sk(9) < event_sk(10), "seqs sort as numbers");
    }
}
