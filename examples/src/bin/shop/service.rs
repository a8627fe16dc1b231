//! A branch service's HTTP listener that can be stopped and started again on the same address:
//! what `--down-secs` uses to make a service unavailable (connections refused) while the
//! coordinator keeps retrying its branches.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One axum service on `127.0.0.1`, on a port the OS picked at the first start.
#[derive(Debug)]
pub struct Service {
    name: &'static str,
    addr: SocketAddr,
    router: Router,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Service {
    /// Binds `127.0.0.1:0` and serves `router`.
    pub async fn start(name: &'static str, router: Router) -> anyhow::Result<Service> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let service = Service {
            name,
            addr: listener.local_addr()?,
            router,
            running: Mutex::new(None),
        };
        service.serve(listener);
        Ok(service)
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The service's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn serve(&self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let (router, name) = (self.router.clone(), self.name);
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                eprintln!("{name} service stopped with an error: {e}");
            }
        });
        let old = self.running.lock().unwrap().replace(Running { stop, task });
        assert!(old.is_none(), "{name} served twice");
    }

    /// Stops accepting, lets the calls in flight finish and closes every connection: from now
    /// on a call is refused, as if the process were gone.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(Running { stop, task }) = running {
            let _ = stop.send(());
            let _ = task.await;
        }
    }

    /// Binds the same address again and serves. A port just closed can take a moment to be
    /// free, so binding is retried for a while.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e)
                        .with_context(|| format!("{} cannot re-bind {}", self.name, self.addr))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
        Ok(())
    }
}
