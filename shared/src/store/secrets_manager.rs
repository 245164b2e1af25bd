//! Secrets Manager adapter for `SecretStore`. Secret values never enter logs: errors carry the
//! SDK's error text only, which names no value.

use super::SecretStore;
use crate::error::StoreError;
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

#[derive(Clone)]
pub struct SecretsManagerStore {
    client: Client,
}

impl SecretsManagerStore {
    pub fn new(client: Client) -> Self {
        SecretsManagerStore { client }
    }
}

fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    super::sdk_error::classify_sdk_error(err, &["ThrottlingException", "InternalServiceError", "ServiceUnavailable"])
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn put_secret(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let created = self.client.create_secret().name(name).secret_string(value).send().await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceExistsException") => {
                self.client.put_secret_value().secret_id(name).secret_string(value).send().await.map_err(classify)?;
                Ok(())
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn get_secret(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.client.get_secret_value().secret_id(name).send().await {
            Ok(out) => Ok(out.secret_string),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    async fn delete_secret(&self, name: &str) -> Result<(), StoreError> {
        let deleted = self.client.delete_secret().secret_id(name).force_delete_without_recovery(true).send().await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }
}
