//! The listeners: the name server port and the broker port accept the same
//! commands (a client that asks the broker for a route, or the name server
//! for a message, is answered all the same), so one accept loop serves
//! both.

use std::sync::Arc;

use fjord_net::Acceptor;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::RocketMqGateway;
use crate::error::RocketMqError;
use crate::instrument;

/// Serves the given listeners (each with its connection caps) until `stop` turns true; then stops
/// accepting, closes connections and waits for the background tasks.
pub async fn serve(
    listeners: Vec<Acceptor>,
    gw: Arc<RocketMqGateway>,
    stop: watch::Receiver<bool>,
) -> Result<(), RocketMqError> {
    let mut tasks = JoinSet::new();
    for l in listeners {
        let (gw, stop) = (gw.clone(), stop.clone());
        tasks.spawn(accept_loop(l, gw, stop));
    }
    tasks.spawn(crate::handlers::tx::run_checker(gw.clone(), stop.clone()));
    tasks.spawn(crate::handlers::consumer::run_expiry(gw.clone(), stop.clone()));
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "rocketmq listener task ended with an error");
        }
    }
    Ok(())
}

async fn accept_loop(
    acceptor: Acceptor,
    gw: Arc<RocketMqGateway>,
    stop: watch::Receiver<bool>,
) -> Result<(), RocketMqError> {
    let conn_stop = stop.clone();
    // Connections see the same signal; in-flight requests get a moment.
    fjord_net::serve_connections("rocketmq", acceptor, stop, std::time::Duration::from_secs(5), move |stream, peer| {
        let (gw, stop) = (gw.clone(), conn_stop.clone());
        let guard = instrument::METRICS.connection();
        async move {
            let _guard = guard;
            if let Err(e) = crate::connection::run(stream, peer, gw, stop).await {
                tracing::debug!(%peer, error = %e, "rocketmq connection closed");
            }
        }
    })
    .await;
    Ok(())
}
