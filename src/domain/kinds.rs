//! The closed sets the store keeps as text and the code decides on: roles, statuses, kinds.
//! Each is an enum here, spelled on the wire and in the database exactly as before.

use std::fmt;

/// An enum whose variants have fixed text names (`as_str`, `parse`, `Display`, serde).
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// An account's role on the instance.
    UserRole { Admin = "admin", Member = "member" }
);

text_enum!(
    /// A member's role in a project (and what an invitation offers).
    ProjectRole { Owner = "owner", Member = "member" }
);

text_enum!(
    /// A server's stored status (what serves it may say more: `unreachable`, `stopped`).
    ServerStatus {
        Running = "running",
        Provisioning = "provisioning",
        Stopped = "stopped",
        Error = "error",
    }
);

text_enum!(
    /// Where a deployment is.
    DeploymentStatus {
        Pending = "pending",
        Building = "building",
        Running = "running",
        Failed = "failed",
        RolledBack = "rolled_back",
    }
);

text_enum!(
    /// What made a deployment.
    DeploymentKind { Deploy = "deploy", Rollback = "rollback" }
);

text_enum!(
    /// Who checks a server's tokens: the built-in authorization server or an external issuer.
    ServerAuthMode { Managed = "ezforge_managed", Byoa = "byoa" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_and_serialises_as_stored() {
        for r in UserRole::ALL {
            assert_eq!(UserRole::parse(r.as_str()), Some(*r));
        }
        for s in DeploymentStatus::ALL {
            assert_eq!(DeploymentStatus::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_value(s).expect("json"),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(ServerAuthMode::Managed.as_str(), "ezforge_managed");
        assert_eq!(ProjectRole::parse("admin"), None);
    }
}
