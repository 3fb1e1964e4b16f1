//! Who is asking, in which workspace, with what role: what authentication yields and what every
//! handler scopes its queries by. The workspace comes from here, never from the request.

use crate::Role;

/// How the principal got in, so logging out ends the right thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A personal API token (`api_tokens.id`).
    Token(i64),
    /// A console session (`sessions.id`).
    Session(i64),
}

/// An authenticated member acting in one workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// `users.id`.
    pub user_id: i64,
    /// `workspaces.id`: every query of the request is scoped to it.
    pub workspace_id: i64,
    /// The effective role: the lower of the member's role and the token's.
    pub role: Role,
    /// The token or session the request carried.
    pub via: Via,
    /// Whether the user is one of MoonEngage's operators (`users.is_operator`): only they reach
    /// the platform's own records (policy versions, the incident register, platform-level
    /// data-subject requests); everyone else is told those do not exist.
    pub operator: bool,
}

/// The principal's role is below what the act needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this needs the {needed} role; you act as {has}")]
pub struct Forbidden {
    /// The role the act needs.
    pub needed: Role,
    /// The role the principal has.
    pub has: Role,
}

/// The act is the platform's (an operator's) and the principal is not an operator: answered as
/// if it did not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no such route")]
pub struct NotOperator;

impl Principal {
    /// Refuses unless the principal is one of MoonEngage's operators.
    pub fn require_operator(&self) -> Result<(), NotOperator> {
        if self.operator {
            Ok(())
        } else {
            Err(NotOperator)
        }
    }

    /// Refuses unless the principal acts as at least `needed`.
    pub fn require(&self, needed: Role) -> Result<(), Forbidden> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(Forbidden {
                needed,
                has: self.role,
            })
        }
    }
}
