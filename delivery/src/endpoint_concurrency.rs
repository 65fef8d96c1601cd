//! Bounds the requests in flight to each endpoint, so that one endpoint can neither take every
//! connection of the process nor be flooded; it also keeps the number of connections to a
//! receiver within the keep-alive pool, so connections are reused instead of reopened.

use herald_schemas::EndpointId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct EndpointConcurrency {
    per_endpoint: usize,
    semaphores: Mutex<HashMap<EndpointId, Arc<Semaphore>>>,
}

impl EndpointConcurrency {
    pub fn new(per_endpoint: usize) -> Self {
        Self {
            per_endpoint: per_endpoint.max(1),
            semaphores: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot for `endpoint_id`; the slot is held until the permit is dropped.
    pub async fn acquire(&self, endpoint_id: EndpointId) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut semaphores = self.semaphores.lock().ok()?;
            // Idle endpoints' semaphores are dropped now and then so the map stays small.
            if semaphores.len() > 10_000 {
                semaphores.retain(|_, semaphore| semaphore.available_permits() < self.per_endpoint);
            }
            semaphores
                .entry(endpoint_id)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_endpoint)))
                .clone()
        };
        semaphore.acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_endpoint_gets_at_most_its_share_and_others_are_not_held_up() {
        let limits = EndpointConcurrency::new(2);
        let busy = EndpointId::generate();
        let first = limits.acquire(busy).await;
        let second = limits.acquire(busy).await;
        assert!(first.is_some() && second.is_some());
        let third = tokio::time::timeout(Duration::from_millis(50), limits.acquire(busy)).await;
        assert!(
            third.is_err(),
            "a third request to a full endpoint must wait"
        );
        let other = tokio::time::timeout(
            Duration::from_millis(50),
            limits.acquire(EndpointId::generate()),
        )
        .await;
        assert!(
            matches!(other, Ok(Some(_))),
            "another endpoint must not wait"
        );
        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(50), limits.acquire(busy)).await;
        assert!(matches!(third, Ok(Some(_))));
    }
}
