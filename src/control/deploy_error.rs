//! How the control API answers what the deployer refuses.

use crate::deploy::DeployError;
use crate::error::ApiError;

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Invalid { field, reason } => ApiError::validation(field, reason),
            DeployError::Busy(_) => ApiError::Conflict(e.to_string()),
            DeployError::DeletedBefore | DeployError::DeletedDuring => {
                ApiError::NotFound(e.to_string())
            }
            DeployError::Store(e) => e.into(),
            DeployError::EnvUnreadable(_) | DeployError::Task(_) => {
                ApiError::Internal(anyhow::Error::new(e))
            }
        }
    }
}
