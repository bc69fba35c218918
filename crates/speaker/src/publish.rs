//! Writes what [`crate::visibility`] decided: `ServiceL2Status` objects (server-side apply, as
//! the speaker's field manager, owned by this speaker's pod so they go with it), Events, and the
//! annotations the speaker publishes on its own Pod (its usable interfaces). One task, in
//! order, so a delete never overtakes the apply before it; a failed status write is retried,
//! backing off, until it lands or a newer write of the same object replaces it. Events are sent
//! once (the runtime decides them on change only); a failed annotation is sent again at the
//! next recheck.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferrolb_api::annotations::{
    NODE_LABEL, SERVICE_NAME_LABEL, SERVICE_NAMESPACE_LABEL, SPEAKER_FIELD_MANAGER,
};
use ferrolb_api::{InterfaceInfo, ServiceL2Status, ServiceL2StatusStatus};
use ferrolb_observe::events::{Events, Severity};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::gossip::backoff::Backoff;
use crate::visibility::StatusWrite;

/// First retry of a failed status write; doubles (jittered) up to [`RETRY_CAP`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two retries of a failed status write.
const RETRY_CAP: Duration = Duration::from_secs(30);

/// One thing to publish.
#[derive(Debug, Clone)]
pub enum Output {
    /// A `ServiceL2Status` write, owned by this speaker's pod when known.
    Status(StatusWrite, Option<OwnerReference>),
    /// An Event about `regarding`.
    Event {
        /// The object (a Service or this Node).
        regarding: ObjectReference,
        /// Reason.
        reason: &'static str,
        /// Note.
        note: String,
        /// Warning or Normal.
        severity: Severity,
    },
    /// An annotation on this speaker's own Pod.
    Annotate {
        /// The Pod, in the publisher's namespace.
        pod: String,
        /// Annotation key.
        key: &'static str,
        /// Value.
        value: String,
    },
}

/// Where and as whom to write.
#[derive(Clone)]
pub struct Publisher {
    /// Client.
    pub client: Client,
    /// Namespace of the `ServiceL2Status` objects.
    pub namespace: String,
    /// This node.
    pub node: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("namespace", &self.namespace)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn status_object(
    publisher: &Publisher,
    name: &str,
    service: &str,
    interfaces: &BTreeSet<String>,
    owner: Option<OwnerReference>,
) -> ServiceL2Status {
    let (namespace, service_name) = service.split_once('/').unwrap_or(("", service));
    let mut object = ServiceL2Status::new(name, ferrolb_api::ServiceL2StatusSpec {});
    object.metadata.namespace = Some(publisher.namespace.clone());
    object.metadata.labels = Some(
        [
            (SERVICE_NAME_LABEL.to_owned(), service_name.to_owned()),
            (SERVICE_NAMESPACE_LABEL.to_owned(), namespace.to_owned()),
            (NODE_LABEL.to_owned(), publisher.node.clone()),
        ]
        .into(),
    );
    object.metadata.owner_references = owner.map(|o| vec![o]);
    object.status = Some(ServiceL2StatusStatus {
        node: publisher.node.clone(),
        service_name: service_name.to_owned(),
        service_namespace: namespace.to_owned(),
        interfaces: interfaces
            .iter()
            .map(|name| InterfaceInfo { name: name.clone() })
            .collect(),
    });
    object
}

async fn write_status(
    publisher: &Publisher,
    write: &StatusWrite,
    owner: Option<OwnerReference>,
) -> Result<(), kube::Error> {
    let api: Api<ServiceL2Status> = Api::namespaced(publisher.client.clone(), &publisher.namespace);
    let params = PatchParams::apply(SPEAKER_FIELD_MANAGER).force();
    match write {
        StatusWrite::Apply {
            name,
            service,
            interfaces,
        } => {
            let object = status_object(publisher, name, service, interfaces, owner);
            let mut main = object.clone();
            main.status = None;
            api.patch(name, &params, &Patch::Apply(&main)).await?;
            api.patch_status(name, &params, &Patch::Apply(&object))
                .await?;
            tracing::info!(%name, %service, ?interfaces, "ServiceL2Status written");
        }
        StatusWrite::Delete { name } => match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(%name, "ServiceL2Status deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        },
    }
    Ok(())
}

fn write_name(write: &StatusWrite) -> &str {
    match write {
        StatusWrite::Apply { name, .. } | StatusWrite::Delete { name } => name,
    }
}

/// Publishes everything it receives, in order, until the sender is dropped.
pub async fn run(publisher: Publisher, mut outputs: UnboundedReceiver<Output>) {
    let events = Events::new(publisher.client.clone(), "ferrolb-speaker", &publisher.node);
    // Failed status writes by object name: the latest write of each object, retried until it
    // lands (one object per Service this node announces, so bounded by those).
    let mut failed: BTreeMap<String, (StatusWrite, Option<OwnerReference>)> = BTreeMap::new();
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP);
    let mut retry_at = tokio::time::Instant::now();
    loop {
        let output = tokio::select! {
            output = outputs.recv() => match output {
                Some(output) => output,
                None => break,
            },
            () = tokio::time::sleep_until(retry_at), if !failed.is_empty() => {
                for (name, (write, owner)) in std::mem::take(&mut failed) {
                    if let Err(e) = write_status(&publisher, &write, owner.clone()).await {
                        tracing::debug!(error = %e, %name, "ServiceL2Status write failed again");
                        failed.insert(name, (write, owner));
                    }
                }
                if failed.is_empty() {
                    backoff.reset();
                } else {
                    retry_at = tokio::time::Instant::now() + backoff.next(rand::random());
                }
                continue;
            }
        };
        match output {
            Output::Status(write, owner) => {
                // A newer write of the object replaces a failed one.
                failed.remove(write_name(&write));
                if let Err(e) = write_status(&publisher, &write, owner.clone()).await {
                    tracing::warn!(error = %e, ?write, "ServiceL2Status write failed; retrying until it lands");
                    if failed.is_empty() {
                        retry_at = tokio::time::Instant::now() + backoff.next(rand::random());
                    }
                    failed.insert(write_name(&write).to_owned(), (write, owner));
                }
            }
            Output::Annotate { pod, key, value } => {
                let api: Api<Pod> = Api::namespaced(publisher.client.clone(), &publisher.namespace);
                let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
                match api
                    .patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => tracing::debug!(%pod, key, %value, "pod annotated"),
                    Err(e) => tracing::warn!(error = %e, %pod, key, "could not annotate own pod"),
                }
            }
            Output::Event {
                regarding,
                reason,
                note,
                severity,
            } => {
                if let Err(e) = events
                    .publish(&regarding, severity, reason, "Announce", &note)
                    .await
                {
                    tracing::warn!(error = %e, reason, "could not publish Event");
                }
            }
        }
    }
}
