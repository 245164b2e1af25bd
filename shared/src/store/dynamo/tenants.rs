//! `TenantStore`: tenants and their API keys (found by the key's hash with one GetItem).

use super::*;

#[async_trait]
impl TenantStore for DynamoStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let mut item = tenant_key(&tenant.tenant_id);
        item.insert("entity".into(), s("tenant"));
        item.insert("tenant_id".into(), s(&tenant.tenant_id));
        item.insert("name".into(), s(&tenant.name));
        item.insert("tier".into(), s(&tenant.tier));
        item.insert("created_at".into(), s(&tenant.created_at));
        if let (Some(id), Some(value)) = (&tenant.usage_key_id, &tenant.usage_key_value) {
            item.insert("usage_key_id".into(), s(id));
            item.insert("usage_key_value".into(), s(value));
        }
        self.put_new(item).await
    }

    async fn get_tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, StoreError> {
        self.get(tenant_key(tenant_id))
            .await?
            .map(|item| {
                Ok(Tenant {
                    tenant_id: get_s(&item, "tenant_id")?,
                    name: get_s(&item, "name")?,
                    tier: get_s(&item, "tier")?,
                    created_at: get_s(&item, "created_at")?,
                    usage_key_id: get_opt_s(&item, "usage_key_id"),
                    usage_key_value: get_opt_s(&item, "usage_key_value"),
                })
            })
            .transpose()
    }

    async fn update_tenant_plan(
        &self,
        tenant_id: &str,
        tier: &str,
        usage_key_id: &str,
        usage_key_value: &str,
    ) -> Result<bool, StoreError> {
        self.update_if(
            tenant_key(tenant_id),
            "SET tier = :tier, usage_key_id = :id, usage_key_value = :value",
            "attribute_exists(pk)",
            vec![(":tier", s(tier)), (":id", s(usage_key_id)), (":value", s(usage_key_value))],
        )
        .await
    }

    async fn put_api_key(&self, api_key: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut item = api_key_key(&api_key.key_hash);
        item.insert("entity".into(), s("api_key"));
        item.insert("gsi1pk".into(), s(tenant_pk(&api_key.tenant_id)));
        item.insert("gsi1sk".into(), s(api_key_gsi_sk(&api_key.key_id)));
        item.insert("key_hash".into(), s(&api_key.key_hash));
        item.insert("key_id".into(), s(&api_key.key_id));
        item.insert("tenant_id".into(), s(&api_key.tenant_id));
        item.insert("name".into(), s(&api_key.name));
        item.insert("display_prefix".into(), s(&api_key.display_prefix));
        item.insert("created_at".into(), s(&api_key.created_at));
        for (name, value) in [
            ("expires_at", &api_key.expires_at),
            ("revoked_at", &api_key.revoked_at),
            ("last_used_at", &api_key.last_used_at),
        ] {
            if let Some(value) = value {
                item.insert(name.into(), s(value));
            }
        }
        self.put_new(item).await
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.get(api_key_key(key_hash)).await?.map(|item| api_key_from(&item)).transpose()
    }

    async fn find_api_key_by_id(&self, tenant_id: &str, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :pk AND gsi1sk = :sk")
            .expression_attribute_values(":pk", s(tenant_pk(tenant_id)))
            .expression_attribute_values(":sk", s(api_key_gsi_sk(key_id)))
            .send()
            .await
            .map_err(classify)?;
        out.items.unwrap_or_default().first().map(api_key_from).transpose()
    }

    async fn list_api_keys(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ApiKeyRecord>, StoreError> {
        // The gsi1 partition `T#<tenant>` holds only the tenant's keys, so a listing resumes
        // with a sort key condition rather than a start key (which would need the key's hash).
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .expression_attribute_values(":pk", s(tenant_pk(tenant_id)))
            .scan_index_forward(false)
            .limit((limit + 1) as i32);
        let query = match after {
            Some(after) => query
                .key_condition_expression("gsi1pk = :pk AND gsi1sk < :before")
                .expression_attribute_values(":before", s(api_key_gsi_sk(after))),
            None => query
                .key_condition_expression("gsi1pk = :pk AND begins_with(gsi1sk, :prefix)")
                .expression_attribute_values(":prefix", s(API_KEY_GSI_PREFIX)),
        };
        let out = query.send().await.map_err(classify)?;
        let mut items: Vec<ApiKeyRecord> =
            out.items.unwrap_or_default().iter().map(api_key_from).collect::<Result<_, _>>()?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more { items.last().map(|k| k.key_id.clone()) } else { None };
        Ok(Page { items, next_after })
    }

    async fn count_live_api_keys(&self, tenant_id: &str, now: &str) -> Result<usize, StoreError> {
        let (mut live, mut start) = (0usize, None);
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :pk AND begins_with(gsi1sk, :prefix)")
                .filter_expression(
                    "attribute_not_exists(revoked_at) AND (attribute_not_exists(expires_at) OR expires_at > :now)",
                )
                .expression_attribute_values(":pk", s(tenant_pk(tenant_id)))
                .expression_attribute_values(":prefix", s(API_KEY_GSI_PREFIX))
                .expression_attribute_values(":now", s(now))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            live += out.count.max(0) as usize;
            match out.last_evaluated_key {
                Some(last) => start = Some(last),
                None => return Ok(live),
            }
        }
    }

    async fn revoke_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError> {
        self.update_key(key_hash, "SET revoked_at = if_not_exists(revoked_at, :at)", at, None).await
    }

    async fn expire_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError> {
        self.update_key(
            key_hash,
            "SET expires_at = :at",
            at,
            Some("attribute_exists(pk) AND (attribute_not_exists(expires_at) OR expires_at > :at)"),
        )
        .await
    }

    async fn touch_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError> {
        self.update_key(key_hash, "SET last_used_at = :at", at, None).await
    }
}

pub(super) fn api_key_from(item: &Item) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        key_hash: get_s(item, "key_hash")?,
        key_id: get_s(item, "key_id")?,
        tenant_id: get_s(item, "tenant_id")?,
        name: get_s(item, "name")?,
        display_prefix: get_s(item, "display_prefix")?,
        created_at: get_s(item, "created_at")?,
        expires_at: get_opt_s(item, "expires_at"),
        revoked_at: get_opt_s(item, "revoked_at"),
        last_used_at: get_opt_s(item, "last_used_at"),
    })
}
