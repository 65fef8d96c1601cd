//! Operator routes (`/admin/v1/...`) are authenticated by one token, `HERALD_ADMIN_TOKEN`.
//! Without it configured, every admin route answers 401.

use crate::problem::ApiError;
use crate::tenant_auth::bearer_token;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub struct AdminToken {
    expected_hash: Option<[u8; 32]>,
}

impl AdminToken {
    /// An empty token counts as none: an operator who exports `HERALD_ADMIN_TOKEN=` has not
    /// opened the admin routes to everyone.
    pub fn new(token: Option<&str>) -> Arc<Self> {
        let expected_hash = token
            .filter(|token| !token.is_empty())
            .map(|token| Sha256::digest(token.as_bytes()).into());
        Arc::new(Self { expected_hash })
    }

    /// Compares digests so that the comparison's timing says nothing about the token.
    pub fn is_admin(&self, presented: &str) -> bool {
        self.expected_hash.is_some_and(|expected| {
            <[u8; 32]>::from(Sha256::digest(presented.as_bytes())) == expected
        })
    }
}

/// A request made with `Authorization: Bearer <HERALD_ADMIN_TOKEN>`.
pub struct AdminCaller;

impl<S> FromRequestParts<S> for AdminCaller
where
    Arc<AdminToken>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let admin = Arc::<AdminToken>::from_ref(state);
        match bearer_token(parts) {
            Some(token) if admin.is_admin(token) => Ok(Self),
            _ => Err(ApiError::Unauthorized(
                "admin routes need `Authorization: Bearer <HERALD_ADMIN_TOKEN>`".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_token_is_admin() {
        let admin = AdminToken::new(Some("adm_secret"));
        assert!(admin.is_admin("adm_secret"));
        assert!(!admin.is_admin("adm_secreT"));
        assert!(!admin.is_admin(""));
        let unset = AdminToken::new(Some(""));
        assert!(!unset.is_admin(""));
        assert!(!AdminToken::new(None).is_admin("anything"));
    }
}
