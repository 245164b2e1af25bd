//! `CredentialStore`: provider credentials' metadata (the values are in Secrets Manager).

use super::*;

pub(super) fn credential_from(item: &Item, tenant_id: &str) -> Result<CredentialRecord, StoreError> {
    Ok(CredentialRecord {
        tenant_id: tenant_id.to_string(),
        name: get_s(item, "name")?,
        provider: get_s(item, "provider")?,
        base_url: get_opt_s(item, "base_url"),
        last4: get_s(item, "last4")?,
        created_at: get_s(item, "created_at")?,
        updated_at: get_s(item, "updated_at")?,
    })
}

#[async_trait]
impl CredentialStore for DynamoStore {
    async fn put_credential(&self, record: &CredentialRecord) -> Result<CredentialRecord, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(credential_key(&record.tenant_id, &record.name)))
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":entity", s("credential"))
            .expression_attribute_values(":name", s(&record.name))
            .expression_attribute_values(":provider", s(&record.provider))
            .expression_attribute_values(":last4", s(&record.last4))
            .expression_attribute_values(":created_at", s(&record.created_at))
            .expression_attribute_values(":updated_at", s(&record.updated_at))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        let mut expression = "SET entity = :entity, #name = :name, provider = :provider, last4 = :last4, \
                              created_at = if_not_exists(created_at, :created_at), updated_at = :updated_at"
            .to_string();
        match &record.base_url {
            Some(url) => {
                expression.push_str(", base_url = :base_url");
                update = update.expression_attribute_values(":base_url", s(url));
            }
            None => expression.push_str(" REMOVE base_url"),
        }
        let out = update.update_expression(expression).send().await.map_err(classify)?;
        let item = out.attributes.ok_or_else(|| StoreError::Internal("update returned no attributes".into()))?;
        credential_from(&item, &record.tenant_id)
    }

    async fn get_credential(&self, tenant_id: &str, name: &str) -> Result<Option<CredentialRecord>, StoreError> {
        self.get(credential_key(tenant_id, name)).await?.map(|item| credential_from(&item, tenant_id)).transpose()
    }

    async fn list_credentials(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<CredentialRecord>, StoreError> {
        let pk = tenant_pk(tenant_id);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s(CREDENTIAL_PREFIX))
            .limit((limit + 1) as i32)
            .set_exclusive_start_key(after.map(|a| key(pk.clone(), credential_sk(a))))
            .send()
            .await
            .map_err(classify)?;
        let mut items = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|i| credential_from(i, tenant_id))
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more { items.last().map(|c| c.name.clone()) } else { None };
        Ok(Page { items, next_after })
    }

    async fn delete_credential(&self, tenant_id: &str, name: &str) -> Result<bool, StoreError> {
        self.delete_existing(credential_key(tenant_id, name)).await
    }
}
