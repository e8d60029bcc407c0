//! The listener: one task per connection (`fjord_net::serve_connections`),
//! plus the gateway's background tasks (queue expiry, disk alarm).

use std::sync::Arc;
use std::time::Duration;

use fjord_net::Acceptor;
use tokio::sync::watch;

use crate::AmqpGateway;
use crate::error::Result;

/// Serves `acceptor` until `stop` turns true; then stops accepting, tells
/// connections to close (320 CONNECTION_FORCED) and waits for them.
pub async fn serve(acceptor: Acceptor, gw: Arc<AmqpGateway>, stop: watch::Receiver<bool>) -> Result<()> {
    let sweeper = tokio::spawn(crate::expiry::run(gw.clone(), stop.clone()));
    let disk = tokio::spawn(crate::alarm::run(gw.clone(), stop.clone()));
    let conn_stop = stop.clone();
    fjord_net::serve_connections("amqp", acceptor, stop, Duration::from_secs(5), move |stream, peer| {
        let (gw, stop) = (gw.clone(), conn_stop.clone());
        let guard = crate::instrument::METRICS.connection();
        async move {
            let _guard = guard;
            if let Err(e) = crate::connection::run(stream, peer, gw, stop).await {
                tracing::debug!(%peer, error = %e, "amqp connection ended with an error");
            }
        }
    })
    .await;
    let _ = sweeper.await;
    let _ = disk.await;
    Ok(())
}
