//! `WorkflowStore`: workflows (the draft) and their immutable versions.

use super::*;

pub(super) fn workflow_from(item: &Item, tenant_id: &str) -> Result<WorkflowRecord, StoreError> {
    Ok(WorkflowRecord {
        tenant_id: tenant_id.to_string(),
        workflow_id: get_s(item, "workflow_id")?,
        definition: definition_from(item)?,
        revision: get_n(item, "revision")?,
        latest_version: get_n(item, "latest_version")?,
        deployed_version: get_opt_n(item, "deployed_version")?,
        published_revision: get_n(item, "published_revision")?,
        created_at: get_s(item, "created_at")?,
        updated_at: get_s(item, "updated_at")?,
    })
}

pub(super) fn summary_from(item: &Item) -> Result<WorkflowSummary, StoreError> {
    Ok(WorkflowSummary {
        workflow_id: get_s(item, "workflow_id")?,
        name: get_s(item, "name")?,
        description: get_opt_s(item, "description"),
        tags: get_tags(item),
        revision: get_n(item, "revision")?,
        latest_version: get_n(item, "latest_version")?,
        deployed_version: get_opt_n(item, "deployed_version")?,
        created_at: get_s(item, "created_at")?,
        updated_at: get_s(item, "updated_at")?,
    })
}

/// The attributes that mirror the draft (kept beside the JSON so listings can project them).
pub(super) fn draft_attributes(
    definition: &WorkflowDefinition,
) -> Result<Vec<(&'static str, AttributeValue)>, StoreError> {
    let mut attributes = vec![
        ("name", s(&definition.name)),
        ("tags", AttributeValue::L(definition.tags.iter().map(s).collect())),
        ("definition", packed(&definition_json(definition)?)?),
    ];
    if let Some(description) = &definition.description {
        attributes.push(("description", s(description)));
    }
    Ok(attributes)
}

#[async_trait]
impl WorkflowStore for DynamoStore {
    async fn create_workflow(&self, record: &WorkflowRecord) -> Result<(), StoreError> {
        let mut item = key(tenant_pk(&record.tenant_id), workflow_sk(&record.workflow_id));
        item.insert("entity".into(), s("workflow"));
        item.insert("workflow_id".into(), s(&record.workflow_id));
        for (name, value) in draft_attributes(&record.definition)? {
            item.insert(name.into(), value);
        }
        item.insert("revision".into(), n(record.revision));
        item.insert("latest_version".into(), n(record.latest_version));
        item.insert("published_revision".into(), n(record.published_revision));
        if let Some(v) = record.deployed_version {
            item.insert("deployed_version".into(), n(v));
        }
        item.insert("created_at".into(), s(&record.created_at));
        item.insert("updated_at".into(), s(&record.updated_at));
        self.put_new(item).await
    }

    async fn get_workflow(&self, tenant_id: &str, workflow_id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        self.get(key(tenant_pk(tenant_id), workflow_sk(workflow_id)))
            .await?
            .map(|item| workflow_from(&item, tenant_id))
            .transpose()
    }

    async fn list_workflows(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: usize,
        tag: Option<&str>,
    ) -> Result<Page<WorkflowSummary>, StoreError> {
        let pk = tenant_pk(tenant_id);
        let mut start = after.map(|a| key(pk.clone(), workflow_sk(a)));
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES_PER_LISTING {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":prefix", s(WORKFLOW_PREFIX))
                .expression_attribute_names("#name", "name")
                .projection_expression(
                    "sk, workflow_id, #name, description, tags, revision, latest_version, deployed_version, created_at, updated_at",
                )
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take());
            query = match tag {
                // Read one more than asked so we know whether another page exists.
                None => query.limit((limit + 1) as i32),
                Some(tag) => query
                    .filter_expression("contains(tags, :tag)")
                    .expression_attribute_values(":tag", s(tag))
                    .limit(((limit + 1) * 4).min(500) as i32),
            };
            let out = query.send().await.map_err(classify)?;
            for item in out.items.unwrap_or_default() {
                items.push(summary_from(&item)?);
                if items.len() > limit {
                    items.truncate(limit);
                    let next_after = items.last().map(|s| s.workflow_id.clone());
                    return Ok(Page { items, next_after });
                }
            }
            match out.last_evaluated_key {
                None => {
                    return Ok(Page { items, next_after: None });
                }
                Some(last) if page == MAX_PAGES_PER_LISTING => {
                    return Ok(Page { items, next_after: resume_after(&last, WORKFLOW_PREFIX) });
                }
                Some(last) => start = Some(last),
            }
        }
        unreachable!("the loop returns on its last page")
    }

    async fn replace_draft(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        definition: &WorkflowDefinition,
        expected_revision: u64,
        updated_at: &str,
    ) -> Result<Option<WorkflowRecord>, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(tenant_id), workflow_sk(workflow_id))))
            .condition_expression("attribute_exists(pk) AND revision = :expected")
            .expression_attribute_values(":expected", n(expected_revision))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":updated_at", s(updated_at))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        let mut sets = vec!["revision = revision + :one".to_string(), "updated_at = :updated_at".to_string()];
        for (name, value) in draft_attributes(definition)? {
            sets.push(format!("#{name} = :{name}"));
            update = update
                .expression_attribute_names(format!("#{name}"), name)
                .expression_attribute_values(format!(":{name}"), value);
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if definition.description.is_none() {
            expression.push_str(" REMOVE description");
        }
        match update.update_expression(expression).send().await.map_err(classify) {
            Ok(out) => out.attributes.map(|item| workflow_from(&item, tenant_id)).transpose(),
            Err(StoreError::ConditionFailed) => {
                // Tell "gone" from "changed": the caller answers 404 or 412/409.
                match self.get_workflow(tenant_id, workflow_id).await? {
                    None => Ok(None),
                    Some(_) => Err(StoreError::ConditionFailed),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn delete_workflow(&self, tenant_id: &str, workflow_id: &str) -> Result<bool, StoreError> {
        // Versions first, so a half-finished delete never leaves versions without their workflow.
        let pk = versions_pk(tenant_id, workflow_id);
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .projection_expression("pk, sk")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            let keys = out.items.unwrap_or_default();
            for chunk in keys.chunks(25) {
                let mut requests: Vec<WriteRequest> = chunk
                    .iter()
                    .map(|k| {
                        let delete = DeleteRequest::builder().set_key(Some(k.clone())).build();
                        delete.map(|d| WriteRequest::builder().delete_request(d).build())
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                for attempt in 0..5 {
                    let out = self
                        .client
                        .batch_write_item()
                        .request_items(&self.table, requests)
                        .send()
                        .await
                        .map_err(classify)?;
                    requests = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
                    if requests.is_empty() {
                        break;
                    }
                    if attempt == 4 {
                        return Err(StoreError::Unavailable("batch delete left unprocessed items".into()));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
            }
            match out.last_evaluated_key {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        self.delete_existing(key(tenant_pk(tenant_id), workflow_sk(workflow_id))).await
    }

    async fn publish_version(&self, version: &VersionRecord) -> Result<(), StoreError> {
        let internal = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Internal(e.to_string());
        let workflow_key = key(tenant_pk(&version.tenant_id), workflow_sk(&version.workflow_id));
        let move_latest = Update::builder()
            .table_name(&self.table)
            .set_key(Some(workflow_key))
            .condition_expression("revision = :revision AND latest_version = :previous")
            .update_expression("SET latest_version = :version, published_revision = :revision")
            .expression_attribute_values(":revision", n(version.source_revision))
            .expression_attribute_values(":previous", n(version.version.saturating_sub(1)))
            .expression_attribute_values(":version", n(version.version))
            .build()
            .map_err(internal)?;
        let mut item = key(versions_pk(&version.tenant_id, &version.workflow_id), version_sk(version.version));
        item.insert("entity".into(), s("version"));
        item.insert("version".into(), n(version.version));
        item.insert("name".into(), s(&version.definition.name));
        item.insert("definition".into(), packed(&definition_json(&version.definition)?)?);
        item.insert("source_revision".into(), n(version.source_revision));
        item.insert("created_at".into(), s(&version.created_at));
        let put_version = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(internal)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(move_latest).build())
            .transact_items(TransactWriteItem::builder().put(put_version).build())
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn get_version(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        version: u32,
    ) -> Result<Option<VersionRecord>, StoreError> {
        let Some(item) = self.get(key(versions_pk(tenant_id, workflow_id), version_sk(version))).await? else {
            return Ok(None);
        };
        Ok(Some(VersionRecord {
            tenant_id: tenant_id.to_string(),
            workflow_id: workflow_id.to_string(),
            version: get_n(&item, "version")?,
            definition: definition_from(&item)?,
            source_revision: get_n(&item, "source_revision")?,
            created_at: get_s(&item, "created_at")?,
        }))
    }

    async fn list_versions(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<VersionSummary>, StoreError> {
        let pk = versions_pk(tenant_id, workflow_id);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s(VERSION_PREFIX))
            .expression_attribute_names("#name", "name")
            .expression_attribute_names("#version", "version")
            .projection_expression("#version, #name, source_revision, created_at")
            .scan_index_forward(false)
            .limit((limit + 1) as i32)
            .set_exclusive_start_key(after.map(|a| key(pk.clone(), format!("{VERSION_PREFIX}{a}"))))
            .send()
            .await
            .map_err(classify)?;
        let mut items = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| {
                Ok(VersionSummary {
                    version: get_n(item, "version")?,
                    name: get_s(item, "name")?,
                    source_revision: get_n(item, "source_revision")?,
                    created_at: get_s(item, "created_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more { items.last().map(|v| version_sort_key(v.version)) } else { None };
        Ok(Page { items, next_after })
    }

    async fn set_deployed_version(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        version: u32,
        updated_at: &str,
    ) -> Result<DeployOutcome, StoreError> {
        let deployed = self
            .update_if(
                key(tenant_pk(tenant_id), workflow_sk(workflow_id)),
                "SET deployed_version = :version, updated_at = :updated_at",
                "attribute_exists(pk) AND latest_version >= :version AND :version >= :one",
                vec![(":version", n(version)), (":one", n(1)), (":updated_at", s(updated_at))],
            )
            .await?;
        if deployed {
            return Ok(DeployOutcome::Deployed);
        }
        Ok(match self.get_workflow(tenant_id, workflow_id).await? {
            None => DeployOutcome::WorkflowMissing,
            Some(_) => DeployOutcome::VersionMissing,
        })
    }
}
