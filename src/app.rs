//! Composition roots: build every part of a role from its settings, bind the listeners, and run
//! until stopped. `main` and the integration tests use exactly these functions (tests bind
//! port 0 and read the bound addresses back).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::admin::fleet::LocalFleet;
use crate::admin::mask::Masker;
use crate::admin::write::WritePath;
use crate::admin::{self, AdminState};
use crate::http::server::{bind, serve};
use crate::ledger::embedded::EmbeddedLedger;
use crate::ledger::{Ledger, LedgerError};
use crate::local::LocalPublisher;
use crate::metrics::Metrics;
use crate::schema::{SchemaProblem, SchemaSet};
use crate::shutdown::{self, Shutdown};
use crate::sidecar::{self, LocalSync, SidecarState};
use crate::snapshot::{Snapshot, SnapshotStore};

/// Why a role could not start. `Settings` and `Schema` are the operator's to fix (exit 64).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("invalid schema ({} problem(s))", .0.len())]
    Schema(Vec<SchemaProblem>),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl StartError {
    /// `EX_USAGE` (64) for what the operator must fix, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Settings(_) | StartError::Schema(_) => 64,
            StartError::Ledger(LedgerError::ForeignCluster { .. }) => 64,
            _ => 1,
        }
    }
}

/// `rtconfig dev`: admin + sidecar in one process on the embedded ledger.
#[derive(Debug, Clone)]
pub struct DevSettings {
    pub schema_dir: PathBuf,
    pub data_dir: PathBuf,
    pub namespace: String,
    pub cluster_id: String,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub probe_listen: SocketAddr,
    /// Allow `listen` on a non-loopback address.
    pub allow_non_loopback: bool,
    pub max_watchers: usize,
    pub drain_timeout: Duration,
    pub admin_token: Option<String>,
}

impl DevSettings {
    /// Defaults for tests: every listener on an ephemeral loopback port.
    pub fn for_tests(schema_dir: PathBuf, data_dir: PathBuf) -> DevSettings {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        DevSettings {
            schema_dir,
            data_dir,
            namespace: "demo".into(),
            cluster_id: "default".into(),
            listen: any,
            admin_listen: any,
            probe_listen: any,
            allow_non_loopback: false,
            max_watchers: 1024,
            drain_timeout: Duration::from_secs(5),
            admin_token: None,
        }
    }
}

/// A started role: its bound addresses and the handle to stop it.
pub struct Running {
    pub read_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub probe_addr: SocketAddr,
    pub store: Arc<SnapshotStore>,
    pub ledger: Arc<dyn Ledger>,
    pub metrics: Arc<Metrics>,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
}

impl Running {
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Stops accepting, ends streams, waits for in-flight requests (bounded by the drain
    /// timeout plus a second of grace).
    pub async fn stop(self) {
        self.shutdown.trigger();
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(self.drain_timeout + Duration::from_secs(1), all)
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop before the deadline");
        }
    }

    /// Runs until SIGTERM/SIGINT or until something triggers the shutdown handle.
    pub async fn run_until_stopped(self) {
        let wait = self.shutdown.wait();
        tokio::select! {
            () = shutdown::signal() => {}
            () = wait => {}
        }
        self.stop().await;
        tracing::info!("stopped");
    }
}

fn check_loopback(addr: SocketAddr, allow: bool) -> Result<(), StartError> {
    if addr.ip().is_loopback() || allow {
        Ok(())
    } else {
        Err(StartError::Settings(format!(
            "--listen {addr} is not a loopback address: the read API is meant for the pod's own app; pass --allow-non-loopback to serve it beyond localhost"
        )))
    }
}

/// Starts `rtconfig dev`.
pub async fn start_dev(s: DevSettings) -> Result<Running, StartError> {
    check_loopback(s.listen, s.allow_non_loopback)?;
    let schemas = SchemaSet::load_dir(&s.schema_dir).map_err(StartError::Schema)?;
    let schema = schemas.get(&s.namespace).cloned().ok_or_else(|| {
        StartError::Settings(format!(
            "--namespace {:?} has no schema file in {}",
            s.namespace,
            s.schema_dir.display()
        ))
    })?;
    let ledger: Arc<dyn Ledger> = Arc::new(EmbeddedLedger::open(&s.data_dir, &s.cluster_id)?);
    for ns in schemas.iter() {
        ledger.ensure_namespace(&ns.namespace).await?;
    }
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(SnapshotStore::new(Snapshot::defaults(&schema), None, false));
    let publisher = Arc::new(LocalPublisher {
        ledger: ledger.clone(),
        schema: schema.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
    });
    publisher.publish_current().await?;
    store.confirm();

    let shutdown = Shutdown::new();
    let sidecar_state = SidecarState::new(
        store.clone(),
        metrics.clone(),
        shutdown.clone(),
        Arc::new(LocalSync),
        s.max_watchers,
    );
    let admin_state = AdminState::new(
        WritePath {
            schemas,
            ledger: ledger.clone(),
            after_commit: publisher,
            metrics: metrics.clone(),
        },
        Masker::load_or_create(&s.data_dir.join("secret.key"))?,
        Arc::new(LocalFleet {
            store: store.clone(),
        }),
        metrics.clone(),
        s.admin_token.as_deref(),
    );

    let read = bind(s.listen).await?;
    let admin = bind(s.admin_listen).await?;
    let probe = bind(s.probe_listen).await?;
    let read_addr = read.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let probe_addr = probe.local_addr()?;
    let tasks = vec![
        tokio::spawn(serve(
            read,
            sidecar::read_router(sidecar_state.clone()),
            shutdown.clone(),
            s.drain_timeout,
        )),
        tokio::spawn(serve(
            probe,
            sidecar::probe_router(sidecar_state),
            shutdown.clone(),
            s.drain_timeout,
        )),
        tokio::spawn(serve(
            admin,
            admin::router(admin_state),
            shutdown.clone(),
            s.drain_timeout,
        )),
    ];
    tracing::info!(%read_addr, %admin_addr, %probe_addr, namespace = %s.namespace, data_dir = %s.data_dir.display(), "rtconfig dev started");
    Ok(Running {
        read_addr,
        admin_addr,
        probe_addr,
        store,
        ledger,
        metrics,
        shutdown,
        tasks,
        drain_timeout: s.drain_timeout,
    })
}
