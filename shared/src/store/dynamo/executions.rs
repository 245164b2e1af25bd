//! `ExecutionStore`: executions, their definition snapshots, leases and idempotency keys.

use super::*;
use crate::model::{SWEEP_GRACE, rfc3339_in};

pub(super) fn execution_from(item: &Item, tenant_id: &str) -> Result<ExecutionRecord, StoreError> {
    let json = |name: &str| -> Result<serde_json::Value, StoreError> {
        match get_opt_s(item, name) {
            Some(text) => {
                serde_json::from_str(&text).map_err(|e| StoreError::Internal(format!("execution {name}: {e}")))
            }
            None => Ok(serde_json::Value::Null),
        }
    };
    let status = get_s(item, "status")?;
    Ok(ExecutionRecord {
        tenant_id: tenant_id.to_string(),
        execution_id: get_s(item, "execution_id")?,
        workflow_id: get_s(item, "workflow_id")?,
        version: get_opt_n(item, "version")?,
        status: ExecutionStatus::parse(&status).ok_or_else(|| StoreError::Internal(format!("status {status}")))?,
        input: json("input")?,
        output: json("output")?,
        error: match json("error")? {
            serde_json::Value::Null => None,
            value => Some(serde_json::from_value(value).map_err(|e| StoreError::Internal(e.to_string()))?),
        },
        request_id: get_s(item, "request_id")?,
        created_at: get_s(item, "created_at")?,
        started_at: get_opt_s(item, "started_at"),
        finished_at: get_opt_s(item, "finished_at"),
        deadline_at: get_s(item, "deadline_at")?,
        cancel_requested: matches!(item.get("cancel_requested"), Some(AttributeValue::Bool(true))),
        redrive_count: get_opt_n(item, "redrive_count")?.unwrap_or(0),
        expires_at: get_opt_s(item, "expires_at"),
        waiting_reason: get_opt_s(item, "waiting_reason"),
        parent: match (get_opt_s(item, "parent_execution_id"), get_opt_s(item, "parent_node_id")) {
            (Some(execution_id), Some(node_id)) => {
                Some(ParentLink { execution_id, node_id, index: get_opt_n(item, "parent_index")?.unwrap_or(0) })
            }
            _ => None,
        },
        depth: get_opt_n(item, "depth")?.unwrap_or(0),
        trigger_id: get_opt_s(item, "trigger_id"),
        waits: match get_opt_s(item, "waits") {
            Some(text) => {
                serde_json::from_str(&text).map_err(|e| StoreError::Internal(format!("execution waits: {e}")))?
            }
            None => Vec::new(),
        },
    })
}

#[async_trait]
impl ExecutionStore for DynamoStore {
    async fn create_execution(
        &self,
        record: &ExecutionRecord,
        definition: &WorkflowDefinition,
    ) -> Result<(), StoreError> {
        let mut item = execution_key(&record.tenant_id, &record.execution_id);
        item.insert("entity".into(), s("execution"));
        item.insert("gsi1pk".into(), s(workflow_executions_pk(&record.tenant_id, &record.workflow_id)));
        item.insert("gsi1sk".into(), s(execution_sk(&record.execution_id)));
        item.insert("execution_id".into(), s(&record.execution_id));
        item.insert("workflow_id".into(), s(&record.workflow_id));
        if let Some(version) = record.version {
            item.insert("version".into(), n(version));
        }
        item.insert("status".into(), s(record.status.as_str()));
        item.insert("input".into(), s(record.input.to_string()));
        item.insert("request_id".into(), s(&record.request_id));
        item.insert("created_at".into(), s(&record.created_at));
        item.insert("deadline_at".into(), s(&record.deadline_at));
        item.insert("cancel_requested".into(), AttributeValue::Bool(record.cancel_requested));
        if let Some(parent) = &record.parent {
            item.insert("parent_execution_id".into(), s(&parent.execution_id));
            item.insert("parent_node_id".into(), s(&parent.node_id));
            item.insert("parent_index".into(), n(parent.index));
            item.insert("depth".into(), n(record.depth));
        }
        if let Some(trigger_id) = &record.trigger_id {
            item.insert("trigger_id".into(), s(trigger_id));
        }
        if !record.status.is_final() {
            item.insert("sweep_pk".into(), s(sweep_pk(&record.execution_id)));
            item.insert("sweep_at".into(), s(rfc3339_in(SWEEP_GRACE.as_secs() as i64)));
            item.insert("sweep_count".into(), n(0));
        }
        let mut snapshot = snapshot_key(&record.tenant_id, &record.execution_id);
        snapshot.insert("entity".into(), s("execution_definition"));
        snapshot.insert("definition".into(), packed(&definition_json(definition)?)?);
        if let Some(expires_at) = &record.expires_at {
            let at = chrono::DateTime::parse_from_rfc3339(expires_at)
                .map_err(|e| StoreError::Internal(format!("expires_at {expires_at}: {e}")))?;
            item.insert("expires_at".into(), s(expires_at));
            // DynamoDB's TTL attribute (epoch seconds) on both items of the execution.
            item.insert("ttl".into(), n(at.timestamp()));
            snapshot.insert("ttl".into(), n(at.timestamp()));
        }
        // Two plain puts, snapshot first, rather than one transaction: no execution ever exists
        // without its snapshot, and it costs half the write units (a transactional write is
        // billed double). An attempt that dies between the two leaves a snapshot nothing
        // points to; a retry under the same id may write it again, but only with the same
        // definition: a snapshot is never rewritten with another (ConditionFailed).
        let packed_definition = snapshot["definition"].clone();
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(snapshot))
            .condition_expression("attribute_not_exists(pk) OR #definition = :definition")
            .expression_attribute_names("#definition", "definition")
            .expression_attribute_values(":definition", packed_definition)
            .send()
            .await
            .map_err(classify)?;
        self.put_new(item).await
    }

    async fn get_execution(&self, tenant_id: &str, execution_id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        self.get(execution_key(tenant_id, execution_id)).await?.map(|item| execution_from(&item, tenant_id)).transpose()
    }

    async fn get_execution_definition(
        &self,
        tenant_id: &str,
        execution_id: &str,
    ) -> Result<Option<WorkflowDefinition>, StoreError> {
        self.get(snapshot_key(tenant_id, execution_id)).await?.map(|item| definition_from(&item)).transpose()
    }

    async fn claim_lease(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        until: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        self.update_if(
            execution_key(tenant_id, execution_id),
            // Unfinished and unleased when the lease runs out: the sweeper looks at it then.
            // if_not_exists(sweep_pk): executions created before the sweep index join it here.
            "SET lease_owner = :owner, lease_until = :until, #status = :running, sweep_at = :until, \
             sweep_pk = if_not_exists(sweep_pk, :sweep_pk), started_at = if_not_exists(started_at, :now) \
             REMOVE waiting_reason",
            "attribute_exists(pk) AND #status IN (:queued, :running, :waiting) \
             AND (attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner)",
            vec![
                (":queued", s("queued")),
                (":running", s("running")),
                (":waiting", s("waiting")),
                (":owner", s(owner)),
                (":until", s(until)),
                (":now", s(now)),
                (":sweep_pk", s(sweep_pk(execution_id))),
            ],
        )
        .await
    }

    async fn release_lease(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        steps: &[StepRecord],
    ) -> Result<(), StoreError> {
        // A checkpoint is progress: the sweep count starts again, and the continuation has
        // SWEEP_GRACE to be picked up before the sweeper looks.
        let release = "SET sweep_at = :next, sweep_count = :zero REMOVE lease_owner, lease_until";
        let key = execution_key(tenant_id, execution_id);
        let values =
            vec![(":owner", s(owner)), (":next", s(rfc3339_in(SWEEP_GRACE.as_secs() as i64))), (":zero", n(0))];
        self.update_with_steps(key, release, "lease_owner = :owner", values, tenant_id, execution_id, steps, None)
            .await?;
        Ok(())
    }

    async fn finish_execution(
        &self,
        tenant_id: &str,
        execution_id: &str,
        end: ExecutionEnd,
        steps: &[StepRecord],
        guard: LeaseGuard<'_>,
    ) -> Result<bool, StoreError> {
        let error = match end.error {
            Some(error) => serde_json::to_string(&error).map_err(|e| StoreError::Internal(e.to_string()))?,
            None => "null".to_string(),
        };
        let finish = "SET #status = :final, #output = :output, #error = :error, finished_at = :at, #usage = :usage \
                      REMOVE lease_owner, lease_until, sweep_pk, sweep_at, waiting_reason, waits";
        let mut values = vec![
            (":queued", s("queued")),
            (":running", s("running")),
            (":waiting", s("waiting")),
            (":final", s(end.status.as_str())),
            (":output", s(crate::model::limits::bounded_execution_output(end.output).to_string())),
            (":error", s(error)),
            (":at", s(end.at)),
            (":usage", s(usage_json(&end.usage)?)),
        ];
        let (lease_condition, lease_values) = lease_condition(guard);
        values.extend(lease_values);
        let key = execution_key(tenant_id, execution_id);
        let condition =
            format!("attribute_exists(pk) AND #status IN (:queued, :running, :waiting) AND {lease_condition}");
        // A child's end is counted in its parent's batch in the same transaction: once, or not
        // at all (no condition on the batch: a batch gone with its parent takes the count).
        let counted = match &end.child_of {
            None => None,
            Some(parent) => {
                let counter = if end.status == ExecutionStatus::Succeeded { "succeeded" } else { "failed" };
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(child_batch_key(tenant_id, &parent.execution_id, &parent.node_id)))
                    .update_expression(format!("ADD {counter} :one"))
                    .expression_attribute_values(":one", n(1))
                    .build()
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                Some(update)
            }
        };
        // Children of one batch finishing together update the same batch item, and DynamoDB
        // cancels transactions that overlap on an item (TransactionConflict): retried here with
        // jitter, rather than left for the queue's visibility timeout.
        let attempts = if counted.is_some() { 4 } else { 1 };
        retry_conflicts(attempts, || {
            self.update_with_steps(
                key.clone(),
                finish,
                &condition,
                values.clone(),
                tenant_id,
                execution_id,
                steps,
                counted.clone(),
            )
        })
        .await
    }

    async fn put_child_batch(&self, batch: &ChildBatch) -> Result<bool, StoreError> {
        let mut item = child_batch_key(&batch.tenant_id, &batch.parent_execution_id, &batch.node_id);
        item.insert("entity".into(), s("child_batch"));
        item.insert("workflow_id".into(), s(&batch.workflow_id));
        item.insert("version".into(), n(batch.version));
        item.insert("inputs".into(), packed(&batch.inputs.to_string())?);
        item.insert("total".into(), n(batch.total));
        item.insert("concurrency".into(), n(batch.concurrency));
        item.insert("tolerated_failures".into(), n(batch.tolerated_failures));
        item.insert("depth".into(), n(batch.depth));
        item.insert("request_id".into(), s(&batch.request_id));
        item.insert("retention_seconds".into(), n(batch.retention_seconds));
        item.insert("succeeded".into(), n(batch.succeeded));
        item.insert("failed".into(), n(batch.failed));
        item.insert("generation".into(), n(batch.generation));
        // Kept as long as the parent's steps (the parent's records expire with it).
        item.insert("ttl".into(), self.step_ttl());
        condition_met(self.put_new(item).await)
    }

    async fn get_child_batch(
        &self,
        tenant_id: &str,
        parent_execution_id: &str,
        node_id: &str,
    ) -> Result<Option<ChildBatch>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(child_batch_key(tenant_id, parent_execution_id, node_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        let Some(item) = out.item.filter(|item| item.contains_key("workflow_id")) else { return Ok(None) };
        let inputs = unpacked(&item, "inputs")?.unwrap_or_else(|| "[]".into());
        Ok(Some(ChildBatch {
            tenant_id: tenant_id.to_string(),
            parent_execution_id: parent_execution_id.to_string(),
            node_id: node_id.to_string(),
            workflow_id: get_s(&item, "workflow_id")?,
            version: get_n(&item, "version")?,
            inputs: serde_json::from_str(&inputs).map_err(|e| StoreError::Internal(format!("batch inputs: {e}")))?,
            total: get_n(&item, "total")?,
            concurrency: get_n(&item, "concurrency")?,
            tolerated_failures: get_n(&item, "tolerated_failures")?,
            depth: get_n(&item, "depth")?,
            request_id: get_s(&item, "request_id")?,
            retention_seconds: get_n(&item, "retention_seconds")?,
            succeeded: get_opt_n(&item, "succeeded")?.unwrap_or(0),
            failed: get_opt_n(&item, "failed")?.unwrap_or(0),
            generation: get_opt_n(&item, "generation")?.unwrap_or(0),
        }))
    }

    async fn list_children(
        &self,
        tenant_id: &str,
        parent_execution_id: &str,
        node_id: &str,
        from_index: u32,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        let first = crate::model::child_execution_id(parent_execution_id, node_id, from_index);
        let last = format!("{}ZZZZZZZZZZ", crate::model::child_id_prefix(parent_execution_id, node_id));
        let (mut found, mut start) = (Vec::new(), None);
        while found.len() < limit {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :last")
                .expression_attribute_values(":pk", s(tenant_pk(tenant_id)))
                .expression_attribute_values(":first", s(execution_sk(&first)))
                .expression_attribute_values(":last", s(execution_sk(&last)))
                // Strongly consistent: the batch's counters said these ended; their records must say so too.
                .consistent_read(true)
                .limit((limit - found.len()).clamp(1, 1000) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            for item in out.items.unwrap_or_default() {
                let record = execution_from(&item, tenant_id)?;
                // The range is this node's children; an unrelated id sharing the prefix is not.
                if record.parent.as_ref().is_some_and(|p| p.execution_id == parent_execution_id && p.node_id == node_id)
                {
                    found.push(record);
                }
            }
            match out.last_evaluated_key {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        Ok(found)
    }

    async fn park_execution(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        waits: &[Wait],
        steps: &[StepRecord],
        next_sweep_at: &str,
    ) -> Result<bool, StoreError> {
        let waits = serde_json::to_string(waits).map_err(|e| StoreError::Internal(e.to_string()))?;
        let park = "SET #status = :waiting, waits = :waits, sweep_at = :next, sweep_count = :zero \
                    REMOVE lease_owner, lease_until";
        let values = vec![
            (":waiting", s("waiting")),
            (":waits", s(waits)),
            (":next", s(next_sweep_at)),
            (":zero", n(0)),
            (":owner", s(owner)),
            (":running", s("running")),
        ];
        let key = execution_key(tenant_id, execution_id);
        let condition = "lease_owner = :owner AND #status = :running";
        self.update_with_steps(key, park, condition, values, tenant_id, execution_id, steps, None).await
    }

    async fn keep_waits(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        waits: &[Wait],
    ) -> Result<bool, StoreError> {
        let waits = serde_json::to_string(waits).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.update_if(
            execution_key(tenant_id, execution_id),
            "SET waits = :waits",
            "lease_owner = :owner",
            vec![(":waits", s(waits)), (":owner", s(owner))],
        )
        .await
    }

    async fn put_callback(&self, record: &CallbackRecord) -> Result<(), StoreError> {
        let mut item = callback_key(&record.token_hash);
        item.insert("entity".into(), s("callback"));
        item.insert("tenant_id".into(), s(&record.tenant_id));
        item.insert("execution_id".into(), s(&record.execution_id));
        item.insert("node_id".into(), s(&record.node_id));
        item.insert("expires_at".into(), s(&record.expires_at));
        let ttl = chrono::DateTime::parse_from_rfc3339(&record.expires_at).map(|t| t.timestamp()).unwrap_or_default();
        item.insert("ttl".into(), n(ttl + 24 * 3600));
        self.put_new(item).await
    }

    async fn find_callback(&self, token_hash: &str) -> Result<Option<CallbackRecord>, StoreError> {
        let Some(item) = self.get(callback_key(token_hash)).await? else { return Ok(None) };
        Ok(Some(CallbackRecord {
            token_hash: token_hash.to_string(),
            tenant_id: get_s(&item, "tenant_id")?,
            execution_id: get_s(&item, "execution_id")?,
            node_id: get_s(&item, "node_id")?,
            expires_at: get_s(&item, "expires_at")?,
        }))
    }

    async fn claim_idempotency_key(
        &self,
        tenant_id: &str,
        key_hash: &str,
        body_hash: &str,
        execution_id: &str,
        expires_at: &str,
        now: &str,
    ) -> Result<IdempotencyClaim, StoreError> {
        let item_key = idempotency_key(tenant_id, key_hash);
        let mut item = item_key.clone();
        item.insert("entity".into(), s("idempotency_key"));
        item.insert("body_hash".into(), s(body_hash));
        item.insert("execution_id".into(), s(execution_id));
        item.insert("expires_at".into(), s(expires_at));
        // DynamoDB TTL removes the record eventually; `expires_at` decides reuse exactly.
        let ttl = chrono::DateTime::parse_from_rfc3339(expires_at).map(|t| t.timestamp()).unwrap_or_default() + 3600;
        item.insert("ttl".into(), n(ttl));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", s(now))
            .send()
            .await
            .map_err(classify);
        match put {
            Ok(_) => Ok(IdempotencyClaim::New),
            Err(StoreError::ConditionFailed) => {
                let existing = self
                    .get(item_key)
                    .await?
                    .ok_or_else(|| StoreError::Internal("idempotency record vanished".into()))?;
                Ok(IdempotencyClaim::Existing {
                    body_hash: get_s(&existing, "body_hash")?,
                    execution_id: get_s(&existing, "execution_id")?,
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn list_executions(
        &self,
        tenant_id: &str,
        workflow_id: Option<&str>,
        filter: &ExecutionFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ExecutionRecord>, StoreError> {
        // A workflow's executions: gsi1. All the tenant's: its own partition (`EX#` sort keys).
        let (index, pk_name, sk_name, pk) = match workflow_id {
            Some(workflow_id) => (Some("gsi1"), "gsi1pk", "gsi1sk", workflow_executions_pk(tenant_id, workflow_id)),
            None => (None, "pk", "sk", tenant_pk(tenant_id)),
        };
        let mut start = after.map(|a| {
            let mut k = execution_key(tenant_id, a);
            if index.is_some() {
                k.insert("gsi1pk".into(), s(&pk));
                k.insert("gsi1sk".into(), s(execution_sk(a)));
            }
            k
        });
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES_PER_LISTING {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_string))
                .key_condition_expression(format!("{pk_name} = :pk AND begins_with({sk_name}, :prefix)"))
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":prefix", s(EXECUTION_PREFIX))
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take());
            let mut conditions = Vec::new();
            if let Some(status) = filter.status {
                conditions.push("#status = :status");
                query = query
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":status", s(status.as_str()));
            }
            if let Some(trigger_id) = &filter.trigger_id {
                conditions.push("trigger_id = :trigger_id");
                query = query.expression_attribute_values(":trigger_id", s(trigger_id));
            }
            query = if conditions.is_empty() {
                query.limit((limit + 1) as i32)
            } else {
                query.filter_expression(conditions.join(" AND ")).limit(((limit + 1) * 4).min(500) as i32)
            };
            let out = query.send().await.map_err(classify)?;
            for item in out.items.unwrap_or_default() {
                items.push(execution_from(&item, tenant_id)?);
                if items.len() > limit {
                    items.truncate(limit);
                    let next_after = items.last().map(|e| e.execution_id.clone());
                    return Ok(Page { items, next_after });
                }
            }
            match out.last_evaluated_key {
                None => return Ok(Page { items, next_after: None }),
                Some(last) if page == MAX_PAGES_PER_LISTING => {
                    return Ok(Page { items, next_after: resume_after(&last, EXECUTION_PREFIX) });
                }
                Some(last) => start = Some(last),
            }
        }
        unreachable!("the loop returns on its last page")
    }

    async fn request_cancel(&self, tenant_id: &str, execution_id: &str) -> Result<bool, StoreError> {
        self.update_if(
            execution_key(tenant_id, execution_id),
            "SET cancel_requested = :yes",
            "attribute_exists(pk) AND #status IN (:queued, :running, :waiting)",
            vec![
                (":yes", AttributeValue::Bool(true)),
                (":queued", s("queued")),
                (":running", s("running")),
                (":waiting", s("waiting")),
            ],
        )
        .await
    }

    async fn redrive_execution(
        &self,
        tenant_id: &str,
        execution_id: &str,
        deadline_at: &str,
        hold: &str,
        hold_until: &str,
        now: &str,
        kept: &crate::model::ExecutionUsage,
    ) -> Result<bool, StoreError> {
        let (update, condition, values) =
            redrive_update(execution_id, deadline_at, hold, hold_until, now, false, kept)?;
        self.update_if(execution_key(tenant_id, execution_id), update, &condition, values).await
    }

    async fn redrive_child(
        &self,
        tenant_id: &str,
        child_execution_id: &str,
        parent: &ParentLink,
        deadline_at: &str,
        hold: &str,
        hold_until: &str,
        now: &str,
        kept: &crate::model::ExecutionUsage,
    ) -> Result<bool, StoreError> {
        let (update, condition, values) =
            redrive_update(child_execution_id, deadline_at, hold, hold_until, now, true, kept)?;
        let uncount = Update::builder()
            .table_name(&self.table)
            .set_key(Some(child_batch_key(tenant_id, &parent.execution_id, &parent.node_id)))
            .update_expression("ADD failed :minus_one")
            .expression_attribute_values(":minus_one", n(-1))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let key = execution_key(tenant_id, child_execution_id);
        self.update_with_steps(key, update, &condition, values, tenant_id, child_execution_id, &[], Some(uncount)).await
    }

    async fn set_batch_generation(
        &self,
        tenant_id: &str,
        parent_execution_id: &str,
        node_id: &str,
        generation: u32,
    ) -> Result<(), StoreError> {
        let key = child_batch_key(tenant_id, parent_execution_id, node_id);
        self.update_if(
            key,
            "SET generation = :generation",
            "attribute_exists(pk)",
            vec![(":generation", n(generation))],
        )
        .await?;
        Ok(())
    }

    async fn stranded_executions(&self, now: &str, limit: usize) -> Result<Vec<StrandedExecution>, StoreError> {
        let mut found = Vec::new();
        for shard in 0..SWEEP_SHARDS {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("sweep")
                .key_condition_expression("sweep_pk = :pk AND sweep_at < :now")
                .expression_attribute_values(":pk", s(format!("SWEEP#{shard}")))
                .expression_attribute_values(":now", s(now))
                .limit(limit.clamp(1, 1000) as i32)
                .send()
                .await
                .map_err(classify)?;
            for item in out.items.unwrap_or_default() {
                let tenant_id = get_s(&item, "pk")?.strip_prefix("T#").unwrap_or_default().to_string();
                let status = get_s(&item, "status")?;
                found.push(StrandedExecution {
                    tenant_id,
                    execution_id: get_s(&item, "execution_id")?,
                    status: ExecutionStatus::parse(&status)
                        .ok_or_else(|| StoreError::Internal(format!("status {status}")))?,
                    deadline_at: get_s(&item, "deadline_at")?,
                    sweep_count: get_opt_n(&item, "sweep_count")?.unwrap_or(0),
                    request_id: get_s(&item, "request_id")?,
                    lease_expired: item.contains_key("lease_until"),
                });
            }
        }
        // Oldest first across shards: ULIDs sort by creation time.
        found.sort_by(|a, b| a.execution_id.cmp(&b.execution_id));
        found.truncate(limit);
        Ok(found)
    }

    async fn mark_swept(
        &self,
        tenant_id: &str,
        execution_id: &str,
        next_sweep_at: &str,
        now: &str,
        counted: bool,
    ) -> Result<bool, StoreError> {
        let (due_and_free, mut values) = lease_condition(LeaseGuard::Stranded { now });
        values.extend([(":next", s(next_sweep_at)), (":zero", n(0)), (":add", n(u32::from(counted)))]);
        self.update_if(
            execution_key(tenant_id, execution_id),
            "SET sweep_at = :next, sweep_count = if_not_exists(sweep_count, :zero) + :add",
            &format!("attribute_exists(sweep_pk) AND {due_and_free}"),
            values,
        )
        .await
    }

    async fn acquire_run_slot(
        &self,
        tenant_id: &str,
        execution_id: &str,
        until: &str,
        now: &str,
        limit: u32,
    ) -> Result<bool, StoreError> {
        // Read, prune, write back conditional on the version read (optimistic concurrency on
        // one small item per tenant); a lost race reads again.
        let key = run_slots_key(tenant_id);
        for _ in 0..RUN_SLOT_ATTEMPTS {
            let item = self.get(key.clone()).await?;
            let version = match &item {
                Some(item) => get_opt_n::<u64>(item, "version")?.unwrap_or(0),
                None => 0,
            };
            let mut slots: HashMap<String, AttributeValue> = item
                .as_ref()
                .and_then(|item| item.get("slots"))
                .and_then(|slots| slots.as_m().ok())
                .cloned()
                .unwrap_or_default();
            slots.retain(|_, expiry| expiry.as_s().is_ok_and(|at| at.as_str() >= now));
            if !slots.contains_key(execution_id) && slots.len() >= limit as usize {
                return Ok(false);
            }
            slots.insert(execution_id.to_string(), s(until));
            let mut put = key.clone();
            put.insert("entity".into(), s("run_slots"));
            put.insert("slots".into(), AttributeValue::M(slots));
            put.insert("version".into(), n(version + 1));
            let written = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(put))
                .condition_expression("attribute_not_exists(pk) OR version = :version")
                .expression_attribute_values(":version", n(version))
                .send()
                .await
                .map_err(classify);
            match written {
                Ok(_) => return Ok(true),
                Err(StoreError::ConditionFailed) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable("the tenant's run slots are contended; try again".into()))
    }

    async fn release_run_slot(&self, tenant_id: &str, execution_id: &str) -> Result<(), StoreError> {
        // The version moves too, so an acquire that read before this cannot write the slot back.
        let released = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(run_slots_key(tenant_id)))
            .update_expression("REMOVE slots.#execution SET version = version + :one")
            .condition_expression("attribute_exists(slots.#execution)")
            .expression_attribute_names("#execution", execution_id)
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(classify);
        match released {
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn set_waiting(
        &self,
        tenant_id: &str,
        execution_id: &str,
        reason: Option<&str>,
        next_sweep_at: &str,
    ) -> Result<(), StoreError> {
        let (update, mut values) = match reason {
            Some(reason) => ("SET waiting_reason = :reason, sweep_at = :next", vec![(":reason", s(reason))]),
            None => ("SET sweep_at = :next REMOVE waiting_reason", vec![]),
        };
        values.push((":next", s(next_sweep_at)));
        self.update_if(execution_key(tenant_id, execution_id), update, "attribute_exists(sweep_pk)", values).await?;
        Ok(())
    }
}

/// A redrive's write: back to queued with a new deadline, its end cleared, held by `hold` until
/// `hold_until`; only from failed or timed out (and cancelled, for a child whose parent is
/// redriven), with no live lease.
/// An execution's spend as its `usage` attribute holds it: compact JSON (ExecutionUsage), read
/// from the change stream by the usage counters (`store::dynamo::usage`).
pub(super) fn usage_json(usage: &crate::model::ExecutionUsage) -> Result<String, StoreError> {
    serde_json::to_string(usage).map_err(|e| StoreError::Internal(e.to_string()))
}

/// An update expression, its condition and their values.
type ConditionalUpdate = (&'static str, String, Vec<(&'static str, AttributeValue)>);

fn redrive_update(
    execution_id: &str,
    deadline_at: &str,
    hold: &str,
    hold_until: &str,
    now: &str,
    cancelled_too: bool,
    kept: &crate::model::ExecutionUsage,
) -> Result<ConditionalUpdate, StoreError> {
    let (free, now_values) = lease_condition(LeaseGuard::Free { now });
    let mut values = vec![
        (":queued", s("queued")),
        (":deadline", s(deadline_at)),
        (":null", s("null")),
        (":no", AttributeValue::Bool(false)),
        (":zero", n(0)),
        (":one", n(1)),
        (":failed", s("failed")),
        (":timed_out", s("timed_out")),
        (":cancelled", s(if cancelled_too { "cancelled" } else { "timed_out" })),
        (":hold", s(hold)),
        (":hold_until", s(hold_until)),
        (":sweep_pk", s(sweep_pk(execution_id))),
        (":usage", s(usage_json(kept)?)),
    ];
    values.extend(now_values);
    let update = "SET #status = :queued, deadline_at = :deadline, #output = :null, #error = :null, \
                  cancel_requested = :no, redrive_count = if_not_exists(redrive_count, :zero) + :one, \
                  lease_owner = :hold, lease_until = :hold_until, \
                  sweep_pk = :sweep_pk, sweep_at = :hold_until, sweep_count = :zero, #usage = :usage \
                  REMOVE finished_at, waits";
    let condition = format!("attribute_exists(pk) AND #status IN (:failed, :timed_out, :cancelled) AND {free}");
    Ok((update, condition, values))
}

/// Reads and conditional writes one acquire may try before it reports the slots contended.
const RUN_SLOT_ATTEMPTS: usize = 8;

/// The condition a `LeaseGuard` puts on a write, and the values it names.
fn lease_condition(guard: LeaseGuard<'_>) -> (&'static str, Vec<(&'static str, AttributeValue)>) {
    match guard {
        LeaseGuard::Held(owner) => ("lease_owner = :lease_owner", vec![(":lease_owner", s(owner))]),
        LeaseGuard::Free { now } => {
            ("(attribute_not_exists(lease_until) OR lease_until < :lease_now)", vec![(":lease_now", s(now))])
        }
        LeaseGuard::Stranded { now } => (
            "sweep_at < :lease_now AND (attribute_not_exists(lease_until) OR lease_until < :lease_now)",
            vec![(":lease_now", s(now))],
        ),
    }
}
