//! Assistant sessions (`crate::assistant`): `ASSIST#<session_id>` and one
//! `ASSISTTURN#<session_id>#<seq>` item per turn, in the tenant's partition. Bodies are JSON,
//! deflated (`packed`); `session_rev` and `expires_at` are plain numbers for the conditions. DynamoDB's
//! TTL removes a session at its `expires_at` and its turns at its hard end plus a day.

use super::*;
use crate::assistant::{AssistantSession, AssistantStore, AssistantTurn};

const SESSION_PREFIX: &str = "ASSIST#";

fn session_key(tenant_id: &str, session_id: &str) -> Item {
    key(tenant_pk(tenant_id), format!("{SESSION_PREFIX}{session_id}"))
}
fn turns_prefix(session_id: &str) -> String {
    format!("ASSISTTURN#{session_id}#")
}

fn session_item(tenant_id: &str, session: &AssistantSession) -> Result<Item, StoreError> {
    let mut item = session_key(tenant_id, &session.session_id);
    item.insert("entity".into(), s("assistant_session"));
    let body = serde_json::to_string(session).map_err(|e| StoreError::Internal(e.to_string()))?;
    item.insert("body".into(), packed(&body)?);
    item.insert("session_rev".into(), n(session.revision));
    item.insert("expires_at".into(), n(session.expires_at));
    item.insert("ttl".into(), n(session.expires_at));
    Ok(item)
}

fn body_of<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let text = unpacked(item, "body")?.ok_or_else(|| StoreError::Internal("assistant item without body".into()))?;
    serde_json::from_str(&text).map_err(|e| StoreError::Internal(format!("stored assistant item: {e}")))
}

fn build<T>(built: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    built.map_err(|e| StoreError::Internal(e.to_string()))
}

#[async_trait]
impl AssistantStore for DynamoStore {
    async fn create_session(
        &self,
        tenant_id: &str,
        session: &AssistantSession,
        max_open: usize,
        now: i64,
    ) -> Result<bool, StoreError> {
        // The open sessions: one Query of the tenant's session items (never its turns), counted.
        let (mut open, mut start) = (0usize, None);
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .filter_expression("expires_at > :now")
                .expression_attribute_values(":pk", s(tenant_pk(tenant_id)))
                .expression_attribute_values(":prefix", s(SESSION_PREFIX))
                .expression_attribute_values(":now", n(now))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            open += out.count as usize;
            match out.last_evaluated_key {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        if open >= max_open {
            return Ok(false);
        }
        self.put_new(session_item(tenant_id, session)?).await?;
        Ok(true)
    }

    async fn get_session(&self, tenant_id: &str, session_id: &str) -> Result<Option<AssistantSession>, StoreError> {
        match self.get(session_key(tenant_id, session_id)).await? {
            Some(item) => body_of(&item).map(Some),
            None => Ok(None),
        }
    }

    async fn list_turns(&self, tenant_id: &str, session_id: &str) -> Result<Vec<AssistantTurn>, StoreError> {
        let items = self.query_prefix(&tenant_pk(tenant_id), &turns_prefix(session_id)).await?;
        items.iter().map(body_of::<AssistantTurn>).collect()
    }

    async fn save_turn(
        &self,
        tenant_id: &str,
        session: &AssistantSession,
        turn: Option<&AssistantTurn>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let session_put = build(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(session_item(tenant_id, session)?))
                .condition_expression("session_rev = :expected AND expires_at > :now")
                .expression_attribute_values(":expected", n(session.revision.saturating_sub(1)))
                .expression_attribute_values(":now", n(now))
                .build(),
        )?;
        let mut transaction =
            self.client.transact_write_items().transact_items(TransactWriteItem::builder().put(session_put).build());
        if let Some(turn) = turn {
            let mut item = key(tenant_pk(tenant_id), format!("{}{:04}", turns_prefix(&session.session_id), turn.seq));
            item.insert("entity".into(), s("assistant_turn"));
            let body = serde_json::to_string(turn).map_err(|e| StoreError::Internal(e.to_string()))?;
            item.insert("body".into(), packed(&body)?);
            item.insert("ttl".into(), n(session.hard_end() + 24 * 3600));
            let put = build(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .build(),
            )?;
            transaction = transaction.transact_items(TransactWriteItem::builder().put(put).build());
        }
        condition_met(transaction.send().await.map_err(classify))
    }

    async fn delete_session(&self, tenant_id: &str, session_id: &str) -> Result<bool, StoreError> {
        let existed = self.delete_existing(session_key(tenant_id, session_id)).await?;
        // The turns go too: what the user wrote is not kept after the session ends.
        let turns = self.query_prefix(&tenant_pk(tenant_id), &turns_prefix(session_id)).await?;
        for chunk in turns.chunks(25) {
            let requests = chunk
                .iter()
                .map(|item| {
                    let k = key(get_s(item, "pk")?, get_s(item, "sk")?);
                    build(DeleteRequest::builder().set_key(Some(k)).build())
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut pending = Some(HashMap::from([(self.table.clone(), requests)]));
            // Unprocessed deletes are retried a few times; whatever is left goes with its TTL.
            for _ in 0..5 {
                let Some(items) = pending.take().filter(|p| !p.is_empty()) else { break };
                let out =
                    self.client.batch_write_item().set_request_items(Some(items)).send().await.map_err(classify)?;
                pending = out.unprocessed_items;
            }
        }
        Ok(existed)
    }
}
