//! Identifier newtypes. Ids are UUIDv7 so that they sort by creation time, which keeps
//! B-tree inserts local in Postgres and makes cursors cheap.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(formatter)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(text).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

id_type!(
    /// A tenant: one customer of the platform, owner of endpoints and events.
    TenantId
);
id_type!(
    /// A receiver URL subscribed to some event types.
    EndpointId
);
id_type!(
    /// An accepted event; sent to receivers as the `webhook-id` header so they can deduplicate.
    EventId
);
id_type!(
    /// One HTTP attempt to deliver one event to one endpoint.
    AttemptId
);
id_type!(
    /// A replay from the log: a tenant's accepted events in a time range, delivered again.
    ReplayId
);
