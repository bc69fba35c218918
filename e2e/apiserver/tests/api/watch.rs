//! Watches through kube-rs: resuming, bookmarks, 410 Gone, and kube-runtime's watcher.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use test_apiserver::{ServerConfig, StoreConfig};

use crate::fixture::{lb_service, server, start};

#[tokio::test]
async fn watch_resumes_from_a_resource_version_and_sends_bookmarks() {
    let (_s, client) = server().await;
    let api: Api<Service> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &lb_service("one"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &lb_service("two"))
        .await
        .unwrap();
    api.delete("one", &DeleteParams::default()).await.unwrap();

    let params = WatchParams::default().timeout(3);
    let mut stream = api
        .watch(&params, first.resource_version().as_deref().unwrap())
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    let mut bookmark = false;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        match event {
            WatchEvent::Added(s) => seen.push(format!("added {}", s.name_any())),
            WatchEvent::Deleted(s) => seen.push(format!("deleted {}", s.name_any())),
            WatchEvent::Modified(s) => seen.push(format!("modified {}", s.name_any())),
            WatchEvent::Bookmark(_) => {
                bookmark = true;
                break;
            }
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(seen, ["added two", "deleted one"]);
    assert!(bookmark, "a bookmark arrives within the interval");
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_gone() {
    let (_s, client) = start(ServerConfig {
        store: StoreConfig {
            event_log_capacity: 3,
            ..StoreConfig::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..6 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default().timeout(2), "1")
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn kube_runtime_watcher_sees_the_initial_list_and_changes() {
    let (_s, client) = server().await;
    let api: Api<Service> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &lb_service("before"))
        .await
        .unwrap();
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = kube::runtime::reflector(
        writer,
        kube::runtime::watcher(api.clone(), Default::default()),
    );
    let mut stream = stream.boxed();
    // The reflector's store is updated as its stream is polled: drive it until the condition.
    tokio::time::timeout(Duration::from_secs(5), async {
        while reader.state().is_empty() {
            stream.try_next().await.unwrap();
        }
    })
    .await
    .unwrap();
    api.create(&PostParams::default(), &lb_service("after"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while reader.state().len() < 2 {
            stream.try_next().await.unwrap();
        }
    })
    .await
    .unwrap();
}
