//! The domain's closed sets ([`crate::domain::kinds`]) as SQLite text: written by name, read
//! back strictly (a name the code does not know is an error, not a guess).

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::domain::kinds::{
    DeploymentKind, DeploymentStatus, ProjectRole, ServerAuthMode, ServerStatus, UserRole,
};

macro_rules! sql_text {
    ($($name:ident),+) => {$(
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    FromSqlError::Other(format!("unknown {}: {text:?}", stringify!($name)).into())
                })
            }
        }
    )+};
}

sql_text!(
    UserRole,
    ProjectRole,
    ServerStatus,
    DeploymentStatus,
    DeploymentKind,
    ServerAuthMode
);
