//! Fields many control API requests share, checked the same way everywhere.

use crate::domain::validate;
use crate::error::ApiError;

/// A required display name (projects, servers, keys, clients): present, trimmed, at most 255
/// characters, no control or invisible formatting characters.
pub fn required_name(name: Option<&str>) -> Result<String, ApiError> {
    let name = name.ok_or_else(|| ApiError::validation("name", "required"))?;
    validate::name(name, 255).map_err(|e| ApiError::validation("name", e))
}
