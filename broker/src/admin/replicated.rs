//! On a cluster leader, a change made through the admin API (a declaration, deletion, binding, policy, user or
//! permission: anything written to the definitions log) is answered only once the in-sync followers hold it, as an
//! AMQP declaration is: the request waits for a barrier round of the group-commit thread, which the replication
//! gate releases (`store::repl`). Everything else, and every request on a single node, passes straight through.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Error;
use crate::broker::Broker;
use crate::store::repl;

pub async fn replicated(State(b): State<Arc<Broker>>, req: Request, next: Next) -> Response {
    let before = repl::definitions_writes();
    let response = next.run(req).await;
    if repl::installed().is_none() || repl::definitions_writes() == before {
        return response;
    }
    let syncer = &b.store.syncer;
    let round = syncer.barrier();
    if syncer.wait(round, round).await {
        response
    } else {
        Error::internal("the change is stored on the leader but could not be replicated").into_response()
    }
}
