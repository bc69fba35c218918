//! Objects through kube-rs: metadata the server maintains, lists, selectors, conflicts,
//! subresources, patches, finalizers, garbage collection, Services, namespaces and events.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::fixture::{api_code, lb_service, server, widget, widgets};

#[tokio::test]
async fn objects_get_uid_timestamps_generation_and_monotonic_resource_versions() {
    let (_s, client) = server().await;
    let api: Api<Service> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    assert!(created.uid().is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let rv1: u64 = created.resource_version().unwrap().parse().unwrap();

    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes keep generation"
    );
    let rv2: u64 = labelled.resource_version().unwrap().parse().unwrap();
    assert!(rv2 > rv1);

    let respec = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ports": [{"port": 81}]}})),
        )
        .await
        .unwrap();
    assert_eq!(
        respec.metadata.generation,
        Some(2),
        "spec changes bump generation"
    );

    let same = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        same.resource_version(),
        respec.resource_version(),
        "a no-op write changes nothing"
    );
}

#[tokio::test]
async fn list_pages_with_limit_and_continue() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..7 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(3);
    loop {
        let page = api.list(&params).await.unwrap();
        names.extend(page.items.iter().map(|c| c.name_any()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let (_s, client) = server().await;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    for name in ["a", "b", "c"] {
        api.create(&PostParams::default(), &lb_service(name))
            .await
            .unwrap();
    }
    let by_label = api
        .list(&ListParams::default().labels("app in (a,c)"))
        .await
        .unwrap();
    assert_eq!(
        by_label
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    let by_field = api
        .list(&ListParams::default().fields("metadata.name!=a"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 2);
    let all: Api<Service> = Api::all(client);
    let ns_field = all
        .list(&ListParams::default().fields("metadata.namespace=default"))
        .await
        .unwrap();
    assert_eq!(ns_field.items.len(), 3);
    let bad = api
        .list(&ListParams::default().labels("app in a"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&bad).0, 400);
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict() {
    let (_s, client) = server().await;
    let api: Api<Service> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    let mut first = created.clone();
    first
        .metadata
        .labels
        .get_or_insert_default()
        .insert("by".into(), "first".into());
    api.replace("web", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut stale = created;
    stale
        .metadata
        .labels
        .get_or_insert_default()
        .insert("by".into(), "second".into());
    let e = api
        .replace("web", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (409, "Conflict".into()));
    let e = api
        .create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (409, "AlreadyExists".into()));
    let e = api.get("nope").await.unwrap_err();
    assert_eq!(api_code(&e), (404, "NotFound".into()));
}

#[tokio::test]
async fn status_and_main_resource_writes_ignore_each_others_fields() {
    let (_s, client) = server().await;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    let status = json!({
        "metadata": {"annotations": {"example.com/set-by-status": "p"}},
        "spec": {"type": "ClusterIP"},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}},
    });
    let after = api
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(
        after.spec.as_ref().unwrap().type_.as_deref(),
        Some("LoadBalancer"),
        "status writes keep spec"
    );
    assert_eq!(
        after
            .annotations()
            .get("example.com/set-by-status")
            .map(String::as_str),
        Some("p")
    );
    let main = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": []}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.status
            .unwrap()
            .load_balancer
            .unwrap()
            .ingress
            .unwrap()
            .len(),
        1,
        "main writes keep status"
    );

    // Custom resources: a status write changes status and nothing else.
    let widgets = widgets(client);
    widgets
        .create(&PostParams::default(), &widget("w", json!({"size": 3})))
        .await
        .unwrap();
    let patched = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"labels": {"x": "y"}}, "spec": {"size": 4},
                "status": {"built": 3},
            })),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["size"], 3);
    assert!(patched.labels().is_empty());
    assert_eq!(patched.data["status"]["built"], 3);
}

#[tokio::test]
async fn json_patch_and_server_side_apply_work_and_apply_keeps_other_managers_fields() {
    let (_s, client) = server().await;
    let api: Api<Service> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    let ops = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/annotations", "value": {"set-by": "json-patch"}},
    ]))
    .unwrap();
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(patched.annotations()["set-by"], "json-patch");

    let apply = |labels: serde_json::Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": labels}});
    let pp = PatchParams::apply("some-controller");
    api.patch(
        "web",
        &pp,
        &Patch::Apply(apply(json!({"a": "1", "b": "2"}))),
    )
    .await
    .unwrap();
    let other = PatchParams::apply("someone-else");
    api.patch("web", &other, &Patch::Apply(apply(json!({"c": "3"}))))
        .await
        .unwrap();
    let out = api
        .patch("web", &pp, &Patch::Apply(apply(json!({"a": "1"}))))
        .await
        .unwrap();
    let labels = out.labels();
    assert_eq!(labels.get("a").map(String::as_str), Some("1"));
    assert!(
        !labels.contains_key("b"),
        "the manager's own dropped field goes"
    );
    assert_eq!(
        labels.get("c").map(String::as_str),
        Some("3"),
        "another manager's field stays"
    );
    assert!(labels.contains_key("app"), "fields set by create stay");

    let conflict = api
        .patch("web", &other, &Patch::Apply(apply(json!({"a": "changed"}))))
        .await
        .unwrap_err();
    assert_eq!(api_code(&conflict).0, 409);
    let forced = api
        .patch(
            "web",
            &other.clone().force(),
            &Patch::Apply(apply(json!({"a": "changed"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.labels()["a"], "changed");
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/test"]}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = api.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_code(&api.get("held").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn dependents_are_collected_when_their_owner_is_deleted() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let child: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "child", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.uid().unwrap()},
        ]}}))
        .unwrap();
    api.create(&PostParams::default(), &child).await.unwrap();
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_code(&api.get("child").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn a_dependent_with_another_owner_left_only_loses_the_reference() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut uids = Vec::new();
    for name in ["first", "second"] {
        let owner = api
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
        uids.push(owner.uid().unwrap());
    }
    let child: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "child", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "first", "uid": uids[0]},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "second", "uid": uids[1]},
        ]}}))
        .unwrap();
    api.create(&PostParams::default(), &child).await.unwrap();
    api.delete("first", &DeleteParams::default()).await.unwrap();
    let refs = api
        .get("child")
        .await
        .unwrap()
        .metadata
        .owner_references
        .unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].uid, uids[1]);
    api.delete("second", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_code(&api.get("child").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn services_are_defaulted_like_kube_apiserver_does() {
    let (_s, client) = server().await;
    let api: Api<Service> = Api::namespaced(client, "default");
    let svc = api
        .create(&PostParams::default(), &lb_service("v4"))
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("198.51.100."));
    assert_eq!(spec.ip_families.unwrap(), ["IPv4"]);
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    assert!(spec.ports.unwrap()[0].node_port.is_some());

    let mut dual = lb_service("dual");
    let s = dual.spec.as_mut().unwrap();
    s.ip_family_policy = Some("RequireDualStack".into());
    s.ip_families = Some(vec!["IPv6".into()]);
    s.allocate_load_balancer_node_ports = Some(false);
    let dual = api
        .create(&PostParams::default(), &dual)
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(dual.ip_families.unwrap(), ["IPv6", "IPv4"]);
    assert_eq!(dual.cluster_ips.unwrap().len(), 2);
    assert!(dual.ports.unwrap()[0].node_port.is_none());

    let mut bad = lb_service("bad");
    bad.spec.as_mut().unwrap().load_balancer_ip = Some("192.0.2.300".into());
    let e = api.create(&PostParams::default(), &bad).await.unwrap_err();
    assert_eq!(api_code(&e), (422, "Invalid".into()));
}

#[tokio::test]
async fn leases_and_namespaces_behave() {
    let (_s, client) = server().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(
        json!({"metadata": {"name": "some-controller"}, "spec": {"holderIdentity": "a"}}),
    )
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let e = Api::<ConfigMap>::namespaced(client.clone(), "missing")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&e).0, 404, "objects need their namespace");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "gone"}})).unwrap(),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "gone");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
    )
    .await
    .unwrap();
    namespaces
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_code(&cms.get("x").await.unwrap_err()).0, 404);
    assert_eq!(api_code(&namespaces.get("gone").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn events_from_the_new_api_show_in_the_core_api_as_kubectl_describe_reads_them() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let (_s, client) = server().await;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = api
        .create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "some-controller".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "IPAllocated".into(),
        note: Some("assigned IP 192.0.2.1".into()),
        action: "Allocate".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &svc.object_ref(&()))
        .await
        .unwrap();
    recorder
        .publish(&event, &svc.object_ref(&()))
        .await
        .unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client, "default");
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=web,involvedObject.kind=Service"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1, "the repeat is a series on one Event");
    let e = &listed.items[0];
    assert_eq!(e.message.as_deref(), Some("assigned IP 192.0.2.1"));
    assert_eq!(e.reason.as_deref(), Some("IPAllocated"));
    assert_eq!(
        e.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("some-controller")
    );
}
