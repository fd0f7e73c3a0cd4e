//! What can go wrong when asking for a deployment. (A deployment that runs and fails is not
//! an error here: it is a `failed` deployment row, with its reason.) The control API maps these
//! to its answers.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A field of the deployment request is wrong.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Another deployment of the server is running (API deployments do not queue).
    #[error("a deployment of {0} is in progress; retry when it has finished")]
    Busy(String),
    /// The server was deleted before the deployment began.
    #[error("the server was deleted before the deployment began")]
    DeletedBefore,
    /// The server was deleted while the deployment ran.
    #[error("the server was deleted during the deployment")]
    DeletedDuring,
    /// A stored env var cannot be opened with this master key.
    #[error("env var {0} cannot be decrypted with this master key")]
    EnvUnreadable(String),
    /// The pipeline's task ended abnormally.
    #[error("deployment task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DeployError {
    pub(super) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
