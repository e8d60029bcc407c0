//! The listener: one task per connection.

use std::sync::Arc;

use fjord_net::Acceptor;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::AmqpGateway;
use crate::error::Result;

/// Serves `acceptor` until `stop` turns true; then stops accepting, tells
/// connections to close (320 CONNECTION_FORCED) and waits for them.
pub async fn serve(acceptor: Acceptor, gw: Arc<AmqpGateway>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let mut conns = JoinSet::new();
    let sweeper = tokio::spawn(crate::expiry::run(gw.clone(), stop.clone()));
    let disk = tokio::spawn(crate::alarm::run(gw.clone(), stop.clone()));
    loop {
        tokio::select! {
            (stream, peer, admitted) = acceptor.accept() => {
                let (gw, stop) = (gw.clone(), stop.clone());
                let guard = crate::instrument::METRICS.connection();
                conns.spawn(async move {
                    let _guards = (admitted, guard);
                    if let Err(e) = crate::connection::run(stream, peer, gw, stop).await {
                        tracing::debug!(%peer, error = %e, "amqp connection ended with an error");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(acceptor);
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), async { while conns.join_next().await.is_some() {} })
            .await;
    conns.abort_all();
    let _ = sweeper.await;
    let _ = disk.await;
    Ok(())
}
