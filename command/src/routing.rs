//! Decides which endpoints an event goes to. Each tenant's enabled endpoints are cached; a
//! change made through this process refreshes the cache at once, and changes made through
//! other processes arrive as `endpoint.*` messages on the log's config subjects.

use herald_schemas::{EndpointId, TenantId};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Route {
    pub endpoint_id: EndpointId,
    /// `None` subscribes to every event type.
    pub event_types: Option<Vec<String>>,
}

impl Route {
    pub fn accepts(&self, event_type: &str) -> bool {
        herald_rules::routing::subscribes(self.event_types.as_deref(), event_type)
    }
}

type TenantRoutes = Arc<Vec<Route>>;

pub struct RoutingTable {
    pool: PgPool,
    ttl: Duration,
    tenants: RwLock<HashMap<TenantId, (TenantRoutes, Instant)>>,
}

impl RoutingTable {
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        Self {
            pool,
            ttl,
            tenants: RwLock::new(HashMap::new()),
        }
    }

    /// The tenant's enabled endpoints.
    pub async fn routes(&self, tenant_id: TenantId) -> Result<TenantRoutes, sqlx::Error> {
        if let Some(routes) = self.cached(tenant_id) {
            return Ok(routes);
        }
        let routes: TenantRoutes = Arc::new(
            herald_store::endpoints::routes_for_tenant(&self.pool, tenant_id)
                .await?
                .into_iter()
                .map(|endpoint| Route {
                    endpoint_id: endpoint.endpoint_id,
                    event_types: endpoint.event_types,
                })
                .collect(),
        );
        if let Ok(mut tenants) = self.tenants.write() {
            tenants.insert(tenant_id, (routes.clone(), Instant::now()));
        }
        Ok(routes)
    }

    pub fn invalidate(&self, tenant_id: TenantId) {
        if let Ok(mut tenants) = self.tenants.write() {
            tenants.remove(&tenant_id);
        }
    }

    fn cached(&self, tenant_id: TenantId) -> Option<TenantRoutes> {
        let tenants = self.tenants.read().ok()?;
        let (routes, loaded_at) = tenants.get(&tenant_id)?;
        (loaded_at.elapsed() < self.ttl).then(|| routes.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_filter_accepts_every_type_and_a_list_only_its_members() {
        let all = Route {
            endpoint_id: EndpointId::generate(),
            event_types: None,
        };
        let some = Route {
            endpoint_id: EndpointId::generate(),
            event_types: Some(vec!["invoice.paid".into(), "user.created".into()]),
        };
        assert!(all.accepts("anything"));
        assert!(some.accepts("user.created"));
        assert!(!some.accepts("invoice.created"));
        assert!(!some.accepts("invoice"));
    }
}
