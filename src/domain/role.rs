//! Who someone is to oms: a customer or staff. Their tokens say it (`auth` maps the claims);
//! the order history and events record it with each change someone asked for.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(
    Copy, Clone, Debug, Eq, PartialEq, Serialize, Deserialize, clap::ValueEnum, async_graphql::Enum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Places orders; reads, subscribes to and cancels their own orders only.
    Customer,
    /// Reads and subscribes to everything, sets any allowed status, manages inventory.
    Staff,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Customer, Role::Staff];

    /// The role's name in events and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Staff => "staff",
        }
    }
}

/// A role name that is neither `customer` nor `staff`.
#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_reads_back_from_its_name_and_nothing_else_does() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("Staff".parse::<Role>().is_err());
        assert!("admin".parse::<Role>().is_err());
    }
}
