//! How a process's quarantines follow the store (`state/follow.rs`): a refresh of the
//! quarantines in force, and whether one in the copy has expired.

use futures_util::future::BoxFuture;

use super::Quarantines;
use crate::state::StateError;
use crate::state::follow::Follower;

impl Follower for Quarantines {
    const WHAT: &'static str = "quarantines";

    fn refresh(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(Quarantines::refresh(self))
    }

    fn has_expired(&self) -> bool {
        Quarantines::has_expired(self)
    }
}
