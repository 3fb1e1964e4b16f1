//! What a member may do in a workspace. Roles are ordered, so "at least admin" is one comparison
//! and a token can be held to "no higher than its owner's role".

use serde::{Deserialize, Serialize};

/// A member's role, lowest first (the derived order is the order of power).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type,
)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything of the workspace, changes nothing.
    Viewer,
    /// Runs the workspace: Pages, campaigns, subscribers, requests, members below owner.
    Admin,
    /// Everything, including owners, maintenance access and cancelling the workspace.
    Owner,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Admin, Role::Owner];

    /// The stored and displayed name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Parses a role name as typed on a command line or in a form.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power_and_parse_back() {
        assert!(Role::Viewer < Role::Admin && Role::Admin < Role::Owner);
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
